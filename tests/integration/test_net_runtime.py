"""Networking through the real runtime (`python -m pyoci`): lo inside every new network namespace,
linux.netDevices in and back out, a failing createRuntime network hook, and the seed bundle.

Everything that touches links or addresses runs pyoci inside a network namespace the test created
(`nsenter --net=/run/netns/pyoci-test-…`: no new mount namespace, so the runtime's bind mounts stay visible
to the next command); namespaces, veths and containers are removed in finally."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
PYOCI = [sys.executable, "-m", "pyoci"]
HOOK_ARGV = [sys.executable, "-m", "pyoci", "network"]  # what a bundle's hook runs: pyoci network …
CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]


class Netns:
    def __init__(self) -> None:
        self.name = f"pyoci-test-{uuid.uuid4().hex[:8]}"
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        return subprocess.run(["nsenter", f"--net={self.path}", "--", *cmd], text=True, check=check,
                              timeout=timeout, cwd=REPO, **kw)

    def links(self) -> list[str]:
        return [x["ifname"] for x in json.loads(self.run("ip", "-j", "link").stdout)]

    def addrs(self, dev: str) -> list[str]:
        return sorted(f"{a['local']}/{a['prefixlen']}" for x in json.loads(self.run("ip", "-j", "addr", "show",
                      "dev", dev).stdout) for a in x.get("addr_info", []) if a.get("scope") == "global")

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def testns() -> Any:
    ns = Netns()
    try:
        yield ns
    finally:
        ns.close()


class Ctr:
    """A container id + state root, driven with pyoci inside `ns` (or the current namespace)."""

    def __init__(self, tmp: Path, ns: Netns | None) -> None:
        self.id = f"pyoci-test-{uuid.uuid4().hex[:10]}"
        self.root = tmp / "state"
        self.ns = ns

    def pyoci(self, *args: str, check: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
        cmd = [*PYOCI, "--root", str(self.root), *args]
        if self.ns is not None:
            p = self.ns.run(*cmd, check=False, **kw)
        else:
            kw.setdefault("capture_output", True)
            p = subprocess.run(cmd, check=False, text=True, timeout=60, cwd=REPO, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"pyoci {' '.join(args)}: rc={p.returncode}: {p.stderr}")
        return p

    def state(self) -> dict[str, Any]:
        return json.loads(self.pyoci("state", self.id, check=True).stdout)

    def create(self, bundle: Path, out: Path) -> subprocess.CompletedProcess[str]:
        """create with the container's stdio on files (a pipe would keep `create` waiting for its EOF)."""
        with open(out, "w") as f, open(str(out) + ".err", "w") as e:
            p = self.pyoci("create", "--bundle", str(bundle), self.id, stdin=subprocess.DEVNULL, stdout=f,
                           stderr=e, capture_output=False)
        return subprocess.CompletedProcess(p.args, p.returncode, Path(out).read_text(),
                                           Path(str(out) + ".err").read_text())

    def cleanup(self) -> None:
        self.pyoci("delete", "--force", self.id)


def _bundle(tmp: Path, args: list[str], **linux: Any) -> Path:
    """A minimal bundle on the shared busybox rootfs (absolute root.path, read-only)."""
    from pyoci.spec import default_spec
    spec = default_spec()
    spec["process"].update(terminal=False, args=args)
    spec["process"]["capabilities"] = {k: list(CAPS) for k in ("bounding", "effective", "permitted")}
    spec["root"] = {"path": str(REPO / "bundles/busybox/rootfs"), "readonly": True}
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "cgroup"]
    spec["linux"].update(copy.deepcopy(linux))
    d = tmp / "bundle"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(spec))
    return d


def _wait_stopped(c: Ctr, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.state()["status"] == "stopped":
            return
        time.sleep(0.05)
    raise AssertionError("container did not stop")


# --------------------------------------------------------------------------------------------------------

def test_lo_is_up_in_the_container(tmp_path: Path) -> None:
    """No link or address is created anywhere: this one may run in the test process's own namespace."""
    c = Ctr(tmp_path, None)
    b = _bundle(tmp_path, ["sh", "-c", "ip -o link show lo; ip addr show dev lo"])
    try:
        p = c.pyoci("run", "--bundle", str(b), c.id)
    finally:
        c.cleanup()
    assert p.returncode == 0, p.stderr
    flags = p.stdout.split("<", 1)[1].split(">", 1)[0].split(",")
    assert "UP" in flags and "inet 127.0.0.1/8" in p.stdout and "inet6 ::1/128" in p.stdout


def _make_netdev(ns: Netns) -> None:
    ns.run("sh", "-ec", """ip link set lo up; ip link add nd0 type veth peer name nd0p
        ip addr add 10.99.0.1/24 dev nd0; ip addr add fd99::1/64 dev nd0 nodad
        ip link set nd0 up; ip link set nd0p up; ip addr add 10.99.0.2/24 dev nd0p""")


def test_netdevice_moves_in_and_comes_back_on_delete(testns: Netns, tmp_path: Path) -> None:
    _make_netdev(testns)
    c = Ctr(tmp_path, testns)
    script = "ip -o addr show dev ctr0; ping -c 1 -W 2 10.99.0.2 && echo PING-OK"
    b = _bundle(tmp_path, ["sh", "-c", script], netDevices={"nd0": {"name": "ctr0"}})
    out = tmp_path / "out"
    try:
        p = c.create(b, out)
        assert p.returncode == 0, p.stderr
        pid = c.state()["pid"]
        assert "nd0" not in testns.links()
        inside = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "addr", "show", "ctr0"],
                                capture_output=True, text=True, check=True).stdout
        got = sorted(f"{a['local']}/{a['prefixlen']}" for x in json.loads(inside) for a in x["addr_info"]
                     if a.get("scope") == "global")
        assert got == ["10.99.0.1/24", "fd99::1/64"] and "UP" in json.loads(inside)[0]["flags"]
        c.pyoci("start", c.id, check=True)
        _wait_stopped(c)  # stdin was empty: `read` returns, the container exits, its namespace is pinned
        assert "PING-OK" in out.read_text(), out.read_text()
        c.pyoci("delete", c.id, check=True)
    finally:
        c.cleanup()
    # delete gave the device back with its name and addresses, although the container had already exited
    assert "nd0" in testns.links()
    assert testns.addrs("nd0") == ["10.99.0.1/24", "fd99::1/64"]
    assert testns.run("busybox", "ping", "-c", "1", "-W", "2", "10.99.0.2", check=False).returncode == 0


def test_missing_netdevice_fails_create_cleanly(testns: Netns, tmp_path: Path) -> None:
    c = Ctr(tmp_path, testns)
    b = _bundle(tmp_path, ["true"], netDevices={"nosuch0": {}})
    try:
        p = c.create(b, tmp_path / "out")
    finally:
        c.cleanup()
    assert p.returncode != 0
    assert "linux.netDevices['nosuch0']: no network device 'nosuch0'" in p.stderr
    assert not (c.root / c.id).exists()


def _hook(*args: str) -> dict[str, Any]:
    return {"path": sys.executable, "args": [sys.executable, "-m", "pyoci", "network", *args], "timeout": 30}


def test_failing_create_runtime_network_hook_fails_create_and_leaves_nothing(testns: Netns,
                                                                             tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    c = Ctr(tmp_path, testns)
    b = _bundle(tmp_path, ["true"])
    spec = json.loads((b / "config.json").read_text())
    spec["hooks"] = {"createRuntime": [_hook("up", "--record-dir", str(rec), "--veth-host", "vh0",
                                             "--addr", "10.5.0.2/24", "--bridge", "nobr0")],
                     "poststop": [_hook("down", "--record-dir", str(rec))]}
    (b / "config.json").write_text(json.dumps(spec))
    try:
        p = c.create(b, tmp_path / "out")
    finally:
        c.cleanup()
    assert p.returncode != 0 and "nobr0" in p.stderr, p.stderr
    assert c.pyoci("state", c.id).returncode != 0 and not (c.root / c.id).exists()
    assert [x for x in testns.links() if x != "lo"] == []
    assert not list(rec.glob("*.json")) if rec.exists() else True


def test_later_hook_failure_runs_network_down(testns: Netns, tmp_path: Path) -> None:
    """`up` succeeded, then another createRuntime hook fails: create fails, poststop `down` removes the record."""
    rec = tmp_path / "rec"
    c = Ctr(tmp_path, testns)
    b = _bundle(tmp_path, ["true"])
    spec = json.loads((b / "config.json").read_text())
    spec["hooks"] = {"createRuntime": [_hook("up", "--record-dir", str(rec), "--veth-host", "vh1",
                                             "--host-addr", "10.6.0.1/24", "--addr", "10.6.0.2/24"),
                                       {"path": "/bin/false", "args": ["false"]}],
                     "poststop": [_hook("down", "--record-dir", str(rec))]}
    (b / "config.json").write_text(json.dumps(spec))
    try:
        p = c.create(b, tmp_path / "out")
    finally:
        c.cleanup()
    assert p.returncode != 0
    assert not (c.root / c.id).exists()
    assert not (rec / f"{c.id}.json").exists()
    for _ in range(100):  # the veth goes with the container's namespace (kernel clean-up is asynchronous)
        if "vh1" not in testns.links():
            break
        time.sleep(0.05)
    assert "vh1" not in testns.links()


def test_seed_bundle(testns: Netns, tmp_path: Path) -> None:
    dest, rec = tmp_path / "seed", tmp_path / "rec"
    subprocess.run(["sh", str(REPO / "bundles/seed/make-bundle.sh"), str(dest), "--record-dir", str(rec)],
                   check=True, capture_output=True, env={**os.environ, "PYOCI": str(Path(sys.executable).parent / "pyoci")})
    spec = json.loads((dest / "config.json").read_text())
    assert spec["hostname"] == "In Namespace"
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    spec["process"]["args"] = ["true"]  # the host side looks at it while it is `created`
    (dest / "config.json").write_text(json.dumps(spec))
    c = Ctr(tmp_path, testns)
    try:
        p = c.create(dest, tmp_path / "out")
        assert p.returncode == 0, p.stderr
        pid = c.state()["pid"]
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        assert status["Uid"].split() == ["1000"] * 4 and status["Gid"].split() == ["1000"] * 4
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", "1000", "1"]
        host_name = subprocess.run(["nsenter", f"--uts=/proc/{pid}/ns/uts", "hostname"], capture_output=True,
                                   text=True, check=True).stdout.strip()
        assert host_name == "In Namespace"
        assert testns.addrs("veth0") == ["169.254.1.1/30"]
        inside = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "addr", "show", "veth1"],
                                capture_output=True, text=True, check=True).stdout
        assert [f"{a['local']}/{a['prefixlen']}" for x in json.loads(inside) for a in x["addr_info"]
                if a["family"] == "inet"] == ["169.254.1.2/30"]
        assert (rec / f"{c.id}.json").exists()
        c.pyoci("start", c.id, check=True)
        _wait_stopped(c)
        c.pyoci("delete", c.id, check=True)
    finally:
        c.cleanup()
    assert not (rec / f"{c.id}.json").exists()  # poststop `network down` ran
    for _ in range(100):
        if "veth0" not in testns.links():
            break
        time.sleep(0.05)
    assert "veth0" not in testns.links()


def test_seed_demo_output(testns: Netns, tmp_path: Path) -> None:
    """What `make demo` shows, run here inside the test's namespace."""
    dest, rec = tmp_path / "seed", tmp_path / "rec"
    subprocess.run(["sh", str(REPO / "bundles/seed/make-bundle.sh"), str(dest), "--record-dir", str(rec)],
                   check=True, capture_output=True, env={**os.environ, "PYOCI": str(Path(sys.executable).parent / "pyoci")})
    c = Ctr(tmp_path, testns)
    try:
        p = c.pyoci("run", "--bundle", str(dest), c.id, stdin=subprocess.DEVNULL)
    finally:
        c.cleanup()
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "hostname: In Namespace" in lines
    assert any(line.startswith("id:       uid=0(root) gid=0(root)") for line in lines)
    assert any(line.startswith("uid_map:  0 1000 1") for line in lines)
    assert "veth1:    169.254.1.2/30" in lines
    assert "2 packets transmitted, 2 packets received, 0% packet loss" in p.stdout
