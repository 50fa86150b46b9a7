"""Run pyoci.rootfs in a forked child with real namespaces and report what it sees as JSON through a pipe.

The child does what pyoci's container init does around the rootfs calls: unshare a user namespace (maps
written by the parent) when asked, unshare mount + pid/net/ipc/uts/cgroup namespaces, fork into the new pid
namespace, then rootfs.prepare → pivot → finalize, runs `check` inside the finished container, and
_exits. Tests touch only the tmp dirs they create.
"""
from __future__ import annotations

import copy
import json
import os
import select
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyoci import rootfs as pyoci_rootfs
from pyoci.linux import libc
from pyoci.linux.proc import ProcHandle

REPO = Path(__file__).resolve().parents[2]
BUSYBOX_ROOTFS = REPO / "bundles" / "busybox" / "rootfs"
NS_DEFAULT = libc.CLONE_NEWPID | libc.CLONE_NEWNET | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS
USERNS_BASE = 100000

RUNC_MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
               "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
RUNC_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def base_mounts(*, sysfs: bool = True) -> list[dict[str, Any]]:
    m = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    ]
    if sysfs:
        m.append({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]})
    return m


def base_spec(*, userns: bool = False, masked: bool = True) -> dict[str, Any]:
    ns = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    linux: dict[str, Any] = {"namespaces": ns}
    if userns:
        ns.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": USERNS_BASE, "size": 65536}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": USERNS_BASE, "size": 65536}]
    if masked:
        linux["maskedPaths"] = list(RUNC_MASKED)
        linux["readonlyPaths"] = list(RUNC_READONLY)
    return {"ociVersion": "1.3.0", "root": {"path": "rootfs", "readonly": False},
            "process": {"args": ["true"], "cwd": "/"}, "mounts": base_mounts(), "linux": linux}


class Workdir:
    """A world-traversable tmp dir (a container root mapped to 100000 must be able to walk into it)."""

    def __init__(self, prefix: str = "pyoci-rootfs-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.path.chmod(0o755)

    def bundle(self, name: str = "bundle", *, owner: int | None = None) -> tuple[Path, Path]:
        """A bundle dir with a copy of the busybox rootfs; owner: chown it (a user namespace's root)."""
        b = self.path / name
        b.mkdir()
        r = b / "rootfs"
        shutil.copytree(BUSYBOX_ROOTFS, r, symlinks=True)
        if owner is not None:
            for root, dirs, files in os.walk(r):
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), owner, owner)
            os.lchown(r, owner, owner)
        return b, r

    def canary_dir(self, name: str = "canary") -> Path:
        c = self.path / name
        c.mkdir()
        (c / "ptmx").write_text("canary ptmx\n")
        (c / "keep").write_text("keep\n")
        return c

    def cleanup(self) -> None:
        # Mounts made by tests live in namespaces that died with their processes; plain rmtree is enough.
        shutil.rmtree(self.path, ignore_errors=True)


def snapshot(d: Path) -> dict[str, str]:
    """Listing + content/type of every entry below d (the canary check)."""
    out = {}
    for root, dirs, files in os.walk(d, followlinks=False):
        for n in dirs + files:
            p = Path(root) / n
            rel = str(p.relative_to(d))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_file():
                out[rel] = "file:" + p.read_bytes().hex()
            else:
                st = p.lstat()
                out[rel] = f"other:{st.st_mode:o}:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return out


@dataclass
class Result:
    ok: bool
    error: str = ""
    error_type: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def _write_maps(pid: int) -> None:
    with ProcHandle.open() as proc:
        proc.write_pid_file(pid, "uid_map", f"0 {USERNS_BASE} 65536\n")
        proc.write_pid_file(pid, "gid_map", f"0 {USERNS_BASE} 65536\n")


def run(spec: dict[str, Any], *, bundle: Path, rootfs: Path, userns: bool = False, no_pivot: bool = False,
        ns_flags: int = NS_DEFAULT, stage: str = "finalize",
        check: Callable[[], dict[str, Any]] | None = None, timeout: float = 60,
        premounted: dict[int, int] | None = None, cwd: str | None = None) -> Result:
    """Fork, set up namespaces, run rootfs up to `stage` ('prepare', 'pivot', 'finalize'), then check()."""
    spec = copy.deepcopy(spec)
    r, w = os.pipe()
    ur, uw = os.pipe()   # child → parent: user namespace made
    gr, gw = os.pipe()   # parent → child: maps written
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(ur)
        os.close(gw)
        if cwd:
            os.chdir(cwd)
        _child(spec, w, uw, gr, bundle=str(bundle), rootfs=str(rootfs), userns=userns, no_pivot=no_pivot,
               ns_flags=ns_flags, stage=stage, check=check, premounted=premounted)
    os.close(w)
    os.close(uw)
    os.close(gr)
    try:
        if userns:
            if not _read_exact(ur, 1, timeout):
                return _finish(pid, r, timeout)
            _write_maps(pid)
            os.write(gw, b"g")
        return _finish(pid, r, timeout)
    finally:
        os.close(ur)
        os.close(gw)


def _read_exact(fd: int, n: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, n) if ready else b""


def _finish(pid: int, r: int, timeout: float) -> Result:
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                return Result(False, "harness timeout", "Timeout")
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    raw = b"".join(chunks)
    if not raw:
        return Result(False, "child reported nothing", "NoReport")
    msg = json.loads(raw)
    return Result(msg["ok"], msg.get("error", ""), msg.get("type", ""), msg.get("data") or {})


def _child(spec: dict[str, Any], w: int, uw: int, gr: int, *, bundle: str, rootfs: str, userns: bool,
           no_pivot: bool, ns_flags: int, stage: str, check: Callable[[], dict[str, Any]] | None,
           premounted: dict[int, int] | None) -> None:
    try:
        if userns:
            libc.unshare(libc.CLONE_NEWUSER)
            os.write(uw, b"u")
            if os.read(gr, 1) != b"g":
                os._exit(3)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        libc.unshare(libc.CLONE_NEWNS | ns_flags)
        if ns_flags & libc.CLONE_NEWPID:
            pid = os.fork()
            if pid:
                os.close(w)
                _, status = os.waitpid(pid, 0)
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        msg: dict[str, Any]
        try:
            pyoci_rootfs.prepare(spec, bundle=bundle, rootfs=rootfs, userns=userns, no_pivot=no_pivot,
                                 premounted=premounted)
            if stage in ("pivot", "finalize"):
                pyoci_rootfs.pivot(rootfs, no_pivot=no_pivot)
            if stage == "finalize":
                pyoci_rootfs.finalize(spec)
            msg = {"ok": True, "data": check() if check else {}}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            msg = {"ok": False, "error": str(exc), "type": type(exc).__name__}
            if os.environ.get("PYOCI_HARNESS_TB"):
                msg["error"] += "\n" + traceback.format_exc()
        os.write(w, json.dumps(msg).encode())
    finally:
        os._exit(0)


# --- checks usable inside the container (no imports after pivot: only os and json) --------------------


def mountinfo() -> list[dict[str, Any]]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            a = left.split(" ")
            b = right.split(" ")
            out.append({"id": int(a[0]), "parent": int(a[1]), "root": a[3], "mountpoint": a[4],
                        "options": a[5].split(","), "optional": a[6:], "fstype": b[0], "source": b[1],
                        "super": b[2].split(",") if len(b) > 2 else []})
    return out


def stat_of(path: str, follow: bool = False) -> dict[str, Any] | None:
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError as exc:
        return {"errno": exc.errno}
    return {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev), "ino": st.st_ino}


def try_open(path: str, flags: int) -> int:
    """0 when open succeeds (closed at once, nothing written), else the errno."""
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return exc.errno or -1
    os.close(fd)
    return 0
