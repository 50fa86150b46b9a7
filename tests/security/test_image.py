"""A. Malicious rootfs (image) scenarios: A1, A3, A4, A6, A7, A8, A9, A11 (security.md §4)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import rootfs_harness as h
from conftest import Env, base_config, skip_unavailable, verdict, without_dev_mounts

pytestmark = pytest.mark.root


def test_a1_dev_symlink_to_host_dir(env: Env) -> None:
    sid, title = "A1", "/dev → host dir, no /dev mount"
    skip_unavailable(env, sid, title)
    canary = env.wd.canary_dir()
    b, r = env.bundle(without_dev_mounts(base_config(["true"])))
    shutil.rmtree(r / "dev")
    os.symlink(str(canary), r / "dev")
    before = h.snapshot(canary)
    run = env.rt.run(b)
    after = h.snapshot(canary)
    unsafe = None
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        unsafe = f"host canary changed: {', '.join(sorted({k for k, _ in changed}))}"
    verdict(env, sid, title, unsafe, run)


def _a3_bundle(env: Env, args: list[str]) -> tuple[os.PathLike[str], os.PathLike[str], str]:
    host_file = env.path / "H"
    host_file.write_text("")
    cfg = without_dev_mounts(base_config(args))
    cfg["mounts"].append({"destination": "/canary", "type": "bind", "source": str(host_file),
                          "options": ["bind", "rw"]})
    b, r = env.bundle(cfg)
    return b, r, str(host_file)


def test_a3_dev_null_symlink_stdio_reopen(env: Env) -> None:
    sid, title = "A3", "/dev/null → bind-mounted host file (stdio reopen)"
    skip_unavailable(env, sid, title)
    b, r, host_file = _a3_bundle(env, ["sh", "-c", "echo MARK; echo MARK >&2"])
    os.symlink("/canary", r / "dev" / "null")  # type: ignore[operator]
    run = env.rt.run(b)  # type: ignore[arg-type]
    content = Path(host_file).read_text()
    unsafe = f"container output went to the host file ({content.strip()!r})" if content else None
    if not unsafe and run.rc == 0 and not ("MARK" in run.out and "MARK" in run.err):
        unsafe = "container ran but its output did not reach the caller"
    verdict(env, sid, title, unsafe, run)


@pytest.mark.parametrize("variant", ["regular-file", "symlink"])
def test_a4_masked_path_with_fake_dev_null(env: Env, variant: str) -> None:
    sid, title = f"A4 ({variant})", "maskedPaths with a fake /dev/null"
    skip_unavailable(env, sid, title)
    b, r, host_file = _a3_bundle(env, ["sh", "-c", "cat /secret; echo; stat -c %t:%T /secret"])
    Path(host_file).write_text("HCONTENT\n")
    cfg_path = b / "config.json"  # type: ignore[operator]
    import json
    cfg = json.loads(cfg_path.read_text())
    cfg["linux"]["maskedPaths"].append("/secret")
    cfg_path.write_text(json.dumps(cfg))
    (r / "secret").write_text("SECRET\n")  # type: ignore[operator]
    null = r / "dev" / "null"  # type: ignore[operator]
    if variant == "regular-file":
        null.write_text("LEAK\n")
    else:
        os.symlink("/canary", null)
    run = env.rt.run(b)  # type: ignore[arg-type]
    # A runtime that reopens stdio on a fake /dev/null (A3) sends the output there: look there too.
    host_now = Path(host_file).read_text()
    fake = null.read_text() if variant == "regular-file" and null.is_file() else ""
    seen = run.out + host_now.replace("HCONTENT\n", "", 1) + fake.replace("LEAK\n", "", 1)
    unsafe = None
    if "LEAK" in seen or "HCONTENT" in seen:
        where = "" if ("LEAK" in run.out or "HCONTENT" in run.out) else ", and stdout went into it"
        unsafe = f"masked path shows the fake /dev/null's content{where}"
    elif host_now != "HCONTENT\n":
        unsafe = "container output written into the host file"
    elif run.rc == 0 and "SECRET" in seen:
        unsafe = "mask not applied (SECRET readable)"
    elif run.rc == 0 and "1:3" not in seen:
        unsafe = f"masked path is not the null device (stat {seen.split()[-1] if seen.split() else '?'})"
    verdict(env, sid, title, unsafe, run)


@pytest.mark.parametrize("which", ["proc", "sys"])
def test_a6_a7_proc_sys_symlink(env: Env, which: str) -> None:
    sid = "A6" if which == "proc" else "A7"
    title = f"/{which} → symlink"
    skip_unavailable(env, sid, title)
    b, r = env.bundle(base_config(["true"]))
    (r / which).rmdir()
    (r / f"bad-{which}").mkdir()
    os.symlink(f"/bad-{which}", r / which)
    run = env.rt.run(b)
    unsafe = f"/{which} mounted through the symlink (container ran)" if run.rc == 0 else None
    verdict(env, sid, title, unsafe, run)


def test_a8_bind_target_symlink_out(env: Env) -> None:
    sid, title = "A8", "/etc/resolv.conf → host path, bind target"
    skip_unavailable(env, sid, title)
    canary = env.wd.canary_dir()
    src = env.path / "resolv.conf"
    src.write_text("nameserver 192.0.2.1\n")
    cfg = base_config(["cat", "/etc/resolv.conf"])
    cfg["mounts"].append({"destination": "/etc/resolv.conf", "type": "bind", "source": str(src),
                          "options": ["bind", "ro"]})
    b, r = env.bundle(cfg)
    os.symlink(f"{canary}/created", r / "etc" / "resolv.conf")
    before = h.snapshot(canary)
    run = env.rt.run(b)
    unsafe = "created a file in the host canary dir" if h.snapshot(canary) != before else None
    note = "mount landed inside the rootfs" if (r / str(canary).lstrip("/") / "created").exists() else ""
    verdict(env, sid, title, unsafe, run, note=note)


def test_a9_dotdot_destination(env: Env) -> None:
    sid, title = "A9", "mount destination /../../<host dir>/x"
    skip_unavailable(env, sid, title)
    canary = env.wd.canary_dir()
    cfg = base_config(["true"])
    cfg["mounts"].append({"destination": f"/../../../..{canary}/x", "type": "tmpfs", "source": "tmpfs"})
    b, _ = env.bundle(cfg)
    before = h.snapshot(canary)
    run = env.rt.run(b)
    unsafe = "created x in the host canary dir" if h.snapshot(canary) != before else None
    verdict(env, sid, title, unsafe, run)


@pytest.mark.parametrize("variant", ["dotdot", "dev-symlink"])
def test_a11_device_path_escape(env: Env, variant: str) -> None:
    sid, title = f"A11 ({variant})", "linux.devices path /dev/../../<host dir>/evil"
    skip_unavailable(env, sid, title)
    canary = env.wd.canary_dir()
    cfg = base_config(["true"])
    cfg["linux"]["devices"] = [{"path": f"/dev/../..{canary}/evil", "type": "c", "major": 1, "minor": 3}]
    if variant == "dev-symlink":
        cfg = without_dev_mounts(cfg)
        cfg["linux"]["devices"] = [{"path": "/dev/evil", "type": "c", "major": 1, "minor": 3}]
    b, r = env.bundle(cfg)
    if variant == "dev-symlink":
        shutil.rmtree(r / "dev")
        os.symlink(str(canary), r / "dev")
    before = h.snapshot(canary)
    run = env.rt.run(b)
    after = h.snapshot(canary)
    unsafe = None
    if after != before:
        unsafe = f"host canary changed: {', '.join(sorted(set(after) ^ set(before)) or ['content'])}"
    verdict(env, sid, title, unsafe, run)
