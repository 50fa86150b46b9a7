"""Conformance scenarios for cgroup resources (issue 8), merged into `scenarios.SCENARIOS`.

The values are read on the host while the container runs: /proc/<pid>/cgroup gives the process's cgroup in
each hierarchy (each runtime's own `cgroupsPath`, /conf-<runtime>-<tag>), the file is read under that
hierarchy's mount point (`cg.<controller>/<file>` facts). Where it is cheap the limit is also shown to be
enforced from inside (a pids limit stops forks, a device rule makes open(2) fail with EPERM, cpuset narrows
Cpus_allowed_list). A value the host cannot apply (controller not mounted, file missing) MUST be an error
(config.md "Valid values"): those scenarios pass when create is refused naming the field, or when the value
is visibly applied; an accepted, silently dropped value fails. A scenario whose controller is absent here is
skipped for every runtime alike."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conformance.checks import Check, both, contains, eq
from conformance.core import Facts, Run, RunError, Scenario, drive_probe

Edit = Callable[[dict[str, Any], Run], None]
MiB = 1024 * 1024
UNIFIED = "unified"  # the key of the cgroup2 hierarchy in cgroup_mounts()


# ---- where each controller lives on this host -------------------------------------------------------------
def cgroup_mounts() -> dict[str, Path]:
    """controller (or `name=...`, or `unified`) → mount point of its hierarchy (/proc/self/mountinfo)."""
    out: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        sep = parts.index("-")
        fstype, sopts = parts[sep + 1], parts[sep + 3] if len(parts) > sep + 3 else ""
        if fstype == "cgroup":
            for opt in sopts.split(","):
                if opt not in ("rw", "ro") and not opt.startswith("release_agent"):
                    out.setdefault(opt, Path(parts[4]))
        elif fstype == "cgroup2":
            out.setdefault(UNIFIED, Path(parts[4]))
    return out


def _proc_cgroups(pid: int) -> dict[str, str]:
    """controller (or `unified` for the 0:: line) → the process's cgroup path in that hierarchy."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and not ctrls:
            out[UNIFIED] = path
        for c in ctrls.split(","):
            if c:
                out[c] = path
    return out


def cgroup_file(pid: int, controller: str, name: str) -> Path | None:
    mounts = cgroup_mounts()
    paths = _proc_cgroups(pid)
    if controller not in mounts or controller not in paths:
        return None
    return mounts[controller] / paths[controller].lstrip("/") / name


def _read_files(*files: str) -> Callable[[Run, int], Facts]:
    """during: facts `cg.<controller>/<file>` read from the container's own cgroup on the host."""
    def during(run: Run, pid: int) -> Facts:
        facts: Facts = {}
        for spec in files:
            controller, name = spec.split("/", 1)
            path = cgroup_file(pid, controller, name)
            key = f"cg.{spec}"
            if path is None:
                facts[key] = "<no hierarchy>"
                continue
            try:
                facts[key] = run.norm(path.read_text().strip())
            except OSError as exc:
                facts[key] = f"<error {exc.errno}>"
        return facts
    return during


def _has(controller: str, name: str = "") -> Callable[[], str | None]:
    def skip() -> str | None:
        mount = cgroup_mounts().get(controller)
        if mount is None:
            return f"no {controller} cgroup hierarchy on this host"
        if name and not (mount / name).exists():
            return f"the {controller} hierarchy has no {name} here"
        return None
    return skip


# ---- config edits -----------------------------------------------------------------------------------------
def _res(**sections: Any) -> Edit:
    """linux.resources gets these sections (BASE's deny-all device rule is kept)."""
    def edit(cfg: dict[str, Any], run: Run) -> None:
        cfg["linux"].setdefault("resources", {}).update({k: _copy(v) for k, v in sections.items()})
    return edit


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _edits(*edits: Edit) -> Edit:
    def edit(cfg: dict[str, Any], run: Run) -> None:
        for e in edits:
            e(cfg, run)
    return edit


def _last_cpu() -> str:
    """The last cpu of the root cpuset (a cpuset narrower than the host's when there are two or more)."""
    text = Path("/sys/fs/cgroup/cpuset/cpuset.cpus").read_text().strip() if Path(
        "/sys/fs/cgroup/cpuset/cpuset.cpus").exists() else "0"
    last = text.split(",")[-1]
    return last.split("-")[-1]


def _first_mem() -> str:
    p = Path("/sys/fs/cgroup/cpuset/cpuset.mems")
    text = p.read_text().strip() if p.exists() else "0"
    return text.split(",")[0].split("-")[0]


def block_device() -> tuple[int, int] | None:
    """A real block device: the one backing the workspace filesystem when it is listed in /proc/partitions,
    else the first whole device there."""
    parts = []
    for line in Path("/proc/partitions").read_text().splitlines()[2:]:
        cols = line.split()
        if len(cols) == 4:
            parts.append((int(cols[0]), int(cols[1])))
    if not parts:
        return None
    st = os.stat("/tmp")
    mine = (os.major(st.st_dev), os.minor(st.st_dev))
    return mine if mine in parts else parts[0]


def _throttle(cfg: dict[str, Any], run: Run) -> None:
    dev = block_device()
    assert dev is not None  # skip() guards it
    major, minor = dev
    run.values["blkdev"] = f"{major}:{minor}"
    cfg["linux"].setdefault("resources", {})["blockIO"] = {
        "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1 * MiB}],
        "throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": 2 * MiB}],
        "throttleReadIOPSDevice": [{"major": major, "minor": minor, "rate": 100}],
        "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 200}],
    }


def _throttle_check(f: Facts) -> list[str]:
    dev = block_device()
    if dev is None:
        return ["no block device"]
    d = f"{dev[0]}:{dev[1]}"
    return both(*(contains(f"cg.blkio/blkio.throttle.{name}_device", f"{d} {rate}")
                  for name, rate in (("read_bps", MiB), ("write_bps", 2 * MiB), ("read_iops", 100),
                                     ("write_iops", 200))))(f)


# ---- accepted-and-applied, or refused: never silently dropped ---------------------------------------------
def _apply_or_refuse_drive(run: Run) -> Facts:
    try:
        facts = drive_probe(run)
        facts["create"] = "accepted"
    except RunError as exc:
        if "create failed" not in str(exc):
            raise
        facts = {"create": "refused", "message": run.norm(str(exc))[-300:]}
    return facts


def _applied_or_refused(applied: Check, names: tuple[str, ...]) -> Check:
    """Refused with an error naming one of `names`, or accepted with `applied` met."""
    def check(f: Facts) -> list[str]:
        if f.get("create") == "refused":
            msg = f.get("message", "")
            if any(n in msg for n in names):
                return []
            return [f"refused, but the error names none of {', '.join(names)}: {msg!r}"]
        problems = applied(f)
        return [f"accepted but not applied: {p}" for p in problems]
    return check


def _refuse_drive(run: Run) -> Facts:
    ctr, res = run.create(run.config(["true"]), keep_stdin=False)
    return {"create.rc": "0" if res.ok else "nonzero",
            "state.rc": "0" if run.verb("state", ctr.cid).ok else "nonzero",
            "message": run.norm((res.err.strip().splitlines() or [""])[-1])[:300]}


def _refused_naming(*names: str) -> Check:
    def check(f: Facts) -> list[str]:
        out = []
        if f.get("create.rc") != "nonzero":
            out.append("create succeeded (the value cannot be applied on this host: MUST error)")
        if f.get("state.rc") != "nonzero":
            out.append("a container exists after the failed create")
        elif f.get("create.rc") == "nonzero" and not any(n in f.get("message", "") for n in names):
            out.append(f"the error names none of {', '.join(names)}: {f.get('message')!r}")
        return out
    return check


# ---- hugetlb: only on the hybrid cgroup2 here ------------------------------------------------------------
HUGE_LIMIT = 4 * MiB


def _hugetlb_files(run: Run, pid: int) -> Facts:
    """Where a 2MB hugetlb limit can show: the v1 hugetlb hierarchy, or the cgroup2 (hybrid) hierarchy."""
    facts: Facts = {}
    for controller, name in (("hugetlb", "hugetlb.2MB.limit_in_bytes"), (UNIFIED, "hugetlb.2MB.max")):
        path = cgroup_file(pid, controller, name)
        try:
            facts[f"cg.{controller}/{name}"] = path.read_text().strip() if path else "<no hierarchy>"
        except OSError as exc:
            facts[f"cg.{controller}/{name}"] = f"<error {exc.errno}>"
    path = _subtree_control()
    facts["host.unified-root.subtree_control"] = path.read_text().strip() if path else "<no cgroup2>"
    return facts


def _hugetlb_applied(f: Facts) -> list[str]:
    want = str(HUGE_LIMIT)
    if want in (f.get("cg.hugetlb/hugetlb.2MB.limit_in_bytes"), f.get(f"cg.{UNIFIED}/hugetlb.2MB.max")):
        return []
    v1, v2 = f.get("cg.hugetlb/hugetlb.2MB.limit_in_bytes"), f.get(f"cg.{UNIFIED}/hugetlb.2MB.max")
    return [f"no hugetlb file of the container's cgroup holds {want} (v1: {v1!r}, cgroup2: {v2!r})"]


def _subtree_control() -> Path | None:
    mount = cgroup_mounts().get(UNIFIED)
    return mount / "cgroup.subtree_control" if mount else None


@contextlib.contextmanager
def _guard_unified_root(run: Run) -> Iterator[None]:
    """A runtime may enable hugetlb in the cgroup2 root's subtree_control to apply the limit: that is host
    state. Record what it was; if a runtime leaves a controller enabled after delete, it is reported (fact
    `host.unified-root-left-enabled`) and switched off again (only the controllers this run added)."""
    path = _subtree_control()
    run.values["subtree-before"] = set(path.read_text().split()) if path else set()
    try:
        yield
    finally:
        if path is not None:
            for c in sorted(set(path.read_text().split()) - run.values["subtree-before"]):
                with contextlib.suppress(OSError):
                    path.write_text(f"-{c}")


def _unified_root_after(run: Run) -> Facts:
    path = _subtree_control()
    now = set(path.read_text().split()) if path else set()
    return {"host.unified-root-left-enabled": " ".join(sorted(now - run.values["subtree-before"])) or "none"}


# ---- probe snippets ---------------------------------------------------------------------------------------
def _open(name: str, redirect: str, path: str) -> str:
    """Section `name`: the shell's open error (busybox: "can't open '<path>': <strerror>") or `opened`."""
    return f"echo @@{name}; ( : {redirect} {path} ) 2>&1 && echo opened\n"


ENXIO = "No such device or address"  # an allowed open of a device no driver has (major 42: demo/sample use)
EPERM = "Operation not permitted"    # the devices cgroup refused the open
NODEV = {"path": "/dev/conf-42", "type": "c", "major": 42, "minor": 0, "fileMode": 0o666, "uid": 0, "gid": 0}


def _no_driver_42() -> str | None:
    text = Path("/proc/devices").read_text()
    chars = text.split("Block devices:")[0]
    return "char major 42 has a driver on this host" if any(
        ln.split()[:1] == ["42"] for ln in chars.splitlines()) else None


def _rule42(allow: bool, access: str) -> dict[str, Any]:
    return {"allow": allow, "type": "c", "major": 42, "minor": 0, "access": access}


def _node(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"].setdefault("devices", []).append(dict(NODEV))


# Forks until the pids limit stops them (run last in the probe: afterwards only builtins run). The pids are
# collected in /dev/shm and killed with the builtin `kill`, read with the builtin `read`: no fork is needed.
PIDS_PROBE = (
    "echo @@forks\n"
    "( n=0; while [ $n -lt 30 ]; do sleep 60 </dev/null >/dev/null 2>&1 & echo $! >> /dev/shm/pids; "
    "n=$((n+1)); done ) 2>/dev/null\n"
    "n=0; while read p; do n=$((n+1)); kill $p 2>/dev/null; done < /dev/shm/pids; echo $n\n"
)


def _forks_stopped(limit: int) -> Check:
    def check(f: Facts) -> list[str]:
        try:
            n = int(f.get("in.forks", ""))
        except ValueError:
            return [f"in.forks: not a count: {f.get('in.forks')!r}"]
        return [] if 0 < n < limit else [f"in.forks: {n} background processes started under pids {limit}"]
    return check


OOM = "memory/memory.oom_control"


def _oom_disabled(f: Facts) -> list[str]:
    return [] if "oom_kill_disable 1" in f.get(f"cg.{OOM}", "").splitlines() else [
        f"cg.{OOM}: oom_kill_disable is not 1: {f.get(f'cg.{OOM}')!r}"]


def _cpus_allowed(f: Facts) -> list[str]:
    want = _last_cpu()
    got = f.get("in.cpus", "")
    return [] if got == f"Cpus_allowed_list:\t{want}" or got.split()[-1:] == [want] else [
        f"in.cpus: expected Cpus_allowed_list {want}, got {got!r}"]


SCENARIOS: list[Scenario] = [
    # ---- memory
    Scenario(
        "cgroup.memory.limit", "config-linux.md#memory: limit (v1 memory.limit_in_bytes)",
        eq("cg.memory/memory.limit_in_bytes", str(64 * MiB)),
        edit=_res(memory={"limit": 64 * MiB}), during=_read_files("memory/memory.limit_in_bytes"),
        skip=_has("memory"), facts=("cg.", "host.running.cgroup")),
    Scenario(
        "cgroup.memory.reservation", "config-linux.md#memory: reservation (v1 memory.soft_limit_in_bytes)",
        eq("cg.memory/memory.soft_limit_in_bytes", str(32 * MiB)),
        edit=_res(memory={"limit": 64 * MiB, "reservation": 32 * MiB}),
        during=_read_files("memory/memory.soft_limit_in_bytes"), skip=_has("memory"), facts=("cg.",)),
    Scenario(
        "cgroup.memory.swap",
        "config-linux.md#memory: swap = memory+swap limit (v1 memory.memsw.limit_in_bytes)",
        both(eq("cg.memory/memory.memsw.limit_in_bytes", str(128 * MiB)),
             eq("cg.memory/memory.limit_in_bytes", str(64 * MiB))),
        edit=_res(memory={"limit": 64 * MiB, "swap": 128 * MiB}),
        during=_read_files("memory/memory.memsw.limit_in_bytes", "memory/memory.limit_in_bytes"),
        skip=_has("memory", "memory.memsw.limit_in_bytes"), facts=("cg.",)),
    Scenario(
        "cgroup.memory.swappiness", "config-linux.md#memory: swappiness",
        eq("cg.memory/memory.swappiness", "10"),
        edit=_res(memory={"swappiness": 10}), during=_read_files("memory/memory.swappiness"),
        skip=_has("memory", "memory.swappiness"), facts=("cg.",)),
    Scenario(
        "cgroup.memory.disableOOMKiller", "config-linux.md#memory: disableOOMKiller (v1 memory.oom_control)",
        _oom_disabled, edit=_res(memory={"limit": 64 * MiB, "disableOOMKiller": True}),
        during=_read_files(OOM), skip=_has("memory"), facts=("cg.",)),
    # ---- cpu, cpuset
    Scenario(
        "cgroup.cpu.shares", "config-linux.md#cpu: shares (v1 cpu.shares)",
        eq("cg.cpu/cpu.shares", "512"), edit=_res(cpu={"shares": 512}), during=_read_files("cpu/cpu.shares"),
        skip=_has("cpu"), facts=("cg.",)),
    Scenario(
        "cgroup.cpu.quota-period",
        "config-linux.md#cpu: quota and period (v1 cpu.cfs_quota_us, cpu.cfs_period_us)",
        both(eq("cg.cpu/cpu.cfs_quota_us", "50000"), eq("cg.cpu/cpu.cfs_period_us", "200000")),
        edit=_res(cpu={"quota": 50000, "period": 200000}),
        during=_read_files("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"), skip=_has("cpu"),
        facts=("cg.",)),
    Scenario(
        "cgroup.cpu.realtime", "config-linux.md#cpu: realtimeRuntime and realtimePeriod (v1 cpu.rt_*_us)",
        both(eq("cg.cpu/cpu.rt_runtime_us", "10000"), eq("cg.cpu/cpu.rt_period_us", "500000")),
        edit=_res(cpu={"realtimeRuntime": 10000, "realtimePeriod": 500000}),
        during=_read_files("cpu/cpu.rt_runtime_us", "cpu/cpu.rt_period_us"),
        skip=_has("cpu", "cpu.rt_runtime_us"), facts=("cg.",)),
    Scenario(
        "cgroup.cpuset", "config-linux.md#cpu: cpus and mems (cpuset), the process runs only there",
        both(lambda f: eq("cg.cpuset/cpuset.cpus", _last_cpu())(f), lambda f: eq("cg.cpuset/cpuset.mems",
                                                                                 _first_mem())(f),
             _cpus_allowed),
        edit=lambda c, r: _res(cpu={"cpus": _last_cpu(), "mems": _first_mem()})(c, r),
        during=_read_files("cpuset/cpuset.cpus", "cpuset/cpuset.mems"),
        probe="echo @@cpus; grep Cpus_allowed_list /proc/self/status\n", skip=_has("cpuset"),
        facts=("cg.", "in.cpus")),
    # ---- pids: the limit is written and stops forks
    Scenario(
        "cgroup.pids", "config-linux.md#pids: limit (v1 pids.max) stops forks beyond it",
        both(eq("cg.pids/pids.max", "10"), _forks_stopped(10)),
        edit=_res(pids={"limit": 10}), during=_read_files("pids/pids.max"), probe=PIDS_PROBE,
        skip=_has("pids"), facts=("cg.", "in.forks"), fast=True),
    # ---- blockIO
    Scenario(
        "cgroup.blkio.throttle",
        "config-linux.md#block-io: throttle read/write bps and iops on a real device",
        _throttle_check, edit=_throttle,
        during=_read_files(*(f"blkio/blkio.throttle.{n}_device"
                             for n in ("read_bps", "write_bps", "read_iops", "write_iops"))),
        skip=lambda: _has("blkio", "blkio.throttle.read_bps_device")() or (
            None if block_device() else "no block device in /proc/partitions"),
        facts=("cg.",)),
    Scenario(
        "cgroup.blkio.weight",
        "config-linux.md#block-io: weight; no blkio.weight here (no BFQ/CFQ): MUST error",
        _applied_or_refused(lambda f: [] if "500" in (f.get("cg.blkio/blkio.weight"), f.get(
            "cg.blkio/blkio.bfq.weight")) else ["blkio.weight / blkio.bfq.weight do not hold 500"],
            ("weight", "blkio")),
        edit=_res(blockIO={"weight": 500}), drive=_apply_or_refuse_drive,
        during=_read_files("blkio/blkio.weight", "blkio/blkio.bfq.weight"), skip=_has("blkio"),
        facts=("create", "message", "cg.")),
    # ---- hugetlb: only the hybrid cgroup2 has it here
    Scenario(
        "cgroup.hugetlb",
        "config-linux.md#huge-page-limits: applied where hugetlb lives, or an error naming it",
        _applied_or_refused(_hugetlb_applied, ("hugetlb", "hugepage", "Hugepage")),
        edit=_res(hugepageLimits=[{"pageSize": "2MB", "limit": HUGE_LIMIT}]), drive=_apply_or_refuse_drive,
        setup=_guard_unified_root, during=_hugetlb_files,
        after=_unified_root_after,
        skip=lambda: None if Path("/sys/kernel/mm/hugepages/hugepages-2048kB").exists()
        else "no 2MB huge pages",
        facts=("create", "message", "cg.", "host.unified-root")),
    # ---- network: net_cls / net_prio are not mounted here: an unsupported value MUST error, naming it
    Scenario(
        "cgroup.network.classID", "config-linux.md#network + config.md valid values: classID without net_cls",
        _refused_naming("classID", "net_cls"), edit=_res(network={"classID": 1048577}),
        drive=_refuse_drive,
        skip=lambda: "net_cls is mounted on this host" if "net_cls" in cgroup_mounts() else None,
        facts=("create.rc", "state.rc", "message")),
    Scenario(
        "cgroup.network.priorities",
        "config-linux.md#network + config.md valid values: priorities without net_prio",
        _refused_naming("priorities", "net_prio"),
        edit=_res(network={"priorities": [{"name": "lo", "priority": 5}]}),
        drive=_refuse_drive,
        skip=lambda: "net_prio is mounted on this host" if "net_prio" in cgroup_mounts() else None,
        facts=("create.rc", "state.rc", "message")),
    # ---- devices cgroup: rules applied in order, enforced on open(2)
    Scenario(
        "cgroup.devices.allow", "config-linux.md#allowed-device-list: allow c 42:0 r after deny-all",
        both(contains("in.open-r", ENXIO), contains("in.open-w", EPERM),
             lambda f: [] if "c 42:0 r" in f.get("cg.devices/devices.list", "").splitlines() else [
                 f"cg.devices/devices.list: no 'c 42:0 r' rule: {f.get('cg.devices/devices.list')!r}"]),
        edit=_edits(_node, _res(devices=[{"allow": False, "access": "rwm"}, _rule42(True, "r")])),
        during=_read_files("devices/devices.list"),
        probe=_open("open-r", "<", "/dev/conf-42") + _open("open-w", ">", "/dev/conf-42"),
        skip=lambda: _has("devices")() or _no_driver_42(), facts=("in.open", "cg.")),
    Scenario(
        "cgroup.devices.deny", "config-linux.md#allowed-device-list: deny c 42:0 after allow-all (in order)",
        both(contains("in.open-r", EPERM), eq("in.write:/dev/null", "ok")),
        edit=_edits(_node, _res(devices=[{"allow": True, "access": "rwm"}, _rule42(False, "rwm")])),
        probe=_open("open-r", "<", "/dev/conf-42")
        + "echo @@write:/dev/null; ( : > /dev/null ) 2>/dev/null && echo ok || echo fail\n",
        skip=lambda: _has("devices")() or _no_driver_42(), facts=("in.open", "in.write")),
]
