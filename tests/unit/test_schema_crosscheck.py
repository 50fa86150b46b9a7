"""Our schemas/ against the upstream runtime-spec schema (../shared/oci-runtime-spec-schema), as an independent check.

1. Verdicts: the same good/bad configs get the same verdict from both, except the documented differences
   (fixtures kind "stricter": the spec text marks a field REQUIRED that upstream leaves optional; "looser": runc compat).
2. Structure: every property and enum value upstream defines for Linux exists in ours; ours requires at least what
   upstream requires. A field added upstream and missed here fails (2), not just a fixture.
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pyoci import config
from pyoci.errors import ConfigError

HERE = Path(__file__).resolve().parent
SHARED = Path(__file__).resolve().parents[3] / "shared"
UPSTREAM = SHARED / "oci-runtime-spec-schema"
CLIENT_CALLS = SHARED / "reference" / "client-calls"
REPO = HERE.parents[1]

pytestmark = pytest.mark.skipif(
    not (UPSTREAM / "config-schema.json").is_file(),
    reason=f"upstream runtime-spec schemas not found at {UPSTREAM} (../shared is not beside this checkout)")

# Platforms other than Linux: not in our schema by design.
OTHER_PLATFORMS = {("solaris",), ("windows",), ("vm",), ("zos",), ("freebsd",)}
# Where ours requires more than upstream: the spec text says REQUIRED (see "stricter" fixture cases).
STRICTER_REQUIRED = {
    (): {"root"},
    ("process", "user"): {"uid", "gid"},
    ("process", "ioPriority"): {"priority"},
    ("linux", "personality"): {"domain"},
    ("linux", "memoryPolicy"): {"mode"},
}
# Where ours accepts more enum values than upstream (runc accepts them; moby sends rslave/rshared).
LOOSER_ENUMS = {("linux", "rootfsPropagation"): {"rprivate", "rshared", "rslave", "runbindable"}}


def _load_cases() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyoci_config_cases", HERE / "fixtures" / "configs" / "cases.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cases = _load_cases()


@cache
def _registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    return Registry().with_resources(
        (p.name, Resource.from_contents(json.loads(p.read_text()), default_specification=DRAFT4))
        for p in UPSTREAM.glob("*.json"))


@cache
def _upstream(name: str) -> Any:
    from jsonschema import Draft4Validator

    return Draft4Validator(json.loads((UPSTREAM / name).read_text()), registry=_registry())


def upstream_ok(doc: Any, name: str = "config-schema.json") -> bool:
    return next(iter(_upstream(name).iter_errors(doc)), None) is None


def ours_ok(doc: Any) -> bool:
    try:
        config.check_schema(doc)
    except ConfigError:
        return False
    return True


def ours_state_ok(doc: Any) -> bool:
    try:
        config.validate_state(doc)
    except ConfigError:
        return False
    return True


def _good_docs() -> dict[str, Any]:
    docs: dict[str, Any] = {f"good/{k}": v for k, v in cases.good_configs().items()}
    docs["bundles/busybox"] = json.loads((REPO / "bundles" / "busybox" / "config.json").read_text())
    for name in ("podman-config.json", "containerd-config.json"):
        if (CLIENT_CALLS / name).is_file():
            docs[name] = json.loads((CLIENT_CALLS / name).read_text())
    return docs


GOOD_DOCS = _good_docs() if UPSTREAM.is_dir() else {}


# --------------------------------------------------------------------------- verdicts

@pytest.mark.parametrize("name", sorted(GOOD_DOCS))
def test_good_configs_valid_for_both(name: str) -> None:
    doc = GOOD_DOCS[name]
    assert upstream_ok(doc), [e.message for e in _upstream("config-schema.json").iter_errors(doc)]
    assert ours_ok(doc)


@pytest.mark.parametrize("name", ["podman-config.json", "containerd-config.json"])
def test_client_configs_present_and_fully_valid(name: str) -> None:
    # The configs podman and containerd really sent: both schemas and every pyoci check accept them.
    doc = json.loads((CLIENT_CALLS / name).read_text())
    assert upstream_ok(doc) and ours_ok(doc)
    config.validate(doc)


@pytest.mark.parametrize("name", ["containerd-exec-process.json", "containerd-exec-process-tty.json",
                                  "podman-exec-process-tty.json"])
def test_client_exec_processes_valid_for_both(name: str) -> None:
    proc = json.loads((CLIENT_CALLS / name).read_text())
    assert upstream_ok({"ociVersion": "1.0.2", "process": proc})
    config.validate_process(proc)


EXPECTED = {"schema": (False, False), "stricter": (False, True), "looser": (True, False), "semantic": (True, True)}


@pytest.mark.parametrize("case", cases.bad_cases(), ids=lambda c: c["id"])
def test_bad_config_verdicts(case: dict[str, Any]) -> None:
    doc = cases.build(case)
    assert (ours_ok(doc), upstream_ok(doc)) == EXPECTED[case["kind"]], case.get("why", case["kind"])


STATE = {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 4422, "bundle": "/containers/redis"}


@pytest.mark.parametrize("doc, ours, upstream", [
    (STATE, True, True),
    ({**STATE, "status": "stopped", "pid": 0, "annotations": {"a": "b"}}, True, True),
    ({**STATE, "rootfs": "/containers/redis/rootfs", "created": "2026-01-01T00:00:00Z", "owner": ""}, True, True),
    ({**STATE, "status": "unknown"}, False, False),
    ({**STATE, "pid": -1}, False, False),
    ({k: v for k, v in STATE.items() if k != "bundle"}, False, False),
    ({**STATE, "annotations": {"a": 1}}, False, False),
    # Differences: runc/crun/youki report 'paused'; bundle is an absolute path and pid is REQUIRED while
    # created/running (runtime.md#state) — upstream's schema does not say so.
    ({**STATE, "status": "paused"}, True, False),
    ({**STATE, "bundle": "containers/redis"}, False, True),
    ({k: v for k, v in STATE.items() if k != "pid"}, False, True),
])
def test_state_verdicts(doc: dict[str, Any], ours: bool, upstream: bool) -> None:
    assert (ours_state_ok(doc), upstream_ok(doc, "state-schema.json")) == (ours, upstream)


# --------------------------------------------------------------------------- structure

Path_ = tuple[str, ...]


def _deref(node: dict[str, Any], resolver: Any) -> Iterator[tuple[dict[str, Any], Any]]:
    """node with $ref followed (siblings kept), then each allOf/anyOf/oneOf branch, recursively."""
    while "$ref" in node:
        resolved = resolver.lookup(node["$ref"])
        resolver = resolved.resolver
        node = {**{k: v for k, v in node.items() if k != "$ref"}, **resolved.contents}
    yield node, resolver
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []):
            yield from _deref(sub, resolver)


def _collect(node: dict[str, Any], resolver: Any, path: Path_, out: dict[Path_, dict[str, set[str]]]) -> None:
    for n, r in _deref(node, resolver):
        info = out.setdefault(path, {"required": set(), "enum": set()})
        info["required"] |= set(n.get("required", []))
        info["enum"] |= {str(v) for v in n.get("enum", [])}
        for key, sub in n.get("properties", {}).items():
            _collect(sub, r, (*path, key), out)
        if isinstance(n.get("items"), dict):
            _collect(n["items"], r, (*path, "[]"), out)
        if isinstance(n.get("additionalProperties"), dict):
            _collect(n["additionalProperties"], r, (*path, "*"), out)
        for sub in n.get("patternProperties", {}).values():
            _collect(sub, r, (*path, "*"), out)


@cache
def _shapes() -> tuple[dict[Path_, dict[str, set[str]]], dict[Path_, dict[str, set[str]]]]:
    from referencing import Registry, Resource

    up: dict[Path_, dict[str, set[str]]] = {}
    _collect(json.loads((UPSTREAM / "config-schema.json").read_text()),
             _registry().resolver(base_uri="config-schema.json"), (), up)
    up = {p: v for p, v in up.items() if p[:1] not in {o[:1] for o in OTHER_PLATFORMS}}

    schema = config.load_config_schema()
    reg = Registry().with_resource(schema["$id"], Resource.from_contents(schema))
    ours: dict[Path_, dict[str, set[str]]] = {}
    _collect(schema, reg.resolver(base_uri=schema["$id"]), (), ours)
    return up, ours


def test_every_upstream_field_is_in_our_schema() -> None:
    up, ours = _shapes()
    assert len(up) > 150  # the walk really went through config-linux.json and defs*.json
    assert sorted(set(up) - set(ours)) == []
    assert sorted(set(ours) - set(up)) == []


def test_our_required_fields_cover_upstreams() -> None:
    up, ours = _shapes()
    extra = {}
    for path, info in up.items():
        assert info["required"] <= ours[path]["required"], path
        if ours[path]["required"] - info["required"]:
            extra[path] = ours[path]["required"] - info["required"]
    assert extra == STRICTER_REQUIRED


def test_our_enums_cover_upstreams() -> None:
    up, ours = _shapes()
    extra = {}
    for path, info in up.items():
        assert ours[path]["enum"] >= info["enum"], path
        if info["enum"] and ours[path]["enum"] - info["enum"]:
            extra[path] = ours[path]["enum"] - info["enum"]
    assert extra == LOOSER_ENUMS
