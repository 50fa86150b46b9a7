"""Run scenarios under every runtime, judge each against the spec, and compare pyoci with the references."""
from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from conformance.bundle import Workspace
from conformance.core import Facts, Run, RunError, Scenario, SkipScenario, drive_probe
from conformance.runtimes import Runtime, default_specs, make_runtime

log = logging.getLogger(__name__)

SUBJECT = "pyoci"
PASS, FAIL, SKIP, ERROR, NA = "pass", "fail", "skip", "error", "n/a"


@dataclass
class Outcome:
    """One scenario under one runtime."""

    runtime: str
    verdict: str
    problems: list[str] = field(default_factory=list)
    facts: Facts = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ScenarioResult:
    scenario: Scenario
    outcomes: dict[str, Outcome]

    def relevant(self, facts: Facts) -> Facts:
        prefixes = self.scenario.facts
        return {k: v for k, v in facts.items() if not prefixes or k.startswith(prefixes)}

    def differences(self, subject: str = SUBJECT) -> dict[str, list[str]]:
        """{reference runtime: [unified-diff-ish lines]} where the subject's relevant facts differ."""
        mine = self.outcomes.get(subject)
        if mine is None or mine.verdict in (SKIP, NA):
            return {}
        out: dict[str, list[str]] = {}
        for name, other in self.outcomes.items():
            if name == subject or other.verdict in (SKIP, NA, ERROR) or not mine.facts:
                continue
            lines = diff_facts(self.relevant(mine.facts), self.relevant(other.facts), subject, name)
            if lines:
                out[name] = lines
        return out

    def deviating_references(self, subject: str = SUBJECT) -> list[str]:
        return [n for n, o in self.outcomes.items() if n != subject and o.verdict in (FAIL, ERROR)]


def diff_facts(a: Facts, b: Facts, name_a: str, name_b: str) -> list[str]:
    """Per-key differences; multi-line facts (mount tables, env) as -/+ line sets."""
    lines: list[str] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va == vb:
            continue
        if "\n" in va or "\n" in vb:
            la, lb = va.splitlines(), vb.splitlines()
            lines.append(f"{key}:")
            lines += [f"  -{name_a}: {x}" for x in la if x not in lb]
            lines += [f"  +{name_b}: {x}" for x in lb if x not in la]
        else:
            lines.append(f"{key}: {name_a}={va!r} {name_b}={vb!r}")
    return lines


def run_one(scn: Scenario, rt: Runtime, ws: Workspace) -> Outcome:
    """Run one scenario under one runtime; never raises (errors become the verdict)."""
    if rt.missing:
        return Outcome(rt.name, NA, [rt.missing])
    reason = scn.skip() if scn.skip else None
    if reason:
        return Outcome(rt.name, SKIP, [reason])
    run = Run(rt, ws, scn)
    t0 = time.monotonic()
    facts: Facts = {}
    leftovers: list[str] = []
    verdict, problems = PASS, []
    try:
        with (scn.setup or _nothing)(run):
            try:
                facts = (scn.drive or drive_probe)(run)
            finally:
                leftovers = run.cleanup()
    except SkipScenario as exc:
        verdict, problems = SKIP, [str(exc)]
    except RunError as exc:
        verdict, problems = ERROR, [str(exc)]
    except Exception as exc:  # a runner bug must not hide the other results
        tb = traceback.format_exception(exc)
        verdict, problems = ERROR, [f"runner exception: {exc!r}", *"".join(tb[-3:]).splitlines()]
    if verdict == PASS:
        problems = scn.check(facts)
        verdict = FAIL if problems else PASS
    if leftovers and verdict != SKIP:
        problems += [f"left behind: {x}" for x in leftovers]
        verdict = FAIL if verdict == PASS else verdict
    return Outcome(rt.name, verdict, problems, facts, run.transcript, time.monotonic() - t0)


@contextlib.contextmanager
def _nothing(run: Run) -> Iterator[None]:
    yield


class Session:
    """A workspace, the runtimes (each with its own --root inside it) and the results so far."""

    def __init__(self, specs: dict[str, list[str]] | None = None, keep: bool = False) -> None:
        self.ws = Workspace()
        self.keep = keep
        try:
            self.ws.build_rootfs()
            self.runtimes = [make_runtime(n, argv, self.ws.state, self.ws.empty)
                             for n, argv in (specs or default_specs()).items()]
        except BaseException:
            self.close()
            raise
        self.results: list[ScenarioResult] = []

    def run(self, scn: Scenario) -> ScenarioResult:
        outcomes = {rt.name: run_one(scn, rt, self.ws) for rt in self.runtimes}
        # A scenario that cannot run here is skipped for every runtime alike.
        skipped = [o for o in outcomes.values() if o.verdict == SKIP]
        if skipped:
            for name, o in outcomes.items():
                if o.verdict != SKIP and o.verdict != NA:
                    outcomes[name] = Outcome(name, SKIP, skipped[0].problems)
        result = ScenarioResult(scn, outcomes)
        self.results.append(result)
        return result

    def run_all(self, scenarios: Iterable[Scenario]) -> list[ScenarioResult]:
        return [self.run(s) for s in scenarios]

    def close(self) -> None:
        leftovers = list(self.ws.state.glob("*/*")) if self.ws.state.exists() else []
        for p in leftovers:
            log.warning("state left behind: %s", p)
        if not self.keep:
            self.ws.cleanup()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def select(scenarios: Iterable[Scenario], pattern: str | None = None, fast: bool = False) -> list[Scenario]:
    """-k PATTERN (substring; several separated by commas or spaces, any may match) and --fast."""
    out = []
    pats = [p for p in (pattern or "").replace(",", " ").split() if p]
    for s in scenarios:
        if fast and not s.fast:
            continue
        if pats and not any(p in s.name for p in pats):
            continue
        out.append(s)
    return out


__all__ = ["Outcome", "ScenarioResult", "Session", "run_one", "select", "diff_facts", "SUBJECT",
           "PASS", "FAIL", "SKIP", "ERROR", "NA"]
