"""Terminals on real containers: --console-socket (cli-surface.md §6), A5 (security.md class 8), and `run -t` /
`exec -t` in the foreground driven through a real pty pair (size, raw mode, input, SIGWINCH, restore)."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import PYOCI, REPO, base_config

pytestmark = pytest.mark.root

TIOCGPTN = 0x80045430


def tty_config(args: list[str], size: tuple[int, int] | None = None) -> dict[str, Any]:
    spec = base_config(args)
    spec["process"]["terminal"] = True
    if size:
        spec["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
    # runc's default device allow list has /dev/pts/* and ptmx; spelled out so this does not depend on it.
    spec["linux"]["resources"]["devices"] += [{"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
                                              {"allow": True, "type": "c", "major": 136, "access": "rwm"}]
    return spec


class ConsoleSocket:
    """What containerd/conmon do: listen on a path, accept, take exactly one message with one fd."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive(self) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        self.sock.settimeout(10)
        conn, _ = self.sock.accept()
        with conn:
            return conn.recvmsg(4096, socket.CMSG_SPACE(4 * 4))[:2]

    def close(self) -> None:
        self.sock.close()


def master_of(anc: list[tuple[int, int, bytes]]) -> int:
    assert len(anc) == 1, anc  # go-runc: exactly one cmsg …
    level, kind, data = anc[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS) and len(data) == 4  # … with exactly one fd
    return struct.unpack("i", data)[0]


def read_until(fd: int, needle: str, timeout: float = 10.0) -> str:
    out = b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in out and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_console_socket_protocol_size_console_and_ctty(make_bundle):
    script = ("tty; stty size; ls -l /dev/console; ls -l /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; "
              "cut -d' ' -f6,7 /proc/self/stat; ls -1 /proc/self/fd; echo END; sleep 30")
    b = make_bundle(tty_config(["sh", "-c", script], size=(33, 111)))
    cs = ConsoleSocket(b.dir / "console.sock")
    try:
        p = b.pyoci("create", "--bundle", str(b.dir), "--console-socket", cs.path, b.id)
        assert p.returncode == 0, p.stderr
        data, anc = cs.receive()
    finally:
        cs.close()
    assert data  # a name is sent with the fd (SCM_RIGHTS needs a data byte on SOCK_STREAM)
    master = master_of(anc)
    try:
        n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        b.pyoci("start", b.id, check=True)
        out = read_until(master, "END")
    finally:
        os.close(master)
    lines = [x.strip() for x in out.splitlines()]
    assert lines[0] == f"/dev/pts/{n}"
    assert lines[1] == "33 111"  # consoleSize
    console = lines[2].split()  # /dev/console is the pty peer (bind mount), not a file or the host console
    assert console[0].startswith("c") and console[4:6] == ["136,", str(n)], lines[2]
    for line in lines[3:6]:
        assert line.endswith(f"/dev/pts/{n}")
    sid, tty_nr = lines[6].split()
    assert sid == "1" and int(tty_nr) == os.makedev(136, n)  # the pty is the controlling terminal
    assert sorted(int(x) for x in lines[7:] if x.isdigit()) == [0, 1, 2, 3]  # the master is not in there
    assert "\r\n" in out  # the pty is left as allocated (ONLCR on): the console-socket caller decides


def test_terminal_owner_is_the_process_user(make_bundle):
    spec = tty_config(["sh", "-c", "ls -ln $(tty); sleep 30"])
    spec["process"]["user"] = {"uid": 1000, "gid": 1000}
    b = make_bundle(spec)
    cs = ConsoleSocket(b.dir / "c.sock")
    try:
        b.pyoci("create", "--bundle", str(b.dir), "--console-socket", cs.path, b.id, check=True)
        _, anc = cs.receive()
    finally:
        cs.close()
    master = master_of(anc)
    try:
        b.pyoci("start", b.id, check=True)
        out = read_until(master, "/dev/pts/")
    finally:
        os.close(master)
    assert out.split()[2] == "1000", out


@pytest.mark.parametrize("case", ["terminal-without-socket", "socket-without-terminal", "socket-not-listening"])
def test_create_terminal_errors(make_bundle, case):
    spec = tty_config(["true"]) if case != "socket-without-terminal" else base_config(["true"])
    b = make_bundle(spec)
    argv = ["create", "--bundle", str(b.dir), b.id]
    cs = None
    if case == "socket-without-terminal":
        cs = ConsoleSocket(b.dir / "c.sock")
        argv[1:1] = ["--console-socket", cs.path]
    elif case == "socket-not-listening":
        argv[1:1] = ["--console-socket", str(b.dir / "nobody-listens.sock")]
    try:
        p = b.pyoci(*argv)
    finally:
        if cs:
            cs.close()
    assert p.returncode == 1
    want = {"terminal-without-socket": "cannot allocate tty if runc will detach without setting console socket",
            "socket-without-terminal": "cannot use console socket if runc will not detach or allocate tty",
            "socket-not-listening": "--console-socket"}[case]
    assert want in p.stderr and p.stderr.count("level=error") == 1
    assert not (b.root / b.id).exists()


def test_run_detached_with_terminal_needs_a_console_socket(make_bundle):
    b = make_bundle(tty_config(["true"]))
    p = b.pyoci("run", "--detach", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and "console socket" in p.stderr


@pytest.mark.parametrize("variant", ["console-symlink", "pts-symlink"])
def test_a5_dev_console_and_dev_pts_symlinks_are_safe(make_bundle, variant):
    """A5: no /dev mount; rootfs/dev/console → /canary (a bind of host file H), or rootfs/dev/pts a symlink.
    Safe: an error, or /dev/console a pty (136:n); H unchanged; any received fd answers TIOCGPTN."""
    spec = tty_config(["sh", "-c", "ls -l /dev/console; sleep 30"])
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev"]
    b = make_bundle(spec)
    canary = b.dir.parent / "canary-H"
    canary.write_text("canary\n")
    before = canary.stat()
    (b.rootfs / "canary").write_text("")
    b.spec["mounts"].append({"destination": "/canary", "type": "bind", "source": str(canary), "options": ["bind"]})
    if variant == "console-symlink":
        (b.rootfs / "dev" / "console").symlink_to("/canary")
    else:
        (b.rootfs / "ptsdir").mkdir()
        (b.rootfs / "dev" / "pts").symlink_to("/ptsdir")
    b.write()
    cs = ConsoleSocket(b.dir / "c.sock")
    master = None
    try:
        p = b.pyoci("create", "--bundle", str(b.dir), "--console-socket", cs.path, b.id)
        if p.returncode == 0:
            _, anc = cs.receive()
            master = master_of(anc)
            fcntl.ioctl(master, TIOCGPTN, b"\0" * 4)
            b.pyoci("start", b.id, check=True)
            out = read_until(master, "console")
            assert out.startswith("crw") and out.split()[4] == "136,", out
        else:
            assert "refusing" in p.stderr or "symlink" in p.stderr or "ELOOP" in p.stderr, p.stderr
    finally:
        cs.close()
        if master is not None:
            os.close(master)
        b.pyoci("delete", "--force", b.id)
    after = canary.stat()
    assert canary.read_text() == "canary\n" and (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert canary.is_file() and not canary.is_symlink()
    assert str(canary) not in Path("/proc/self/mountinfo").read_text()  # nothing mounted over H on the host


def test_ptmx_that_is_not_on_devpts_is_refused(make_bundle):
    """class 8: a 5:2 node that is not the devpts instance's own ptmx (ino 2) is refused, although the kernel
    would open it (it finds a devpts named `pts` next to it)."""
    spec = tty_config(["true"])
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in ("/dev", "/dev/pts")]
    spec["mounts"].append({"destination": "/dev/pts/pts", "type": "devpts", "source": "devpts",
                           "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]})
    b = make_bundle(spec)
    (b.rootfs / "dev" / "pts").mkdir()
    os.mknod(b.rootfs / "dev" / "pts" / "ptmx", 0o666 | 0o020000, os.makedev(5, 2))
    cs = ConsoleSocket(b.dir / "c.sock")
    try:
        p = b.pyoci("create", "--bundle", str(b.dir), "--console-socket", cs.path, b.id)
    finally:
        cs.close()
    assert p.returncode == 1 and "is not the ptmx of a devpts instance" in p.stderr, p.stderr
    assert not (b.root / b.id).exists()


# --------------------------------------------------------------------------- foreground: pyoci relays

def spawn_on_pty(argv: list[str], rows: int, cols: int) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start pyoci with a new pty as its controlling terminal (so SIGWINCH reaches it); returns master, slave."""
    master, slave = pty.openpty()
    set_winsize(slave, rows, cols)

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, preexec_fn=ctty)
    return proc, master, slave


def test_run_t_relays_a_real_terminal(make_bundle):
    script = "stty size; read line; echo got:$line; stty size; exit 3"
    b = make_bundle(tty_config(["sh", "-c", script], size=(10, 20)))
    proc, master, slave = spawn_on_pty([*PYOCI, "--root", str(b.root), "run", "--bundle", str(b.dir), b.id], 40, 132)
    original = termios.tcgetattr(slave)
    try:
        out = read_until(master, "40 132")
        assert "40 132" in out, out  # our terminal's size wins over consoleSize (runc)
        raw = termios.tcgetattr(slave)  # while the container runs, our terminal is raw …
        assert not raw[3] & (termios.ICANON | termios.ECHO | termios.ISIG) and not raw[0] & termios.ICRNL
        assert raw[1] & termios.OPOST  # … with output processing kept
        set_winsize(master, 50, 100)  # SIGWINCH to pyoci, which resizes the container's pty
        time.sleep(0.5)
        os.write(master, b"hello\r")
        out = read_until(master, "50 100")
        assert "got:hello" in out and "50 100" in out, out
        assert proc.wait(timeout=20) == 3
        assert termios.tcgetattr(slave) == original  # restored
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert not (b.root / b.id).exists()


def test_run_t_signal_is_forwarded_and_terminal_restored(make_bundle):
    b = make_bundle(tty_config(["sh", "-c", "trap 'echo trapped; exit 42' TERM; echo ready; while :; do sleep 0.1; done"]))
    proc, master, slave = spawn_on_pty([*PYOCI, "--root", str(b.root), "run", "--bundle", str(b.dir), b.id], 24, 80)
    original = termios.tcgetattr(slave)
    try:
        assert "ready" in read_until(master, "ready")
        proc.send_signal(signal.SIGTERM)
        assert "trapped" in read_until(master, "trapped")
        assert proc.wait(timeout=20) == 42
        assert termios.tcgetattr(slave) == original
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_run_t_without_a_terminal_of_our_own(make_bundle):
    """`ctr run -t … </dev/null`: no host terminal to make raw; output still relayed, ONLCR off on the pty."""
    b = make_bundle(tty_config(["sh", "-c", "tty; echo two; exit 4"]))
    with open(b.dir / "out", "wb") as out:
        p = subprocess.run([*PYOCI, "--root", str(b.root), "run", "--bundle", str(b.dir), b.id], cwd=REPO,
                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 4, p.stderr
    assert (b.dir / "out").read_bytes() == b"/dev/pts/0\ntwo\n"


def test_exec_t_in_the_foreground(make_bundle):
    b = make_bundle(tty_config(["sleep", "300"]))
    cs = ConsoleSocket(b.dir / "c.sock")
    try:
        b.pyoci("run", "--detach", "--bundle", str(b.dir), "--console-socket", cs.path, b.id, check=True)
        _, anc = cs.receive()
        os.close(master_of(anc))
    finally:
        cs.close()
    proc, master, slave = spawn_on_pty([*PYOCI, "--root", str(b.root), "exec", "-t", b.id, "sh", "-c",
                                        "tty; stty size; read x; echo got:$x; exit 6"], 30, 90)
    original = termios.tcgetattr(slave)
    try:
        out = read_until(master, "30 90")
        assert "/dev/pts/" in out and "30 90" in out, out
        os.write(master, b"abc\r")
        assert "got:abc" in read_until(master, "got:abc")
        assert proc.wait(timeout=20) == 6
        assert termios.tcgetattr(slave) == original
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    p = b.pyoci("exec", "-t", "--detach", b.id, "true")
    assert p.returncode == 255 and "console socket" in p.stderr
