"""Conformance scenarios for the process-confinement fields (issue 4), in conformance/'s Scenario format.

conformance/ is another helper's: its SCENARIOS list can take these with `*confine_scenarios.SCENARIOS`.
Until then tests/integration/test_confine_conformance.py runs them under pyoci, runc and crun with the same
driver. Masks: CAP_CHOWN 0x1, CAP_KILL 0x20, CAP_NET_BIND_SERVICE 0x400, CAP_NET_RAW 0x2000,
CAP_AUDIT_WRITE 0x20000000.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conformance import confine_fixtures as fx
from conformance import invalid
from conformance.checks import both, contains, eq
from conformance.core import Facts, Run, Scenario

BASE_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
SETS = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_AUDIT_WRITE"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"]}
ST = "host.running.status."


def _status(**want: str) -> Callable[[Facts], list[str]]:
    return both(*(eq(ST + k, v) for k, v in want.items()))


def _caps(sets: dict[str, list[str]]) -> Callable[[dict[str, Any], Run], None]:
    return lambda c, r: c["process"].update(capabilities={k: list(v) for k, v in sets.items()})


def _user(uid: int) -> Callable[[dict[str, Any], Run], None]:
    return lambda c, r: c["process"]["user"].update(uid=uid, gid=uid)


def _edits(*edits: Callable[[dict[str, Any], Run], None]) -> Callable[[dict[str, Any], Run], None]:
    def edit(c: dict[str, Any], r: Run) -> None:
        for e in edits:
            e(c, r)
    return edit


def _seccomp(sc: dict[str, Any]) -> Callable[[dict[str, Any], Run], None]:
    return lambda c, r: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW", **sc})


def _nnp(value: bool) -> Callable[[dict[str, Any], Run], None]:
    return lambda c, r: c["process"].update(noNewPrivileges=value)


def _try(name: str, cmd: str) -> str:
    """Probe section `name`: the command's output and its exit status."""
    return f"echo @@{name}; {cmd} 2>&1; echo rc=$?\n"


# ---- static helpers put into the bundle's rootfs -------------------------------------------------------------
def _install(helper: Callable[[], Path | str], dest: str, mode: int = 0o755) -> Callable[[Path, Run], None]:
    def prepare(bundle: Path, run: Run) -> None:
        binary = helper()
        assert isinstance(binary, Path), binary
        fx.install(binary, bundle / "rootfs", dest, mode)
    return prepare


def _skip_unless(helper: Callable[[], Path | str]) -> Callable[[], str | None]:
    def skip() -> str | None:
        out = helper()
        return out if isinstance(out, str) else None
    return skip


# ---- the seccomp notify agent ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _agent(run: Run) -> Iterator[None]:
    path = run.ws.path / f"agent-{run.runtime.name}-{run.tag}.sock"
    agent = fx.NotifyAgent(path)
    run.values["agent"] = agent
    try:
        yield
    finally:
        agent.close()


def _agent_edit(nnp: bool) -> Callable[[dict[str, Any], Run], None]:
    def edit(c: dict[str, Any], r: Run) -> None:
        c["process"]["noNewPrivileges"] = nnp
        c["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(r.values["agent"].path),
            "listenerMetadata": "conf-meta",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
    return edit


def _agent_facts(run: Run) -> Facts:
    agent: fx.NotifyAgent = run.values["agent"]
    msgs = agent.messages
    f: Facts = {"agent.connections": str(len(msgs))}
    if msgs:
        m = msgs[0]
        f["agent.fds"] = ",".join(m.get("fds", []))
        f["agent.metadata"] = str(m.get("metadata"))
        f["agent.pid>0"] = "yes" if isinstance(m.get("pid"), int) and m["pid"] > 0 else "no"
        f["agent.state.id"] = run.norm(str((m.get("state") or {}).get("id")))
        f["agent.state.pid==pid"] = "yes" if (m.get("state") or {}).get("pid") == m.get("pid") else "no"
    f["agent.answered-mkdir"] = "yes" if 83 in agent.answered or 258 in agent.answered else "no"
    return f


_NOTIFY_CHECK = both(contains("in.mkdir", "No medium found"), eq("agent.connections", "1"),
                     eq("agent.fds", "seccompFd"), eq("agent.metadata", "conf-meta"), eq("agent.pid>0", "yes"),
                     eq("agent.state.id", "<id>"), eq("agent.state.pid==pid", "yes"),
                     eq("agent.answered-mkdir", "yes"))


# ---- host-side looks at the running process --------------------------------------------------------------------
def _sched(run: Run, pid: int) -> Facts:
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"during.policy": str(os.sched_getscheduler(pid)), "during.nice": fields[16]}


def _ioprio(run: Run, pid: int) -> Facts:
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.syscall(252, 1, pid)  # ioprio_get(IOPRIO_WHO_PROCESS, pid) on x86_64
    return {"during.ioprio": str(ret) if ret >= 0 else f"errno {ctypes.get_errno()}"}


def _no_masked_keys(c: dict[str, Any], r: Run) -> None:
    c["linux"]["maskedPaths"] = [p for p in c["linux"]["maskedPaths"] if p != "/proc/keys"]


def _rlimits(c: dict[str, Any], r: Run) -> None:
    c["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}, {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000}, {"type": "RLIMIT_CPU", "soft": 100, "hard": 200},
        {"type": "RLIMIT_MSGQUEUE", "soft": 8192, "hard": 16384}, {"type": "RLIMIT_NICE", "soft": 0, "hard": 0}]


LIM = "host.running.limits."


def _skip_without_sys_resource() -> str | None:
    from pyoci import capabilities
    if capabilities.available(capabilities.last_cap()) >> capabilities.CAPS["CAP_SYS_RESOURCE"] & 1:
        return None
    return "host: CAP_SYS_RESOURCE is not in the bounding set: a negative oom_score_adj cannot be set"


def _all_syscalls_except(*names: str) -> list[str]:
    """Every x86_64 syscall name libseccomp knows, minus `names` (an allow-list that denies only those)."""
    from pyoci import seccomp
    sc = seccomp.bindings()
    out = []
    for nr in range(0, 512):
        try:
            name = sc.resolve_syscall(sc.Arch.NATIVE, nr)
        except ValueError:
            continue
        name = name.decode() if isinstance(name, bytes) else name
        if name not in names:
            out.append(name)
    return out
MKDIR = _try("mkdir", "mkdir /dev/shm/d")

SCENARIOS: list[Scenario] = [
    # ---- capabilities ----
    # uid 0 execve: P' = bounding | inheritable, but no_new_privs (BASE) caps it at the old permitted set.
    Scenario("caps.sets.root", "config.md#linux-process: capabilities (5 sets), uid 0",
             _status(CapBnd="0000000020002021", CapPrm="0000000000002021", CapEff="0000000000002021",
                     CapInh="0000000000000020", CapAmb="0000000000000020"),
             edit=_caps(SETS), facts=(ST + "Cap",)),
    Scenario("caps.sets.root.nnp-false", "capabilities, uid 0, no no_new_privs: execve grants the bounding set",
             _status(CapBnd="0000000020002021", CapPrm="0000000020002021", CapEff="0000000020002021",
                     CapInh="0000000000000020", CapAmb="0000000000000020"),
             edit=_edits(_caps(SETS), _nnp(False)), facts=(ST + "Cap",)),
    Scenario("caps.sets.non-root", "config.md#linux-process: capabilities (5 sets), uid 1000: ambient survives",
             _status(CapBnd="0000000020002021", CapPrm="0000000000000020", CapEff="0000000000000020",
                     CapInh="0000000000000020", CapAmb="0000000000000020", Uid="1000 1000 1000 1000"),
             edit=_edits(_caps(SETS), _user(1000)), facts=(ST,)),
    Scenario("caps.chown-granted", "capabilities(7): CAP_CHOWN present, chown works",
             eq("in.chown", "rc=0"), edit=_caps({k: ["CAP_CHOWN"] for k in ("bounding", "effective", "permitted")}),
             probe=_try("chown", "touch /dev/shm/f && chown 1 /dev/shm/f"), facts=("in.chown", ST + "Cap")),
    Scenario("caps.chown-missing", "capabilities(7): CAP_CHOWN absent, chown is refused",
             contains("in.chown", "Operation not permitted"),
             probe=_try("chown", "touch /dev/shm/f && chown 1 /dev/shm/f"), facts=("in.chown", ST + "Cap")),
    Scenario("caps.ungrantable-warns", "config.md#linux-process: ungrantable capability = warning, still runs",
             _status(CapBnd="0000000020000420", CapEff="0000000020000420"),
             edit=_caps({k: BASE_CAPS + ["CAP_SYS_RESOURCE"] for k in ("bounding", "effective", "permitted")}),
             facts=(ST + "Cap",)),
    Scenario("caps.none", "config.md#linux-process: no capabilities object = no capabilities",
             _status(CapBnd="0000000000000000", CapPrm="0000000000000000", CapEff="0000000000000000"),
             edit=lambda c, r: c["process"].pop("capabilities"), facts=(ST + "Cap",)),
    # ---- no_new_privs ----
    Scenario("nnp.true", "config.md#linux-process: noNewPrivileges true", _status(NoNewPrivs="1"),
             facts=(ST + "NoNewPrivs",)),
    Scenario("nnp.false", "config.md#linux-process: noNewPrivileges false", _status(NoNewPrivs="0"),
             edit=_nnp(False), facts=(ST + "NoNewPrivs",)),
    Scenario("nnp.setuid-blocked", "security.md C7: NoNewPrivs keeps a setuid-root binary at the caller's euid",
             both(eq("in.euid", "uid=1000 euid=1000\nrc=0"), _status(NoNewPrivs="1")),
             edit=_user(1000), prepare=_install(fx.euid_helper, "/bin/euid", 0o4755),
             probe=_try("euid", "/bin/euid"), skip=_skip_unless(fx.euid_helper), facts=("in.euid",)),
    Scenario("nnp.setuid-control", "security.md C7 control: without NoNewPrivs the setuid bit works",
             eq("in.euid", "uid=1000 euid=0\nrc=0"),
             edit=_edits(_user(1000), _nnp(False)), prepare=_install(fx.euid_helper, "/bin/euid", 0o4755),
             probe=_try("euid", "/bin/euid"), skip=_skip_unless(fx.euid_helper), facts=("in.euid",)),
    # ---- seccomp ----
    Scenario("seccomp.errno", "config-linux.md#seccomp: SCMP_ACT_ERRNO with errnoRet (64-bit ABI)",
             both(contains("in.mkdir", "Function not implemented"), _status(Seccomp="2")),
             edit=_seccomp({"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                          "errnoRet": errno.ENOSYS}]}),
             probe=MKDIR, facts=("in.mkdir", ST + "Seccomp")),
    Scenario("seccomp.errno.i386", "security.md C8: errnoRet in the 32-bit ABI (int 0x80), architectures",
             eq("in.mkdir32", "errno=38\nrc=38"),
             edit=_seccomp({"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}),
             prepare=_install(fx.mkdir32_helper, "/bin/mkdir32"), skip=_skip_unless(fx.mkdir32_helper),
             probe=_try("mkdir32", "/bin/mkdir32 /dev/shm/d32"), facts=("in.mkdir32",)),
    Scenario("seccomp.arch-not-listed", "config-linux.md#seccomp: an ABI not in architectures is killed",
             contains("in.mkdir32", "rc=159"),
             edit=_seccomp({"architectures": ["SCMP_ARCH_X86_64"],
                            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}),
             prepare=_install(fx.mkdir32_helper, "/bin/mkdir32"), skip=_skip_unless(fx.mkdir32_helper),
             probe=_try("mkdir32", "/bin/mkdir32 /dev/shm/d32"), facts=("in.mkdir32",)),
    Scenario("seccomp.default-errno", "config-linux.md#seccomp: defaultAction ERRNO with defaultErrnoRet",
             both(contains("in.mkdir", "No such device"), contains("in.echo", "rc=0")),
             edit=lambda c, r: _seccomp({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENODEV,
                                         "syscalls": [{"names": _all_syscalls_except("mkdir", "mkdirat"),
                                                       "action": "SCMP_ACT_ALLOW"}]})(c, r),
             probe=MKDIR + _try("echo", "echo hi > /dev/shm/e"), facts=("in.mkdir", "in.echo")),
    Scenario("seccomp.default-log", "config-linux.md#seccomp: defaultAction SCMP_ACT_LOG allows",
             both(_status(Seccomp="2"), eq("in.mkdir", "rc=0")), edit=_seccomp({"defaultAction": "SCMP_ACT_LOG"}),
             probe=MKDIR, facts=(ST + "Seccomp", "in.mkdir")),
    Scenario("seccomp.args", "config-linux.md#seccomp: several args on one rule (socket AF_INET6, SOCK_STREAM)",
             both(contains("in.nc6", "Address family not supported"), contains("in.nc4", "Connection refused")),
             edit=_seccomp({"syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                                          "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 10},
                                                   {"index": 1, "op": "SCMP_CMP_EQ", "value": 1}]}]}),
             probe=_try("nc6", "nc -w1 ::1 1") + _try("nc4", "nc -w1 127.0.0.1 1"), facts=("in.nc",)),
    Scenario("seccomp.rules-per-syscall", "config-linux.md#seccomp: several rules on one syscall, MASKED_EQ, EQ",
             both(contains("in.chmod700", "Operation not supported"), contains("in.chmod600", "Permission denied"),
                  eq("in.chmod644", "rc=0")),
             edit=_seccomp({"syscalls": [
                 {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95,
                  "args": [{"index": 1, "op": "SCMP_CMP_MASKED_EQ", "value": 0o777, "valueTwo": 0o700}]},
                 {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                  "args": [{"index": 1, "op": "SCMP_CMP_EQ", "value": 0o600}]}]}),
             probe="touch /dev/shm/f\n" + "".join(_try(f"chmod{m}", f"chmod {m} /dev/shm/f") for m in (700, 600, 644)),
             facts=("in.chmod",)),
    Scenario("seccomp.kill-process", "config-linux.md#seccomp: SCMP_ACT_KILL_PROCESS (SIGSYS)",
             eq("in.mkdir", "rc=159"),
             edit=_seccomp({"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
             probe=_try("mkdir", "(mkdir /dev/shm/k)"), facts=("in.mkdir",)),
    Scenario("seccomp.flags", "config-linux.md#seccomp: flags LOG, SPEC_ALLOW, TSYNC accepted",
             both(_status(Seccomp="2"), contains("in.mkdir", "Function not implemented")),
             edit=_seccomp({"flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                      "SECCOMP_FILTER_FLAG_TSYNC"],
                            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                          "errnoRet": 38}]}),
             probe=MKDIR, facts=(ST + "Seccomp", "in.mkdir")),
    Scenario("seccomp.nnp-false-non-root", "seccomp without no_new_privs (loaded before the capability drop)",
             both(_status(NoNewPrivs="0", Seccomp="2", Uid="1000 1000 1000 1000"),
                  contains("in.mkdir", "Function not implemented")),
             edit=_edits(_nnp(False), _user(1000), _seccomp({"syscalls": [
                 {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})),
             probe=MKDIR, facts=(ST, "in.mkdir")),
    Scenario("seccomp.notify", "config-linux.md#seccomp: listenerPath gets state + fd; the agent answers",
             _NOTIFY_CHECK, setup=_agent, edit=_agent_edit(True), probe=MKDIR, after=_agent_facts,
             facts=("in.mkdir", "agent.")),
    Scenario("seccomp.notify.nnp-false", "config-linux.md#seccomp: notify without no_new_privs",
             _NOTIFY_CHECK, setup=_agent, edit=_agent_edit(False), probe=MKDIR, after=_agent_facts,
             facts=("in.mkdir", "agent.")),
    # ---- the rest of the process block ----
    Scenario("rlimits.several", "config.md#posix-process: rlimits, hard and soft, as getrlimit reports",
             both(eq(LIM + "Max open files", "512 768"), eq(LIM + "Max core file size", "0 4096"),
                  eq(LIM + "Max processes", "1000 2000"), eq(LIM + "Max cpu time", "100 200"),
                  eq(LIM + "Max msgqueue size", "8192 16384"), eq(LIM + "Max nice priority", "0 0")),
             edit=_rlimits, facts=(LIM,)),
    Scenario("oomScoreAdj", "config.md#linux-process: oomScoreAdj",
             eq("host.running.oom_score_adj", "500"), edit=lambda c, r: c["process"].update(oomScoreAdj=500),
             facts=("host.running.oom_score_adj",)),
    Scenario("oomScoreAdj.negative", "config.md#linux-process: oomScoreAdj below 0 (needs CAP_SYS_RESOURCE)",
             eq("host.running.oom_score_adj", "-500"), edit=lambda c, r: c["process"].update(oomScoreAdj=-500),
             skip=_skip_without_sys_resource, facts=("host.running.oom_score_adj",)),
    Scenario("scheduler.batch", "config.md#linux-process: scheduler SCHED_BATCH with nice",
             both(eq("during.policy", "3"), eq("during.nice", "7")),
             edit=lambda c, r: c["process"].update(scheduler={"policy": "SCHED_BATCH", "nice": 7}),
             during=_sched, facts=("during.",)),
    Scenario("ioPriority", "config.md#linux-process: ioPriority (ioprio_set)",
             eq("during.ioprio", str(2 << 13 | 3)),
             edit=lambda c, r: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 3}),
             during=_ioprio, facts=("during.",)),
    Scenario("personality.linux32", "config-linux.md#personality: LINUX32",
             eq("in.uname", "i686"), edit=lambda c, r: c["linux"].update(personality={"domain": "LINUX32"}),
             probe="echo @@uname; uname -m\n", facts=("in.uname",)),
    # runc names it _ses.<id>, crun <id>: the spec names nothing, so either passes.
    Scenario("keyring.session", "runc: a new session keyring named for the container (not the caller's)",
             contains("in.keys", "<id>: empty"), edit=_no_masked_keys,
             probe="echo @@keys; grep -o 'keyring .*' /proc/keys\n", facts=("in.keys",)),
    # ---- MUST-error and fail-closed cases ----
    invalid._invalid("capability-typo", "pyoci: a name that is not a capability is a config error",
                     lambda c, r: c["process"]["capabilities"]["bounding"].append("CAP_CHOWNN")),
    invalid._invalid("seccomp-action", "config.md valid values: unknown seccomp action MUST error",
                     _seccomp({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_CONFORMANCE"}]})),
    invalid._invalid("seccomp-errnoret-kill", "config-linux.md#seccomp: errnoRet on an action without errno",
                     _seccomp({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]})),
    invalid._invalid("seccomp-metadata-no-path", "config-linux.md#seccomp: listenerMetadata without listenerPath",
                     _seccomp({"listenerMetadata": "x"})),
    invalid._invalid("rlimit-hard-raise", "config.md#posix-process: setrlimit the kernel refuses (no "
                     "CAP_SYS_RESOURCE to raise MEMLOCK's hard limit)",
                     lambda c, r: c["process"]["rlimits"].append(
                         {"type": "RLIMIT_MEMLOCK", "soft": 1 << 40, "hard": 1 << 40})),
    invalid._invalid("apparmor-disabled", "fail closed: apparmorProfile on a host without AppArmor",
                     lambda c, r: c["process"].update(apparmorProfile="conformance-profile")),
    invalid._invalid("selinux-disabled", "fail closed: selinuxLabel on a host without SELinux",
                     lambda c, r: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0")),
    invalid._invalid("mountlabel-disabled", "fail closed: linux.mountLabel on a host without SELinux",
                     lambda c, r: c["linux"].update(mountLabel="system_u:object_r:container_file_t:s0")),
]
