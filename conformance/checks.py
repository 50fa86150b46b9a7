"""Check helpers for scenarios: each returns a function facts -> [problems] (empty = the spec is met)."""
from __future__ import annotations

from collections.abc import Callable

from conformance import observe
from conformance.core import Facts

Check = Callable[[Facts], list[str]]


def eq(key: str, want: str) -> Check:
    def check(f: Facts) -> list[str]:
        got = f.get(key, "<absent>")
        return [] if got == want else [f"{key}: expected {want!r}, got {got!r}"]
    return check


def both(*checks: Check) -> Check:
    def check(f: Facts) -> list[str]:
        return [p for c in checks for p in c(f)]
    return check


def mount_has(point: str, key: str = "host.running.mounts", fstype: str | None = None,
              opts: tuple[str, ...] = (), super_opts: tuple[str, ...] = (),
              propagation: tuple[str, ...] = (), absent_opts: tuple[str, ...] = ()) -> Check:
    """The top-most mount at `point` has the fs type, per-mount options, super options and propagation."""
    def check(f: Facts) -> list[str]:
        row = observe.mount_rows(f, key).get(point)
        if row is None:
            return [f"{key}: no mount at {point}"]
        out = []
        if fstype and row.fstype != fstype:
            out.append(f"{key} {point}: fs type {row.fstype!r}, expected {fstype!r}")
        for name, want, have in (("option", opts, row.opts), ("super option", super_opts, row.super_opts),
                                 ("propagation", propagation, row.propagation)):
            missing = [w for w in want if w not in have]
            if missing:
                out.append(f"{key} {point}: {name} {','.join(missing)} missing (has {','.join(sorted(have))})")
        bad = [o for o in absent_opts if o in row.opts]
        if bad:
            out.append(f"{key} {point}: unexpected option {','.join(bad)}")
        return out
    return check


def ns_is(ns: str, want: str) -> Check:
    return eq(f"host.running.ns.{ns}", want)


def contains(key: str, needle: str) -> Check:
    def check(f: Facts) -> list[str]:
        got = f.get(key, "<absent>")
        return [] if needle in got else [f"{key}: expected to contain {needle!r}, got {got!r}"]
    return check


def every_line(key: str, predicate: Callable[[str], bool], what: str) -> Check:
    def check(f: Facts) -> list[str]:
        lines = f.get(key, "").splitlines()
        bad = [ln for ln in lines if not predicate(ln)]
        if not lines:
            return [f"{key}: empty"]
        return [f"{key}: {what}: {ln!r}" for ln in bad]
    return check
