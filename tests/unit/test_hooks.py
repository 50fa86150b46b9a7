import json

import pytest

from pyoci.errors import HookError
from pyoci.hooks import run_hook, run_hooks

STATE = {"ociVersion": "1.3.0", "id": "c", "status": "creating", "pid": 1, "bundle": "/b"}


def test_hook_gets_state_args_env(tmp_path):
    out = tmp_path / "out"
    hook = {"path": "/bin/sh", "args": ["myname", "-c", f'cat > {out}.stdin; echo "$0 $1 $FOO" > {out}; env > {out}.env', "zero", "one"],
            "env": ["FOO=bar"]}
    run_hook(hook, STATE, "prestart")
    assert json.loads((tmp_path / "out.stdin").read_text()) == STATE
    assert out.read_text().strip() == "zero one bar"
    env = (tmp_path / "out.env").read_text().split()
    assert "FOO=bar" in env and not any(e.startswith("HOME=") for e in env)


def test_hook_fds_only_stdio(tmp_path):
    out = tmp_path / "fds"
    run_hook({"path": "/bin/sh", "args": ["sh", "-c", f"ls /proc/self/fd > {out}"]}, STATE, "prestart")
    assert sorted(int(x) for x in out.read_text().split()) == [0, 1, 2, 3]  # 3 is ls's own directory fd


def test_hook_failure_and_output():
    with pytest.raises(HookError, match=r"prestart hook '/bin/sh' exited with status 3: boom"):
        run_hook({"path": "/bin/sh", "args": ["sh", "-c", "echo boom >&2; exit 3"]}, STATE, "prestart")


def test_hook_timeout():
    with pytest.raises(HookError, match="timed out after 1s"):
        run_hook({"path": "/bin/sh", "args": ["sh", "-c", "sleep 10"], "timeout": 1}, STATE, "poststart")


def test_missing_hook_binary():
    with pytest.raises(HookError, match="status 127"):
        run_hook({"path": "/nonexistent/hook"}, STATE, "prestart")


def test_poststop_warns_and_continues(tmp_path, caplog):
    marker = tmp_path / "second"
    spec = {"hooks": {"poststop": [{"path": "/bin/false"}, {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]}}
    run_hooks(spec, "poststop", STATE, warn_only=True)
    assert marker.exists()
    assert "poststop hook '/bin/false' exited with status 1" in caplog.text


def test_failing_hook_stops_the_rest(tmp_path):
    marker = tmp_path / "second"
    spec = {"hooks": {"createRuntime": [{"path": "/bin/false"}, {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]}}
    with pytest.raises(HookError):
        run_hooks(spec, "createRuntime", STATE)
    assert not marker.exists()
