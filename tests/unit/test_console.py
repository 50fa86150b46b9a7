"""Pure parts of terminals and exec: console plan, the console-socket message, raw mode, the exec process
built from config.json + runc's flags, and the exec command line."""
from __future__ import annotations

import os
import pty
import socket
import struct
import termios

import pytest

from pyoci import console, tenant, tty
from pyoci.cli import build_parser
from pyoci.errors import ConfigError, PyociError

BASE = {"terminal": True, "consoleSize": {"height": 5, "width": 6}, "user": {"uid": 0, "gid": 0, "additionalGids": [3]},
        "args": ["sh"], "env": ["PATH=/bin", "A=1"], "cwd": "/",
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
        "noNewPrivileges": False}


@pytest.mark.parametrize("proc,want", [
    ({"terminal": False, "consoleSize": {"height": 1, "width": 1}}, None),
    ({}, None),
    ({"terminal": True}, console.ConsolePlan(0, 0, 0, True)),
    ({"terminal": True, "consoleSize": {"height": 24, "width": 80}, "user": {"uid": 1000}},
     console.ConsolePlan(24, 80, 1000, True)),
])
def test_plan(proc, want):
    assert console.plan(proc, mount=True) == want


@pytest.mark.parametrize("size", [{"height": -1, "width": 2}, {"height": 1, "width": 70000}, {"height": True}])
def test_plan_rejects_bad_sizes(size):
    with pytest.raises(ConfigError, match=r"process\.consoleSize\.(height|width)"):
        console.plan({"terminal": True, "consoleSize": size}, mount=True)


def test_send_master_is_one_message_with_one_fd():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    master, slave = pty.openpty()
    try:
        console.send_master(a.fileno(), master, "/dev/pts/ptmx")
        msg, anc, _flags, _addr = b.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
        assert msg == b"/dev/pts/ptmx"
        assert len(anc) == 1 and anc[0][:2] == (socket.SOL_SOCKET, socket.SCM_RIGHTS) and len(anc[0][2]) == 4
        got = struct.unpack("i", anc[0][2])[0]
        assert os.path.samestat(os.fstat(got), os.fstat(master))
        os.close(got)
    finally:
        for fd in (master, slave):
            os.close(fd)
        a.close()
        b.close()


def test_recv_master_roundtrip_nonblocking_and_errors():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert console.recv_master(b, block=False) is None  # nothing sent (a container without terminal)
        r, w = os.pipe()
        console.send_master(a.fileno(), r, "x")
        fd, name = console.recv_master(b, block=False) or (-1, "")
        assert name == "x" and os.path.samestat(os.fstat(fd), os.fstat(r))
        assert not os.get_inheritable(fd)
        for x in (fd, r, w):
            os.close(x)
        r, w = os.pipe()
        a.sendmsg([b"two"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("2i", r, w))])
        with pytest.raises(PyociError, match="expected one pty master fd, got 2"):
            console.recv_master(b)
        os.close(r)
        os.close(w)
    finally:
        a.close()
        b.close()


def test_console_pair_receive_without_terminal_is_none():
    pair = tty.ConsolePair()
    try:
        assert pair.receive() is None
        assert pair.runtime_end == -1
    finally:
        pair.close()


def test_connect_error_names_the_flag(tmp_path):
    with pytest.raises(PyociError, match=r"--console-socket '.*nope': cannot connect: \[Errno 2\]"):
        console.connect(str(tmp_path / "nope"))


def test_size_roundtrip_on_a_pty():
    master, slave = pty.openpty()
    try:
        console.set_size(master, 33, 111)
        assert console.get_size(slave) == (33, 111)
    finally:
        os.close(master)
        os.close(slave)
    r, w = os.pipe()
    assert console.get_size(r) is None
    os.close(r)
    os.close(w)


def test_raw_mode_keeps_output_processing():
    master, slave = pty.openpty()
    try:
        raw = tty.raw_mode(termios.tcgetattr(slave))
        termios.tcsetattr(slave, termios.TCSANOW, raw)
        now = termios.tcgetattr(slave)
        assert not now[3] & (termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
        assert not now[0] & (termios.ICRNL | termios.IXON) and now[1] & termios.OPOST
        assert now[2] & termios.CSIZE == termios.CS8 and now[6][termios.VMIN] == 1
    finally:
        os.close(master)
        os.close(slave)


def test_build_process_flags():
    p = tenant.build_process(BASE, ["id", "-u"], env=["B=2", "A=3"], cwd="/tmp", user="1000:1001",
                             additional_gids=["7"], no_new_privs=True, apparmor="prof", process_label="lbl")
    assert p["args"] == ["id", "-u"] and p["terminal"] is False and "consoleSize" not in p
    assert p["env"] == ["PATH=/bin", "A=1", "B=2", "A=3"]  # appended (the last A wins at execve)
    assert p["cwd"] == "/tmp" and p["noNewPrivileges"] is True
    assert p["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [3, 7]}
    assert (p["apparmorProfile"], p["selinuxLabel"]) == ("prof", "lbl")
    assert BASE["env"] == ["PATH=/bin", "A=1"] and BASE["user"]["additionalGids"] == [3]  # not mutated
    assert tenant.build_process(BASE, ["sh"], tty=True)["terminal"] is True
    assert tenant.build_process(BASE, ["sh"], user="5")["user"]["gid"] == 0


def test_build_process_cap_never_adds_inheritable_or_ambient_unless_the_spec_has_inheritable():
    p = tenant.build_process(BASE, ["sh"], caps=["CAP_NET_ADMIN"])
    caps = p["capabilities"]
    assert all("CAP_NET_ADMIN" in caps[s] for s in ("bounding", "effective", "permitted"))
    assert "inheritable" not in caps and "ambient" not in caps  # CVE-2022-29162
    base = dict(BASE, capabilities=dict(BASE["capabilities"], inheritable=["CAP_KILL"]))
    caps = tenant.build_process(base, ["sh"], caps=["CAP_NET_ADMIN"])["capabilities"]
    assert caps["ambient"] == ["CAP_NET_ADMIN"] and caps["inheritable"] == ["CAP_KILL"]


@pytest.mark.parametrize("user", ["x", "1:y", "-1", "1:2:3", "99999999999"])
def test_build_process_bad_user(user):
    with pytest.raises(ConfigError, match="--user"):
        tenant.build_process(BASE, ["sh"], user=user)


@pytest.mark.parametrize("argv,want", [
    (["exec", "-t", "c1", "sh", "-c", "ls"], ("c1", ["sh", "-c", "ls"], True)),
    (["exec", "c1", "-t", "ls"], ("c1", ["-t", "ls"], False)),  # flag parsing stops at the id (runc)
    (["exec", "--process", "p.json", "--detach", "--pid-file", "x.pid", "c1"], ("c1", [], False)),
    (["exec", "-process", "p.json", "-detach", "-pid-file", "x.pid", "c1"], ("c1", [], False)),  # Go single-dash
])
def test_exec_command_line(argv, want):
    args = build_parser().parse_args(argv)
    assert (args.id, args.argv, args.tty) == want
    assert args.error_exit_code == 255 and args.command == "exec"


def test_exec_repeatable_flags():
    args = build_parser().parse_args(["exec", "-e", "A=1", "--env", "B=2", "-g", "5", "--additional-gids", "6",
                                      "--cap", "CAP_KILL", "-c", "CAP_CHOWN", "--preserve-fds", "2", "c", "true"])
    assert args.env == ["A=1", "B=2"] and args.additional_gids == ["5", "6"]
    assert args.cap == ["CAP_KILL", "CAP_CHOWN"] and args.preserve_fds == 2
