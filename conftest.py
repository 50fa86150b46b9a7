"""Rules for every test directory (tests/, conformance/): root-only tests are marked @pytest.mark.root. They
skip without root; under CI=true (as root) a skipped root test counts as a failure, because CI must exercise
them. Exempt: xfails (e.g. runc/crun found unsafe, recorded) and skips whose reason starts with "host:" (this
machine cannot do it, for every runtime alike) or "n/a:" (the case does not apply)."""
from __future__ import annotations

import os
from typing import Any

import pytest

IN_CI = os.environ.get("CI") == "true"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") and not IN_CI:  # under CI they run (and fail) instead
            item.add_marker(pytest.mark.skip(reason="needs root"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    rep = outcome.get_result()
    if IN_CI and rep.skipped and item.get_closest_marker("root") and rep.when in ("setup", "call") \
            and not hasattr(rep, "wasxfail") and not _allowed_skip(rep):
        rep.outcome = "failed"
        rep.longrepr = f"root test skipped under CI=true: {rep.longrepr}"


def _allowed_skip(rep: Any) -> bool:
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    return reason.removeprefix("Skipped: ").startswith(("host:", "n/a:"))
