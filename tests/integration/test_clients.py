"""pyoci as a drop-in runtime: podman (through conmon) drives it exactly as it drives runc.

podman runs with its own --root/--runroot in a temp dir, so the host's image store is never touched.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from conftest import BUSYBOX_ROOTFS

pytestmark = pytest.mark.root
PYOCI_BIN = str(Path(sys.executable).parent / "pyoci")
# This machine's hard RLIMIT_NOFILE/NPROC are below podman's defaults and CAP_SYS_RESOURCE is not in the
# bounding set: runc fails the same way without these flags.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture(scope="module")
def podman():
    exe = shutil.which("podman")
    if not exe:
        pytest.skip("podman is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="pyoci-podman-"))
    base = [exe, "--root", str(tmp / "storage"), "--runroot", str(tmp / "run"), "--cgroup-manager", "cgroupfs",
            "--events-backend", "none"]
    tar = tmp / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(BUSYBOX_ROOTFS, arcname=".")
    subprocess.run([*base, "import", "-q", str(tar), "localhost/pyoci-test:busybox"], check=True,
                   capture_output=True)

    def run(*args: str, runtime: str = PYOCI_BIN, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, "--runtime", runtime, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    try:
        yield run
    finally:
        subprocess.run([*base, "rm", "-af"], capture_output=True)
        subprocess.run([*base, "system", "reset", "-f"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_podman_run_rm(podman):
    p = podman("run", "--rm", *ULIMITS, "--hostname", "podbox", "localhost/pyoci-test:busybox",
               "sh", "-c", "echo hello; hostname; id -u; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout.split() == ["hello", "podbox", "0"]


def test_podman_same_as_runc(podman):
    cmd = ["sh", "-c", "cat /proc/self/status | grep -E '^(Cap|NoNewPrivs|Seccomp)'; ls /dev; cat /proc/1/cmdline"]
    ours = podman("run", "--rm", *ULIMITS, "localhost/pyoci-test:busybox", *cmd)
    theirs = podman("run", "--rm", *ULIMITS, "localhost/pyoci-test:busybox", *cmd, runtime="/usr/sbin/runc")
    if theirs.returncode != 0:
        pytest.skip(f"runc under podman failed here: {theirs.stderr}")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout


def test_podman_detached_stop_and_remove(podman):
    p = podman("run", "-d", *ULIMITS, "--name", "pyoci-test-detached", "localhost/pyoci-test:busybox",
               "sleep", "300")
    assert p.returncode == 0, p.stderr
    try:
        insp = podman("inspect", "--format", "{{.State.Status}}", "pyoci-test-detached")
        assert insp.stdout.strip() == "running"
        assert podman("stop", "-t", "1", "pyoci-test-detached").returncode == 0
        insp = podman("inspect", "--format", "{{.State.Status}}", "pyoci-test-detached")
        assert insp.stdout.strip() == "exited"
    finally:
        podman("rm", "-f", "pyoci-test-detached")
