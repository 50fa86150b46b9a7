"""The container filesystem through the real runtime (`pyoci run`): what the container process sees."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config

pytestmark = pytest.mark.root

SCRIPT = r"""
[ -c /dev/null ] && echo "null=$(stat -c %t:%T:%a /dev/null)"
[ -c /dev/fuse ] && echo "fuse=$(stat -c %t:%T:%a:%u:%g /dev/fuse)"
echo "ptmx=$(readlink /dev/ptmx) fd=$(readlink /dev/fd)"
echo "keys=$(stat -c %t:%T /proc/keys) acpi=$(ls -A /proc/acpi | wc -l)"
echo "fwd=$(cat /proc/sys/net/ipv4/ip_forward)"
( exec 3>>/proc/sys/net/ipv4/ip_forward ) 2>/dev/null && echo sysro=no || echo sysro=yes
echo "data=$(cat /data/f)"
touch /data/x 2>/dev/null && echo dataro=no || echo dataro=yes
touch /x 2>/dev/null && echo rootro=no || echo rootro=yes
echo "t=$(stat -c %a:%u /t)"
grep -E ' /(data|t) ' /proc/self/mountinfo | cut -d' ' -f5,6 | tr ' ' '=' | sed 's/^/mnt/'
"""


def _kv(out: str) -> dict[str, str]:
    d: dict[str, str] = {}
    for word in out.split():
        if "=" in word:
            k, v = word.split("=", 1)
            d[k] = v
    return d


def test_filesystem_as_the_container_sees_it(make_bundle: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("hello")
    spec = base_config(["sh", "-c", SCRIPT])
    spec["root"]["readonly"] = True
    spec["linux"].pop("resources", None)  # device cgroup rules are not this test's business
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
                                 "uid": 0, "gid": 0}]
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    spec["mounts"] += [{"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]},
                       {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                        "options": ["mode=711", "uid=12", "noexec", "nodev"]}]
    host_fwd = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    b = make_bundle(spec)
    p = b.pyoci("run", "--bundle", str(b.dir), b.id, timeout=60)
    assert p.returncode == 0, p.stderr
    d = _kv(p.stdout)
    assert d["null"] == "1:3:666"
    assert d["fuse"] == "a:e5:600:0:0"
    assert d["ptmx"] == "pts/ptmx" and d["fd"] == "/proc/self/fd"
    assert d["keys"] == "1:3" and d["acpi"] == "0"
    assert d["fwd"] == "1" and d["sysro"] == "yes"  # set before /proc/sys was made read-only
    assert d["data"] == "hello" and d["dataro"] == "yes" and d["rootro"] == "yes"
    assert d["t"] == "711:12"
    assert d["mnt/data"].startswith("ro,") and "noexec" in d["mnt/t"] and "nodev" in d["mnt/t"]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_fwd
    assert not (data / "x").exists()


@pytest.mark.parametrize("edit, words", [
    (lambda s: s["linux"].__setitem__("sysctl", {"kernel.core_pattern": "core"}),
     ("linux.sysctl", "kernel.core_pattern")),
    (lambda s: s["mounts"].append({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs"}),
     ("mounts[6].destination", "/proc/sys is inside /proc")),
    (lambda s: s["mounts"].append({"destination": "/x", "source": "/nonexistent-pyoci", "options": ["bind"]}),
     ("mounts[6].source", "/nonexistent-pyoci", "ENOENT")),
    (lambda s: s["linux"].__setitem__("rootfsPropagation", "sideways"), ("linux.rootfsPropagation", "sideways")),
])
def test_config_errors_are_one_line(make_bundle: Any, edit: Any, words: tuple[str, ...]) -> None:
    spec = base_config(["true"])
    spec["linux"].pop("resources", None)
    edit(spec)
    b = make_bundle(spec)
    p = b.pyoci("run", "--bundle", str(b.dir), b.id, timeout=60)
    errors = [ln for ln in p.stderr.splitlines() if "level=error" in ln]
    assert p.returncode == 1 and len(errors) == 1 and all(w in errors[0] for w in words), p.stderr
    assert "Traceback" not in p.stderr


def test_rootfs_with_hostile_dev_symlink_is_refused_or_contained(make_bundle: Any, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "ptmx").write_text("keep")
    spec = base_config(["sh", "-c", "ls /dev; readlink /dev"])
    spec["linux"].pop("resources", None)
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    b = make_bundle(spec)
    os.rmdir(b.rootfs / "dev")
    os.symlink(str(canary), b.rootfs / "dev")
    p = b.pyoci("run", "--bundle", str(b.dir), b.id, timeout=60)
    assert sorted(os.listdir(canary)) == ["ptmx"] and (canary / "ptmx").read_text() == "keep"
    assert p.returncode == 0 and "null" in p.stdout.split()  # the nodes went to <rootfs>/<canary path>
    assert (b.rootfs / str(canary).lstrip("/") / "null").exists()


def test_no_pivot(make_bundle: Any) -> None:
    spec = base_config(["sh", "-c", "ls /proc/1/root/.. /.. | sort -u | tr '\\n' ' '"])
    spec["linux"].pop("resources", None)
    b = make_bundle(spec)
    p = b.pyoci("run", "--no-pivot", "--bundle", str(b.dir), b.id, timeout=60)
    assert p.returncode == 0, p.stderr
    seen = set(p.stdout.split()) - {"/..:", "/proc/1/root/..:"}
    assert seen and not seen & (set(os.listdir("/")) - set(os.listdir(b.rootfs)))
