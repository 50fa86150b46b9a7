"""The six hooks on real containers (config.md#posix-platform-hooks, runtime.md#lifecycle, spec 1.3).

Every hook is `sh -c SCRIPT <phase>` and records what it saw into files: the state JSON on its stdin, its
environ and argv (/proc/$$), its open fds, its namespaces (/proc/self/ns links) and the order in which the
hooks ran. The namespaces are compared with the test's own (runtime namespace) and the container init's.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import base_config

pytestmark = pytest.mark.root

NS = ("mnt", "pid", "net", "uts", "ipc")
RUNTIME_HOOKS = ("prestart", "createRuntime", "poststart", "poststop")
CONTAINER_HOOKS = ("createContainer", "startContainer")
HOOK_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOOKVAR=only-this"]

# $0 is the phase (sh -c SCRIPT PHASE); @OUT@ is substituted with the output directory as the hook sees it.
# `tr` inherits exactly the environment the hook got (/proc/self: createContainer sees the host's /proc).
SCRIPT = """d=@OUT@; p=$0
cat > $d/$p.stdin
tr '\\0' '\\n' < /proc/self/environ > $d/$p.env
tr '\\0' ' ' < /proc/$$/cmdline > $d/$p.cmdline 2>/dev/null  # host hooks: $$ is a host pid
ls /proc/self/fd > $d/$p.fds
for n in mnt pid net uts ipc; do echo $n $(readlink /proc/self/ns/$n); done > $d/$p.ns
pid=$(sed 's/.*"pid": *\\([0-9]*\\).*/\\1/' $d/$p.stdin)
if [ $p = poststart ]; then tr '\\0' ' ' < /proc/$pid/cmdline > $d/$p.initcmd; fi
echo $p >> $d/order
"""


def hook(phase: str, out: str, *, argv0: str = "sh", extra: str = "", timeout: int | None = 10) -> dict[str, Any]:
    h: dict[str, Any] = {"path": "/bin/sh", "args": [argv0, "-c", SCRIPT.replace("@OUT@", out) + extra, phase],
                         "env": list(HOOK_ENV)}
    if timeout:
        h["timeout"] = timeout
    return h


def failing(phase: str, out: str, code: int = 3) -> dict[str, Any]:
    return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {phase}-failed >> {out}/order; echo boom >&2; exit {code}"]}


def marker(name: str, out: str) -> dict[str, Any]:
    return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {name} >> {out}/order"]}


def with_out_dir(b: Any) -> Path:
    """<tmp>/out on the host, bind-mounted at /out in the container (startContainer runs in there)."""
    out = b.dir.parent / "out"
    out.mkdir(mode=0o777, exist_ok=True)
    out.chmod(0o777)
    b.spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]})
    return out


def phase_dir(phase: str, out: Path) -> str:
    return "/out" if phase == "startContainer" else str(out)


def order(out: Path) -> list[str]:
    p = out / "order"
    return p.read_text().split() if p.exists() else []


def ns_links(pid: int | str) -> dict[str, str]:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NS}


def recorded_ns(out: Path, phase: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in (out / f"{phase}.ns").read_text().splitlines())


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_all_hooks_order_namespaces_state_env_fds(make_bundle):
    b = make_bundle(base_config(["sleep", "60"]))
    out = with_out_dir(b)
    phases = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
    b.spec["hooks"] = {p: [hook(p, phase_dir(p, out), argv0="sh" if p in CONTAINER_HOOKS else f"my-{p}")]
                       for p in phases}
    b.spec["annotations"] = {"org.test": "hooks"}
    b.write()
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    assert order(out) == ["prestart", "createRuntime", "createContainer"]
    init_pid = b.state()["pid"]
    container_ns, runtime_ns = ns_links(init_pid), ns_links("self")
    assert container_ns["mnt"] != runtime_ns["mnt"] and container_ns["pid"] != runtime_ns["pid"]
    b.pyoci("start", b.id, check=True)
    assert order(out) == phases[:5]  # poststart has run when start returns
    b.pyoci("kill", b.id, "KILL", check=True)
    assert wait_for(lambda: b.state()["status"] == "stopped")
    b.pyoci("delete", b.id, check=True)
    assert order(out) == phases

    want_status = {"prestart": "creating", "createRuntime": "creating", "createContainer": "creating",
                   "startContainer": "created", "poststart": "running", "poststop": "stopped"}
    for p in phases:
        st = json.loads((out / f"{p}.stdin").read_text())
        assert st["status"] == want_status[p], p
        assert st["id"] == b.id and st["bundle"] == str(b.dir) and st["annotations"] == {"org.test": "hooks"}, p
        # runtime.md#state: the pid as seen from the namespace the hook runs in
        want_pid = {"poststop": 0, "createContainer": 1, "startContainer": 1}.get(p, init_pid)
        assert st.get("pid", 0) == want_pid, p
        assert (out / f"{p}.env").read_text().split() == HOOK_ENV, p  # exactly the hook's env
        # B11: only stdin/stdout/stderr (+ ls's own directory fd) — no runtime fds
        assert sorted(int(x) for x in (out / f"{p}.fds").read_text().split()) == [0, 1, 2, 3], p
        seen = recorded_ns(out, p)
        assert seen == (container_ns if p in CONTAINER_HOOKS else runtime_ns), p
    # args[0] is passed as given (host hooks; busybox in the container dispatches on argv[0])
    assert (out / "prestart.cmdline").read_text().startswith("my-prestart -c ")
    # poststart ran after the user program was executed: the init is `sleep 60`, not the runtime
    assert (out / "poststart.initcmd").read_text().strip() == "sleep 60"


@pytest.mark.parametrize("phase", ["prestart", "createRuntime", "createContainer"])
def test_create_phase_hook_failure_stops_and_runs_poststop(make_bundle, phase):
    b = make_bundle(base_config(["sh", "-c", "touch /ran"]))
    out = with_out_dir(b)
    b.spec["hooks"] = {phase: [failing(phase, str(out)), marker("after-failure", str(out))],
                       "poststop": [marker("poststop", str(out))]}
    b.write()
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1
    assert f"{phase} hook '/bin/sh' exited with status 3: boom" in p.stderr
    assert order(out) == [f"{phase}-failed", "poststop"]  # later hooks skipped; lifecycle continued at delete
    assert not (b.root / b.id).exists()
    assert not (b.rootfs / "ran").exists()


def test_start_container_hook_failure_fails_start(make_bundle):
    b = make_bundle(base_config(["sh", "-c", "echo program >> /out/order"]))
    out = with_out_dir(b)
    b.spec["hooks"] = {"startContainer": [failing("startContainer", "/out")],
                       "poststart": [marker("poststart", str(out))], "poststop": [marker("poststop", str(out))]}
    b.write()
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    pid = b.state()["pid"]
    p = b.pyoci("start", b.id)
    assert p.returncode == 1 and "startContainer hook '/bin/sh' exited with status 3: boom" in p.stderr
    assert order(out) == ["startContainer-failed", "poststop"]  # no program, no poststart
    assert not (b.root / b.id).exists()  # stopped, destroyed
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text())


def test_start_container_hook_runs_in_container_as_process_user(make_bundle):
    """startContainer's path resolves inside the container: /hook exists only in the rootfs."""
    b = make_bundle(base_config(["true"]))
    out = with_out_dir(b)
    (b.rootfs / "hook").write_text("#!/bin/sh\nid -u > /out/start-uid\nhostname > /out/start-hostname\n")
    (b.rootfs / "hook").chmod(0o755)
    b.spec["hostname"] = "inside"
    b.spec["process"]["user"] = {"uid": 1000, "gid": 1000}
    b.spec["hooks"] = {"startContainer": [{"path": "/hook", "args": ["hook"]}]}
    b.write()
    out.chmod(0o777)
    p = b.pyoci("run", "--bundle", str(b.dir), b.id)
    assert p.returncode == 0, p.stderr
    assert (out / "start-uid").read_text().strip() == "1000"  # runc: after the uid change
    assert (out / "start-hostname").read_text().strip() == "inside"


def test_poststart_failure_is_an_error_and_stops_the_container(make_bundle):
    """runtime-spec 1.3 (#1262). runtime-tools' older suite expects a warning here; we follow 1.3."""
    b = make_bundle(base_config(["sleep", "60"]))
    out = with_out_dir(b)
    b.spec["hooks"] = {"poststart": [failing("poststart", str(out)), marker("second-poststart", str(out))],
                       "poststop": [marker("poststop", str(out))]}
    b.write()
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    pid = b.state()["pid"]
    p = b.pyoci("start", b.id)
    assert p.returncode == 1 and "poststart hook '/bin/sh' exited with status 3" in p.stderr
    assert order(out) == ["poststart-failed", "poststop"]
    assert not (b.root / b.id).exists()
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text())


def test_poststop_failure_is_a_warning_and_the_rest_run(make_bundle):
    b = make_bundle(base_config(["true"]))
    out = with_out_dir(b)
    b.spec["hooks"] = {"poststop": [marker("first", str(out)), failing("poststop", str(out)),
                                    marker("third", str(out))]}
    b.write()
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    p = b.pyoci("delete", b.id)
    assert p.returncode == 0
    assert "level=warning" in p.stderr and "poststop hook '/bin/sh' exited with status 3" in p.stderr
    assert order(out) == ["first", "poststop-failed", "third"]
    assert not (b.root / b.id).exists()


def test_hook_timeout_kills_the_hook_and_fails_create(make_bundle):
    b = make_bundle(base_config(["true"]))
    out = with_out_dir(b)
    b.spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo $$ > {out}/hookpid; sleep 30"],
                                          "timeout": 1}],
                       "poststop": [marker("poststop", str(out))]}
    b.write()
    t0 = time.monotonic()
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert time.monotonic() - t0 < 15
    assert p.returncode == 1 and "createRuntime hook '/bin/sh' timed out after 1s" in p.stderr
    hookpid = int((out / "hookpid").read_text())
    assert not Path(f"/proc/{hookpid}").exists()  # killed and reaped
    assert order(out) == ["poststop"]
    assert not (b.root / b.id).exists()


def test_missing_hook_binary_fails_create(make_bundle):
    b = make_bundle(base_config(["true"]))
    b.spec["hooks"] = {"prestart": [{"path": "/nonexistent/hook"}]}
    b.write()
    p = b.pyoci("create", "--bundle", str(b.dir), b.id)
    assert p.returncode == 1 and "/nonexistent/hook" in p.stderr
    assert not (b.root / b.id).exists()
