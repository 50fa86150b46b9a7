"""pyoci as a drop-in runtime: podman (through conmon) drives it exactly as it drives runc.

podman runs with its own --root/--runroot in a temp dir, so the host's image store is never touched.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX_ROOTFS

pytestmark = pytest.mark.root
PYOCI_BIN = str(Path(sys.executable).parent / "pyoci")
# This machine's hard RLIMIT_NOFILE/NPROC are below podman's defaults and CAP_SYS_RESOURCE is not in the
# bounding set: runc fails the same way without these flags.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
           # House rule: nothing in the host's network namespace. podman's default bridge network makes
           # netavark add iptables chains and switch on ip_forward on the host: use no network at all.
           "--network", "none"]


@pytest.fixture(scope="module")
def podman():
    exe = shutil.which("podman")
    if not exe:
        pytest.skip("podman is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="pyoci-podman-"))
    base = [exe, "--root", str(tmp / "storage"), "--runroot", str(tmp / "run"), "--cgroup-manager", "cgroupfs",
            "--events-backend", "none"]
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
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
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward, "podman changed the host's ip_forward"


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


@pytest.fixture(scope="module")
def ctr(podman, tmp_path_factory):
    """A private containerd (its own root, state and socket in a temp dir) with the busybox image."""
    exe = shutil.which("containerd")
    if not exe or not shutil.which("ctr"):
        pytest.skip("containerd is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="pyoci-ctd-"))
    ns = f"pyoci-test-{tmp.name[-6:]}"
    (tmp / "config.toml").write_text(
        f'version = 2\nroot = "{tmp}/root"\nstate = "{tmp}/state"\n[grpc]\n  address = "{tmp}/ctd.sock"\n'
        f'[ttrpc]\n  address = "{tmp}/ctd-ttrpc.sock"\n[debug]\n  level = "warn"\n')
    daemon = subprocess.Popen([exe, "--config", str(tmp / "config.toml")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = ["ctr", "-a", str(tmp / "ctd.sock"), "-n", ns]
    try:
        # The socket file appears before containerd serves on it: wait until a request succeeds.
        deadline = time.monotonic() + 30
        while subprocess.run([*base, "version"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and daemon.poll() is None, "containerd did not come up"
            time.sleep(0.1)
        archive = tmp / "img.tar"
        assert podman("save", "--format", "oci-archive", "-o", str(archive), "localhost/pyoci-test:busybox",
                      runtime="/usr/sbin/runc").returncode == 0
        for attempt in range(3):  # the content store may still be initialising
            imp = subprocess.run([*base, "image", "import", "--base-name", "localhost/pyoci-test", str(archive)],
                                 capture_output=True, text=True)
            if imp.returncode == 0:
                break
            time.sleep(0.5)
        assert imp.returncode == 0, imp.stderr

        def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        yield run
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        shutil.rmtree(f"/run/containerd/runc/{ns}", ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_containerd_run_exit_codes_and_errors(ctr):
    p = ctr("run", "--rm", "--runc-binary", PYOCI_BIN, "localhost/pyoci-test:busybox", "e1", "sh", "-c",
            "echo hi; exit 3")
    assert p.returncode == 3 and p.stdout == "hi\n", p.stderr
    p = ctr("run", "--rm", "--runc-binary", PYOCI_BIN, "localhost/pyoci-test:busybox", "e2", "/nonexistent")
    assert p.returncode != 0 and "no such file or directory" in p.stderr  # our JSON log line reached ctr
