"""Test doubles. FakeCgroupFS: a cgroupfs imitation in a tmp dir for the cgroup managers.

make_v1 / make_hybrid / make_v2 build the mounts; the fake's mkdir fills a new cgroup with the files the kernel
would show (per controller), writes to cgroup.subtree_control add/remove controller files in the children,
cgroup.procs appends, cgroup.freeze updates cgroup.events, rmdir refuses a populated cgroup (EBUSY). Every
write is recorded in `writes` as (path relative to the root, value).
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from pyoci.cgroups.fs import CgroupFS

CORE_V1 = {"cgroup.procs": "", "tasks": "", "cgroup.clone_children": "0", "notify_on_release": "0"}
V1_FILES: dict[str, dict[str, str]] = {
    "memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712",
               "memory.soft_limit_in_bytes": "9223372036854771712", "memory.kmem.tcp.limit_in_bytes": "9223372036854771712",
               "memory.swappiness": "60", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.use_hierarchy": "1", "memory.usage_in_bytes": "4096", "memory.max_usage_in_bytes": "8192",
               "memory.failcnt": "0", "memory.memsw.usage_in_bytes": "4096", "memory.memsw.max_usage_in_bytes": "8192",
               "memory.memsw.failcnt": "0", "memory.stat": "cache 100\nrss 200\n"},
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.cfs_burst_us": "0",
            "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0", "cpu.idle": "0",
            "cpu.stat": "nr_periods 5\nnr_throttled 2\nthrottled_time 3000\n"},
    "cpuacct": {"cpuacct.usage": "123456", "cpuacct.usage_percpu": "100000 23456 ",
                "cpuacct.usage_all": "cpu user system\n0 90000 10000\n1 20000 3456\n",
                "cpuacct.stat": "user 3\nsystem 2\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_service_bytes_recursive": "254:0 Read 4096\n254:0 Write 0\nTotal 4096\n",
              "blkio.throttle.io_serviced_recursive": "254:0 Read 1\n254:0 Write 0\nTotal 1\n"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": "9223372036854771712", "hugetlb.2MB.usage_in_bytes": "0",
                "hugetlb.2MB.max_usage_in_bytes": "0", "hugetlb.2MB.failcnt": "0"},
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": "lo 0\n"},
    "rdma": {"rdma.max": ""},
}
CORE_V2 = {"cgroup.procs": "", "cgroup.controllers": "", "cgroup.subtree_control": "", "cgroup.freeze": "0",
           "cgroup.kill": "", "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.type": "domain"}
V2_FILES: dict[str, dict[str, str]] = {
    "memory": {"memory.max": "max", "memory.low": "0", "memory.swap.max": "max", "memory.current": "4096",
               "memory.swap.current": "0", "memory.peak": "8192", "memory.events": "low 0\nhigh 0\nmax 1\noom 0\noom_kill 0\n",
               "memory.stat": "anon 100\nfile 200\n", "memory.high": "max"},
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
            "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-1", "cpuset.mems.effective": "0"},
    "pids": {"pids.max": "max", "pids.current": "1"},
    "io": {"io.max": "", "io.weight": "default 100", "io.stat": "254:0 rbytes=4096 wbytes=0 rios=1 wios=0\n"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0", "hugetlb.2MB.events": "max 0\n",
                "hugetlb.2MB.rsvd.max": "max"},
    "rdma": {"rdma.max": ""},
}


def _write_files(d: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        p = d / name
        if not p.exists():
            p.write_text(content)


class FakeCgroupFS(CgroupFS):
    """CgroupFS over a tmp tree; mounts: {dir name: (version, controllers)}."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: dict[Path, tuple[int, tuple[str, ...]]] = {}
        self.writes: list[tuple[str, str]] = []
        self.fail: dict[str, int] = {}   # relative path → errno to raise on write

    def rel(self, path: str | Path) -> str:
        return str(Path(path).relative_to(self.root))

    def add_v1(self, name: str, controllers: tuple[str, ...]) -> Path:
        d = self.root / name
        d.mkdir(parents=True)
        _write_files(d, CORE_V1)
        for c in controllers:
            root_files = dict(V1_FILES.get(c, {}))
            if c == "cpuset":
                root_files.update({"cpuset.cpus": "0-1", "cpuset.mems": "0"})
            if c == "freezer":
                root_files.pop("freezer.state")   # the root cgroup cannot be frozen
            _write_files(d, root_files)
        self.mounts[d] = (1, controllers)
        return d

    def add_v2(self, name: str, controllers: tuple[str, ...]) -> Path:
        d = self.root / name if name else self.root
        d.mkdir(parents=True, exist_ok=True)
        _write_files(d, {k: v for k, v in CORE_V2.items() if k not in ("cgroup.freeze", "cgroup.kill", "cgroup.events")})
        (d / "cgroup.controllers").write_text(" ".join(controllers) + "\n")
        self.mounts[d] = (2, controllers)
        return d

    def _mount_of(self, p: Path) -> tuple[Path, int, tuple[str, ...]]:
        for m, (ver, ctrls) in self.mounts.items():
            if p == m or m in p.parents:
                return m, ver, ctrls
        raise AssertionError(f"{p} is not under a fake mount")

    # --- CgroupFS overrides ---------------------------------------------------------------------------
    def mkdir(self, path: str) -> None:
        super().mkdir(path)
        p = Path(path)
        _, ver, ctrls = self._mount_of(p)
        if ver == 1:
            _write_files(p, CORE_V1)
            for c in ctrls:
                _write_files(p, V1_FILES.get(c, {}))
        else:
            _write_files(p, CORE_V2)
            enabled = (p.parent / "cgroup.subtree_control").read_text().split()
            (p / "cgroup.controllers").write_text(" ".join(enabled) + "\n")
            for c in enabled:
                _write_files(p, V2_FILES.get(c, {}))

    def write(self, path: str, value: str) -> None:
        rel = self.rel(path)
        p = Path(path)
        if rel in self.fail:
            from pyoci.cgroups.fs import CgroupError, describe
            exc = OSError(self.fail[rel], os.strerror(self.fail[rel]))
            raise CgroupError(f"write {value!r} to {path!r}: {describe(exc)}", self.fail[rel])
        self.writes.append((rel, value))
        if not p.exists():
            super().write(path, value)   # raises the ENOENT error
        name = p.name
        if name == "cgroup.subtree_control":
            self._subtree(p, value)
        elif name in ("cgroup.procs", "devices.allow", "devices.deny", "io.max", "blkio.throttle.read_bps_device"):
            with open(p, "a") as f:
                f.write(value.strip() + "\n")
        elif name == "cgroup.freeze":
            super().write(path, value)
            (p.parent / "cgroup.events").write_text(f"populated 0\nfrozen {value.strip()}\n")
        else:
            super().write(path, value)

    def _subtree(self, p: Path, value: str) -> None:
        have = p.read_text().split()
        for tok in value.split():
            c = tok[1:]
            if tok[0] == "+" and c not in have:
                have.append(c)
            elif tok[0] == "-" and c in have:
                have.remove(c)
        p.write_text(" ".join(have) + "\n")
        for child in p.parent.iterdir():
            if child.is_dir():
                (child / "cgroup.controllers").write_text(" ".join(have) + "\n")
                for c in have:
                    _write_files(child, V2_FILES.get(c, {}))

    def rmdir(self, path: str) -> None:
        p = Path(path)
        if any(x.is_dir() for x in p.iterdir()):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), path)
        if (p / "cgroup.procs").exists() and (p / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        shutil.rmtree(p)


def make_v1(root: Path, unified: tuple[str, ...] | None = None, *,
            controllers: tuple[str, ...] = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio",
                                            "pids")) -> FakeCgroupFS:
    """This machine's layout: one dir per v1 controller, name=systemd, and (hybrid) a cgroup2 'unified'."""
    fs = FakeCgroupFS(root)
    for c in controllers:
        fs.add_v1(c, (c,))
    fs.add_v1("systemd", ())
    if unified is not None:
        fs.add_v2("unified", unified)
    return fs


def make_v2(root: Path, controllers: tuple[str, ...] = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids",
                                                        "rdma")) -> FakeCgroupFS:
    fs = FakeCgroupFS(root)
    fs.add_v2("", controllers)
    return fs
