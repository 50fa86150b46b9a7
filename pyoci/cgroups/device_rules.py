"""linux.resources.devices: parse, v1 devices.allow/deny lines, and the kernel's v1 semantics as data (pure).

The v2 BPF program (bpf.py) is generated from `effective()`, which replays the rules the way the v1 device
controller does (security/device_cgroup.c): a wildcard `a` rule resets the default and drops the exceptions;
a rule against the default adds (merges into) an exception; a rule matching the default removes access bits
from the exactly-matching exception. v1 and v2 containers therefore see the same device policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyoci.errors import ConfigError

ANY = -1
ACCESS_ORDER = "rwm"


@dataclass(frozen=True, slots=True)
class DeviceRule:
    allow: bool
    type: str       # 'a' (only for the wildcard reset), 'b' or 'c'
    major: int      # ANY = wildcard
    minor: int
    access: str     # subset of "rwm", canonical order

    @property
    def is_reset(self) -> bool:
        return self.type == "a"

    def v1_line(self) -> str:
        if self.is_reset:
            return "a"
        mj = "*" if self.major == ANY else str(self.major)
        mn = "*" if self.minor == ANY else str(self.minor)
        return f"{self.type} {mj}:{mn} {self.access}"


@dataclass(frozen=True, slots=True)
class Effective:
    default_allow: bool
    exceptions: tuple[DeviceRule, ...]  # each with allow == not default_allow


def _canon(access: str) -> str:
    return "".join(c for c in ACCESS_ORDER if c in access)


def _num(v: Any, field: str) -> int:
    if v is None:
        return ANY
    if isinstance(v, bool) or not isinstance(v, int) or v < ANY:
        raise ConfigError(f"{field}: {v!r} is not a device number")
    return v


def parse(devices: list[dict[str, Any]], field: str = "linux.resources.devices") -> tuple[DeviceRule, ...]:
    """Validate spec device rules; a typed-`a` rule with numbers or partial access becomes a `b` and a `c` rule.

    Raises: ConfigError naming the entry.
    """
    if not isinstance(devices, list):
        raise ConfigError(f"{field}: must be an array")
    out: list[DeviceRule] = []
    for i, d in enumerate(devices):
        f = f"{field}[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("allow"), bool):
            raise ConfigError(f"{f}: 'allow' (boolean) is required")
        typ = d.get("type") or "a"
        if typ not in ("a", "b", "c"):
            raise ConfigError(f"{f}.type: {typ!r} must be 'a', 'b' or 'c'")
        access = d.get("access") or "rwm"
        if not isinstance(access, str) or set(access) - set(ACCESS_ORDER):
            raise ConfigError(f"{f}.access: {access!r} must be a combination of 'r', 'w' and 'm'")
        major, minor = _num(d.get("major"), f + ".major"), _num(d.get("minor"), f + ".minor")
        acc = _canon(access)
        if typ == "a" and major == ANY and minor == ANY and acc == ACCESS_ORDER:
            out.append(DeviceRule(d["allow"], "a", ANY, ANY, acc))
        elif typ == "a":
            # The v1 kernel reads any "a ..." line as "all devices, all access": never write one that is narrower.
            out += [DeviceRule(d["allow"], t, major, minor, acc) for t in ("b", "c")]
        else:
            out.append(DeviceRule(d["allow"], typ, major, minor, acc))
    return tuple(out)


def v1_writes(rules: tuple[DeviceRule, ...]) -> list[tuple[str, str]]:
    """(file, line) pairs for devices.allow / devices.deny, in rule order."""
    return [("devices.allow" if r.allow else "devices.deny", r.v1_line()) for r in rules]


def effective(rules: tuple[DeviceRule, ...]) -> Effective:
    """Replay the rules with v1 kernel semantics; a new cgroup starts as 'allow all'."""
    default_allow = True
    exc: list[DeviceRule] = []
    for r in rules:
        if r.is_reset:
            default_allow, exc = r.allow, []
            continue
        same = [i for i, e in enumerate(exc) if (e.type, e.major, e.minor) == (r.type, r.major, r.minor)]
        if r.allow != default_allow:
            if same:
                e = exc[same[0]]
                exc[same[0]] = DeviceRule(e.allow, e.type, e.major, e.minor, _canon(e.access + r.access))
            else:
                exc.append(r)
        else:
            for i in reversed(same):
                e = exc[i]
                left = _canon("".join(c for c in e.access if c not in r.access))
                if left:
                    exc[i] = DeviceRule(e.allow, e.type, e.major, e.minor, left)
                else:
                    del exc[i]
    return Effective(default_allow, tuple(exc))


def _matches(e: DeviceRule, typ: str, major: int, minor: int) -> bool:
    return e.type == typ and e.major in (ANY, major) and e.minor in (ANY, minor)


def permits(eff: Effective, typ: str, major: int, minor: int, access: str) -> bool:
    """Reference semantics (match_exception / match_exception_partial in device_cgroup.c)."""
    if eff.default_allow:
        return not any(_matches(e, typ, major, minor) and set(access) & set(e.access) for e in eff.exceptions)
    return any(_matches(e, typ, major, minor) and set(access) <= set(e.access) for e in eff.exceptions)
