"""Namespaces: config type ↔ CLONE_* flag, the join-vs-unshare plan, id-map text (pure)."""
from __future__ import annotations

import dataclasses
from typing import Any

from pyoci.errors import ConfigError
from pyoci.linux import libc

# config.json type → (clone flag, /proc/<pid>/ns/<name>)
NS_TYPES: dict[str, tuple[int, str]] = {
    "user": (libc.CLONE_NEWUSER, "user"),
    "pid": (libc.CLONE_NEWPID, "pid"),
    "network": (libc.CLONE_NEWNET, "net"),
    "ipc": (libc.CLONE_NEWIPC, "ipc"),
    "uts": (libc.CLONE_NEWUTS, "uts"),
    "mount": (libc.CLONE_NEWNS, "mnt"),
    "cgroup": (libc.CLONE_NEWCGROUP, "cgroup"),
    "time": (libc.CLONE_NEWTIME, "time"),
}
# Join order: user first (it grants the caps for the rest), mount last (it changes what paths mean).
JOIN_ORDER = ["user", "pid", "network", "ipc", "uts", "cgroup", "time", "mount"]


@dataclasses.dataclass(frozen=True, slots=True)
class NsPlan:
    new: frozenset[str]                 # types to unshare
    join: tuple[tuple[str, str], ...]   # (type, path) in JOIN_ORDER
    unshare_flags: int                  # all new types except user (unshared first, on its own)

    @property
    def new_user(self) -> bool:
        return "user" in self.new

    def has_own(self, ns: str) -> bool:
        """True when the container gets its own (new or joined) namespace of that type."""
        return ns in self.new or any(t == ns for t, _ in self.join)


def plan(spec: dict[str, Any]) -> NsPlan:
    nss = (spec.get("linux") or {}).get("namespaces") or []
    new: set[str] = set()
    join: dict[str, str] = {}
    seen: set[str] = set()
    for i, ns in enumerate(nss):
        t = ns.get("type")
        if t not in NS_TYPES:
            raise ConfigError(f"config.json: linux.namespaces[{i}].type: unknown namespace type {t!r}")
        if t in seen:
            raise ConfigError(f"config.json: linux.namespaces[{i}].type: duplicate namespace type {t!r}")
        seen.add(t)
        path = ns.get("path")
        if path:
            if not path.startswith("/"):
                raise ConfigError(f"config.json: linux.namespaces[{i}].path: {path!r} is not absolute")
            join[t] = path
        else:
            new.add(t)
    flags = 0
    for t in new - {"user"}:
        flags |= NS_TYPES[t][0]
    return NsPlan(frozenset(new), tuple((t, join[t]) for t in JOIN_ORDER if t in join), flags)


def idmap_text(mappings: list[dict[str, int]]) -> str:
    """uidMappings/gidMappings → the text written to /proc/<pid>/{uid,gid}_map."""
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def host_id(mappings: list[dict[str, int]], cid: int) -> int | None:
    """Map a container id to the host id through the mappings (None when unmapped)."""
    for m in mappings:
        if m["containerID"] <= cid < m["containerID"] + m["size"]:
            return m["hostID"] + cid - m["containerID"]
    return None
