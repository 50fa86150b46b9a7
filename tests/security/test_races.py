"""C3–C5: races through a shared volume, bounded in runs and time (PYOCI_RACE_RUNS, PYOCI_RACE_SECONDS).

The attacker's renameat2(RENAME_EXCHANGE) loop runs in a process the test forks on the host side of the
shared volume V (equivalent to a container that has V mounted, security.md §4 C3–C5). Symlinks point at
canary dirs and files the test created, never at anything real. Each scenario runs through every runtime's
`run`, and for pyoci also in-process (rootfs_harness), where every mount can be checked before pivot.
"""
from __future__ import annotations

import collections
import ctypes
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import rootfs_harness as h
from conftest import Env, base_config, record_pyoci_only, skip_unavailable, verdict, without_dev_mounts

pytestmark = pytest.mark.root

RUNS = int(os.environ.get("PYOCI_RACE_RUNS", "100"))
SECONDS = float(os.environ.get("PYOCI_RACE_SECONDS", "20"))
HARNESS_RUNS = int(os.environ.get("PYOCI_RACE_HARNESS_RUNS", "300"))


@contextmanager
def racer(a: Path, b: Path) -> Iterator[None]:
    """Swap a and b atomically in a tight loop (renameat2 RENAME_EXCHANGE) until the block ends."""
    pid = os.fork()
    if pid == 0:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            pa, pb = os.fsencode(a), os.fsencode(b)
            while True:
                fn(-100, pa, -100, pb, 2)
        finally:
            os._exit(0)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _loop(fn: Any) -> collections.Counter[str]:
    """Run fn up to RUNS times or SECONDS; stop at the first outcome in capitals (an escape: one is enough)."""
    counts: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + SECONDS
    for _ in range(RUNS):
        outcome = fn()
        counts[outcome] += 1
        if outcome.isupper() or time.monotonic() > deadline:
            break
    return counts


def _summary(c: collections.Counter[str]) -> str:
    return f"{sum(c.values())} runs: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))


def _volume(env: Env) -> tuple[Path, Path]:
    canary = env.wd.canary_dir()
    (canary / "m").mkdir()  # a misdirected mount would need it to exist
    vol = env.path / "vol"
    (vol / "d").mkdir(parents=True)
    os.symlink(str(canary), vol / "l")
    return vol, canary


def _tmpfs_at(mountinfo: str) -> str:
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        if right.startswith("tmpfs") and f[4].endswith("/m"):
            return "in volume" if f[4] in ("/shared/d/m", "/shared/l/m") else "inside rootfs elsewhere"
    return "MISSING"


def test_c3_symlink_exchange_mount_target(env: Env) -> None:
    sid, title = "C3", "symlink-exchange race on a mount target (shared volume)"
    skip_unavailable(env, sid, title)
    vol, canary = _volume(env)
    cfg = base_config(["cat", "/proc/self/mountinfo"])
    cfg["mounts"] += [{"destination": "/shared", "type": "bind", "source": str(vol), "options": ["rbind"]},
                      {"destination": "/shared/d/m", "type": "tmpfs", "source": "tmpfs"}]
    b, _ = env.bundle(cfg)
    before = h.snapshot(canary)

    def one() -> str:
        run = env.rt.run(b)
        return "refused" if run.rc else _tmpfs_at(run.out)

    with racer(vol / "d", vol / "l"):
        counts = _loop(one)
    unsafe = None
    if h.snapshot(canary) != before:
        unsafe = f"host canary changed ({_summary(counts)})"
    elif counts["MISSING"]:
        unsafe = f"mount landed outside the container {counts['MISSING']}× ({_summary(counts)})"
    verdict(env, sid, title, unsafe, None, note=_summary(counts))


def test_c4_mkdirall_race(env: Env) -> None:
    sid, title = "C4", "MkdirAll race on a deep new mount target"
    skip_unavailable(env, sid, title)
    vol, canary = _volume(env)
    cfg = base_config(["true"])
    cfg["mounts"] += [{"destination": "/shared", "type": "bind", "source": str(vol), "options": ["rbind"]},
                      {"destination": "/shared/d/a/b/c", "type": "tmpfs", "source": "tmpfs"}]
    b, _ = env.bundle(cfg)
    before = h.snapshot(canary)

    def one() -> str:
        rc = env.rt.run(b).rc
        if h.snapshot(canary) != before:
            return "CREATED IN CANARY"
        return "refused" if rc else "ran"

    with racer(vol / "d", vol / "l"):
        counts = _loop(one)
    after = h.snapshot(canary)
    unsafe = None
    if after != before:
        unsafe = f"created {sorted(set(after) - set(before))} in the host canary ({_summary(counts)})"
    verdict(env, sid, title, unsafe, None, note=_summary(counts))


def _c5_setup(env: Env) -> tuple[Path, Path, Path]:
    vol = env.path / "vol"
    dev = vol / "dev"
    dev.mkdir(parents=True)
    os.mknod(dev / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.symlink("/canary", dev / "alt")
    host_file = env.path / "H"
    host_file.write_text("HCANARY\n")
    return vol, dev, host_file


def _c5_config(args: list[str], dev: Path, host_file: Path) -> dict[str, Any]:
    cfg = without_dev_mounts(base_config(args))
    cfg["mounts"] += [{"destination": "/dev", "type": "bind", "source": str(dev), "options": ["rbind"]},
                      {"destination": "/canary", "type": "bind", "source": str(host_file), "options": ["bind"]}]
    cfg["linux"]["maskedPaths"].append("/secret")
    return cfg


def test_c5_masked_path_dev_null_race(env: Env) -> None:
    sid, title = "C5", "/dev/null swap race during maskedPaths"
    skip_unavailable(env, sid, title)
    _vol, dev, host_file = _c5_setup(env)
    b, r = env.bundle(_c5_config(["sh", "-c", "cat /secret; echo; stat -c %t:%T /secret"], dev, host_file))
    (r / "secret").write_text("SECRET\n")

    def one() -> str:
        run = env.rt.run(b)
        if host_file.read_text() != "HCANARY\n":  # e.g. stdio reopened on the swapped /dev/null
            host_file.write_text("HCANARY\n")
            return "CANARY WRITTEN"
        if run.rc:
            return "refused"
        if "HCANARY" in run.out:
            return "CANARY MOUNTED"
        if "SECRET" in run.out:
            return "mask skipped"
        return "masked" if "1:3" in run.out else "other"

    with racer(dev / "null", dev / "alt"):
        counts = _loop(one)
    unsafe = None
    if counts["CANARY MOUNTED"]:
        unsafe = f"canary bind-mounted on a masked path ({_summary(counts)})"
    elif counts["CANARY WRITTEN"]:
        unsafe = f"container output written into the host canary file ({_summary(counts)})"
    elif counts["mask skipped"]:
        unsafe = f"masked path left readable {counts['mask skipped']}× ({_summary(counts)})"
    verdict(env, sid, title, unsafe, None, note=_summary(counts))


# --- pyoci in-process: many more runs, every mount checked before pivot ------------------------------


@pytest.fixture
def wd() -> Iterator[h.Workdir]:
    w = h.Workdir("pyoci-race-")
    try:
        yield w
    finally:
        w.cleanup()


def _outside_mounts(rootfs: str, workdir: str) -> Any:
    """Mounts this run made outside the rootfs: anything mounted in the test's own dirs (canary, volume)
    but not below the rootfs, or a tmpfs named like the target anywhere else. (Counting the host's mounts
    would race with other sessions: /run/netns is shared and changes under us.)"""
    def check() -> dict[str, Any]:
        mi = h.mountinfo()
        def inside(p: str) -> bool:
            return p == rootfs or p.startswith(rootfs + "/")
        outside = [m["mountpoint"] for m in mi if not inside(m["mountpoint"])
                   and (m["mountpoint"].startswith(workdir + "/")
                        or m["fstype"] == "tmpfs" and m["mountpoint"].endswith(("/m", "/c")))]
        tmpfs = [m["mountpoint"][len(rootfs):] for m in mi if inside(m["mountpoint"])
                 and m["fstype"] == "tmpfs" and m["mountpoint"].endswith(("/m", "/c"))]
        return {"outside": outside, "tmpfs": tmpfs}
    return check


@pytest.mark.parametrize("deep", [False, True], ids=["C3-mount-target", "C4-mkdirall"])
def test_pyoci_inprocess_mount_races(wd: h.Workdir, deep: bool) -> None:
    canary = wd.canary_dir()
    (canary / "m").mkdir()
    vol = wd.path / "vol"
    (vol / "d").mkdir(parents=True)
    os.symlink(str(canary), vol / "l")
    b, r = wd.bundle()
    spec = h.base_spec(masked=False)
    dest = "/shared/d/a/b/c" if deep else "/shared/d/m"
    spec["mounts"] += [{"destination": "/shared", "type": "bind", "source": str(vol), "options": ["rbind"]},
                       {"destination": dest, "type": "tmpfs", "source": "tmpfs"}]
    before = h.snapshot(canary)
    counts: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + SECONDS
    with racer(vol / "d", vol / "l"):
        for _ in range(HARNESS_RUNS):
            res = h.run(spec, bundle=b, rootfs=r, stage="prepare", check=_outside_mounts(str(r), str(wd.path)))
            if not res.ok:
                counts["refused"] += 1
                continue
            assert res.data["outside"] == [], f"a mount landed outside the rootfs: {res.data}"
            where = res.data["tmpfs"]
            counts["in volume" if where and where[0].startswith("/shared/") else "inside rootfs elsewhere"] += 1
            if time.monotonic() > deadline:
                break
    assert h.snapshot(canary) == before
    assert sum(counts.values()) >= 20
    sid = f"{'C4' if deep else 'C3'} (in-process)"
    record_pyoci_only(sid, "same race, every mount checked before pivot",
                      f"safe ({_summary(counts)}; 0 mounts outside the rootfs)")


def test_pyoci_inprocess_masked_path_race(wd: h.Workdir) -> None:
    vol = wd.path / "vol"
    dev = vol / "dev"
    dev.mkdir(parents=True)
    os.mknod(dev / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.symlink("/canary", dev / "alt")
    host_file = wd.path / "H"
    host_file.write_text("HCANARY\n")
    b, r = wd.bundle()
    (r / "secret").write_text("SECRET\n")
    spec = h.base_spec(masked=False)
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    spec["mounts"] += [{"destination": "/dev", "type": "bind", "source": str(dev), "options": ["rbind"]},
                       {"destination": "/canary", "type": "bind", "source": str(host_file), "options": ["bind"]}]
    spec["linux"]["maskedPaths"] = ["/secret"]

    def check() -> dict[str, Any]:
        st = h.stat_of("/secret")
        return {"content": open("/secret").read(), "rdev": [st["major"], st["minor"]]}

    counts: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + SECONDS
    with racer(dev / "null", dev / "alt"):
        for _ in range(HARNESS_RUNS):
            res = h.run(spec, bundle=b, rootfs=r, check=check)
            if not res.ok:
                assert "verify /dev/null" in res.error or "/dev/null" in res.error, res.error
                counts["refused"] += 1
            else:
                assert res.data == {"content": "", "rdev": [1, 3]}, res.data
                counts["masked"] += 1
            if time.monotonic() > deadline:
                break
    assert host_file.read_text() == "HCANARY\n"
    assert sum(counts.values()) >= 20 and counts["masked"] and counts["refused"]
    record_pyoci_only("C5 (in-process)", "same race, /secret checked in every run",
                      f"safe ({_summary(counts)}; never the canary)")
