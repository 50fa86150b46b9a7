"""python -m conformance [--runtime NAME=CMD ...] [-k PATTERN] [--fast] [-v] [--json FILE] [--list]"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from conformance import report
from conformance.runner import SUBJECT, Session, select
from conformance.runtimes import default_specs, parse_spec
from conformance.scenarios import by_name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    ap.add_argument("--runtime", action="append", default=[], metavar="NAME=CMD",
                    help="runtime to compare (repeatable; replaces the default pyoci, runc, crun set); "
                         "CMD is split like a shell command, e.g. pyoci='.venv/bin/python -m pyoci'")
    ap.add_argument("-k", dest="pattern", help="only scenarios whose name contains PATTERN (comma = or)")
    ap.add_argument("--fast", action="store_true", help="only the fast subset")
    ap.add_argument("-v", "--verbose", action="store_true", help="all diffs and transcripts")
    ap.add_argument("--json", type=Path, help="also write every outcome with its facts to this file")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (bundles, stdout files)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    scenarios = select(by_name().values(), args.pattern, args.fast)
    if args.list:
        for s in scenarios:
            print(f"{s.name:32} {'fast ' if s.fast else '     '}{s.spec}")
        return 0
    if os.geteuid() != 0:
        print("conformance: needs root (real namespaces, mounts and cgroups)", file=sys.stderr)
        print("0 passed, 0 failed, %d skipped" % len(scenarios))
        return 0
    try:
        specs = dict(parse_spec(s) for s in args.runtime) if args.runtime else default_specs()
    except ValueError as exc:
        ap.error(str(exc))
    with Session(specs, keep=args.keep) as session:
        names = [rt.name for rt in session.runtimes]
        for scn in scenarios:
            result = session.run(scn)
            cells = " ".join(f"{n}={o.verdict}" for n, o in result.outcomes.items())
            print(f"  {scn.name}: {cells}", file=sys.stderr, flush=True)
        if args.keep:
            print(f"workspace kept at {session.ws.path}", file=sys.stderr)
        line = report.print_report(session.results, names, sys.stdout, args.verbose)
        if args.json:
            args.json.write_text(report.to_json(session.results))
    subject = SUBJECT if SUBJECT in names else names[0]
    return 0 if report.counts(session.results, subject)[1] == 0 and line else 1


if __name__ == "__main__":
    sys.exit(main())
