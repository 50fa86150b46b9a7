"""What the container gets (issue 2): namespaces, id maps, hostname, env, cwd, user, session, stdio."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import base_config

pytestmark = pytest.mark.root
NS = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt", "cgroup": "cgroup",
      "user": "user", "time": "time"}
USERNS = {"uidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}]}


def created(make_bundle, spec):
    """Create (not start) a container; its init is blocked before exec, inspectable through /proc."""
    b = make_bundle(spec)
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    return b, b.state()["pid"]


def run_out(make_bundle, spec) -> str:
    b = make_bundle(spec)
    p = b.pyoci("run", "--bundle", str(b.dir), b.id)
    assert p.returncode == 0, p.stderr
    return p.stdout


def ns_inode(pid: int | str, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def test_all_new_namespaces_differ_from_host(make_bundle):
    spec = base_config(["true"])
    spec["linux"]["namespaces"] = [{"type": t} for t in NS]
    spec["linux"].update(USERNS)
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys"] + [
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}]
    b, pid = created(make_bundle, spec)
    for t, name in NS.items():
        assert ns_inode(pid, name) != ns_inode("self", name), t
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", "200000", "65536"]
    assert Path(f"/proc/{pid}/gid_map").read_text().split() == ["0", "200000", "65536"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert "\nUid:\t200000\t200000\t200000\t200000" in status  # container root, seen from the host


def test_unlisted_namespaces_are_the_runtimes(make_bundle):
    spec = base_config(["true"])
    spec["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"}]
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] not in ("sysfs", "mqueue")]
    spec.pop("hostname")
    b, pid = created(make_bundle, spec)
    for name in ("net", "ipc", "uts", "user", "cgroup"):
        assert ns_inode(pid, name) == ns_inode("self", name)
    assert ns_inode(pid, "pid") != ns_inode("self", "pid")


def test_join_network_namespace_by_path(make_bundle):
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        time.sleep(0.2)
        path = f"/proc/{holder.pid}/ns/net"
        spec = base_config(["true"])
        spec["linux"]["namespaces"] = [{"type": "network", "path": path} if n["type"] == "network" else n
                                       for n in spec["linux"]["namespaces"]]
        b, pid = created(make_bundle, spec)
        assert ns_inode(pid, "net") == os.readlink(path) != ns_inode("self", "net")
    finally:
        holder.kill()
        holder.wait()


def test_namespace_path_of_wrong_type_is_an_error(make_bundle):
    spec = base_config(["true"])
    spec["linux"]["namespaces"] = [{"type": "network", "path": "/proc/self/ns/uts"} if n["type"] == "network" else n
                                   for n in spec["linux"]["namespaces"]]
    b = make_bundle(spec)
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and "is not a network namespace" in p.stderr
    assert not (b.root / b.id).exists()


def test_time_namespace_offsets(make_bundle):
    spec = base_config(["cat", "/proc/self/timens_offsets"])
    spec["linux"]["namespaces"].append({"type": "time"})
    spec["linux"]["timeOffsets"] = {"monotonic": {"secs": 86400, "nanosecs": 0}, "boottime": {"secs": 7200}}
    out = run_out(make_bundle, spec)
    rows = [line.split() for line in out.splitlines()]
    assert ["monotonic", "86400", "0"] in rows and ["boottime", "7200", "0"] in rows


def test_hostname_domainname_env_cwd(make_bundle, monkeypatch):
    monkeypatch.setenv("PYOCI_TEST_SECRET", "leak")
    spec = base_config(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname; pwd; tr '\\0' '\\n' < /proc/1/environ; echo"])
    spec["hostname"] = "box-1"
    spec["domainname"] = "example.test"
    spec["process"]["cwd"] = "/tmp"
    spec["process"]["env"] = ["PATH=/bin:/usr/bin", "ONLY=this"]
    lines = run_out(make_bundle, spec).splitlines()
    assert lines[:3] == ["box-1", "example.test", "/tmp"]
    # busybox sh execs its last command, so read /proc/1/environ from a non-final one
    # only process.env reaches the container, plus HOME from its /etc/passwd when unset (as runc/crun)
    assert sorted(x for x in lines[3:] if x) == ["HOME=/root", "ONLY=this", "PATH=/bin:/usr/bin"]  # only process.env reaches the container


def test_home_default_from_container_passwd_or_slash(make_bundle):
    spec = base_config(["sh", "-c", "echo $HOME"])
    spec["process"]["user"] = {"uid": 1000, "gid": 1000}
    assert run_out(make_bundle, spec) == "/home\n"
    spec["process"]["user"] = {"uid": 4242, "gid": 4242}
    assert run_out(make_bundle, spec) == "/\n"
    spec["process"]["env"].append("HOME=/explicit")
    assert run_out(make_bundle, spec) == "/explicit\n"


def test_cwd_created_when_missing(make_bundle):
    spec = base_config(["pwd"])
    spec["process"]["cwd"] = "/does/not/exist/yet"
    assert run_out(make_bundle, spec) == "/does/not/exist/yet\n"


def test_user_uid_gid_additional_gids(make_bundle):
    spec = base_config(["id"])
    spec["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}
    assert run_out(make_bundle, spec).strip() == "uid=1000(user) gid=1000(user) groups=10,20"


def test_init_is_pid1_in_a_new_session(make_bundle):
    spec = base_config(["sh", "-c", "echo $$; cut -d' ' -f6,7 /proc/self/stat"])
    out = run_out(make_bundle, spec).split()
    assert out[0] == "1"
    assert out[1] == "1" and out[2] == "0"  # session id 1 (itself), no controlling tty


def test_readonly_root(make_bundle):
    spec = base_config(["sh", "-c", "touch /x 2>&1; echo rc=$?"])
    spec["root"]["readonly"] = True
    out = run_out(make_bundle, spec)
    assert "Read-only file system" in out and "rc=1" in out


def test_user_namespace_demo_bundle_shape(make_bundle):
    """bundles/busybox/config.json (the demo) runs as is: user namespace with a 65536-id mapping."""
    repo = Path(__file__).resolve().parents[2]
    spec = json.loads((repo / "bundles" / "busybox" / "config.json").read_text())
    out = run_out(make_bundle, spec)
    assert "hostname: pyoci-demo" in out and "uid=0(root)" in out and "pid:      1" in out
    assert "uid_map: 0 100000 65536" in out


@pytest.mark.parametrize("idmap,owner", [(True, "0"), (False, "65534")])
def test_idmapped_bind_mount_in_a_user_namespace(make_bundle, tmp_path, idmap, owner):
    """The runtime makes the idmapped tree (host privileges) and the init mounts it: a host root-owned file
    shows as root inside instead of the overflow id."""
    vol = Path(tempfile.mkdtemp(prefix="pyoci-test-vol-"))
    try:
        vol.chmod(0o755)
        (vol / "f").write_text("x")
        spec = base_config(["sh", "-c", "ls -ln /vol | tail -1"])
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"].update(USERNS)
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "sysfs"]
        mnt = {"destination": "/vol", "type": "bind", "source": str(vol), "options": ["bind"]}
        if idmap:
            mnt["options"].append("idmap")
            mnt["uidMappings"] = USERNS["uidMappings"]
            mnt["gidMappings"] = USERNS["gidMappings"]
        spec["mounts"].append(mnt)
        b = make_bundle(spec)
        (b.rootfs / "vol").mkdir()  # the mapped root cannot create it in a host-owned rootfs (nor under runc)
        p = b.pyoci("run", "--bundle", str(b.dir), b.id)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split()[2:4] == [owner, owner]
    finally:
        shutil.rmtree(vol, ignore_errors=True)


@pytest.mark.parametrize("edit,field", [
    (lambda s: s["mounts"].append({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["size=banana"]}), "config.json: mounts[6]: "),
    (lambda s: s["mounts"].append({"destination": "/x", "type": "bogusfs", "source": "x"}), "config.json: mounts[6]: "),
    (lambda s: s["process"].__setitem__("scheduler", {"policy": "SCHED_DEADLINE"}), "config.json: process.scheduler: "),
])
def test_kernel_refusals_name_the_config_field(make_bundle, edit, field):
    spec = base_config(["true"])
    edit(spec)
    b = make_bundle(spec)
    p = b.pyoci("run", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and field in p.stderr and "Errno" in p.stderr
    assert not (b.root / b.id).exists()
