"""The OCI life cycle on real containers: create → start → state → kill → delete, run, and every error case."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PYOCI, REPO, base_config

pytestmark = pytest.mark.root


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_create_start_kill_delete(make_bundle):
    b = make_bundle(args=["sh", "-c", "echo ran > /ran; exec sleep 60"])
    pidfile = b.dir / "init.pid"
    b.pyoci("create", "--bundle", str(b.dir), "--pid-file", str(pidfile), b.id, check=True)
    st = b.state()
    assert st["status"] == "created" and st["id"] == b.id and st["bundle"] == str(b.dir)
    raw = pidfile.read_text()
    assert raw == str(st["pid"]) and "\n" not in raw  # digits, no newline, written before create returned
    assert not (b.rootfs / "ran").exists()  # process.args must not run before start
    assert b.pyoci("start", b.id).returncode == 0
    assert wait_for(lambda: (b.rootfs / "ran").exists())
    assert b.state()["status"] == "running"
    p = b.pyoci("start", b.id)
    assert p.returncode == 1 and "already running" in p.stderr
    p = b.pyoci("delete", b.id)
    assert p.returncode == 1 and "not stopped" in p.stderr
    b.pyoci("kill", b.id, "KILL", check=True)
    assert wait_for(lambda: b.state()["status"] == "stopped")
    assert b.state()["pid"] == 0
    p = b.pyoci("kill", b.id, "TERM")
    assert p.returncode == 1 and "container not running" in p.stderr
    p = b.pyoci("start", b.id)
    assert p.returncode == 1 and "stopped" in p.stderr
    b.pyoci("delete", b.id, check=True)
    assert not (b.root / b.id).exists()
    p = b.pyoci("state", b.id)
    assert p.returncode == 1 and "does not exist" in p.stderr


def test_kill_created_container_with_term(make_bundle):
    """The init is pid 1 of its pid namespace and blocked before exec: TERM must still stop it."""
    b = make_bundle(args=["sleep", "60"])
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    b.pyoci("kill", b.id, "TERM", check=True)
    assert wait_for(lambda: b.state()["status"] == "stopped")


def test_delete_created_without_force_like_runc(make_bundle):
    # Spec: error; runc/crun/youki kill and delete a created container and containerd depends on it.
    b = make_bundle(args=["sleep", "60"])
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    pid = b.state()["pid"]
    b.pyoci("delete", b.id, check=True)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert not (b.root / b.id).exists()


def test_delete_force_running_and_missing(make_bundle):
    b = make_bundle(args=["sleep", "60"])
    b.pyoci("run", "--detach", "--bundle", str(b.dir), b.id, check=True)
    assert b.state()["status"] == "running"
    b.pyoci("delete", "--force", b.id, check=True)
    assert not (b.root / b.id).exists()
    assert b.pyoci("delete", "--force", "never-existed").returncode == 0
    p = b.pyoci("delete", "never-existed")
    assert p.returncode == 1 and "does not exist" in p.stderr


def test_create_with_taken_id_fails_and_keeps_the_first(make_bundle):
    b = make_bundle(args=["sleep", "60"])
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    pid = b.state()["pid"]
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and "already exists" in p.stderr
    assert b.state()["pid"] == pid and b.state()["status"] == "created"


def test_run_exit_status_and_stdio(make_bundle):
    b = make_bundle(args=["sh", "-c", "echo out; echo err >&2; exit 7"])
    p = b.pyoci("run", "--bundle", str(b.dir), b.id)
    assert p.returncode == 7
    assert p.stdout == "out\n" and "err\n" in p.stderr
    assert not (b.root / b.id).exists()  # deleted after run (no --keep)


def test_run_killed_by_signal_is_128_plus(make_bundle):
    b = make_bundle(args=["sleep", "60"])
    proc = subprocess.Popen([*PYOCI, "--root", str(b.root), "run", "--bundle", str(b.dir), b.id], cwd=REPO)
    try:
        assert wait_for(lambda: (b.root / b.id).exists() and b.state()["status"] == "running")
        os.kill(b.state()["pid"], signal.SIGKILL)
        assert proc.wait(timeout=20) == 128 + 9
    finally:
        proc.kill()
        proc.wait()


def test_run_relays_signals(make_bundle):
    b = make_bundle(args=["sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.05; done"])
    proc = subprocess.Popen([*PYOCI, "--root", str(b.root), "run", "--bundle", str(b.dir), b.id], cwd=REPO)
    try:
        assert wait_for(lambda: (b.root / b.id).exists() and b.state()["status"] == "running")
        time.sleep(0.3)  # let sh install its trap
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 42
    finally:
        proc.kill()
        proc.wait()


def test_run_keep(make_bundle):
    b = make_bundle(args=["true"])
    assert b.pyoci("run", "--keep", "--bundle", str(b.dir), b.id).returncode == 0
    assert b.state()["status"] == "stopped"


def test_failed_create_leaves_nothing(make_bundle):
    b = make_bundle(args=["/no/such/binary"])
    before = Path("/proc/self/mountinfo").read_text().count(str(b.dir))
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and "no such file or directory" in p.stderr.lower()
    assert not (b.root / b.id).exists()
    assert Path("/proc/self/mountinfo").read_text().count(str(b.dir)) == before
    mine = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert b.id not in mine
    leftovers = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/pyoci/{b.id}")]
    assert leftovers == []  # the default cgroupsPath is /pyoci/<id> in every hierarchy


def test_missing_binary_in_path_message_for_podman(make_bundle):
    b = make_bundle(args=["definitely-not-here"])
    p = b.pyoci("run", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and "executable file not found in $PATH" in p.stderr


def test_config_snapshot_is_used_after_create(make_bundle):
    b = make_bundle(args=["sh", "-c", "echo original"])
    out = b.dir / "out"
    with open(out, "w") as f:  # terminal false: the container's stdout is create's stdout, untouched
        b.pyoci("create", "--bundle", str(b.dir), b.id, check=True, capture_output=False, stdout=f,
                stderr=subprocess.DEVNULL)
    b.spec["process"]["args"] = ["sh", "-c", "echo edited"]
    b.write()
    b.pyoci("start", b.id, check=True)
    assert wait_for(lambda: out.read_text() == "original\n")


def test_json_log_on_create_failure(make_bundle, tmp_path):
    b = make_bundle(args=["true"])
    b.spec["process"]["user"]["uid"] = -1
    b.write()
    log = tmp_path / "log.json"
    p = b.pyoci("--log", str(log), "--log-format", "json", "create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and "process.user.uid" in entry["msg"]
    assert not (b.root / b.id).exists()


def test_list_formats(make_bundle):
    b = make_bundle(args=["sleep", "60"])
    p = b.pyoci("list")
    assert p.returncode == 1 and "no such directory" in p.stderr  # an explicit --root must exist (runc)
    b.root.mkdir()
    assert b.pyoci("list", "--format", "json").stdout == "null\n"  # runc prints a nil slice as null
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    items = json.loads(b.pyoci("list", "--format", "json", check=True).stdout)
    assert [i["id"] for i in items] == [b.id] and items[0]["status"] == "created"
    assert b.pyoci("list", "-q", check=True).stdout == b.id + "\n"
    table = b.pyoci("list", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]


def test_preserve_fds_missing_is_an_error(make_bundle):
    b = make_bundle(args=["true"])
    p = b.pyoci("create", "--preserve-fds", "3", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and "preserved-fd" in p.stderr
    assert not (b.root / b.id).exists()


def test_pids_limit_one_still_creates(make_bundle):
    # Limits are applied when the init is alone in its cgroup: the intermediate child must not count.
    spec = base_config(["sh", "-c", "echo alone"])
    spec["linux"]["resources"] = {"pids": {"limit": 1}}
    b = make_bundle(spec)
    p = b.pyoci("run", "--bundle", str(b.dir), b.id)
    assert p.returncode == 0 and p.stdout == "alone\n", p.stderr


def test_delete_kills_processes_left_in_the_cgroup_without_own_pid_ns(make_bundle):
    spec = base_config(["sh", "-c", "sleep 300 & sleep 300"])
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "proc"]
    b = make_bundle(spec)
    b.pyoci("run", "--detach", "--bundle", str(b.dir), b.id, check=True)
    cg = json.loads((b.root / b.id / "state.json").read_text())["cgroup"]
    ps = json.loads(b.pyoci("ps", "--format", "json", b.id, check=True).stdout)
    assert len(ps) == 2
    b.pyoci("kill", b.id, "KILL", check=True)  # only the init: its sibling survives (no pid namespace)
    assert wait_for(lambda: b.state()["status"] == "stopped")
    b.pyoci("delete", b.id, check=True)
    for p in ps:
        assert wait_for(lambda: not Path(f"/proc/{p}").exists() or
                        Path(f"/proc/{p}/stat").read_text().split(")")[1].split()[0] == "Z")
    assert not (b.root / b.id).exists() and cg


def test_created_init_holds_only_stdio_and_its_state_dir(make_bundle):
    """B1 for the runtime's own fds: nothing opened by create (procfs handles, sockets, config) may reach the
    init except the O_PATH state-dir fd it opens exec.fifo through."""
    b = make_bundle(args=["sleep", "60"])
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    pid = b.state()["pid"]
    fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    extra = {n: t for n, t in fds.items() if n > 2}
    assert list(extra.values()) == [str(b.root / b.id)], fds
