"""pyoci.config: schema + semantic validation of config.json / process.json / state, load() from a bundle."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pyoci import config
from pyoci.errors import ConfigError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLIENT_CALLS = HERE.parents[2] / "shared" / "reference" / "client-calls"


def _load_cases() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyoci_config_cases", HERE / "fixtures" / "configs" / "cases.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cases = _load_cases()
GOOD = cases.good_configs()
BAD = cases.bad_cases()


def _error(fn: Any, *args: Any) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def _prefix(source: str, path: str) -> str:
    return f"{source}: {path}: " if path else f"{source}: "


# --------------------------------------------------------------------------- good configs

@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_config_passes_schema_and_checks(name: str) -> None:
    cfg = GOOD[name]
    config.check_schema(cfg)
    config.validate(cases.build({"base": name}, drop=config.UNSUPPORTED))


def test_busybox_bundle_config_is_valid() -> None:
    config.validate(json.loads((REPO / "bundles" / "busybox" / "config.json").read_text()))


@pytest.mark.parametrize("name", ["podman-config.json", "containerd-config.json"])
def test_client_configs_are_valid(name: str) -> None:
    path = CLIENT_CALLS / name
    if not path.is_file():
        pytest.skip(f"{path} absent (../shared is not beside the checkout)")
    config.validate(json.loads(path.read_text()))


@pytest.mark.parametrize("name", ["containerd-exec-process.json", "containerd-exec-process-tty.json",
                                  "podman-exec-process-tty.json"])
def test_client_exec_processes_are_valid(name: str) -> None:
    path = CLIENT_CALLS / name
    if not path.is_file():
        pytest.skip(f"{path} absent (../shared is not beside the checkout)")
    config.validate_process(json.loads(path.read_text()))
    assert config.load_process(str(path))["cwd"] == "/"


# --------------------------------------------------------------------------- bad configs

@pytest.mark.parametrize("case", [c for c in BAD if c["kind"] != "looser"], ids=lambda c: c["id"])
def test_bad_config_names_field_and_rule(case: dict[str, Any]) -> None:
    cfg = cases.build(case, drop=config.UNSUPPORTED)
    msg = _error(config.validate, cfg)
    assert msg.startswith(_prefix("config.json", case["path"])), msg
    assert case["match"] in msg, msg
    if case["kind"] == "semantic":
        config.check_schema(cfg)  # the rule is beyond the schema: a check function caught it
    else:
        assert _error(config.check_schema, cfg) == msg


@pytest.mark.parametrize("case", [c for c in BAD if c["kind"] == "looser"], ids=lambda c: c["id"])
def test_looser_than_upstream_is_accepted(case: dict[str, Any]) -> None:
    config.validate(cases.build(case, drop=config.UNSUPPORTED))


def test_error_source_prefix_is_configurable() -> None:
    cfg = cases.build({"base": "minimal", "set": {"process.cwd": "rel"}})
    assert _error(config.validate, cfg, "bundle/config.json").startswith("bundle/config.json: process.cwd: ")


def test_top_level_must_be_an_object() -> None:
    assert _error(config.validate, []) == "config.json: [] is not of type 'object'"


def test_huge_instances_are_shortened_in_messages() -> None:
    cfg = cases.build({"base": "minimal", "set": {"process": list(range(200))}})
    msg = _error(config.validate, cfg)
    assert msg.startswith("config.json: process: [0, 1, 2") and msg.endswith("is not of type 'object'")
    assert len(msg) < 120


# --------------------------------------------------------------------------- unsupported fields

@pytest.mark.parametrize("field", sorted(config.UNSUPPORTED))
def test_unsupported_field_is_rejected_by_name(field: str) -> None:
    full = GOOD["full-linux"]
    assert cases.build({"base": "full-linux"}) is not full
    present = config.fmt_path(field.split(".")) and _has(full, field)
    assert present, f"{field} is in config.UNSUPPORTED but not in fixtures/configs/good/full-linux.json: add it there"
    cfg = cases.build({"base": "full-linux"}, drop=[f for f in config.UNSUPPORTED if f != field])
    msg = _error(config.validate, cfg)
    assert msg.startswith(f"config.json: {field}: not supported by pyoci yet"), msg


def _has(cfg: dict[str, Any], dotted: str) -> bool:
    node: Any = cfg
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            return False
        node = node[k]
    return True


def test_unsupported_table_is_editable() -> None:
    cfg = cases.build({"base": "minimal", "set": {"hostname": "x", "linux.namespaces[1]": {"type": "uts"}}})
    config.validate(cfg)
    config.UNSUPPORTED["hostname"] = ""
    try:
        assert _error(config.validate, cfg) == "config.json: hostname: not supported by pyoci yet"
    finally:
        del config.UNSUPPORTED["hostname"]


# --------------------------------------------------------------------------- load()

def _bundle(tmp_path: Path, cfg: Any, rootfs: bool = True) -> str:
    if rootfs:
        (tmp_path / "rootfs").mkdir()
    text = cfg if isinstance(cfg, (str, bytes)) else json.dumps(cfg)
    (tmp_path / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)
    return str(tmp_path)


def test_load_returns_validated_config(tmp_path: Path) -> None:
    cfg = GOOD["minimal"]
    assert config.load(_bundle(tmp_path, cfg)) == cfg


def test_load_absolute_root_path(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    cfg = cases.build({"base": "minimal", "set": {"root.path": str(tmp_path / "elsewhere")}})
    config.load(_bundle(tmp_path, cfg, rootfs=False))


def test_load_busybox_bundle() -> None:
    bundle = REPO / "bundles" / "busybox"
    if not (bundle / "rootfs").is_dir():
        pytest.skip("busybox rootfs not built (make setup)")
    assert config.load(str(bundle))["root"]["path"] == "rootfs"


def test_load_missing_config_names_path(tmp_path: Path) -> None:
    msg = _error(config.load, str(tmp_path))
    assert msg == f"config.json: cannot read {str(tmp_path / 'config.json')!r}: [Errno 2] No such file or directory"


@pytest.mark.parametrize("text, where", [
    ('{\n  "ociVersion": "1.3.0",\n  "root": {"path": "rootfs",}\n}', "line 3 column 29"),
    ('{"ociVersion": "1.3.0"', "line 1 column 23"),
    ("", "line 1 column 1"),
])
def test_load_bad_json_reports_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    msg = _error(config.load, _bundle(tmp_path, text))
    assert msg.startswith(f"config.json: invalid JSON at {where}: "), msg


def test_load_rejects_nan_and_bad_utf8(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, '{"ociVersion": "1.3.0", "process": {"oomScoreAdj": NaN}}')
    assert _error(config.load, bundle) == "config.json: invalid JSON: NaN is not a JSON value"
    (tmp_path / "config.json").write_bytes(b'{"ociVersion": "1.3.0\xff"}')
    assert _error(config.load, bundle) == "config.json: not valid UTF-8 at byte 21"


def test_load_root_path_must_be_a_directory(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, GOOD["minimal"], rootfs=False)
    msg = _error(config.load, bundle)
    assert msg.startswith("config.json: root.path: 'rootfs' (") and msg.endswith("[Errno 2] No such file or directory")
    (tmp_path / "rootfs").write_text("not a dir")
    assert _error(config.load, bundle).endswith("is not a directory")


def test_load_validates_before_touching_root(tmp_path: Path) -> None:
    cfg = cases.build({"base": "minimal", "set": {"process.user.uid": -1}})
    msg = _error(config.load, _bundle(tmp_path, cfg, rootfs=False))
    assert msg == "config.json: process.user.uid: -1 is less than the minimum of 0"


def test_load_rejects_net_sysctl_in_the_runtimes_netns(tmp_path: Path) -> None:
    cfg = cases.build({"base": "minimal", "set": {
        "linux.namespaces[1]": {"type": "network", "path": "/proc/self/ns/net"},
        "linux.sysctl": {"net.ipv4.ip_forward": "1"}}})
    config.validate(cfg)  # pure validation can't know; load() looks at the host
    msg = _error(config.load, _bundle(tmp_path, cfg))
    assert msg.startswith("config.json: linux.namespaces[1].path: '/proc/self/ns/net' is the runtime's network")


# --------------------------------------------------------------------------- exec --process

def test_validate_process_paths_are_relative_to_the_document() -> None:
    proc = dict(GOOD["minimal"]["process"])
    config.validate_process(proc)
    assert _error(config.validate_process, {**proc, "args": []}) == (
        "process.json: args: must have at least one entry (the program to run)")
    assert _error(config.validate_process, {**proc, "cwd": "x"}, "p.json") == "p.json: cwd: 'x' is not an absolute path"
    assert _error(config.validate_process, {**proc, "user": {"uid": -1, "gid": 0}}) == (
        "process.json: user.uid: -1 is less than the minimum of 0")
    assert _error(config.validate_process, {"args": ["sh"]}) == "process.json: 'cwd' is a required property"
    assert _error(config.validate_process, {**proc, "rlimits": [{"type": "RLIMIT_X", "soft": 1, "hard": 1}]}) == (
        "process.json: rlimits[0].type: 'RLIMIT_X' is not a Linux resource limit")


def test_load_process_file(tmp_path: Path) -> None:
    path = tmp_path / "process.json"
    path.write_text('{"cwd": "/", "args": ["sh"],}')
    assert _error(config.load_process, str(path)).startswith("process.json: invalid JSON at line 1 column 29: ")
    path.write_text('{"cwd": "/", "args": ["sh"]}')
    assert config.load_process(str(path)) == {"cwd": "/", "args": ["sh"]}


# --------------------------------------------------------------------------- state schema

STATE = {"ociVersion": "1.3.0", "id": "c1", "status": "created", "pid": 4422, "bundle": "/containers/redis",
         "annotations": {"myKey": "myValue"}}


@pytest.mark.parametrize("state", [
    STATE,
    {**STATE, "status": "running"},
    {**STATE, "status": "paused"},
    {**STATE, "status": "stopped", "pid": 0},
    {k: v for k, v in STATE.items() if k not in ("pid", "annotations")} | {"status": "stopped"},
    {**STATE, "rootfs": "/containers/redis/rootfs", "created": "2026-12-04T19:34:35.157326796Z", "owner": ""},
])
def test_good_states(state: dict[str, Any]) -> None:
    config.validate_state(state)


@pytest.mark.parametrize("state, msg", [
    ({k: v for k, v in STATE.items() if k != "id"}, "state: 'id' is a required property"),
    ({**STATE, "status": "exploded"}, "state: status: 'exploded' is not one of"),
    ({k: v for k, v in STATE.items() if k != "pid"}, "state: 'pid' is a required property"),
    ({**STATE, "status": "running", "pid": 0}, "state: pid: 0 is less than the minimum of 1"),
    ({**STATE, "bundle": "containers/redis"}, "state: bundle: 'containers/redis' does not match"),
    ({**STATE, "annotations": {"k": 1}}, "state: annotations.k: 1 is not of type 'string'"),
])
def test_bad_states(state: dict[str, Any], msg: str) -> None:
    assert _error(config.validate_state, state).startswith(msg)


def test_state_schema_helper() -> None:
    schema = config.load_state_schema()
    assert "paused" in schema["properties"]["status"]["enum"]


# --------------------------------------------------------------------------- helpers, imports, caching

@pytest.mark.parametrize("parts, text", [
    ([], ""),
    (["mounts", 2, "destination"], "mounts[2].destination"),
    (["linux", "sysctl", "net.ipv4.ip_forward"], 'linux.sysctl["net.ipv4.ip_forward"]'),
    ([0, "x"], "[0].x"),
])
def test_fmt_path(parts: list[str | int], text: str) -> None:
    assert config.fmt_path(parts) == text


def test_namespaces_accessor() -> None:
    cfg = GOOD["userns-idmap"]
    ns = config.namespaces(cfg)
    assert ns["network"] is None and ns["user"] is None and set(ns) >= {"pid", "mount", "uts"}


def test_validator_is_compiled_once() -> None:
    assert config._validator("config") is config._validator("config")


def test_jsonschema_is_imported_only_by_validation() -> None:
    code = (
        "import sys, json\n"
        "import pyoci.config as c\n"
        "assert 'jsonschema' not in sys.modules, 'imported at module load'\n"
        "c.namespaces({}); c.fmt_path(['a'])\n"
        "assert 'jsonschema' not in sys.modules, 'imported by a helper'\n"
        "c.validate(json.loads(sys.argv[1]))\n"
        "assert 'jsonschema' in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code, json.dumps(GOOD["minimal"])], capture_output=True, text=True,
                         check=False, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert res.returncode == 0, res.stderr
