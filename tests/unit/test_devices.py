"""Device plans and sysctl plans (pure)."""
from __future__ import annotations

import stat
from typing import Any

import pytest

from pyoci import devices, sysctl
from pyoci.devices import DeviceNode
from pyoci.errors import ConfigError


def _spec(devs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"linux": {"devices": devs}}


def test_defaults() -> None:
    plan = devices.plan_devices({})
    assert [(d.path, d.kind, d.major, d.minor, d.mode) for d in plan] == [
        ("/dev/null", "c", 1, 3, 0o666), ("/dev/zero", "c", 1, 5, 0o666), ("/dev/full", "c", 1, 7, 0o666),
        ("/dev/random", "c", 1, 8, 0o666), ("/dev/urandom", "c", 1, 9, 0o666), ("/dev/tty", "c", 5, 0, 0o666)]
    assert all(d.uid == 0 and d.gid == 0 for d in plan)


@pytest.mark.parametrize("dev, node", [
    ({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620, "uid": 7, "gid": 8},
     DeviceNode("/dev/fuse", "c", 10, 229, 0o620, 7, 8, "linux.devices[0]")),
    ({"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
     DeviceNode("/dev/sda", "b", 8, 0, 0o666, 0, 0, "linux.devices[0]")),
    ({"path": "/dev/ttyU", "type": "u", "major": 4, "minor": 64, "fileMode": 0o20666},  # S_IFCHR bits dropped
     DeviceNode("/dev/ttyU", "c", 4, 64, 0o666, 0, 0, "linux.devices[0]")),
    ({"path": "/dev/fifo", "type": "p"}, DeviceNode("/dev/fifo", "p", 0, 0, 0o666, 0, 0, "linux.devices[0]")),
    ({"path": "/dev/../../x/evil", "type": "c", "major": 1, "minor": 3},  # cleaned; resolved in-root later
     DeviceNode("/x/evil", "c", 1, 3, 0o666, 0, 0, "linux.devices[0]")),
    ({"path": "/opt/dev", "type": "c", "major": 1, "minor": 3},  # outside /dev is allowed
     DeviceNode("/opt/dev", "c", 1, 3, 0o666, 0, 0, "linux.devices[0]")),
])
def test_spec_device(dev: dict[str, Any], node: DeviceNode) -> None:
    plan = devices.plan_devices(_spec([dev]))
    assert plan[-1] == node
    assert len(plan) == 7


def test_spec_device_replaces_default_at_same_path() -> None:
    plan = devices.plan_devices(_spec([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}]))
    nulls = [d for d in plan if d.path == "/dev/null"]
    assert len(nulls) == 1 and nulls[0].mode == 0o600 and nulls[0].field == "linux.devices[0]"
    assert len(plan) == 6


def test_type_bits() -> None:
    assert DeviceNode("/d", "c", 1, 1, 0, 0, 0, "").type_bits == stat.S_IFCHR
    assert DeviceNode("/d", "b", 1, 1, 0, 0, 0, "").type_bits == stat.S_IFBLK
    assert DeviceNode("/d", "p", 0, 0, 0, 0, 0, "").type_bits == stat.S_IFIFO


@pytest.mark.parametrize("dev, msg", [
    ({"path": "dev/x", "type": "c", "major": 1, "minor": 1}, "linux.devices[0].path: must be an absolute path"),
    ({"path": "/", "type": "c", "major": 1, "minor": 1}, "is not a file path"),
    ({"path": "/dev/x", "type": "z", "major": 1, "minor": 1}, "linux.devices[0].type: 'z' is not one of"),
    ({"path": "/dev/x", "type": "c", "minor": 1}, "major and minor are required"),
    ({"path": "/dev/x", "type": "b", "major": -1, "minor": 1}, "negative major/minor"),
    ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "fileMode": "rw"}, "linux.devices[0].fileMode"),
])
def test_device_errors(dev: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        devices.plan_devices(_spec([dev]))


def test_symlink_table() -> None:
    assert dict(devices.DEV_SYMLINKS) == {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                                          "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
    assert devices.PTMX == ("ptmx", "pts/ptmx")


# --- sysctl ------------------------------------------------------------------------------------------

def _sspec(sysctls: dict[str, Any], ns: list[str], hostname: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"linux": {"sysctl": sysctls, "namespaces": [{"type": t} for t in ns]}}
    if hostname:
        spec["hostname"] = hostname
    return spec


@pytest.mark.parametrize("key, ns", [
    ("net.ipv4.ip_forward", "network"), ("net.core.somaxconn", "network"),
    ("kernel.shmmax", "ipc"), ("kernel.msgmax", "ipc"), ("kernel.sem", "ipc"), ("kernel.shm_rmid_forced", "ipc"),
    ("fs.mqueue.queues_max", "ipc"), ("kernel.domainname", "uts"), ("kernel.hostname", "uts"),
    ("kernel.core_pattern", None), ("vm.drop_caches", None), ("kernel.shmmaxx", None), ("fs.file-max", None),
])
def test_namespace_of(key: str, ns: str | None) -> None:
    assert sysctl.namespace_of(key) == ns


def test_plan_accepts_namespaced_keys_with_own_namespaces() -> None:
    w = sysctl.plan(_sspec({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "kernel.domainname": "d"},
                           ["network", "ipc", "uts"]))
    assert [(x.key, x.value, x.namespace) for x in w] == [
        ("net.ipv4.ip_forward", "1", "network"), ("kernel.shmmax", "1000", "ipc"), ("kernel.domainname", "d", "uts")]


@pytest.mark.parametrize("sysctls, ns, msg", [
    ({"kernel.core_pattern": "core"}, ["network", "ipc", "uts"], "not a namespaced sysctl"),
    ({"net.ipv4.ip_forward": "1"}, ["ipc"], "needs the container's own network namespace"),
    ({"kernel.shmmax": "1"}, ["network"], "needs the container's own ipc namespace"),
    ({"fs.mqueue.msg_max": "1"}, [], "needs the container's own ipc namespace"),
    ({"kernel.hostname": "x"}, ["network"], "needs the container's own uts namespace"),
    ({"net/ipv4/../../kernel/core_pattern": "x"}, ["network"], "not a valid sysctl name"),
    ({"net..x": "1"}, ["network"], "not a valid sysctl name"),
    ({"net.ipv4.ip_forward": 1}, ["network"], "value must be a string"),
])
def test_plan_errors_name_the_key(sysctls: dict[str, Any], ns: list[str], msg: str) -> None:
    with pytest.raises(ConfigError) as ei:
        sysctl.plan(_sspec(sysctls, ns))
    assert msg in str(ei.value) and "linux.sysctl[" in str(ei.value)


def test_hostname_conflict() -> None:
    with pytest.raises(ConfigError, match="conflicts with hostname"):
        sysctl.plan(_sspec({"kernel.hostname": "a"}, ["uts"], hostname="b"))
    assert sysctl.plan(_sspec({"kernel.hostname": "a"}, ["uts"], hostname="a"))
