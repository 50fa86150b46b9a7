"""Error tree for pyoci: every failure the CLI reports is a PyociError."""
from __future__ import annotations

import errno as _errno
import os


class PyociError(Exception):
    """Base of every error pyoci reports as one line."""

    exit_code = 1


class ConfigError(PyociError):
    """config.json (or a process.json / flag value) is invalid or unsupported."""


class ContainerExists(PyociError):
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid!r} already exists")


class ContainerNotFound(PyociError):
    # "does not exist" is matched by containerd and podman: keep the phrase.
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid!r} does not exist")


class InvalidStatus(PyociError):
    def __init__(self, cid: str, status: str, op: str, msg: str | None = None) -> None:
        self.status, self.op = status, op
        super().__init__(msg or f"cannot {op} container {cid!r}: status is {status}")


class HookError(PyociError):
    """A hook failed, timed out or could not be run."""


class ChildError(PyociError):
    """The container-side process reported an error (its message is relayed)."""


class SyscallError(PyociError, OSError):
    """A system call failed; renders as 'op k=v ...: [Errno N] text'."""

    def __init__(self, op: str, err: int, **args: object) -> None:
        self.op, self.args_desc = op, args
        OSError.__init__(self, err, os.strerror(err))
        self.errno = err

    def __str__(self) -> str:
        desc = " ".join(f"{k}={v}" for k, v in self.args_desc.items() if v is not None)
        name = _errno.errorcode.get(self.errno, "E?")
        return f"{self.op}{' ' + desc if desc else ''}: [Errno {self.errno}] {os.strerror(self.errno)} ({name})"
