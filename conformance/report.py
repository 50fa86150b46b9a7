"""Text report: the scenario × runtime table, details for failures (problems, diffs), and the summary line."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

from conformance.runner import ERROR, FAIL, NA, PASS, SKIP, SUBJECT, ScenarioResult

MAX_DIFF_LINES = 40


def table(results: Sequence[ScenarioResult], runtimes: Sequence[str]) -> list[str]:
    width = max([len("scenario"), *(len(r.scenario.name) for r in results)]) + 2
    lines = ["scenario".ljust(width) + "".join(n.ljust(8) for n in runtimes)]
    for r in results:
        cells = [r.outcomes[n].verdict if n in r.outcomes else "-" for n in runtimes]
        lines.append(r.scenario.name.ljust(width) + "".join(c.ljust(8) for c in cells))
    return lines


def details(results: Sequence[ScenarioResult], subject: str, verbose: bool = False) -> list[str]:
    """For each scenario with a failure or a divergence: problems per runtime, deviating runtimes, diffs."""
    out: list[str] = []
    for r in results:
        bad = {n: o for n, o in r.outcomes.items() if o.verdict in (FAIL, ERROR)}
        diffs = r.differences(subject)
        mine = r.outcomes.get(subject)
        show_diffs = diffs and (verbose or (mine is not None and mine.verdict in (FAIL, ERROR)))
        if not bad and not show_diffs:
            continue
        out.append("")
        out.append(f"== {r.scenario.name}  ({r.scenario.spec})")
        for name, o in bad.items():
            role = "spec deviation by reference runtime" if name != subject else "subject"
            out.append(f"  {name}: {o.verdict} [{role}]")
            out += [f"    - {p}" for p in o.problems]
            if verbose or name == subject:
                out += [f"    $ {t}" for t in o.transcript[-6:]]
        if show_diffs:
            for ref, lines in diffs.items():
                out.append(f"  diff {subject} vs {ref} ({len(lines)} lines):")
                shown = lines if verbose else lines[:MAX_DIFF_LINES]
                out += [f"    {ln}" for ln in shown]
                if len(shown) < len(lines):
                    out.append(f"    ... {len(lines) - len(shown)} more (use -v)")
    return out


def counts(results: Sequence[ScenarioResult], subject: str) -> tuple[int, int, int]:
    passed = failed = skipped = 0
    for r in results:
        o = r.outcomes.get(subject)
        verdict = o.verdict if o else NA
        if verdict == PASS:
            passed += 1
        elif verdict == SKIP:
            skipped += 1
        else:  # fail, error, n/a: the subject did not pass
            failed += 1
    return passed, failed, skipped


def summary_line(results: Sequence[ScenarioResult], subject: str) -> str:
    passed, failed, skipped = counts(results, subject)
    line = f"{passed} passed, {failed} failed"
    return line + (f", {skipped} skipped" if skipped else "")


def print_report(results: Sequence[ScenarioResult], runtimes: Sequence[str], stream: TextIO,
                 verbose: bool = False) -> str:
    subject = SUBJECT if SUBJECT in runtimes else runtimes[0]
    for line in table(results, runtimes):
        print(line, file=stream)
    for line in details(results, subject, verbose):
        print(line, file=stream)
    print("", file=stream)
    for name in runtimes:
        if name != subject:
            p, f, s = counts(results, name)
            print(f"({name}: {p} passed, {f} failed{f', {s} skipped' if s else ''})", file=stream)
    line = summary_line(results, subject)
    print(line, file=stream)
    return line


def to_json(results: Sequence[ScenarioResult]) -> str:
    return json.dumps([{
        "scenario": r.scenario.name,
        "spec": r.scenario.spec,
        "outcomes": {n: {"verdict": o.verdict, "problems": o.problems, "seconds": round(o.seconds, 3),
                         "facts": o.facts, "transcript": o.transcript} for n, o in r.outcomes.items()},
    } for r in results], indent=1)


__all__ = ["table", "details", "summary_line", "print_report", "to_json", "counts", "SKIP"]
