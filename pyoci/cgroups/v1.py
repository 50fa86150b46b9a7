"""cgroup v1 manager (also hybrid hosts: v1 controllers plus a cgroup2 directory for tracking and kill).

Creation copies cpuset.cpus/mems into new cpuset directories (they start empty and a task cannot join an
empty cpuset); memory and memory+swap limits are written in the order the kernel accepts (memsw >= limit).
"""
from __future__ import annotations

import errno
import os
from typing import Any

from pyoci.cgroups.fs import CgroupError
from pyoci.cgroups.manager import Manager


class V1Manager(Manager):
    version = 1

    def create(self) -> None:
        super().create()
        cpuset = self.paths.get("cpuset")
        if cpuset:
            for d in sorted((c for c in self.created if c.startswith(self.mounts["cpuset"] + "/")),
                            key=lambda p: p.count("/")) + [cpuset]:
                self._inherit_cpuset(d)

    def _inherit_cpuset(self, d: str) -> None:
        parent = os.path.dirname(d)
        for f in ("cpuset.cpus", "cpuset.mems"):
            mine = self.fs.read_opt(os.path.join(d, f))
            if mine is not None and not mine.strip():
                value = self.fs.read(os.path.join(parent, f)).strip()
                self.fs.write(os.path.join(d, f), value)

    def _order(self, writes: tuple[Any, ...]) -> list[Any]:
        """memory.limit_in_bytes vs memsw: raise memsw first when it grows past the current limit (runc)."""
        out = list(writes)
        idx = {w.file: i for i, w in enumerate(out) if w.controller == "memory"}
        lim, sw = idx.get("memory.limit_in_bytes"), idx.get("memory.memsw.limit_in_bytes")
        if lim is None or sw is None or sw < lim:
            return out
        cur = self.fs.read_opt(os.path.join(self.paths["memory"], "memory.limit_in_bytes"))
        swap = int(out[sw].value)
        if swap == -1 or (cur is not None and int(cur) < swap):
            out[lim], out[sw] = out[sw], out[lim]
        return out

    def _explain(self, w: Any, d: str, exc: CgroupError) -> str:
        if w.file == "memory.limit_in_bytes" and exc.errno == errno.EBUSY:
            usage = self.fs.read_opt(os.path.join(d, "memory.usage_in_bytes"))
            peak = self.fs.read_opt(os.path.join(d, "memory.max_usage_in_bytes"))
            return (f"unable to set memory limit to {w.value} (current usage: {(usage or '?').strip()}, "
                    f"peak usage: {(peak or '?').strip()}): {exc}")
        if w.file == "memory.limit_in_bytes" and exc.errno == errno.EINVAL:
            memsw = (self.fs.read_opt(os.path.join(d, "memory.memsw.limit_in_bytes")) or "").strip()
            if memsw.isdigit() and int(w.value) > int(memsw):
                return f"{exc} (the memory+swap limit {memsw} is lower: raise memory.swap too)"
        return str(exc)

    def _why_missing(self, w: Any, d: str) -> str:
        if w.version == 2:
            return super()._why_missing(w, d)
        if w.file.startswith("memory.memsw."):
            return " (swap accounting is off: boot with swapaccount=1)"
        if w.file.startswith("blkio.") and "weight" in w.file:
            return " (needs the CFQ or BFQ I/O scheduler)"
        return " (this kernel does not provide it)"

    def memory_usage(self) -> int | None:
        if "memory" not in self.paths:
            return None
        text = self.fs.read_opt(os.path.join(self.paths["memory"], "memory.usage_in_bytes"))
        return int(text) if text and text.strip().isdigit() else None

    def stats(self) -> dict[str, Any]:
        from pyoci.cgroups import stats
        return stats.v1(self.paths, self.fs)
