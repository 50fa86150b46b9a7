import json
import subprocess
import sys

import pytest

from pyoci.cli import build_parser
from pyoci.linux.pids import parse_signal


@pytest.mark.parametrize("argv,field,value", [
    (["create", "--bundle", "/b", "c1"], "bundle", "/b"),
    (["create", "--bundle=/b", "c1"], "bundle", "/b"),
    (["create", "-bundle", "/b", "c1"], "bundle", "/b"),
    (["create", "-b", "/b", "c1"], "bundle", "/b"),
    (["create", "-pid-file=/p", "c1"], "pid_file", "/p"),
    (["create", "--preserve-fds", "2", "c1"], "preserve_fds", 2),
    (["--root", "/r", "state", "c1"], "root", "/r"),
    (["-root=/r", "state", "c1"], "root", "/r"),
    (["--log-format=json", "--log", "/l", "kill", "c1", "9"], "log_format", "json"),
    (["kill", "--all", "c1", "KILL"], "all", True),
    (["delete", "-f", "c1"], "force", True),
    (["delete", "--force", "c1"], "force", True),
    (["run", "-d", "--keep", "c1"], "detach", True),
])
def test_parse(argv, field, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, field) == value


@pytest.mark.parametrize("text,num", [("9", 9), ("KILL", 9), ("SIGKILL", 9), ("sigterm", 15), ("TERM", 15),
                                      ("hup", 1), ("SIGUSR1", 10)])
def test_parse_signal(text, num):
    assert parse_signal(text) == num


@pytest.mark.parametrize("text", ["0", "999", "SIGBOGUS", "", "-1"])
def test_parse_signal_bad(text):
    with pytest.raises(ValueError):
        parse_signal(text)


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pyoci", *args], capture_output=True, text=True, **kw)


def test_unknown_command_exits_nonzero_with_usage():
    p = run("frobnicate")
    assert p.returncode != 0 and "usage:" in p.stderr


def test_missing_container_one_line(tmp_path):
    p = run("--root", str(tmp_path), "state", "nope")
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "does not exist" in p.stderr and "Traceback" not in p.stderr


def test_json_log_is_one_complete_line(tmp_path):
    log = tmp_path / "log.json"
    p = run("--root", str(tmp_path), "--log", str(log), "--log-format", "json", "kill", "nope", "9")
    assert p.returncode == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"]
    assert "does not exist" in p.stderr  # runc also prints the plain error when the log is a file


def test_version():
    p = run("--version")
    assert p.returncode == 0 and p.stdout.startswith("pyoci version ")


def test_light_commands_do_not_import_heavy_modules(tmp_path):
    code = ("import sys; from pyoci import cli\n"
            "for argv in (['--root', %r, 'state', 'x'], ['--root', %r, 'list'], ['--root', %r, 'delete', '-f', 'x'],"
            " ['--root', %r, 'kill', 'x', '9'], ['--root', %r, 'ps', 'x'], ['--root', %r, 'pause', 'x']):\n"
            "    cli.main(argv)\n"
            "bad = [m for m in ('jsonschema', 'pyroute2', 'seccomp', 'pyseccomp', 'prctl', 'pyoci.network',"
            " 'pyoci.linux.net', 'pyoci.exec_cmd') if m in sys.modules]\n"
            "print('HEAVY', bad)\n") % ((str(tmp_path),) * 6)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in p.stdout, p.stdout + p.stderr


def test_features_json_valid_against_upstream_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path
    shared = Path(__file__).resolve().parents[3] / "shared" / "oci-runtime-spec-schema"
    if not shared.exists():
        pytest.skip("../shared/oci-runtime-spec-schema is absent")
    p = run("features")
    assert p.returncode == 0
    feats = json.loads(p.stdout)
    schema = json.loads((shared / "features-schema.json").read_text())
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4
    reg = Registry()
    for f in shared.glob("*.json"):
        res = Resource.from_contents(json.loads(f.read_text()), default_specification=DRAFT4)
        reg = reg.with_resource(f.name, res)
    jsonschema.Draft4Validator(schema, registry=reg).validate(feats)
    assert feats["ociVersionMax"] == "1.3.0"


def test_spec_writes_and_refuses_overwrite(tmp_path):
    assert run("spec", "--bundle", str(tmp_path)).returncode == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["process"]["args"] == ["sh"] and cfg["root"]["path"] == "rootfs"
    p = run("spec", "--bundle", str(tmp_path))
    assert p.returncode == 1 and "exists" in p.stderr


def test_single_dash_short_flag_is_not_prefix_matched():
    # Python 3.11 argparse would call `-r` ambiguous (-root, -rootless); Go's flag package matches exactly.
    args = build_parser(["update", "-r", "/tmp/res.json", "c1"]).parse_args(["update", "-r", "/tmp/res.json", "c1"])
    assert args.id == "c1"
