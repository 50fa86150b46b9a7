"""Security scenarios (security.md §4) against pyoci, runc and crun, with a results table.

Each scenario builds its own bundle and canaries in a fresh /tmp dir, runs the runtime's `run`, and
classifies the outcome: "safe (refused)", "safe", or "UNSAFE: ...". pyoci must be safe; runc and crun are
recorded (an unsafe outcome is an xfail, never a failure of the suite) so the README can show the
difference. The table is printed at the end of the run (and written to $PYOCI_SECURITY_RESULTS if set).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import rootfs_harness as h

from pyoci.linux import libc

REPO = HERE.parents[1]
CONTROLLERS = Path("/sys/fs/cgroup/unified/cgroup.controllers")
RUNTIMES = {
    "pyoci": [str(REPO / ".venv" / "bin" / "pyoci")],
    "runc": ["/usr/sbin/runc"],
    "crun": ["/usr/bin/crun"],
}
ORDER = ["pyoci", "runc", "crun"]
RESULTS: dict[str, dict[str, str]] = {}
TITLES: dict[str, str] = {}
_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def base_config(args: list[str]) -> dict[str, Any]:
    """`runc spec` defaults (terminal false, no cgroup mount, rw root) with args."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
                    "capabilities": {s: list(_CAPS) for s in ("bounding", "effective", "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "sec",
        "mounts": copy.deepcopy(h.base_mounts()),
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                  "maskedPaths": list(h.RUNC_MASKED), "readonlyPaths": list(h.RUNC_READONLY)},
    }


def without_dev_mounts(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]
    return cfg


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def err_line(self) -> str:
        """The last error line, without a logrus-style 'time=… level=error msg=' wrapper."""
        lines = [ln for ln in self.err.strip().splitlines() if ln.strip()]
        line = lines[-1] if lines else f"rc={self.rc}"
        if 'msg="' in line:
            line = line.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
        for prefix in ("runc run failed: ", "unable to start container process: ", "error during container init: "):
            line = line.replace(prefix, "")
        return line if len(line) <= 120 else line[:117] + "..."


def _crun_preexec(empty: str) -> Any:
    """crun 1.8.1 refuses to run while the hybrid cgroup2 lists a controller: hide the list in a private
    mount namespace of the crun process only (the host's file is never changed)."""
    def hide() -> None:
        libc.unshare(libc.CLONE_NEWNS)
        libc.mount(None, "/", None, libc.MS_SLAVE | libc.MS_REC)
        libc.mount(empty, str(CONTROLLERS), None, libc.MS_BIND)
    return hide


class Runtime:
    def __init__(self, name: str, root: Path, empty: Path) -> None:
        self.name, self.root, self.empty = name, root, empty
        self.argv = RUNTIMES[name]

    def available(self) -> str | None:
        exe = self.argv[0]
        return None if os.access(exe, os.X_OK) else f"{exe} not found"

    def cmd(self, *args: str, timeout: float = 60, input_fd: int | None = None) -> Run:
        preexec = None
        if self.name == "crun" and CONTROLLERS.exists() and CONTROLLERS.read_text().strip():
            preexec = _crun_preexec(str(self.empty))
        try:
            p = subprocess.run([*self.argv, "--root", str(self.root), *args], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=timeout, preexec_fn=preexec, check=False)
        except subprocess.TimeoutExpired:
            return Run(-1, "", "timeout")
        return Run(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))

    def run(self, bundle: Path, *, no_pivot: bool = False, timeout: float = 60) -> Run:
        cid = f"pyoci-sec-{uuid.uuid4().hex[:10]}"
        try:
            return self.cmd("run", *(["--no-pivot"] if no_pivot else []), "--bundle", str(bundle), cid,
                            timeout=timeout)
        finally:
            self.cmd("delete", "--force", cid, timeout=30)


class Env:
    """Per-test workspace: bundles, canaries, runtime roots; all under one /tmp dir removed afterwards."""

    def __init__(self, rt: Runtime, wd: h.Workdir) -> None:
        self.rt, self.wd = rt, wd
        self._n = 0

    @property
    def path(self) -> Path:
        return self.wd.path

    def bundle(self, cfg: dict[str, Any]) -> tuple[Path, Path]:
        self._n += 1
        b, r = self.wd.bundle(f"bundle{self._n}")
        self.write(b, cfg)
        return b, r

    @staticmethod
    def write(bundle: Path, cfg: dict[str, Any]) -> None:
        (bundle / "config.json").write_text(json.dumps(cfg, indent=1))


@pytest.fixture(params=ORDER)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    wd = h.Workdir("pyoci-sec-")
    (wd.path / "empty").touch()
    rt = Runtime(request.param, wd.path / f"state-{request.param}", wd.path / "empty")
    rt.root.mkdir()
    try:
        yield Env(rt, wd)
    finally:
        wd.cleanup()


def verdict(env: Env, sid: str, title: str, unsafe: str | None, run: Run | None, *, note: str = "") -> None:
    """Record the outcome; pyoci must be safe, runc/crun being unsafe is an expected failure."""
    TITLES[sid] = title
    if unsafe:
        outcome = f"UNSAFE: {unsafe}"
    elif run is not None and run.rc != 0:
        outcome = f"safe (refused: {run.err_line()})"
    else:
        outcome = "safe" + (f" ({note})" if note else "")
    RESULTS.setdefault(sid, {})[env.rt.name] = outcome
    if unsafe:
        if env.rt.name == "pyoci":
            pytest.fail(f"{sid}: pyoci is unsafe: {unsafe}")
        pytest.xfail(f"{sid}: {env.rt.name} is unsafe: {unsafe}")


def record_pyoci_only(sid: str, title: str, outcome: str) -> None:
    """A row measured for pyoci alone (in-process runs that check every mount before pivot)."""
    TITLES[sid] = title
    RESULTS.setdefault(sid, {})["pyoci"] = outcome
    RESULTS[sid].setdefault("runc", "n/a (pyoci internals)")
    RESULTS[sid].setdefault("crun", "n/a (pyoci internals)")


def skip_unavailable(env: Env, sid: str, title: str) -> None:
    why = env.rt.available()
    if why:
        TITLES[sid] = title
        RESULTS.setdefault(sid, {})[env.rt.name] = f"not run ({why})"
        pytest.skip(why)


def table() -> str:
    rows = ["| Scenario | pyoci | runc 1.1.5 | crun 1.8.1 |", "|---|---|---|---|"]
    for sid in sorted(RESULTS, key=_sort_key):
        cells = [RESULTS[sid].get(n, "—").replace("|", "\\|") for n in ORDER]
        rows.append(f"| {sid} {TITLES.get(sid, '')} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _sort_key(sid: str) -> tuple[str, int, str]:
    head = sid.split()[0]
    digits = "".join(c for c in head[1:] if c.isdigit())
    return head[0], int(digits or 0), sid


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    text = table()
    terminalreporter.write_sep("=", "security scenarios (security.md §4): pyoci vs runc vs crun")
    terminalreporter.write_line(text)
    out = os.environ.get("PYOCI_SECURITY_RESULTS")
    if out:
        Path(out).write_text(text + "\n")


def rmtree_quiet(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
