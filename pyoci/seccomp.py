"""linux.seccomp: spec → rule plan (pure), libseccomp → BPF (before pivot_root), seccomp(2) load, listener.

The BPF program is compiled by libseccomp while the host filesystem is visible and loaded later with the
raw seccomp(2) syscall, as runc's patchbpf does: we choose the load flags ourselves (TSYNC, LOG, SPEC_ALLOW,
NEW_LISTENER, WAIT_KILLABLE_RECV, whatever libseccomp's version knows), libseccomp never sets
no_new_privs behind our back, and nothing from libseccomp runs inside the container root.
The bindings (`seccomp` from the distribution, else `pyseccomp`) are imported only when a config has seccomp.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import struct
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from pyoci.errors import ConfigError, PyociError
from pyoci.linux import libc

log = logging.getLogger(__name__)

EPERM = 1
# SECCOMP_RET_* base values (linux/seccomp.h), used for the kernel's GET_ACTION_AVAIL probe.
RET = {"SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000,
       "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_NOTIFY": 0x7FC00000,
       "SCMP_ACT_TRACE": 0x7FF00000, "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
OPS = {"SCMP_CMP_NE": "NE", "SCMP_CMP_LT": "LT", "SCMP_CMP_LE": "LE", "SCMP_CMP_EQ": "EQ",
       "SCMP_CMP_GE": "GE", "SCMP_CMP_GT": "GT", "SCMP_CMP_MASKED_EQ": "MASKED_EQ"}
ARCHES = ("X86 X86_64 X32 ARM AARCH64 LOONGARCH64 M68K MIPS MIPS64 MIPS64N32 MIPSEL MIPSEL64 MIPSEL64N32 PPC PPC64 "
          "PPC64LE S390 S390X SH SHEB PARISC PARISC64 RISCV64").split()
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": libc.SECCOMP_FILTER_FLAG_TSYNC,
         "SECCOMP_FILTER_FLAG_LOG": libc.SECCOMP_FILTER_FLAG_LOG,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": libc.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": libc.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV}
# After the filter is loaded, the notify fd still has to reach the agent: a NOTIFY on the syscall that
# sends it could never be answered (runc refuses `write` for the same reason: it uses a pipe, we sendmsg).
NOTIFY_FORBIDDEN = ("sendmsg",)
_OPTIMIZE_ABOVE = 32  # runc: binary-tree optimisation for longer rule sets (libseccomp ≤2.5.4 bug with 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    syscall: str
    action: str
    errno_ret: int | None
    args: tuple[tuple[int, str, int, int], ...]  # (index, SCMP_CMP_*, value, valueTwo)


@dataclasses.dataclass(frozen=True, slots=True)
class SeccompPlan:
    default_action: str
    default_errno: int | None
    architectures: tuple[str, ...]
    flags: tuple[str, ...]
    rules: tuple[Rule, ...]
    listener_path: str | None
    listener_metadata: str | None

    @property
    def has_notify(self) -> bool:
        return any(r.action == "SCMP_ACT_NOTIFY" for r in self.rules)


@dataclasses.dataclass(frozen=True, slots=True)
class Program:
    """A compiled filter, ready for seccomp(2): BPF instructions and load flags."""

    bpf: bytes
    flags: int
    notify: bool


def _action(name: str, at: str) -> str:
    if name not in RET:
        raise ConfigError(f"{at}: unknown seccomp action {name!r}")
    return name


def _errno(action: str, value: Any, at: str) -> int | None:
    if value is None:
        return None
    if action not in ERRNO_ACTIONS:
        # config-linux.md#seccomp: an errnoRet the action cannot return MUST be an error.
        raise ConfigError(f"{at}: action {action} cannot return an errno")
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ConfigError(f"{at}: {value!r} is not an errno (0..65535)")
    return value


def _rule_args(rule: Mapping[str, Any], at: str) -> list[tuple[int, str, int, int]]:
    out = []
    for j, a in enumerate(rule.get("args") or []):
        where = f"{at}.args[{j}]"
        idx, op = a.get("index"), a.get("op")
        if not isinstance(idx, int) or not 0 <= idx <= 5:
            raise ConfigError(f"{where}.index: {idx!r} is not a syscall argument index (0..5)")
        if op not in OPS:
            raise ConfigError(f"{where}.op: unknown seccomp operator {op!r}")
        vals = (a.get("value", 0), a.get("valueTwo", 0))
        if any(not isinstance(v, int) or not 0 <= v < 1 << 64 for v in vals):
            raise ConfigError(f"{where}: value/valueTwo must be uint64")
        out.append((idx, op, *vals))
    return out


def plan(sc: Mapping[str, Any], at: str = "linux.seccomp") -> SeccompPlan:
    """Pure: validate linux.seccomp and flatten it into one Rule per (syscall, condition set).

    A rule that compares one argument twice becomes one rule per comparison, as runc does (libseccomp
    cannot AND two comparisons of the same argument).
    """
    default = _action(sc.get("defaultAction", ""), f"{at}.defaultAction")
    if default == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"{at}.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")
    default_errno = _errno(default, sc.get("defaultErrnoRet"), f"{at}.defaultErrnoRet")
    arches = tuple(sc.get("architectures") or ())
    for i, a in enumerate(arches):
        if not a.startswith("SCMP_ARCH_") or a[10:] not in ARCHES:
            raise ConfigError(f"{at}.architectures[{i}]: unknown architecture {a!r}")
    flags = tuple(sc.get("flags") or ())
    for i, f in enumerate(flags):
        if f not in FLAGS:
            raise ConfigError(f"{at}.flags[{i}]: unknown seccomp flag {f!r}")
    listener, metadata = sc.get("listenerPath") or None, sc.get("listenerMetadata")
    if metadata is not None and not listener:
        raise ConfigError(f"{at}.listenerMetadata: MUST NOT be set without listenerPath")
    rules: list[Rule] = []
    for i, r in enumerate(sc.get("syscalls") or []):
        where = f"{at}.syscalls[{i}]"
        action = _action(r.get("action", ""), f"{where}.action")
        err = _errno(action, r.get("errnoRet"), f"{where}.errnoRet")
        args = _rule_args(r, where)
        indexes = [a[0] for a in args]
        groups = [(a,) for a in args] if len(set(indexes)) < len(indexes) else [tuple(args)]
        if not r.get("names"):
            raise ConfigError(f"{where}.names: at least one syscall name is required")
        for j, name in enumerate(r["names"]):
            if not name:
                raise ConfigError(f"{where}.names[{j}]: empty syscall name")
            if action == "SCMP_ACT_NOTIFY":
                if not listener:
                    raise ConfigError(f"{where}.action: SCMP_ACT_NOTIFY needs {at}.listenerPath")
                if name in NOTIFY_FORBIDDEN:
                    raise ConfigError(f"{where}: SCMP_ACT_NOTIFY cannot be used for {name} (the runtime "
                                      "needs it to hand the notify fd to the agent)")
            rules.extend(Rule(name, action, err, g) for g in groups)
    return SeccompPlan(default, default_errno, arches, flags, tuple(rules), listener, metadata)


# --------------------------------------------------------------------------- libseccomp (host side only)

_BINDINGS: ModuleType | None = None


def bindings() -> ModuleType:
    """The libseccomp bindings: the distribution's `seccomp` module, else `pyseccomp` (same API).

    Call before pivot_root (prepare does): importing later would load code from the container's rootfs.
    """
    global _BINDINGS
    if _BINDINGS is None:
        try:
            import seccomp as mod  # type: ignore[import-not-found]
        except ImportError:
            import ctypes.util
            # pyseccomp looks its libraries up with find_library, which runs `ldconfig -p` twice: give it the
            # sonames directly (pyoci never shells out).
            orig = ctypes.util.find_library
            sonames = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
            ctypes.util.find_library = lambda name: sonames.get(name) or orig(name)
            try:
                import pyseccomp as mod  # type: ignore[import-untyped,no-redef]
            finally:
                ctypes.util.find_library = orig
        _BINDINGS = mod
    return _BINDINGS


def _action_value(sc: ModuleType, action: str, err: int | None) -> int:
    if action == "SCMP_ACT_ERRNO":
        return int(sc.ERRNO(EPERM if err is None else err))
    if action == "SCMP_ACT_TRACE":
        return int(sc.TRACE(EPERM if err is None else err))  # runc: TRACE's message defaults to EPERM
    attr = {"SCMP_ACT_KILL": "KILL_THREAD"}.get(action, action[len("SCMP_ACT_"):])
    return int(getattr(sc, attr))


def _syscall_nr(sc: ModuleType, name: str) -> int | None:
    try:
        nr = int(sc.resolve_syscall(sc.Arch.NATIVE, name))
    except ValueError:
        return None
    return None if nr == -1 else nr  # __NR_SCMP_ERROR; negative pseudo numbers are other-arch syscalls


def build_filter(p: SeccompPlan) -> Any:
    """The libseccomp filter object for a plan (not loaded)."""
    sc = bindings()
    default = _action_value(sc, p.default_action, p.default_errno)
    try:
        filt = sc.SyscallFilter(default)
    except OSError as exc:
        raise ConfigError(f"linux.seccomp.defaultAction: libseccomp refused {p.default_action}: {exc}") from None
    for arch in p.architectures:
        token = getattr(sc.Arch, arch[len("SCMP_ARCH_"):], None)
        if token is None:
            raise ConfigError(f"linux.seccomp.architectures: {arch} is not supported by these libseccomp bindings")
        try:
            if not filt.exist_arch(token):
                filt.add_arch(token)
        except OSError as exc:
            raise ConfigError(f"linux.seccomp.architectures: libseccomp cannot add {arch}: {exc}") from None
    if len(p.rules) > _OPTIMIZE_ABOVE:
        try:
            filt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
        except (OSError, AttributeError) as exc:
            log.debug("seccomp binary tree optimisation not available: %s", exc)
    for r in p.rules:
        action = _action_value(sc, r.action, r.errno_ret)
        if action == default:
            continue  # redundant with the default action; libseccomp would refuse it (runc skips it too)
        nr = _syscall_nr(sc, r.syscall)
        if nr is None:
            # runc: an unknown syscall is assumed absent from this kernel; skip it.
            log.debug("unknown seccomp syscall %r ignored", r.syscall)
            continue
        conds = [sc.Arg(idx, getattr(sc, OPS[op]), v1, v2) for idx, op, v1, v2 in r.args]
        try:
            filt.add_rule(action, nr, *conds)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"linux.seccomp: cannot add rule {r.action} for syscall {r.syscall!r}: {exc}") from None
    return filt


def _export(filt: Any, method: str) -> bytes:
    fd = os.memfd_create("pyoci-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            getattr(filt, method)(f)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def export_pfc(p: SeccompPlan) -> str:
    """libseccomp's pseudo filter code for a plan (what tests compare)."""
    return _export(build_filter(p), "export_pfc").decode()


def load_flags(p: SeccompPlan) -> int:
    flags = 0
    for f in p.flags:
        if f == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" and not p.has_notify:
            log.debug("seccomp flag %s ignored: no SCMP_ACT_NOTIFY rule", f)  # the kernel refuses it alone
            continue
        flags |= FLAGS[f]
    if p.has_notify:
        flags |= libc.SECCOMP_FILTER_FLAG_NEW_LISTENER
        if flags & libc.SECCOMP_FILTER_FLAG_TSYNC:
            flags |= libc.SECCOMP_FILTER_FLAG_TSYNC_ESRCH  # kernel: TSYNC + listener needs TSYNC_ESRCH
    return flags


def check_kernel(p: SeccompPlan, flags: int) -> None:
    """Fail now, with the field named, if the running kernel lacks an action or a flag the plan needs."""
    for action in sorted({p.default_action, *(r.action for r in p.rules)}):
        if not libc.seccomp_action_avail(RET[action]):
            raise ConfigError(f"linux.seccomp: action {action} is not supported by the running kernel")
    if _flags_ok(flags):
        return
    for name, bit in FLAGS.items():
        extra = libc.SECCOMP_FILTER_FLAG_NEW_LISTENER if name.endswith("KILLABLE_RECV") else 0
        if flags & bit and not _flags_ok(bit | extra):
            raise ConfigError(f"linux.seccomp.flags: {name} is not supported by the running kernel")
    raise ConfigError(f"linux.seccomp: the running kernel refuses seccomp flags {flags:#x}")


def _flags_ok(flags: int) -> bool:
    try:
        libc.seccomp_set_filter(None, flags)  # NULL program: EFAULT when the flags are accepted
    except OSError as exc:
        return exc.errno == 14
    return False  # unreachable: the kernel cannot install a NULL program


def compile_program(p: SeccompPlan) -> Program:
    """Build and export the BPF program and check kernel support (before pivot_root)."""
    flags = load_flags(p)
    check_kernel(p, flags)
    bpf = _export(build_filter(p), "export_bpf")
    if not bpf or len(bpf) % 8:
        raise PyociError(f"libseccomp exported a malformed BPF program ({len(bpf)} bytes)")
    if len(bpf) // 8 > 4096:
        raise ConfigError(f"linux.seccomp: the filter needs {len(bpf) // 8} BPF instructions, more than the "
                          "kernel's 4096")
    return Program(bpf, flags, p.has_notify)


def load(prog: Program) -> int | None:
    """Install the filter on this thread; returns the notify fd when the filter has NOTIFY rules.

    Without no_new_privs this needs CAP_SYS_ADMIN (confine.py orders the calls accordingly).
    """
    ret = libc.seccomp_set_filter(prog.bpf, prog.flags)
    return ret if prog.notify else None


# --------------------------------------------------------------------------- listener (seccomp notify agent)

def connect_listener(path: str) -> socket.socket:
    """Connect to listenerPath now (before pivot_root: the path is a host path)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise PyociError(f"linux.seccomp.listenerPath {path!r}: cannot connect: {exc}") from None
    return sock


def listener_message(p: SeccompPlan, state: Mapping[str, Any]) -> bytes:
    """config-linux.md#seccomp "container process state": what the agent receives with the fd."""
    msg: dict[str, Any] = {"ociVersion": state.get("ociVersion", "1.3.0"), "fds": ["seccompFd"],
                           "pid": state.get("pid", 0)}
    if p.listener_metadata:
        msg["metadata"] = p.listener_metadata
    msg["state"] = dict(state)
    return json.dumps(msg).encode()


def send_listener(sock: socket.socket, notify_fd: int, message: bytes) -> None:
    """One connection, one state, the fd in the first sendmsg (SCM_RIGHTS), then close."""
    try:
        sent = sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", notify_fd))])
        if sent < len(message):
            sock.sendall(message[sent:])
    except OSError as exc:
        # config-linux.md#seccomp: a failure to send MUST be an error.
        raise PyociError(f"linux.seccomp.listenerPath: cannot send the seccomp fd: {exc}") from None
    finally:
        sock.close()
