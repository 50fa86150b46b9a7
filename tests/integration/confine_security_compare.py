"""The security.md §4 scenarios of issue 4 (A13, A15, B1, B2, B4-B7, B12) under pyoci, runc and crun, side by
side: `python tests/integration/confine_security_compare.py [--json FILE]` (root). Each row is what was
observed; pyoci's own pass/fail assertions are in test_confine.py. Canaries only: files the script made."""
from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from conformance import confine_fixtures as fx  # noqa: E402
from conformance.bundle import BASE, Workspace, base_config, write_config  # noqa: E402
from conformance.runtimes import Runtime, default_specs, make_runtime  # noqa: E402

Result = dict[str, Any]


class Env:
    def __init__(self, ws: Workspace, rt: Runtime) -> None:
        self.ws, self.rt = ws, rt
        self.made: list[str] = []

    def bundle(self, args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> tuple[Path, str]:
        cfg = base_config()
        cfg["process"]["args"] = args
        cfg["linux"].pop("resources", None)
        cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "cgroup"]
        cfg["root"]["readonly"] = False
        if edit:
            edit(cfg)
        b = self.ws.new_bundle(self.rt.name, "sec", cfg)
        cid = f"sec-{self.rt.name}-{uuid.uuid4().hex[:8]}"
        self.made.append(cid)
        return b, cid

    def cmd(self, *args: str) -> list[str]:
        return self.rt.command(*args)

    def run(self, b: Path, cid: str, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[str]:
        with open(b / "out", "w+") as out, open(b / "err", "w+") as err:
            kw.setdefault("stdin", subprocess.DEVNULL)
            p = subprocess.run(self.cmd("run", "--bundle", str(b), cid), stdout=out, stderr=err, timeout=timeout,
                               **kw)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())

    def cleanup(self) -> None:
        for cid in self.made:
            subprocess.run(self.cmd("delete", "--force", cid), capture_output=True, timeout=30)


def _tail(text: str, n: int = 160) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:n]


def a15(e: Env) -> Result:
    out: Result = {}
    before = {p: p.read_bytes() for p in [Path(os.path.realpath(e.rt.argv[0]))] if p.exists()}
    for name, args in (("proc-self-exe", ["/proc/self/exe", "--version"]), ("shebang", ["/bin/evil-script"])):
        b, cid = e.bundle(args)
        (b / "rootfs/bin/evil-script").write_text("#!/proc/self/exe --version\n")
        (b / "rootfs/bin/evil-script").chmod(0o755)
        p = e.run(b, cid)
        out[name] = f"rc={p.returncode} out={_tail(p.stdout, 80)!r} err={_tail(p.stderr, 120)!r}"
    out["runtime binary unchanged"] = all(p.read_bytes() == data for p, data in before.items())
    return out


def b1(e: Env) -> Result:
    b, cid = e.bundle(["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"])
    host = e.ws.path / f"host-secret-{cid}"
    host.write_text("secret")
    d, f = os.open("/", os.O_RDONLY | os.O_DIRECTORY), os.open(host, os.O_RDONLY)
    s1, s2 = socket.socketpair()
    try:
        def leak() -> None:
            for dst, src in ((5, d), (6, f), (7, s1.fileno())):
                os.dup2(src, dst)
        with open(b / "out", "w+") as out, open(b / "err", "w+") as err:
            p = subprocess.run(e.cmd("create", "--bundle", str(b), cid), stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL, pass_fds=(d, f, s1.fileno()), preexec_fn=leak, timeout=30)
        st = json.loads(subprocess.run(e.cmd("state", cid), capture_output=True, text=True).stdout or "{}")
        pid = st.get("pid", 0)
        held = sorted({os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}) if pid else []
        leaked = [h for h in held if h in ("/", str(host)) or h == f"socket:[{os.fstat(s1.fileno()).st_ino}]"]
        subprocess.run(e.cmd("start", cid), capture_output=True, timeout=30)
        time.sleep(0.5)
        return {"create rc": p.returncode, "init fds while created": [e.ws_norm(h) for h in held],
                "caller fds held by init": leaked, "container fds": (b / "out").read_text().strip()}
    finally:
        os.close(d)
        os.close(f)
        s1.close()
        s2.close()


def b2(e: Env) -> Result:
    res = {}
    for n in (3, 4, 5, 6, 7, 8, 9):
        b, cid = e.bundle(["sh", "-c", "pwd"], lambda c, n=n: c["process"].update(cwd=f"/proc/self/fd/{n}"))
        p = e.run(b, cid)
        res[n] = f"rc={p.returncode} pwd={p.stdout.strip()!r}" if p.returncode == 0 else f"refused: {_tail(p.stderr, 70)}"
    return res


def b4(e: Env) -> Result:
    b, cid = e.bundle(["sh", "-c", "tr '\\0' ' ' < /proc/1/environ; true"],
                      lambda c: c["process"].update(env=["PATH=/bin", "ONLY=me"]))
    p = e.run(b, cid, env=dict(os.environ, SECRET="1", PYTHONPATH="/evil"))
    return {"environ": p.stdout.strip() or _tail(p.stderr)}


def _fds_run(e: Env, nfds: int, flags: list[str], listen: str | None) -> str:
    b, cid = e.bundle(["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '; echo LISTEN_FDS=$LISTEN_FDS"],
                      lambda c: c["process"].update(env=["PATH=/bin"]))
    pipes = []
    for i in range(nfds):  # park the read ends at 50+: the shell moves them to 3.. and closes the originals
        r, w = os.pipe()
        os.dup2(r, 50 + i)
        os.close(r)
        pipes.append((50 + i, w))
    script = "; ".join(f"exec {3 + i}<&{r} {r}<&-" for i, (r, _) in enumerate(pipes))
    lp = '$$' if listen == "self" else (listen or "")
    envs = f"LISTEN_FDS={nfds} LISTEN_PID={lp} " if listen is not None else ""
    shell = f"{script}; {envs}exec {' '.join(map(shlex_quote, e.cmd('run', *flags, '--bundle', str(b), cid)))}"
    try:
        with open(b / "out", "w+") as out, open(b / "err", "w+") as err:
            p = subprocess.run(["bash", "-c", shell], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                               pass_fds=[r for r, _ in pipes], timeout=30)
            out.seek(0)
            err.seek(0)
            o, er = out.read(), err.read()
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
    return f"rc={p.returncode} {o.strip() or _tail(er, 100)}"


def shlex_quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def b5(e: Env) -> Result:
    return {"LISTEN_PID other": _fds_run(e, 2, [], "1"), "LISTEN_PID ours": _fds_run(e, 2, [], "self")}


def b6(e: Env) -> Result:
    return {"preserve 2, fds 3+4 open": _fds_run(e, 2, ["--preserve-fds", "2"], None),
            "preserve 2, only fd 3": _fds_run(e, 1, ["--preserve-fds", "2"], None)}


def b7(e: Env) -> Result:
    b, cid = e.bundle(["sh", "-c", "cut -d' ' -f6,7 /proc/self/stat"])
    master, slave = pty.openpty()
    try:
        p = e.run(b, cid, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    return {"session tty_nr": p.stdout.strip() or _tail(p.stderr)}


def a13(e: Env) -> Result:
    if isinstance(fx.nss_evil_module(), str):
        return {"skip": fx.nss_evil_module()}
    b, cid = e.bundle(["sh", "-c", "id"], lambda c: c["process"].update(
        user={"uid": 1000, "gid": 1000, "additionalGids": [1000]}, env=["PATH=/bin"]))
    fx.plant_nss_hijack(b / "rootfs")
    p = e.run(b, cid)
    pwned = b / "rootfs" / "pwned"
    return {"rc": p.returncode, "pwned": pwned.read_text().strip() if pwned.exists() else "no"}


def b12(e: Env) -> Result:
    b, cid = e.bundle(["sleep", "30"])
    with open(b / "out", "w") as out:
        subprocess.run(e.cmd("create", "--bundle", str(b), cid), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                       timeout=30)
    subprocess.run(e.cmd("start", cid), capture_output=True, timeout=30)
    p = subprocess.run(e.cmd("exec", "--cap", "CAP_NET_ADMIN", cid, "grep", "-E", "Cap(Inh|Amb|Eff)",
                             "/proc/self/status"), capture_output=True, text=True, timeout=30)
    subprocess.run(e.cmd("kill", cid, "KILL"), capture_output=True, timeout=30)
    return {"exec --cap": " ".join(p.stdout.split()) or _tail(p.stderr)}


SCENARIOS = {"A13": a13, "A15": a15, "B1": b1, "B2": b2, "B4": b4, "B5": b5, "B6": b6, "B7": b7, "B12": b12}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("-k", default="")
    opts = ap.parse_args()
    ws = Workspace()
    ws.build_rootfs()
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, argv in default_specs().items():
            rt = make_runtime(name, argv, ws.state, ws.empty)
            if rt.missing:
                continue
            e = Env(ws, rt)
            e.ws_norm = lambda s: s.replace(str(ws.path), "<ws>")  # type: ignore[attr-defined]
            try:
                for scn, fn in SCENARIOS.items():
                    if opts.k and opts.k not in scn:
                        continue
                    try:
                        results.setdefault(scn, {})[name] = fn(e)
                    except Exception as exc:  # noqa: BLE001
                        results.setdefault(scn, {})[name] = {"harness error": repr(exc)}
            finally:
                e.cleanup()
    finally:
        shutil.rmtree(ws.path, ignore_errors=True)
    for scn, per in results.items():
        print(f"== {scn}")
        for rt, res in per.items():
            print(f"  {rt:6} {json.dumps(res)}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    assert BASE and tempfile  # imported for the base config and scratch space
    sys.exit(main())
