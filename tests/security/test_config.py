"""B. Caller / config scenarios: B8 (container ids), B10 (mounts over or inside /proc)."""
from __future__ import annotations

import os
import uuid

import pytest
import rootfs_harness as h
from conftest import Env, base_config, skip_unavailable, verdict

pytestmark = pytest.mark.root

BAD_IDS = {"dotdot-slash": "../x", "slash": "a/b", "dotdot": "..", "dot": ".", "empty": "", "1024-chars": "x" * 1024}


@pytest.mark.parametrize("name", list(BAD_IDS))
def test_b8_invalid_container_ids(env: Env, name: str) -> None:
    sid, title = f"B8 ({name})", "invalid container id"
    skip_unavailable(env, sid, title)
    cid = BAD_IDS[name]
    b, _ = env.bundle(base_config(["true"]))
    outside_before = h.snapshot(env.path / "outside") if (env.path / "outside").exists() else {}
    # --root is a dir two levels down, so '../x' and '..' would land in env.path/outside
    root = env.path / "outside" / "root"
    root.mkdir(parents=True)
    env.rt.root = root
    before = set(os.listdir(env.path / "outside"))
    res = env.rt.cmd("create", "--bundle", str(b), cid, timeout=60)
    after = set(os.listdir(env.path / "outside"))
    unsafe = None
    if after != before:
        unsafe = f"created {sorted(after - before)} outside --root"
    note = ""
    if res.rc == 0:
        env.rt.cmd("delete", "--force", cid)
        note = "accepted: state kept inside --root"
        if not unsafe and name in ("dotdot", "dot", "empty", "slash", "dotdot-slash"):
            unsafe = f"accepted id {cid!r}"
    del outside_before
    verdict(env, sid, title, unsafe, res, note=note)


VARIANTS = {
    "tmpfs-over-proc": {"destination": "/proc", "type": "tmpfs", "source": "tmpfs"},
    "bind-dir-over-proc": {"destination": "/proc", "type": "bind", "source": "<dir>", "options": ["rbind"]},
    "tmpfs-in-proc-self-attr": {"destination": "/proc/self/attr", "type": "tmpfs", "source": "tmpfs"},
    "symlink-to-proc-sys": {"destination": "/sneaky", "type": "tmpfs", "source": "tmpfs"},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_b10_mounts_over_or_inside_proc(env: Env, variant: str) -> None:
    sid, title = f"B10 ({variant})", "mount over / inside /proc"
    skip_unavailable(env, sid, title)
    hostdir = env.path / f"fake-proc-{uuid.uuid4().hex[:6]}"
    hostdir.mkdir()
    (hostdir / "marker").write_text("fake\n")
    m = dict(VARIANTS[variant])
    if m["source"] == "<dir>":
        m["source"] = str(hostdir)
    script = "ls /proc/marker 2>/dev/null; grep -c . /proc/self/mountinfo; grep ' /proc/sys ' /proc/self/mountinfo | tail -1"
    cfg = base_config(["sh", "-c", script])
    cfg["mounts"].append(m)
    b, r = env.bundle(cfg)
    if variant == "symlink-to-proc-sys":
        os.symlink("/proc/sys", r / "sneaky")
    run = env.rt.run(b)
    unsafe = None
    if run.rc == 0:
        if variant == "symlink-to-proc-sys":
            tmpfs_on_sys = "tmpfs" in run.out.splitlines()[-1] if run.out.strip() else False
            unsafe = "tmpfs mounted over /proc/sys through a symlink" if tmpfs_on_sys else None
        else:
            unsafe = "the mount was accepted"
    verdict(env, sid, title, unsafe, run, note="mount landed inside the rootfs, not on /proc/sys"
            if run.rc == 0 and not unsafe else "")
