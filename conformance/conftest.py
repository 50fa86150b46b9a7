"""pytest glue for the conformance suite: one session (workspace, runtimes) shared by all scenario tests, the
root/CI rule of tests/conftest.py for this directory, and the scenario × runtime table in the summary."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from conformance import report
from conformance.runner import Session

IN_CI = os.environ.get("CI") == "true"
_RESULTS: list[Any] = []
_RUNTIMES: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    rep = outcome.get_result()
    # Under CI a skip of a privileged test means CI did not exercise it: count it as a failure. Not an
    # xfail (e.g. runc/crun found unsafe, recorded), nor a skip whose reason starts with "host:" (this
    # machine cannot do it, for every runtime alike) or "n/a:" (the case does not apply).
    if IN_CI and rep.skipped and item.get_closest_marker("root") and rep.when in ("setup", "call") \
            and not hasattr(rep, "wasxfail") and not _allowed_skip(rep):
        rep.outcome = "failed"
        rep.longrepr = f"root test skipped under CI=true: {rep.longrepr}"


def _allowed_skip(rep: Any) -> bool:
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    return reason.startswith(("host:", "n/a:"))


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
