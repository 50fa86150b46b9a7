"""Real-kernel tests for pyoci.linux.net and `pyoci network`, each inside a network namespace the test
creates (`ip netns add pyoci-test-…`); no address, route, bridge or nft rule ever touches the host's own
namespace, and every namespace, veth and process is removed in finally."""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyoci.errors import ConfigError

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = shutil.which("busybox") or str(REPO / "bundles/busybox/rootfs/bin/busybox")
HOOK = [sys.executable, "-m", "pyoci.network"]


class Box:
    """A stand-in container: `sleep` in a network namespace of its own (unshare --net)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc, self.pid = proc, proc.pid
        self.netns = f"/proc/{self.pid}/ns/net"

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net={self.netns}", "--", *cmd], capture_output=True, text=True,
                              check=check, timeout=30)

    def addrs(self, dev: str) -> list[str]:
        return _addrs(self.run("ip", "-j", "addr", "show", "dev", dev).stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class TestNetns:
    """A named network namespace for one test; commands enter it with nsenter (no new mount namespace, so
    bind mounts made inside stay visible)."""

    __test__ = False

    def __init__(self) -> None:
        self.name = f"pyoci-test-{uuid.uuid4().hex[:8]}"
        self.path = f"/run/netns/{self.name}"
        self.boxes: list[Box] = []
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd: str, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net={self.path}", "--", *cmd], capture_output=True, text=True,
                              check=check, timeout=60, input=input, env=env)

    def sh(self, script: str) -> str:
        return self.run("sh", "-ec", script).stdout

    def addrs(self, dev: str) -> list[str]:
        return _addrs(self.run("ip", "-j", "addr", "show", "dev", dev).stdout)

    def links(self) -> list[str]:
        return [link["ifname"] for link in json.loads(self.run("ip", "-j", "link").stdout)]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) in a forked child that joined this namespace; returns its result or re-raises."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns
            try:
                os.close(r)
                from pyoci.linux import libc
                fd = os.open(self.path, os.O_RDONLY)
                libc.setns(fd, libc.CLONE_NEWNET)
                try:
                    out: tuple[str, Any] = ("ok", fn(*args))
                except BaseException as exc:  # noqa: BLE001 - shipped to the parent
                    out = ("err", exc)
                with os.fdopen(w, "wb") as f:
                    f.write(pickle.dumps(out))
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        kind, value = pickle.loads(data)
        if kind == "err":
            raise value
        return value

    def box(self) -> Box:
        me = os.stat(self.path).st_ino
        proc = subprocess.Popen(["nsenter", f"--net={self.path}", "--", "unshare", "--net", "--", "sleep", "300"])
        box = Box(proc)
        self.boxes.append(box)
        for _ in range(500):  # until unshare has exec'd sleep in the new namespace
            try:
                if os.stat(box.netns).st_ino != me and os.readlink(f"/proc/{box.pid}/exe").endswith("sleep"):
                    return box
            except OSError:
                pass
            time.sleep(0.01)
        raise AssertionError("stand-in container did not start")

    def close(self) -> None:
        for b in self.boxes:
            b.stop()
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def _addrs(ip_json: str) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(ip_json) for a in link.get("addr_info", [])
            if a.get("scope") == "global"]


@pytest.fixture
def testns() -> Any:
    ns = TestNetns()
    try:
        yield ns
    finally:
        ns.close()


def _host_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=False).stdout


# --------------------------------------------------------------------------------------------------------
# loopback

def _lo_check() -> tuple[bool, int, bool, bool]:
    """In a fresh namespace: (lo up before?, errno of a UDP connect to 127.0.0.1, lo up after, TCP echo ok)."""
    import fcntl
    import struct

    from pyoci.linux import libc, net

    def lo_up() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), net.SIOCGIFFLAGS,
                                                          struct.pack("16sH22x", b"lo", 0)))[1]
        return bool(flags & net.IFF_UP)

    libc.unshare(libc.CLONE_NEWNET)
    before = lo_up()
    err = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("127.0.0.1", 9))
        except OSError as exc:
            err = exc.errno or 0
    net.loopback_up()
    net.loopback_up()  # idempotent
    with socket.create_server(("127.0.0.1", 0)) as srv, socket.create_connection(srv.getsockname(), timeout=2) as c:
        conn, _ = srv.accept()
        c.sendall(b"ping")
        echoed = conn.recv(4) == b"ping"
        conn.close()
    assert "pyroute2" not in sys.modules  # loopback_up must not pull it in (~200 ms)
    return before, err, lo_up(), echoed


def test_loopback_up_in_a_new_namespace(testns: TestNetns) -> None:
    before, err, after, echoed = testns.call(_lo_check)
    assert (before, err) == (False, errno.ENETUNREACH)
    assert after and echoed


# --------------------------------------------------------------------------------------------------------
# linux.netDevices

def _make_netdev(ns: TestNetns, name: str = "nd0") -> None:
    ns.sh(f"""ip link add {name} type veth peer name {name}p
              ip addr add 10.99.0.1/24 dev {name}
              ip addr add 10.99.1.1/24 dev {name} label {name}:sec
              ip addr add fd99::1/64 dev {name} nodad
              ip link set {name} up; ip link set {name}p up
              ip addr add 10.99.0.2/24 dev {name}p""")


def _move(devs: dict[str, Any], path: str) -> list[dict[str, Any]]:
    from pyoci.linux import net
    return net.move_netdevices(devs, path)


def _return(record: list[dict[str, Any]], path: str | None) -> None:
    from pyoci.linux import net
    net.return_netdevices(record, path)


def test_netdevice_moves_in_with_addresses_and_comes_back(testns: TestNetns, tmp_path: Path) -> None:
    from pyoci.linux import net
    _make_netdev(testns)
    box = testns.box()
    record = testns.call(_move, {"nd0": {"name": "ctr0"}}, box.netns)
    assert [(e["hostName"], e["name"]) for e in record] == [("nd0", "ctr0")]
    assert "nd0" not in testns.links()
    # inside: renamed, up, the permanent global addresses re-applied (the kernel dropped them on the move)
    assert sorted(box.addrs("ctr0")) == ["10.99.0.1/24", "10.99.1.1/24", "fd99::1/64"]
    assert "UP" in box.run("ip", "-o", "link", "show", "ctr0").stdout.split(">")[0]
    assert box.run(BUSYBOX, "ping", "-c", "1", "-W", "2", "10.99.0.2").returncode == 0
    # pin the namespace the way the runtime does, so it outlives its last process, then give back
    pin = str(tmp_path / "netns")
    net.pin_netns(box.netns, pin)
    try:
        box.stop()
        testns.call(_return, record, pin)
    finally:
        net.unpin_netns(pin)
    assert not os.path.exists(pin)
    assert sorted(testns.addrs("nd0")) == ["10.99.0.1/24", "10.99.1.1/24", "fd99::1/64"]
    assert "nd0:sec" in testns.run("ip", "addr", "show", "nd0").stdout  # the label followed the name
    assert testns.run(BUSYBOX, "ping", "-c", "1", "-W", "2", "10.99.0.2").returncode == 0


def _move_pinned(devs: dict[str, Any], path: str, pin_dir: str) -> list[dict[str, Any]]:
    from pyoci.linux import net
    return net.move_netdevices(devs, path, pin_dir=pin_dir)


def test_pinned_namespace_gives_devices_back_after_the_container_exited(testns: TestNetns,
                                                                        tmp_path: Path) -> None:
    """The runtime's path: move with pin_dir=<state dir>; on delete return_netdevices(record, None)."""
    _make_netdev(testns)
    box = testns.box()
    record = testns.call(_move_pinned, {"nd0": {"name": "ctr0"}}, box.netns, str(tmp_path))
    assert record[0]["pin"] == str(tmp_path / "netns")
    box.stop()  # the container's last process is gone; the pin keeps its namespace (and nd0) alive
    assert "nd0" not in testns.links()
    testns.call(_return, record, None)
    assert sorted(testns.addrs("nd0")) == ["10.99.0.1/24", "10.99.1.1/24", "fd99::1/64"]
    assert not (tmp_path / "netns").exists()  # unpinned: the namespace is gone now


def test_netdevice_name_template(testns: TestNetns) -> None:
    _make_netdev(testns)
    box = testns.box()
    box.run("ip", "link", "add", "net0", "type", "veth", "peer", "name", "other0")  # net0 is taken
    record = testns.call(_move, {"nd0": {"name": "net%d"}}, box.netns)
    assert record[0]["name"] == "net1"
    assert sorted(box.addrs("net1")) == ["10.99.0.1/24", "10.99.1.1/24", "fd99::1/64"]


def test_netdevice_checks_before_moving_anything(testns: TestNetns) -> None:
    _make_netdev(testns)
    box = testns.box()
    box.run("ip", "link", "add", "ctr0", "type", "veth", "peer", "name", "ctr0p")
    cases = [
        ({"nd0": {}, "nope0": {}}, "linux.netDevices['nope0']: no network device 'nope0' in the runtime's"),
        ({"nd0": {"name": "ctr0"}}, "linux.netDevices['nd0'].name: 'ctr0' already exists in the container's"),
        ({"nd0": {}}, None),  # same namespace: checked below with the test namespace itself
    ]
    for devs, msg in cases[:2]:
        with pytest.raises(ConfigError) as e:
            testns.call(_move, devs, box.netns)
        assert str(e.value).startswith(msg)
        assert "nd0" in testns.links()
        assert sorted(testns.addrs("nd0")) == ["10.99.0.1/24", "10.99.1.1/24", "fd99::1/64"]
    with pytest.raises(ConfigError, match="the container has no network namespace of its own"):
        testns.call(_move, {"nd0": {}}, testns.path)


def test_unmovable_device_rolls_back_the_others(testns: TestNetns, tmp_path: Path) -> None:
    _make_netdev(testns)
    testns.sh("ip link add br9 type bridge")  # bridges are netns-local: the kernel refuses the move
    box = testns.box()
    with pytest.raises(ConfigError) as e:
        testns.call(_move_pinned, {"nd0": {"name": "ctr0"}, "br9": {}}, box.netns, str(tmp_path))
    assert not (tmp_path / "netns").exists()  # the pin went with the failure
    assert str(e.value).startswith("linux.netDevices['br9']: cannot be moved to another network namespace")
    assert "EINVAL" in str(e.value)
    # nd0 had already moved: it is back, with its name, addresses and up state
    assert "ctr0" not in box.run("ip", "-o", "link").stdout
    assert sorted(testns.addrs("nd0")) == ["10.99.0.1/24", "10.99.1.1/24", "fd99::1/64"]
    assert "UP" in testns.run("ip", "-o", "link", "show", "nd0").stdout.split(">")[0]


def test_return_after_the_namespace_died_does_not_fail(testns: TestNetns, caplog: Any) -> None:
    _make_netdev(testns)
    box = testns.box()
    record = testns.call(_move, {"nd0": {}}, box.netns)
    box.stop()  # unpinned: the kernel destroys the (virtual) veth with the namespace
    for _ in range(200):
        if "nd0p" not in testns.links():
            break
        time.sleep(0.02)
    testns.call(_return, record, None)  # logs a warning, raises nothing
    assert "nd0" not in testns.links()


# --------------------------------------------------------------------------------------------------------
# pyoci network up/down

def _state(cid: str, pid: int, annotations: dict[str, str] | None = None) -> str:
    return json.dumps({"ociVersion": "1.3.0", "id": cid, "status": "creating", "pid": pid, "bundle": "/x",
                       "annotations": annotations or {}})


SEED_UP = ["--veth-host", "veth0", "--host-addr", "169.254.1.1/30", "--host-addr", "fd42::1/64",
           "--ifname", "veth1", "--addr", "169.254.1.2/30", "--addr", "fd42::2/64"]


def test_hook_gives_connectivity_both_ways_and_down_removes_it(testns: TestNetns, tmp_path: Path) -> None:
    box = testns.box()
    rec = str(tmp_path / "rec")
    up = testns.run(*HOOK, "up", "--record-dir", rec, *SEED_UP, input=_state("net-a", box.pid), check=False)
    assert up.returncode == 0, up.stderr
    assert testns.addrs("veth0") == ["169.254.1.1/30", "fd42::1/64"]
    assert box.addrs("veth1") == ["169.254.1.2/30", "fd42::2/64"]
    routes = box.run("ip", "route").stdout + box.run("ip", "-6", "route").stdout
    assert "default via 169.254.1.1 dev veth1" in routes and "default via fd42::1 dev veth1" in routes
    for target in ("169.254.1.1", "fd42::1"):
        assert box.run(BUSYBOX, "ping", "-c", "1", "-W", "2", target, check=False).returncode == 0, target
    for target in ("169.254.1.2", "fd42::2"):
        assert testns.run(BUSYBOX, "ping", "-c", "1", "-W", "2", target, check=False).returncode == 0, target
    recorded = json.loads((tmp_path / "rec" / "net-a.json").read_text())
    assert recorded["vethHost"] == "veth0" and recorded["nat"] is None
    down = testns.run(*HOOK, "down", "--record-dir", rec, input=_state("net-a", 0), check=False)
    assert down.returncode == 0, down.stderr
    assert "veth0" not in testns.links() and "veth1" not in box.run("ip", "-o", "link").stdout
    assert not (tmp_path / "rec" / "net-a.json").exists()
    again = testns.run(*HOOK, "down", "--record-dir", rec, input=_state("net-a", 0), check=False)
    assert again.returncode == 0  # idempotent: nothing recorded, nothing to do


def test_hook_options_from_annotations_and_bridge(testns: TestNetns, tmp_path: Path) -> None:
    testns.sh("ip link add brt type bridge; ip addr add 10.77.0.1/24 dev brt; ip link set brt up")
    box = testns.box()
    ann = {"org.pyoci.network.bridge": "brt", "org.pyoci.network.addr": "10.77.0.2/24",
           "org.pyoci.network.gateway": "10.77.0.1", "org.pyoci.network.mtu": "1400",
           "org.pyoci.network.record-dir": str(tmp_path / "rec")}
    up = testns.run(*HOOK, "up", input=_state("net-b", box.pid, ann), check=False)
    assert up.returncode == 0, up.stderr
    from pyoci.network import default_veth_name
    host_end = default_veth_name("net-b")
    link = json.loads(testns.run("ip", "-j", "-d", "link", "show", host_end).stdout)[0]
    assert link["master"] == "brt" and link["mtu"] == 1400
    assert box.addrs("eth0") == ["10.77.0.2/24"]
    assert box.run(BUSYBOX, "ping", "-c", "1", "-W", "2", "10.77.0.1", check=False).returncode == 0
    assert testns.run(*HOOK, "down", input=_state("net-b", 0, ann), check=False).returncode == 0
    assert host_end not in testns.links() and "brt" in testns.links()  # the bridge was not ours


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_nat_rules_appear_and_disappear_in_the_test_namespace_only(testns: TestNetns, tmp_path: Path,
                                                                   backend: str) -> None:
    host_rules, host_fwd = _host_ruleset(), Path("/proc/sys/net/ipv4/ip_forward").read_text()
    # A new namespace inherits ip_forward from the initial one (devconf_inherit_init_net=0): start from 0.
    testns.sh("echo 0 > /proc/sys/net/ipv4/ip_forward")
    box = testns.box()
    rec = str(tmp_path / "rec")
    args = ["up", "--record-dir", rec, *SEED_UP, "--nat", "--nat-backend", backend]
    up = testns.run(*HOOK, *args, input=_state("net-c", box.pid), check=False)
    assert up.returncode == 0, up.stderr
    rules = testns.run("nft", "list", "ruleset").stdout
    assert "169.254.1.0/30" in rules and "masquerade" in rules.lower()
    assert testns.sh("cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
    down = testns.run(*HOOK, "down", "--record-dir", rec, input=_state("net-c", 0), check=False)
    assert down.returncode == 0, down.stderr
    after = testns.run("nft", "list", "ruleset").stdout
    assert "169.254.1.0/30" not in after and "pyoci" not in after
    assert testns.sh("cat /proc/sys/net/ipv4/ip_forward").strip() == "0"
    assert _host_ruleset() == host_rules  # nothing ever reached the host's own namespace
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_fwd


def test_failed_up_leaves_nothing_behind(testns: TestNetns, tmp_path: Path) -> None:
    from pyoci.network import nft_table
    box = testns.box()
    rec = tmp_path / "rec"
    # a foreign table with our name makes NAT fail *after* the veth exists: everything must be undone
    table = nft_table("net-d")
    testns.run("nft", "add", "table", "inet", table)
    testns.sh("echo 0 > /proc/sys/net/ipv4/ip_forward")
    up = testns.run(*HOOK, "up", "--record-dir", str(rec), *SEED_UP, "--nat", "--nat-backend", "nft",
                    input=_state("net-d", box.pid), check=False)
    assert up.returncode == 1
    err = up.stderr.strip().splitlines()
    assert len(err) == 1 and f"nft table 'inet {table}' already exists" in err[0], up.stderr
    assert "veth0" not in testns.links() and "veth1" not in box.run("ip", "-o", "link").stdout
    assert not (rec / "net-d.json").exists()
    assert testns.sh("cat /proc/sys/net/ipv4/ip_forward").strip() == "0"
    assert testns.run("nft", "list", "table", "inet", table, check=False).returncode == 0  # not ours: kept
    # a bad option is one clear line and creates nothing
    bad = testns.run(*HOOK, "up", "--record-dir", str(rec), "--addr", "169.254.1.2/33",
                     input=_state("net-d", box.pid), check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "--addr: '169.254.1.2/33'" in bad.stderr
    missing = testns.run(*HOOK, "up", "--record-dir", str(rec), "--bridge", "nobr0", "--addr", "10.1.0.2/24",
                         input=_state("net-d", box.pid), check=False)
    assert missing.returncode == 1 and "--bridge: 'nobr0' is not a bridge" in missing.stderr
    assert [link for link in testns.links() if link != "lo"] == []


def test_hook_refuses_a_container_without_its_own_namespace(testns: TestNetns, tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["nsenter", f"--net={testns.path}", "--", "sleep", "30"])
    try:
        time.sleep(0.1)
        up = testns.run(*HOOK, "up", "--record-dir", str(tmp_path), input=_state("net-e", sleeper.pid),
                        check=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert up.returncode == 1 and "shares the runtime's network namespace" in up.stderr
