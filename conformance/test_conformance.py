"""Every scenario under pyoci, runc and crun; pyoci must meet the spec's expectation (the references are
recorded and shown in the summary table). The fast subset runs by default; CI=true (or CONFORMANCE=full) runs
all of them."""
from __future__ import annotations

import os

import pytest

from conformance import report
from conformance.runner import ERROR, FAIL, NA, SKIP, SUBJECT, Session, select
from conformance.scenarios import by_name

FULL = os.environ.get("CI") == "true" or os.environ.get("CONFORMANCE") == "full"
SELECTED = select(by_name().values(), os.environ.get("CONFORMANCE_K"), fast=not FULL)


@pytest.mark.root
@pytest.mark.parametrize("name", [s.name for s in SELECTED])
def test_scenario(name: str, conformance_session: Session) -> None:
    result = conformance_session.run(by_name()[name])
    mine = result.outcomes.get(SUBJECT)
    assert mine is not None, "pyoci is not among the runtimes"
    if mine.verdict == SKIP:
        pytest.skip("; ".join(mine.problems))
    refs = " ".join(f"{n}={o.verdict}" for n, o in result.outcomes.items() if n != SUBJECT)
    if mine.verdict in (FAIL, ERROR, NA):
        text = "\n".join(report.details([result], SUBJECT))
        pytest.fail(f"pyoci {mine.verdict} ({refs}){text}", pytrace=False)
