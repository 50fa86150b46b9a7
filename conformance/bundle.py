"""The base config.json (runc spec defaults, terminal false) and per-run bundles with their own rootfs copy."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from conformance.runtimes import REPO

MKROOTFS = REPO / "bundles" / "mkrootfs.sh"

# `runc spec` (runc 1.1.5) with terminal false and our hostname. A section pyoci cannot take yet would be left
# out and listed in DEFERRED with the issue that brings it back; feature issues add their scenarios to the
# scenario lists (see README).
_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
BASE: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {s: list(_CAPS) for s in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "conf-base",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                       {"type": "mount"}],
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}

# What `runc spec` has and BASE leaves out, with the issue that brings it back. Empty: BASE is `runc spec`.
DEFERRED: dict[str, tuple[str, Any]] = {}


def base_config() -> dict[str, Any]:
    return copy.deepcopy(BASE)


class Workspace:
    """A private tmp dir holding the master rootfs, per-run bundles and the runtimes' --root dirs."""

    def __init__(self, parent: str | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="conf-", dir=parent))
        # Container uids mapped into a user namespace (host 100000+) must traverse to their rootfs.
        os.chmod(self.path, 0o755)
        self.rootfs = self.path / "rootfs-master"
        self.state = self.path / "state"
        self.state.mkdir()
        self.empty = self.path / "empty"
        self._seq = 0

    def build_rootfs(self) -> None:
        """Build the master busybox rootfs with bundles/mkrootfs.sh (or copy the repo's prebuilt one)."""
        subprocess.run(["sh", str(MKROOTFS), str(self.rootfs)], check=True, capture_output=True)

    def new_bundle(self, runtime: str, scenario: str, config: dict[str, Any]) -> Path:
        """A fresh bundle dir with its own copy of the rootfs (busybox hard-linked, the rest copied)."""
        self._seq += 1
        bundle = self.path / f"{runtime}-{self._seq:03d}-{scenario}"
        bundle.mkdir()
        os.chmod(bundle, 0o755)
        shutil.copytree(self.rootfs, bundle / "rootfs", symlinks=True, copy_function=_copy_or_link)
        write_config(bundle, config)
        return bundle

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_config(bundle: Path, config: dict[str, Any]) -> None:
    (bundle / "config.json").write_text(json.dumps(config, indent="\t") + "\n")


def _copy_or_link(src: str, dst: str) -> object:
    # The busybox binary is never written by a container: share it; everything else is a real copy so a
    # container that writes into its rootfs cannot change another run's.
    if src.endswith("/bin/busybox"):
        os.link(src, dst)
        return dst
    return shutil.copy2(src, dst)
