"""Cgroup managers on the real kernel: this host's hybrid v1 hierarchies and its cgroup2 'unified' mount.

Every cgroup is named pyoci-test-<uuid> and removed in a finally; only processes started here are moved in.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyoci import cgroups
from pyoci.cgroups.fs import CgroupError

pytestmark = pytest.mark.root
ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"


def have(path: str) -> bool:
    return os.path.exists(path)


needs_hybrid = pytest.mark.skipif(not have(f"{ROOT}/memory") or not have(f"{UNIFIED}/cgroup.controllers"),
                                  reason="needs this host's hybrid layout (v1 controllers + cgroup2 at unified)")


def leftovers(name: str) -> list[str]:
    return glob.glob(f"{ROOT}/*/{name}") + glob.glob(f"{ROOT}/*/*/{name}")


@contextlib.contextmanager
def manager(resources: dict[str, Any] | None = None, root: str = ROOT, **kw: Any) -> Iterator[cgroups.Manager]:
    name = f"pyoci-test-{uuid.uuid4().hex[:10]}"
    m = cgroups.manager_for({"linux": {"cgroupsPath": "/" + name}}, name, root=root, default_devices=False)
    for k, v in kw.items():
        setattr(m, k, v)
    m.create()
    try:
        if resources:
            m.apply(resources)
        yield m
    finally:
        with contextlib.suppress(CgroupError):
            m.kill_all(signal.SIGKILL)
        for _ in range(200):
            if not m.pids():
                break
            time.sleep(0.01)
        m.destroy()
        assert not leftovers(name), leftovers(name)


@contextlib.contextmanager
def inside(m: cgroups.Manager, script: str) -> Iterator[subprocess.Popen[str]]:
    """Run `sh -c script` in the cgroup: it waits on stdin until it has been moved in."""
    p = subprocess.Popen(["sh", "-c", f"read _go; {script}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        m.add(p.pid)
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        m.kill_all(signal.SIGKILL)   # children hold stdout open
        p.communicate(timeout=10)


def read(m: cgroups.Manager, key: str, file: str) -> str:
    return Path(m.paths[key], file).read_text().strip()


def block_device() -> str:
    for dev in sorted(glob.glob("/sys/block/*/dev")):
        if "/loop" not in dev and "/zram" not in dev:
            return Path(dev).read_text().strip()
    pytest.skip("no block device")


@needs_hybrid
def test_limits_are_visible_in_the_files() -> None:
    dev = block_device()
    mj, mn = (int(x) for x in dev.split(":"))
    res = {"memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20, "swappiness": 7,
                      "disableOOMKiller": False, "kernelTCP": 8 << 20},
           "cpu": {"shares": 256, "quota": 20000, "period": 100000, "burst": 5000, "cpus": "0", "mems": "0",
                   "realtimePeriod": 1000000, "realtimeRuntime": 1000},
           "pids": {"limit": 42},
           "blockIO": {"throttleReadBpsDevice": [{"major": mj, "minor": mn, "rate": 1 << 20}],
                       "throttleWriteIOPSDevice": [{"major": mj, "minor": mn, "rate": 77}]},
           "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3,
                                                           "access": "rwm"}]}
    with manager(res) as m:
        assert m.mode == "hybrid"
        assert read(m, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert read(m, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
        assert read(m, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
        assert read(m, "memory", "memory.swappiness") == "7"
        assert read(m, "memory", "memory.kmem.tcp.limit_in_bytes") == str(8 << 20)
        assert (read(m, "cpu", "cpu.shares"), read(m, "cpu", "cpu.cfs_quota_us"), read(m, "cpu", "cpu.cfs_burst_us")) \
            == ("256", "20000", "5000")
        assert (read(m, "cpu", "cpu.rt_period_us"), read(m, "cpu", "cpu.rt_runtime_us")) == ("1000000", "1000")
        assert (read(m, "cpuset", "cpuset.cpus"), read(m, "cpuset", "cpuset.mems")) == ("0", "0")
        assert read(m, "pids", "pids.max") == "42"
        assert read(m, "blkio", "blkio.throttle.read_bps_device") == f"{dev} {1 << 20}"
        assert read(m, "blkio", "blkio.throttle.write_iops_device") == f"{dev} 77"
        assert read(m, "devices", "devices.list") == "c 1:3 rwm"


@needs_hybrid
@pytest.mark.parametrize("res,field", [
    ({"blockIO": {"weight": 500}}, "linux.resources.blockIO.weight: cannot apply: 'blkio.weight' or 'blkio.bfq.weight'"),
    ({"network": {"classID": 7}}, "linux.resources.network.classID: cannot apply: no cgroup v1 'net_cls' hierarchy"),
    ({"rdma": {"mlx5_0": {"hcaHandles": 1}}}, "linux.resources.rdma['mlx5_0']: cannot apply: no cgroup v1 'rdma'"),
    ({"memory": {"useHierarchy": False}}, "linux.resources.memory.useHierarchy: write '0' to"),
    ({"cpu": {"shares": 1 << 20}}, "linux.resources.cpu.shares: the kernel set cpu.shares to 262144"),
    ({"cpu": {"quota": 1000, "burst": 5000}}, "linux.resources.cpu.burst: write '5000'"),
])
def test_what_this_host_cannot_apply_is_named(res: dict[str, Any], field: str) -> None:
    with manager() as m, pytest.raises(CgroupError) as ei:
        m.apply(res)
    assert str(ei.value).startswith(field), str(ei.value)


FORK_BOMB = """import os, time
ok = fail = 0
for i in range(40):
    try:
        pid = os.fork()
    except OSError:
        fail += 1
        continue
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    ok += 1
print(ok, fail, flush=True)
time.sleep(30)
"""


@needs_hybrid
def test_pids_limit_stops_a_fork_bomb(tmp_path: Path) -> None:
    (tmp_path / "bomb.py").write_text(FORK_BOMB)
    with manager({"pids": {"limit": 8}}) as m, inside(m, f"exec {sys.executable} {tmp_path}/bomb.py") as p:
        assert p.stdout is not None
        ok, fail = (int(x) for x in p.stdout.readline().split())
        assert (ok, fail) == (7, 33)             # 8 = the python process + 7 children
        assert len(m.pids()) == 8 and read(m, "pids", "pids.current") == "8"
        events = dict(line.split() for line in Path(m.paths["pids"], "pids.events").read_text().splitlines())
        assert int(events["max"]) >= 33           # every refused fork is counted


@needs_hybrid
def test_memory_limit_oom_kills_a_hog() -> None:
    hog = f"exec {sys.executable} -c 'b = bytearray(256 << 20); b[::4096] = b\"x\" * len(b[::4096]); print(\"survived\")'"
    with manager({"memory": {"limit": 32 << 20, "swap": 32 << 20}}) as m, inside(m, hog) as p:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL and "survived" not in out
        oom = dict(line.split() for line in Path(m.paths["memory"], "memory.oom_control").read_text().splitlines())
        assert int(oom["oom_kill"]) >= 1
        assert int(read(m, "memory", "memory.max_usage_in_bytes")) <= 32 << 20


def counter(tmp: Path) -> str:
    return f"i=0; while true; do i=$((i+1)); echo $i > {tmp}.new; mv {tmp}.new {tmp}; sleep 0.01; done"


def value(tmp: Path) -> int:
    for _ in range(100):
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(tmp.read_text())
        time.sleep(0.01)
    raise AssertionError("counter never wrote")


def check_freeze_stops_counter(m: cgroups.Manager, tmp: Path) -> None:
    with inside(m, counter(tmp)):
        time.sleep(0.3)
        m.freeze()
        assert m.frozen()
        a = value(tmp)
        time.sleep(0.5)
        assert value(tmp) == a, "counter moved while frozen"
        m.thaw()
        assert not m.frozen()
        time.sleep(0.5)
        assert value(tmp) > a + 5, "counter did not restart after thaw"


@needs_hybrid
def test_v1_freezer_stops_and_restarts_a_counter(tmp_path: Path) -> None:
    with manager() as m:
        check_freeze_stops_counter(m, tmp_path / "count")
        assert read(m, "freezer", "freezer.state") == "THAWED"


def spawn_tree() -> str:
    return "sleep 60 & sleep 60 & (sleep 60 & wait) & echo ready; wait"


def wait_for(m: cgroups.Manager, n: int) -> list[int]:
    """The cgroup's pids once there are n of them (sh, 2 sleeps, the subshell and its sleep)."""
    for _ in range(500):
        pids = m.pids()
        if len(pids) >= n:
            return pids
        time.sleep(0.01)
    raise AssertionError(f"only {m.pids()} in the cgroup")


@needs_hybrid
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_kill_all_reaches_every_process(sig: int) -> None:
    with manager() as m, inside(m, spawn_tree()) as p:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        pids = wait_for(m, 5)
        m.kill_all(sig)
        for _ in range(300):
            if not m.pids():
                break
            time.sleep(0.01)
        assert m.pids() == [] and not m.frozen()
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


@needs_hybrid
def test_fit_for_purpose_and_destroy_waits_for_drain() -> None:
    with manager() as m, inside(m, "sleep 60") as p:
        twin = cgroups.manager_for({"linux": {"cgroupsPath": m.paths["pids"][len(ROOT + "/pids"):]}}, "x")
        with pytest.raises(CgroupError, match="already exists and has processes"):
            twin.create()
        with pytest.raises(CgroupError, match=r"cannot remove cgroup .*processes \[\d+"):
            m.destroy()
        p.kill()
        p.wait()


@needs_hybrid
def test_hugetlb_on_the_unified_hierarchy() -> None:
    """This host has hugetlb only on cgroup2: the hybrid manager enables it there and writes hugetlb.2MB.max."""
    ctl = Path(UNIFIED, "cgroup.subtree_control")
    if "hugetlb" not in Path(UNIFIED, "cgroup.controllers").read_text().split():
        pytest.skip("no hugetlb on the unified hierarchy")
    was = "hugetlb" in ctl.read_text().split()
    try:
        with manager({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}) as m:
            assert Path(m.paths[""], "hugetlb.2MB.max").read_text().strip() == str(4 << 20)
            assert m.stats()["hugetlb"]["2MB"] == {"failcnt": 0}
    finally:
        if not was and "hugetlb" in ctl.read_text().split():
            ctl.write_text("-hugetlb")


@needs_hybrid
def test_stats_like_runc(tmp_path: Path) -> None:
    with manager({"memory": {"limit": 100 << 20}, "pids": {"limit": 50}}) as m, inside(m, "sleep 30"):
        time.sleep(0.2)
        s = m.stats()
        assert s["pids"] == {"current": 2, "limit": 50} or s["pids"] == {"current": 1, "limit": 50}
        assert s["memory"]["usage"]["limit"] == 100 << 20 and s["memory"]["usage"]["usage"] > 0
        assert s["cpu"]["usage"]["total"] > 0 and s["cpuset"]["cpus"]
        assert set(s) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"}


# --- cgroup2 for real: a v2 manager rooted at the unified mount -------------------------------------
def v2_manager(resources: dict[str, Any] | None = None) -> Any:
    # v2_available emptied: never enable controllers in the host's cgroup2 root for these tests.
    return manager(resources, root=UNIFIED, v2_available=frozenset())


needs_cgroup2 = pytest.mark.skipif(not have(f"{UNIFIED}/cgroup.controllers"), reason="no cgroup2 at unified")


@needs_cgroup2
def test_v2_procs_freeze_kill(tmp_path: Path) -> None:
    with v2_manager() as m:
        assert m.mode == "v2" and list(m.paths) == [""]
        check_freeze_stops_counter(m, tmp_path / "count")
        with inside(m, spawn_tree()) as p:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            wait_for(m, 5)
            assert sorted(int(x) for x in Path(m.paths[""], "cgroup.procs").read_text().split()) == m.pids()
            m.kill_all(signal.SIGKILL)                       # cgroup.kill
            for _ in range(300):
                if "populated 0" in Path(m.paths[""], "cgroup.events").read_text():
                    break
                time.sleep(0.01)
            assert m.pids() == []


@needs_cgroup2
def test_v2_kill_all_other_signal_uses_the_cgroup2_freezer() -> None:
    with v2_manager() as m, inside(m, spawn_tree()) as p:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        wait_for(m, 5)
        m.kill_all(signal.SIGTERM)
        for _ in range(300):
            if not m.pids():
                break
            time.sleep(0.01)
        assert m.pids() == [] and Path(m.paths[""], "cgroup.freeze").read_text().strip() == "0"


def open_in(m: cgroups.Manager, path: str, flags: int) -> int:
    """errno (0 = success) of open(path) by a process inside the cgroup."""
    script = f"import os\ntry:\n os.close(os.open({path!r}, {flags}))\n print(0)\nexcept OSError as e:\n print(e.errno)"
    with inside(m, f"exec {sys.executable} -c {shlex.quote(script)}") as p:
        out, _ = p.communicate(timeout=30)
    return int(out.strip())


@needs_cgroup2
def test_v2_device_filter_bpf_program() -> None:
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
             {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"}]
    from pyoci.cgroups import bpf
    with v2_manager({"devices": rules}) as m:
        assert len(bpf.attached(m.paths[""])) == 1
        assert open_in(m, "/dev/null", os.O_RDWR) == 0
        assert open_in(m, "/dev/zero", os.O_RDONLY) == 0
        assert open_in(m, "/dev/zero", os.O_WRONLY) == errno.EPERM
        assert open_in(m, "/dev/full", os.O_RDONLY) == errno.EPERM
        m.update({"devices": [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1,
                                                                  "minor": 3, "access": "w"}]})
        assert len(bpf.attached(m.paths[""])) == 1           # replaced, not stacked
        assert open_in(m, "/dev/full", os.O_RDONLY) == 0
        assert open_in(m, "/dev/null", os.O_RDONLY) == 0
        assert open_in(m, "/dev/null", os.O_WRONLY) == errno.EPERM


@needs_hybrid
def test_memory_and_swap_updates_in_both_directions() -> None:
    with manager({"memory": {"limit": 64 << 20, "swap": 96 << 20}}) as m:
        with pytest.raises(CgroupError, match="the memory\\+swap limit 100663296 is lower"):
            m.update({"memory": {"limit": 128 << 20}})
        m.update({"memory": {"limit": 128 << 20, "swap": 256 << 20}})     # memsw first
        assert (read(m, "memory", "memory.limit_in_bytes"), read(m, "memory", "memory.memsw.limit_in_bytes")) == \
            (str(128 << 20), str(256 << 20))
        m.update({"memory": {"limit": 32 << 20, "swap": 48 << 20}})       # limit first
        assert (read(m, "memory", "memory.limit_in_bytes"), read(m, "memory", "memory.memsw.limit_in_bytes")) == \
            (str(32 << 20), str(48 << 20))
        m.update({"memory": {"limit": -1}})                                # both unlimited
        assert read(m, "memory", "memory.memsw.limit_in_bytes") == "9223372036854771712"


@needs_hybrid
def test_unified_keys_on_the_hybrid_cgroup2() -> None:
    with manager({"unified": {"cgroup.max.descendants": "2"}}) as m:
        d = Path(m.paths[""])
        assert (d / "cgroup.max.descendants").read_text().strip() == "2"
        (d / "a").mkdir()
        (d / "b").mkdir()
        with pytest.raises(OSError) as ei:
            (d / "c").mkdir()                      # enforced by the kernel
        assert ei.value.errno == errno.EAGAIN
        with pytest.raises(CgroupError, match=r"unified\['memory.high'\]: cannot apply: 'memory.high' does not exist"):
            m.apply({"unified": {"memory.high": "1G"}})
