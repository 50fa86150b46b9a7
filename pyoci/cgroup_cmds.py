"""CLI commands that work on a container's cgroup: pause, resume, update, ps, events (runc's grammar).

Handlers are thin; the parsing helpers (memory units, durations, update flags → LinuxResources) are pure.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from pyoci.errors import ConfigError, InvalidStatus, PyociError

log = logging.getLogger(__name__)

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_MEM_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)
_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_memory(text: str, flag: str) -> int:
    """go-units RAMInBytes ('512m', '1.5GiB', '1024'), binary multiples; '-1' means unlimited."""
    t = text.strip()
    if t == "-1":
        return -1
    m = _MEM_RE.match(t)
    if not m:
        raise ConfigError(f"{flag}: invalid size {text!r} (e.g. 512m, 1g, -1)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(text: str) -> float:
    """Go time.ParseDuration subset: '5s', '1m30s', '500ms'."""
    t = text.strip()
    parts = _DUR_RE.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise ConfigError(f"--interval: invalid duration {text!r} (e.g. 5s, 500ms, 1m)")
    value = sum(float(n) * _DUR_UNITS[u] for n, u in parts)
    if value <= 0:
        raise ConfigError(f"--interval: {text!r} must be positive")
    return value


# (flag, dest, section, key, kind)
_UPDATE_FLAGS = (
    ("--blkio-weight", "blkio_weight", "blockIO", "weight", int),
    ("--cpu-period", "cpu_period", "cpu", "period", int),
    ("--cpu-quota", "cpu_quota", "cpu", "quota", int),
    ("--cpu-burst", "cpu_burst", "cpu", "burst", int),
    ("--cpu-share", "cpu_share", "cpu", "shares", int),
    ("--cpu-rt-period", "cpu_rt_period", "cpu", "realtimePeriod", int),
    ("--cpu-rt-runtime", "cpu_rt_runtime", "cpu", "realtimeRuntime", int),
    ("--cpuset-cpus", "cpuset_cpus", "cpu", "cpus", str),
    ("--cpuset-mems", "cpuset_mems", "cpu", "mems", str),
    ("--cpu-idle", "cpu_idle", "cpu", "idle", int),
    ("--memory", "memory", "memory", "limit", "mem"),
    ("--memory-reservation", "memory_reservation", "memory", "reservation", "mem"),
    ("--memory-swap", "memory_swap", "memory", "swap", "mem"),
    ("--pids-limit", "pids_limit", "pids", "limit", int),
)


def resources_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """runc update's flags → a partial LinuxResources (only the flags given)."""
    res: dict[str, Any] = {}
    for flag, dest, section, key, kind in _UPDATE_FLAGS:
        v = getattr(args, dest, None)
        if v is None:
            continue
        if kind == "mem":
            v = parse_memory(v, flag)
        elif kind is int:
            try:
                v = int(v)
            except ValueError:
                raise ConfigError(f"{flag}: {v!r} is not an integer") from None
        res.setdefault(section, {})[key] = v
    if getattr(args, "l3_cache_schema", None) or getattr(args, "mem_bw_schema", None):
        raise PyociError("--l3-cache-schema/--mem-bw-schema: intelRdt is not available on this host (no resctrl)")
    return res


def read_resources(path: str) -> dict[str, Any]:
    """--resources FILE|- : a JSON LinuxResources object."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        res = json.loads(text)
    except OSError as exc:
        raise ConfigError(f"--resources {path!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"--resources {path!r}: invalid JSON: {exc}") from None
    if not isinstance(res, dict):
        raise ConfigError(f"--resources {path!r}: must be a JSON object (LinuxResources)")
    return res


def merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New resources over the current ones: objects merge key by key, lists and values replace."""
    out = copy.deepcopy(base)
    for k, v in new.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def for_update(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What to write: the new fields, plus the current memory limit when swap needs it to be converted."""
    out = copy.deepcopy(new)
    mem, cur = out.get("memory") or {}, current.get("memory") or {}
    if "swap" in mem and "limit" not in mem and cur.get("limit") is not None:
        mem["limit"] = cur["limit"]
    return out


# --- handlers -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _container(args: argparse.Namespace, lock: bool = True) -> Iterator[tuple[Any, Any, Any]]:
    """(store, Container, cgroup manager), holding the container's lock when asked."""
    from pyoci import cgroups, lifecycle
    from pyoci.state import StateStore, default_root
    store = StateStore(args.root or default_root())
    fd = store.lock(args.id) if lock else None
    try:
        c = lifecycle.Container(store, args.id)
        if not c.state.cgroup:
            raise PyociError(f"container {args.id!r} has no cgroup")
        yield store, c, cgroups.manager_from_state(c.state.cgroup)
    finally:
        if fd is not None:
            os.close(fd)


def cmd_pause(args: argparse.Namespace) -> int:
    from pyoci.state import Status
    with _container(args) as (_, c, mgr):
        status = c.status()
        if status not in (Status.RUNNING, Status.CREATED):   # runc pauses created containers too
            raise InvalidStatus(args.id, status, "pause", "container not running")
        mgr.freeze()
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from pyoci.state import Status
    with _container(args) as (_, c, mgr):
        status = c.status()
        if status != Status.PAUSED:
            raise InvalidStatus(args.id, status, "resume", "container not paused")
        mgr.thaw()
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from pyoci.state import Status
    new = read_resources(args.resources) if args.resources else resources_from_flags(args)
    if not args.resources and (args.kernel_memory or args.kernel_memory_tcp):
        log.warning("update: --kernel-memory and --kernel-memory-tcp are ignored (deprecated in the kernel)")
    with _container(args) as (store, c, mgr):
        status = c.status()
        if status not in (Status.CREATED, Status.RUNNING, Status.PAUSED):
            raise InvalidStatus(args.id, status, "update", "container not running")
        current = c.state.extra.get("resources")
        if current is None:
            current = (store.load_config(args.id).get("linux") or {}).get("resources") or {}
        mgr.update(for_update(current, new))
        c.state.extra["resources"] = merge(current, new)   # the next update is relative to this
        store.save(c.state)
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    from pyoci.cgroups import pstable
    with _container(args, lock=False) as (_, _, mgr):
        pids = mgr.pids()
    if args.format == "json":
        sys.stdout.write(json.dumps(pids, separators=(",", ":")) + "\n")
        return 0
    if args.ps_args and args.ps_args not in (["-ef"], ["-e", "-f"], ["--", "-ef"]):
        raise PyociError(f"ps: arguments {' '.join(args.ps_args)!r} are not supported (pyoci does not run the "
                         "host's ps): use the default table or --format json")
    sys.stdout.write(pstable.format_table(pstable.read_procs(pids), pstable.users(), pstable.boot_time(),
                                          time.time()))
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from pyoci.state import Status
    interval = parse_duration(args.interval)
    with _container(args, lock=False) as (_, c, mgr):
        if c.status() == Status.STOPPED:
            raise InvalidStatus(args.id, Status.STOPPED, "events", "container not running")
        _emit({"type": "stats", "id": args.id, "data": mgr.stats()})
        if not args.stats:
            _stream(args.id, c, mgr, interval)
    return 0


def _stream(cid: str, c: Any, mgr: Any, interval: float) -> None:
    """Stats every interval and an "oom" event when the OOM-kill counter moves, until the container stops."""
    from pyoci.cgroups import stats as cgstats
    from pyoci.state import Status
    ooms = cgstats.oom_kills(mgr.paths, mgr.fs)
    deadline = time.monotonic() + interval
    while c.status() != Status.STOPPED:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        now = cgstats.oom_kills(mgr.paths, mgr.fs)
        if now > ooms:
            _emit({"type": "oom", "id": cid})
        ooms = now
        if time.monotonic() >= deadline:
            _emit({"type": "stats", "id": cid, "data": mgr.stats()})
            deadline += interval


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def register(sub: Any) -> None:
    """Add pause, resume, update, ps and events to the CLI's subparsers."""
    def flag(p: argparse.ArgumentParser, *names: str, **kw: Any) -> None:
        p.add_argument(*names, *[f"-{n[2:]}" for n in names if n.startswith("--")], **kw)

    for name, fn, text in (("pause", cmd_pause, "suspend all processes of a container"),
                           ("resume", cmd_resume, "resume a paused container")):
        p = sub.add_parser(name, help=text)
        p.add_argument("id")
        p.set_defaults(func=fn)
    u = sub.add_parser("update", help="change the resource limits of a container")
    flag(u, "--resources", "-r", help="JSON LinuxResources file, or - for stdin (other flags are then ignored)")
    for fl, dest, _, _, _ in _UPDATE_FLAGS:
        flag(u, fl, dest=dest)
    for fl in ("--kernel-memory", "--kernel-memory-tcp"):
        flag(u, fl, dest=fl[2:].replace("-", "_"), help=argparse.SUPPRESS)   # accepted and ignored, like runc
    flag(u, "--l3-cache-schema", dest="l3_cache_schema")
    flag(u, "--mem-bw-schema", dest="mem_bw_schema")
    u.add_argument("id")
    u.set_defaults(func=cmd_update)
    ps = sub.add_parser("ps", help="list the processes of a container")
    flag(ps, "--format", "-f", choices=["table", "json"], default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    ps.set_defaults(func=cmd_ps)
    ev = sub.add_parser("events", help="print container stats (and OOM events) as JSON lines")
    flag(ev, "--interval", default="5s", help="stats interval (Go duration, default 5s)")
    flag(ev, "--stats", action="store_true", help="print stats once and exit")
    ev.add_argument("id")
    ev.set_defaults(func=cmd_events)
