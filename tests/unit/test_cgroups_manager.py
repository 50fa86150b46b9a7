"""Cgroup managers (v1, hybrid, v2) against a fake cgroupfs tree in tmp_path."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pyoci import cgroups
from pyoci.cgroups import manager as manager_mod
from pyoci.cgroups.fs import CgroupError
from pyoci.errors import ConfigError
from tests.fakes import FakeCgroupFS, make_v1, make_v2

SPEC = {"linux": {"cgroupsPath": "/pyoci-test/c1"}}


def spec(path: str | None = "/pyoci-test/c1", **res: Any) -> dict[str, Any]:
    linux: dict[str, Any] = {"resources": res}
    if path is not None:
        linux["cgroupsPath"] = path
    return {"linux": linux}


@pytest.fixture
def v1fs(tmp_path: Path) -> FakeCgroupFS:
    return make_v1(tmp_path / "cg")


@pytest.fixture
def hybrid(tmp_path: Path) -> FakeCgroupFS:
    return make_v1(tmp_path / "cg", unified=("hugetlb",))


@pytest.fixture
def v2fs(tmp_path: Path) -> FakeCgroupFS:
    return make_v2(tmp_path / "cg")


def mgr(fs: FakeCgroupFS, s: dict[str, Any] = SPEC, cid: str = "c1", **kw: Any) -> cgroups.Manager:
    kw.setdefault("default_devices", False)
    return cgroups.manager_for(s, cid, root=str(fs.root), fs=fs, **kw)


# --- detection and paths ----------------------------------------------------------------------------
def test_detect_modes(tmp_path: Path) -> None:
    l1 = cgroups.detect(str(tmp_path / "a"), make_v1(tmp_path / "a"))
    assert l1.mode == "v1" and l1.unified is None and dict(l1.v1)["name=systemd"].endswith("/systemd")
    lh = cgroups.detect(str(tmp_path / "b"), make_v1(tmp_path / "b", unified=("hugetlb",)))
    assert lh.mode == "hybrid" and lh.v2_available == {"hugetlb"} and "memory" in dict(lh.v1)
    l2 = cgroups.detect(str(tmp_path / "c"), make_v2(tmp_path / "c"))
    assert l2.mode == "v2" and l2.v1 == () and "memory" in l2.v2_available


def test_detect_comounted(tmp_path: Path) -> None:
    fs = FakeCgroupFS(tmp_path)
    d = fs.add_v1("cpu,cpuacct", ("cpu", "cpuacct"))
    os.symlink("cpu,cpuacct", tmp_path / "cpu")
    os.symlink("cpu,cpuacct", tmp_path / "cpuacct")
    layout = dict(cgroups.detect(str(tmp_path), fs).v1)
    assert layout == {"cpu": str(d), "cpuacct": str(d)}
    m = mgr(fs)
    m.create()
    assert m.dirs() == [str(d / "pyoci-test" / "c1")]


def test_detect_nothing(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup hierarchy"):
        cgroups.detect(str(tmp_path))


@pytest.mark.parametrize("path,out", [(None, "/pyoci/c1"), ("/a/b", "/a/b"), ("a/b", "a/b"), ("/a/../../b", "/b"),
                                      ("../../x", "x"), ("a//b/", "a/b")])
def test_container_path(path: str | None, out: str) -> None:
    assert cgroups.container_path(spec(path), "c1") == out


@pytest.mark.parametrize("path", ["/", "..", "/a/.."])
def test_container_path_root_refused(path: str) -> None:
    with pytest.raises(ConfigError, match="cgroupsPath"):
        cgroups.container_path(spec(path), "c1")


def test_systemd_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="slice:prefix:name"):
        cgroups.container_path(spec("/a/b"), "c1", systemd=True)
    monkeypatch.setattr(os.path, "isdir", lambda p: False)
    with pytest.raises(CgroupError, match="systemd is not running"):
        cgroups.container_path(spec("system.slice:pyoci:c1"), "c1", systemd=True)


def test_paths_absolute_hybrid(hybrid: FakeCgroupFS) -> None:
    m = mgr(hybrid)
    r = str(hybrid.root)
    assert m.paths["memory"] == f"{r}/memory/pyoci-test/c1" and m.paths[""] == f"{r}/unified/pyoci-test/c1"
    assert m.paths["name=systemd"] == f"{r}/systemd/pyoci-test/c1" and m.mode == "hybrid"


def test_paths_relative_to_own_cgroup(hybrid: FakeCgroupFS) -> None:
    own = "9:name=systemd:/\n4:memory:/session/x\n3:cpu,cpuacct:/c\n0::/u\n"
    m = mgr(hybrid, spec("sub/c1"), proc_cgroup=own)
    r = str(hybrid.root)
    assert m.paths["memory"] == f"{r}/memory/session/x/sub/c1" and m.paths["cpu"] == f"{r}/cpu/c/sub/c1"
    assert m.paths[""] == f"{r}/unified/u/sub/c1" and m.paths["pids"] == f"{r}/pids/sub/c1"


def test_default_path(v2fs: FakeCgroupFS) -> None:
    assert mgr(v2fs, spec(None), cid="abc").paths == {"": f"{v2fs.root}/pyoci/abc"}


# --- create / destroy -------------------------------------------------------------------------------
def test_create_v1_makes_dirs_and_fills_cpuset(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    for d in m.dirs():
        assert os.path.isdir(d)
    r = v1fs.root
    assert (r / "cpuset/pyoci-test/c1/cpuset.cpus").read_text() == "0-1"
    assert (r / "cpuset/pyoci-test/cpuset.mems").read_text() == "0"
    assert f"{r}/memory/pyoci-test" in m.created and f"{r}/memory/pyoci-test/c1" in m.created


def test_create_refuses_a_cgroup_with_processes(v1fs: FakeCgroupFS) -> None:
    d = v1fs.root / "pids/pyoci-test/c1"
    d.mkdir(parents=True)
    (d / "cgroup.procs").write_text("4242\n")
    with pytest.raises(CgroupError, match=r"already exists and has processes \[4242\]"):
        mgr(v1fs).create()


def test_create_reuses_an_empty_cgroup(v1fs: FakeCgroupFS) -> None:
    (v1fs.root / "pids/pyoci-test/c1").mkdir(parents=True)
    m = mgr(v1fs)
    m.create()
    assert f"{v1fs.root}/pids/pyoci-test/c1" not in m.created


def test_destroy_removes_own_dirs_only(v1fs: FakeCgroupFS) -> None:
    (v1fs.root / "memory/pyoci-test").mkdir()          # pre-existing parent in one hierarchy
    a, b = mgr(v1fs, spec("/pyoci-test/a"), "a"), mgr(v1fs, spec("/pyoci-test/b"), "b")
    a.create()
    b.create()
    a.destroy()
    assert not any((v1fs.root / h / "pyoci-test/a").exists() for h in ("memory", "cpu", "systemd"))
    assert (v1fs.root / "cpu/pyoci-test/b").is_dir()          # sibling untouched, shared parent kept
    b.destroy()
    # a made cpu/pyoci-test but could not remove it while b lived in it; b did not make it: it stays, like
    # runc leaves parents. A parent the last container made itself does go (test_state_round_trip).
    assert (v1fs.root / "cpu/pyoci-test").is_dir() and not list((v1fs.root / "cpu/pyoci-test").glob("*/"))
    assert (v1fs.root / "memory/pyoci-test").is_dir()
    b.destroy()   # idempotent


def test_default_parent_goes_with_the_last_container(v2fs: FakeCgroupFS) -> None:
    a, b = mgr(v2fs, spec(None), "a"), mgr(v2fs, spec(None), "b")
    a.create()
    b.create()      # b did not make /pyoci
    a.destroy()
    assert (v2fs.root / "pyoci/b").is_dir()
    b.destroy()
    assert not (v2fs.root / "pyoci").exists()


def test_destroy_removes_sub_cgroups(v2fs: FakeCgroupFS) -> None:
    m = mgr(v2fs)
    m.create()
    os.mkdir(Path(m.paths[""]) / "nested")
    m.destroy()
    assert not Path(m.paths[""]).exists()


def test_destroy_retries_then_names_the_processes(v1fs: FakeCgroupFS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "_RMDIR_DELAYS", (0, 0))
    m = mgr(v1fs)
    m.create()
    (Path(m.paths["freezer"]) / "cgroup.procs").write_text("77\n")
    with pytest.raises(CgroupError, match=r"cannot remove cgroup .*freezer/pyoci-test/c1' \(processes \[77\] .*EBUSY"):
        m.destroy()


def test_v2_create_enables_controllers_in_parents(v2fs: FakeCgroupFS) -> None:
    m = mgr(v2fs)
    m.create()
    assert sorted(v for p, v in v2fs.writes if p == "cgroup.subtree_control") == \
        sorted("+" + c for c in ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"))
    assert set((v2fs.root / "pyoci-test/cgroup.subtree_control").read_text().split()) >= {"memory", "pids"}
    assert (v2fs.root / "pyoci-test/c1/memory.max").exists()
    assert (v2fs.root / "pyoci-test/c1/cgroup.subtree_control").read_text() == ""   # leaf: nothing enabled


def test_add_joins_every_hierarchy(hybrid: FakeCgroupFS) -> None:
    m = mgr(hybrid)
    m.create()
    m.add(1234)
    joined = sorted(p for p, v in hybrid.writes if v == "1234")
    assert joined == sorted(os.path.relpath(d, hybrid.root) + "/cgroup.procs" for d in m.dirs())
    assert len(joined) == 10   # 8 controllers + name=systemd + unified


def test_add_retries_einval(v2fs: FakeCgroupFS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod.time, "sleep", lambda s: None)
    m = mgr(v2fs)
    m.create()
    v2fs.fail["pyoci-test/c1/cgroup.procs"] = errno.ESRCH
    with pytest.raises(CgroupError, match="cannot add pid 5"):
        m.add(5)


# --- apply ------------------------------------------------------------------------------------------
def written(fs: FakeCgroupFS, under: str = "pyoci-test/c1") -> list[tuple[str, str]]:
    return [(p.replace(under + "/", ""), v) for p, v in fs.writes if under in p and not p.endswith("cgroup.procs")]


def test_apply_v1_writes(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    v1fs.writes.clear()
    m.apply({"memory": {"limit": 1 << 20}, "pids": {"limit": 10}, "cpu": {"shares": 512},
             "devices": [{"allow": False}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    assert written(v1fs) == [("memory/memory.limit_in_bytes", "1048576"), ("cpu/cpu.shares", "512"),
                             ("pids/pids.max", "10"), ("devices/devices.deny", "a"), ("devices/devices.allow", "c 1:3 rwm")]


def test_default_devices_follow_the_spec_rules_and_survive_state(v1fs: FakeCgroupFS) -> None:
    s = {"linux": {"cgroupsPath": "/pyoci-test/c1", "devices": [{"path": "/dev/fuse", "type": "c", "major": 10,
                                                                  "minor": 229}]}}
    m = mgr(v1fs, s, default_devices=True)
    m.create()
    m2 = cgroups.manager_from_state(json.loads(json.dumps(m.to_state())), fs=v1fs)
    v1fs.writes.clear()
    m2.update({"devices": [{"allow": False}]})
    lines = [v for p, v in written(v1fs)]
    # runc's allow list follows the spec's rules; the linux.devices node gets no implicit rule (runc, crun)
    assert lines[:3] == ["a", "c *:* m", "b *:* m"] and "c 1:3 rwm" in lines and lines[-1] == "c 10:200 rwm"
    assert "c 10:229 rwm" not in lines
    v1fs.writes.clear()
    m2.update({"pids": {"limit": 3}})      # no device rules given: devices untouched
    assert written(v1fs) == [("pids/pids.max", "3")]


@pytest.mark.parametrize("current,swap,first", [("9223372036854771712", 2 << 20, "memory.limit_in_bytes"),
                                                ("1048576", 4 << 20, "memory.memsw.limit_in_bytes"),
                                                ("1048576", -1, "memory.memsw.limit_in_bytes")])
def test_memory_and_swap_order(v1fs: FakeCgroupFS, current: str, swap: int, first: str) -> None:
    m = mgr(v1fs)
    m.create()
    (Path(m.paths["memory"]) / "memory.limit_in_bytes").write_text(current)
    v1fs.writes.clear()
    m.apply({"memory": {"limit": 2 << 20, "swap": swap}})
    assert written(v1fs)[0][0] == f"memory/{first}"


def test_missing_file_is_an_error_naming_the_field(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    os.unlink(Path(m.paths["memory"]) / "memory.memsw.limit_in_bytes")
    with pytest.raises(CgroupError, match=r"linux.resources.memory.swap: cannot apply: 'memory.memsw.limit_in_bytes' "
                                          r"does not exist .* \(swap accounting is off"):
        m.apply({"memory": {"limit": 1 << 20, "swap": 2 << 20}})
    m.apply({"memory": {"limit": -1}})   # the implied memsw=-1 is optional


def test_blkio_weight_fallback_and_absence(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    with pytest.raises(CgroupError, match=r"blockIO.weight: cannot apply: 'blkio.weight' or 'blkio.bfq.weight' .*CFQ or BFQ"):
        m.apply({"blockIO": {"weight": 500}})
    (Path(m.paths["blkio"]) / "blkio.bfq.weight").write_text("100")
    m.apply({"blockIO": {"weight": 500}})
    assert (Path(m.paths["blkio"]) / "blkio.bfq.weight").read_text() == "500"


def test_kernel_rejection_is_named(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    v1fs.fail["pids/pyoci-test/c1/pids.max"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"^linux.resources.pids.limit: write '5' to .*pids.max': \[Errno 22\].*EINVAL"):
        m.apply({"pids": {"limit": 5}})


def test_memory_ebusy_message(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    v1fs.fail["memory/pyoci-test/c1/memory.limit_in_bytes"] = errno.EBUSY
    with pytest.raises(CgroupError, match=r"unable to set memory limit to 100 \(current usage: 4096, peak usage: 8192\)"):
        m.apply({"memory": {"limit": 100}})


def test_shares_verified(v1fs: FakeCgroupFS, monkeypatch: pytest.MonkeyPatch) -> None:
    m = mgr(v1fs)
    m.create()
    real_write = v1fs.write
    monkeypatch.setattr(v1fs, "write", lambda p, v: real_write(p, "262144" if p.endswith("cpu.shares") else v))
    with pytest.raises(CgroupError, match=r"cpu.shares: the kernel set cpu.shares to 262144, not 999999"):
        m.apply({"cpu": {"shares": 999999}})


def test_hybrid_hugetlb_goes_to_cgroup2(hybrid: FakeCgroupFS) -> None:
    m = mgr(hybrid)
    m.create()
    m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]})
    assert ("unified/cgroup.subtree_control", "+hugetlb") in hybrid.writes
    assert ("unified/pyoci-test/cgroup.subtree_control", "+hugetlb") in hybrid.writes
    assert (Path(m.paths[""]) / "hugetlb.2MB.max").read_text() == "2097152"


def test_v1_host_without_hugetlb_says_so(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    with pytest.raises(CgroupError, match=r"hugepageLimits\[0\].limit: cannot apply: no cgroup v1 'hugetlb'"):
        m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]})


def test_apply_v2(v2fs: FakeCgroupFS, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Any] = []
    from pyoci.cgroups import bpf
    monkeypatch.setattr(bpf, "apply", lambda d, rules: loaded.append((d, rules)))
    m = mgr(v2fs)
    m.create()
    v2fs.writes.clear()
    m.apply({"memory": {"limit": 100, "swap": 300}, "cpu": {"shares": 1024, "quota": 20000},
             "pids": {"limit": -1}, "unified": {"memory.high": "90"}, "devices": [{"allow": False}]})
    assert written(v2fs) == [("memory.max", "100"), ("memory.swap.max", "200"), ("cpu.weight", "100"),
                             ("cpu.max", "20000"), ("pids.max", "max"), ("memory.high", "90")]
    assert loaded and loaded[0][0] == m.paths[""]


def test_v2_controller_not_enabled(tmp_path: Path) -> None:
    fs = make_v2(tmp_path, controllers=("memory",))
    m = mgr(fs)
    m.create()
    with pytest.raises(CgroupError, match=r"unified\['pids.max'\]: cannot apply: 'pids.max' does not exist .*"
                                          r"'pids' controller is not enabled"):
        m.apply({"unified": {"pids.max": "5"}})


def test_check_before_update(v2fs: FakeCgroupFS) -> None:
    m = mgr(v2fs)
    m.create()
    with pytest.raises(CgroupError, match="below the current usage 4096"):
        m.update({"memory": {"limit": 1000, "checkBeforeUpdate": True}})
    m.update({"memory": {"limit": 1000}})    # without the flag the kernel decides
    m.update({"memory": {"limit": 8192, "checkBeforeUpdate": True}})


# --- freezer, processes, kill -----------------------------------------------------------------------
@pytest.mark.parametrize("fixture,file,frozen", [("v1fs", "freezer/pyoci-test/c1/freezer.state", "FROZEN"),
                                                 ("v2fs", "pyoci-test/c1/cgroup.freeze", "1")])
def test_freeze_thaw(request: pytest.FixtureRequest, fixture: str, file: str, frozen: str) -> None:
    fs = request.getfixturevalue(fixture)
    m = mgr(fs)
    m.create()
    assert not m.frozen()
    m.freeze()
    assert m.frozen() and (fs.root / file).read_text() == frozen
    m.thaw()
    assert not m.frozen()


def test_freeze_timeout_thaws_and_errors(v2fs: FakeCgroupFS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "FREEZE_TIMEOUT", 0.05)
    m = mgr(v2fs)
    m.create()
    real_write = v2fs.write
    monkeypatch.setattr(v2fs, "write", lambda p, v: None if p.endswith("cgroup.freeze") and v == "1" else real_write(p, v))
    with pytest.raises(CgroupError, match="did not freeze"):
        m.freeze()


def test_no_freezer(tmp_path: Path) -> None:
    m = mgr(make_v1(tmp_path, controllers=("memory",)))
    m.create()
    assert not m.frozen()
    with pytest.raises(CgroupError, match="cannot pause: no freezer"):
        m.freeze()


def test_pids_recursive(v2fs: FakeCgroupFS) -> None:
    m = mgr(v2fs)
    m.create()
    (Path(m.paths[""]) / "cgroup.procs").write_text("30\n10\n")
    os.mkdir(Path(m.paths[""]) / "sub")
    (Path(m.paths[""]) / "sub/cgroup.procs").write_text("20\n10\n")
    assert m.pids() == [10, 20, 30]


def test_kill_all_uses_cgroup_kill(hybrid: FakeCgroupFS) -> None:
    m = mgr(hybrid)
    m.create()
    m.kill_all(signal.SIGKILL)
    assert hybrid.writes[-1] == ("unified/pyoci-test/c1/cgroup.kill", "1")


def test_kill_all_freezes_signals_thaws(v1fs: FakeCgroupFS, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(manager_mod.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    m = mgr(v1fs)
    m.create()
    (Path(m.paths["freezer"]) / "cgroup.procs").write_text("11\n12\n")
    m.kill_all(signal.SIGTERM)
    assert sent == [(11, signal.SIGTERM), (12, signal.SIGTERM)]
    states = [v for p, v in v1fs.writes if p.endswith("freezer.state")]
    assert states[0] == "FROZEN" and states[-1] == "THAWED" and not m.frozen()


def test_kill_all_keeps_a_paused_container_paused(v1fs: FakeCgroupFS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod.os, "kill", lambda pid, sig: None)
    m = mgr(v1fs)
    m.create()
    m.freeze()
    m.kill_all(signal.SIGUSR1)
    assert m.frozen()
    m.kill_all(signal.SIGKILL)      # no cgroup.kill on pure v1: thawed so the kill lands
    assert not m.frozen()


# --- state, stats, import weight --------------------------------------------------------------------
def test_state_round_trip(hybrid: FakeCgroupFS) -> None:
    m = mgr(hybrid)
    m.create()
    d = json.loads(json.dumps(m.to_state()))
    m2 = cgroups.manager_from_state(d, fs=hybrid)
    assert (m2.mode, m2.paths, m2.mounts, m2.created, m2.v2_available) == \
        (m.mode, m.paths, m.mounts, m.created, m.v2_available)
    m2.destroy()
    assert not any(os.path.exists(p) for p in m.created)


def test_stats_v1_shape(hybrid: FakeCgroupFS) -> None:
    m = mgr(hybrid)
    m.create()
    (Path(m.paths["pids"]) / "pids.max").write_text("50\n")
    s = m.stats()
    assert list(s) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"]
    assert s["cpu"]["usage"] == {"total": 123456, "percpu": [100000, 23456], "percpu_kernel": [10000, 3456],
                                 "percpu_user": [90000, 20000], "kernel": 20000000, "user": 30000000}
    assert s["cpu"]["throttling"] == {"periods": 5, "throttledPeriods": 2, "throttledTime": 3000}
    assert s["memory"]["usage"] == {"limit": 9223372036854771712, "usage": 4096, "max": 8192, "failcnt": 0}
    assert s["memory"]["cache"] == 100 and s["memory"]["raw"] == {"cache": 100, "rss": 200}
    assert s["pids"] == {"limit": 50} and s["cpuset"]["cpus"] == [0, 1]
    assert s["blkio"]["ioServiceBytesRecursive"] == [{"major": 254, "op": "Read", "value": 4096},
                                                     {"major": 254, "op": "Write"}]
    assert s["network_interfaces"] is None and s["intel_rdt"] == {}


def test_stats_v2_shape(v2fs: FakeCgroupFS) -> None:
    m = mgr(v2fs)
    m.create()
    s = m.stats()
    assert s["cpu"]["usage"] == {"total": 10000, "kernel": 4000, "user": 6000}
    assert s["memory"]["usage"] == {"limit": 2**64 - 1, "usage": 4096, "max": 8192, "failcnt": 1}
    assert s["memory"]["cache"] == 200 and s["pids"] == {"current": 1}
    assert s["blkio"]["ioServicedRecursive"][0] == {"major": 254, "op": "Read", "value": 1}
    assert s["hugetlb"] == {"2MB": {"failcnt": 0}} and s["cpuset"]["cpus"] == [0, 1]


def test_manager_from_state_is_import_light() -> None:
    code = ("import sys, pyoci.cgroups as c; m = c.manager_from_state({'mode': 'hybrid', 'paths': {}, 'mounts': {}});"
            "m.frozen(); print(' '.join(sorted(sys.modules)))")
    mods = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    heavy = {"jsonschema", "pyroute2", "seccomp", "ctypes", "pyoci.cgroups.resources", "pyoci.cgroups.bpf",
             "pyoci.cgroups.stats"}
    assert not heavy & set(mods)


def test_limit_above_memsw_explained(v1fs: FakeCgroupFS) -> None:
    m = mgr(v1fs)
    m.create()
    (Path(m.paths["memory"]) / "memory.memsw.limit_in_bytes").write_text("1000")
    v1fs.fail["memory/pyoci-test/c1/memory.limit_in_bytes"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"EINVAL\) \(the memory\+swap limit 1000 is lower: raise memory.swap too\)"):
        m.update({"memory": {"limit": 4096}})
