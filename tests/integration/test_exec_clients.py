"""exec and terminals driven by the real clients: podman (through conmon) and containerd (ctr + runc v2 shim),
with the argv shapes recorded in ../shared/reference/client-calls/ (exec --process F --detach --pid-file P
[--console-socket S] <id>; create --console-socket S). Fixtures: tests/integration/test_clients.py."""
from __future__ import annotations

import shlex
import subprocess
import uuid

import pytest

from test_clients import PYOCI_BIN, ULIMITS, ctr, podman  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.root
IMAGE = "localhost/pyoci-test:busybox"


def in_script(argv: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run argv with a pty as its terminal (util-linux script), as a user at a terminal would."""
    return subprocess.run(["script", "-qec", shlex.join(argv), "/dev/null"], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_podman_exec_output_exit_status_detach(podman):
    name = f"pyoci-test-exec-{uuid.uuid4().hex[:6]}"
    assert podman("run", "-d", *ULIMITS, "--name", name, IMAGE, "sleep", "300").returncode == 0
    try:
        p = podman("exec", name, "echo", "from-exec")
        assert (p.returncode, p.stdout) == (0, "from-exec\n"), p.stderr
        assert podman("exec", name, "sh", "-c", "exit 5").returncode == 5
        p = podman("exec", "-d", name, "sleep", "30")
        assert p.returncode == 0, p.stderr
        p = podman("exec", name, "sh", "-c", "for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline; echo; done")
        assert "sleep 30 " in p.stdout.splitlines(), p.stdout  # the detached exec runs on
        p = podman("exec", name, "no-such-binary")
        assert p.returncode == 127, p.stderr  # podman maps "executable file not found" to 127
    finally:
        podman("rm", "-f", name)


def test_podman_run_and_exec_with_a_terminal(podman):
    name = f"pyoci-test-tty-{uuid.uuid4().hex[:6]}"
    p = podman("run", "--rm", "-t", *ULIMITS, IMAGE, "sh", "-c", "tty; stty size")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].strip().startswith("/dev/pts/")
    assert podman("run", "-d", "-t", *ULIMITS, "--name", name, IMAGE, "sleep", "300").returncode == 0
    try:
        p = podman("exec", "-t", name, "tty")
        assert p.returncode == 0 and p.stdout.strip().startswith("/dev/pts/"), p.stderr
    finally:
        podman("rm", "-f", name)


def test_containerd_exec_and_tty(ctr):
    cid = f"x{uuid.uuid4().hex[:6]}"
    p = ctr("run", "-d", "--runc-binary", PYOCI_BIN, IMAGE, cid, "sleep", "300")
    assert p.returncode == 0, p.stderr
    try:
        p = ctr("task", "exec", "--exec-id", "x1", cid, "echo", "from-exec")
        assert (p.returncode, p.stdout) == (0, "from-exec\n"), p.stderr
        p = ctr("task", "exec", "--exec-id", "x2", cid, "sh", "-c", "exit 5")
        assert p.returncode == 5, p.stderr
        # -t needs a terminal on ctr's stdin (console.Current()): run those under script(1) with ctr's argv
        base = dict(zip(ctr.__code__.co_freevars, (c.cell_contents for c in ctr.__closure__ or ())))["base"]
        p = in_script([*base, "task", "exec", "-t", "--exec-id", "x3", cid, "sh", "-c", "tty; exit 4"])
        assert p.returncode == 4 and "/dev/pts/" in p.stdout, p.stdout + p.stderr
        p = in_script([*base, "run", "--rm", "-t", "--runc-binary", PYOCI_BIN, IMAGE, cid + "t", "sh", "-c",
                       "tty; echo x"])
        assert p.returncode == 0 and "/dev/pts/0" in p.stdout and "x" in p.stdout.split(), p.stdout + p.stderr
    finally:
        ctr("task", "kill", "-s", "SIGKILL", cid)
        ctr("task", "delete", cid)
        ctr("container", "delete", cid)
