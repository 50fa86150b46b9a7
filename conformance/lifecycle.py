"""The OCI command-line lifecycle contract (runtime-tools docs/command-line-interface.md, runtime.md#operations):
the state transitions and the error cases, driven through create/start/state/kill/delete only."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from conformance.core import Container, Facts, Run, RunError, Scenario, _alive

WAIT = ["sh", "-c", "read _ignored"]  # runs until we close its stdin


def _rc(ok: bool) -> str:
    return "0" if ok else "nonzero"


def _created(run: Run, args: list[str] = WAIT, cid: str | None = None,
             extra: tuple[str, ...] = ()) -> Container:
    ctr, res = run.create(run.config(args), cid=cid, extra=extra)
    if not res.ok:
        raise RunError(f"create failed (rc={res.rc}): {res.err.strip()[-400:]}")
    if run.state(ctr) is None or not ctr.pid:
        raise RunError("state after create failed")
    return ctr


def _running(run: Run, args: list[str] = WAIT) -> Container:
    ctr = _created(run, args)
    res = run.verb("start", ctr.cid)
    if not res.ok:
        raise RunError(f"start failed (rc={res.rc}): {res.err.strip()[-400:]}")
    return ctr


def _expect(**want: str) -> Callable[[Facts], list[str]]:
    def check(f: Facts) -> list[str]:
        return [f"{k}: expected {v!r}, got {f.get(k, '<absent>')!r}" for k, v in want.items()
                if f.get(k, "<absent>") != v]
    return check


# ---- drivers ----------------------------------------------------------------------------------------------
def drive_states(run: Run) -> Facts:
    """state through created → running → stopped, the required fields, and state after delete."""
    f: Facts = {}
    ctr = _created(run)
    st = run.state(ctr) or {}
    f["created.status"] = str(st.get("status"))
    f["created.id-matches"] = str(st.get("id") == ctr.cid)
    f["created.pid-positive"] = str(isinstance(st.get("pid"), int) and st["pid"] > 0)
    f["created.bundle-matches"] = str(st.get("bundle") == str(ctr.bundle))
    f["created.has-ociVersion"] = str(isinstance(st.get("ociVersion"), str) and bool(st["ociVersion"]))
    f["start.rc"] = _rc(run.verb("start", ctr.cid).ok)
    f["running.status"] = run.status(ctr)
    ctr.release()
    f["stopped.status"] = run.wait_stopped(ctr)
    f["delete.rc"] = _rc(run.verb("delete", ctr.cid).ok)
    f["deleted.state.rc"] = _rc(run.verb("state", ctr.cid).ok)
    return f


def drive_create_existing(run: Run) -> Facts:
    """create with an id that exists fails and leaves the existing container alone."""
    f: Facts = {}
    first = _created(run)
    pid = first.pid
    _, res = run.create(run.config(WAIT), cid=first.cid)
    run.containers.pop().release()  # no container of its own: never delete first.cid twice
    f["create-again.rc"] = _rc(res.ok)
    st = run.state(first) or {}
    f["existing.status"] = str(st.get("status"))
    f["existing.pid-unchanged"] = str(st.get("pid") == pid)
    return f


def drive_start_twice(run: Run) -> Facts:
    """start of a running container fails; start of a stopped one fails; neither changes the container."""
    f: Facts = {}
    ctr = _running(run)
    pid = ctr.pid
    f["start-running.rc"] = _rc(run.verb("start", ctr.cid).ok)
    st = run.state(ctr) or {}
    f["after.status"] = str(st.get("status"))
    f["after.pid-unchanged"] = str(st.get("pid") == pid)
    ctr.release()
    run.wait_stopped(ctr)
    f["start-stopped.rc"] = _rc(run.verb("start", ctr.cid).ok)
    f["stopped.status"] = run.status(ctr)
    return f


def drive_missing(verb: str) -> Callable[[Run], Facts]:
    def drive(run: Run) -> Facts:
        cid = run.new_id("-missing")
        return {f"{verb}-missing.rc": _rc(run.verb(verb, cid).ok)}
    return drive


def drive_delete_running(run: Run) -> Facts:
    """delete (without --force) of a running container fails and leaves it running; --force removes it."""
    f: Facts = {}
    ctr = _running(run)
    f["delete-running.rc"] = _rc(run.verb("delete", ctr.cid).ok)
    f["after.status"] = run.status(ctr)
    f["delete-force.rc"] = _rc(run.verb("delete", "--force", ctr.cid).ok)
    deadline = time.monotonic() + 10
    while ctr.pid and _exists(ctr.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    f["after-force.process-gone"] = str(not _exists(ctr.pid))
    f["after-force.state.rc"] = _rc(run.verb("state", ctr.cid).ok)
    return f


def drive_kill_stopped(run: Run) -> Facts:
    """kill of a stopped container fails."""
    ctr = _running(run)
    ctr.release()
    f: Facts = {"stopped.status": run.wait_stopped(ctr)}
    f["kill-stopped.rc"] = _rc(run.verb("kill", ctr.cid, "KILL").ok)
    return f


def drive_kill(run: Run) -> Facts:
    """kill <id> KILL of a running container (and TERM of a created one with `9`) stops it."""
    f: Facts = {}
    ctr = _running(run)
    f["kill.rc"] = _rc(run.verb("kill", ctr.cid, "KILL").ok)
    f["after-kill.status"] = run.wait_stopped(ctr)
    other = _created(run, cid=run.new_id("-b"))
    f["kill-created.rc"] = _rc(run.verb("kill", other.cid, "9").ok)
    f["after-kill-created.status"] = run.wait_stopped(other)
    return f


def drive_pid_file(run: Run) -> Facts:
    """create --pid-file writes the container's pid (as `state` reports it) before create returns."""
    path = run.ws.path / f"pid-{run.runtime.name}-{run.tag}"
    ctr = _created(run, extra=("--pid-file", str(path)))
    text = path.read_text() if path.exists() else "<absent>"
    return {"pid-file.matches-state": str(text.strip() == str(ctr.pid)),
            "pid-file.trailing-newline": str(text.endswith("\n"))}


def drive_config_snapshot(run: Run) -> Facts:
    """Edits of the bundle's config.json after create do not reach the container."""
    cfg = run.config(WAIT)
    cfg["process"]["env"].append("CONF_SNAPSHOT=original")
    ctr, res = run.create(cfg)
    if not res.ok or run.state(ctr) is None:
        raise RunError(f"create failed (rc={res.rc}): {res.err.strip()[-400:]}")
    changed = json.loads((ctr.bundle / "config.json").read_text())
    changed["process"]["env"][-1] = "CONF_SNAPSHOT=changed"
    changed["process"]["args"] = ["sh", "-c", "echo changed; read _ignored"]
    (ctr.bundle / "config.json").write_text(json.dumps(changed))
    f: Facts = {"start.rc": _rc(run.verb("start", ctr.cid).ok)}
    time.sleep(0.2)
    environ = Path(f"/proc/{ctr.pid}/environ").read_bytes().decode(errors="replace").split("\0")
    f["environ.snapshot"] = next((e for e in environ if e.startswith("CONF_SNAPSHOT=")), "<absent>")
    f["cmdline"] = Path(f"/proc/{ctr.pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").strip()
    return f


def _exists(pid: int) -> bool:
    return _alive(pid)


SCENARIOS: list[Scenario] = [
    Scenario("lifecycle.states", "runtime.md#state: created → running → stopped; state fields; gone after delete",
             _expect(**{"created.status": "created", "created.id-matches": "True",
                        "created.pid-positive": "True", "created.bundle-matches": "True",
                        "created.has-ociVersion": "True", "start.rc": "0", "running.status": "running",
                        "stopped.status": "stopped", "delete.rc": "0", "deleted.state.rc": "nonzero"}),
             drive=drive_states, fast=True),
    Scenario("lifecycle.create-existing-id", "runtime.md#create: MUST error if the id is not unique",
             _expect(**{"create-again.rc": "nonzero", "existing.status": "created",
                        "existing.pid-unchanged": "True"}),
             drive=drive_create_existing, fast=True),
    Scenario("lifecycle.start-twice", "runtime.md#start: MUST error if the container is not created",
             _expect(**{"start-running.rc": "nonzero", "after.status": "running", "after.pid-unchanged": "True",
                        "start-stopped.rc": "nonzero", "stopped.status": "stopped"}),
             drive=drive_start_twice, fast=True),
    Scenario("lifecycle.start-missing", "runtime.md#start: MUST error for an unknown id",
             _expect(**{"start-missing.rc": "nonzero"}), drive=drive_missing("start")),
    Scenario("lifecycle.delete-missing", "runtime.md#delete: MUST error for an unknown id",
             _expect(**{"delete-missing.rc": "nonzero"}), drive=drive_missing("delete")),
    Scenario("lifecycle.state-missing", "runtime.md#query-state: MUST error for an unknown id",
             _expect(**{"state-missing.rc": "nonzero"}), drive=drive_missing("state")),
    Scenario("lifecycle.delete-running", "runtime.md#delete: MUST error if not stopped (no effect); --force",
             _expect(**{"delete-running.rc": "nonzero", "after.status": "running", "delete-force.rc": "0",
                        "after-force.process-gone": "True", "after-force.state.rc": "nonzero"}),
             drive=drive_delete_running, fast=True),
    Scenario("lifecycle.kill-stopped", "runtime.md#kill: MUST error if neither created nor running",
             _expect(**{"stopped.status": "stopped", "kill-stopped.rc": "nonzero"}),
             drive=drive_kill_stopped, fast=True),
    Scenario("lifecycle.kill", "runtime.md#kill: the signal reaches the container process (created or running)",
             _expect(**{"kill.rc": "0", "after-kill.status": "stopped", "kill-created.rc": "0",
                        "after-kill-created.status": "stopped"}),
             drive=drive_kill),
    Scenario("lifecycle.config-snapshot", "runtime.md#create: later changes to config.json MUST NOT affect it",
             _expect(**{"start.rc": "0", "environ.snapshot": "CONF_SNAPSHOT=original",
                        "cmdline": "sh -c read _ignored"}),
             drive=drive_config_snapshot),
    Scenario("lifecycle.pid-file", "command-line-interface.md#create: --pid-file holds the container's pid",
             _expect(**{"pid-file.matches-state": "True"}), drive=drive_pid_file),
]
