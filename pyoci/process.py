"""Runtime side of create: state dir, cgroup, fork of the container side, the sync conversation, cleanup.

The runtime stays single-threaded until the container side has forked (unshare(CLONE_NEWUSER) and setns
fail in threaded processes), and everything the container side will need is imported before the fork.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
from typing import Any

from pyoci import confine, hooks, init, logs, sync
from pyoci import rootfs as rootfs_mod
from pyoci.errors import ChildError, ConfigError, HookError, PyociError
from pyoci.linux import libc, pids
from pyoci.linux.proc import ProcHandle, ns_type_of
from pyoci.namespaces import NS_TYPES, idmap_text
from pyoci.namespaces import plan as plan_namespaces
from pyoci.state import FIFO, State, StateStore, Status, write_atomic

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class CreateOptions:
    bundle: str
    pid_file: str | None = None
    console_socket: str | None = None
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    systemd_cgroup: bool = False
    console_fd: int = -1     # an already connected console socket (foreground run/exec: pyoci's own pair)


def now_rfc3339nano() -> str:
    import time
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _check_terminal(spec: dict[str, Any], opts: CreateOptions) -> bool:
    """runc utils_linux.go checkTerminal (same messages); True when the container gets a pty."""
    terminal = bool((spec.get("process") or {}).get("terminal"))
    if terminal and not opts.console_socket and opts.console_fd < 0:
        raise ConfigError("cannot allocate tty if runc will detach without setting console socket")
    if opts.console_socket and not terminal:
        raise ConfigError("cannot use console socket if runc will not detach or allocate tty")
    return terminal


def _console_fd(opts: CreateOptions) -> int:
    """Our own connected copy of the console socket (inherited by the container side through fork)."""
    from pyoci import console
    return os.dup(opts.console_fd) if opts.console_fd >= 0 else console.connect(opts.console_socket or "")


def create(store: StateStore, cid: str, spec: dict[str, Any], opts: CreateOptions) -> State:
    """Create a container whose init is blocked before exec. Leaves nothing behind on failure."""
    bundle = os.path.abspath(opts.bundle)
    root_path = spec["root"]["path"]
    rootfs = os.path.normpath(os.path.join(bundle, root_path))
    terminal = _check_terminal(spec, opts)
    ns_plan = plan_namespaces(spec)
    if "mount" not in ns_plan.new and not ns_plan.has_own("mount"):
        raise ConfigError("config.json: linux.namespaces: pyoci needs a mount namespace (type 'mount')")
    listen = pids.listen_fds()
    passed = listen + opts.preserve_fds
    for fd in range(3, 3 + passed):
        try:
            os.fstat(fd)
        except OSError:
            raise ConfigError(f"--preserve-fds: unable to stat preserved-fd {fd}") from None
    process = spec["process"]
    env = list(process.get("env") or [])
    if listen:
        env = [e for e in env if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
        env += [f"LISTEN_FDS={listen}", "LISTEN_PID=1"]
    st = State(id=cid, bundle=bundle, rootfs=rootfs, created=now_rfc3339nano(),
               oci_version=spec.get("ociVersion", "1.3.0"), annotations=dict(spec.get("annotations") or {}))
    st.extra["no_new_keyring"] = opts.no_new_keyring  # exec joins the same session keyring (or none)
    sdir = store.create_dir(cid)
    c = _Creation(store, st, spec)
    try:
        console_fd, console_plan = -1, None
        if terminal:  # connected here: the socket path is a host path (runc connects in the runtime too)
            from pyoci import console
            console_plan = console.plan(process, mount=True)
            console_fd = _console_fd(opts)
            c.fds.append(console_fd)
        write_atomic(os.path.join(sdir, "config.json"), json.dumps(spec).encode())
        fifo = os.path.join(sdir, FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # the container's user opens it for writing (it may be non-root)
        store.save(st)
        c.setup_cgroup(opts.systemd_cgroup)
        confine.preload(spec)  # the seccomp bindings: the init may not be able to read the host's stdlib
        premounted: dict[int, int] = {}
        device_nodes: dict[int, int] = {}
        if ns_plan.new_user:  # idmapping a host filesystem needs host privileges: done here, not in the init
            premounted = rootfs_mod.open_idmapped_mounts(spec, bundle=bundle)
            c.fds.extend(premounted.values())
            # and so does mknod: linux.devices the host has no node for (config-linux.md#devices: MUST)
            device_nodes = rootfs_mod.open_device_nodes(spec)
            c.fds.extend(device_nodes.values())
        ctx = init.InitContext(
            spec=spec, cid=cid, bundle=bundle, rootfs=rootfs, ns=ns_plan, join_fds=c.open_join_fds(ns_plan),
            state_dir_fd=os.open(sdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), passed_fds=passed,
            env=tuple(env), no_pivot=opts.no_pivot, no_new_keyring=opts.no_new_keyring,
            annotations=st.annotations, console=console_plan, console_fd=console_fd, premounted=premounted,
            device_nodes=device_nodes)
        c.run(ctx)
        st.status = Status.CREATED
        store.save(st)
        if opts.pid_file:
            write_pid_file(opts.pid_file, st.pid)
        return st
    except BaseException as exc:
        c.abort(exc)
        raise
    finally:
        c.close()


def write_pid_file(path: str, pid: int) -> None:
    """Decimal pid, no newline, written atomically (runc utils_linux.go createPidFile)."""
    try:
        write_atomic(os.path.abspath(path), str(pid).encode(), 0o644)
    except OSError as exc:
        raise PyociError(f"--pid-file {path!r}: {exc.strerror}") from None


class _Creation:
    """The runtime's side of one create: owns every resource until create succeeds."""

    def __init__(self, store: StateStore, st: State, spec: dict[str, Any]) -> None:
        self.store, self.st, self.spec = store, st, spec
        self.cgroup: Any = None
        self.fds: list[int] = []
        self.c1 = 0
        self._proc: ProcHandle | None = None
        self._device_rules: list[dict[str, Any]] | None = None
        self.netdev_ns: str | None = None

    def setup_cgroup(self, systemd: bool) -> None:
        from pyoci import cgroups
        self.cgroup = cgroups.manager_for(self.spec, self.st.id, systemd=systemd)
        self.cgroup.create()
        self.st.cgroup = self.cgroup.to_state()
        self.store.save(self.st)

    def open_join_fds(self, ns_plan: Any) -> tuple[tuple[str, int], ...]:
        out = []
        for ns_type, path in ns_plan.join:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise ConfigError(f"config.json: linux.namespaces: {ns_type} path {path!r}: {exc.strerror}") from None
            self.fds.append(fd)
            if ns_type_of(fd) != NS_TYPES[ns_type][0]:
                raise ConfigError(f"config.json: linux.namespaces: path {path!r} is not a {ns_type} namespace")
            out.append((ns_type, fd))
        return tuple(out)

    def run(self, ctx: init.InitContext) -> None:
        self.fds.append(ctx.state_dir_fd)
        parent, child = sync.pair()
        # Orphans (the container init once C1 exits) are reparented to us while we run; when we exit,
        # to the caller's subreaper (containerd shim, conmon), which is where create must leave them.
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        pid = os.fork()
        if pid == 0:
            parent.close()
            init.intermediate(ctx, child)
        self.c1 = pid
        child.close()
        try:
            if self.cgroup is not None:
                self.cgroup.add(pid)
            sync.send(parent, type="go")
            self._converse(parent)
        finally:
            parent.close()

    def _converse(self, sock: socket.socket) -> None:
        linux = self.spec.get("linux") or {}
        while True:
            msg = sync.recv(sock)
            if msg is None:
                raise ChildError("container init exited before it was ready")
            kind = msg.get("type")
            if kind == "log":
                logs.relay(msg.get("level", "debug"), msg.get("msg", ""))
            elif kind == "error":
                # A failing createContainer hook is a HookError: abort() then continues at delete (poststop).
                raise (HookError if msg.get("hook") else ChildError)(msg.get("msg", "container init failed"))
            elif kind == "idmap":
                self._reply(sock, self._write_idmaps, linux)
            elif kind == "pid":
                self.st.pid = int(msg["pid"])
                self.st.start_time = pids.start_time(self.st.pid)
                self.store.save(self.st)
                os.waitpid(self.c1, 0)
                self.c1 = 0
                # Limits are applied once the init is the only process in the cgroup (as runc): with
                # pids.limit 1 the intermediate child and the fork would not fit. The init waits for its
                # host pid (sent next), so it has not opened a device or run anything yet.
                if self.cgroup is not None:
                    res = dict((self.spec.get("linux") or {}).get("resources") or {})
                    self._device_rules = res.pop("devices", None)
                    self.cgroup.apply(res)
                oom = confine.oom_score_adj(self.spec)
                if oom is not None:
                    # config.md#linux-process: in a user namespace the init cannot write its own file.
                    self.proc.write_pid_file(self.st.pid, "oom_score_adj", str(oom))
                sync.send(sock, type="hostpid", pid=self.st.pid)
            elif kind == "create-runtime":
                self._reply(sock, self._create_runtime)
            elif kind == "ready":
                return
            else:
                raise ChildError(f"unexpected message from container init: {kind!r}")

    def _reply(self, sock: socket.socket, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except PyociError as exc:
            sync.send(sock, type="error", msg=str(exc))
            raise
        sync.send(sock, type="ok")

    def _write_idmaps(self, linux: dict[str, Any]) -> None:
        # user-namespaces(7): setgroups must be written before gid_map; we are privileged in the parent
        # namespace, so "allow" is safe and lets additionalGids work.
        if linux.get("uidMappings"):
            self.proc.write_pid_file(self.c1, "uid_map", idmap_text(linux["uidMappings"]))
        if linux.get("gidMappings"):
            self.proc.write_pid_file(self.c1, "setgroups", "allow")
            self.proc.write_pid_file(self.c1, "gid_map", idmap_text(linux["gidMappings"]))

    def _create_runtime(self) -> None:
        linux = self.spec.get("linux") or {}
        if self.cgroup is not None and self._device_rules is not None:
            # Device rules once the init has made the rootfs' device nodes (a deny of `m` would stop its
            # mknod) and before any hook or user code runs: runc applies them after the rootfs too.
            self.cgroup.apply({"devices": self._device_rules})
        if linux.get("netDevices"):
            from pyoci.linux import net
            self.netdev_ns = f"/proc/{self.st.pid}/ns/net"
            # Pin a namespace we created so delete can give the devices back after the container exited;
            # a joined namespace is not ours: its devices stay (config-linux.md#network-devices).
            own = not any(t == "network" for t, _ in plan_namespaces(self.spec).join)
            pin = self.store.dir(self.st.id) if own else None
            self.st.netdevices = net.move_netdevices(linux["netDevices"], self.netdev_ns, pin_dir=pin)
            self.store.save(self.st)
        state = self.st.oci(Status.CREATING)
        hooks.run_hooks(self.spec, "prestart", state)
        hooks.run_hooks(self.spec, "createRuntime", state)

    def abort(self, exc: BaseException) -> None:
        """Undo everything: kill the container side, return netdevices, remove cgroup and state dir."""
        for pid in (self.st.pid, self.c1):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in (self.c1, self.st.pid):
            if pid:
                try:
                    os.waitpid(pid, 0)  # the container init was reparented to us (subreaper)
                except ChildProcessError:
                    pass
        if self.st.netdevices:
            try:
                from pyoci.linux import net
                net.return_netdevices(self.st.netdevices, None)
            except Exception as e:  # noqa: BLE001 - best effort, reported below
                log.warning("returning netDevices after failed create: %s", e)
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
            except Exception as e:  # noqa: BLE001
                log.warning("removing cgroup after failed create: %s", e)
        self.store.remove(self.st.id)
        if isinstance(exc, HookError):
            # runtime.md lifecycle: a failing create-phase hook stops the container and continues at delete,
            # which runs the poststop hooks.
            hooks.run_hooks(self.spec, "poststop", self.st.oci(Status.STOPPED), warn_only=True)

    @property
    def proc(self) -> ProcHandle:
        """A private procfs instance (verified), not the host's /proc: security.md class 6. Opened only
        after the fork, so that the container side never inherits a handle on the host's procfs."""
        if self._proc is None:
            self._proc = ProcHandle.open()
        return self._proc

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def wait_status(pid: int) -> int:
    """Reap children until pid exits; return its exit code (128+signal when killed)."""
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if wpid == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


