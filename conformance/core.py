"""Scenario model and the driver that runs one scenario under one runtime through the OCI verbs only."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any

from conformance import observe
from conformance.bundle import Workspace, base_config
from conformance.runtimes import Runtime, VerbResult

Facts = dict[str, str]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
LEAK_ENV = ("CONF_LEAK", "from-the-runtime-environment")


class RunError(Exception):
    """The runtime could not take the container through the scenario (verdict: error)."""


class SkipScenario(Exception):
    """The scenario cannot run on this machine (verdict: skip, for every runtime alike)."""


@dataclass(frozen=True)
class Scenario:
    """One spec behaviour: an edit of the base config, what to observe, and the spec's expectation.

    edit(config, run)    changes the base config in place (process.args is already the probe).
    probe                extra shell lines for the in-container probe (print sections with `echo @@name`).
    check(facts)         the spec's expectation: a list of problems, empty when it is met.
    facts                fact-key prefixes compared across runtimes (the diff shown for failures).
    setup(run)           context manager for host-side resources (a netns holder, a shared mount).
    prepare(bundle, run) changes a fresh bundle (its rootfs copy) before `create` (hostile-image scenarios).
    during(run, pid)     host-side action while the process runs; returns extra facts.
    after(run)           host-side look after `delete` (poststop hooks, leftovers of the feature); facts.
    drive(run)           replaces the probe driver entirely (CLI lifecycle scenarios).
    skip()               a reason when the scenario cannot run on this machine, else None.
    create_args          extra `create` flags for the probe driver (e.g. ("--no-pivot",)), before the id.
    """

    name: str
    spec: str
    check: Callable[[Facts], list[str]]
    edit: Callable[[dict[str, Any], Run], None] | None = None
    probe: str = ""
    facts: tuple[str, ...] = ()
    setup: Callable[[Run], AbstractContextManager[None]] | None = None
    prepare: Callable[[Path, Run], None] | None = None
    during: Callable[[Run, int], Facts] | None = None
    after: Callable[[Run], Facts] | None = None
    drive: Callable[[Run], Facts] | None = None
    skip: Callable[[], str | None] | None = None
    fast: bool = False
    create_args: tuple[str, ...] = ()


@dataclass
class Container:
    """One container the run created: its id, the stdin pipe that keeps it waiting, its stdio files."""

    cid: str
    bundle: Path
    stdin_w: int | None = None
    pid: int = 0
    start_time: str | None = None

    @property
    def stdout(self) -> Path:
        return self.bundle / "stdout"

    @property
    def stderr(self) -> Path:
        return self.bundle / "stderr"

    def release(self) -> None:
        """Close our end of the container's stdin: its `read` returns and the process exits."""
        if self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None


@dataclass
class Run:
    """One scenario under one runtime: unique ids and cgroupsPath, transcript, and cleanup of everything."""

    runtime: Runtime
    ws: Workspace
    scenario: Scenario
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    joined: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)
    norm: observe.Normaliser = field(default_factory=observe.Normaliser)

    def __post_init__(self) -> None:
        self.cgroups_path = f"/conf-{self.runtime.name}-{self.tag}"
        self.norm.add(str(self.ws.path), "<ws>")
        self.norm.add(self.cgroups_path, "<cgroup>")

    # ---- ids, configs, bundles ---------------------------------------------------------------------------
    def new_id(self, suffix: str = "") -> str:
        slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in self.scenario.name)
        cid = f"conf-{self.runtime.name}-{slug}-{self.tag}{suffix}"
        self.norm.add(cid, "<id>")
        return cid

    def config(self, args: list[str]) -> dict[str, Any]:
        cfg = base_config()
        cfg["process"]["args"] = args
        cfg["linux"]["cgroupsPath"] = self.cgroups_path
        if self.scenario.edit is not None:
            self.scenario.edit(cfg, self)
        return cfg

    def bundle(self, cfg: dict[str, Any]) -> Path:
        path = self.ws.new_bundle(self.runtime.name, self.scenario.name, cfg)
        self.norm.add(str(path), "<bundle>")
        if self.scenario.prepare is not None:
            self.scenario.prepare(path, self)
        return path

    # ---- verbs --------------------------------------------------------------------------------------------
    def verb(self, *args: str, **kw: Any) -> VerbResult:
        kw.setdefault("extra_env", dict([LEAK_ENV]))
        res = self.runtime.verb(*args, **kw)
        self.transcript.append(self.norm(res.line()))
        return res

    def create(self, cfg: dict[str, Any], cid: str | None = None, keep_stdin: bool = True,
               extra: tuple[str, ...] = ()) -> tuple[Container, VerbResult]:
        """`create --bundle B <id>` with stdin a pipe we hold and stdout/stderr files in the bundle."""
        ctr = Container(cid or self.new_id(), self.bundle(cfg))
        self.containers.append(ctr)
        r, w = os.pipe()
        try:
            with open(ctr.stdout, "wb") as out, open(ctr.stderr, "wb") as err:
                res = self.verb("create", "--bundle", str(ctr.bundle), *extra, ctr.cid,
                                stdin=r, stdout=out, stderr=err)
        finally:
            os.close(r)
        if keep_stdin:
            ctr.stdin_w = w
        else:
            os.close(w)
        if not res.ok:
            res = VerbResult(res.argv, res.rc, res.out, ctr.stderr.read_text(errors="replace"), res.args)
            self.transcript[-1] = self.norm(res.line())
        return ctr, res

    def state(self, ctr: Container) -> dict[str, Any] | None:
        res = self.verb("state", ctr.cid)
        if not res.ok:
            return None
        try:
            data = json.loads(res.out)
        except json.JSONDecodeError:
            raise RunError(f"state {ctr.cid}: output is not JSON: {res.out[:200]!r}") from None
        if isinstance(data, dict) and isinstance(data.get("pid"), int) and data["pid"] > 0:
            ctr.pid = data["pid"]
            ctr.start_time = ctr.start_time or observe.start_time(ctr.pid)
        return data if isinstance(data, dict) else None

    def status(self, ctr: Container) -> str:
        st = self.state(ctr)
        return str(st.get("status")) if st else "<error>"

    def wait_ready(self, ctr: Container, timeout: float = READY_TIMEOUT) -> str:
        """Wait until the probe printed READY (it then blocks reading stdin); return its stdout so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = ctr.stdout.read_text(errors="replace")
            if observe.READY in text:
                return text
            if ctr.pid and not _alive(ctr.pid):
                break
            time.sleep(0.01)
        text = ctr.stdout.read_text(errors="replace")
        err = ctr.stderr.read_text(errors="replace").strip()
        raise RunError(f"container process never reached READY; stdout tail {text[-300:]!r}, "
                       f"stderr {err[-300:]!r}")

    def wait_stopped(self, ctr: Container, timeout: float = STOP_TIMEOUT) -> str:
        """Wait for the init to exit, then return the runtime's status for it."""
        deadline = time.monotonic() + timeout
        while ctr.pid and _alive(ctr.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(50):
            status = self.status(ctr)
            if status == "stopped":
                return status
            time.sleep(0.05)
        return status

    # ---- cleanup ------------------------------------------------------------------------------------------
    def _ours(self, ctr: Container) -> bool:
        """The pid the runtime reported is still our container's init: same start time, in our cgroup."""
        if not (ctr.start_time and _alive(ctr.pid) and observe.start_time(ctr.pid) == ctr.start_time):
            return False
        try:
            return self.cgroups_path in Path(f"/proc/{ctr.pid}/cgroup").read_text()
        except OSError:
            return False

    def cleanup(self) -> list[str]:
        """delete --force every container; kill a surviving init we know is ours; report leftovers."""
        leftovers: list[str] = []
        for ctr in self.containers:
            ctr.release()
            if (self.runtime.root / ctr.cid).exists() or ctr.pid:
                self.runtime.verb("delete", "--force", ctr.cid)
            if ctr.pid and self._ours(ctr):
                leftovers.append(f"process {ctr.pid} still alive after delete --force (killed)")
                with contextlib.suppress(OSError):
                    os.kill(ctr.pid, signal.SIGKILL)
            if (self.runtime.root / ctr.cid).exists():
                leftovers.append(f"state dir <root>/{self.norm(ctr.cid)} left behind")
        cgroups = sorted(Path("/sys/fs/cgroup").glob("*" + self.cgroups_path))
        if cgroups:
            leftovers.append(f"cgroup <cgroup> left behind in {', '.join(c.parent.name for c in cgroups)}")
        for cg in cgroups:
            _rmdir_tree(cg)
        return leftovers


def drive_probe(run: Run) -> Facts:
    """create → observe (created) → start → observe (running) → release → stopped → delete."""
    scn = run.scenario
    cfg = run.config(["sh", "-c", observe.probe_script(scn.probe)])
    ctr, res = run.create(cfg, extra=scn.create_args)
    if not res.ok:
        raise RunError(f"create failed (rc={res.rc}): {res.err.strip()[-400:]}")
    facts: Facts = {}
    st = run.state(ctr)
    if st is None or not ctr.pid:
        raise RunError(f"state after create failed: {run.transcript[-1]}")
    facts["state.after-create"] = str(st.get("status"))
    facts.update(observe.host_facts(ctr.pid, "created", run.norm, run.joined))
    res = run.verb("start", ctr.cid)
    if not res.ok:
        raise RunError(f"start failed (rc={res.rc}): {res.err.strip()[-400:]}")
    run.wait_ready(ctr)
    facts["state.after-start"] = run.status(ctr)
    facts.update(observe.host_facts(ctr.pid, "running", run.norm, run.joined))
    if scn.during is not None:
        facts.update(scn.during(run, ctr.pid))
    ctr.release()
    facts["state.after-exit"] = run.wait_stopped(ctr)
    facts.update(observe.inside_facts(ctr.stdout.read_text(errors="replace"), run.norm))
    if facts.get("in.pid") == str(ctr.pid):
        facts["in.pid"] = "<hostpid>"
    res = run.verb("delete", ctr.cid)
    facts["delete.rc"] = "0" if res.ok else "nonzero"
    if scn.after is not None:
        facts.update(scn.after(run))
    return facts


@contextlib.contextmanager
def _nothing(run: Run) -> Iterator[None]:
    yield


def execute(run: Run) -> tuple[Facts, list[str]]:
    """Run the scenario; return its facts and the problems found outside the expectation (leftovers)."""
    setup = run.scenario.setup or _nothing
    drive = run.scenario.drive or drive_probe
    try:
        with setup(run):
            try:
                facts = drive(run)
            finally:
                leftovers = run.cleanup()
    finally:
        for ctr in run.containers:
            ctr.release()
    return facts, leftovers


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _rmdir_tree(path: Path) -> None:
    for sub in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
        if sub.is_dir():
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
