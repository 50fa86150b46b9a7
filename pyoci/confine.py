"""Process confinement of the container process: user/groups, capabilities, no_new_privs, seccomp, rlimits,
oom score, scheduler, I/O priority, personality, session keyring, LSM labels, exec hygiene.

pyoci/init.py calls, in this order (the forked, never exec'ed, single-threaded container init):
  prepare()            before pivot_root: validate and plan everything, compile the seccomp BPF, open the
                       procfs handles, connect the seccomp listener, import everything needed later
  apply_process()      after pivot_root, still root with all capabilities
  resolve_executable() after pivot_root: execvp-style lookup inside the container, refusing magic links
  apply_credentials()  bounding set → keepcaps → groups/gid/uid → capset → ambient (seccomp first without NNP)
  final()              no_new_privs, then the seccomp filter: the last thing before close_fds + execve
After pivot_root nothing is imported, dlopen'ed or resolved through NSS (security.md §2, class 15).
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
import struct
from collections.abc import Mapping
from typing import Any

from pyoci import capabilities, confine_exec, lsm
from pyoci.confine_exec import resolve_executable, with_home  # noqa: F401  (part of this module's API)
from pyoci.confine_seal import SEALED_ENV  # noqa: F401  (re-exported)
from pyoci import seccomp as scmp
from pyoci.errors import ConfigError, PyociError, SyscallError
from pyoci.linux import libc

log = logging.getLogger(__name__)

# getrlimit(2) resource numbers (asm-generic; x86 and arm share them).
RLIMITS = {f"RLIMIT_{n}": i for i, n in enumerate(
    "CPU FSIZE DATA STACK CORE RSS NPROC NOFILE MEMLOCK AS LOCKS SIGPENDING MSGQUEUE NICE RTPRIO RTTIME".split())}
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4,
                  "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
_SCHED_ATTR = struct.Struct("IIQiIQQQII")  # struct sched_attr, SCHED_ATTR_SIZE_VER1 (56 bytes)
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
# personality(2) flag bits (linux/personality.h). The spec defines no flag values yet; pyoci accepts the
# kernel's names and rejects anything else.
PERSONALITY_FLAGS = {"UNAME26": 0x0020000, "ADDR_NO_RANDOMIZE": 0x0040000, "FDPIC_FUNCPTRS": 0x0080000,
                     "MMAP_PAGE_ZERO": 0x0100000, "ADDR_COMPAT_LAYOUT": 0x0200000, "READ_IMPLIES_EXEC": 0x0400000,
                     "ADDR_LIMIT_32BIT": 0x0800000, "SHORT_INODE": 0x1000000, "WHOLE_SECONDS": 0x2000000,
                     "STICKY_TIMEOUTS": 0x4000000, "ADDR_LIMIT_3GB": 0x8000000}
PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Rlimit:
    name: str
    resource: int
    soft: int
    hard: int


@dataclasses.dataclass(frozen=True, slots=True)
class Sched:
    policy: str
    attr: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Confinement:
    """Everything apply_*/final need, computed and opened before pivot_root."""

    cid: str
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    umask: int | None
    setgroups: bool                       # False when the user namespace has setgroups=deny
    caps: capabilities.CapPlan
    no_new_privs: bool
    rlimits: tuple[Rlimit, ...]
    oom_score_adj: int | None
    oom_fd: int | None                    # <private proc>/self/oom_score_adj
    oom_writable: bool                    # False: the runtime process wrote it, we only verify (userns)
    sched: Sched | None
    ioprio: int | None
    persona: int | None
    cpus_final: frozenset[int] | None
    keyring: str | None                   # session keyring name, None with --no-new-keyring
    keyring_perm: int
    labels: tuple[tuple[lsm.Label, int], ...]   # (label, attr fd opened by this thread)
    seccomp: scmp.SeccompPlan | None
    program: scmp.Program | None
    listener: socket.socket | None
    seccomp_loaded: list[bool] = dataclasses.field(default_factory=lambda: [False])


# --------------------------------------------------------------------------- pure planners

def _uint(v: Any, at: str, bits: int = 64) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << bits:
        raise ConfigError(f"{at}: {v!r} is not a uint{bits}")
    return v


def plan_rlimits(proc: Mapping[str, Any]) -> tuple[Rlimit, ...]:
    out: list[Rlimit] = []
    seen: set[str] = set()
    for i, rl in enumerate(proc.get("rlimits") or []):
        at = f"process.rlimits[{i}]"
        name = rl.get("type")
        if name not in RLIMITS:  # config.md#posix-process: an unmappable type MUST be an error
            raise ConfigError(f"{at}.type: {name!r} is not a Linux resource limit")
        if name in seen:         # … and so MUST a duplicate
            raise ConfigError(f"{at}.type: duplicate {name}")
        seen.add(name)
        soft, hard = _uint(rl.get("soft"), f"{at}.soft"), _uint(rl.get("hard"), f"{at}.hard")
        if soft > hard:
            raise ConfigError(f"{at}: soft {soft} is greater than hard {hard}")
        out.append(Rlimit(name, RLIMITS[name], soft, hard))
    return tuple(out)


def plan_scheduler(proc: Mapping[str, Any]) -> Sched | None:
    s = proc.get("scheduler")
    if not s:
        return None
    at = "process.scheduler"
    policy = s.get("policy")
    if policy not in SCHED_POLICIES:
        raise ConfigError(f"{at}.policy: unknown policy {policy!r}")
    if policy == "SCHED_ISO":
        raise ConfigError(f"{at}.policy: SCHED_ISO is not implemented by Linux")
    flags = 0
    for i, f in enumerate(s.get("flags") or []):
        if f not in SCHED_FLAGS:
            raise ConfigError(f"{at}.flags[{i}]: unknown flag {f!r}")
        flags |= SCHED_FLAGS[f]
    nice, prio = s.get("nice", 0), s.get("priority", 0)
    if not isinstance(nice, int) or not -20 <= nice <= 19:
        raise ConfigError(f"{at}.nice: {nice!r} is outside -20..19")
    if not isinstance(prio, int) or not 0 <= prio <= 99:
        raise ConfigError(f"{at}.priority: {prio!r} is outside 0..99")
    rt, dl, period = (_uint(s.get(k, 0), f"{at}.{k}") for k in ("runtime", "deadline", "period"))
    attr = _SCHED_ATTR.pack(_SCHED_ATTR.size, SCHED_POLICIES[policy], flags, nice, prio, rt, dl, period, 0, 0)
    return Sched(policy, attr)


def plan_ioprio(proc: Mapping[str, Any]) -> int | None:
    io = proc.get("ioPriority")
    if not io:
        return None
    cls, prio = io.get("class"), io.get("priority", 0)
    if cls not in IOPRIO_CLASSES:
        raise ConfigError(f"process.ioPriority.class: unknown class {cls!r}")
    if not isinstance(prio, int) or not 0 <= prio <= 7:
        raise ConfigError(f"process.ioPriority.priority: {prio!r} is outside 0..7")
    return IOPRIO_CLASSES[cls] << 13 | prio


def plan_personality(linux: Mapping[str, Any]) -> int | None:
    p = linux.get("personality")
    if not p:
        return None
    domain = p.get("domain")
    if domain not in PERSONALITY_DOMAINS:
        raise ConfigError(f"linux.personality.domain: unknown domain {domain!r} (LINUX or LINUX32)")
    persona = PERSONALITY_DOMAINS[domain]
    for i, f in enumerate(p.get("flags") or []):
        if f not in PERSONALITY_FLAGS:
            raise ConfigError(f"linux.personality.flags[{i}]: unsupported personality flag {f!r}")
        persona |= PERSONALITY_FLAGS[f]
    return persona


def parse_cpus(text: str, at: str) -> frozenset[int]:
    """'0-3, 7' → {0, 1, 2, 3, 7} (the cpuset list format)."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise ConfigError(f"{at}: {text!r} is not a CPU list")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    if not cpus:
        raise ConfigError(f"{at}: {text!r} names no CPU")
    return frozenset(cpus)


def initial_cpus(spec: Mapping[str, Any]) -> frozenset[int] | None:
    """execCPUAffinity.initial: the runtime sets it on the exec'd process before it joins the cgroup."""
    text = ((spec.get("process") or {}).get("execCPUAffinity") or {}).get("initial")
    return parse_cpus(text, "process.execCPUAffinity.initial") if text else None


def _user(proc: Mapping[str, Any]) -> tuple[int, int, tuple[int, ...], int | None]:
    user = proc.get("user") or {}
    uid, gid = _uint(user.get("uid", 0), "process.user.uid", 32), _uint(user.get("gid", 0), "process.user.gid", 32)
    gids = tuple(_uint(g, f"process.user.additionalGids[{i}]", 32)
                 for i, g in enumerate(user.get("additionalGids") or []))
    umask = user.get("umask")
    if umask is not None and (not isinstance(umask, int) or not 0 <= umask <= 0o777):
        raise ConfigError(f"process.user.umask: {umask!r} is not a file mode mask (0..0o777)")
    return uid, gid, gids, umask


# --------------------------------------------------------------------------- prepare (before pivot_root)

def preload(spec: Mapping[str, Any]) -> None:
    """Import and dlopen what prepare() will need, in the runtime process *before* it forks.

    The container init may already be a mapped root in a new user namespace when prepare() runs, and then
    cannot read the host's Python library (e.g. a stdlib under a 0700 /root): the libseccomp bindings must
    be loaded by the parent. Cheap when the config has no seccomp section.
    """
    if (spec.get("linux") or {}).get("seccomp") is not None:
        scmp.bindings()


def prepare(spec: Mapping[str, Any], *, cid: str, bundle: str, no_new_keyring: bool,
            tenant: bool = False) -> Confinement:
    """Validate and plan the whole process block, open every handle needed later; nothing is applied.

    `tenant` is True for `exec` (execCPUAffinity applies to exec'd processes only, config.md).
    Raises ConfigError for invalid or unsupported values, including a label for a disabled LSM.
    """
    proc = spec.get("process") or {}
    linux = spec.get("linux") or {}
    uid, gid, gids, umask = _user(proc)
    last = capabilities.last_cap()
    caps = capabilities.plan(proc.get("capabilities"), last_cap=last, available=capabilities.available(last))
    for w in caps.warnings:
        log.warning("%s", w)  # config.md: a capability that cannot be granted MUST be logged as a warning
    rlimits, sched = plan_rlimits(proc), plan_scheduler(proc)
    ioprio, persona = plan_ioprio(proc), plan_personality(linux)
    cpus = (proc.get("execCPUAffinity") or {}).get("final")
    cpus_final = parse_cpus(cpus, "process.execCPUAffinity.final") if cpus and tenant else None
    oom = oom_score_adj(spec)
    labels = lsm.plan(spec, lsm.enabled())
    sc = linux.get("seccomp")
    splan = scmp.plan(sc) if sc is not None else None
    program = scmp.compile_program(splan) if splan else None
    confine_exec.remember_host_executables()
    oom_fd, oom_writable, label_fds = None, True, []
    if oom is not None or labels:
        proc_fd = lsm.open_private_proc()
        try:
            if oom is not None:
                oom_fd, oom_writable = _open_oom(proc_fd)
            label_fds = [(label, lsm.open_label(proc_fd, label)) for label in labels]
        finally:
            os.close(proc_fd)
    listener = None
    if splan and splan.has_notify and splan.listener_path:
        listener = scmp.connect_listener(splan.listener_path)
    userns = any(ns.get("type") == "user" for ns in linux.get("namespaces") or [])
    return Confinement(
        cid=cid, uid=uid, gid=gid, additional_gids=gids, umask=umask, setgroups=setgroups_allowed(),
        caps=caps, no_new_privs=bool(proc.get("noNewPrivileges")), rlimits=rlimits, oom_score_adj=oom,
        oom_fd=oom_fd, oom_writable=oom_writable, sched=sched, ioprio=ioprio, persona=persona, cpus_final=cpus_final,
        keyring=None if no_new_keyring else f"_ses.{cid}",
        # runc: the session keyring must be searchable by the container's root (other with a userns).
        keyring_perm=0x8 if userns else 0x80000,
        labels=tuple(label_fds), seccomp=splan, program=program, listener=listener)


def oom_score_adj(spec: Mapping[str, Any]) -> int | None:
    """process.oomScoreAdj, validated: for the runtime process to write to /proc/<init pid>/oom_score_adj."""
    oom = (spec.get("process") or {}).get("oomScoreAdj")
    if oom is not None and (not isinstance(oom, int) or isinstance(oom, bool) or not -1000 <= oom <= 1000):
        raise ConfigError(f"process.oomScoreAdj: {oom!r} is outside -1000..1000")
    return oom  # type: ignore[no-any-return]


def _open_oom(proc_fd: int) -> tuple[int, bool]:
    """(fd, writable). In a user namespace our non-dumpable /proc files belong to the host's root, which the
    container's root cannot write: then the runtime process writes /proc/<pid>/oom_score_adj (see
    oom_score_adj()) before it lets us go on, and apply_process() only verifies the value."""
    try:
        return lsm.open_proc_file(proc_fd, "self/oom_score_adj", os.O_WRONLY), True
    except OSError as exc:
        if exc.errno != errno.EACCES:
            raise
    return lsm.open_proc_file(proc_fd, "self/oom_score_adj", os.O_RDONLY), False


def become_root() -> None:
    """Act as the container's root in its new or joined user namespace (runc nsexec does the same), so
    that what we create belongs to a mapped id (an unmapped fsuid makes mkdir fail with EOVERFLOW).
    Skipped when container id 0 is unmapped."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        pass
    libc.prctl(libc.PR_SET_DUMPABLE, 0)  # id changes reset dumpable (class 3)


def _set_scheduler(sched: Any) -> None:
    libc.sched_setattr(sched.attr, what=sched.policy)


def _set_ioprio(ioprio: int) -> None:
    libc.ioprio_set(libc.IOPRIO_WHO_PROCESS, 0, ioprio)


def setgroups_allowed() -> bool:
    """False when /proc/self/setgroups says deny (a user namespace set up without setgroups)."""
    try:
        with open("/proc/self/setgroups", encoding="ascii") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


# --------------------------------------------------------------------------- apply (after pivot_root)

def apply_process(c: Confinement) -> None:
    """Everything that needs root and full capabilities but not the final credentials."""
    if c.keyring is not None:
        _join_keyring(c.keyring, c.keyring_perm)
    for rl in c.rlimits:
        try:
            libc.setrlimit(rl.resource, rl.soft, rl.hard, what=rl.name)
        except OSError as exc:
            raise PyociError(f"process.rlimits: {exc}") from None
    if c.oom_fd is not None:
        _apply_oom(c)
    for field, apply, arg in (("process.scheduler", _set_scheduler, c.sched),
                              ("process.ioPriority", _set_ioprio, c.ioprio),
                              ("linux.personality", libc.personality, c.persona)):
        if arg is not None:
            try:
                apply(arg)
            except SyscallError as exc:  # name the config field the kernel refused
                raise PyociError(f"config.json: {field}: {exc}") from None
    if c.cpus_final is not None:
        os.sched_setaffinity(0, c.cpus_final)
    # The exec label is written by this thread for its next execve (class 6: through the verified handle).
    for label, fd in c.labels:
        lsm.write_label(fd, label)
        os.close(fd)
    if c.umask is not None:  # config.md: left unchanged when unset (runc forces 0022; we follow the spec)
        os.umask(c.umask)


def _apply_oom(c: Confinement) -> None:
    assert c.oom_fd is not None
    try:
        if c.oom_writable:
            os.write(c.oom_fd, str(c.oom_score_adj).encode())
        else:
            have = int(os.read(c.oom_fd, 32).strip() or 0)
            if have != c.oom_score_adj:  # never run with a silently different score
                raise PyociError(f"process.oomScoreAdj {c.oom_score_adj}: is {have}; in a user namespace the "
                                 "runtime process must write /proc/<pid>/oom_score_adj")
    except OSError as exc:
        raise PyociError(f"process.oomScoreAdj {c.oom_score_adj}: cannot write oom_score_adj: "
                         f"[Errno {exc.errno}] {exc.strerror}") from None
    finally:
        os.close(c.oom_fd)


def _join_keyring(name: str, perm: int) -> None:
    try:
        key = libc.keyctl_join_session_keyring(name)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:  # runc: keyrings are best effort when the kernel lacks them
            log.debug("session keyring not supported by the kernel")
            return
        raise
    # 'type;uid;gid;perm;description': keep the permissions, add search for the container's root.
    old = int(libc.keyctl_describe(key).split(";")[3], 16)
    libc.keyctl_setperm(key, old | perm)


def apply_credentials(c: Confinement, state: Mapping[str, Any]) -> None:
    """Capabilities and ids, in the only order that works (security.md §3 item 9)."""
    if c.program is not None and not c.no_new_privs:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it now, before any capability is
        # dropped (runc does the same); with no_new_privs, final() loads it as late as possible.
        _load_seccomp(c, state)
    capabilities.drop_bounding(c.caps)
    pdeath = libc.get_pdeathsig()
    libc.prctl(libc.PR_SET_KEEPCAPS, 1)  # keep permitted caps across setuid away from 0
    _set_ids(c)
    libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    # setuid/setgid reset dumpable and the parent-death signal: stay hidden until execve (class 3).
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    if pdeath:
        libc.prctl(PR_SET_PDEATHSIG, pdeath)
    capabilities.set_sets(c.caps)
    capabilities.set_ambient(c.caps)


def _set_ids(c: Confinement) -> None:
    if c.setgroups:
        os.setgroups(list(c.additional_gids))
    elif c.additional_gids:
        log.warning("process.user.additionalGids ignored: setgroups is denied in this user namespace")
    try:
        os.setresgid(c.gid, c.gid, c.gid)
    except OSError as exc:
        raise PyociError(f"process.user.gid {c.gid}: setresgid: [Errno {exc.errno}] {exc.strerror}"
                         f"{' (not mapped in the user namespace?)' if exc.errno == errno.EINVAL else ''}") from None
    try:
        os.setresuid(c.uid, c.uid, c.uid)
    except OSError as exc:
        raise PyociError(f"process.user.uid {c.uid}: setresuid: [Errno {exc.errno}] {exc.strerror}"
                         f"{' (not mapped in the user namespace?)' if exc.errno == errno.EINVAL else ''}") from None


def final(c: Confinement, state: Mapping[str, Any]) -> None:
    """no_new_privs, then the seccomp filter: the lead closes fds and calls execve right after this."""
    if c.no_new_privs:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        if c.program is not None:
            _load_seccomp(c, state)


def _load_seccomp(c: Confinement, state: Mapping[str, Any]) -> None:
    if c.seccomp_loaded[0] or c.program is None or c.seccomp is None:
        return
    # Build the agent's message before loading: after load() only the sendmsg itself may run.
    message = scmp.listener_message(c.seccomp, state) if c.listener is not None else b""
    fd = scmp.load(c.program)
    c.seccomp_loaded[0] = True
    if fd is not None:
        try:
            if c.listener is not None:
                scmp.send_listener(c.listener, fd, message)
        finally:
            os.close(fd)  # the container must never hold its own notify fd


def close_fds(keep: int) -> None:
    """close_range(keep, ~0): the very last step before execve (class 2). Do nothing but execve after it."""
    libc.close_range(keep)


def close_inherited_fds(passed: int) -> None:
    """Close every fd the caller leaked to us beyond stdio and the `passed` ones (LISTEN_FDS + --preserve-fds).

    runc marks them CLOEXEC (CloseExecFrom(3)) because its init is exec'ed; pyoci's container init is only
    forked, so CLOEXEC would not keep a caller's host fd out of it while the container sits in `created`
    (security.md B1, CVE-2024-21626 class). Call first thing in create/run/exec, before opening anything.
    """
    libc.close_range(3 + passed)


def seal_interpreter() -> bool:
    """See pyoci.confine_seal.seal (kept there so the CLI can call it before importing anything heavy)."""
    from pyoci import confine_seal
    return confine_seal.seal()
