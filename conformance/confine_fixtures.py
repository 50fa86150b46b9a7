"""Helpers for the confinement tests: small static programs built with gcc (a setuid euid printer, a 32-bit
int-0x80 mkdir, an NSS module that records who loaded it), and a seccomp notify agent."""
from __future__ import annotations

import atexit
import errno
import fcntl
import functools
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

EUID_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("uid=%d euid=%d\n", (int)getuid(), (int)geteuid()); return 0; }
"""

# i386, no libc: mkdir(argv[1]) through int 0x80, prints "errno=N" (0 on success), exit status N.
MKDIR32_C = r"""
static long sys3(long n, long a, long b, long c) {
    long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b), "d"(c) : "memory"); return r;
}
static char buf[32];
__attribute__((force_align_arg_pointer)) void _start_c(long *sp) {
    char **argv = (char **)(sp + 1);
    long r = sys3(39 /* __NR_mkdir on i386 */, (long)argv[1], 0755, 0);
    long e = r < 0 ? -r : 0; int i = 0; char tmp[12]; int n = 0;
    buf[i++] = 'e'; buf[i++] = 'r'; buf[i++] = 'r'; buf[i++] = 'n'; buf[i++] = 'o'; buf[i++] = '=';
    do { tmp[n++] = '0' + e % 10; e /= 10; } while (e);
    while (n) buf[i++] = tmp[--n];
    buf[i++] = '\n';
    sys3(4 /* write */, 1, (long)buf, i);
    sys3(1 /* exit */, r < 0 ? -r : 0, 0, 0);
}
__asm__(".globl _start\n_start:\n  movl %esp, %eax\n  pushl %eax\n  call _start_c\n");
"""

# An NSS module whose constructor appends "pid uid CapEff comm" of whoever dlopen()s it to /pwned.
NSS_EVIL_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
__attribute__((constructor)) static void pwned(void) {
    char line[512] = "", cap[64] = "?", comm[64] = "?";
    FILE *f = fopen("/proc/self/status", "r");
    if (f) { char l[256]; while (fgets(l, sizeof l, f)) if (!strncmp(l, "CapEff:", 7)) sscanf(l + 7, "%63s", cap); fclose(f); }
    f = fopen("/proc/self/comm", "r");
    if (f) { if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0; fclose(f); }
    snprintf(line, sizeof line, "pid=%d uid=%d capeff=%s comm=%s\n", getpid(), getuid(), cap, comm);
    int fd = open("/pwned", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, line, strlen(line)); close(fd); }
}
"""


@functools.cache
def build_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="pyoci-confine-bin-"))
    d.chmod(0o755)
    atexit.register(shutil.rmtree, d, True)
    return d


def _gcc(name: str, source: str, *flags: str) -> Path | str:
    """Compile once per session; returns the binary's path, or the compiler's error text."""
    out = build_dir() / name
    if out.exists():
        return out
    if shutil.which("gcc") is None:
        return "gcc is not installed"
    src = build_dir() / f"{name}.c"
    src.write_text(source)
    p = subprocess.run(["gcc", *flags, "-o", str(out), str(src)], capture_output=True, text=True, timeout=120)
    return out if p.returncode == 0 else (p.stderr.strip().splitlines() or ["gcc failed"])[-1]


def euid_helper() -> Path | str:
    return _gcc("euid", EUID_C, "-static", "-O1")


def mkdir32_helper() -> Path | str:
    """The 32-bit helper, or why it cannot be built/run here (no -m32 toolchain, no IA32 emulation)."""
    out = _gcc("mkdir32", MKDIR32_C, "-m32", "-static", "-nostdlib", "-ffreestanding", "-fno-pic",
               "-fno-stack-protector", "-O1")
    if isinstance(out, str):
        return f"cannot build a 32-bit helper: {out}"
    probe = build_dir() / "probe32"
    p = subprocess.run([str(out), str(probe)], capture_output=True, text=True, timeout=30)
    if p.stdout.strip() != "errno=0":
        return f"the kernel cannot run i386 binaries here ({p.returncode}, {p.stdout!r})"
    probe.rmdir()
    return out


def nss_evil_module() -> Path | str:
    return _gcc("libnss_evil.so.2", NSS_EVIL_C, "-shared", "-fPIC", "-O1")


def install(binary: Path, rootfs: Path, dest: str, mode: int = 0o755) -> None:
    target = rootfs / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(binary, target)
    os.chown(target, 0, 0)
    os.chmod(target, mode)


def plant_nss_hijack(rootfs: Path) -> None:
    """A13: nsswitch.conf routes passwd/group through 'evil', whose module is in the rootfs' lib dirs."""
    lib = nss_evil_module()
    assert isinstance(lib, Path), lib
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "nsswitch.conf").write_text("passwd: evil files\ngroup: evil files\nshadow: evil files\n"
                                                 "hosts: evil files\n")
    for d in ("lib", "lib64", "usr/lib", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"):
        install(lib, rootfs, f"/{d}/libnss_evil.so.2")


# --------------------------------------------------------------------------- seccomp notify agent

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes


class NotifyAgent:
    """Listens on a unix socket; for each connection takes the state JSON + seccomp fd (SCM_RIGHTS) and fails
    every notified syscall with `error` (runc's contrib/cmd/seccompagent does the same with mkdir)."""

    def __init__(self, path: Path, error: int = errno.ENOMEDIUM) -> None:
        self.path, self.error = path, error
        self.messages: list[dict[str, Any]] = []
        self.answered: list[int] = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(4)
        os.chmod(path, 0o777)
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                data, fds, _flags, _ = socket.recv_fds(conn, 1 << 16, 4)
                while chunk := conn.recv(1 << 16):
                    data += chunk
            try:
                self.messages.append(json.loads(data))
            except ValueError:
                self.messages.append({"raw": data.decode(errors="replace")})
            for fd in fds:
                threading.Thread(target=self._answer, args=(fd,), daemon=True).start()

    def _answer(self, fd: int) -> None:
        try:
            while True:
                req = bytearray(80)
                fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, req, True)
                notif_id, _pid, _flags, nr = struct.unpack_from("QIIi", req)
                self.answered.append(nr)
                resp = bytearray(struct.pack("QqiI", notif_id, 0, -self.error, 0))
                try:
                    fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp, True)
                except OSError:
                    pass  # the target died or the id went stale
        except OSError:
            pass  # every process holding the filter is gone (ENOENT) or the fd closed
        finally:
            os.close(fd)

    def close(self) -> None:
        self._stop = True
        self.srv.close()
