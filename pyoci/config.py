"""Load and validate a bundle's config.json: our JSON Schema (schemas/) then the semantic checks (config_checks).

jsonschema is imported inside the validating functions only: `state`, `kill`, `list` never pay for it.
Every error is one ConfigError line: "<source>: <json path>: <what is wrong>".
"""
from __future__ import annotations

import json
import logging
import os
import stat
from functools import cache
from typing import Any, NoReturn

from pyoci import config_checks as _cc
from pyoci.config_checks import fmt_path, get, namespaces, sysctl_dots
from pyoci.errors import ConfigError

__all__ = ["UNSUPPORTED", "check_schema", "fmt_path", "load", "load_config_schema", "load_process",
           "load_state_schema", "namespaces", "parse", "validate", "validate_process", "validate_state"]

log = logging.getLogger(__name__)

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "schemas")

# Dotted config fields pyoci does not implement yet → why. Present in a config ⇒ ConfigError
# (config.md "Valid values": runtimes MUST generate an error for unsupported values).
# Teams remove their entry when the feature lands (and add one for anything they leave out).
UNSUPPORTED: dict[str, str] = {
    "linux.intelRdt": "no resctrl support",
    "linux.memoryPolicy": "set_mempolicy is not wired in",
}


# --------------------------------------------------------------------------- reading

def parse(data: bytes, source: str) -> Any:
    """Decode UTF-8 JSON; errors name line and column. Raises: ConfigError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not valid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:  # from _reject_constant
        raise ConfigError(f"{source}: invalid JSON: {exc}") from None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")  # Python's json would accept NaN/Infinity


def _read(path: str, source: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {path!r}: [Errno {exc.errno}] {exc.strerror}") from None
    return parse(data, source)


def load(bundle: str) -> dict[str, Any]:
    """Read <bundle>/config.json, validate it, and run the checks that need the bundle or host.

    Raises: ConfigError.
    """
    cfg = _read(os.path.join(bundle, "config.json"), "config.json")
    validate(cfg)
    _check_root_dir(cfg, bundle)
    _check_host_netns(cfg)
    return cfg  # type: ignore[no-any-return]


def load_process(path: str) -> dict[str, Any]:
    """Read and validate an `exec --process <path>` file. Raises: ConfigError."""
    source = os.path.basename(path) or path
    proc = _read(path, source)
    validate_process(proc, source)
    return proc  # type: ignore[no-any-return]


def _check_root_dir(cfg: dict[str, Any], bundle: str) -> None:
    # config.md#root: "A directory MUST exist at the path declared by the field"; relative = to the bundle.
    path = cfg["root"]["path"]
    full = os.path.join(bundle, path)
    try:
        st = os.stat(full)
    except OSError as exc:
        raise ConfigError(f"config.json: root.path: {path!r} ({full!r}): [Errno {exc.errno}] {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"config.json: root.path: {path!r} ({full!r}) is not a directory")


def _check_host_netns(cfg: dict[str, Any]) -> None:
    # runc validator.go sysctl(): net.* sysctls in a joined netns that is the runtime's own would change the host.
    if not any(sysctl_dots(k).startswith("net.") for k in get(cfg, "linux", "sysctl", default={})):
        return
    for i, ns in enumerate(get(cfg, "linux", "namespaces", default=[])):
        if ns["type"] == "network" and ns.get("path"):
            try:
                a, b = os.stat(ns["path"]), os.stat("/proc/self/ns/net")
            except OSError:
                return  # the namespace step reports a bad path
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                raise ConfigError(f"config.json: linux.namespaces[{i}].path: {ns['path']!r} is the runtime's "
                                  "network namespace: net.* sysctls are not allowed there")


# --------------------------------------------------------------------------- schema

def _load_schema(name: str) -> dict[str, Any]:
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def load_config_schema() -> dict[str, Any]:
    return _load_schema("config-schema.json")


def load_state_schema() -> dict[str, Any]:
    return _load_schema("state-schema.json")


@cache
def _validator(kind: str) -> Any:
    """Compiled validator for 'config', 'process' (the config schema's Process) or 'state'."""
    from jsonschema import Draft202012Validator, validators

    # Integers are integers: 1.0 is not a uid (draft-04 semantics, which the upstream schema has too).
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool))
    cls = validators.extend(Draft202012Validator, type_checker=checker)
    if kind == "state":
        return cls(load_state_schema())
    schema = load_config_schema()
    if kind == "process":
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/Process"}
    return cls(schema)


def _schema_check(kind: str, doc: Any, source: str) -> None:
    from jsonschema.exceptions import best_match

    err = best_match(_validator(kind).iter_errors(doc))
    if err is None:
        return
    msg, inst = err.message, repr(err.instance)
    if len(inst) > 60 and msg.startswith(inst):  # keep a whole object out of the one line
        msg = inst[:40] + "…" + inst[-1] + msg[len(inst):]
    path = fmt_path(err.absolute_path)
    raise ConfigError(f"{source}: {path}: {msg}" if path else f"{source}: {msg}")


def check_schema(cfg: Any, source: str = "config.json") -> None:
    """JSON Schema only, no semantic checks. Raises: ConfigError."""
    _schema_check("config", cfg, source)


def validate_state(state: Any, source: str = "state") -> None:
    """Check a state document against schemas/state-schema.json. Raises: ConfigError."""
    _schema_check("state", state, source)


# --------------------------------------------------------------------------- validation

def _check_unsupported(cfg: dict[str, Any]) -> None:
    for field, why in UNSUPPORTED.items():
        if get(cfg, *field.split(".")) is not None:
            _cc.fail(field, f"not supported by pyoci yet ({why})" if why else "not supported by pyoci yet")


def validate(cfg: Any, source: str = "config.json") -> None:
    """Schema, then every semantic check (first failure wins). Raises: ConfigError."""
    _schema_check("config", cfg, source)
    checks = [_cc.CHECKS[0], _check_unsupported, *_cc.CHECKS[1:]]  # ociVersion, unsupported, the rest
    try:
        for check in checks:
            check(cfg)
    except _cc.Invalid as exc:
        raise ConfigError(f"{source}: {exc.path}: {exc.msg}") from None


def validate_process(proc: Any, source: str = "process.json") -> None:
    """Validate an `exec --process` document: the schema's Process plus the process checks. Raises: ConfigError."""
    _schema_check("process", proc, source)
    try:
        for check in _cc.PROCESS_CHECKS:
            check(proc, "")
    except _cc.Invalid as exc:
        raise ConfigError(f"{source}: {exc.path}: {exc.msg}" if exc.path else f"{source}: {exc.msg}") from None
