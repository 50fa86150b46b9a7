"""Conformance scenarios for loopback and linux.netDevices, as data for the differential suite (conformance/),
plus a test that runs them under pyoci, runc and crun inside a network namespace this test creates.

NET_SCENARIOS uses conformance.core.Scenario and can be appended to conformance.scenarios.SCENARIOS as is.
The netDevices scenarios create a veth pair in the *runtime's* network namespace (that is where netDevices come
from), so they skip themselves when the runtime namespace is the host's initial one: run them as
`unshare --net python -m conformance -k net.` or through the test below, never in the host's namespace.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance.core import Facts, Run, RunError, Scenario, drive_probe
from conformance.scenarios import both, eq

ADDRS = "inet 10.98.0.1/24\ninet6 fd98::1/64"


def _in_initial_netns() -> str | None:
    try:
        if os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino:
            return ("needs a network namespace of its own for the runtime (creates a veth there): "
                    "run under `unshare --net`")
    except OSError:
        pass
    return None


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=check)


def _has_link(name: str) -> str:
    """'yes' when the runtime namespace has a link called `name` ("N: name@peer: ..." or "N: name: ...")."""
    names = [line.split(": ")[1].split("@")[0] for line in _sh("ip", "-o", "link").stdout.splitlines()
             if ": " in line]
    return "yes" if name in names else "no"


@contextlib.contextmanager
def host_netdev(run: Run) -> Iterator[None]:
    """A veth pair in the runtime namespace: the end to move carries 10.98.0.1/24 + fd98::1/64 and is up."""
    name = f"cnf{run.tag[:6]}"
    _sh("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    try:
        for cmd in (["ip", "addr", "add", "10.98.0.1/24", "dev", name],
                    ["ip", "addr", "add", "fd98::1/64", "dev", name, "nodad"],
                    ["ip", "link", "set", name, "up"], ["ip", "link", "set", name + "p", "up"]):
            _sh(*cmd)
        run.values["netdev"] = name
        run.norm.add(name, "<dev>")
        yield
    finally:
        for dev in (name, name + "p"):  # whatever is left: moved back, never moved, or already destroyed
            _sh("ip", "link", "del", dev, check=False)


def _netdev_edit(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["netDevices"] = {run.values["netdev"]: {"name": "ctr0"}}


def _netdev_during(run: Run, pid: int) -> Facts:
    return {"during.runtime-ns-has-dev": _has_link(run.values["netdev"])}


def _drive_netdev(run: Run) -> Facts:
    facts = drive_probe(run)
    # Not judged (the spec leaves the device to the namespace's fate; pyoci gives it back): recorded for the diff.
    facts["after-delete.runtime-ns-has-dev"] = _has_link(run.values["netdev"])
    return facts


def _drive_missing_netdev(run: Run) -> Facts:
    cfg = run.config(["true"])
    cfg["linux"]["netDevices"] = {"nosuchdev0": {"name": "ctr0"}}
    ctr, res = run.create(cfg, keep_stdin=False)
    facts: Facts = {"create.rc": "0" if res.ok else "nonzero",
                    "error-names-device": "yes" if "nosuchdev0" in res.err else "no"}
    if res.ok:
        run.verb("delete", "--force", ctr.cid)
    facts["state-dir-left"] = "yes" if (run.runtime.root / ctr.cid).exists() else "no"
    return facts


PROBE_LO = ("echo @@lo.flags; ip -o link show lo | sed -n 's/.*<\\([^>]*\\)>.*/\\1/p'\n"
            "echo @@lo.addrs; ip addr show dev lo | grep -o 'inet6\\? [^ ]*'\n")
PROBE_NETDEV = ("echo @@netdev.addrs; ip addr show dev ctr0 | grep -o 'inet6\\? [^ ]*' | grep -v ' fe80'\n"
                "echo @@netdev.up; ip -o link show ctr0 | grep -q '[<,]UP[,>]' && echo up || echo down\n")

NET_SCENARIOS: list[Scenario] = [
    Scenario(
        "net.lo.up", "config-linux.md#namespaces (network): a new network namespace has lo up "
                     "(runc and crun set it up; what a container expects of 127.0.0.1)",
        both(lambda f: [] if "UP" in f.get("in.lo.flags", "").split(",")
             else [f"in.lo.flags: lo is not up ({f.get('in.lo.flags', '<absent>')!r})"],
             eq("in.lo.addrs", "inet 127.0.0.1/8\ninet6 ::1/128")),
        probe=PROBE_LO, facts=("in.lo.",), fast=True),
    Scenario(
        "net.netDevices.move", "config-linux.md#network-devices: the device is moved, renamed, up, with its "
                               "permanent global addresses",
        both(eq("in.netdev.addrs", ADDRS), eq("in.netdev.up", "up"), eq("during.runtime-ns-has-dev", "no")),
        setup=host_netdev, edit=_netdev_edit, during=_netdev_during, probe=PROBE_NETDEV,
        drive=_drive_netdev, skip=_in_initial_netns,
        facts=("in.netdev.", "during.", "after-delete.")),
    Scenario(
        "net.netDevices.missing", "config-linux.md#network-devices: a device that cannot be moved (here: "
                                  "missing) MUST be an error; create leaves nothing behind",
        both(eq("create.rc", "nonzero"), eq("error-names-device", "yes"), eq("state-dir-left", "no")),
        drive=_drive_missing_netdev, skip=_in_initial_netns, facts=("create.", "error-", "state-")),
]


# --------------------------------------------------------------------------------------------------------
# the differential run, inside a network namespace of our own

def _run_in_netns(path: str) -> dict[str, dict[str, Any]]:
    from conformance.runner import Session
    out: dict[str, dict[str, Any]] = {}
    with Session() as session:
        for scn in NET_SCENARIOS:
            result = session.run(scn)
            out[scn.name] = {n: (o.verdict, o.problems, {k: v for k, v in o.facts.items()
                                                          if not scn.facts or k.startswith(scn.facts)})
                             for n, o in result.outcomes.items()}
    return out


def _call_in(path: str) -> dict[str, dict[str, Any]]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            from pyoci.linux import libc
            libc.setns(os.open(path, os.O_RDONLY), libc.CLONE_NEWNET)
            try:
                payload: Any = ("ok", _run_in_netns(path))
            except BaseException as exc:  # noqa: BLE001
                payload = ("err", repr(exc))
            with os.fdopen(w, "wb") as f:
                f.write(pickle.dumps(payload))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "err":
        raise RunError(value)
    return value


@pytest.mark.root
def test_net_scenarios_pyoci_meets_the_spec(capsys: Any) -> None:
    name = f"pyoci-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        results = _call_in(f"/run/netns/{name}")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    with capsys.disabled():
        for scn, outcomes in results.items():
            print(f"\n  {scn}: " + " ".join(f"{rt}={v[0]}" for rt, v in outcomes.items()))
    failures = {scn: o["pyoci"] for scn, o in results.items() if o.get("pyoci", ("n/a",))[0] != "pass"}
    assert not failures, failures
