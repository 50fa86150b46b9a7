"""Container side of create: forked from the runtime, never exec'ed until the user program.

C1 (intermediate) joins/unshares namespaces and forks C2, which becomes the container's init (pid 1 in a
new pid namespace), sets up the rootfs, pivots, confines itself and blocks on exec.fifo until `start`.
Every function here ends in os.execve or os._exit: nothing unwinds into the CLI. Everything C2 needs is
imported at the top of this module, before the fork: after pivot_root the rootfs is attacker-controlled and
an import, dlopen or NSS lookup would run its code (security.md §2, class 15).
"""
from __future__ import annotations

import dataclasses
import encodings.ascii  # noqa: F401 - codecs are looked up lazily; after the fork we may not be able to
import encodings.latin_1  # noqa: F401   read the host's stdlib (userns uid, pivot_root), so load them now
import logging
import os
import signal
import socket
import stat
import sys
import traceback
from typing import Any, NoReturn

from pyoci import confine, console, hooks, rootfs, sync
from pyoci.errors import HookError
from pyoci.linux import libc, net, pids
from pyoci.namespaces import NS_TYPES, NsPlan

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True, slots=True)
class InitContext:
    spec: dict[str, Any]
    cid: str
    bundle: str
    rootfs: str
    ns: NsPlan
    join_fds: tuple[tuple[str, int], ...]  # (type, fd) opened and type-checked by the parent
    state_dir_fd: int                     # O_PATH fd of <root>/<id>: exec.fifo is opened relative to it
    passed_fds: int                       # LISTEN_FDS + --preserve-fds: fds 3 .. 3+passed-1 survive
    env: tuple[str, ...]                  # process.env (+ LISTEN_* when passing listen fds)
    no_pivot: bool
    no_new_keyring: bool
    annotations: dict[str, str]
    console: console.ConsolePlan | None = None  # process.terminal: pty set up after pivot_root
    console_fd: int = -1                         # connected --console-socket (or pyoci's own pair)
    premounted: dict[int, int] = dataclasses.field(default_factory=dict)  # mount index → idmapped tree fd
    device_nodes: dict[int, int] = dataclasses.field(default_factory=dict)  # linux.devices index → node fd


def _die(sock: socket.socket | None, exc: BaseException, report: int = -1) -> NoReturn:
    """Report an error to the parent, or after `create` returned to `start` through the exec.fifo fd
    `report` (lifecycle.start reads it after the release byte), or else to stderr; then exit."""
    msg = str(exc) or exc.__class__.__name__
    if logging.getLogger().isEnabledFor(logging.DEBUG) or os.environ.get("PYOCI_TRACEBACK"):
        # Frames only: after pivot_root, reading source lines would open files in the container's rootfs.
        frames = traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__), lookup_lines=False)
        msg += "".join(f"\n  {f.filename}:{f.lineno} in {f.name}" for f in frames)
    try:
        if sock is not None:
            sync.send(sock, type="error", msg=msg, hook=isinstance(exc, HookError))
        elif report >= 0:  # "H": a startContainer hook failed (start continues at delete), "E": anything else
            os.write(report, (b"H" if isinstance(exc, HookError) else b"E") + msg.encode())
        else:
            os.write(2, f"pyoci: {msg}\n".encode())
    finally:
        os._exit(1)


def intermediate(ctx: InitContext, sock: socket.socket) -> NoReturn:
    """C1: namespaces (user first), then fork the container init into them."""
    try:
        # Dies with the runtime if create is interrupted; non-dumpable before it enters any namespace so
        # that nothing in the container can ptrace it or open its /proc files (security.md class 3).
        libc.prctl(PR_SET_PDEATHSIG, 9)
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        if (sync.recv(sock) or {}).get("type") != "go":  # parent has put us in the cgroup
            os._exit(1)
        for ns_type, fd in ctx.join_fds:
            libc.setns(fd, NS_TYPES[ns_type][0], what=ns_type)
            os.close(fd)
        if ctx.ns.new_user:
            libc.unshare(libc.CLONE_NEWUSER)
            sync.send(sock, type="idmap")
            sync.expect_ok(sock)  # parent wrote setgroups, uid_map, gid_map
            confine.become_root()
        if ctx.ns.unshare_flags:
            libc.unshare(ctx.ns.unshare_flags)
        if "time" in ctx.ns.new:
            _write_time_offsets(ctx.spec)
        pid = os.fork()  # pid and time namespaces take effect for children only
        if pid == 0:
            container_init(ctx, sock)
        sync.send(sock, type="pid", pid=pid)
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001
        _die(sock, exc)


def _write_time_offsets(spec: dict[str, Any]) -> None:
    offsets = (spec.get("linux") or {}).get("timeOffsets") or {}
    lines = "".join(f"{clock} {v.get('secs', 0)} {v.get('nanosecs', 0)}\n" for clock, v in offsets.items())
    if lines:
        # config-linux.md#offset-for-time-namespace: before any process enters the new time namespace.
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(lines)


def container_init(ctx: InitContext, sock: socket.socket) -> NoReturn:
    """C2: the container's init. Reads like the table of contents of container creation."""
    report = -1
    try:
        _relay_logs(sock)
        _exit_on_signals()
        os.setsid()  # new session: the caller's tty is never our controlling terminal (class 17)
        hostpid = (sync.recv(sock) or {}).get("pid", 0)
        state = {"ociVersion": ctx.spec.get("ociVersion", "1.3.0"), "id": ctx.cid, "status": "creating",
                 "pid": hostpid, "bundle": ctx.bundle, "annotations": ctx.annotations}
        spec, linux = ctx.spec, ctx.spec.get("linux") or {}
        if "network" in ctx.ns.new:
            net.loopback_up()
        if "uts" in ctx.ns.new or any(t == "uts" for t, _ in ctx.ns.join):
            if spec.get("hostname"):
                libc.sethostname(spec["hostname"])
            if spec.get("domainname"):
                libc.setdomainname(spec["domainname"])
        rootfs.prepare(spec, bundle=ctx.bundle, rootfs=ctx.rootfs, userns="user" in ctx.ns.new,
                       no_pivot=ctx.no_pivot, premounted=ctx.premounted, device_nodes=ctx.device_nodes)
        sync.send(sock, type="create-runtime")  # parent: prestart, createRuntime hooks, netDevices
        sync.expect_ok(sock)
        # createContainer: container namespaces, path resolved in the runtime's (we have not pivoted).
        # Hooks in the container namespaces get the pid as the container sees it (runtime.md#state).
        hooks.run_hooks(spec, "createContainer", dict(state, pid=os.getpid()))
        conf = confine.prepare(spec, cid=ctx.cid, bundle=ctx.bundle, no_new_keyring=ctx.no_new_keyring)
        rootfs.pivot(ctx.rootfs, no_pivot=ctx.no_pivot)
        if ctx.console is not None:
            # As runc: after pivot_root (the pty must come from the container's own devpts) and before
            # finalize (which may make /dev or / read-only while /dev/console still has to be created).
            console.setup(ctx.console_fd, ctx.console)
        rootfs.finalize(spec)
        process = spec["process"]
        env_list = list(ctx.env)
        if not any(e.startswith("HOME=") for e in env_list):
            # runc and crun: HOME from the container's /etc/passwd for process.user.uid, else "/".
            env_list.append("HOME=" + _home_dir((process.get("user") or {}).get("uid", 0)))
        rootfs.enter_cwd(process.get("cwd", "/"))  # inside the root, no magic links (class 2, B2)
        confine.apply_process(conf)
        exe = confine.resolve_executable(process["args"][0], list(ctx.env), process.get("cwd", "/"))
        confine.apply_credentials(conf, state)
        # The parent writes state.json and the pid file, then create returns; we block on the fifo.
        sync.send(sock, type="ready")
        _stop_relaying()
        sock.close()
        sock = None  # type: ignore[assignment]
        fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=ctx.state_dir_fd)
        os.write(fifo, b"0")
        # The fifo stays open (CLOEXEC) until execve: `start` reads an error from it, or EOF once execve
        # succeeded, and only then runs poststart (runtime.md: after the user program was executed).
        report = fifo
        os.close(ctx.state_dir_fd)
        state["status"] = "created"
        # startContainer: container namespaces, path resolved in the container.
        hooks.run_hooks(spec, "startContainer", dict(state, pid=os.getpid()))
        for fd in range(3, 3 + ctx.passed_fds):
            os.set_inheritable(fd, True)
        env = dict(e.split("=", 1) for e in env_list if "=" in e)
        pids.restore_default_signals()
        confine.final(conf, state)
        # Nothing but execve after this point: fds beyond stdio and the passed ones are closed (class 2),
        # except the exec.fifo (a fifo: nothing to traverse or execute; CLOEXEC closes it in execve).
        libc.close_fds_except(3 + ctx.passed_fds, report)
        os.execve(exe, process["args"], env)
    except BaseException as exc:  # noqa: BLE001
        _die(sock, exc, report)
    os._exit(1)


def _home_dir(uid: int) -> str:
    """The home directory of uid in the container's /etc/passwd, parsed as data (never NSS: class 15).
    Opened without blocking and only if it is a small regular file: the rootfs is the image's."""
    try:
        fd = os.open("/etc/passwd", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return "/"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > (1 << 20):
            return "/"
        data = os.read(fd, 1 << 20).decode("utf-8", "replace")
    finally:
        os.close(fd)
    for line in data.splitlines():
        parts = line.split(":")
        if len(parts) >= 6 and parts[2] == str(uid) and parts[5].startswith("/"):
            return parts[5]
    return "/"


def _die_on(signum: int, _frame: Any) -> None:
    os._exit(128 + signum)


def _exit_on_signals() -> None:
    """As pid 1 of a pid namespace, signals without a handler are ignored even from the host: handle the
    terminating ones so that `kill <created container> TERM` works. execve resets them to default."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGALRM):
        signal.signal(sig, _die_on)


def _relay_logs(sock: socket.socket) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(sync.SocketLogHandler(sock))


def _stop_relaying() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(logging.NullHandler())


def exit_now(code: int) -> NoReturn:
    sys.stdout.flush()
    os._exit(code)
