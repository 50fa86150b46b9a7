"""pytest glue for the conformance suite: one session (workspace, runtimes) shared by all scenario tests, the
and the scenario × runtime table in the summary."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from conformance import report
from conformance.runner import Session

_RESULTS: list[Any] = []
_RUNTIMES: list[str] = []


@pytest.fixture(scope="session")
def conformance_session() -> Iterator[Session]:
    if os.geteuid() != 0:
        pytest.skip("needs root (real namespaces, mounts, cgroups)")
    with Session() as session:
        _RUNTIMES[:] = [rt.name for rt in session.runtimes]
        yield session
        _RESULTS[:] = session.results


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    tr = terminalreporter
    tr.section("conformance: scenario x runtime (pyoci asserted, references recorded)")
    for line in report.table(_RESULTS, _RUNTIMES):
        tr.write_line(line)
    for name in _RUNTIMES:
        p, f, s = report.counts(_RESULTS, name)
        tr.write_line(f"{name}: {p} passed, {f} failed{f', {s} skipped' if s else ''}")
