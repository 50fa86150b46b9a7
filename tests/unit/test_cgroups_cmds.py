"""cgroup_cmds: flag parsing for update/events, resource merging, ps table, CLI registration."""
from __future__ import annotations

import argparse
from typing import Any

import pytest

from pyoci import cgroup_cmds as C
from pyoci.cgroups import pstable
from pyoci.errors import ConfigError, PyociError


@pytest.mark.parametrize("text,n", [("1024", 1024), ("512m", 512 << 20), ("1g", 1 << 30), ("1.5GiB", 3 << 29),
                                    ("64KB", 64 << 10), ("-1", -1), ("10b", 10), ("2T", 2 << 40)])
def test_parse_memory(text: str, n: int) -> None:
    assert C.parse_memory(text, "--memory") == n


@pytest.mark.parametrize("text", ["", "abc", "1x", "-2", "1 g b"])
def test_parse_memory_bad(text: str) -> None:
    with pytest.raises(ConfigError, match="--memory: invalid size"):
        C.parse_memory(text, "--memory")


@pytest.mark.parametrize("text,s", [("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("1h", 3600.0), ("0.25s", 0.25)])
def test_parse_duration(text: str, s: float) -> None:
    assert C.parse_duration(text) == pytest.approx(s)


@pytest.mark.parametrize("text", ["5", "s", "0s", "5x", "1s junk"])
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(ConfigError, match="--interval"):
        C.parse_duration(text)


def parse_update(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    C.register(sub)
    return p.parse_args(["update", *argv])


def test_update_flags_to_resources() -> None:
    args = parse_update("--memory", "256m", "--memory-swap", "-1", "--cpu-share", "512", "--cpu-quota", "-1",
                        "--cpuset-cpus", "0", "--pids-limit", "100", "--blkio-weight", "300", "-cpu-period=50000", "c1")
    assert C.resources_from_flags(args) == {
        "blockIO": {"weight": 300}, "cpu": {"period": 50000, "quota": -1, "shares": 512, "cpus": "0"},
        "memory": {"limit": 256 << 20, "swap": -1}, "pids": {"limit": 100}}
    assert args.id == "c1"


def test_update_flag_errors() -> None:
    with pytest.raises(ConfigError, match="--cpu-share: 'x' is not an integer"):
        C.resources_from_flags(parse_update("--cpu-share", "x", "c1"))
    with pytest.raises(PyociError, match="intelRdt"):
        C.resources_from_flags(parse_update("--l3-cache-schema", "L3:0=f", "c1"))


def test_read_resources(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "r.json"
    f.write_text('{"memory": {"limit": 100}}')
    assert C.read_resources(str(f)) == {"memory": {"limit": 100}}
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO('{"pids": {"limit": 3}}'))
    assert C.read_resources("-") == {"pids": {"limit": 3}}
    f.write_text("[1]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        C.read_resources(str(f))
    with pytest.raises(ConfigError, match="No such file"):
        C.read_resources(str(tmp_path / "missing"))


def test_merge_and_for_update() -> None:
    cur = {"memory": {"limit": 100, "swap": 200}, "devices": [{"allow": False}], "cpu": {"shares": 2}}
    new = {"memory": {"swap": 400}, "cpu": {"quota": 5}}
    assert C.merge(cur, new) == {"memory": {"limit": 100, "swap": 400}, "devices": [{"allow": False}],
                                 "cpu": {"shares": 2, "quota": 5}}
    # only the new fields are written, plus the limit swap needs for the v2 conversion
    assert C.for_update(cur, new) == {"memory": {"swap": 400, "limit": 100}, "cpu": {"quota": 5}}
    assert cur["memory"] == {"limit": 100, "swap": 200}


def test_cli_registers_commands() -> None:
    from pyoci import cli
    p = cli.build_parser()
    a = p.parse_args(["ps", "--format", "json", "c1"])
    assert (a.func, a.format, a.id) == (C.cmd_ps, "json", "c1")
    a = p.parse_args(["events", "--stats", "--interval", "1s", "c1"])
    assert (a.func, a.stats, a.interval) == (C.cmd_events, True, "1s")
    assert p.parse_args(["pause", "c1"]).func == C.cmd_pause and p.parse_args(["resume", "c1"]).func == C.cmd_resume
    assert p.parse_args(["update", "--resources=-", "c1"]).resources == "-"
    assert p.parse_args(["ps", "c1", "-ef"]).ps_args == ["-ef"]


def test_ps_table() -> None:
    procs = [pstable.ProcInfo(42, 1, 0, 0, 100 * pstable.CLK_TCK, 3 * pstable.CLK_TCK, "sh -c sleep 1"),
             pstable.ProcInfo(1234, 42, 1000, 136 << 8 | 2, 100 * pstable.CLK_TCK, 0, "[kworker]")]
    out = pstable.format_table(procs, {0: "root"}, boot_time=1_000_000.0, now=1_000_200.0)
    lines = out.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert lines[1].split()[:4] == ["root", "42", "1", "3"] and lines[1].endswith("00:00:03 sh -c sleep 1")
    assert lines[2].split()[0] == "1000" and "pts/2" in lines[2]
