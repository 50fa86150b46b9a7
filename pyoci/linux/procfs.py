"""Writes to /proc files of a process through a /proc handle verified to be procfs (security.md class 5/6)."""
from __future__ import annotations

import fcntl
import os

from pyoci.errors import SyscallError
from pyoci.linux import libc


def open_proc_root() -> int:
    """O_PATH fd of /proc, refused unless it really is a procfs."""
    fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if libc.fstatfs(fd)[0] != libc.PROC_SUPER_MAGIC:
        os.close(fd)
        raise SyscallError("open /proc (not procfs)", 22)
    return fd


def write(proc_fd: int, pid: int | str, name: str, data: str) -> None:
    """Write data to /proc/<pid>/<name> without following symlinks or crossing mounts."""
    path = f"{pid}/{name}"
    fd = libc.openat2(proc_fd, path, os.O_WRONLY,
                      resolve=libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS | libc.RESOLVE_NO_XDEV)
    try:
        if libc.fstatfs(fd)[0] != libc.PROC_SUPER_MAGIC:
            raise SyscallError(f"write /proc/{path} (not procfs)", 22)
        try:
            os.write(fd, data.encode())
        except OSError as exc:
            raise SyscallError("write", exc.errno or 5, path=f"/proc/{path}", data=data.strip()) from None
    finally:
        os.close(fd)


def ns_type(fd: int) -> int:
    """CLONE_NEW* flag of a namespace fd (ioctl NS_GET_NSTYPE)."""
    try:
        return fcntl.ioctl(fd, libc.NS_GET_NSTYPE)
    except OSError as exc:
        raise SyscallError("ioctl NS_GET_NSTYPE", exc.errno or 22) from None
