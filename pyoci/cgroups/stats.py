"""Cgroup statistics in the shape `runc events --stats` prints ("data" of a stats event, types/events.go).

Keys follow runc's JSON tags and omitempty rules (a zero or empty value under an omitempty tag is left out),
so clients decoding runc's output decode ours. Files a kernel lacks are read as absent, never as errors.
"""
from __future__ import annotations

import os
from typing import Any

from pyoci.cgroups.fs import CgroupFS

USER_HZ = 100
MAX_UINT64 = 2**64 - 1


class _Dir:
    def __init__(self, fs: CgroupFS, path: str | None) -> None:
        self.fs, self.path = fs, path

    def text(self, name: str) -> str | None:
        return self.fs.read_opt(os.path.join(self.path, name)) if self.path else None

    def num(self, name: str) -> int:
        t = (self.text(name) or "").strip()
        if t == "max":
            return MAX_UINT64
        try:
            return max(0, int(t))
        except ValueError:
            return 0

    def kv(self, name: str) -> dict[str, int]:
        out = {}
        for line in (self.text(name) or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
        return out

    def files(self, prefix: str, suffix: str) -> list[str]:
        if not self.path:
            return []
        return [n for n in self.fs.listdir(self.path) if n.startswith(prefix) and n.endswith(suffix)]


def _omit(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Drop omitempty keys whose value is zero/empty."""
    return {k: v for k, v in d.items() if k not in keys or v}


def cpu_list(text: str | None) -> list[int]:
    """'0-2,5' → [0, 1, 2, 5]."""
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out += range(int(a), int(b) + 1)
        elif part.strip():
            out.append(int(part))
    return out


def _cpuset(d: _Dir, effective: bool = False) -> dict[str, Any]:
    cpus = d.text("cpuset.cpus.effective" if effective else "cpuset.cpus")
    mems = d.text("cpuset.mems.effective" if effective else "cpuset.mems")
    out: dict[str, Any] = {"cpus": cpu_list(cpus), "cpu_exclusive": d.num("cpuset.cpu_exclusive"),
                           "mems": cpu_list(mems)}
    for key in ("mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page", "memory_spread_slab",
                "memory_pressure", "sched_load_balance"):
        out[key] = d.num(f"cpuset.{key}")
    t = (d.text("cpuset.sched_relax_domain_level") or "0").strip()
    out["sched_relax_domain_level"] = int(t) if t.lstrip("-").isdigit() else 0
    return _omit(out, "cpus", "mems")


def _entry(limit: int, usage: int, peak: int, failcnt: int) -> dict[str, Any]:
    return _omit({"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt}, "usage", "max")


def _blkio_entries(text: str | None, ops: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            mj, mn = parts[0].split(":")
            out.append(_omit({"major": int(mj), "minor": int(mn), "op": parts[1], "value": int(parts[2])},
                             "major", "minor", "op", "value"))
    return out


def _hugetlb_v1(d: _Dir) -> dict[str, Any]:
    out = {}
    for name in d.files("hugetlb.", ".limit_in_bytes"):
        ps = name.split(".")[1]
        if name != f"hugetlb.{ps}.limit_in_bytes":
            continue
        out[ps] = _omit({"usage": d.num(f"hugetlb.{ps}.usage_in_bytes"), "max": d.num(f"hugetlb.{ps}.max_usage_in_bytes"),
                         "failcnt": d.num(f"hugetlb.{ps}.failcnt")}, "usage", "max")
    return out


def _hugetlb_v2(d: _Dir) -> dict[str, Any]:
    out = {}
    for name in d.files("hugetlb.", ".current"):
        ps = name.split(".")[1]
        if name != f"hugetlb.{ps}.current":
            continue
        out[ps] = _omit({"usage": d.num(name), "failcnt": d.kv(f"hugetlb.{ps}.events").get("max", 0)}, "usage")
    return out


def _tail(hugetlb: dict[str, Any]) -> dict[str, Any]:
    return {"hugetlb": hugetlb, "intel_rdt": {}, "network_interfaces": None}


def v1(paths: dict[str, str], fs: CgroupFS) -> dict[str, Any]:
    acct, cpu, mem = _Dir(fs, paths.get("cpuacct")), _Dir(fs, paths.get("cpu")), _Dir(fs, paths.get("memory"))
    ticks = acct.kv("cpuacct.stat")
    per_k, per_u = [], []
    for line in (acct.text("cpuacct.usage_all") or "").splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            per_u.append(int(parts[1]))
            per_k.append(int(parts[2]))
    usage = _omit({"total": acct.num("cpuacct.usage"), "percpu": [int(x) for x in (acct.text("cpuacct.usage_percpu") or "").split()],
                   "percpu_kernel": per_k, "percpu_user": per_u,
                   "kernel": ticks.get("system", 0) * 10**9 // USER_HZ, "user": ticks.get("user", 0) * 10**9 // USER_HZ},
                  "total", "percpu", "percpu_kernel", "percpu_user")
    cs = cpu.kv("cpu.stat")
    throttling = _omit({"periods": cs.get("nr_periods", 0), "throttledPeriods": cs.get("nr_throttled", 0),
                        "throttledTime": cs.get("throttled_time", 0)}, "periods", "throttledPeriods", "throttledTime")
    raw = dict(sorted(mem.kv("memory.stat").items()))

    def entry(prefix: str) -> dict[str, Any]:
        return _entry(mem.num(f"{prefix}.limit_in_bytes"), mem.num(f"{prefix}.usage_in_bytes"),
                      mem.num(f"{prefix}.max_usage_in_bytes"), mem.num(f"{prefix}.failcnt"))

    memory = _omit({"cache": raw.get("cache", 0), "usage": entry("memory"), "swap": entry("memory.memsw"),
                    "kernel": entry("memory.kmem"), "kernelTCP": entry("memory.kmem.tcp"), "raw": raw},
                   "cache", "raw") if mem.path else {"usage": _entry(0, 0, 0, 0), "swap": _entry(0, 0, 0, 0),
                                                    "kernel": _entry(0, 0, 0, 0), "kernelTCP": _entry(0, 0, 0, 0)}
    pids = _Dir(fs, paths.get("pids"))
    blk = _Dir(fs, paths.get("blkio"))
    blkio = {}
    for key, cfq, thr in (("ioServiceBytesRecursive", "blkio.io_service_bytes_recursive",
                           "blkio.throttle.io_service_bytes_recursive"),
                          ("ioServicedRecursive", "blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive")):
        entries = _blkio_entries(blk.text(cfq)) or _blkio_entries(blk.text(thr))
        if entries:
            blkio[key] = entries
    huge = _hugetlb_v1(_Dir(fs, paths["hugetlb"])) if "hugetlb" in paths else _hugetlb_v2(_Dir(fs, paths.get("")))
    return {"cpu": {"usage": usage, "throttling": throttling}, "cpuset": _cpuset(_Dir(fs, paths.get("cpuset"))),
            "memory": memory,
            "pids": _omit({"current": pids.num("pids.current"), "limit": _limit(pids.num("pids.max"))}, "current", "limit"),
            "blkio": blkio, **_tail(huge)}


def _limit(n: int) -> int:
    return 0 if n == MAX_UINT64 else n


def v2(path: str, fs: CgroupFS) -> dict[str, Any]:
    d = _Dir(fs, path)
    cs = d.kv("cpu.stat")
    usage = _omit({"total": cs.get("usage_usec", 0) * 1000, "kernel": cs.get("system_usec", 0) * 1000,
                   "user": cs.get("user_usec", 0) * 1000}, "total")
    throttling = _omit({"periods": cs.get("nr_periods", 0), "throttledPeriods": cs.get("nr_throttled", 0),
                        "throttledTime": cs.get("throttled_usec", 0) * 1000}, "periods", "throttledPeriods", "throttledTime")
    raw = dict(sorted(d.kv("memory.stat").items()))
    events = d.kv("memory.events")
    mem_usage = _entry(d.num("memory.max"), d.num("memory.current"), d.num("memory.peak"), events.get("max", 0))
    swap = _entry(0, 0, 0, 0)
    if d.text("memory.swap.current") is not None:
        # runc reports swap as memory+swap on v2 for compatibility with v1 consumers.
        lim = d.num("memory.swap.max")
        swap = _entry(MAX_UINT64 if MAX_UINT64 in (lim, mem_usage["limit"]) else lim + mem_usage["limit"],
                      d.num("memory.swap.current") + d.num("memory.current"), 0, events.get("max", 0))
    memory = _omit({"cache": raw.get("file", 0), "usage": mem_usage, "swap": swap, "kernel": _entry(0, 0, 0, 0),
                    "kernelTCP": _entry(0, 0, 0, 0), "raw": raw}, "cache", "raw")
    blkio: dict[str, Any] = {}
    for line in (d.text("io.stat") or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        mj, mn = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, rd, wr in (("ioServiceBytesRecursive", "rbytes", "wbytes"), ("ioServicedRecursive", "rios", "wios")):
            for op, k in (("Read", rd), ("Write", wr)):
                blkio.setdefault(key, []).append(_omit({"major": mj, "minor": mn, "op": op, "value": int(kv.get(k, 0))},
                                                       "major", "minor", "op", "value"))
    return {"cpu": {"usage": usage, "throttling": throttling}, "cpuset": _cpuset(d, effective=True), "memory": memory,
            "pids": _omit({"current": d.num("pids.current"), "limit": _limit(d.num("pids.max"))}, "current", "limit"),
            "blkio": blkio, **_tail(_hugetlb_v2(d))}


def oom_kills(paths: dict[str, str], fs: CgroupFS) -> int:
    """The cgroup's OOM-kill counter (v1 memory.oom_control, v2 memory.events), for `events`."""
    if "memory" in paths:
        return _Dir(fs, paths["memory"]).kv("memory.oom_control").get("oom_kill", 0)
    if "" in paths:
        return _Dir(fs, paths[""]).kv("memory.events").get("oom_kill", 0)
    return 0
