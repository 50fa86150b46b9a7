"""Capability sets: names ↔ numbers, a pure per-set plan, and the apply steps confine.py runs in order.

config.md#posix-process (spec 1.3): a capability that cannot be mapped or granted is logged as a warning and
the container still runs; a name that is not a capability at all is a config error.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from pyoci.errors import ConfigError
from pyoci.linux import libc

# capability(7) numbers, linux/capability.h (CAP_LAST_CAP is 40 in Linux 5.9 … 6.18).
CAPS: dict[str, int] = {name: nr for nr, name in enumerate("""
CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID CAP_SETUID CAP_SETPCAP
CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER
CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE
CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP
CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF
CAP_CHECKPOINT_RESTORE
""".split())}
NAMES: dict[int, str] = {v: k for k, v in CAPS.items()}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


@dataclasses.dataclass(frozen=True, slots=True)
class CapPlan:
    """The five final sets as 64-bit masks, plus the warnings for what could not be granted."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int
    last_cap: int
    warnings: tuple[str, ...] = ()


def mask(nrs: Iterable[int]) -> int:
    m = 0
    for nr in nrs:
        m |= 1 << nr
    return m


def names(m: int) -> list[str]:
    """Mask → sorted capability names (unknown bits as CAP_<n>)."""
    return [NAMES.get(nr, f"CAP_{nr}") for nr in range(64) if m >> nr & 1]


def plan(caps: Mapping[str, Sequence[str]] | None, *, last_cap: int, available: int,
         at: str = "process.capabilities") -> CapPlan:
    """Pure: spec capabilities → final masks.

    `available` is what this process can still hand out (its bounding ∩ permitted sets). An absent
    `capabilities` object, or an absent set, means the empty set: the runtime's own caps are never inherited.
    Raises ConfigError for a name that is not a capability (a typo); everything else is a warning.
    """
    caps = caps or {}
    warnings: list[str] = []
    warned: set[str] = set()
    wanted: dict[str, int] = {}
    for set_name in SETS:
        m = 0
        for i, name in enumerate(caps.get(set_name) or []):
            nr = CAPS.get(name)
            if nr is None:
                raise ConfigError(f"{at}.{set_name}[{i}]: {name!r} is not a capability")
            if nr > last_cap:
                why = f"capability {name} is not known to the running kernel (last cap {last_cap}): ignored"
            elif not available >> nr & 1:
                why = f"capability {name} is not in the runtime's bounding set and cannot be granted: ignored"
            else:
                m |= 1 << nr
                continue
            if name not in warned:
                warned.add(name)
                warnings.append(why)
        wanted[set_name] = m
    bnd, eff, prm, inh, amb = (wanted[s] for s in SETS)
    # Kernel rules (capabilities(7)); each violation would make capset/prctl fail with EPERM, so it is a
    # capability that "cannot be granted": warn and leave it out.
    for bad, why in ((eff & ~prm, "effective but not permitted"),
                     (inh & ~bnd, "inheritable but not in the bounding set"),
                     (amb & ~(prm & inh & bnd), "ambient but not permitted and inheritable")):
        if bad:
            warnings.append(f"capabilities {', '.join(names(bad))} are {why}: ignored")
    eff &= prm
    inh &= bnd
    amb &= prm & inh
    return CapPlan(bnd, eff, prm, inh, amb, last_cap, tuple(warnings))


def last_cap() -> int:
    """Highest capability number the kernel knows (/proc/sys/kernel/cap_last_cap, probed with CAPBSET_READ)."""
    nr = 63
    while nr > 0:
        try:
            libc.prctl(libc.PR_CAPBSET_READ, nr)
            return nr
        except OSError:
            nr -= 1
    return 0


def available(last: int) -> int:
    """Capabilities this thread can still grant: in its bounding set and its permitted set."""
    bnd = mask(nr for nr in range(last + 1) if libc.prctl(libc.PR_CAPBSET_READ, nr) == 1)
    return bnd & libc.capget()[1]


def drop_bounding(p: CapPlan) -> None:
    """First step: needs CAP_SETPCAP, which we still have."""
    for nr in range(p.last_cap + 1):
        if not p.bounding >> nr & 1 and libc.prctl(libc.PR_CAPBSET_READ, nr) == 1:
            libc.prctl(libc.PR_CAPBSET_DROP, nr)


def set_sets(p: CapPlan) -> None:
    """After setuid (with keepcaps): effective, permitted, inheritable at once."""
    libc.capset(p.effective, p.permitted, p.inheritable)


def set_ambient(p: CapPlan) -> None:
    """Last: ambient caps need to be both permitted and inheritable already."""
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    for nr in range(p.last_cap + 1):
        if p.ambient >> nr & 1:
            libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, nr)
