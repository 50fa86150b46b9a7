"""`exec`: start one more process inside a running container, confined exactly like its init.

Runtime side (exec_process): status checks, fds of the init's namespaces and root, fork T1, put it in the
container's cgroup, the sync conversation, pid file, then --detach or wait (128+signal) / relay a terminal.
T1 (intermediate): joins the init's pid and time namespaces (they apply to children) and forks T2.
T2 (the tenant): plans its confinement while the host is still visible, joins user (first), network, ipc,
uts, cgroup and mount (last), chroots into the init's root, sets up the console, cwd, confinement, execve.

Sync protocol (sync.py SOCK_SEQPACKET; T1 and T2 share the child end):
| sender | message                 | reply                    | what happens                                        |
|--------|-------------------------|--------------------------|-----------------------------------------------------|
| parent | {"type":"go"}           | –                        | T1 is in the container's cgroup: join, fork T2      |
| T1     | {"type":"pid","pid":N}  | {"type":"hostpid","pid"} | T1 exits; the reply is read by T2                   |
| T2     | {"type":"log",…}        | –                        | parent re-emits the line                            |
| T2     | {"type":"error","msg"}  | –                        | exec fails before the program runs (exit 255)       |
| T2     | EOF                     | –                        | execve succeeded: the socket was T2's only CLOEXEC fd |
Everything T2 needs is imported by this module before the fork (security.md §2).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Mapping
from typing import Any, NoReturn

from pyoci import confine, console, sync
from pyoci.errors import ChildError, ConfigError, InvalidStatus, PyociError
from pyoci.linux import libc, pids
from pyoci.namespaces import JOIN_ORDER, NS_TYPES
from pyoci.state import StateStore, Status

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
_FOR_CHILDREN = ("pid", "time")   # setns(2): these namespaces apply to the caller's children only


@dataclasses.dataclass(frozen=True, slots=True)
class ExecOptions:
    process: dict[str, Any]        # the complete OCI process (from --process or config.json + flags)
    detach: bool = False
    pid_file: str | None = None    # absolute
    console_socket: str | None = None
    preserve_fds: int = 0
    ignore_paused: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class TenantContext:
    spec: dict[str, Any]                   # the container's config with `process` replaced
    cid: str
    bundle: str
    state: dict[str, Any]                  # the container's OCI state (pid = the exec'd process once known)
    early_ns: tuple[tuple[str, int], ...]  # pid, time: joined by T1
    late_ns: tuple[tuple[str, int], ...]   # user first … mount last: joined by T2
    root_fd: int                           # /proc/<init>/root, opened in the runtime
    passed_fds: int
    console: console.ConsolePlan | None
    console_fd: int
    no_new_keyring: bool


def build_process(base: Mapping[str, Any], args: list[str], *, env: list[str] | None = None, cwd: str | None = None,
                  user: str | None = None, additional_gids: list[str] | None = None, caps: list[str] | None = None,
                  tty: bool = False, no_new_privs: bool = False, process_label: str | None = None,
                  apparmor: str | None = None) -> dict[str, Any]:
    """runc exec.go getProcess: config.json's process with the command-line overrides (pure)."""
    p: dict[str, Any] = {k: v for k, v in base.items() if k not in ("consoleSize", "terminal")}
    p["args"], p["terminal"] = list(args), tty
    p["env"] = [*(base.get("env") or []), *(env or [])]
    if cwd:
        if not cwd.startswith("/"):  # runc validateProcessSpec
            raise ConfigError(f"--cwd {cwd!r}: must be an absolute path")
        p["cwd"] = cwd
    if apparmor:
        p["apparmorProfile"] = apparmor
    if process_label:
        p["selinuxLabel"] = process_label
    if no_new_privs:
        p["noNewPrivileges"] = True
    usr = dict(base.get("user") or {})
    if user:
        uid, _, gid = user.partition(":")
        usr["uid"] = _int_id(uid, "--user", user)
        if gid:
            usr["gid"] = _int_id(gid, "--user", user)
    if additional_gids:
        usr["additionalGids"] = [*(usr.get("additionalGids") or []),
                                 *(_int_id(g, "--additional-gids", g) for g in additional_gids)]
    p["user"] = usr
    if caps:
        have = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for name in ("bounding", "effective", "permitted"):
            have[name] = [*have.get(name, []), *caps]
        # CVE-2022-29162: ambient only when the spec already grants inheritable capabilities (runc).
        if have.get("inheritable"):
            have["ambient"] = [*have.get("ambient", []), *caps]
        p["capabilities"] = have
    return p


def _int_id(text: str, flag: str, whole: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFFFFFF:
        raise ConfigError(f"{flag} {whole!r}: {text!r} is not a numeric id")
    return int(text)


# --------------------------------------------------------------------------- runtime side

def exec_process(store: StateStore, cid: str, opts: ExecOptions) -> int:
    """Run the process; --detach: 0 once it was executed, else its exit status (128+signal)."""
    from pyoci import lifecycle, process, tty  # the runtime side only
    c = lifecycle.Container(store, cid)
    status = c.status()
    if status == Status.PAUSED and not opts.ignore_paused:
        raise InvalidStatus(cid, status, "exec", "cannot exec in a paused container (use --ignore-paused)")
    if status not in (Status.CREATED, Status.RUNNING, Status.PAUSED):
        raise InvalidStatus(cid, status, "exec", f"cannot exec in a {status} container")
    # --process files were validated by config.load_process; a process built from the flags comes from the
    # config.json validated at create (jsonschema costs ~150 ms per exec: not paid twice).
    spec = dict(c.spec(), process=opts.process)
    terminal = bool(opts.process.get("terminal"))
    if terminal and not opts.console_socket and opts.detach:
        raise ConfigError("cannot allocate tty if runc will detach without setting console socket")
    if opts.console_socket and not terminal:
        raise ConfigError("cannot use console socket if runc will not detach or allocate tty")
    if opts.pid_file and not os.path.isdir(os.path.dirname(opts.pid_file)):
        raise PyociError(f"--pid-file {opts.pid_file!r}: no such directory")
    for fd in range(3, 3 + opts.preserve_fds):
        try:
            os.fstat(fd)
        except OSError:
            raise ConfigError(f"--preserve-fds: unable to stat preserved-fd {fd}") from None
    pair = tty.ConsolePair() if terminal and not opts.console_socket else None
    cplan = console.plan(opts.process, mount=False, source="process")
    if pair and cplan is not None:  # we relay: our terminal's size and no ONLCR, set before the program runs
        size = tty.host_size()
        cplan = dataclasses.replace(cplan, onlcr=False, **({"rows": size[0], "cols": size[1]} if size else {}))
    t = _Tenant(cid, c.state.pid, c.state.start_time)
    try:
        console_fd = -1
        if terminal:
            console_fd = os.dup(pair.runtime_end) if pair else console.connect(opts.console_socket or "")
            t.fds.append(console_fd)
        ctx = TenantContext(
            spec=spec, cid=cid, bundle=c.state.bundle, state=c.state.oci(Status.RUNNING),
            early_ns=t.open_ns(_FOR_CHILDREN), late_ns=t.open_ns([n for n in JOIN_ORDER if n not in _FOR_CHILDREN]),
            root_fd=t.open_root(), passed_fds=opts.preserve_fds,
            console=cplan, console_fd=console_fd,
            no_new_keyring=bool(c.state.extra.get("no_new_keyring")))
        t.check_init()
        pid = t.run(ctx, c._cgroup(), confine.initial_cpus(spec))
    finally:
        t.close()
    try:
        master = pair.receive() if pair else None
        if opts.pid_file:
            process.write_pid_file(opts.pid_file, pid)
    except BaseException:
        t.kill()
        raise
    if opts.detach:
        return 0
    relay = lifecycle._SignalRelay(pid)
    try:
        return tty.relay(master, pid) if master is not None else process.wait_status(pid)
    finally:
        relay.restore()
        if pair:
            pair.close()


class _Tenant:
    """The runtime's side of one exec: owns the fds and children until the program runs."""

    def __init__(self, cid: str, init_pid: int, start_time: int) -> None:
        self.cid, self.init_pid, self.start_time = cid, init_pid, start_time
        self.fds: list[int] = []
        self.t1 = self.t2 = 0
        # The pidfd pins the init's pid: /proc/<pid>/… opened while it is held and followed by a start-time
        # check cannot belong to a recycled pid.
        self.pidfd = libc.pidfd_open(init_pid)
        self.fds.append(self.pidfd)

    def open_ns(self, types: list[str] | tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        """fds of the init's namespaces of these types that differ from ours (JOIN_ORDER: user first)."""
        out = []
        for t in [n for n in JOIN_ORDER if n in types]:
            name = NS_TYPES[t][1]
            try:
                theirs = os.stat(f"/proc/{self.init_pid}/ns/{name}")
                ours = os.stat(f"/proc/self/ns/{name}")
            except FileNotFoundError:
                continue  # the kernel lacks this namespace type
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                continue
            fd = os.open(f"/proc/{self.init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            self.fds.append(fd)
            out.append((t, fd))
        return tuple(out)

    def open_root(self) -> int:
        fd = os.open(f"/proc/{self.init_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def check_init(self) -> None:
        if not pids.alive(self.init_pid, self.start_time):
            raise InvalidStatus(self.cid, Status.STOPPED, "exec", "cannot exec in a stopped container")

    def run(self, ctx: TenantContext, cgroup: Any, cpus: frozenset[int] | None) -> int:
        parent, child = sync.pair()
        # T2 is reparented to us when T1 exits (and to the caller's subreaper once we exit: --detach).
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        pid = os.fork()
        if pid == 0:
            parent.close()
            _intermediate(ctx, child)
        self.t1 = pid
        child.close()
        try:
            if cpus:  # config.md execCPUAffinity.initial: before the transition to the container's cgroup
                os.sched_setaffinity(pid, cpus)
            if cgroup is not None:
                cgroup.add(pid)
            sync.send(parent, type="go")
            self._converse(parent)
        except BaseException:
            self.kill()
            raise
        finally:
            parent.close()
        return self.t2

    def _converse(self, sock: socket.socket) -> None:
        from pyoci import logs
        while True:
            msg = sync.recv(sock)
            if msg is None:
                if not self.t2:
                    raise ChildError("exec: the process exited before it was started")
                return  # execve closed T2's end
            kind = msg.get("type")
            if kind == "log":
                logs.relay(msg.get("level", "debug"), msg.get("msg", ""))
            elif kind == "error":
                raise ChildError(msg.get("msg", "exec failed"))
            elif kind == "pid":
                self.t2 = int(msg["pid"])
                os.waitpid(self.t1, 0)
                self.t1 = 0
                sync.send(sock, type="hostpid", pid=self.t2)
            else:
                raise ChildError(f"unexpected message from the exec process: {kind!r}")

    def kill(self) -> None:
        for pid in (self.t2, self.t1):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


# --------------------------------------------------------------------------- container side (never returns)

def _die(sock: socket.socket, exc: BaseException) -> NoReturn:
    try:
        sync.send(sock, type="error", msg=str(exc) or exc.__class__.__name__)
    finally:
        os._exit(1)


def _intermediate(ctx: TenantContext, sock: socket.socket) -> NoReturn:
    """T1: non-dumpable before it touches any container namespace (class 3); pid/time; fork T2."""
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(libc.PR_SET_DUMPABLE, 0)  # inherited by T2, which is born inside the pid namespace
        if (sync.recv(sock) or {}).get("type") != "go":
            os._exit(1)
        for ns_type, fd in ctx.early_ns:
            libc.setns(fd, NS_TYPES[ns_type][0], what=ns_type)
        pid = os.fork()
        if pid == 0:
            _tenant(ctx, sock)
        sync.send(sock, type="pid", pid=pid)
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001
        _die(sock, exc)


def _tenant(ctx: TenantContext, sock: socket.socket) -> NoReturn:
    """T2: the exec'd process. The order is the init's, minus what only the init does (rootfs, hooks)."""
    try:
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        root.addHandler(sync.SocketLogHandler(sock))
        os.setsid()  # never the caller's terminal session (class 17); the console's session when terminal
        state = dict(ctx.state, pid=(sync.recv(sock) or {}).get("pid", 0))
        proc = ctx.spec["process"]
        # Planned while the host is visible: seccomp compile, private procfs, listener connection.
        conf = confine.prepare(ctx.spec, cid=ctx.cid, bundle=ctx.bundle, no_new_keyring=ctx.no_new_keyring,
                               tenant=True)
        conf = _join(ctx, conf)
        os.fchdir(ctx.root_fd)  # the init's root, which setns(mnt) alone does not give under --no-pivot
        libc.chroot(".")
        os.close(ctx.root_fd)
        if ctx.console is not None:
            console.setup(ctx.console_fd, ctx.console)
        cwd = proc.get("cwd", "/")
        retry_cwd = _enter_cwd(cwd)
        confine.apply_process(conf)
        env = confine.with_home(proc.get("env") or [], conf.uid)
        exe = confine.resolve_executable(proc["args"][0], env, cwd)
        confine.apply_credentials(conf, state)
        if retry_cwd:  # security.md item 8: a cwd only the process user may enter
            _enter_cwd(cwd, last=True)
        for fd in range(3, 3 + ctx.passed_fds):
            os.set_inheritable(fd, True)
        pids.restore_default_signals()
        envd = dict(e.split("=", 1) for e in env if "=" in e)
        confine.final(conf, state)
        # Nothing but execve after this: only stdio, the passed fds and the CLOEXEC sync socket (whose EOF
        # tells the runtime the program runs) stay open (class 2).
        libc.close_fds_except(3 + ctx.passed_fds, sock.fileno())
        os.execve(exe, proc["args"], envd)
    except BaseException as exc:  # noqa: BLE001
        _die(sock, exc)


def _join(ctx: TenantContext, conf: confine.Confinement) -> confine.Confinement:
    """setns in JOIN_ORDER: user first (it grants the capabilities for the rest), mount last."""
    for ns_type, fd in ctx.late_ns:
        libc.setns(fd, NS_TYPES[ns_type][0], what=ns_type)
        os.close(fd)
        if ns_type == "user":
            confine.become_root()
            # Whether setgroups(2) is allowed is a property of the joined user namespace.
            conf = dataclasses.replace(conf, setgroups=confine.setgroups_allowed())
    return conf


def _enter_cwd(cwd: str, last: bool = False) -> bool:
    """chdir inside the container root and verify it (class 2); True: EACCES, retry as the process user."""
    try:
        os.chdir(cwd)
    except PermissionError:
        if last:
            raise
        return True
    except OSError as exc:
        raise PyociError(f"process.cwd {cwd!r}: chdir: [Errno {exc.errno}] {exc.strerror}") from None
    here = os.getcwd()
    if not here.startswith("/") or here.startswith("(unreachable)"):
        raise PyociError(f"process.cwd {cwd!r} resolves outside the container")
    return False


