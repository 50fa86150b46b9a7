"""confine.py: the pure planners (rlimits, scheduler, ioPriority, personality, CPU lists, LSM fail-closed) and
the exec lookup (resolve_executable, with_home) run in a forked child chrooted into a scratch root."""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyoci import confine, confine_exec, lsm
from pyoci.errors import ConfigError


# --------------------------------------------------------------------------- planners

def test_rlimits_plan():
    got = confine.plan_rlimits({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
                                            {"type": "RLIMIT_RTTIME", "soft": 0, "hard": 2 ** 64 - 1}]})
    assert got == (confine.Rlimit("RLIMIT_NOFILE", 7, 10, 20), confine.Rlimit("RLIMIT_RTTIME", 15, 0, 2 ** 64 - 1))


@pytest.mark.parametrize("rl, msg", [
    ([{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}], r"rlimits\[0\]\.type: 'RLIMIT_FOO' is not a Linux resource"),
    ([{"type": "RLIMIT_CPU", "soft": 1, "hard": 1}] * 2, r"rlimits\[1\]\.type: duplicate RLIMIT_CPU"),
    ([{"type": "RLIMIT_CPU", "soft": 2, "hard": 1}], r"rlimits\[0\]: soft 2 is greater than hard 1"),
    ([{"type": "RLIMIT_CPU", "soft": -1, "hard": 1}], r"rlimits\[0\]\.soft: -1 is not a uint64"),
])
def test_rlimits_errors(rl, msg):
    with pytest.raises(ConfigError, match=msg):
        confine.plan_rlimits({"rlimits": rl})


def test_scheduler_plan_packs_sched_attr():
    s = confine.plan_scheduler({"scheduler": {"policy": "SCHED_DEADLINE", "flags": ["SCHED_FLAG_RESET_ON_FORK",
                                                                                    "SCHED_FLAG_RECLAIM"],
                                              "runtime": 10_000_000, "deadline": 30_000_000, "period": 30_000_000}})
    assert s is not None and s.policy == "SCHED_DEADLINE"
    assert struct.unpack("IIQiIQQQII", s.attr) == (56, 6, 3, 0, 0, 10_000_000, 30_000_000, 30_000_000, 0, 0)
    s = confine.plan_scheduler({"scheduler": {"policy": "SCHED_OTHER", "nice": -5}})
    assert s is not None and struct.unpack("IIQiIQQQII", s.attr)[1:4] == (0, 0, -5)
    assert confine.plan_scheduler({}) is None


@pytest.mark.parametrize("sched, msg", [
    ({"policy": "SCHED_FOO"}, "policy: unknown policy"),
    ({"policy": "SCHED_ISO"}, "policy: SCHED_ISO is not implemented by Linux"),
    ({"policy": "SCHED_OTHER", "nice": 20}, "nice: 20 is outside -20..19"),
    ({"policy": "SCHED_FIFO", "priority": 100}, "priority: 100 is outside 0..99"),
    ({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_FAST"]}, r"flags\[0\]: unknown flag"),
])
def test_scheduler_errors(sched, msg):
    with pytest.raises(ConfigError, match=r"^process\.scheduler\." + msg):
        confine.plan_scheduler({"scheduler": sched})


def test_ioprio_and_personality():
    assert confine.plan_ioprio({"ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 7}}) == 1 << 13 | 7
    assert confine.plan_ioprio({"ioPriority": {"class": "IOPRIO_CLASS_IDLE"}}) == 3 << 13
    with pytest.raises(ConfigError, match="ioPriority.priority: 8 is outside 0..7"):
        confine.plan_ioprio({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}})
    assert confine.plan_personality({"personality": {"domain": "LINUX32"}}) == 8
    assert confine.plan_personality({"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}}) == 0x40000
    with pytest.raises(ConfigError, match=r"personality\.domain: unknown domain 'BSD'"):
        confine.plan_personality({"personality": {"domain": "BSD"}})
    with pytest.raises(ConfigError, match=r"personality\.flags\[0\]: unsupported personality flag 'X'"):
        confine.plan_personality({"personality": {"domain": "LINUX", "flags": ["X"]}})


@pytest.mark.parametrize("text, want", [("0", {0}), ("0-2,7", {0, 1, 2, 7}), (" 1 , 3-4 ", {1, 3, 4})])
def test_cpu_lists(text, want):
    assert confine.parse_cpus(text, "x") == want


@pytest.mark.parametrize("text", ["a", "3-1", ",", "1-"])
def test_bad_cpu_lists(text):
    with pytest.raises(ConfigError):
        confine.parse_cpus(text, "process.execCPUAffinity.final")


@pytest.mark.parametrize("spec, active, msg", [
    ({"process": {"apparmorProfile": "p"}}, frozenset(), "process.apparmorProfile 'p': AppArmor is not enabled"),
    ({"process": {"selinuxLabel": "l"}}, frozenset({"apparmor"}), "process.selinuxLabel 'l': SELinux is not enabled"),
    ({"linux": {"mountLabel": "m"}}, frozenset(), "linux.mountLabel 'm': SELinux is not enabled"),
])
def test_lsm_requested_but_not_enabled_fails_closed(spec, active, msg):
    with pytest.raises(ConfigError, match=msg):
        lsm.plan(spec, active)


def test_lsm_plan_when_enabled():
    labels = lsm.plan({"process": {"apparmorProfile": "p", "selinuxLabel": "l"}}, frozenset({"apparmor", "selinux"}))
    assert [(x.lsm, x.data, x.attr) for x in labels] == [("apparmor", "exec p", "attr/apparmor/exec"),
                                                        ("selinux", "l", "attr/exec")]


def test_private_proc_handle_is_procfs_and_opens_our_attr_files():
    fd = lsm.open_private_proc()
    try:
        oom = lsm.open_proc_file(fd, "self/oom_score_adj", os.O_RDONLY)
        assert os.read(oom, 16).strip() == open("/proc/self/oom_score_adj", "rb").read().strip()
        os.close(oom)
        attr = lsm.open_proc_file(fd, "thread-self/attr/exec", os.O_RDONLY)
        os.close(attr)
        with pytest.raises(OSError):  # a magic link is never followed through the handle
            lsm.open_proc_file(fd, "self/cwd/etc/passwd", os.O_RDONLY)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- exec lookup, chrooted child

def _busybox() -> str:
    return shutil.which("busybox") or "/bin/busybox"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for d in ("bin", "usr/bin", "opt", "etc", "proc", "dev", "noexec"):
        (r / d).mkdir(parents=True)
    shutil.copy(_busybox(), r / "bin" / "busybox")
    os.symlink("busybox", r / "bin" / "sh")
    (r / "opt" / "tool").write_text("#!/bin/sh\necho tool\n")
    (r / "opt" / "tool").chmod(0o755)
    (r / "opt" / "data").write_text("no exec bit\n")
    (r / "opt" / "evil").write_text("#!/proc/self/exe -c\nprint('no')\n")
    (r / "opt" / "evil").chmod(0o755)
    (r / "opt" / "chain").write_text("#!/opt/evil\n")
    (r / "opt" / "chain").chmod(0o755)
    os.symlink("/proc/self/fd", r / "dev" / "fd")
    os.symlink("/proc/self/exe", r / "opt" / "exe-link")
    os.symlink("/dev/fd/0", r / "opt" / "fd-link")
    os.symlink("loop-b", r / "opt" / "loop-a")
    os.symlink("loop-a", r / "opt" / "loop-b")
    (r / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    return r


def in_chroot(root: Path, fn: Callable[[], Any], mount_proc: bool = True) -> Any:
    """fn() in a forked child chrooted at root (with procfs mounted there in a private mount namespace)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            from pyoci.linux import libc
            confine_exec.remember_host_executables()  # as prepare() does, while the host is visible
            if mount_proc:
                libc.unshare(libc.CLONE_NEWNS)
                libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
                libc.mount("proc", str(root / "proc"), "proc")
            os.chroot(root)
            os.chdir("/")
            try:
                out: Any = {"ok": fn()}
            except Exception as exc:  # noqa: BLE001
                out = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot/unshare need root")


@needs_root
@pytest.mark.parametrize("args0, env, want", [
    ("sh", ["PATH=/usr/bin:/bin"], {"ok": "/bin/sh"}),
    ("tool", ["PATH=/opt"], {"ok": "/opt/tool"}),
    ("tool", {"PATH": "/nowhere:/opt"}, {"ok": "/opt/tool"}),
    ("sh", "/bin", {"ok": "/bin/sh"}),
    ("sh", [], {"ok": "/bin/sh"}),                     # no PATH: execvp's default /bin:/usr/bin
    ("./tool", [], {"ok": "/opt/tool"}),               # relative to cwd (/opt here)
    ("tool", ["PATH=/bin"], {"error": 'ChildError: exec: "tool": executable file not found in $PATH'}),
    ("/opt/nope", [], {"error": 'ChildError: exec: "/opt/nope": stat /opt/nope: no such file or directory'}),
    ("/opt/data", [], {"error": 'ChildError: exec: "/opt/data": permission denied'}),
    ("/opt", [], {"error": 'ChildError: exec: "/opt": permission denied'}),
    ("/opt/loop-a", [], {"error": 'ChildError: exec: "/opt/loop-a": stat /opt/loop-a: no such file or directory'}),
])
def test_resolve_executable(root, args0, env, want):
    got = in_chroot(root, lambda: confine.resolve_executable(args0, env, "/opt"))
    if "error" in want and "loop" in args0:
        assert "error" in got  # ELOOP: reported like execvp (not found), never followed
    else:
        assert got == want


@needs_root
@pytest.mark.parametrize("args0", ["/proc/self/exe", "/proc/thread-self/exe", "/opt/exe-link", "/opt/fd-link",
                                   "/opt/evil", "/opt/chain", "/proc/self/root/bin/sh", "/dev/fd/0"])
def test_resolve_executable_refuses_magic_links_and_the_interpreter(root, args0):
    got = in_chroot(root, lambda: confine.resolve_executable(args0, ["PATH=/bin"], "/"))
    assert "error" in got and "refusing to execute" in got["error"], got
    assert "magic link" in got["error"] or "interpreter" in got["error"]


@needs_root
def test_resolve_executable_refuses_a_bind_mounted_interpreter(root):
    exe = os.path.realpath("/proc/self/exe")
    (root / "usr" / "bin" / "python").touch()

    def bind_then_resolve() -> str:
        return confine.resolve_executable("/usr/bin/python", [], "/")

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        from pyoci.linux import libc
        try:
            confine_exec.remember_host_executables()
            libc.unshare(libc.CLONE_NEWNS)
            libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
            libc.mount(exe, str(root / "usr" / "bin" / "python"), None, libc.MS_BIND)
            os.chroot(root)
            try:
                bind_then_resolve()
                os.write(w, b"resolved")
            except Exception as exc:  # noqa: BLE001
                os.write(w, str(exc).encode())
        finally:
            os._exit(0)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert "it is the runtime's own interpreter" in msg


@needs_root
def test_noexec_mount_is_permission_denied(root):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        from pyoci.linux import libc
        try:
            libc.unshare(libc.CLONE_NEWNS)
            libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
            libc.mount("tmpfs", str(root / "noexec"), "tmpfs", libc.MS_NOEXEC)
            shutil.copy(root / "opt" / "tool", root / "noexec" / "tool")
            os.chroot(root)
            try:
                confine.resolve_executable("/noexec/tool", [], "/")
                os.write(w, b"resolved")
            except Exception as exc:  # noqa: BLE001
                os.write(w, str(exc).encode())
        finally:
            os._exit(0)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert msg == 'exec: "/noexec/tool": permission denied'


@needs_root
@pytest.mark.parametrize("env, uid, want", [
    (["A=1"], 1000, ["A=1", "HOME=/home/user"]),
    (["A=1"], 0, ["A=1", "HOME=/root"]),
    (["A=1"], 4242, ["A=1", "HOME=/"]),
    (["HOME=/x"], 1000, ["HOME=/x"]),
])
def test_with_home_reads_passwd_as_data(root, env, uid, want):
    assert in_chroot(root, lambda: confine.with_home(env, uid), mount_proc=False) == {"ok": want}


def test_seal_interpreter_copy_runs_pyoci():
    p = subprocess.run([sys.executable, "-c",
                        "from pyoci import confine; confine.seal_interpreter(); import os, pyoci; "
                        "print(os.readlink('/proc/self/exe').split(' ')[0], pyoci.__name__)"],
                       capture_output=True, text=True, timeout=30,
                       cwd=str(Path(__file__).resolve().parents[2]))
    assert p.stdout.split() == ["/memfd:pyoci", "pyoci"], p.stderr


@needs_root
def test_nothing_is_imported_or_dlopened_after_pivot(root, tmp_path):
    """Class 15: after prepare() (host visible), the apply steps, the exec lookup and the seccomp load run in
    the container root without importing a module, dlopen()ing a library or opening a .py/.so file."""
    sock_path = str(tmp_path / "agent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    spec = {"process": {"user": {"uid": 1000, "gid": 1000, "additionalGids": [3], "umask": 0o22},
                        "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")},
                        "noNewPrivileges": True, "oomScoreAdj": 10,
                        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}],
                        "scheduler": {"policy": "SCHED_BATCH"}, "ioPriority": {"class": "IOPRIO_CLASS_BE"},
                        "env": ["PATH=/bin"]},
            "linux": {"personality": {"domain": "LINUX"},
                      "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock_path,
                                  "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                                               {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]}}}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        events: list[str] = []
        try:
            os.close(r)
            c = confine.prepare(spec, cid="audit", bundle="/", no_new_keyring=False)

            def hook(event: str, args: tuple[Any, ...]) -> None:
                if event in ("import", "ctypes.dlopen", "ctypes.dlsym") or (
                        event == "open" and isinstance(args[0], str) and args[0].endswith((".py", ".pyc", ".so"))):
                    events.append(f"{event} {args[0]!r}")

            import sys as _sys
            _sys.addaudithook(hook)
            os.chroot(root)  # stands in for pivot_root: from here on the "rootfs" is the container's
            os.chdir("/")
            confine.apply_process(c)
            exe = confine.resolve_executable("sh", ["PATH=/bin"], "/")
            env = confine.with_home(["PATH=/bin"], c.uid)
            confine.apply_credentials(c, {"ociVersion": "1.3.0", "id": "audit", "pid": os.getpid()})
            confine.final(c, {"ociVersion": "1.3.0", "id": "audit", "status": "created", "pid": os.getpid()})
            os.write(w, json.dumps({"events": events, "exe": exe, "env": env}).encode())
        except BaseException as exc:  # noqa: BLE001
            os.write(w, json.dumps({"error": repr(exc), "events": events}).encode())
        finally:
            os._exit(0)
    os.close(w)
    conn, _ = srv.accept()
    data, fds, _f, _ = socket.recv_fds(conn, 1 << 16, 1)
    conn.close()
    for fd in fds:
        os.close(fd)
    out = b""
    while chunk := os.read(r, 1 << 16):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    srv.close()
    got = json.loads(out)
    assert "error" not in got, got
    assert got["events"] == [], got["events"]
    assert got["exe"] == "/bin/sh" and got["env"] == ["PATH=/bin", "HOME=/home/user"]
    assert json.loads(data)["state"]["status"] == "created"
