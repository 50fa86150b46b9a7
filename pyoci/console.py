"""Container terminals (process.terminal): the pty is allocated inside the container from the container's own
devpts, and its master is handed to the caller over --console-socket (cli-surface.md §6, security.md class 8).

Runtime side, before the fork (the socket path is a host path):   connect(path) -> fd
Container side, after pivot_root (init) or the chroot into the container's root (exec):   setup(fd, plan)
  1. open /dev/pts/ptmx inside the root (symlinks stay in it, no magic links); verify devpts, inode 2,
     char 5:2 on the fd: what counts is what was opened, so a symlinked /dev/pts works as with runc/crun
  2. unlock it and get the peer with TIOCGPTPEER (fallback: /dev/pts/N verified on the same devpts)
  3. consoleSize (TIOCSWINSZ) and the owner of the peer (the process user: runc fixStdioPermissions)
  4. init only: bind the peer *fd* onto /dev/console, created O_CREAT|O_EXCL|O_NOFOLLOW, never a symlink
  5. one sendmsg on the socket: data = the master's name, exactly one SCM_RIGHTS fd (the master)
  6. dup the peer onto 0, 1, 2 and make it the controlling terminal (the caller did setsid)
Nothing here imports anything at call time: setup() runs inside the container (security.md §2).
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import socket
import stat
import struct
import termios
from collections.abc import Mapping
from typing import Any

from pyoci.errors import ConfigError, PyociError, SyscallError
from pyoci.linux import libc, mountfd

_NO_LINKS = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS
_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_O = os.O_CLOEXEC


@dataclasses.dataclass(frozen=True, slots=True)
class ConsolePlan:
    rows: int        # consoleSize.height; 0 leaves the kernel's default
    cols: int        # consoleSize.width
    uid: int         # process.user.uid: owner of the peer
    mount: bool      # bind the peer onto /dev/console (the container init; never for exec)
    onlcr: bool = True  # False: pyoci relays itself (foreground exec -t) and wants raw "\n" (runc ClearONLCR)


def plan(process: Mapping[str, Any], *, mount: bool, source: str = "config.json") -> ConsolePlan | None:
    """None when process.terminal is false (consoleSize is then ignored, config.md#process)."""
    if not process.get("terminal"):
        return None
    size = process.get("consoleSize") or {}
    rows, cols = size.get("height", 0), size.get("width", 0)
    for name, v in (("height", rows), ("width", cols)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFFFF:
            raise ConfigError(f"{source}: process.consoleSize.{name}: {v!r} is not a terminal size (0..65535)")
    uid = (process.get("user") or {}).get("uid", 0)
    return ConsolePlan(rows=rows, cols=cols, uid=uid if isinstance(uid, int) else 0, mount=mount)


def connect(path: str) -> int:
    """Connect to the caller's console socket (an AF_UNIX SOCK_STREAM listener) and return the fd."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise PyociError(f"--console-socket {path!r}: cannot connect: [Errno {exc.errno}] {exc.strerror}") from None
    return sock.detach()


def setup(sock_fd: int, p: ConsolePlan) -> None:
    """Allocate the pty, send the master, make the peer our stdio and controlling terminal. Closes sock_fd."""
    try:
        master = _open_ptmx()
        try:
            libc.pty_unlock(master)
            index = libc.pty_index(master)
            peer = _open_peer(master, index)
            try:
                if p.rows and p.cols:
                    set_size(peer, p.rows, p.cols)
                if not p.onlcr:
                    _clear_onlcr(peer)
                if p.uid and os.fstat(peer).st_uid != p.uid:
                    _fchown(peer, p.uid)
                if p.mount:
                    _mount_console(peer)
                send_master(sock_fd, master, "/dev/pts/ptmx")  # the master's name, as runc sends it
                for fd in (0, 1, 2):
                    os.dup2(peer, fd, inheritable=True)
            finally:
                os.close(peer)
        finally:
            os.close(master)  # the container must not keep the master: only the caller holds it
    finally:
        try:
            os.close(sock_fd)
        except OSError:
            pass
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except OSError as exc:
        raise SyscallError("ioctl TIOCSCTTY (make the pty the controlling terminal)", exc.errno or errno.EIO) from None


def _open_ptmx() -> int:
    """The container's /dev/pts/ptmx, resolved inside the root; its identity is checked on the fd."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | _O)
    try:
        fd = libc.openat2(root, "dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | _O, resolve=_IN_ROOT)
    except SyscallError as exc:
        raise SyscallError("process.terminal: open /dev/pts/ptmx (a devpts mount at /dev/pts is required)",
                           exc.errno or errno.EIO) from None
    finally:
        os.close(root)
    try:
        st = os.fstat(fd)
        if (libc.fstatfs(fd)[0] != libc.DEVPTS_SUPER_MAGIC or st.st_ino != 2 or not stat.S_ISCHR(st.st_mode)
                or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (libc.PTMX_MAJOR, libc.PTMX_MINOR)):
            raise PyociError("process.terminal: /dev/pts/ptmx is not the ptmx of a devpts instance "
                             f"(ino {st.st_ino}, rdev {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}): refusing it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_peer(master: int, index: int) -> int:
    flags = os.O_RDWR | os.O_NOCTTY | _O
    try:
        peer = libc.pty_peer(master, flags)
    except SyscallError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):  # kernels before 4.13 lack TIOCGPTPEER
            raise
        peer = _open_peer_by_name(index, flags)
    try:
        _verify_peer(master, peer, index)
    except BaseException:
        os.close(peer)
        raise
    return peer


def _open_peer_by_name(index: int, flags: int) -> int:
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | _O)
    try:
        return libc.openat2(root, f"dev/pts/{index}", flags, resolve=_IN_ROOT)  # verified by the caller
    finally:
        os.close(root)


def _verify_peer(master: int, peer: int, index: int) -> None:
    """The peer must be pty slave `index` (char 136+index/256 : index%256) on the master's devpts."""
    st, mst = os.fstat(peer), os.fstat(master)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    ok = (libc.fstatfs(peer)[0] == libc.DEVPTS_SUPER_MAGIC and st.st_dev == mst.st_dev and stat.S_ISCHR(st.st_mode)
          and libc.UNIX98_PTY_SLAVE_MAJOR <= major < libc.UNIX98_PTY_SLAVE_MAJOR + libc.UNIX98_PTY_MAJOR_COUNT
          and (major - libc.UNIX98_PTY_SLAVE_MAJOR) * 256 + minor == index)
    if not ok:
        raise PyociError(f"process.terminal: the pty peer is not /dev/pts/{index} of the container's devpts "
                         f"(rdev {major}:{minor}): refusing it")


def _fchown(peer: int, uid: int) -> None:
    try:
        os.fchown(peer, uid, -1)
    except OSError as exc:
        raise SyscallError("process.terminal: chown the pty to process.user.uid", exc.errno or errno.EPERM,
                           uid=uid) from None


def _mount_console(peer: int) -> None:
    """Bind the peer onto /dev/console. /dev and /dev/console must not be symlinks (CVE-2025-52565): a
    missing /dev/console is created O_EXCL|O_NOFOLLOW, an existing one is only ever opened O_PATH."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | _O)
    try:
        dev = libc.openat2(root, "dev", os.O_PATH | os.O_DIRECTORY | _O, resolve=_NO_LINKS)
    except SyscallError as exc:
        raise SyscallError("process.terminal: open /dev for /dev/console", exc.errno or errno.EIO) from None
    finally:
        os.close(root)
    try:
        target = _console_target(dev)
        try:
            tree = mountfd.clone_tree(peer, recursive=False)
            try:
                mountfd.attach(tree, target)
            finally:
                os.close(tree)
        except SyscallError as exc:
            raise SyscallError("process.terminal: bind the pty onto /dev/console", exc.errno or errno.EIO) from None
        finally:
            os.close(target)
    finally:
        os.close(dev)


def _console_target(dev: int) -> int:
    try:
        os.close(os.open("console", os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_RDONLY | _O, 0o666, dir_fd=dev))
    except FileExistsError:
        pass  # opened O_PATH below: an existing device node is never opened for real
    except OSError as exc:
        raise SyscallError("process.terminal: create /dev/console", exc.errno or errno.EIO) from None
    try:
        fd = os.open("console", os.O_PATH | os.O_NOFOLLOW | _O, dir_fd=dev)
    except OSError as exc:
        raise SyscallError("process.terminal: open /dev/console", exc.errno or errno.EIO) from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
        os.close(fd)
        raise PyociError(f"process.terminal: /dev/console in the container is a "
                         f"{'symlink' if stat.S_ISLNK(mode) else 'directory'}: refusing to mount the pty there")
    return fd


def send_master(sock_fd: int, master: int, name: str) -> None:
    """cli-surface.md §6: one sendmsg, data = the pty's name, exactly one SCM_RIGHTS cmsg with one fd."""
    sock = socket.socket(fileno=os.dup(sock_fd))
    try:
        sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
    except OSError as exc:
        raise PyociError(f"--console-socket: cannot send the pty master: [Errno {exc.errno}] {exc.strerror}") from None
    finally:
        sock.close()


def recv_master(sock: socket.socket, *, block: bool = True) -> tuple[int, str] | None:
    """The receiving end of send_master (tests, `run`/`exec` in the foreground). None: nothing was sent."""
    try:  # socket.recv_fds of Python 3.11 ignores its flags argument: recvmsg directly
        data, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(4 * 4), 0 if block else socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    fds = [fd for level, kind, payload in anc if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
           for fd in struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4])]
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        if not data and not fds:
            return None
        raise PyociError(f"console socket: expected one pty master fd, got {len(fds)}")
    os.set_inheritable(fds[0], False)
    return fds[0], data.decode(errors="replace")


def _clear_onlcr(fd: int) -> None:
    try:
        mode = termios.tcgetattr(fd)
        mode[1] &= ~termios.ONLCR
        termios.tcsetattr(fd, termios.TCSANOW, mode)
    except termios.error as exc:
        raise SyscallError("tcsetattr (clear ONLCR)", exc.args[0] if exc.args else errno.EIO) from None


def get_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal fd, None when it is not a terminal."""
    try:
        rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def set_size(fd: int, rows: int, cols: int) -> None:
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError as exc:
        raise SyscallError("ioctl TIOCSWINSZ", exc.errno or errno.EIO, rows=rows, cols=cols) from None
