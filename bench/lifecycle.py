"""Time the OCI verbs of pyoci beside runc and crun on the same bundle: create, start, state, kill, delete,
and `run` of `true`. Prints medians (ms) and the pyoci/runc, pyoci/crun ratios.

    .venv/bin/python bench/lifecycle.py [-n 20] [--runtime NAME=CMD ...] [--json FILE] [--importtime]

crun runs through the same private-mount-namespace wrapper as the conformance suite (it hides the hybrid
cgroup2 controller list); its overhead is measured and printed separately."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conformance.bundle import Workspace, base_config, write_config  # noqa: E402
from conformance.runtimes import Runtime, default_specs, make_runtime, parse_spec  # noqa: E402

VERBS = ("create", "start", "state", "kill", "delete", "run true")
SUBJECT, REFS = "pyoci", ("runc", "crun")


def _timed(rt: Runtime, *args: str) -> tuple[float, bool, str]:
    """Time one call. stdout/stderr go to a file: with terminal false the container inherits them, so a pipe
    would not reach EOF while the container lives."""
    with open(rt.root.parent / f"stdio-{rt.name}", "w+b") as stdio:
        t0 = time.perf_counter()
        res = rt.verb(*args, stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio)
        ms = (time.perf_counter() - t0) * 1000
        stdio.seek(0)
        err = stdio.read().decode(errors="replace").strip()[-300:]
    return ms, res.ok, err


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.002)


def _bundle(ws: Workspace, name: str, args: list[str], cgroup: str) -> Path:
    cfg = base_config()
    cfg["process"]["args"] = args
    cfg["linux"]["cgroupsPath"] = cgroup
    bundle = ws.path / name
    bundle.mkdir()
    os.chmod(bundle, 0o755)
    shutil.copytree(ws.rootfs, bundle / "rootfs", symlinks=True)
    write_config(bundle, cfg)
    return bundle


def bench_runtime(rt: Runtime, ws: Workspace, n: int, tag: str) -> dict[str, list[float]]:
    """n lifecycles (create/state/start/kill/delete of `sleep`) and n `run` of `true`; times in ms."""
    times: dict[str, list[float]] = {v: [] for v in VERBS}
    errors: list[str] = []
    for i in range(n):
        cid = f"conf-bench-{rt.name}-{tag}-{i}"
        # The same bundle for every runtime, but each container gets its own cgroup.
        write_config_cgroup(ws.path / "bundle-sleep", f"/conf-bench-{rt.name}-{tag}-{i}")
        try:
            ms, ok, err = _timed(rt, "create", "--bundle", str(ws.path / "bundle-sleep"), cid)
            if not ok:
                errors.append(f"create: {err}")
                continue
            times["create"].append(ms)
            t0 = time.perf_counter()
            st = rt.state(cid)
            times["state"].append((time.perf_counter() - t0) * 1000)
            pid = int(st["pid"]) if st and isinstance(st.get("pid"), int) else 0
            for verb, args in (("start", ("start", cid)), ("kill", ("kill", cid, "KILL"))):
                ms, ok, err = _timed(rt, *args)
                (times[verb].append(ms) if ok else errors.append(f"{verb}: {err}"))
            if pid:
                _wait_gone(pid)
            ms, ok, err = _timed(rt, "delete", cid)
            (times["delete"].append(ms) if ok else errors.append(f"delete: {err}"))
        finally:
            rt.verb("delete", "--force", cid)
        rid = f"conf-bench-{rt.name}-{tag}-run{i}"
        write_config_cgroup(ws.path / "bundle-true", f"/conf-bench-{rt.name}-{tag}-run{i}")
        try:
            ms, ok, err = _timed(rt, "run", "--bundle", str(ws.path / "bundle-true"), rid)
            (times["run true"].append(ms) if ok else errors.append(f"run: {err}"))
        finally:
            rt.verb("delete", "--force", rid)
    if errors:
        print(f"{rt.name}: {len(errors)} failed calls, e.g. {errors[0]}", file=sys.stderr)
    return times


def write_config_cgroup(bundle: Path, cgroup: str) -> None:
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["linux"]["cgroupsPath"] = cgroup
    write_config(bundle, cfg)


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _fmt(x: float | None) -> str:
    return f"{x:8.1f}" if x is not None else "       -"


def _startup(argv: list[str], n: int) -> float | None:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        if subprocess.run(argv, capture_output=True).returncode != 0:
            return None
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--iterations", type=int, default=20)
    ap.add_argument("--runtime", action="append", default=[], metavar="NAME=CMD")
    ap.add_argument("--json", type=Path, help="write raw timings here")
    ap.add_argument("--importtime", action="store_true",
                    help="also list the slowest imports of `pyoci state` (python -X importtime)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/lifecycle.py needs root", file=sys.stderr)
        return 1
    specs = dict(parse_spec(s) for s in args.runtime) if args.runtime else default_specs()
    ws = Workspace()
    tag = uuid.uuid4().hex[:6]
    try:
        ws.build_rootfs()
        _bundle(ws, "bundle-sleep", ["sleep", "3600"], "/conf-bench")
        _bundle(ws, "bundle-true", ["true"], "/conf-bench")
        runtimes = [make_runtime(name, cmd, ws.state, ws.empty) for name, cmd in specs.items()]
        results: dict[str, dict[str, list[float]]] = {}
        for rt in runtimes:
            if rt.missing:
                print(f"{rt.name}: {rt.missing}", file=sys.stderr)
                continue
            results[rt.name] = bench_runtime(rt, ws, args.iterations, tag)
        names = list(results)
        ratio_refs = [r for r in REFS if r in results and SUBJECT in results]
        header = f"{'verb':10}" + "".join(f"{n:>9}" for n in names) + "".join(
            f"{SUBJECT + '/' + r:>13}" for r in ratio_refs)
        print(f"medians in ms over {args.iterations} iterations")
        print(header)
        for verb in VERBS:
            meds = {n: _median(results[n][verb]) for n in names}
            row = f"{verb:10}" + "".join(f" {_fmt(meds[n])}" for n in names)
            for r in ratio_refs:
                a, b = meds[SUBJECT], meds[r]
                row += f"{(a / b if a and b else float('nan')):13.2f}"
            print(row)
        _reference(runtimes, args.iterations)
        if args.importtime:
            _importtime(runtimes)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        for cg in Path("/sys/fs/cgroup").glob(f"*/conf-bench-*-{tag}-*"):
            try:
                cg.rmdir()
            except OSError:
                print(f"left behind: {cg}", file=sys.stderr)
        ws.cleanup()
    return 0


def _reference(runtimes: list[Runtime], n: int) -> None:
    """Interpreter start-up floor for pyoci, and the crun wrapper's own cost."""
    print("\nreference (medians, ms)")
    venv_py = REPO / ".venv" / "bin" / "python"
    py = str(venv_py if venv_py.exists() else Path(sys.executable))
    print(f"  python -c pass (venv interpreter start-up)   {_fmt(_startup([py, '-c', 'pass'], n))}")
    print(f"  python -S -c pass (no site)                   {_fmt(_startup([py, '-S', '-c', 'pass'], n))}")
    for rt in runtimes:
        if rt.name == SUBJECT and not rt.missing:
            missing_id = f"conf-bench-missing-{uuid.uuid4().hex[:6]}"
            floor = _startup(rt.command("--version"), n)
            print(f"  pyoci --version                               {_fmt(floor)}")
            t = []
            for _ in range(n):
                t0 = time.perf_counter()
                rt.verb("state", missing_id)
                t.append((time.perf_counter() - t0) * 1000)
            print(f"  pyoci state <missing id>                      {_fmt(statistics.median(t))}")
        if rt.name == "crun" and not rt.missing and rt.argv[0].endswith("unshare"):
            wrapped = _startup([*rt.argv, "--version"], n)
            exe = next(a for a in rt.argv if Path(a).name == "crun")
            bare = _startup([exe, "--version"], n)
            print(f"  crun --version wrapped / bare                 {_fmt(wrapped)} / {_fmt(bare)}"
                  "  (crun rows include the wrapper)")


def _importtime(runtimes: list[Runtime]) -> None:
    for rt in runtimes:
        if rt.name != SUBJECT or rt.missing:
            continue
        venv_py = REPO / ".venv" / "bin" / "python"
        cmd = [str(venv_py), "-X", "importtime", "-m", "pyoci", "--root", str(rt.root), "state", "conf-none"]
        err = subprocess.run(cmd, capture_output=True, text=True).stderr
        rows = []
        for line in err.splitlines():
            if line.startswith("import time:") and "|" in line:
                _, cum, name = (c.strip() for c in line[len("import time:"):].split("|"))
                if cum.isdigit():
                    rows.append((int(cum), name))
        rows.sort(reverse=True)
        print("\n`pyoci state` slowest imports (cumulative us):")
        for cum, name in rows[:12]:
            print(f"  {cum:8d}  {name}")
        heavy = [n for _, n in rows if n.strip() in ("jsonschema", "pyroute2", "seccomp", "pyseccomp")]
        print(f"  heavy modules imported by state: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
