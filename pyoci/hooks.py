"""Run OCI hooks: state JSON on stdin, exactly the hook's env, args as given, timeout.

| hook            | where it runs                                   | status on stdin | on failure (spec 1.3)             |
|-----------------|-------------------------------------------------|-----------------|-----------------------------------|
| prestart        | runtime ns, create, before pivot (deprecated)   | creating        | error: stop container, delete     |
| createRuntime   | runtime ns, create, after prestart              | creating        | error: stop container, delete     |
| createContainer | container ns before pivot, path in runtime ns   | creating        | error: stop container, delete     |
| startContainer  | container ns, start, path in container ns       | created         | error: stop container, delete     |
| poststart       | runtime ns, start, after the user program ran   | running         | error + stop container (1.3 #1262) |
| poststop        | runtime ns, delete, after the container is gone | stopped         | warning; remaining hooks still run |

Hooks in the container namespaces get the pid as the container sees it (runtime.md#state). A failing
createContainer hook reaches create as a HookError (sync "error" with "hook": true), so create's abort runs
poststop. startContainer runs after `create` returned: the init keeps exec.fifo open until execve and writes
"H<error>" into it on failure, so `start` fails, stops and destroys the container and runs poststop. The
same channel makes `start` wait until the program was executed before poststart runs. (runc 1.1 does not
report startContainer failures to `start` at all: its start returns 0 and the container just stops.)

Implemented with fork + execve (no subprocess) so that it is safe in the container-side child, where nothing
may be imported; the hook gets only fds 0 (state), 1 and 2 (a capture pipe).
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import time
from typing import Any

from pyoci.errors import HookError
from pyoci.linux import pids

log = logging.getLogger(__name__)
_MAX_OUT = 1 << 16


def run_hook(hook: dict[str, Any], state: dict[str, Any], phase: str) -> None:
    """Run one hook to completion; raise HookError on non-zero exit, signal, timeout or exec failure."""
    path = hook["path"]
    args = hook.get("args") or [path]
    env = hook.get("env") or []
    timeout = hook.get("timeout")
    data = json.dumps(state).encode()
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # hook child: never returns
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.closerange(3, 65536)
            pids.restore_default_signals()
            envd = dict(e.split("=", 1) for e in env if "=" in e)
            os.execve(path, args, envd)
        except BaseException as exc:  # noqa: BLE001 - report through the pipe, then die
            try:
                os.write(2, f"exec {path!r}: {exc}".encode())
            finally:
                os._exit(127)
    os.close(in_r)
    os.close(out_w)
    try:
        try:
            os.write(in_w, data)  # state JSON is small (< pipe buffer): never blocks
        except BrokenPipeError:
            pass
        os.close(in_w)
        in_w = -1
        out, status = _wait(pid, out_r, timeout, path, phase)
    finally:
        if in_w >= 0:
            os.close(in_w)
        os.close(out_r)
    text = out.decode(errors="replace").strip()
    if os.WIFSIGNALED(status):
        raise HookError(f"{phase} hook {path!r} killed by signal {os.WTERMSIG(status)}"
                        + (f": {text}" if text else ""))
    code = os.WEXITSTATUS(status)
    if code != 0:
        raise HookError(f"{phase} hook {path!r} exited with status {code}" + (f": {text}" if text else ""))


def _wait(pid: int, out_r: int, timeout: int | None, path: str, phase: str) -> tuple[bytes, int]:
    deadline = time.monotonic() + timeout if timeout else None
    out = b""
    poller = select.poll()
    poller.register(out_r, select.POLLIN)
    open_ = True
    while True:
        if not open_:
            wpid, status = os.waitpid(pid, os.WNOHANG)
            if wpid:
                return out, status
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and remaining == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise HookError(f"{phase} hook {path!r} timed out after {timeout}s")
        wait_ms = 50 if not open_ else (None if remaining is None else int(remaining * 1000) + 1)
        events = poller.poll(wait_ms if open_ else min(50, wait_ms or 50))
        for _fd, _ev in events:
            chunk = os.read(out_r, 65536)
            if not chunk:
                poller.unregister(out_r)
                open_ = False
            elif len(out) < _MAX_OUT:
                out += chunk


def run_hooks(spec: dict[str, Any], phase: str, state: dict[str, Any], *, warn_only: bool = False) -> None:
    """Run every hook of a phase in order. warn_only: poststop semantics (log and continue)."""
    for hook in (spec.get("hooks") or {}).get(phase) or []:
        try:
            run_hook(hook, state, phase)
        except (HookError, OSError) as exc:
            if not warn_only:
                raise HookError(str(exc)) from None
            # config.md#posix-platform-hooks: a failing poststop hook MUST only log a warning.
            log.warning("%s", exc)
