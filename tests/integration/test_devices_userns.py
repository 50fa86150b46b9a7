"""linux.devices in a user namespace (config-linux.md#devices: MUST be available): the container's root cannot
mknod, so a node the host has not at that path is made by the runtime in a private, detached tmpfs and bound
in; nothing of it reaches the host's mount table."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config

pytestmark = pytest.mark.root
BASE = 210000
USERNS = {"uidMappings": [{"containerID": 0, "hostID": BASE, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": BASE, "size": 65536}]}
# Paths no host has (checked below), and /dev/full given as c 1:5: the host's node there is another device.
NULL, ZERO = "/dev/pyoci-t-null", "/dev/pyoci-t-sub/zero"
SCRIPT = rf"""
for p in {NULL} {ZERO} /dev/full; do echo "stat:$p=$(stat -c '%F|%t:%T|%a|%u:%g' $p)"; done
echo "null-read=$(wc -c < {NULL})"
echo x > {NULL} && echo null-write=ok
echo "zero-read=$(head -c 4 {ZERO} | od -An -tx1 | tr -d ' ')"
echo "full-read=$(head -c 2 /dev/full | od -An -tx1 | tr -d ' ')"
echo "stdnull=$(stat -c '%t:%T' /dev/null)"
"""


def _spec(args: list[str], devices: list[dict[str, Any]]) -> dict[str, Any]:
    spec = base_config(args)
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"].update(USERNS)
    spec["linux"].pop("resources", None)  # device cgroup rules are not this test's business
    # sysfs needs the network namespace's owner: keep the mount list to what a userns container can mount
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] not in ("sysfs", "mqueue")]
    spec["linux"]["devices"] = devices
    return spec


DEVICES = [
    {"path": NULL, "type": "c", "major": 1, "minor": 3, "fileMode": 0o620, "uid": 0, "gid": 5},
    {"path": ZERO, "type": "u", "major": 1, "minor": 5, "fileMode": 0o604, "uid": 1000, "gid": 1001},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666, "uid": 0, "gid": 0},
]


def _host_tmpfs() -> set[str]:
    """tmpfs lines of the host's mount table without the mount ids (another test may remount in parallel)."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return {" ".join(ln.split()[2:]) for ln in lines if " - tmpfs " in ln}


def _kv(out: str) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)


@pytest.fixture(autouse=True)
def _no_host_nodes() -> None:
    for p in (NULL, ZERO):
        assert not os.path.lexists(p), f"the host has {p}: this test needs a path the host has not"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode) and os.minor(os.stat("/dev/full").st_rdev) == 7


def test_missing_host_nodes_are_made_for_the_container(make_bundle: Any) -> None:
    before = _host_tmpfs()
    b = make_bundle(_spec(["sh", "-c", SCRIPT], DEVICES))
    p = b.pyoci("run", "--bundle", str(b.dir), b.id, timeout=60)
    assert p.returncode == 0, p.stderr
    d = _kv(p.stdout)
    # type, major:minor (hex), exact fileMode, owner as the container sees it
    assert d[f"stat:{NULL}"] == "character special file|1:3|620|0:5"
    assert d[f"stat:{ZERO}"] == "character special file|1:5|604|1000:1001"
    assert d["stat:/dev/full"] == "character special file|1:5|666|0:0"
    assert d["null-read"] == "0" and d["null-write"] == "ok"
    assert d["zero-read"] == "00000000" and d["full-read"] == "0000"
    assert d["stdnull"] == "1:3"  # the default devices are still the host's binds
    assert _host_tmpfs() == before
    assert not os.path.lexists(NULL)


def test_created_container_holds_the_node_as_its_own_mount(make_bundle: Any) -> None:
    """While created: the node is a mount in the container's namespace only, owned by the mapped host ids,
    and the init holds no fd of it (the runtime's tree fds were consumed and closed)."""
    before = _host_tmpfs()
    b = make_bundle(_spec(["true"], DEVICES))
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    pid = b.state()["pid"]
    node = Path(f"/proc/{pid}/root{ZERO}")
    st = node.stat()
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 5)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (BASE + 1000, BASE + 1001, 0o604)
    inside = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    assert any(ln.split()[4] == ZERO and " - tmpfs " in ln for ln in inside), inside
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fst = os.stat(f"/proc/{pid}/fd/{fd}")
        assert not (stat.S_ISCHR(fst.st_mode) and os.minor(fst.st_rdev) == 5), f"init holds fd {fd}"
    assert _host_tmpfs() == before
    b.pyoci("delete", "--force", b.id, check=True)


@pytest.mark.parametrize("dev, words", [
    ({"uid": 70000}, ("linux.devices[1].uid", "70000", "linux.uidMappings")),
    ({"gid": 70000}, ("linux.devices[1].gid", "70000", "linux.gidMappings")),
])
def test_unmapped_owner_is_a_one_line_error(make_bundle: Any, dev: dict[str, int], words: tuple[str, ...]) -> None:
    before = _host_tmpfs()
    b = make_bundle(_spec(["true"], [DEVICES[0], dict(DEVICES[1], **dev)]))
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1
    err = p.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert all(w in err for w in words), err
    assert b.pyoci("state", b.id).returncode != 0  # nothing left: no state
    assert _host_tmpfs() == before


def test_existing_host_node_gets_the_requested_mode_and_owner(make_bundle: Any) -> None:
    """/dev/fuse exists on the host (0600 root): the container still gets fileMode/uid/gid as written."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("host: no /dev/fuse")
    dev = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0}
    b = make_bundle(_spec(["stat", "-c", "%a %u %g %t:%T", "/dev/fuse"], [dev]))
    p = b.pyoci("run", "--bundle", str(b.dir), b.id)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["666", "0", "0", "a:e5"]
