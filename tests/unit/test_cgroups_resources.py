"""resources.plan(): linux.resources → cgroup file writes, v1 and v2, by value."""
from __future__ import annotations

from typing import Any

import pytest

from pyoci.cgroups import device_rules
from pyoci.cgroups import resources as R
from pyoci.cgroups.fs import CgroupError
from pyoci.errors import ConfigError

V1 = frozenset({"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb", "net_cls",
                "net_prio", "rdma"})
V2 = frozenset({"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"})


def v1(res: dict[str, Any], ctrls: frozenset[str] = V1) -> list[tuple[str, str]]:
    return [(w.file, w.value) for w in R.plan(res, v1=ctrls).writes]


def v2(res: dict[str, Any]) -> list[tuple[str, str]]:
    return [(w.file, w.value) for w in R.plan(res, v1=(), v2=V2, cgroup2=True).writes]


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 100), (512, 59), (262144, 10000), (1, 1), (100, 17)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert R.shares_to_weight(shares) == weight


def test_linear_formula_of_older_runc() -> None:
    assert R.shares_to_weight_linear(1024) == 39 and R.shares_to_weight_linear(2) == 1


@pytest.mark.parametrize("w,io", [(10, 1), (1000, 10000), (500, 4950), (100, 910)])
def test_blkio_weight_conversion(w: int, io: int) -> None:
    assert R.blkio_to_io_weight(w) == io


@pytest.mark.parametrize("swap,limit,out", [(None, -1, -1), (-1, 100, -1), (None, 100, None), (300, 100, 200),
                                            (100, 100, 0)])
def test_swap_v2(swap: int | None, limit: int | None, out: int | None) -> None:
    assert R.swap_v2(swap, limit, "m") == out


@pytest.mark.parametrize("swap,limit", [(300, None), (300, -1), (50, 100)])
def test_swap_v2_errors(swap: int, limit: int | None) -> None:
    with pytest.raises(ConfigError, match="m.swap"):
        R.swap_v2(swap, limit, "m")


def test_memory_v1() -> None:
    res = {"memory": {"limit": 1 << 20, "swap": 2 << 20, "reservation": 512 << 10, "kernelTCP": 4096,
                      "swappiness": 10, "disableOOMKiller": True, "useHierarchy": True}}
    assert v1(res) == [("memory.limit_in_bytes", "1048576"), ("memory.memsw.limit_in_bytes", "2097152"),
                       ("memory.soft_limit_in_bytes", "524288"), ("memory.kmem.tcp.limit_in_bytes", "4096"),
                       ("memory.swappiness", "10"), ("memory.oom_control", "1"), ("memory.use_hierarchy", "1")]


def test_memory_unlimited_lifts_memsw_optionally() -> None:
    w = R.plan({"memory": {"limit": -1}}, v1=V1).writes
    assert [(x.file, x.value, x.optional) for x in w] == [("memory.limit_in_bytes", "-1", False),
                                                          ("memory.memsw.limit_in_bytes", "-1", True)]


def test_memory_v2() -> None:
    res = {"memory": {"limit": 100, "swap": 300, "reservation": 50, "useHierarchy": True, "disableOOMKiller": False}}
    assert v2(res) == [("memory.max", "100"), ("memory.swap.max", "200"), ("memory.low", "50")]
    assert v2({"memory": {"limit": -1}}) == [("memory.max", "max"), ("memory.swap.max", "max")]


@pytest.mark.parametrize("mem,field", [({"swappiness": 10}, "swappiness"), ({"disableOOMKiller": True}, "disableOOMKiller"),
                                       ({"useHierarchy": False}, "useHierarchy"), ({"kernelTCP": 10}, "kernelTCP")])
def test_memory_v2_unsupported(mem: dict[str, Any], field: str) -> None:
    with pytest.raises(CgroupError, match=f"linux.resources.memory.{field}"):
        v2({"memory": mem})


def test_kernel_memory_is_a_warning_not_a_write() -> None:
    p = R.plan({"memory": {"kernel": 1 << 20}}, v1=V1)
    assert p.writes == () and "memory.kernel" in p.warnings[0]


@pytest.mark.parametrize("bad", [101, -5, "10"])
def test_swappiness_range(bad: Any) -> None:
    with pytest.raises(ConfigError, match="swappiness"):
        v1({"memory": {"swappiness": bad}})


def test_swappiness_unset_markers() -> None:
    assert v1({"memory": {"swappiness": -1}}) == [] and v1({"memory": {"swappiness": 2**64 - 1}}) == []


def test_cpu_v1() -> None:
    res = {"cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "realtimePeriod": 1000000,
                   "realtimeRuntime": 950000, "cpus": "0-1", "mems": "0", "idle": 0}}
    assert v1(res) == [("cpuset.cpus", "0-1"), ("cpuset.mems", "0"), ("cpu.shares", "512"),
                       ("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "50000"), ("cpu.cfs_burst_us", "1000"),
                       ("cpu.rt_period_us", "1000000"), ("cpu.rt_runtime_us", "950000"), ("cpu.idle", "0")]
    assert [w.verify for w in R.plan(res, v1=V1).writes if w.file == "cpu.shares"] == [True]


def test_cpu_v2() -> None:
    res = {"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "1", "idle": 1 - 1}}
    assert v2(res) == [("cpuset.cpus", "1"), ("cpu.weight", "100"), ("cpu.max", "50000 100000"),
                       ("cpu.max.burst", "1000"), ("cpu.idle", "0")]


@pytest.mark.parametrize("cpu,out", [({"quota": -1}, "max"), ({"period": 200000}, "max 200000"),
                                     ({"quota": -1, "period": 50000}, "max 50000"), ({"quota": 2000}, "2000")])
def test_cpu_max(cpu: dict[str, Any], out: str) -> None:
    assert v2({"cpu": cpu}) == [("cpu.max", out)]


def test_cpu_v2_realtime_is_an_error() -> None:
    with pytest.raises(CgroupError, match="realtimeRuntime"):
        v2({"cpu": {"realtimeRuntime": 1000}})


def test_idle_with_shares_is_an_error() -> None:
    with pytest.raises(ConfigError, match="cpu.shares"):
        v1({"cpu": {"idle": 1, "shares": 512}})


def test_zero_means_unset() -> None:
    assert v1({"cpu": {"shares": 0, "quota": 0}, "memory": {"limit": 0}}) == []


@pytest.mark.parametrize("limit,out", [(100, "100"), (0, "0"), (-1, "max"), (-7, "max")])
def test_pids(limit: int, out: str) -> None:
    assert v1({"pids": {"limit": limit}}) == [("pids.max", out)] == v2({"pids": {"limit": limit}})


def test_blkio_v1() -> None:
    res = {"blockIO": {"weight": 500, "leafWeight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 600,
                                                                          "leafWeight": 200}],
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
                       "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 30}]}}
    p = R.plan(res, v1=V1).writes
    assert [(w.file, w.value) for w in p] == [
        ("blkio.weight", "500"), ("blkio.leaf_weight", "300"), ("blkio.weight_device", "8:0 600"),
        ("blkio.leaf_weight_device", "8:0 200"), ("blkio.throttle.read_bps_device", "8:0 1024"),
        ("blkio.throttle.write_iops_device", "8:16 30")]
    assert p[0].fallbacks == (("blkio.bfq.weight", "500"),)


def test_blkio_v2() -> None:
    res = {"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}],
                       "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}]}}
    p = R.plan(res, v1=(), v2=V2, cgroup2=True).writes
    assert [(w.file, w.value, w.fallbacks) for w in p] == [
        ("io.bfq.weight", "500", (("io.weight", "default 4950"),)),
        ("io.bfq.weight", "8:0 100", (("io.weight", "8:0 910"),)),
        ("io.max", "8:0 rbps=1024", ()), ("io.max", "8:0 wbps=max", ())]


def test_blkio_v2_leaf_weight_is_an_error() -> None:
    with pytest.raises(CgroupError, match="leafWeight"):
        v2({"blockIO": {"leafWeight": 10}})


def test_weight_device_needs_a_weight() -> None:
    with pytest.raises(ConfigError, match=r"weightDevice\[0\]"):
        v1({"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}})


def test_hugetlb() -> None:
    res = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}
    assert v1(res) == [("hugetlb.2MB.limit_in_bytes", "4194304"), ("hugetlb.2MB.rsvd.limit_in_bytes", "4194304")]
    assert v2(res) == [("hugetlb.2MB.max", "4194304"), ("hugetlb.2MB.rsvd.max", "4194304")]
    with pytest.raises(ConfigError, match="pageSize"):
        v1({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]})


def test_hybrid_takes_hugetlb_from_cgroup2_when_v1_lacks_it() -> None:
    """This machine: hugetlb is only on the unified hierarchy."""
    p = R.plan({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}], "memory": {"limit": 1 << 20}},
               v1=V1 - {"hugetlb"}, v2={"hugetlb"}, cgroup2=True)
    assert [(w.version, w.file) for w in p.writes] == [(1, "memory.limit_in_bytes"), (2, "hugetlb.2MB.max"),
                                                       (2, "hugetlb.2MB.rsvd.max")]
    assert p.v2_controllers == {"hugetlb"}


def test_network_v1_and_missing() -> None:
    res = {"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}, {"name": "lo", "priority": 2}]}}
    assert v1(res) == [("net_cls.classid", "1048577"), ("net_prio.ifpriomap", "eth0 5"), ("net_prio.ifpriomap", "lo 2")]
    with pytest.raises(CgroupError, match=r"network.classID: cannot apply: no cgroup v1 'net_cls' hierarchy"):
        v1(res, V1 - {"net_cls", "net_prio"})
    with pytest.raises(CgroupError, match="net_prio controller is cgroup v1 only"):
        v2({"network": {"priorities": [{"name": "lo", "priority": 1}]}})


def test_rdma() -> None:
    res = {"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaHandles": 1}}}
    assert v1(res) == [("rdma.max", "mlx4_0 hca_handle=1 hca_object=max"),
                       ("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000")]
    with pytest.raises(CgroupError, match=r"rdma\['mlx4_0'\]: cannot apply: no cgroup v1 'rdma' hierarchy"):
        v1(res, V1 - {"rdma"})


def test_missing_controller_is_named() -> None:
    with pytest.raises(CgroupError, match=r"linux.resources.pids.limit: cannot apply: no cgroup v1 'pids'"):
        v1({"pids": {"limit": 10}}, V1 - {"pids"})
    with pytest.raises(CgroupError, match=r"memory.limit: cannot apply: .*cgroup v2 'memory' controller"):
        R.plan({"memory": {"limit": 10}}, v1=(), v2={"pids"}, cgroup2=True)


def test_devices_v1_in_order() -> None:
    res = {"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3,
                                                           "access": "rw"},
                       {"allow": True, "type": "c", "major": 136, "access": "rwm"}]}
    assert v1(res) == [("devices.deny", "a"), ("devices.allow", "c 1:3 rw"), ("devices.allow", "c 136:* rwm")]


def test_devices_v2_become_a_program() -> None:
    p = R.plan({"devices": [{"allow": False}]}, v1=(), v2=V2, cgroup2=True)
    assert p.writes == () and p.devices is not None and len(p.devices) == 1


def test_unified() -> None:
    assert v2({"unified": {"memory.high": "1G", "cgroup.max.descendants": "10"}}) == [
        ("memory.high", "1G"), ("cgroup.max.descendants", "10")]
    p = R.plan({"unified": {"memory.high": "1G", "cgroup.max.depth": "2"}}, v1=(), v2=V2, cgroup2=True)
    assert p.v2_controllers == {"memory"}
    with pytest.raises(CgroupError, match="unified: cannot apply: this host has no cgroup2"):
        v1({"unified": {"memory.high": "1G"}})


@pytest.mark.parametrize("key", ["../memory.max", "memory/../x", "nodot", "a/b.c", ".."])
def test_unified_rejects_paths(key: str) -> None:
    with pytest.raises(ConfigError, match="unified"):
        v2({"unified": {key: "1"}})


@pytest.mark.parametrize("res,what", [({"memory": []}, "memory: must be an object"),
                                      ({"memory": {"limit": "1g"}}, "memory.limit: '1g' is not an integer"),
                                      ({"cpu": {"cpus": 3}}, "cpu.cpus"), ({"devices": {}}, "devices: must be an array")])
def test_bad_values(res: dict[str, Any], what: str) -> None:
    with pytest.raises(ConfigError, match=what):
        v1(res)


def test_empty() -> None:
    assert R.plan(None, v1=V1) == R.Plan() and R.plan({}, v1=()).writes == ()


def test_container_resources_appends_runc_defaults() -> None:
    spec = {"linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 5}},
                      "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                                  {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]}}
    res = R.container_resources(spec)
    assert res["pids"] == {"limit": 5} and res["devices"][0] == {"allow": False, "access": "rwm"}
    lines = [line for _, line in device_rules.v1_writes(device_rules.parse(res["devices"]))]
    assert lines == ["a", "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
                     "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"]  # no implicit rule for linux.devices
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]   # not mutated
    assert R.container_resources({"linux": {"resources": {"pids": {"limit": 1}}}}) == {"pids": {"limit": 1}}
    assert R.container_resources({}) == {}
