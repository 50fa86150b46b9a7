"""linux.sysctl: only namespaced keys, only when the container has its own namespace of that kind.

A key that is not namespaced (kernel.core_pattern, vm.*) or whose namespace the container shares with the
host (net.* without a network namespace) would change the host: refused, naming the key (runc
configs/validate sysctl). Writes go through a verified procfs handle (security.md class 6).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from pyoci.errors import ConfigError
from pyoci.linux.proc import ProcHandle

IPC_KEYS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                      "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})
IPC_PREFIXES = ("fs.mqueue.",)
UTS_KEYS = frozenset({"kernel.hostname", "kernel.domainname"})
NET_PREFIXES = ("net.",)
_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")


@dataclasses.dataclass(frozen=True, slots=True)
class SysctlWrite:
    key: str
    value: str
    namespace: str  # "ipc", "network" or "uts"


def namespace_of(key: str) -> str | None:
    """The namespace type a sysctl key belongs to, None when it is global."""
    if key in IPC_KEYS or key.startswith(IPC_PREFIXES):
        return "ipc"
    if key.startswith(NET_PREFIXES):
        return "network"
    if key in UTS_KEYS:
        return "uts"
    return None


def plan(spec: dict[str, Any]) -> tuple[SysctlWrite, ...]:
    linux = spec.get("linux") or {}
    sysctls = linux.get("sysctl") or {}
    own = {n.get("type") for n in linux.get("namespaces") or []}
    out = []
    for key, value in sysctls.items():
        field = f"config.json: linux.sysctl[{key!r}]"
        if not isinstance(key, str) or not _KEY.match(key):
            raise ConfigError(f"{field}: not a valid sysctl name")
        if not isinstance(value, str):
            raise ConfigError(f"{field}: value must be a string")
        ns = namespace_of(key)
        if ns is None:
            raise ConfigError(f"{field}: not a namespaced sysctl: setting it would change the host")
        if ns not in own:
            raise ConfigError(f"{field}: needs the container's own {ns} namespace (it shares the host's)")
        if key == "kernel.hostname" and spec.get("hostname") and spec["hostname"] != value:
            raise ConfigError(f"{field}: conflicts with hostname {spec['hostname']!r}")
        out.append(SysctlWrite(key, value, ns))
    return tuple(out)


def apply(proc: ProcHandle, writes: tuple[SysctlWrite, ...]) -> None:
    for w in writes:
        proc.write_sysctl(w.key, w.value)
