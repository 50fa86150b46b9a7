"""Mounts done on file descriptors, never on path strings that something in the rootfs could redirect.

mount(2) needs path strings: we give it '<pid>/task/<tid>/fd/N' relative to a cwd that is a verified,
private procfs instance (ProcHandle), so the target is exactly the directory or file we opened and checked,
and no /proc in any mount table (the host's before pivot, the container's after) is trusted. The new mount
API (open_tree, move_mount, mount_setattr, fsopen/fsmount) is used where it is fd-only anyway.
"""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence

from pyoci.errors import SyscallError
from pyoci.linux import libc
from pyoci.linux.proc import ProcHandle

# statvfs f_flag → mount(2) flags, to keep the flags a user namespace locks on a bind remount.
_ST_TO_MS = ((libc.ST_RDONLY, libc.MS_RDONLY), (libc.ST_NOSUID, libc.MS_NOSUID), (libc.ST_NODEV, libc.MS_NODEV),
             (libc.ST_NOEXEC, libc.MS_NOEXEC), (libc.ST_NOATIME, libc.MS_NOATIME),
             (libc.ST_NODIRATIME, libc.MS_NODIRATIME), (libc.ST_RELATIME, libc.MS_RELATIME))
_ATIME = libc.MS_NOATIME | libc.MS_RELATIME | libc.MS_STRICTATIME


class FdMounter:
    """mount(2) with fd targets/sources through a private procfs handle."""

    def __init__(self, proc: ProcHandle) -> None:
        self.proc = proc
        self._tid = proc.pid_dir("thread-self")

    def fd_ref(self, fd: int) -> str:
        """The magic-link path of fd relative to the procfs root (used with cwd = procfs root)."""
        return f"{self._tid}/fd/{fd}"

    @contextlib.contextmanager
    def _in_proc(self) -> Iterator[None]:
        """cwd = the procfs root for the duration; back to the old cwd, or to '/' when the old one is not
        accessible to us any more (a caller's 0700 home seen from a user namespace)."""
        try:
            here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            here = -1
        try:
            os.fchdir(self.proc.fd)
            yield
        finally:
            try:
                if here < 0:
                    raise PermissionError
                os.fchdir(here)
            except OSError:
                os.chdir("/")
            finally:
                if here >= 0:
                    os.close(here)

    def fd_path(self, fd: int) -> str:
        """Where fd is, as a path from our root (readlink of the fd's magic link)."""
        try:
            return os.readlink(self.fd_ref(fd), dir_fd=self.proc.fd)
        except OSError as exc:
            raise SyscallError("readlink", exc.errno or errno.EIO, fd=fd) from None

    def mount(self, source: str | None, target_fd: int, fstype: str | None, flags: int, data: str | None,
              *, what: str, source_fd: int | None = None) -> None:
        """mount(2) onto target_fd (and from source_fd for binds); 'what' names the target in errors."""
        src = self.fd_ref(source_fd) if source_fd is not None else source
        with self._in_proc():
            try:
                libc.mount(src, self.fd_ref(target_fd), fstype, flags, data)
            except SyscallError as exc:
                raise SyscallError("mount", exc.errno or errno.EIO, src=source, dst=what, type=fstype,
                                   flags=libc.flag_names(flags) or None, data=data or None) from None

    def bind(self, source_fd: int, target_fd: int, *, recursive: bool, what: str, source: str) -> None:
        self.mount(source, target_fd, None, libc.MS_BIND | (libc.MS_REC if recursive else 0), None,
                   what=what, source_fd=source_fd)

    def remount_bind(self, target_fd: int, flags: int, *, what: str) -> None:
        """MS_REMOUNT|MS_BIND with flags; on EPERM (flags locked by a user namespace) retry keeping the
        mount's current flags, as runc does."""
        flags = flags & ~(libc.MS_REC | libc.MS_PROPAGATION) | libc.MS_REMOUNT | libc.MS_BIND
        try:
            self.mount(None, target_fd, None, flags, None, what=what)
        except SyscallError as exc:
            if exc.errno != errno.EPERM:
                raise
            locked = current_flags(target_fd)
            if flags & _ATIME:
                locked &= ~_ATIME
            if flags | locked == flags:
                raise
            self.mount(None, target_fd, None, flags | locked, None, what=what)

    def propagate(self, target_fd: int, flag: int, *, what: str) -> None:
        self.mount(None, target_fd, None, flag, None, what=what)

    def umount(self, target_fd: int, flags: int, *, what: str) -> None:
        with self._in_proc():
            try:
                libc.umount2(self.fd_ref(target_fd), flags)
            except SyscallError as exc:
                raise SyscallError("umount2", exc.errno or errno.EIO, target=what) from None


def current_flags(fd: int) -> int:
    """MS_* flags of the mount fd lives on (from fstatvfs)."""
    st = os.fstatvfs(fd)
    return sum(ms for stf, ms in _ST_TO_MS if st.f_flag & stf)


def mount_id(fd: int) -> int:
    return libc.statx_mnt_id(fd)


def setattr_fd(fd: int, attr_set: int, attr_clr: int, *, recursive: bool, propagation: int = 0,
               userns_fd: int = 0) -> None:
    flags = libc.AT_EMPTY_PATH | (libc.AT_RECURSIVE if recursive else 0)
    libc.mount_setattr(fd, "", flags, attr_set, attr_clr, propagation, userns_fd)


def clone_tree(fd: int, *, recursive: bool) -> int:
    """A detached copy of the mount tree at fd (open_tree OPEN_TREE_CLONE)."""
    flags = libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | libc.AT_EMPTY_PATH
    return libc.open_tree(fd, "", flags | (libc.AT_RECURSIVE if recursive else 0))


def attach(tree_fd: int, target_fd: int) -> None:
    """move_mount a detached tree onto the file or directory target_fd refers to."""
    libc.move_mount(tree_fd, "", target_fd, "", libc.MOVE_MOUNT_F_EMPTY_PATH | libc.MOVE_MOUNT_T_EMPTY_PATH)


def new_fs(fstype: str, params: Sequence[tuple[str, str | None]], attrs: int) -> int:
    """A detached new filesystem mount (fsopen/fsconfig/fsmount); params are (key, value|None)."""
    fsfd = libc.fsopen(fstype)
    try:
        for key, value in params:
            if value is None:
                libc.fsconfig(fsfd, libc.FSCONFIG_SET_FLAG, key)
            else:
                libc.fsconfig(fsfd, libc.FSCONFIG_SET_STRING, key, value)
        libc.fsconfig(fsfd, libc.FSCONFIG_CMD_CREATE)
        return libc.fsmount(fsfd, attrs)
    finally:
        os.close(fsfd)


def clone_at(dir_fd: int, name: str) -> int:
    """A detached bind of the single file or directory name in dir_fd, not following a symlink there
    (open_tree OPEN_TREE_CLONE; dir_fd may be a detached mount)."""
    flags = libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | libc.AT_SYMLINK_NOFOLLOW
    return libc.open_tree(dir_fd, name, flags)
