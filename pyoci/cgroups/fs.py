"""File operations on a cgroup filesystem (real or a fake tree in a test's tmp dir), errors as CgroupError.

Cgroup files are opened without O_CREAT, so a file the kernel does not provide is an ENOENT that names it
instead of a new regular file. Tests subclass CgroupFS to make mkdir populate the files the kernel would.
"""
from __future__ import annotations

import errno as _errno
import os

from pyoci.errors import PyociError


class CgroupError(PyociError):
    """A cgroup operation failed or a limit cannot be applied on this host."""

    def __init__(self, msg: str, err: int | None = None) -> None:
        super().__init__(msg)
        self.errno = err


def describe(exc: OSError) -> str:
    """'[Errno 16] Device or resource busy (EBUSY)', the runtime's errno rendering."""
    err = exc.errno or 0
    return f"[Errno {err}] {os.strerror(err)} ({_errno.errorcode.get(err, 'E?')})"


class CgroupFS:
    """read/write/mkdir/rmdir/list on cgroup paths; every failure is a CgroupError naming the path."""

    def read(self, path: str) -> str:
        try:
            with open(path, "rb") as f:
                return f.read().decode()
        except OSError as exc:
            raise CgroupError(f"read {path!r}: {describe(exc)}", exc.errno) from None

    def read_opt(self, path: str) -> str | None:
        """The file's content, or None when it does not exist (or is unreadable)."""
        try:
            with open(path, "rb") as f:
                return f.read().decode()
        except OSError:
            return None

    def write(self, path: str, value: str) -> None:
        # O_TRUNC matters only for fake trees (real cgroup files ignore it); no O_CREAT on purpose.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as exc:
            raise CgroupError(f"open {path!r}: {describe(exc)}", exc.errno) from None
        try:
            os.write(fd, value.encode())
        except OSError as exc:
            raise CgroupError(f"write {value!r} to {path!r}: {describe(exc)}", exc.errno) from None
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def subdirs(self, path: str) -> list[str]:
        return [os.path.join(path, n) for n in self.listdir(path) if os.path.isdir(os.path.join(path, n))
                and not os.path.islink(os.path.join(path, n))]

    def mkdir(self, path: str) -> None:
        """mkdir; raises FileExistsError/FileNotFoundError untouched (the caller decides), others wrapped."""
        try:
            os.mkdir(path, 0o755)
        except (FileExistsError, FileNotFoundError):
            raise
        except OSError as exc:
            raise CgroupError(f"mkdir {path!r}: {describe(exc)}", exc.errno) from None

    def rmdir(self, path: str) -> None:
        """rmdir; raises OSError untouched (callers retry on EBUSY)."""
        os.rmdir(path)


REAL = CgroupFS()
