"""Cgroups: detect v1 / hybrid / v2 under a root, place a container's cgroup, build its manager.

Where a container's cgroup goes (cgroupfs driver, as runc's fs/fs2 drivers do):
  linux.cgroupsPath "/a/b" (absolute) → <each hierarchy's mount>/a/b
  "a/b" (relative)                    → under the runtime's own cgroup in each hierarchy (/proc/self/cgroup)
  unset                               → "/pyoci/<id>": absolute on purpose; inside the caller's cgroup a v2 host
                                        could not enable controllers (no-internal-process rule)
"..": cleaned like runc's CleanPath, so a path never leaves the hierarchy. `--systemd-cgroup` (slice:prefix:name)
is refused with a clear error: without systemd there is no one to ask, and pyoci has no D-Bus driver.
Hybrid hosts: every v1 hierarchy (named ones too, e.g. name=systemd) plus the cgroup2 mount, as runc does.

Import-light on purpose: manager_from_state() runs on every kill/delete/pause/state.
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any

from pyoci.cgroups.fs import REAL, CgroupError, CgroupFS
from pyoci.cgroups.manager import Manager
from pyoci.errors import ConfigError

__all__ = ["DEFAULT_PARENT", "CgroupError", "Layout", "Manager", "detect", "manager_for", "manager_from_state"]

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/pyoci"
V1_CONTROLLERS = frozenset({"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
                            "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc"})


@dataclass(frozen=True, slots=True)
class Layout:
    root: str
    mode: str                              # "v1" | "hybrid" | "v2"
    v1: tuple[tuple[str, str], ...]        # (hierarchy key, mount dir): "memory", "cpu", "name=systemd"
    unified: str | None                    # cgroup2 mount dir
    v2_available: frozenset[str]           # controllers in the cgroup2 root's cgroup.controllers


def detect(root: str = DEFAULT_ROOT, fs: CgroupFS = REAL) -> Layout:
    """Look at the hierarchies mounted under root (a v2 mount, v1 directories, a cgroup2 'unified' dir).

    Raises: CgroupError when root holds no cgroup hierarchy.
    """
    def controllers(d: str) -> frozenset[str]:
        return frozenset((fs.read_opt(os.path.join(d, "cgroup.controllers")) or "").split())

    if fs.exists(os.path.join(root, "cgroup.controllers")):
        return Layout(root, "v2", (), root, controllers(root))
    v1: dict[str, str] = {}
    unified = None
    for name in fs.listdir(root):
        d = os.path.join(root, name)
        if not fs.isdir(d) or not fs.exists(os.path.join(d, "cgroup.procs")):
            continue
        if fs.exists(os.path.join(d, "cgroup.controllers")):
            unified = unified or d
            continue
        real = os.path.realpath(d)   # cpu -> cpu,cpuacct: one hierarchy, named by every controller it has
        for part in os.path.basename(real).split(",") + [name]:
            key = part if part in V1_CONTROLLERS or part.startswith("name=") else f"name={part}"
            if "," not in part:
                v1.setdefault(key, real)
    if not v1 and unified is None:
        raise CgroupError(f"no cgroup hierarchy is mounted under {root!r}")
    avail = controllers(unified) if unified else frozenset()
    return Layout(root, "hybrid" if v1 and unified else "v1" if v1 else "v2", tuple(sorted(v1.items())),
                  unified, avail)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup → {hierarchy key: path}; the cgroup2 line ('0::/x') has key ''."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for key in (parts[1].split(",") if parts[1] else [""]):
            out[key] = parts[2]
    return out


def clean_path(p: str) -> str:
    """runc's utils.CleanPath: lexical clean; a relative path cannot climb out with '..'."""
    if not p:
        return ""
    if posixpath.isabs(p):
        return posixpath.normpath(p)
    return posixpath.relpath(posixpath.normpath(posixpath.join("/", p)), "/")


def container_path(spec: dict[str, Any], cid: str, *, systemd: bool = False) -> str:
    """The cgroup path of the container, absolute or relative (see module doc).

    Raises: ConfigError for a malformed path, CgroupError when systemd is asked for.
    """
    raw = (spec.get("linux") or {}).get("cgroupsPath")
    if raw is not None and not isinstance(raw, str):
        raise ConfigError(f"linux.cgroupsPath: {raw!r} must be a string")
    if systemd:
        if raw and raw.count(":") != 2:
            raise ConfigError(f"linux.cgroupsPath: {raw!r} must be 'slice:prefix:name' with --systemd-cgroup")
        if not os.path.isdir("/run/systemd/system"):
            raise CgroupError("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); "
                              "drop the flag to use the cgroupfs driver")
        raise CgroupError("--systemd-cgroup: the systemd cgroup driver is not supported by pyoci; "
                          "drop the flag to use the cgroupfs driver")
    if not raw:
        return posixpath.join(DEFAULT_PARENT, cid)
    path = clean_path(raw)
    if path in ("/", ".", ""):
        raise ConfigError(f"linux.cgroupsPath: {raw!r} would put the container in the root cgroup")
    return path


def manager_for(spec: dict[str, Any], cid: str, *, systemd: bool = False, root: str = DEFAULT_ROOT,
                fs: CgroupFS = REAL, proc_cgroup: str | None = None, default_devices: bool = True) -> Manager:
    """The manager for a new container (nothing is created until .create()).

    default_devices: device rules given to apply()/update() are followed by runc's default allow list (what
    runc and crun do), so a deny-all spec still has /dev/null.
    proc_cgroup: the text of /proc/self/cgroup (tests pass their own; read when a relative path needs it).
    """
    inner = container_path(spec, cid, systemd=systemd)
    layout = detect(root, fs)
    own: dict[str, str] = {}
    if not posixpath.isabs(inner):
        if proc_cgroup is None:
            with open("/proc/self/cgroup", encoding="utf-8") as f:
                proc_cgroup = f.read()
        own = parse_proc_cgroup(proc_cgroup)

    def place(key: str, mount: str) -> str:
        rel = inner if posixpath.isabs(inner) else posixpath.join(own.get(key, "/"), inner)
        return mount.rstrip("/") + posixpath.normpath("/" + rel.lstrip("/"))

    mounts = dict(layout.v1)
    if layout.unified:
        mounts[""] = layout.unified
    paths = {k: place(k, m) for k, m in mounts.items()}
    # The default parent is pyoci's own: whoever destroys the last container in it removes it (a parent
    # named by a cgroupsPath is removed only by the container that made it).
    shared = sorted({m.rstrip("/") + DEFAULT_PARENT for m in mounts.values()}) if inner.startswith(DEFAULT_PARENT + "/") \
        else []
    m = _manager(layout.mode, paths, mounts, shared, layout.v2_available, fs)
    if default_devices:
        from pyoci.cgroups.resources import default_devices as defaults
        m.device_defaults = defaults(spec)
    return m


def manager_from_state(d: dict[str, Any], fs: CgroupFS = REAL) -> Manager:
    """Rebuild a manager from to_state() output without probing the host."""
    m = _manager(d["mode"], d["paths"], d["mounts"], d.get("created") or [],
                 frozenset(d.get("v2_available") or ()), fs)
    m.device_defaults = list(d.get("device_defaults") or [])
    return m


def _manager(mode: str, paths: dict[str, str], mounts: dict[str, str], created: list[str],
             v2_available: frozenset[str], fs: CgroupFS) -> Manager:
    if mode == "v2":
        from pyoci.cgroups.v2 import V2Manager
        return V2Manager(mode, paths, mounts, created=created, v2_available=v2_available, fs=fs)
    from pyoci.cgroups.v1 import V1Manager
    return V1Manager(mode, paths, mounts, created=created, v2_available=v2_available, fs=fs)
