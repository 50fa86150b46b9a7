"""linux.seccomp: plan validation (pure), libseccomp pseudo filter code (export_pfc, never loaded here),
kernel flag/action probes, and filters really loaded in forked children that report through a pipe."""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import struct
import tempfile
from typing import Any, Callable

import pytest

from pyoci import seccomp as s
from pyoci.errors import ConfigError
from pyoci.linux import libc

ALLOW = {"defaultAction": "SCMP_ACT_ALLOW"}


def pfc(sc: dict[str, Any]) -> str:
    return s.export_pfc(s.plan(sc))


def body(text: str) -> list[str]:
    """The pseudo filter code without its comment lines."""
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --------------------------------------------------------------------------- plan validation

@pytest.mark.parametrize("sc, field, msg", [
    ({"defaultAction": "SCMP_ACT_BOGUS"}, "linux.seccomp.defaultAction", "unknown seccomp action"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}, "linux.seccomp.defaultAction", "cannot be the default"),
    ({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1}, "linux.seccomp.defaultErrnoRet", "cannot return an errno"),
    ({**ALLOW, "listenerMetadata": "m"}, "linux.seccomp.listenerMetadata", "without listenerPath"),
    ({**ALLOW, "architectures": ["SCMP_ARCH_VAX"]}, "linux.seccomp.architectures[0]", "unknown architecture"),
    ({**ALLOW, "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}, "linux.seccomp.flags[0]", "unknown seccomp flag"),
    ({**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]}, "linux.seccomp.syscalls[0].action",
     "unknown seccomp action"),
    ({**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]},
     "linux.seccomp.syscalls[0].errnoRet", "cannot return an errno"),
    ({**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]},
     "linux.seccomp.syscalls[0].errnoRet", "is not an errno"),
    ({**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, "linux.seccomp.syscalls[0].action",
     "needs linux.seccomp.listenerPath"),
    ({**ALLOW, "listenerPath": "/x", "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.syscalls[0]", "cannot be used for sendmsg"),
    ({**ALLOW, "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]}, "linux.seccomp.syscalls[0].names",
     "at least one"),
    ({**ALLOW, "syscalls": [{"names": ["a", ""], "action": "SCMP_ACT_LOG"}]}, "linux.seccomp.syscalls[0].names[1]",
     "empty syscall name"),
    ({**ALLOW, "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_LOG",
                             "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].index", "0..5"),
    ({**ALLOW, "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_LOG",
                             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_ABOUT"}]}]},
     "linux.seccomp.syscalls[0].args[0].op", "unknown seccomp operator"),
    ({**ALLOW, "syscalls": [{"names": ["dup"], "action": "SCMP_ACT_LOG",
                             "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0]", "uint64"),
])
def test_invalid_seccomp_is_one_config_error(sc, field, msg):
    with pytest.raises(ConfigError) as exc:
        s.plan(sc)
    assert str(exc.value).startswith(field) and msg in str(exc.value)


def test_plan_flattens_names_and_splits_repeated_argument_comparisons():
    p = s.plan({**ALLOW, "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_NE"}]},
        {"names": ["dup"], "action": "SCMP_ACT_LOG",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GE"}, {"index": 0, "value": 9, "op": "SCMP_CMP_LE"}]},
    ]})
    assert p.rules == (
        s.Rule("read", "SCMP_ACT_ERRNO", 5, ((0, "SCMP_CMP_EQ", 1, 0), (1, "SCMP_CMP_NE", 2, 0))),
        s.Rule("write", "SCMP_ACT_ERRNO", 5, ((0, "SCMP_CMP_EQ", 1, 0), (1, "SCMP_CMP_NE", 2, 0))),
        # runc: one argument compared twice ⇒ one rule per comparison
        s.Rule("dup", "SCMP_ACT_LOG", None, ((0, "SCMP_CMP_GE", 1, 0),)),
        s.Rule("dup", "SCMP_ACT_LOG", None, ((0, "SCMP_CMP_LE", 9, 0),)),
    )
    assert not p.has_notify


# --------------------------------------------------------------------------- pseudo filter code

def test_minimal_filter_exact_text():
    text = pfc({**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})
    assert body(text) == [
        "if ($arch == 3221225534)",
        "  if ($syscall == 83)",
        "    action ERRNO(38);",
        "  action ALLOW;",
        "action KILL;",
    ]


@pytest.mark.parametrize("action, errno_ret, shown", [
    ("SCMP_ACT_KILL", None, "KILL"),
    ("SCMP_ACT_KILL_THREAD", None, "KILL"),
    ("SCMP_ACT_KILL_PROCESS", None, "KILL_PROCESS"),
    ("SCMP_ACT_TRAP", None, "TRAP"),
    ("SCMP_ACT_ERRNO", None, "ERRNO(1)"),       # default errno: EPERM
    ("SCMP_ACT_ERRNO", 95, "ERRNO(95)"),
    ("SCMP_ACT_TRACE", None, "TRACE(1)"),       # runc: TRACE's message defaults to EPERM too
    ("SCMP_ACT_TRACE", 42, "TRACE(42)"),
    ("SCMP_ACT_LOG", None, "LOG"),
    ("SCMP_ACT_NOTIFY", None, "0x7fc00000"),    # SECCOMP_RET_USER_NOTIF
])
def test_every_action(action, errno_ret, shown):
    rule: dict[str, Any] = {"names": ["getppid"], "action": action}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    text = pfc({**ALLOW, "listenerPath": "/run/agent.sock", "syscalls": [rule]})
    assert "  if ($syscall == 110)\n    action " + shown + ";\n" in text


def test_default_action_and_default_errno():
    text = pfc({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]})
    assert body(text)[-2:] == ["  action ERRNO(38);", "action KILL;"]
    assert "if ($syscall == 0)\n    action ALLOW;" in text and "if ($syscall == 231)\n    action ALLOW;" in text


def test_rule_equal_to_default_action_is_skipped():
    text = pfc({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO"},                   # == default ERRNO(EPERM): skipped
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]})  # different errno: kept
    assert "$syscall == 95" not in text and "$syscall == 39)\n    action ERRNO(2);" in text


@pytest.mark.parametrize("op, value, value2, shown", [
    ("SCMP_CMP_NE", 7, 0, ["if ($a0.hi32 == 0)", "if ($a0.lo32 == 7)", "else", "action ERRNO(1);"]),
    ("SCMP_CMP_LT", 7, 0, ["if ($a0.lo32 >= 7)", "action ERRNO(1);"]),
    ("SCMP_CMP_LE", 7, 0, ["if ($a0.lo32 > 7)", "action ERRNO(1);"]),
    ("SCMP_CMP_EQ", 7, 0, ["if ($a0.hi32 == 0)", "if ($a0.lo32 == 7)", "action ERRNO(1);"]),
    ("SCMP_CMP_GE", 7, 0, ["if ($a0.lo32 >= 7)", "action ERRNO(1);"]),
    ("SCMP_CMP_GT", 7, 0, ["if ($a0.lo32 > 7)", "action ERRNO(1);"]),
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0x30, ["if ($a0.lo32 & 0x000000f0 == 48)", "action ERRNO(1);"]),
    ("SCMP_CMP_EQ", 0x100000002, 0, ["if ($a0.hi32 == 1)", "if ($a0.lo32 == 2)"]),   # 64-bit value split
])
def test_every_operator(op, value, value2, shown):
    text = pfc({**ALLOW, "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                       "args": [{"index": 0, "op": op, "value": value, "valueTwo": value2}]}]})
    lines = [line.strip() for line in body(text)]
    start = lines.index("if ($syscall == 135)")
    it = iter(lines[start:])
    assert all(want in it for want in shown), text  # in this order


def test_several_args_one_rule_and_several_rules_one_syscall():
    text = pfc({**ALLOW, "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
         "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 10}, {"index": 1, "op": "SCMP_CMP_EQ", "value": 2}]},
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 17}]},
    ]})
    lines = [line.strip() for line in body(text)]
    i = lines.index("if ($a0.lo32 == 10)")
    assert lines[i + 1:i + 4] == ["if ($a1.hi32 == 0)", "if ($a1.lo32 == 2)", "action ERRNO(97);"]
    j = lines.index("if ($a0.lo32 == 17)")
    assert lines[j + 1] == "action ERRNO(13);"


def test_architectures_add_per_arch_filters_with_translated_numbers():
    text = pfc({**ALLOW, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})
    assert "if ($arch == 3221225534)" in text and "if ($arch == 1073741827)" in text  # x86_64, x86
    assert "# filter for arch x32 (3221225534)" in text  # x32 shares AUDIT_ARCH_X86_64, told apart by nr
    assert "if ($syscall == 39)\n    action ERRNO(38);" in text                        # mkdir on i386 is 39
    assert "if ($syscall == 1073741907)\n    action ERRNO(38);" in text                # x32: 83 | 0x40000000


def test_unknown_syscall_is_skipped_with_a_debug_line(caplog):
    caplog.set_level(logging.DEBUG, logger="pyoci.seccomp")
    text = pfc({**ALLOW, "syscalls": [{"names": ["no_such_syscall_x", "mkdir"], "action": "SCMP_ACT_KILL"}]})
    assert "$syscall == 83)\n    action KILL;" in text
    assert any("unknown seccomp syscall 'no_such_syscall_x' ignored" in r.getMessage() for r in caplog.records)


def test_long_rule_sets_use_the_binary_tree():
    names = ["read", "write", "open", "close", "stat", "fstat", "lstat", "poll", "lseek", "mmap", "mprotect",
             "munmap", "brk", "ioctl", "pread64", "pwrite64", "readv", "writev", "access", "pipe", "select",
             "sched_yield", "mremap", "msync", "mincore", "madvise", "dup", "dup2", "pause", "nanosleep",
             "getitimer", "alarm", "setitimer", "getpid"]
    text = pfc({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [n], "action": "SCMP_ACT_ALLOW"}
                                                                 for n in names]})
    assert "$syscall > " in text or "$syscall >= " in text  # libseccomp's binary tree comparisons


# --------------------------------------------------------------------------- load flags and kernel support

@pytest.mark.parametrize("flags, notify, want", [
    ([], False, 0),
    (["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"], False, 2 | 4),
    (["SECCOMP_FILTER_FLAG_TSYNC"], False, 1),
    (["SECCOMP_FILTER_FLAG_TSYNC"], True, 1 | 8 | 16),          # TSYNC + listener needs TSYNC_ESRCH
    (["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], False, 0),     # meaningless (and refused) without a listener
    (["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], True, 8 | 32),
])
def test_load_flags(flags, notify, want):
    rule = {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY" if notify else "SCMP_ACT_LOG"}
    p = s.plan({**ALLOW, "listenerPath": "/x", "flags": flags, "syscalls": [rule]})
    assert s.load_flags(p) == want


def test_this_kernel_supports_every_flag_and_action():
    p = s.plan({**ALLOW, "listenerPath": "/x", "flags": list(s.FLAGS),
                "syscalls": [{"names": ["getppid"], "action": a} for a in s.RET if a != "SCMP_ACT_ALLOW"]})
    s.check_kernel(p, s.load_flags(p))  # raises ConfigError naming the flag/action if not
    prog = s.compile_program(p)
    assert prog.notify and prog.flags == 1 | 2 | 4 | 8 | 16 | 32 and len(prog.bpf) % 8 == 0


def test_kernel_refusal_names_the_flag(monkeypatch):
    monkeypatch.setattr(s, "_flags_ok", lambda flags: not flags & libc.SECCOMP_FILTER_FLAG_SPEC_ALLOW)
    p = s.plan({**ALLOW, "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]})
    with pytest.raises(ConfigError, match="SECCOMP_FILTER_FLAG_SPEC_ALLOW is not supported by the running kernel"):
        s.check_kernel(p, s.load_flags(p))


def test_listener_message_shape():
    p = s.plan({**ALLOW, "listenerPath": "/x", "listenerMetadata": "meta",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
    state = {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "pid": 4242, "bundle": "/b"}
    assert json.loads(s.listener_message(p, state)) == {
        "ociVersion": "1.3.0", "fds": ["seccompFd"], "pid": 4242, "metadata": "meta", "state": state}


# --------------------------------------------------------------------------- loaded in a forked child

def in_child(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run fn in a forked child (its filter dies with it); returns (fn's JSON result, wait status)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, json.dumps(fn()).encode())
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            os.write(w, json.dumps({"error": repr(exc)}).encode())
            os._exit(1)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return (json.loads(data) if data else None), status


def _load(sc: dict[str, Any]) -> int | None:
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    return s.load(s.compile_program(s.plan(sc)))


def _errno_of(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or 0
    return 0


def test_loaded_errno_rules_and_argument_match():
    tmp = tempfile.mkdtemp()
    try:
        def child() -> dict[str, int]:
            _load({**ALLOW, "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EAFNOSUPPORT,
                 "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": socket.AF_INET6}]}]})
            return {"mkdir": _errno_of(lambda: os.mkdir(os.path.join(tmp, "x"))),
                    "inet6": _errno_of(lambda: socket.socket(socket.AF_INET6).close()),
                    "unix": _errno_of(lambda: socket.socket(socket.AF_UNIX).close()),
                    "status": [ln for ln in open("/proc/self/status") if ln.startswith("Seccomp")]}

        out, status = in_child(child)
        assert os.waitstatus_to_exitcode(status) == 0, out
        assert out["mkdir"] == errno.ENOSYS and out["inet6"] == errno.EAFNOSUPPORT and out["unix"] == 0
        assert out["status"] == ["Seccomp:\t2\n", "Seccomp_filters:\t1\n"]
        assert not os.path.exists(os.path.join(tmp, "x"))
    finally:
        os.rmdir(tmp)


@pytest.mark.parametrize("action, sig", [("SCMP_ACT_KILL_PROCESS", signal.SIGSYS), ("SCMP_ACT_TRAP", signal.SIGSYS),
                                         ("SCMP_ACT_KILL", signal.SIGSYS)])
def test_loaded_kill_and_trap(action, sig):
    def child() -> None:
        _load({**ALLOW, "syscalls": [{"names": ["getppid"], "action": action}]})
        os.getppid()

    out, status = in_child(child)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig, (out, status)


def test_loaded_log_and_trace_without_tracer():
    def child() -> dict[str, Any]:
        _load({**ALLOW, "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"},
                                     {"names": ["chdir"], "action": "SCMP_ACT_TRACE"}]})
        return {"ppid": os.getppid(), "chdir": _errno_of(lambda: os.chdir("/"))}

    out, status = in_child(child)
    assert os.waitstatus_to_exitcode(status) == 0 and out["ppid"] == os.getpid()
    assert out["chdir"] == errno.ENOSYS  # SECCOMP_RET_TRACE with no tracer attached: ENOSYS (seccomp(2))


SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)   (80 bytes)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp) (24 bytes)


def answer_one(notify_fd: int, error: int) -> int:
    """A minimal seccomp agent: receive one notification, fail the syscall with `error`; returns its nr."""
    import fcntl
    req = bytearray(80)
    fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, req, True)
    notif_id, _pid, _flags, nr = struct.unpack_from("QIIi", req)
    fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND, bytearray(struct.pack("QqiI", notif_id, 0, -error, 0)), True)
    return nr


def test_loaded_notify_sends_fd_and_state_to_the_listener(tmp_path):
    path = str(tmp_path / "agent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    sc = {**ALLOW, "listenerPath": path, "listenerMetadata": "hello",
          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}

    def child() -> dict[str, int]:
        p = s.plan(sc)
        prog, sock = s.compile_program(p), s.connect_listener(path)
        msg = s.listener_message(p, {"ociVersion": "1.3.0", "id": "t", "status": "created", "pid": os.getpid()})
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        fd = s.load(prog)
        assert fd is not None
        s.send_listener(sock, fd, msg)
        os.close(fd)
        return {"mkdir": _errno_of(lambda: os.mkdir(os.path.join(str(tmp_path), "never")))}

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, json.dumps(child()).encode())
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            os.write(w, repr(exc).encode())
            os._exit(1)
    os.close(w)
    fds: list[int] = []
    try:
        conn, _ = srv.accept()
        data, fds, _flags, _ = socket.recv_fds(conn, 65536, 1)
        while chunk := conn.recv(65536):  # the runtime closes after one state
            data += chunk
        msg = json.loads(data)
        assert msg["fds"] == ["seccompFd"] and msg["metadata"] == "hello" and msg["pid"] == pid
        assert msg["state"]["id"] == "t" and len(fds) == 1
        nr = answer_one(fds[0], errno.ENOMEDIUM)
        assert nr == 83  # mkdir on x86_64
    finally:
        for fd in fds:
            os.close(fd)  # a child still waiting for an answer gets ENOSYS instead of hanging
        out = os.read(r, 65536)
        _, status = os.waitpid(pid, 0)
        srv.close()
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert json.loads(out) == {"mkdir": errno.ENOMEDIUM}  # the agent's answer reached the caller
    assert not (tmp_path / "never").exists()
