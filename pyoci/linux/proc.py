"""A verified procfs handle for every /proc read and write (security.md classes 5/6), and pure /proc parsers.

ProcHandle holds an fd of a *private* procfs instance (fsopen/fsmount, detached: nothing in any mount
table, so no rootfs symlink or bind mount can redirect it), falling back to a clone of /proc, then to /proc
itself; each is checked with fstatfs (PROC_SUPER_MAGIC) and inode 1 (the procfs root). Paths below it are
opened with RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV: 'self' and 'thread-self' are
translated by reading the link (a plain symlink), never followed.
"""
from __future__ import annotations

import dataclasses
import errno
import os
from typing import Literal, Self

from pyoci.errors import SyscallError
from pyoci.linux import libc

PROC_ROOT_INO = 1
_STRICT = libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS | libc.RESOLVE_NO_XDEV
Who = int | Literal["self", "thread-self"]


class ProcHandle:
    """An fd of a verified procfs root. Use as a context manager or call close()."""

    def __init__(self, fd: int, how: str) -> None:
        self.fd, self.how = fd, how

    @classmethod
    def open(cls, *, allow_fallback: bool = True) -> ProcHandle:
        """A private procfs instance for the caller's pid namespace (fsopen), else a clone of /proc."""
        errs: list[SyscallError] = []
        for how in ("fsopen", "open_tree", "open") if allow_fallback else ("fsopen",):
            try:
                fd = _open_procfs(how)
            except SyscallError as exc:
                errs.append(exc)
                continue
            try:
                verify_procfs_root(fd)
            except BaseException:
                os.close(fd)
                raise
            return cls(fd, how)
        raise errs[-1]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- paths -------------------------------------------------------------------------------------
    def pid_dir(self, who: Who) -> str:
        """'1234' or '1234/task/1235' for who, as seen by this procfs instance (its pid namespace)."""
        if isinstance(who, int):
            return str(self._translate(who))
        try:
            target = os.readlink(who, dir_fd=self.fd)  # plain symlink in procfs: '1234' or '1234/task/1235'
        except OSError as exc:
            raise SyscallError("readlink", exc.errno or errno.EIO, path=f"/proc/{who}") from None
        if not target or target.startswith("/") or ".." in target.split("/"):
            raise SyscallError(f"readlink /proc/{who} (unexpected {target!r})", errno.EINVAL)
        return target

    def _translate(self, pid: int) -> int:
        """pid of the caller's namespace → pid in this procfs instance (they differ for a host /proc
        seen from a child pid namespace). The pidfd's fdinfo 'Pid:' is in the instance's namespace."""
        if self.pid_dir("self") == str(os.getpid()):
            return pid
        pidfd = libc.pidfd_open(pid)
        try:
            text = self.read(f"{self.pid_dir('thread-self')}/fdinfo/{pidfd}")
        finally:
            os.close(pidfd)
        for line in text.splitlines():
            if line.startswith("Pid:"):
                n = int(line.split()[1])
                if n <= 0:
                    raise SyscallError("translate pid (not visible in this /proc)", errno.ESRCH, pid=pid)
                return n
        raise SyscallError("translate pid (no Pid: in fdinfo)", errno.ENOSYS, pid=pid)

    def openat(self, path: str, flags: int = os.O_RDONLY) -> int:
        """Open a path relative to the procfs root without following any symlink or crossing a mount."""
        path = path.lstrip("/")
        fd = libc.openat2(self.fd, path, flags | os.O_NOFOLLOW, 0, _STRICT)
        try:
            if libc.fstatfs(fd)[0] != libc.PROC_SUPER_MAGIC:
                raise SyscallError("open (not on procfs)", errno.EXDEV, path=f"/proc/{path}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, path: str) -> str:
        fd = self.openat(path)
        try:
            chunks = []
            while True:
                try:
                    b = os.read(fd, 65536)
                except OSError as exc:
                    raise SyscallError("read", exc.errno or errno.EIO, path=f"/proc/{path}") from None
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace")
        finally:
            os.close(fd)

    def write(self, path: str, data: str | bytes) -> None:
        """One write(2) of data (procfs files such as uid_map need it in a single call)."""
        raw = data.encode() if isinstance(data, str) else data
        fd = self.openat(path, os.O_WRONLY)
        try:
            n = os.write(fd, raw)
        except OSError as exc:
            shown = raw.decode(errors="replace").strip()[:80]
            raise SyscallError("write", exc.errno or errno.EIO, path=f"/proc/{path}", data=shown) from None
        finally:
            os.close(fd)
        if n != len(raw):
            raise SyscallError("write (short)", errno.EIO, path=f"/proc/{path}")

    def read_pid_file(self, who: Who, name: str) -> str:
        return self.read(f"{self.pid_dir(who)}/{name}")

    def write_pid_file(self, who: Who, name: str, data: str | bytes) -> None:
        """e.g. write_pid_file(pid, 'uid_map', text), write_pid_file('thread-self', 'attr/exec', label)."""
        self.write(f"{self.pid_dir(who)}/{name}", data)

    def write_sysctl(self, key: str, value: str) -> None:
        """linux.sysctl key 'net.ipv4.ip_forward' → /proc/sys/net/ipv4/ip_forward (caller validates key)."""
        self.write("sys/" + key.replace(".", "/"), value)

    def read_sysctl(self, key: str) -> str:
        return self.read("sys/" + key.replace(".", "/")).strip()

    def ns_inode(self, who: Who, ns: str) -> int:
        """Inode of /proc/<who>/ns/<ns> (a magic link: stat'ed through an O_PATH|O_NOFOLLOW fd is the link,
        so read the target text 'net:[4026531840]' instead)."""
        try:
            target = os.readlink(f"{self.pid_dir(who)}/ns/{ns}", dir_fd=self.fd)
        except OSError as exc:
            raise SyscallError("readlink", exc.errno or errno.EIO, path=f"/proc/{who}/ns/{ns}") from None
        return parse_ns_link(target)

    def mountinfo(self, who: Who = "thread-self") -> list[MountInfo]:
        return parse_mountinfo(self.read_pid_file(who, "mountinfo"))

    def start_time(self, pid: int) -> int:
        return parse_stat_start_time(self.read_pid_file(pid, "stat"))


def _open_procfs(how: str) -> int:
    if how == "fsopen":
        fsfd = libc.fsopen("proc")
        try:
            libc.fsconfig(fsfd, libc.FSCONFIG_CMD_CREATE)
            return libc.fsmount(fsfd, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV | libc.MOUNT_ATTR_NOEXEC)
        finally:
            os.close(fsfd)
    if how == "open_tree":
        return libc.open_tree(-100, "/proc", libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | libc.AT_RECURSIVE)
    try:
        return os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError("open", exc.errno or errno.EIO, path="/proc") from None


def verify_procfs_root(fd: int) -> None:
    """Raise unless fd is the root directory of a procfs (not a file in it, not a fake /proc)."""
    if libc.fstatfs(fd)[0] != libc.PROC_SUPER_MAGIC:
        raise SyscallError("verify /proc (not procfs)", errno.EXDEV)
    if os.fstat(fd).st_ino != PROC_ROOT_INO:
        raise SyscallError("verify /proc (not the procfs root)", errno.EXDEV)


# --- pure parsers ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MountInfo:
    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mountpoint: str
    options: tuple[str, ...]
    optional: tuple[str, ...]     # shared:N master:N propagate_from:N unbindable
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)

    @property
    def slave(self) -> bool:
        return any(o.startswith("master:") for o in self.optional)

    @property
    def unbindable(self) -> bool:
        return "unbindable" in self.optional


def _unescape(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Parse /proc/<pid>/mountinfo (proc(5))."""
    result = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, sep, right = line.partition(" - ")
        if not sep:
            raise ValueError(f"bad mountinfo line: {line!r}")
        f = left.split(" ")
        r = right.split(" ")
        major, minor = f[2].split(":")
        result.append(MountInfo(
            mount_id=int(f[0]), parent_id=int(f[1]), major=int(major), minor=int(minor),
            root=_unescape(f[3]), mountpoint=_unescape(f[4]), options=tuple(f[5].split(",")),
            optional=tuple(x for x in f[6:] if x), fstype=r[0], source=_unescape(r[1]) if len(r) > 1 else "",
            super_options=tuple(r[2].split(",")) if len(r) > 2 else ()))
    return result


def parse_stat_start_time(text: str) -> int:
    """Field 22 (starttime) of /proc/<pid>/stat; the comm field may contain spaces and parentheses."""
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[19])  # rest[0] is field 3


def parse_ns_link(target: str) -> int:
    """'net:[4026531840]' → 4026531840."""
    lb, rb = target.find("[") + 1, target.rfind("]")
    if lb <= 0 or rb < lb:
        raise ValueError(f"not a namespace link: {target!r}")
    return int(target[lb:rb])


def start_time(pid: int) -> int:
    """Start time (field 22) of pid through a verified procfs handle."""
    with ProcHandle.open() as proc:
        return proc.start_time(pid)


def ns_inode(who: Who, ns: str) -> int:
    with ProcHandle.open() as proc:
        return proc.ns_inode(who, ns)


def ns_type_of(fd: int) -> int:
    """CLONE_NEW* flag of a namespace fd (ioctl NS_GET_NSTYPE)."""
    import fcntl
    try:
        return fcntl.ioctl(fd, libc.NS_GET_NSTYPE)
    except OSError as exc:
        raise SyscallError("ioctl NS_GET_NSTYPE", exc.errno or 22) from None
