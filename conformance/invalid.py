"""Configs the spec says a runtime MUST reject: `create` fails and leaves no container behind
(config.md "Valid values", spec-features.md §6)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conformance.core import Facts, Run, Scenario


def _drive(run: Run) -> Facts:
    ctr, res = run.create(run.config(["true"]), keep_stdin=False)
    f: Facts = {"create.rc": "0" if res.ok else "nonzero"}
    f["state.rc"] = "0" if run.verb("state", ctr.cid).ok else "nonzero"
    f["message"] = run.norm((res.err.strip().splitlines() or [""])[-1])[:300]
    return f


def _check(f: Facts) -> list[str]:
    out = []
    if f.get("create.rc") != "nonzero":
        out.append("create succeeded")
    if f.get("state.rc") != "nonzero":
        out.append("a container exists after the failed create")
    return out


def _invalid(name: str, spec: str, edit: Callable[[dict[str, Any], Run], None], fast: bool = False) -> Scenario:
    return Scenario(f"invalid.{name}", spec, _check, edit=edit, drive=_drive,
                    facts=("create.rc", "state.rc"), fast=fast)


must_reject = _invalid  # public name for scenario lists elsewhere


def _dup_ns(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["namespaces"].append({"type": "pid"})


def _dup_rlimit(cfg: dict[str, Any], run: Run) -> None:
    cfg["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512})


def _bad_rlimit(cfg: dict[str, Any], run: Run) -> None:
    cfg["process"]["rlimits"].append({"type": "RLIMIT_CONFORMANCE", "soft": 1, "hard": 1})


def _maps_no_userns(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _ns_wrong_type(cfg: dict[str, Any], run: Run) -> None:
    for ns in cfg["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = "/proc/self/ns/uts"


SCENARIOS: list[Scenario] = [
    _invalid("namespace-duplicate", "config-linux.md#namespaces: duplicate type MUST error", _dup_ns, fast=True),
    _invalid("namespace-path-wrong-type", "config-linux.md#namespaces: path of another type MUST error",
             _ns_wrong_type),
    _invalid("rlimit-duplicate", "config.md#posix-process: duplicate rlimits type MUST error", _dup_rlimit),
    _invalid("rlimit-unknown", "config.md#posix-process: unmappable rlimit type MUST error", _bad_rlimit),
    _invalid("mappings-without-userns", "config-linux.md#user-namespace-mappings: mappings need a user ns",
             _maps_no_userns),
    _invalid("cwd-relative", "config.md#process: cwd MUST be absolute",
             lambda c, r: c["process"].update(cwd="home")),
    _invalid("args-empty", "config.md#process: args REQUIRED (at least one entry)",
             lambda c, r: c["process"].update(args=[])),
]
