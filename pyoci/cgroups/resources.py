"""linux.resources → the cgroup file writes, for v1 and v2 (pure; config-linux.md "Control groups").

`plan()` takes the controllers the host offers and, per controller, uses the v1 hierarchy when it is mounted,
else the cgroup2 one (hybrid hosts: hugetlb lives only on the unified hierarchy here). A value with no place to
go is a CgroupError naming the field; nothing is skipped silently. 0 means "unset" for the numeric fields runc
treats that way (limit, swap, reservation, shares, quota, period, realtime*, weight).

v1 → v2 conversions follow runc / opencontainers/cgroups (utils.go):
  cpu.shares → cpu.weight: 10^((l²+125l)/612 − 7/34), l = log2(shares), rounded up, clamped to 1..10000
      (runc ≥ 1.3.1 and crun ≥ 1.23; older runc used 1 + (shares−2)·9999/262142, see shares_to_weight_linear)
  memory.swap (memory+swap) → memory.swap.max = swap − limit; −1 stays "max"
  blkio weight (10..1000) → io.weight (1..10000): 1 + (w−10)·9999/990 (io.bfq.weight takes w as is)
  quota/period → cpu.max "quota period" ("max" when quota ≤ 0)
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from pyoci.cgroups import device_rules
from pyoci.cgroups.fs import CgroupError
from pyoci.errors import ConfigError

R = "linux.resources"
_PAGESIZE = re.compile(r"^[1-9][0-9]*[KMG]B$")
_UNIFIED_KEY = re.compile(r"^[a-z0-9_]+\.[A-Za-z0-9_.]+$")


@dataclass(frozen=True, slots=True)
class Write:
    version: int            # 1: file in the v1 hierarchy of `controller`; 2: file in the cgroup2 directory
    controller: str         # v1 hierarchy or v2 controller ("" = core cgroup2 file, always present)
    file: str
    value: str
    field: str              # spec path, for errors
    fallbacks: tuple[tuple[str, str], ...] = ()   # (file, value) used when `file` does not exist
    optional: bool = False  # implied by another value, not asked for: skipped when the file is missing
    verify: bool = False    # read back and compare (cpu.shares is clamped silently by the kernel)


@dataclass(frozen=True, slots=True)
class Plan:
    writes: tuple[Write, ...] = ()
    devices: tuple[device_rules.DeviceRule, ...] | None = None  # for the v2 BPF program; None = untouched
    warnings: tuple[str, ...] = ()
    v2_controllers: frozenset[str] = field(default_factory=frozenset)  # to enable in the parents


def _int(v: Any, f: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{f}: {v!r} is not an integer")
    return v


def _set(d: dict[str, Any], key: str, f: str) -> int | None:
    """An integer field, None when absent or 0 (runc's "unset")."""
    v = d.get(key)
    if v is None:
        return None
    n = _int(v, f"{f}.{key}")
    return None if n == 0 else n


def _max(n: int) -> str:
    return "max" if n == -1 else str(n)


def shares_to_weight(shares: int) -> int:
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


def shares_to_weight_linear(shares: int) -> int:
    """runc ≤ 1.3.0's formula, kept for reference and comparisons with older runtimes."""
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(w: int) -> int:
    return 1 + (w - 10) * 9999 // 990


def swap_v2(swap: int | None, limit: int | None, f: str) -> int | None:
    """memory.swap (memory+swap) → memory.swap.max; None = leave alone."""
    if limit == -1 and swap is None:
        return -1
    if swap is None or swap == -1:
        return swap
    if limit is None or limit == -1:
        raise ConfigError(f"{f}.swap: {swap} cannot be converted for cgroup v2 without a memory limit")
    if swap < limit:
        raise ConfigError(f"{f}.swap: {swap} must be >= memory.limit {limit} (swap is memory+swap)")
    return swap - limit


# --- memory -------------------------------------------------------------------------------------------
def _memory_common(m: dict[str, Any], f: str) -> tuple[int | None, int | None, int | None, list[str]]:
    warn = []
    if m.get("kernel") not in (None, 0):
        warn.append(f"{f}.kernel is deprecated and ignored: kernels since 5.4 no longer enforce it")
    return _set(m, "limit", f), _set(m, "swap", f), _set(m, "reservation", f), warn


def _swappiness(m: dict[str, Any], f: str) -> int | None:
    v = m.get("swappiness")
    if v is None:
        return None
    n = _int(v, f + ".swappiness")
    if n in (-1, 2**64 - 1):   # docker's "unset", as int64 or uint64
        return None
    if not 0 <= n <= 100:
        raise ConfigError(f"{f}.swappiness: {n} is out of range 0..100")
    return n


def _memory_v1(m: dict[str, Any], f: str) -> tuple[list[Write], list[str]]:
    limit, swap, resv, warn = _memory_common(m, f)
    w: list[Write] = []

    def add(file: str, value: str, fld: str, optional: bool = False) -> None:
        w.append(Write(1, "memory", file, value, fld, optional=optional))

    if limit is not None:
        add("memory.limit_in_bytes", str(limit), f + ".limit")
    if swap is not None:
        add("memory.memsw.limit_in_bytes", str(swap), f + ".swap")
    elif limit == -1:   # "unlimited memory" also lifts memory+swap, where swap accounting exists (runc)
        add("memory.memsw.limit_in_bytes", "-1", f + ".swap", optional=True)
    if resv is not None:
        add("memory.soft_limit_in_bytes", str(resv), f + ".reservation")
    if (ktcp := _set(m, "kernelTCP", f)) is not None:
        add("memory.kmem.tcp.limit_in_bytes", str(ktcp), f + ".kernelTCP")
    if (sw := _swappiness(m, f)) is not None:
        add("memory.swappiness", str(sw), f + ".swappiness")
    if m.get("disableOOMKiller") is not None:
        add("memory.oom_control", "1" if m["disableOOMKiller"] else "0", f + ".disableOOMKiller")
    if m.get("useHierarchy") is not None:
        add("memory.use_hierarchy", "1" if m["useHierarchy"] else "0", f + ".useHierarchy")
    return w, warn


def _memory_v2(m: dict[str, Any], f: str) -> tuple[list[Write], list[str]]:
    limit, swap, resv, warn = _memory_common(m, f)
    w: list[Write] = []
    if limit is not None:
        w.append(Write(2, "memory", "memory.max", _max(limit), f + ".limit"))
    sv = swap_v2(swap, limit, f)
    if sv is not None:
        w.append(Write(2, "memory", "memory.swap.max", _max(sv), f + ".swap", optional=swap is None))
    if resv is not None:
        w.append(Write(2, "memory", "memory.low", _max(resv), f + ".reservation"))
    for key, bad, why in (("kernelTCP", None, "has no cgroup v2 equivalent"),
                          ("disableOOMKiller", True, "cannot be set on cgroup v2 (no OOM-killer switch)"),
                          ("useHierarchy", False, "cannot be false on cgroup v2 (always hierarchical)")):
        v = m.get(key)
        if v is not None and (v is bad if bad is not None else v != 0):
            raise CgroupError(f"{f}.{key}: {v!r} {why}")
    if _swappiness(m, f) is not None:
        raise CgroupError(f"{f}.swappiness: {m['swappiness']} cannot be set on cgroup v2 (no per-cgroup swappiness)")
    return w, warn


# --- cpu ----------------------------------------------------------------------------------------------
def _cpuset(c: dict[str, Any], f: str, version: int) -> list[Write]:
    w = []
    for key in ("cpus", "mems"):
        v = c.get(key)
        if v is not None and v != "":
            if not isinstance(v, str):
                raise ConfigError(f"{f}.{key}: {v!r} must be a string like '0-3,5'")
            w.append(Write(version, "cpuset", f"cpuset.{key}", v, f"{f}.{key}"))
    return w


def _cpu_idle(c: dict[str, Any], f: str) -> int | None:
    idle = c.get("idle")
    if idle is None:
        return None
    idle = _int(idle, f + ".idle")
    if idle == 1 and _set(c, "shares", f) is not None:
        raise ConfigError(f"{f}.shares: cannot be combined with {f}.idle=1 (an idle cgroup has a fixed weight)")
    return idle


def _cpu_v1(c: dict[str, Any], f: str) -> list[Write]:
    w = []
    idle = _cpu_idle(c, f)
    for key, file in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"), ("quota", "cpu.cfs_quota_us")):
        if (n := _set(c, key, f)) is not None:
            w.append(Write(1, "cpu", file, str(n), f"{f}.{key}", verify=key == "shares"))
    if c.get("burst") is not None:
        w.append(Write(1, "cpu", "cpu.cfs_burst_us", str(_int(c["burst"], f + ".burst")), f + ".burst"))
    # rt_period before rt_runtime: the runtime must fit the period (runc fs/cpu.go setRt).
    for key, file in (("realtimePeriod", "cpu.rt_period_us"), ("realtimeRuntime", "cpu.rt_runtime_us")):
        if (n := _set(c, key, f)) is not None:
            w.append(Write(1, "cpu", file, str(n), f"{f}.{key}"))
    if idle is not None:
        w.append(Write(1, "cpu", "cpu.idle", str(idle), f + ".idle"))
    return w


def _cpu_v2(c: dict[str, Any], f: str) -> list[Write]:
    w = []
    idle = _cpu_idle(c, f)
    if (shares := _set(c, "shares", f)) is not None:
        w.append(Write(2, "cpu", "cpu.weight", str(shares_to_weight(shares)), f + ".shares"))
    quota, period = _set(c, "quota", f), _set(c, "period", f)
    if quota is not None or period is not None:
        text = str(quota) if quota is not None and quota > 0 else "max"
        w.append(Write(2, "cpu", "cpu.max", text + (f" {period}" if period else ""), f + ".quota"))
    if c.get("burst") is not None:
        w.append(Write(2, "cpu", "cpu.max.burst", str(_int(c["burst"], f + ".burst")), f + ".burst"))
    for key in ("realtimePeriod", "realtimeRuntime"):
        if _set(c, key, f) is not None:
            raise CgroupError(f"{f}.{key}: realtime scheduling limits do not exist on cgroup v2")
    if idle is not None:
        w.append(Write(2, "cpu", "cpu.idle", str(idle), f + ".idle"))
    return w


# --- pids, hugetlb, rdma, network -----------------------------------------------------------------
def _pids(p: dict[str, Any], f: str, version: int) -> list[Write]:
    if p.get("limit") is None:
        return []
    n = _int(p["limit"], f + ".limit")
    # runtime-spec 1.3 (#1279): 0 is a real limit (no forks), negative means "max".
    return [Write(version, "pids", "pids.max", "max" if n < 0 else str(n), f + ".limit")]


def _hugetlb(limits: list[dict[str, Any]], f: str, version: int) -> list[Write]:
    w = []
    for i, h in enumerate(limits):
        ps, lim = h.get("pageSize"), h.get("limit")
        if not isinstance(ps, str) or not _PAGESIZE.match(ps):
            raise ConfigError(f"{f}[{i}].pageSize: {ps!r} must look like '2MB' or '1GB'")
        lim = _int(lim, f"{f}[{i}].limit")
        names = (f"hugetlb.{ps}.limit_in_bytes", f"hugetlb.{ps}.rsvd.limit_in_bytes") if version == 1 \
            else (f"hugetlb.{ps}.max", f"hugetlb.{ps}.rsvd.max")
        w.append(Write(version, "hugetlb", names[0], str(lim), f"{f}[{i}].limit"))
        # Reservations are charged separately since 5.7; limit them alike where the kernel has them (runc).
        w.append(Write(version, "hugetlb", names[1], str(lim), f"{f}[{i}].limit", optional=True))
    return w


def _rdma(r: dict[str, Any], f: str, version: int) -> list[Write]:
    w = []
    for dev, lim in sorted(r.items()):
        if not isinstance(lim, dict) or not dev or " " in dev:
            raise ConfigError(f"{f}[{dev!r}]: must map a device name to {{hcaHandles, hcaObjects}}")
        parts = []
        for key, name in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
            v = lim.get(key)
            parts.append(f"{name}={'max' if v is None else _int(v, f'{f}[{dev!r}].{key}')}")
        w.append(Write(version, "rdma", "rdma.max", f"{dev} {' '.join(parts)}", f"{f}[{dev!r}]"))
    return w


def _net_cls(n: dict[str, Any], f: str) -> list[Write]:
    if n.get("classID") is None:
        return []
    return [Write(1, "net_cls", "net_cls.classid", str(_int(n["classID"], f + ".classID")), f + ".classID")]


def _net_prio(n: dict[str, Any], f: str) -> list[Write]:
    w = []
    for i, p in enumerate(n.get("priorities") or []):
        name, prio = p.get("name"), p.get("priority")
        if not isinstance(name, str) or not name or " " in name:
            raise ConfigError(f"{f}.priorities[{i}].name: {name!r} is not an interface name")
        w.append(Write(1, "net_prio", "net_prio.ifpriomap", f"{name} {_int(prio, f'{f}.priorities[{i}].priority')}",
                       f"{f}.priorities[{i}]"))
    return w


def _no_v2(what: str) -> Callable[[dict[str, Any], str], list[Write]]:
    def plan(n: dict[str, Any], f: str) -> list[Write]:
        if what == "net_cls" and n.get("classID") is not None or what == "net_prio" and n.get("priorities"):
            raise CgroupError(f"{f}: the {what} controller is cgroup v1 only and is not mounted on this host")
        return []
    return plan


# --- blockIO ------------------------------------------------------------------------------------------
_THROTTLE = (("throttleReadBpsDevice", "read_bps_device", "rbps"), ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
             ("throttleReadIOPSDevice", "read_iops_device", "riops"),
             ("throttleWriteIOPSDevice", "write_iops_device", "wiops"))


def _dev(d: dict[str, Any], f: str) -> str:
    return f"{_int(d.get('major'), f + '.major')}:{_int(d.get('minor'), f + '.minor')}"


def _blkio_v1(b: dict[str, Any], f: str) -> list[Write]:
    w = []
    if (n := _set(b, "weight", f)) is not None:
        w.append(Write(1, "blkio", "blkio.weight", str(n), f + ".weight", fallbacks=(("blkio.bfq.weight", str(n)),)))
    if (n := _set(b, "leafWeight", f)) is not None:
        w.append(Write(1, "blkio", "blkio.leaf_weight", str(n), f + ".leafWeight"))
    for i, d in enumerate(b.get("weightDevice") or []):
        fi, dev = f"{f}.weightDevice[{i}]", _dev(d, f"{f}.weightDevice[{i}]")
        if d.get("weight") is None and d.get("leafWeight") is None:
            raise ConfigError(f"{fi}: needs 'weight' or 'leafWeight'")
        if d.get("weight") is not None:
            line = f"{dev} {_int(d['weight'], fi + '.weight')}"
            w.append(Write(1, "blkio", "blkio.weight_device", line, fi + ".weight",
                           fallbacks=(("blkio.bfq.weight_device", line),)))
        if d.get("leafWeight") is not None:
            w.append(Write(1, "blkio", "blkio.leaf_weight_device", f"{dev} {_int(d['leafWeight'], fi)}",
                           fi + ".leafWeight"))
    for key, file, _ in _THROTTLE:
        for i, d in enumerate(b.get(key) or []):
            fi = f"{f}.{key}[{i}]"
            w.append(Write(1, "blkio", f"blkio.throttle.{file}", f"{_dev(d, fi)} {_int(d.get('rate'), fi + '.rate')}", fi))
    return w


def _blkio_v2(b: dict[str, Any], f: str) -> list[Write]:
    w = []
    if (n := _set(b, "weight", f)) is not None:
        w.append(Write(2, "io", "io.bfq.weight", str(n), f + ".weight",
                       fallbacks=(("io.weight", f"default {blkio_to_io_weight(n)}"),)))
    if _set(b, "leafWeight", f) is not None:
        raise CgroupError(f"{f}.leafWeight: has no cgroup v2 equivalent")
    for i, d in enumerate(b.get("weightDevice") or []):
        fi, dev = f"{f}.weightDevice[{i}]", _dev(d, f"{f}.weightDevice[{i}]")
        if d.get("leafWeight") is not None:
            raise CgroupError(f"{fi}.leafWeight: has no cgroup v2 equivalent")
        if d.get("weight") is None:
            raise ConfigError(f"{fi}: needs 'weight'")
        n = _int(d["weight"], fi + ".weight")
        w.append(Write(2, "io", "io.bfq.weight", f"{dev} {n}", fi + ".weight",
                       fallbacks=(("io.weight", f"{dev} {blkio_to_io_weight(n)}"),)))
    for key, _, name in _THROTTLE:
        for i, d in enumerate(b.get(key) or []):
            fi = f"{f}.{key}[{i}]"
            rate = _int(d.get("rate"), fi + ".rate")
            w.append(Write(2, "io", "io.max", f"{_dev(d, fi)} {name}={rate if rate else 'max'}", fi))
    return w


# --- unified ------------------------------------------------------------------------------------------
def _unified(u: dict[str, Any], f: str) -> list[Write]:
    w = []
    for key, value in u.items():
        if not isinstance(key, str) or not _UNIFIED_KEY.match(key) or ".." in key:
            raise ConfigError(f"{f}[{key!r}]: not a cgroup v2 file name")
        if not isinstance(value, str):
            raise ConfigError(f"{f}[{key!r}]: value must be a string")
        ctrl = key.split(".", 1)[0]
        w.append(Write(2, "" if ctrl == "cgroup" else ctrl, key, value, f"{f}[{key!r}]"))
    return w


# --- dispatch -----------------------------------------------------------------------------------------
Planner = Callable[[Any, str], "list[Write] | tuple[list[Write], list[str]]"]

# (spec key, v1 controller, v2 controller, v1 planner, v2 planner)
_SECTIONS: tuple[tuple[str, str, str, Planner, Planner], ...] = (
    ("cpu", "cpuset", "cpuset", lambda c, f: _cpuset(c, f, 1), lambda c, f: _cpuset(c, f, 2)),
    ("memory", "memory", "memory", _memory_v1, _memory_v2),
    ("cpu", "cpu", "cpu", _cpu_v1, _cpu_v2),
    ("pids", "pids", "pids", lambda p, f: _pids(p, f, 1), lambda p, f: _pids(p, f, 2)),
    ("blockIO", "blkio", "io", _blkio_v1, _blkio_v2),
    ("hugepageLimits", "hugetlb", "hugetlb", lambda h, f: _hugetlb(h, f, 1), lambda h, f: _hugetlb(h, f, 2)),
    ("network", "net_cls", "", _net_cls, _no_v2("net_cls")),
    ("network", "net_prio", "", _net_prio, _no_v2("net_prio")),
    ("rdma", "rdma", "rdma", lambda r, f: _rdma(r, f, 1), lambda r, f: _rdma(r, f, 2)),
)
_KINDS = {"cpu": dict, "memory": dict, "pids": dict, "blockIO": dict, "hugepageLimits": list, "network": dict,
          "rdma": dict, "unified": dict, "devices": list}


def _run(planner: Planner, section: Any, f: str) -> tuple[list[Write], list[str]]:
    out = planner(section, f)
    return out if isinstance(out, tuple) else (out, [])


def plan(resources: dict[str, Any] | None, *, v1: Collection[str], v2: Collection[str] = (),
         cgroup2: bool = False) -> Plan:
    """The writes for `resources` given the mounted v1 controllers, the cgroup2 controllers and whether a
    cgroup2 hierarchy exists at all (for devices BPF and `unified`).

    Raises: ConfigError for invalid values, CgroupError for values this host cannot apply.
    """
    res = resources or {}
    if not isinstance(res, dict):
        raise ConfigError(f"{R}: must be an object")
    for key, kind in _KINDS.items():
        if res.get(key) is not None and not isinstance(res[key], kind):
            raise ConfigError(f"{R}.{key}: must be {'an array' if kind is list else 'an object'}")
    writes: list[Write] = []
    warnings: list[str] = []
    for key, c1, c2, p1, p2 in _SECTIONS:
        section = res.get(key)
        if not section:
            continue
        f = f"{R}.{key}"
        if c1 in v1:
            w, warn = _run(p1, section, f)
        elif c2 and c2 in v2 or (c2 == "" and cgroup2 and not v1):
            w, warn = _run(p2, section, f)
        else:
            w, warn = _run(p2 if not v1 else p1, section, f)
            if w:
                where = f"cgroup v1 '{c1}' hierarchy" + (f" or cgroup v2 '{c2}' controller" if c2 else "")
                raise CgroupError(f"{w[0].field}: cannot apply: no {where} on this host")
        writes += w
        warnings += warn
    devices = None
    if res.get("devices") is not None:
        rules = device_rules.parse(res["devices"], f"{R}.devices")
        if "devices" in v1:
            writes += [Write(1, "devices", file, line, f"{R}.devices") for file, line in device_rules.v1_writes(rules)]
        elif cgroup2:
            devices = rules
        elif rules:
            raise CgroupError(f"{R}.devices: cannot apply: no cgroup v1 'devices' hierarchy and no cgroup2 on this host")
    if res.get("unified"):
        if not cgroup2:
            raise CgroupError(f"{R}.unified: cannot apply: this host has no cgroup2 hierarchy")
        writes += _unified(res["unified"], f"{R}.unified")
    need = frozenset(w.controller for w in writes if w.version == 2 and w.controller)
    return Plan(tuple(writes), devices, tuple(warnings), need)


# runc's specconv AllowedDevices, appended after the spec's rules (so they win), like runc and crun do:
# mknod anything; use null, random, full, tty, zero, urandom, pts, ptmx and tun/tap.
DEFAULT_ALLOWED_DEVICES: tuple[dict[str, Any], ...] = tuple(
    {"allow": True, "type": t, **({"major": mj} if mj is not None else {}),
     **({"minor": mn} if mn is not None else {}), "access": acc}
    for t, mj, mn, acc in (("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"),
                           ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"),
                           ("c", 136, None, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm")))


def default_devices(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The device rules a container gets after its own: runc's allow list (specconv AllowedDevices). The
    linux.devices nodes get no implicit rule: runc 1.1.5 and crun 1.8.1 keep `c 42:0 r` as the user wrote it
    and honour a deny (conformance cgroup.devices.allow/deny)."""
    del spec
    return list(DEFAULT_ALLOWED_DEVICES)


def with_devices(resources: dict[str, Any] | None, extra: list[dict[str, Any]]) -> dict[str, Any]:
    """resources with `extra` appended to its device rules (when it restricts devices at all)."""
    res = dict(resources or {})
    if res.get("devices") is not None and extra:
        if not isinstance(res["devices"], list):
            raise ConfigError(f"{R}.devices: must be an array")
        res["devices"] = [*res["devices"], *extra]
    return res


def container_resources(spec: dict[str, Any]) -> dict[str, Any]:
    """linux.resources as the container gets them (spec rules, then default_devices())."""
    return with_devices((spec.get("linux") or {}).get("resources"), default_devices(spec))
