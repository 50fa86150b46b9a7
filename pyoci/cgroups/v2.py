"""cgroup v2 (unified) manager: one directory; controllers enabled in every parent's cgroup.subtree_control.

Like runc, create enables every controller the parents offer, so limits and stats work without a later
step; a parent that holds processes cannot enable domain controllers (no-internal-process rule), and the
apply of a limit then fails naming the missing file.
"""
from __future__ import annotations

import os
from typing import Any

from pyoci.cgroups.manager import Manager


class V2Manager(Manager):
    version = 2

    def create(self) -> None:
        super().create()
        self._enable(self.v2_available)

    def memory_usage(self) -> int | None:
        text = self.fs.read_opt(os.path.join(self.paths[""], "memory.current"))
        return int(text) if text and text.strip().isdigit() else None

    def stats(self) -> dict[str, Any]:
        from pyoci.cgroups import stats
        return stats.v2(self.paths[""], self.fs)
