"""The process-confinement scenarios (confine_scenarios.py) under pyoci, runc and crun with conformance/'s
driver: pyoci must meet the spec's expectation; the references' verdicts are recorded in the summary
(`-rA` shows them) and written to $CONFINE_REPORT when set."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from confine_scenarios import SCENARIOS
from conformance import report
from conformance.runner import ERROR, FAIL, NA, SKIP, SUBJECT, Session

pytestmark = pytest.mark.root
_RESULTS: list[object] = []


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Session() as s:
        yield s
        out = os.environ.get("CONFINE_REPORT")
        if out:
            rows = {r.scenario.name: {n: {"verdict": o.verdict, "problems": o.problems}
                                      for n, o in r.outcomes.items()} for r in s.results}
            with open(out, "w") as f:
                json.dump(rows, f, indent=1)
        print("\n" + "\n".join(report.table(s.results, [rt.name for rt in s.runtimes])))


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_confine_scenario(name: str, session: Session) -> None:
    scn = next(s for s in SCENARIOS if s.name == name)
    result = session.run(scn)
    mine = result.outcomes[SUBJECT]
    refs = " ".join(f"{n}={o.verdict}" for n, o in result.outcomes.items() if n != SUBJECT)
    if mine.verdict == SKIP:
        pytest.skip("; ".join(mine.problems))
    if mine.verdict in (FAIL, ERROR, NA):
        pytest.fail(f"pyoci {mine.verdict} ({refs})\n" + "\n".join(report.details([result], SUBJECT)), pytrace=False)
