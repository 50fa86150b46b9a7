"""C. What the container process sees: C11 (masked/readonly defaults), C12 (pivot hygiene), C14 (--no-pivot)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Env, base_config, skip_unavailable, verdict

pytestmark = pytest.mark.root

# Only opens for write (never writes): on an unsafe runtime nothing happens to the real files.
C11_SCRIPT = r"""
for f in /proc/kcore /proc/keys /proc/timer_list; do
  if [ -e $f ]; then echo "$f=$(stat -c %t:%T $f)"; else echo "$f=absent"; fi
done
echo "acpi=$(ls -A /proc/acpi | wc -l)"
umount /proc/keys 2>/dev/null && echo umount=ALLOWED || echo umount=denied
( exec 3>>/proc/sys/vm/drop_caches ) 2>/dev/null && echo drop_caches=OPENED || echo drop_caches=denied
if [ -e /proc/sysrq-trigger ]; then
  ( exec 3>>/proc/sysrq-trigger ) 2>/dev/null && echo sysrq=OPENED || echo sysrq=denied
else echo sysrq=absent; fi
"""


def test_c11_masked_and_readonly_defaults(env: Env) -> None:
    sid, title = "C11", "runc-spec maskedPaths/readonlyPaths hold (no CAP_SYS_ADMIN)"
    skip_unavailable(env, sid, title)
    b, _ = env.bundle(base_config(["sh", "-c", C11_SCRIPT]))
    run = env.rt.run(b)
    got = dict(ln.split("=", 1) for ln in run.out.split() if "=" in ln)
    bad = []
    for f in ("/proc/kcore", "/proc/keys", "/proc/timer_list"):
        if got.get(f) not in ("1:3", "absent"):
            bad.append(f"{f} is {got.get(f)}")
    if got.get("acpi") != "0":
        bad.append(f"/proc/acpi lists {got.get('acpi')} entries")
    for k in ("umount", "drop_caches", "sysrq"):
        if got.get(k) in ("ALLOWED", "OPENED"):
            bad.append(f"{k} {got[k]}")
    unsafe = "; ".join(bad) if run.rc == 0 and bad else None
    if run.rc != 0:
        unsafe = f"container did not run ({run.err_line()})"
    absent = [n for n, v in (("kcore", got.get("/proc/kcore")), ("sysrq-trigger", got.get("sysrq")))
              if v == "absent"]
    verdict(env, sid, title, unsafe, None, note=f"{', '.join(absent)} absent on this kernel" if absent else "")


def test_c11_check_detects_an_unmasked_container(env: Env) -> None:
    """Negative control: without maskedPaths/readonlyPaths the C11 check must see the real files."""
    if env.rt.name != "pyoci":
        pytest.skip("n/a: the control runs once, with pyoci")
    cfg = base_config(["sh", "-c", C11_SCRIPT])
    cfg["linux"]["maskedPaths"], cfg["linux"]["readonlyPaths"] = [], []
    b, _ = env.bundle(cfg)
    run = env.rt.run(b)
    got = dict(ln.split("=", 1) for ln in run.out.split() if "=" in ln)
    assert run.rc == 0 and got["/proc/keys"] == "0:0" and got["drop_caches"] == "OPENED", run


def test_c12_pivot_hygiene(env: Env) -> None:
    sid, title = "C12", "no host mounts or paths after pivot_root"
    skip_unavailable(env, sid, title)
    cfg = base_config(["sh", "-c", "cat /proc/1/mountinfo; echo ROOT=$(readlink /proc/1/root)"])
    b, r = env.bundle(cfg)
    allowed = {m["destination"] for m in cfg["mounts"]} | set(cfg["linux"]["maskedPaths"]) \
        | set(cfg["linux"]["readonlyPaths"]) | {"/"} | {f"/dev/{n}" for n in ("null", "zero", "full", "random",
                                                                              "urandom", "tty", "console")}
    host_points = {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()}
    host_only = host_points - allowed
    run = env.rt.run(b)
    bad = []
    points, roots = set(), set()
    for ln in run.out.splitlines():
        if ln.startswith("ROOT="):
            if ln != "ROOT=/":
                bad.append(ln)
            continue
        f = ln.split()
        if len(f) > 4:
            points.add(f[4])
            roots.add(f[3])
    leaked = sorted(points & host_only)
    if leaked:
        bad.append(f"host mount points visible: {leaked[:4]}")
    if any(str(env.path) in p for p in points):
        bad.append("a host path is a mount point")
    foreign = sorted(x for x in roots if x.startswith(str(env.path)) and x != str(r))
    if foreign:
        bad.append(f"undeclared host paths as mount roots: {foreign[:3]}")
    unsafe = "; ".join(bad) if run.rc == 0 and bad else None
    verdict(env, sid, title, unsafe, run)


def test_c14_no_pivot_host_root_unreachable(env: Env) -> None:
    sid, title = "C14", "--no-pivot: host root via /proc/1/root/.. or /.."
    skip_unavailable(env, sid, title)
    b, r = env.bundle(base_config(["sh", "-c", "ls -a /proc/1/root/..; echo ---; ls -a /..; echo ---; ls -a /"]))
    host_only = set(os.listdir("/")) - set(os.listdir(r))
    run = env.rt.run(b, no_pivot=True)
    seen = set(run.out.split()) - {"---"}
    leaked = sorted(seen & host_only)
    unsafe = f"host root entries visible: {leaked[:5]}" if run.rc == 0 and leaked else None
    verdict(env, sid, title, unsafe, run)
