"""The OCI operations: transition checks and orchestration (runtime.md "Operations").

Imports here stay light: state/kill/delete/start run on every containerd and podman call, so jsonschema,
pyroute2, seccomp and the container-side modules are imported only inside create/run.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import time
from typing import Any

from pyoci.errors import ContainerNotFound, HookError, InvalidStatus, PyociError
from pyoci.linux import pids
from pyoci.state import FIFO, State, StateStore, Status, derive_status

log = logging.getLogger(__name__)


class Container:
    """A container loaded from the state store, with its derived status."""

    def __init__(self, store: StateStore, cid: str) -> None:
        self.store, self.id = store, cid
        self.state: State = store.load(cid)

    def _cgroup(self) -> Any:
        if not self.state.cgroup:
            return None
        from pyoci import cgroups
        return cgroups.manager_from_state(self.state.cgroup)

    def status(self) -> Status:
        st = self.state
        alive = pids.alive(st.pid, st.start_time)
        fifo = os.path.exists(os.path.join(self.store.dir(self.id), FIFO))
        frozen = False
        if alive and st.status != Status.CREATING:
            cg = self._cgroup()
            frozen = bool(cg and cg.frozen())
        return derive_status(st.status, alive, True, fifo, frozen)

    def spec(self) -> dict[str, Any]:
        return self.store.load_config(self.id)

    def signal(self, sig: int) -> bool:
        return pids.signal_pid(self.state.pid, self.state.start_time, sig)


def create(store: StateStore, cid: str, opts: Any) -> State:
    from pyoci import config, process  # heavy: jsonschema and the container side
    spec = config.load(opts.bundle)
    return process.create(store, cid, spec, opts)


def start(store: StateStore, cid: str) -> None:
    lock = store.lock(cid)
    try:
        c = Container(store, cid)
        status = c.status()
        if status != Status.CREATED:
            what = {Status.STOPPED: "a container that has stopped", Status.RUNNING: "an already running container"}
            raise InvalidStatus(cid, status, "start", f"cannot start {what.get(status, f'a {status} container')}")
        try:
            _release_fifo(store, c)
        except HookError:
            # runtime.md#lifecycle: a failing startContainer hook is an error; the container is stopped
            # and the lifecycle continues at delete (destroy, then poststop hooks).
            _stop_and_destroy(store, c)
            raise
        c.state.status = Status.RUNNING
        store.save(c.state)
        spec = c.spec()
        if (spec.get("hooks") or {}).get("poststart"):
            try:
                from pyoci import hooks
                hooks.run_hooks(spec, "poststart", c.state.oci(Status.RUNNING))
            except PyociError:
                # runtime-spec 1.3 (#1262): a failing poststart hook is an error, stops the container and
                # continues at delete. (Before 1.3 it was a warning; runtime-tools still expects that.)
                _stop_and_destroy(store, c)
                raise
    finally:
        os.close(lock)


def _stop_and_destroy(store: StateStore, c: Container) -> None:
    try:
        _kill_and_wait(c)
    finally:
        _destroy(store, c)


def _release_fifo(store: StateStore, c: Container) -> None:
    """Take the init's byte from exec.fifo, then wait until the init closes the fifo.

    The init writes "0" once it is released, runs the startContainer hooks and keeps the fifo open
    (CLOEXEC) until execve: EOF means the user program was executed (poststart may run now); "H…"/"E…"
    is the init's error (a failing startContainer hook / anything else) and it has exited.
    """
    path = os.path.join(store.dir(c.id), FIFO)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    data = b""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            # Before the init opens its end, poll reports nothing (and read would say EOF): only read
            # after an event.
            if poller.poll(100):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
            elif not data and not pids.alive(c.state.pid, c.state.start_time):
                raise PyociError(f"container {c.id!r}: init exited before start")
    finally:
        os.close(fd)
    if not data and not pids.alive(c.state.pid, c.state.start_time):
        raise PyociError(f"container {c.id!r}: init exited before start")
    os.unlink(path)
    report = data[1:]
    if report:
        text = report[1:].decode(errors="replace")
        if report[:1] == b"H":
            raise HookError(text)
        raise PyociError(f"container {c.id!r}: {text}")


def state(store: StateStore, cid: str) -> dict[str, Any]:
    c = Container(store, cid)
    return c.state.oci(c.status())


def kill(store: StateStore, cid: str, sig: int, all_procs: bool = False) -> None:
    c = Container(store, cid)
    status = c.status()
    cg = c._cgroup() if all_procs else None
    if cg is not None and (status != Status.STOPPED or cg.pids()):
        # --all: every process in the container's cgroup, even after the init exited (runc allows it).
        cg.kill_all(sig)
        return
    if status not in (Status.CREATED, Status.RUNNING, Status.PAUSED):
        raise InvalidStatus(cid, status, "kill", "container not running")
    if not c.signal(sig):
        raise InvalidStatus(cid, Status.STOPPED, "kill", "container not running")


def delete(store: StateStore, cid: str, force: bool = False) -> None:
    if not store.exists(cid):
        if force:
            return
        raise ContainerNotFound(cid)
    lock = store.lock(cid)
    try:
        try:
            c = Container(store, cid)
        except ContainerNotFound:
            if force:  # a stray dir without state: remove it (runc delete --force)
                store.remove(cid)
                return
            raise
        status = c.status()
        # Spec: delete of a non-stopped container is an error. Like runc, crun and youki, a `created`
        # container is killed and deleted without --force: containerd's shim depends on it.
        if status in (Status.RUNNING, Status.PAUSED) and not force:
            raise InvalidStatus(cid, status, "delete",
                                f"cannot delete container {cid} that is not stopped: {status}")
        if status != Status.STOPPED:
            _kill_and_wait(c)
        _destroy(store, c)
    finally:
        os.close(lock)


def _kill_and_wait(c: Container, timeout: float = 10.0) -> None:
    cg = c._cgroup()
    if cg is not None:
        try:
            if cg.frozen():
                cg.thaw()
        except PyociError:
            pass
    c.signal(signal.SIGKILL)
    if cg is not None:
        # Without its own pid namespace the init's death does not take the other processes with it.
        cg.kill_all(signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pids.alive(c.state.pid, c.state.start_time):
        if time.monotonic() > deadline:
            raise PyociError(f"container {c.id!r}: init {c.state.pid} did not die after SIGKILL")
        time.sleep(0.005)


def _destroy(store: StateStore, c: Container) -> None:
    """Remove what create made, then run poststop hooks (their failures are warnings)."""
    spec: dict[str, Any] = {}
    try:
        spec = c.spec()
    except (OSError, ValueError):
        pass
    cg = c._cgroup()
    if cg is not None:
        if cg.pids():  # leftovers of a container without its own pid namespace (runc signalAllProcesses)
            cg.kill_all(signal.SIGKILL)
        cg.destroy()
    if c.state.netdevices:
        from pyoci.linux import net
        net.return_netdevices(c.state.netdevices, None)
    store.remove(c.id)
    if (spec.get("hooks") or {}).get("poststop"):
        from pyoci import hooks
        hooks.run_hooks(spec, "poststop", c.state.oci(Status.STOPPED), warn_only=True)


def list_states(store: StateStore) -> list[dict[str, Any]]:
    out = []
    for cid in store.ids():
        try:
            c = Container(store, cid)
            st = c.state.oci(c.status())
        except PyociError:
            continue
        try:
            uid = os.stat(store.dir(cid)).st_uid
            st["owner"] = _user_name(uid)
        except OSError:
            pass
        out.append(st)
    return out


def _user_name(uid: int) -> str:
    # Read /etc/passwd as data (no NSS); runc prints the name or "#uid".
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2] == str(uid):
                    return parts[0]
    except OSError:
        pass
    return f"#{uid}"


def run(store: StateStore, cid: str, opts: Any, *, detach: bool, keep: bool) -> int:
    """create + start; in the foreground relay signals, wait, delete unless keep; return the exit status."""
    from pyoci import process, tty
    pair = None
    if not detach and not opts.console_socket:
        # process.terminal in the foreground: pyoci is its own console-socket caller (tty.py); the pair is
        # ignored by create when the container has no terminal.
        pair = tty.ConsolePair()
        import dataclasses  # run -t only: kept off the state/kill/delete import path
        opts = dataclasses.replace(opts, console_fd=pair.runtime_end)
    try:
        st = create(store, cid, opts)
        master = pair.receive() if pair else None
        if master is not None:
            tty.adopt(master)
    except BaseException:
        if pair:
            pair.close()
        raise
    if detach:
        start(store, cid)
        return 0
    relay = _SignalRelay(st.pid)
    try:
        start(store, cid)
        if master is not None:
            return tty.relay(master, st.pid)
        return process.wait_status(st.pid)
    finally:
        relay.restore()
        if pair:
            pair.close()
        if not keep:
            try:
                delete(store, cid, force=True)
            except PyociError as exc:
                log.warning("delete after run: %s", exc)


class _SignalRelay:
    """Forward every signal we can catch to the container init (runc's signal handler)."""

    SKIP = {signal.SIGCHLD, signal.SIGWINCH, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP}

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.old: dict[int, Any] = {}
        for sig in signal.valid_signals():
            if sig in self.SKIP or not isinstance(sig, signal.Signals):
                continue
            try:
                self.old[sig] = signal.signal(sig, self._forward)
            except (OSError, ValueError):
                pass

    def _forward(self, signum: int, _frame: Any) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def restore(self) -> None:
        for sig, h in self.old.items():
            try:
                signal.signal(sig, h)
            except (OSError, ValueError):
                pass


def features() -> dict[str, Any]:
    from pyoci import features as feat
    return feat.FEATURES


def dump_state(obj: Any) -> str:
    """json.MarshalIndent(x, "", "  ") as runc prints it (no trailing newline)."""
    return json.dumps(obj, indent=2)
