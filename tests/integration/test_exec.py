"""`pyoci exec` on real containers: output, exit codes (runc: 255 before the program runs), every flag, the
namespaces/cgroup/root it joins, a user namespace, --detach/--pid-file, --process files as containerd and
podman write them, and the hygiene of the exec'd process (B12, fds, session)."""
from __future__ import annotations

import json
import os
import socket
import struct
import fcntl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import PYOCI, REPO, base_config

pytestmark = pytest.mark.root

CLIENT_CALLS = Path("/work/shared/reference/client-calls")
NS = ("mnt", "pid", "net", "uts", "ipc", "cgroup", "user")
TIOCGPTN = 0x80045430


def allow_ptys(spec: dict[str, Any]) -> dict[str, Any]:
    """runc's default device allow list has /dev/pts/* and ptmx; spelled out so these tests do not depend on it."""
    spec["linux"]["resources"]["devices"] += [{"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
                                              {"allow": True, "type": "c", "major": 136, "access": "rwm"}]
    return spec


def running(make_bundle: Any, spec: dict[str, Any] | None = None) -> Any:
    b = make_bundle(spec if spec is not None else base_config(["sleep", "300"]))
    b.pyoci("run", "--detach", "--bundle", str(b.dir), b.id, check=True)
    return b


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def status_field(text: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name + ":"))


def test_output_and_exit_status_passthrough(make_bundle):
    b = running(make_bundle)
    p = b.pyoci("exec", b.id, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n")
    assert b.pyoci("exec", b.id, "true").returncode == 0
    assert b.pyoci("exec", b.id, "sh", "-c", "kill -9 $$").returncode == 128 + 9
    assert b.pyoci("exec", b.id, "sh", "-c", "kill -TERM $$").returncode == 128 + 15


@pytest.mark.parametrize("case", ["unknown-container", "missing-binary", "bad-pid-file-dir", "bad-cwd", "no-command"])
def test_errors_before_the_program_runs_exit_255(make_bundle, case):
    """runc tests/integration/exec.bats "exit codes": failures before the process runs are 255."""
    b = running(make_bundle)
    argv = {"unknown-container": ["exec", "no-such-container-x", "true"],
            "missing-binary": ["exec", b.id, "no-such-binary"],
            "bad-pid-file-dir": ["exec", "--pid-file", str(b.dir / "missing-dir" / "pid"), b.id, "true"],
            "bad-cwd": ["exec", "--cwd", "/does/not/exist", b.id, "true"],
            "no-command": ["exec", b.id]}[case]
    p = b.pyoci(*argv)
    assert p.returncode == 255, p.stderr
    assert p.stderr.count("level=error") == 1
    want = {"unknown-container": "does not exist", "missing-binary": "executable file not found in $PATH",
            "bad-pid-file-dir": "--pid-file", "bad-cwd": "/does/not/exist", "no-command": "command"}[case]
    assert want in p.stderr


def test_exec_in_stopped_container_is_an_error(make_bundle):
    b = make_bundle(base_config(["true"]))
    b.pyoci("run", "--detach", "--bundle", str(b.dir), b.id, check=True)
    assert wait_for(lambda: b.state()["status"] == "stopped")
    p = b.pyoci("exec", b.id, "true")
    assert p.returncode == 255 and "cannot exec in a stopped container" in p.stderr


def test_exec_in_paused_container_is_an_error(make_bundle):
    b = running(make_bundle)
    if b.pyoci("pause", b.id).returncode != 0:
        pytest.skip("pause is not available (no freezer)")
    try:
        p = b.pyoci("exec", b.id, "true")
        assert p.returncode == 255 and "paused" in p.stderr
    finally:
        b.pyoci("resume", b.id)


@pytest.mark.parametrize("flag,field", [("--apparmor", "process.apparmorProfile"),
                                        ("--process-label", "process.selinuxLabel")])
def test_lsm_label_flags_fail_closed_without_the_lsm(make_bundle, flag, field):
    """No AppArmor/SELinux on this machine: a requested label is an error naming the field, never ignored."""
    if Path("/sys/module/apparmor/parameters/enabled").exists() or Path("/sys/fs/selinux/enforce").exists():
        pytest.skip("an LSM is enabled here")
    b = running(make_bundle)
    p = b.pyoci("exec", flag, "some-label", b.id, "true")
    assert p.returncode == 255 and field in p.stderr, p.stderr


def test_exec_in_created_container(make_bundle):
    """runc allows exec before start; the init stays blocked."""
    b = make_bundle(base_config(["sh", "-c", "touch /started; sleep 300"]))
    b.pyoci("create", "--bundle", str(b.dir), b.id, check=True)
    p = b.pyoci("exec", b.id, "sh", "-c", "ls /started 2>&1; echo $$")
    assert p.returncode == 0 and "No such file" in p.stdout
    assert b.state()["status"] == "created"


def test_joins_every_namespace_cgroup_and_root(make_bundle):
    b = running(make_bundle)
    (b.rootfs / "marker-in-rootfs").write_text("x")
    init = b.state()["pid"]
    script = "for n in " + " ".join(NS) + "; do echo $n $(readlink /proc/self/ns/$n); done; ls /; cat /proc/self/cgroup"
    p = b.pyoci("exec", b.id, "sh", "-c", script)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    seen = dict(line.split(" ", 1) for line in lines[:len(NS)])
    assert seen == {n: os.readlink(f"/proc/{init}/ns/{n}") for n in NS}
    assert "marker-in-rootfs" in lines
    # the init's cgroup is the root of the container's cgroup namespace: the exec'd process is there too
    cg = [x for x in lines if x.count(":") >= 2]
    assert cg and all(x.endswith(":/") for x in cg), cg


def test_exec_lands_in_the_container_cgroup_on_the_host(make_bundle):
    b = running(make_bundle)
    init = b.state()["pid"]
    p = b.pyoci("exec", "--detach", "--pid-file", str(b.dir / "x.pid"), b.id, "sleep", "30", check=True)
    assert p.returncode == 0
    pid = int((b.dir / "x.pid").read_text())
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")


def test_env_cwd_user_groups(make_bundle):
    spec = base_config(["sleep", "300"])
    spec["process"]["env"] = ["PATH=/bin:/usr/bin", "KEEP=1"]
    b = running(make_bundle, spec)
    p = b.pyoci("exec", "-e", "FOO=bar", "--env", "KEEP=2", "--cwd", "/tmp", "-u", "1000:1001", "-g", "10",
                "--additional-gids", "20", b.id, "sh", "-c", "env | sort; pwd; id")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "FOO=bar" in lines and "KEEP=2" in lines and "KEEP=1" not in lines  # appended; the later one wins
    home = next(x.split(":")[5] for x in (b.rootfs / "etc/passwd").read_text().splitlines() if x.split(":")[2] == "1000")
    assert f"HOME={home}" in lines  # runc: HOME from the container's /etc/passwd when the env has none
    assert "/tmp" in lines
    assert lines[-1].startswith("uid=1000") and "gid=1001" in lines[-1] and "groups=10,20" in lines[-1]


def test_user_flag_without_gid_keeps_the_spec_gid(make_bundle):
    b = running(make_bundle)
    p = b.pyoci("exec", "-u", "1000", b.id, "id", "-u", check=True)
    assert p.stdout.strip() == "1000"
    p = b.pyoci("exec", "-u", "x:y", b.id, "true")
    assert p.returncode == 255 and "--user" in p.stderr


def test_cap_flag_b12_no_inheritable_or_ambient(make_bundle):
    """B12 / CVE-2022-29162: --cap adds to bounding/effective/permitted only; CapInh and CapAmb stay 0."""
    b = running(make_bundle)
    p = b.pyoci("exec", "--cap", "CAP_NET_ADMIN", b.id, "cat", "/proc/self/status")
    assert p.returncode == 0, p.stderr
    net_admin = 1 << 12
    assert int(status_field(p.stdout, "CapInh"), 16) == 0
    assert int(status_field(p.stdout, "CapAmb"), 16) == 0
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status_field(p.stdout, field), 16) & net_admin, field
    p = b.pyoci("exec", b.id, "cat", "/proc/self/status")
    assert not int(status_field(p.stdout, "CapEff"), 16) & net_admin  # only when asked


def test_cap_flag_adds_ambient_when_the_spec_has_inheritable(make_bundle):
    spec = base_config(["sleep", "300"])
    caps = spec["process"]["capabilities"]
    caps["inheritable"] = ["CAP_KILL"]
    b = running(make_bundle, spec)
    p = b.pyoci("exec", "-u", "1000", "--cap", "CAP_KILL", b.id, "cat", "/proc/self/status")
    assert p.returncode == 0, p.stderr
    assert int(status_field(p.stdout, "CapAmb"), 16) == 1 << 5


def test_no_new_privs_flag(make_bundle):
    spec = base_config(["sleep", "300"])
    spec["process"]["noNewPrivileges"] = False
    b = running(make_bundle, spec)
    p = b.pyoci("exec", b.id, "grep", "NoNewPrivs", "/proc/self/status", check=True)
    assert p.stdout.split()[-1] == "0"
    p = b.pyoci("exec", "--no-new-privs", b.id, "grep", "NoNewPrivs", "/proc/self/status", check=True)
    assert p.stdout.split()[-1] == "1"


def test_hygiene_fds_session_seccomp_of_the_container(make_bundle):
    spec = base_config(["sleep", "300"])
    b = running(make_bundle, spec)
    r, w = os.pipe()  # an extra fd the runtime has, not passed
    try:
        p = b.pyoci("exec", b.id, "sh", "-c", "ls /proc/self/fd; echo --; cut -d' ' -f1,6,7 /proc/self/stat",
                    pass_fds=(r, w))
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, p.stderr
    fds, stat = p.stdout.split("--\n")
    assert sorted(int(x) for x in fds.split()) == [0, 1, 2, 3]  # 3 = ls's own directory
    pid, sid, tty_nr = stat.split()
    assert sid == pid and tty_nr == "0"  # a new session, no controlling terminal (class 17)


def test_seccomp_and_rlimits_of_the_container_apply(make_bundle):
    spec = base_config(["sleep", "300"])
    spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                              "errnoRet": 38}]}
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]
    b = running(make_bundle, spec)
    p = b.pyoci("exec", b.id, "sh", "-c", "mkdir /tmp/x 2>&1; ulimit -n; grep Seccomp: /proc/self/status")
    assert p.returncode == 0, p.stderr
    assert "not implemented" in p.stdout.lower()  # ENOSYS from the container's filter
    assert "256" in p.stdout.split() and status_field(p.stdout, "Seccomp") == "2"


def test_preserve_fds(make_bundle):
    b = running(make_bundle)
    r, w = os.pipe()
    try:
        # the runtime gets the pipe as its fd 3 and passes it on
        p = subprocess.run([*PYOCI, "--root", str(b.root), "exec", "--preserve-fds", "1", b.id,
                            "sh", "-c", "echo through-fd3 >&3; ls /proc/self/fd"], cwd=REPO, capture_output=True,
                           text=True, pass_fds=(3,), preexec_fn=lambda: os.dup2(w, 3), timeout=60)
    finally:
        os.close(w)
    try:
        assert p.returncode == 0, p.stderr
        assert os.read(r, 100) == b"through-fd3\n"
    finally:
        os.close(r)
    assert sorted(int(x) for x in p.stdout.split()) == [0, 1, 2, 3, 4]  # 3 passed, 4 = ls's directory
    p = b.pyoci("exec", "--preserve-fds", "5", b.id, "true")
    assert p.returncode == 255 and "preserved-fd" in p.stderr


def test_detach_and_pid_file(make_bundle):
    b = running(make_bundle)
    pid_file = b.dir / "exec.pid"
    t0 = time.monotonic()
    p = b.pyoci("exec", "--detach", "--pid-file", str(pid_file), b.id, "sleep", "30")
    assert p.returncode == 0 and time.monotonic() - t0 < 20, p.stderr
    raw = pid_file.read_text()
    assert raw.isdigit()  # no newline
    pid = int(raw)
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0030\x00"
    os.kill(pid, 9)


def test_process_file_as_containerd_and_podman_write_it(make_bundle):
    b = running(make_bundle)
    proc = json.loads((CLIENT_CALLS / "containerd-exec-process.json").read_text())
    (b.dir / "process.json").write_text(json.dumps(proc))
    # containerd: exec --process F --detach --pid-file P <id>  (stdio: the shim's; here the test's files)
    with open(b.dir / "x1.out", "w") as out:
        p = b.pyoci("exec", "--process", str(b.dir / "process.json"), "--detach", "--pid-file",
                    str(b.dir / "x1.pid"), b.id, stdout=out)
    assert p.returncode == 0
    assert (b.dir / "x1.pid").read_text().isdigit()
    assert wait_for(lambda: (b.dir / "x1.out").read_text() == "from-exec\n")
    # the process really ran with the file's settings (flags on the command line are ignored with -p)
    proc["args"] = ["sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ulimit -n; exit 5"]
    (b.dir / "process2.json").write_text(json.dumps(proc))
    p = b.pyoci("exec", "-p", str(b.dir / "process2.json"), "-u", "1000", b.id)
    assert p.returncode == 5, p.stderr
    assert status_field(p.stdout, "NoNewPrivs") == "1" and p.stdout.split()[-1] == "1024"
    assert int(status_field(p.stdout, "CapEff"), 16) & (1 << 0)  # CAP_CHOWN from the file
    bad = dict(proc, cwd="relative")
    (b.dir / "bad.json").write_text(json.dumps(bad))
    p = b.pyoci("exec", "-p", str(b.dir / "bad.json"), b.id)
    assert p.returncode == 255 and "cwd" in p.stderr


def test_process_file_with_terminal_and_console_socket(make_bundle, tmp_path):
    """podman (conmon): exec --pid-file P --process F --detach --tty --console-socket S <id>."""
    b = running(make_bundle, allow_ptys(base_config(["sleep", "300"])))
    proc = json.loads((CLIENT_CALLS / "podman-exec-process-tty.json").read_text())
    proc["args"] = ["sh", "-c", "tty; stty size; exit 3"]
    proc["consoleSize"] = {"height": 20, "width": 70}
    (b.dir / "p.json").write_text(json.dumps(proc))
    path = str(b.dir / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ls:
        ls.bind(path)
        ls.listen(1)
        p = b.pyoci("exec", "--pid-file", str(b.dir / "p.pid"), "--process", str(b.dir / "p.json"), "--detach",
                    "--tty", "--console-socket", path, b.id)
        assert p.returncode == 0, p.stderr
        conn, _ = ls.accept()
        with conn:
            msg, anc, _f, _a = conn.recvmsg(4096, socket.CMSG_SPACE(16))
    assert msg and len(anc) == 1 and anc[0][:2] == (socket.SOL_SOCKET, socket.SCM_RIGHTS) and len(anc[0][2]) == 4
    master = struct.unpack("i", anc[0][2])[0]
    try:
        n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        out = read_all(master)
    finally:
        os.close(master)
    assert f"/dev/pts/{n}" in out and "20 70" in out


def read_all(master: int, timeout: float = 10.0) -> str:
    import select
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if not r:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def test_user_namespace_container(make_bundle):
    spec = base_config(["sleep", "300"])
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b = make_bundle(spec)
    b.pyoci("run", "--detach", "--bundle", str(b.dir), b.id, check=True)
    init = b.state()["pid"]
    p = b.pyoci("exec", "-u", "1000", b.id, "sh", "-c",
                "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; grep CapEff /proc/self/status")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "1000"
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2] == os.readlink(f"/proc/{init}/ns/user")
    assert int(lines[3].split()[1], 16) == 0  # uid 1000 without ambient caps
    p = b.pyoci("exec", "--detach", "--pid-file", str(b.dir / "u.pid"), b.id, "sleep", "30", check=True)
    pid = int((b.dir / "u.pid").read_text())
    uid_line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Uid:"))
    assert uid_line.split()[1] == "100000"  # container root is host uid 100000
