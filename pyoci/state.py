"""Container state: Status, the State record, status derivation and the on-disk store.

Layout: <root>/<id>/ (0o711, created with an exclusive mkdir) holds state.json (atomic writes),
config.json (a snapshot of the bundle's config taken at create) and exec.fifo (present while `created`).
"""
from __future__ import annotations

import enum
import errno
import fcntl
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from pyoci.errors import ConfigError, ContainerExists, ContainerNotFound, PyociError

_ID_RE = re.compile(r"^[A-Za-z0-9_+.-]+$")
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
FIFO = "exec.fifo"


class Status(enum.StrEnum):
    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


def validate_id(cid: str) -> None:
    """runc's rule (factory_linux.go validateID): [A-Za-z0-9_+.-]+, not '.' or '..'."""
    if not cid or cid in (".", "..") or not _ID_RE.match(cid):
        raise ConfigError(f"invalid container id {cid[:64]!r}: must match [A-Za-z0-9_+.-]+ and not be '.' or '..'")
    if len(cid) > 255:  # it names the state directory: NAME_MAX
        raise ConfigError(f"invalid container id {cid[:64] + '...'!r}: longer than 255 characters")


def default_root() -> str:
    """runc's rule: /run/pyoci for root, $XDG_RUNTIME_DIR/pyoci otherwise (a pure function of euid/env)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() != 0 and xdg:
        return os.path.join(xdg, "pyoci")
    return "/run/pyoci"


class State:
    """What state.json records. A plain class, not a dataclass: `state`, `kill` and `delete` load it on
    every containerd/podman call, and importing dataclasses costs ~5 ms."""

    __slots__ = ("id", "bundle", "rootfs", "created", "oci_version", "pid", "start_time", "status",
                 "annotations", "cgroup", "netdevices", "owner", "extra")

    def __init__(self, id: str, bundle: str, rootfs: str, created: str, oci_version: str = "1.3.0",  # noqa: A002
                 pid: int = 0, start_time: int = 0, status: str = "creating",
                 annotations: dict[str, str] | None = None, cgroup: dict[str, Any] | None = None,
                 netdevices: list[dict[str, Any]] | None = None, owner: str = "",
                 extra: dict[str, Any] | None = None) -> None:
        self.id, self.bundle, self.rootfs, self.created = id, bundle, rootfs, created
        self.oci_version = oci_version
        self.pid = pid
        self.start_time = start_time    # field 22 of /proc/<pid>/stat, defends against pid reuse
        self.status = status            # the recorded phase; the reported status is derived
        self.annotations = annotations if annotations is not None else {}
        self.cgroup = cgroup
        self.netdevices = netdevices if netdevices is not None else []
        self.owner = owner
        self.extra = extra if extra is not None else {}

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> State:
        return cls(**{k: v for k, v in d.items() if k in cls.__slots__})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, State) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"State({self.to_json()!r})"

    def oci(self, status: str) -> dict[str, Any]:
        """The OCI state object, field order as runc prints it."""
        out: dict[str, Any] = {
            "ociVersion": self.oci_version, "id": self.id,
            "pid": self.pid if status not in (Status.STOPPED,) else 0,
            "status": str(status), "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
        }
        if self.annotations:
            out["annotations"] = self.annotations
        out["owner"] = self.owner
        return out


def derive_status(recorded: str, pid_alive: bool, start_time_matches: bool,
                  fifo_exists: bool, frozen: bool) -> Status:
    """Pure: what state a container is in, from facts about its init process."""
    if recorded == Status.CREATING:
        return Status.CREATING if pid_alive and start_time_matches else Status.STOPPED
    if not (pid_alive and start_time_matches):
        return Status.STOPPED
    if frozen:
        return Status.PAUSED
    if fifo_exists:
        return Status.CREATED
    return Status.RUNNING


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, rename over the target."""
    d, base = os.path.split(path)
    tmp = os.path.join(d, f".{base}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class StateStore:
    """<root>/<id>/ directories: create exclusively, lock, load, save, list, remove."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def dir(self, cid: str) -> str:
        validate_id(cid)
        return os.path.join(self.root, cid)

    def create_dir(self, cid: str) -> str:
        path = self.dir(cid)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise ContainerExists(cid) from None
        os.chmod(path, 0o711)
        return path

    def lock(self, cid: str) -> int:
        """Hold an exclusive flock on the container dir; returns the fd (closing it unlocks)."""
        try:
            fd = os.open(self.dir(cid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(cid) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def save(self, st: State) -> None:
        write_atomic(os.path.join(self.dir(st.id), STATE_FILE), json.dumps(st.to_json()).encode())

    def load(self, cid: str) -> State:
        try:
            with open(os.path.join(self.dir(cid), STATE_FILE), "rb") as f:
                return State.from_json(json.loads(f.read()))
        except FileNotFoundError:
            raise ContainerNotFound(cid) from None
        except (ValueError, TypeError) as exc:
            raise PyociError(f"container {cid!r}: corrupt state file: {exc}") from None

    def load_config(self, cid: str) -> dict[str, Any]:
        with open(os.path.join(self.dir(cid), CONFIG_FILE), "rb") as f:
            return json.loads(f.read())  # type: ignore[no-any-return]

    def fifo_path(self, cid: str) -> str:
        return os.path.join(self.dir(cid), FIFO)

    def exists(self, cid: str) -> bool:
        return os.path.isdir(self.dir(cid))

    def ids(self) -> Iterator[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return
        for n in names:
            if _ID_RE.match(n) and n not in (".", "..") and os.path.isfile(os.path.join(self.root, n, STATE_FILE)):
                yield n

    def remove(self, cid: str) -> None:
        import shutil  # only delete needs it
        try:
            shutil.rmtree(self.dir(cid))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
