"""What v1, hybrid and v2 managers share: state, creating and removing directories, joining, writing a plan,
freezing, listing and signalling processes. v1.py and v2.py add creation details, write ordering and stats.

`paths` maps a hierarchy key to the container's directory in it: v1 controllers ("memory", "cpu"), named
hierarchies ("name=systemd"), and "" for the cgroup2 directory (the whole cgroup on v2; on hybrid hosts a
process-tracking directory that also offers cgroup.kill, cgroup.freeze and the controllers enabled there).
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import time
from typing import Any

from pyoci.cgroups.fs import REAL, CgroupError, CgroupFS, describe

log = logging.getLogger(__name__)

FREEZE_TIMEOUT = 5.0
_RMDIR_DELAYS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0)   # ~2.3 s for processes to drain


class Manager:
    version = 0

    def __init__(self, mode: str, paths: dict[str, str], mounts: dict[str, str], *,
                 created: list[str] | None = None, v2_available: frozenset[str] = frozenset(),
                 device_defaults: list[dict[str, Any]] | None = None, fs: CgroupFS = REAL) -> None:
        self.mode, self.paths, self.mounts = mode, dict(paths), dict(mounts)
        self.created: list[str] = list(created or [])
        self.v2_available = v2_available
        self.device_defaults: list[dict[str, Any]] = list(device_defaults or [])  # appended to device rules
        self.fs = fs

    # --- state ------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"version": self.version, "mode": self.mode, "paths": dict(sorted(self.paths.items())),
                "mounts": dict(sorted(self.mounts.items())), "created": list(self.created),
                "v2_available": sorted(self.v2_available), "device_defaults": list(self.device_defaults)}

    @property
    def unified(self) -> str | None:
        return self.paths.get("")

    def dirs(self) -> list[str]:
        """Each distinct container directory (co-mounted controllers share one)."""
        return sorted(set(self.paths.values()))

    def v1_controllers(self) -> frozenset[str]:
        return frozenset(k for k in self.paths if k and not k.startswith("name="))

    # --- create / destroy -------------------------------------------------------------------------
    def _check_fit(self, leaf: str) -> None:
        """runtime.md create: the cgroup MAY be checked and MUST then error when unfit (in use or frozen)."""
        busy = self._procs(leaf, recursive=True)
        if busy:
            raise CgroupError(f"cgroup {leaf!r} already exists and has processes {busy[:5]}: "
                              "is another container using this cgroupsPath?")

    def _mkdirs(self, key: str) -> list[str]:
        """mkdir the container directory of one hierarchy and its missing parents; returns those it made."""
        mount, leaf = self.mounts[key], self.paths[key]
        rel = os.path.relpath(leaf, mount)
        for attempt in range(3):   # a concurrent destroy may remove a shared parent between our mkdirs
            made, cur = [], mount
            try:
                for part in ([] if rel == "." else rel.split("/")):
                    cur = os.path.join(cur, part)
                    try:
                        self.fs.mkdir(cur)
                        made.append(cur)
                    except FileExistsError:
                        if cur == leaf:
                            self._check_fit(leaf)
                return made
            except FileNotFoundError as exc:
                if attempt == 2:
                    raise CgroupError(f"mkdir {cur!r}: {describe(exc)}", exc.errno) from None
                self.created += [d for d in made if d not in self.created]
        return []

    def create(self) -> None:
        for key in sorted(self.paths, key=lambda k: self.paths[k]):
            if any(self.paths[k] == self.paths[key] for k in self.paths if k < key):
                continue   # co-mounted controllers share one directory
            self.created += [d for d in self._mkdirs(key) if d not in self.created]

    def destroy(self) -> None:
        """Remove the container's directories (and sub-cgroups), then parents pyoci made, if empty."""
        leaves = self.dirs()
        for leaf in leaves:
            self._remove_tree(leaf)
        for d in sorted(set(self.created) - set(leaves), key=lambda p: -p.count("/")):
            try:
                self.fs.rmdir(d)
            except OSError:
                pass   # another container's cgroup still lives under it

    def _remove_tree(self, d: str) -> None:
        if not self.fs.isdir(d):
            return
        for sub in self.fs.subdirs(d):
            self._remove_tree(sub)
        for delay in (*_RMDIR_DELAYS, None):
            try:
                self.fs.rmdir(d)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or delay is None:
                    left = self._procs(d, recursive=True)
                    raise CgroupError(f"cannot remove cgroup {d!r}" + (f" (processes {left[:5]} still in it)"
                                      if left else "") + f": {describe(exc)}", exc.errno) from None
                time.sleep(delay)

    # --- processes --------------------------------------------------------------------------------
    def add(self, pid: int) -> None:
        """Move pid (its whole thread group) into every hierarchy's container directory."""
        for d in self.dirs():
            path = os.path.join(d, "cgroup.procs")
            for attempt in range(10):
                try:
                    self.fs.write(path, str(pid))
                    break
                except CgroupError as exc:
                    # EINVAL: the task is still TASK_NEW (just forked); runc retries the same way.
                    if exc.errno != errno.EINVAL or attempt == 9:
                        raise CgroupError(f"cgroup: cannot add pid {pid} to {d!r}: {exc}", exc.errno) from None
                    time.sleep(0.03)

    def _procs(self, d: str, recursive: bool = False) -> list[int]:
        out: list[int] = []
        text = self.fs.read_opt(os.path.join(d, "cgroup.procs"))
        out += [int(x) for x in (text or "").split()]
        if recursive:
            for sub in self.fs.subdirs(d):
                out += self._procs(sub, True)
        return out

    def _tracking_dir(self) -> str | None:
        for key in ("", "freezer", "pids", "devices", "memory"):
            if key in self.paths:
                return self.paths[key]
        return self.dirs()[0] if self.paths else None

    def pids(self) -> list[int]:
        d = self._tracking_dir()
        return sorted(set(self._procs(d, recursive=True))) if d else []

    def kill_all(self, sig: int) -> None:
        """Signal every process in the cgroup: cgroup.kill for SIGKILL on cgroup2, else freeze + signal + thaw."""
        kill_file = os.path.join(self.unified, "cgroup.kill") if self.unified else None
        if sig == signal.SIGKILL and kill_file and self.fs.exists(kill_file):
            self.fs.write(kill_file, "1")
            return
        freezer = self._freezer() is not None
        was_frozen = freezer and self.frozen()
        if freezer and not was_frozen:
            self.freeze()   # nothing can fork or exit between listing and signalling
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if freezer and (not was_frozen or sig == signal.SIGKILL):
                self.thaw()

    # --- freezer ----------------------------------------------------------------------------------
    def _freezer(self) -> tuple[int, str] | None:
        if "freezer" in self.paths:
            return 1, self.paths["freezer"]
        if self.unified and self.fs.exists(os.path.join(self.unified, "cgroup.freeze")):
            return 2, self.unified
        return None

    def _need_freezer(self, op: str) -> tuple[int, str]:
        fz = self._freezer()
        if fz is None:
            raise CgroupError(f"cannot {op}: no freezer (cgroup v1 'freezer' not mounted, no cgroup2 cgroup.freeze)")
        return fz

    def freeze(self) -> None:
        ver, d = self._need_freezer("pause")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        delay, n = 0.001, 0
        while True:
            if ver == 1:
                if n % 50 == 49:   # an occasional thaw/freeze cycle unsticks tasks (runc does the same)
                    self.fs.write(os.path.join(d, "freezer.state"), "THAWED")
                self.fs.write(os.path.join(d, "freezer.state"), "FROZEN")
                done = self.fs.read(os.path.join(d, "freezer.state")).strip() == "FROZEN"
            else:
                if n == 0:
                    self.fs.write(os.path.join(d, "cgroup.freeze"), "1")
                done = "frozen 1" in self.fs.read(os.path.join(d, "cgroup.events"))
            if done:
                return
            if time.monotonic() > deadline:
                self.thaw()
                raise CgroupError(f"cannot pause: cgroup {d!r} did not freeze within {FREEZE_TIMEOUT:.0f}s")
            time.sleep(delay)
            delay, n = min(delay * 2, 0.01), n + 1

    def thaw(self) -> None:
        ver, d = self._need_freezer("resume")
        if ver == 1:
            self.fs.write(os.path.join(d, "freezer.state"), "THAWED")
        else:
            self.fs.write(os.path.join(d, "cgroup.freeze"), "0")

    def frozen(self) -> bool:
        fz = self._freezer()
        if fz is None:
            return False
        ver, d = fz
        text = self.fs.read_opt(os.path.join(d, "freezer.state" if ver == 1 else "cgroup.freeze"))
        return (text or "").strip() in ("FROZEN", "1")

    # --- resources --------------------------------------------------------------------------------
    def apply(self, resources: dict[str, Any]) -> None:
        """Write linux.resources; a value this host cannot apply raises CgroupError naming the field.

        Device rules get device_defaults appended (runc's allow list, see manager_for)."""
        self._apply(resources, update=False)

    def update(self, resources: dict[str, Any]) -> None:
        """Change limits of a live container (runc update): only the fields present are written."""
        self._apply(resources, update=True)

    def _apply(self, resources: dict[str, Any], update: bool) -> None:
        from pyoci.cgroups import resources as planner
        resources = planner.with_devices(resources, self.device_defaults)
        plan = planner.plan(resources, v1=self.v1_controllers(), v2=self.v2_available,
                            cgroup2=self.unified is not None)
        for msg in plan.warnings:
            log.warning("%s", msg)
        if plan.v2_controllers:
            self._enable(plan.v2_controllers)
        if update:
            self._check_before_update(resources)
        for w in self._order(plan.writes):
            self._write(w)
        if plan.devices is not None and self.unified:
            from pyoci.cgroups import bpf
            bpf.apply(self.unified, plan.devices)

    def _order(self, writes: tuple[Any, ...]) -> list[Any]:
        return list(writes)

    def _write(self, w: Any) -> None:
        d = self.paths[w.controller] if w.version == 1 else self.unified
        if d is None:
            raise CgroupError(f"{w.field}: cannot apply: no '{w.controller}' cgroup for this container")
        for file, value in ((w.file, w.value), *w.fallbacks):
            path = os.path.join(d, file)
            if self.fs.exists(path):
                break
        else:
            if w.optional:
                return
            names = " or ".join(repr(f) for f, _ in ((w.file, w.value), *w.fallbacks))
            raise CgroupError(f"{w.field}: cannot apply: {names} does not exist in {d!r}{self._why_missing(w, d)}")
        try:
            self.fs.write(path, value)
        except CgroupError as exc:
            raise CgroupError(f"{w.field}: {self._explain(w, d, exc)}", exc.errno) from None
        if w.verify:
            got = self.fs.read(path).strip()
            if got != value:
                raise CgroupError(f"{w.field}: the kernel set {file} to {got}, not {value} (out of range?)")

    def _why_missing(self, w: Any, d: str) -> str:
        if w.version == 2:
            enabled = set((self.fs.read_opt(os.path.join(d, "cgroup.controllers")) or "").split())
            if w.controller and w.controller not in enabled:
                return f" (the '{w.controller}' controller is not enabled for this cgroup)"
        return " (this kernel does not provide it)"

    def _explain(self, w: Any, d: str, exc: CgroupError) -> str:
        return str(exc)

    def _enable(self, controllers: frozenset[str]) -> None:
        """Enable controllers in cgroup.subtree_control of every parent of the cgroup2 directory."""
        if not self.unified:
            return
        mount = self.mounts[""]
        rel = os.path.relpath(self.unified, mount)
        parts = [] if rel == "." else rel.split("/")
        cur = mount
        for part in parts:
            avail = set((self.fs.read_opt(os.path.join(cur, "cgroup.controllers")) or "").split())
            have = set((self.fs.read_opt(os.path.join(cur, "cgroup.subtree_control")) or "").split())
            for c in sorted((controllers & avail) - have):
                try:
                    self.fs.write(os.path.join(cur, "cgroup.subtree_control"), "+" + c)
                    log.debug("cgroup: enabled %s in %s", c, cur)
                except CgroupError as exc:   # e.g. EBUSY: processes in a non-root parent
                    log.debug("cgroup: cannot enable %s in %s: %s", c, cur, exc)
            cur = os.path.join(cur, part)

    def _check_before_update(self, resources: dict[str, Any]) -> None:
        mem = (resources or {}).get("memory") or {}
        limit = mem.get("limit")
        if not mem.get("checkBeforeUpdate") or not isinstance(limit, int) or limit <= 0:
            return
        usage = self.memory_usage()
        if usage is not None and limit < usage:
            raise CgroupError(f"linux.resources.memory.limit: {limit} is below the current usage {usage} "
                              "(memory.checkBeforeUpdate)")

    def memory_usage(self) -> int | None:
        return None

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError
