"""Cgroups end to end through the CLI on real containers: limits enforced, pause/resume, update, ps, events,
kill --all, and delete leaving no cgroup behind."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config

pytestmark = pytest.mark.root

# A child shell forks 30 sleeps; when a fork is refused it dies, its sleeps stay (reparented to the init).
BOMB = "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do sleep 300 & done' 2>/dev/null"
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /c.tmp; mv /c.tmp /c; sleep 0.01; done"


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def cg_paths(b: Any) -> dict[str, str]:
    return json.loads((b.root / b.id / "state.json").read_text())["cgroup"]["paths"]


def cg_file(b: Any, key: str, name: str) -> str:
    return Path(cg_paths(b)[key], name).read_text().strip()


def config(args: list[str], **resources: Any) -> dict[str, Any]:
    spec = base_config(args)
    spec["linux"].setdefault("resources", {}).update(resources)
    return spec


def stdin_json(obj: Any) -> dict[str, Any]:
    """subprocess kwargs feeding obj as JSON on stdin (update does not start processes: pipes are fine)."""
    return {"capture_output": False, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "input": json.dumps(obj)}


def run(b: Any) -> None:
    b.pyoci("run", "-d", "--bundle", str(b.dir), b.id, check=True)


def counter(b: Any) -> int:
    for _ in range(200):
        try:
            return int((b.rootfs / "c").read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
    raise AssertionError("the counter never wrote")


def test_pause_stops_a_counter_resume_restarts_it(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", COUNTER]))
    run(b)
    assert wait_for(lambda: (b.rootfs / "c").exists())
    b.pyoci("pause", b.id, check=True)
    assert b.state()["status"] == "paused" and cg_file(b, "freezer", "freezer.state") == "FROZEN"
    a = counter(b)
    time.sleep(0.5)
    assert counter(b) == a, "the counter moved while paused"
    p = b.pyoci("pause", b.id)
    assert p.returncode == 1 and "container not running" in p.stderr
    b.pyoci("resume", b.id, check=True)
    assert b.state()["status"] == "running"
    time.sleep(0.5)
    assert counter(b) > a + 5, "the counter did not restart"
    p = b.pyoci("resume", b.id)
    assert p.returncode == 1 and "container not paused" in p.stderr


def test_delete_of_a_paused_container_needs_force_and_leaves_no_cgroup(make_bundle: Any) -> None:
    b = make_bundle(config(["sleep", "300"]))
    run(b)
    paths = cg_paths(b)
    b.pyoci("pause", b.id, check=True)
    assert b.pyoci("delete", b.id).returncode == 1
    b.pyoci("delete", "--force", b.id, check=True)
    assert [p for p in set(paths.values()) if os.path.exists(p)] == []


def test_update_changes_live_limits(make_bundle: Any, tmp_path: Path) -> None:
    script = f"while [ ! -e /go ]; do sleep 0.05; done; {BOMB}; echo done > /forked; exec sleep 300"
    b = make_bundle(config(["sh", "-c", script], pids={"limit": 50}, memory={"limit": 64 << 20}))
    run(b)
    assert cg_file(b, "pids", "pids.max") == "50"
    b.pyoci("update", "--pids-limit", "7", "--memory", "32m", "--cpu-share", "256", "--cpu-quota", "30000",
            b.id, check=True)
    assert (cg_file(b, "pids", "pids.max"), cg_file(b, "memory", "memory.limit_in_bytes")) == ("7", str(32 << 20))
    assert (cg_file(b, "cpu", "cpu.shares"), cg_file(b, "cpu", "cpu.cfs_quota_us")) == ("256", "30000")
    (b.rootfs / "go").write_text("")
    assert wait_for(lambda: (b.rootfs / "forked").exists())
    # at the refused fork: init + forking shell + 5 sleeps = 7; the shell then died: 6 remain
    time.sleep(0.3)
    assert cg_file(b, "pids", "pids.current") == "6"
    assert int(dict(x.split() for x in cg_file(b, "pids", "pids.events").splitlines())["max"]) > 0
    # containerd: JSON on stdin; podman: a file. Other fields keep their values.
    b.pyoci("update", "--resources=-", b.id, check=True, **stdin_json({"memory": {"limit": 48 << 20}}))
    assert cg_file(b, "memory", "memory.limit_in_bytes") == str(48 << 20) and cg_file(b, "pids", "pids.max") == "7"
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 100}, "cpu": {"shares": 512}}))
    b.pyoci("update", f"--resources={f}", b.id, check=True)
    assert (cg_file(b, "pids", "pids.max"), cg_file(b, "cpu", "cpu.shares")) == ("100", "512")
    p = b.pyoci("update", "--resources=-", b.id, **stdin_json({"network": {"classID": 5}}))
    assert p.returncode == 1 and "linux.resources.network.classID: cannot apply" in p.stderr


def test_update_of_a_stopped_container_is_refused(make_bundle: Any) -> None:
    b = make_bundle(config(["true"]))
    run(b)
    assert wait_for(lambda: b.state()["status"] == "stopped")
    p = b.pyoci("update", "--pids-limit", "5", b.id)
    assert p.returncode == 1 and "container not running" in p.stderr


def test_ps_lists_the_processes(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", "sleep 301 & sleep 302 & wait"]))
    run(b)
    init = b.state()["pid"]
    assert wait_for(lambda: len(json.loads(b.pyoci("ps", "--format", "json", b.id, check=True).stdout)) == 3)
    pids = json.loads(b.pyoci("ps", "--format", "json", b.id, check=True).stdout)
    assert init in pids and sorted(pids) == pids
    cmds = sorted(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").strip().decode() for p in pids)
    assert cmds[1:] == ["sleep 301", "sleep 302"]
    table = b.pyoci("ps", b.id, check=True).stdout.splitlines()
    assert table[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert sorted(int(line.split()[1]) for line in table[1:]) == pids
    assert any(line.endswith("sleep 302") for line in table)


def test_kill_all_reaches_every_process_and_delete_removes_the_cgroup(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & wait; sleep 300"]))
    run(b)
    assert wait_for(lambda: len(json.loads(b.pyoci("ps", "-f", "json", b.id).stdout or "[]")) == 3)
    pids = json.loads(b.pyoci("ps", "-f", "json", b.id).stdout)
    paths = cg_paths(b)
    b.pyoci("kill", "--all", b.id, "KILL", check=True)
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}/cmdline") and Path(f"/proc/{p}/cmdline").read_bytes()
                                    for p in pids))
    assert wait_for(lambda: b.state()["status"] == "stopped")
    b.pyoci("delete", b.id, check=True)
    assert [p for p in set(paths.values()) if os.path.exists(p)] == []


def test_memory_limit_oom_kills_a_hog_in_the_container(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", "x=$(yes | head -c 300000000); echo survived > /survived"],
                           memory={"limit": 32 << 20, "swap": 32 << 20}))
    run(b)
    assert wait_for(lambda: b.state()["status"] == "stopped", timeout=60)
    assert not (b.rootfs / "survived").exists()
    oom = dict(x.split() for x in cg_file(b, "memory", "memory.oom_control").splitlines())
    assert int(oom["oom_kill"]) >= 1


def test_pids_limit_from_the_config_is_enforced(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", f"{BOMB}; echo forked > /forked; exec sleep 300"], pids={"limit": 5}))
    run(b)
    assert wait_for(lambda: (b.rootfs / "forked").exists())
    time.sleep(0.3)
    assert cg_file(b, "pids", "pids.current") == "4" and cg_file(b, "pids", "pids.max") == "5"   # see above
    assert int(dict(x.split() for x in cg_file(b, "pids", "pids.events").splitlines())["max"]) > 0


def test_events_stats(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", "sleep 300 & wait"], memory={"limit": 100 << 20}, pids={"limit": 40}))
    run(b)
    assert wait_for(lambda: int(cg_file(b, "pids", "pids.current")) == 2)
    out = b.pyoci("events", "--stats", b.id, check=True).stdout.splitlines()
    assert len(out) == 1
    ev = json.loads(out[0])
    assert (ev["type"], ev["id"]) == ("stats", b.id)
    d = ev["data"]
    assert list(d) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"]
    assert d["pids"] == {"current": 2, "limit": 40} and d["memory"]["usage"]["limit"] == 100 << 20


def test_events_stream_stops_with_the_container(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", "sleep 1.2"]))
    run(b)
    p = b.pyoci("events", "--interval", "300ms", b.id, timeout=30)
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 0 and 2 <= len(lines) <= 6 and {x["type"] for x in lines} == {"stats"}


def test_unapplicable_resource_fails_create_and_leaves_nothing(make_bundle: Any) -> None:
    b = make_bundle(config(["true"], network={"classID": 42}))
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1
    err = [x for x in p.stderr.splitlines() if "level=error" in x]
    assert len(err) == 1 and "linux.resources.network.classID: cannot apply: no cgroup v1 'net_cls'" in err[0]
    assert not (b.root / b.id).exists()
    assert not [d for d in Path("/sys/fs/cgroup").glob(f"*/pyoci/{b.id}")]


def test_default_devices_are_usable(make_bundle: Any) -> None:
    """linux.resources.devices denies all (runc's spec): the default allow list still lets /dev/null work."""
    b = make_bundle(config(["sh", "-c", "echo x > /dev/null && echo ok > /res; head -c 4 /dev/zero | wc -c >> /res"]))
    run(b)
    assert wait_for(lambda: b.state()["status"] == "stopped")
    assert (b.rootfs / "res").read_text().split()[:2] == ["ok", "4"]


def test_events_reports_an_oom_kill(make_bundle: Any) -> None:
    b = make_bundle(config(["sh", "-c", "sleep 1; (x=$(yes | head -c 300000000)); sleep 1"],
                           memory={"limit": 32 << 20, "swap": 32 << 20}))
    run(b)
    p = b.pyoci("events", "--interval", "500ms", b.id, timeout=60)
    kinds = [json.loads(x)["type"] for x in p.stdout.splitlines()]
    assert p.returncode == 0 and kinds.count("oom") == 1 and kinds[0] == "stats", kinds
    assert {"type": "oom", "id": b.id} in [json.loads(x) for x in p.stdout.splitlines()]
