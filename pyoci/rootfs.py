"""The container's filesystem: prepare() before pivot, pivot(), finalize() after it (runc rootfs_linux.go order).

Runs in the forked container init (single thread, in its new mount namespace). Every rootfs path is
resolved inside the root by pyoci.linux.paths and every mount lands on an fd that was opened and checked
(pyoci.linux.mountfd), then re-checked: the mount must be where we looked (same path, new mount id).
Nothing may be imported lazily here: after pivot the rootfs is attacker-controlled (security.md §2).
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import posixpath
import stat
from collections.abc import Mapping
from typing import Any

from pyoci import devices, mounts, namespaces, sysctl
from pyoci.errors import ConfigError, PyociError, SyscallError
from pyoci.linux import libc, mountfd, paths
from pyoci.linux.mountfd import FdMounter
from pyoci.linux.proc import ProcHandle, verify_procfs_root
from pyoci.mounts import MountPlan

log = logging.getLogger(__name__)
_RESOLVE_EXACT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS
_CGROUP_FLAGS = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
# cgroup super options that are not controllers (a fresh v1 mount names the controllers only)
_CG_FLAGS = frozenset({"rw", "ro", "clone_children", "xattr", "noprefix", "cpuset_v2_mode", "nsdelegate",
                       "favordynmods", "memory_localevents", "memory_recursiveprot", "memory_hugetlb_accounting"})


@dataclasses.dataclass(frozen=True, slots=True)
class _Ctx:
    m: FdMounter
    proc: ProcHandle
    root_fd: int
    root_path: str           # host path of the rootfs mount, as the kernel prints it
    userns: bool
    own_cgroupns: bool
    premounted: Mapping[int, int]


def prepare(spec: dict[str, Any], *, bundle: str, rootfs: str, userns: bool, no_pivot: bool,
            premounted: Mapping[int, int] | None = None,
            device_nodes: Mapping[int, int] | None = None) -> None:
    """Before pivot: root propagation, rootfs bind, mounts[] in order, devices and /dev symlinks.

    premounted: mount index → detached idmapped tree made by open_idmapped_mounts() in the runtime (needed
    when the container has a user namespace: idmapping a host filesystem needs host privileges).
    device_nodes: linux.devices index → detached node made by open_device_nodes() in the runtime (same
    reason: mknod); consumed (closed) by the device step."""
    plans = mounts.plan_mounts(spec, bundle=bundle)
    root_prop = mounts.root_propagation(spec, no_pivot=no_pivot)
    sysctl.plan(spec)  # refuse host-changing sysctls before anything is mounted
    nodes = devices.plan_devices(spec)
    for p in plans:
        if p.destination == "/":
            raise ConfigError(f"config.json: {p.field}.destination: mounting over the container's root "
                              "is not supported")
    own = {n.get("type") for n in (spec.get("linux") or {}).get("namespaces") or []}
    with ProcHandle.open() as proc:
        m = FdMounter(proc)
        _prepare_root(m, proc, rootfs, root_prop)
        root_fd = paths.open_root(rootfs)
        try:
            ctx = _Ctx(m, proc, root_fd, m.fd_path(root_fd), userns, "cgroup" in own, premounted or {})
            for p in plans:
                log.debug("rootfs: %s %s on %s", p.field, p.kind, p.destination)
                try:
                    _mount(ctx, p)
                except SyscallError as exc:  # name the config field (bad data= options, unknown fs type…)
                    if str(exc).startswith(p.field):
                        raise
                    raise PyociError(f"config.json: {p.field}: {exc}") from None
            if mounts.needs_dev_setup(plans):
                devices.apply_devices(root_fd, nodes, bind=userns, mounter=m, premade=device_nodes)
                devices.apply_symlinks(root_fd, with_core=_has_kcore(proc))
        finally:
            os.close(root_fd)


def _prepare_root(m: FdMounter, proc: ProcHandle, rootfs: str, flag: int) -> None:
    """runc prepareRoot: '/' rslave (or rootfsPropagation) so nothing we mount reaches the host, the
    rootfs' parent mount private (pivot_root refuses a shared parent), then rootfs bound onto itself."""
    if not flag or flag & libc.MS_UNBINDABLE:
        # an unbindable '/' could not be the source of the rootfs bind: that part waits for finalize()
        flag = libc.MS_SLAVE | libc.MS_REC
    root = paths.open_root("/")
    try:
        m.propagate(root, flag, what="/")
    finally:
        os.close(root)
    rfd = paths.open_root(rootfs)
    try:
        mid = mountfd.mount_id(rfd)
        parent = [mi for mi in proc.mountinfo() if mi.mount_id == mid]
        if parent and parent[0].shared:
            pfd = paths.open_root(parent[0].mountpoint)  # host mount table (our own namespace's copy)
            try:
                m.propagate(pfd, libc.MS_PRIVATE, what=parent[0].mountpoint)
            finally:
                os.close(pfd)
        m.bind(rfd, rfd, recursive=True, what=rootfs, source=rootfs)
    finally:
        os.close(rfd)


def _has_kcore(proc: ProcHandle) -> bool:
    try:
        os.close(proc.openat("kcore", os.O_PATH))
        return True
    except SyscallError:
        return False


# --- one mount ----------------------------------------------------------------------------------------


def _mount(ctx: _Ctx, p: MountPlan) -> None:
    if p.kind == "cgroup":
        _mount_cgroup(ctx, p)
    elif p.kind == "bind":
        _mount_bind(ctx, p)
    else:
        _mount_fs(ctx, p)


def _target_dir(ctx: _Ctx, p: MountPlan) -> int:
    """The mountpoint directory, created in-root if missing. /proc and /sys must be real directories."""
    if p.destination in ("/proc", "/sys"):
        try:
            fd = paths.open_in_root(ctx.root_fd, p.destination, os.O_PATH, follow=False)
        except SyscallError as exc:
            if exc.errno != errno.ENOENT:
                raise
        else:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise ConfigError(f"config.json: {p.field}.destination: {p.destination} must be mounted on an "
                                  "ordinary directory (the rootfs has a symlink or file there)")
            return fd
    return paths.mkdir_all_in_root(ctx.root_fd, p.destination)


def _check_target(ctx: _Ctx, p: MountPlan, fd: int, *, source_is_proc: bool) -> str:
    """Where the opened mountpoint really is: inside the rootfs, and not in /proc unless allowed.
    Returns its container path."""
    where = ctx.m.fd_path(fd)
    if not paths.inside(ctx.root_path, where):
        raise SyscallError(f"{p.field}: mountpoint {p.destination} resolved outside the rootfs ({where})",
                           errno.EXDEV)
    rel = where[len(ctx.root_path.rstrip("/")):] or "/"
    why = mounts.proc_rule(rel, source_is_proc=source_is_proc)
    if why is None and rel != "/proc" and rel not in mounts.PROC_ALLOWED \
            and libc.fstatfs(fd)[0] == libc.PROC_SUPER_MAGIC:
        why = f"{rel} is on a procfs"
    if why:
        raise ConfigError(f"config.json: {p.field}.destination: {p.destination}: {why}")
    return rel


def _reopen_checked(ctx: _Ctx, p: MountPlan, rel: str, before: int) -> int:
    """Reopen the mountpoint after mounting: it must be the same path and now on a new mount."""
    fd = libc.openat2(ctx.root_fd, rel.lstrip("/") or ".", os.O_PATH, 0, _RESOLVE_EXACT)
    try:
        where = ctx.m.fd_path(fd)
        if where != ctx.root_path.rstrip("/") + rel or mountfd.mount_id(fd) == before:
            raise SyscallError(f"{p.field}: mount did not land on {p.destination} ({where})", errno.EXDEV)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _finish(ctx: _Ctx, p: MountPlan, fd: int) -> None:
    """Per-mount propagation (each its own call), then recursive attributes (mount_setattr)."""
    for flag in p.options.propagation:
        ctx.m.propagate(fd, flag, what=p.destination)
    if p.options.attr_set or p.options.attr_clr:
        try:
            mountfd.setattr_fd(fd, p.options.attr_set, p.options.attr_clr, recursive=True)
        except SyscallError as exc:
            raise SyscallError(f"{p.field}: mount_setattr", exc.errno or errno.EIO, path=p.destination) from None


def _mount_fs(ctx: _Ctx, p: MountPlan) -> None:
    target = _target_dir(ctx, p)
    try:
        rel = _check_target(ctx, p, target, source_is_proc=p.kind == "proc")
        opts, data = p.options, p.options.data or None
        source = p.source or p.fstype
        if opts.flags & libc.MS_REMOUNT:  # remount the mount already there
            ctx.m.mount(source, target, p.fstype, opts.flags, data, what=p.destination)
            _finish(ctx, p, target)
            return
        before = mountfd.mount_id(target)
        try:
            ctx.m.mount(source, target, p.fstype, opts.flags, data, what=p.destination)
        except SyscallError as exc:
            if not (p.kind == "sysfs" and exc.errno == errno.EPERM and ctx.userns):
                raise
            # sysfs needs the network namespace's owner: in a user namespace without its own netns,
            # bind the host's /sys instead, with the same flags (runc does the same).
            host = paths.open_root("/sys")
            try:
                ctx.m.bind(host, target, recursive=True, what=p.destination, source="/sys")
            finally:
                os.close(host)
            new = _reopen_checked(ctx, p, rel, before)
            try:
                ctx.m.remount_bind(new, opts.flags, what=p.destination)
                _finish(ctx, p, new)
            finally:
                os.close(new)
            return
        new = _reopen_checked(ctx, p, rel, before)
        try:
            if opts.tmpcopyup:
                paths.copy_tree(target, new)
            _finish(ctx, p, new)
        finally:
            os.close(new)
    finally:
        os.close(target)


def _mount_bind(ctx: _Ctx, p: MountPlan) -> None:
    try:
        src = os.open(p.source, os.O_PATH | os.O_CLOEXEC)  # host path from the config (runtime side)
    except OSError as exc:
        raise SyscallError(f"{p.field}.source: open", exc.errno or errno.EIO, path=p.source) from None
    try:
        is_dir = stat.S_ISDIR(os.fstat(src).st_mode)
        target = (_target_dir(ctx, p) if is_dir else paths.create_file_in_root(ctx.root_fd, p.destination))
        try:
            rel = _check_target(ctx, p, target, source_is_proc=is_dir and _is_procfs_root(src))
            before = mountfd.mount_id(target)
            if p.idmapped:
                _attach_idmapped(ctx, p, src, target)
            else:
                ctx.m.bind(src, target, recursive=p.options.recursive, what=p.destination, source=p.source)
        finally:
            os.close(target)
        new = _reopen_checked(ctx, p, rel, before)
        try:
            if p.options.remount_flags:  # a bind ignores flags: a second MS_REMOUNT applies them
                ctx.m.remount_bind(new, p.options.flags, what=p.destination)
            _finish(ctx, p, new)
        finally:
            os.close(new)
    finally:
        os.close(src)


def _is_procfs_root(fd: int) -> bool:
    try:
        verify_procfs_root(fd)
        return True
    except SyscallError:
        return False


# --- idmapped mounts ----------------------------------------------------------------------------------


def _attach_idmapped(ctx: _Ctx, p: MountPlan, src: int, target: int) -> None:
    tree = ctx.premounted.get(p.index)
    if tree is None:
        if ctx.userns:  # idmapping a host filesystem needs CAP_SYS_ADMIN in the host's user namespace
            raise SyscallError(f"{p.field}: an idmapped mount in a user namespace must be prepared by the "
                               "runtime before it enters the namespace (rootfs.open_idmapped_mounts)",
                               errno.EPERM, path=p.destination)
        tree = idmapped_tree(ctx.proc, p, src)
    try:
        mountfd.attach(tree, target)
    except SyscallError as exc:
        raise SyscallError(f"{p.field}: move_mount", exc.errno or errno.EIO, path=p.destination) from None
    finally:
        os.close(tree)


def idmapped_tree(proc: ProcHandle, p: MountPlan, src: int) -> int:
    """A detached clone of src idmapped with the mount's mappings (through a helper user namespace).

    Needs CAP_SYS_ADMIN over the source filesystem's user namespace: the host's, for a host directory."""
    userns = _helper_userns(proc, p)
    try:
        tree = mountfd.clone_tree(src, recursive=p.options.recursive or p.options.idmap == "ridmap")
        try:
            mountfd.setattr_fd(tree, libc.MOUNT_ATTR_IDMAP, 0, recursive=p.options.idmap == "ridmap",
                               userns_fd=userns)
        except SyscallError as exc:
            os.close(tree)
            raise SyscallError(f"{p.field}: idmap mount_setattr", exc.errno or errno.EIO, path=p.destination) from None
        return tree
    finally:
        os.close(userns)


def _helper_userns(proc: ProcHandle, p: MountPlan) -> int:
    """fd of a new user namespace with p's mappings: a forked child unshares it and waits for the maps."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # helper: never returns
        try:
            os.close(ready_r)
            os.close(go_w)
            libc.unshare(libc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise SyscallError(f"{p.field}: idmap helper user namespace", errno.ECHILD)
        uid = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in p.uid_mappings)
        gid = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in p.gid_mappings)
        proc.write_pid_file(pid, "uid_map", uid)
        proc.write_pid_file(pid, "gid_map", gid)
        try:  # ns files are magic links by design: opened in our private procfs, for our own child
            return os.open(f"{proc.pid_dir(pid)}/ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc.fd)
        except OSError as exc:
            raise SyscallError("open user namespace", exc.errno or errno.EIO, pid=pid) from None
    finally:
        os.close(ready_r)
        os.close(go_w)  # releases the helper
        os.waitpid(pid, 0)


def open_idmapped_mounts(spec: dict[str, Any], *, bundle: str) -> dict[int, int]:
    """Runtime side, before the container gets its user namespace: index → detached idmapped tree fd for
    every idmapped mount. Pass the result to prepare(premounted=...); the fds are CLOEXEC."""
    out: dict[int, int] = {}
    plans = [p for p in mounts.plan_mounts(spec, bundle=bundle) if p.idmapped]
    if not plans:
        return out
    with ProcHandle.open() as proc:
        try:
            for p in plans:
                try:
                    src = os.open(p.source, os.O_PATH | os.O_CLOEXEC)
                except OSError as exc:
                    raise SyscallError(f"{p.field}.source: open", exc.errno or errno.EIO, path=p.source) from None
                try:
                    out[p.index] = idmapped_tree(proc, p, src)
                finally:
                    os.close(src)
        except BaseException:
            for fd in out.values():
                os.close(fd)
            raise
    return out


def open_device_nodes(spec: dict[str, Any]) -> dict[int, int]:
    """Runtime side, before the container gets its user namespace: linux.devices index → detached bind of
    a node made in a private tmpfs, for each c/b/u device (the container's root cannot mknod; a bind of the
    host's node, where there is one, would show the host's mode and owner instead of fileMode/uid/gid, which
    crun honours too). Fifos are made in the container.
    Pass the result to prepare(device_nodes=...); the fds are CLOEXEC."""
    linux = spec.get("linux") or {}
    out: dict[int, int] = {}
    try:
        for node in devices.plan_devices(spec):
            if node.index < 0 or node.kind == "p":
                continue
            uid = namespaces.host_id(linux.get("uidMappings") or [], node.uid)
            gid = namespaces.host_id(linux.get("gidMappings") or [], node.gid)
            if uid is None or gid is None:
                which, val = ("uid", node.uid) if uid is None else ("gid", node.gid)
                raise ConfigError(f"config.json: {node.field}.{which}: {val} is not mapped by "
                                  f"linux.{which}Mappings")
            log.debug("rootfs: %s %s made by the runtime (no such host node)", node.field, node.path)
            out[node.index] = devices.node_tree(node, uid, gid)
    except BaseException:
        for fd in out.values():
            os.close(fd)
        raise
    return out


# --- cgroup -------------------------------------------------------------------------------------------


def _mount_cgroup(ctx: _Ctx, p: MountPlan) -> None:
    """cgroup v2: a cgroup2 mount; v1/hybrid: a tmpfs with one mount per hierarchy. With its own cgroup
    namespace the container gets fresh cgroup mounts (they show the namespace root); without one it gets
    binds of its own cgroups, read-only unless the options say 'rw' (security.md class 11)."""
    opts = p.options
    ro = opts.readonly or (not ctx.own_cgroupns and not opts.clear & libc.MS_RDONLY)
    flags = (opts.flags & ~libc.MS_RDONLY) | _CGROUP_FLAGS
    info = ctx.proc.mountinfo()
    top = [mi for mi in info if mi.mountpoint == "/sys/fs/cgroup"]
    if top and top[-1].fstype == "cgroup2":
        sub = dataclasses.replace(p, kind="fs", fstype="cgroup2", source="cgroup",
                                  options=dataclasses.replace(opts, flags=flags | (libc.MS_RDONLY if ro else 0)))
        try:
            _mount_fs(ctx, sub)
        except SyscallError as exc:
            if exc.errno not in (errno.EPERM, errno.EBUSY):
                raise
            _bind_host_dir(ctx, p, "/sys/fs/cgroup", p.destination, flags | (libc.MS_RDONLY if ro else 0))
        return
    tmpfs = dataclasses.replace(p, kind="fs", fstype="tmpfs", source="tmpfs",
                                options=mounts.MountOptions(flags=_CGROUP_FLAGS, data="mode=755"))
    _mount_fs(ctx, tmpfs)
    own = _own_cgroups(ctx.proc)
    for mi in info:
        if mi.fstype not in ("cgroup", "cgroup2") or posixpath.dirname(mi.mountpoint) != "/sys/fs/cgroup":
            continue
        name = posixpath.basename(mi.mountpoint)
        dest = f"{p.destination}/{name}"
        subsys = [o for o in mi.super_options if o.startswith("name=") or "=" not in o and o not in _CG_FLAGS]
        sub_flags = flags | (libc.MS_RDONLY if ro else 0)
        if ctx.own_cgroupns:
            sub = dataclasses.replace(p, kind="fs", fstype=mi.fstype, source="cgroup", destination=dest,
                                      options=mounts.MountOptions(flags=sub_flags, data=",".join(subsys)))
            _mount_fs(ctx, sub)
        else:
            key = "" if mi.fstype == "cgroup2" else ",".join(sorted(subsys))
            path = own.get(key, mi.root)
            rel = path[len(mi.root.rstrip("/")):] if paths.inside(mi.root, path) else ""
            _bind_host_dir(ctx, p, mi.mountpoint + rel, dest, sub_flags)
        if "," in name:  # cpu,cpuacct → cpu and cpuacct symlinks
            parent = paths.mkdir_all_in_root(ctx.root_fd, p.destination)
            try:
                for alias in name.split(","):
                    if paths.lstat_at(parent, alias) is None:
                        paths.symlink_at(parent, alias, name)
            finally:
                os.close(parent)
    if ro:
        fd = paths.open_in_root(ctx.root_fd, p.destination, os.O_PATH | os.O_DIRECTORY)
        try:
            mountfd.setattr_fd(fd, libc.MOUNT_ATTR_RDONLY, 0, recursive=False)
        finally:
            os.close(fd)


def _own_cgroups(proc: ProcHandle) -> dict[str, str]:
    """/proc/self/cgroup → {sorted controllers joined by ',' ('' for v2): path}."""
    out: dict[str, str] = {}
    for line in proc.read_pid_file("thread-self", "cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[",".join(sorted(c for c in parts[1].split(",") if c))] = parts[2]
    return out


def _bind_host_dir(ctx: _Ctx, p: MountPlan, host_path: str, dest: str, flags: int) -> None:
    sub = dataclasses.replace(p, kind="bind", source=host_path, destination=dest,
                              options=mounts.MountOptions(flags=flags | libc.MS_BIND | libc.MS_REC))
    _mount_bind(ctx, sub)


# --- pivot --------------------------------------------------------------------------------------------


def pivot(rootfs: str, *, no_pivot: bool) -> None:
    """Make rootfs the root: pivot_root(".", ".") and detach the old root, or MS_MOVE + chroot."""
    if no_pivot:
        _ms_move_root(rootfs)
    else:
        _pivot_root(rootfs)
    os.chdir("/")


def _pivot_root(rootfs: str) -> None:
    """runc pivotRoot: pivot_root('.', '.') stacks the old root under the new one at '/'; make it rslave
    so our unmount does not propagate to the host, then detach it."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        libc.pivot_root(".", ".")
        os.fchdir(old)  # '.' is the old root now
        libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC, what="old root")
        libc.umount2(".", libc.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)


def _ms_move_root(rootfs: str) -> None:
    """runc msMoveRoot (--no-pivot): the host's full procfs/sysfs mounts outside the rootfs are detached
    first (the kernel checks mount visibility for new proc/sysfs mounts against every mount in the
    namespace), then the rootfs is moved over '/' and we chroot into it."""
    with ProcHandle.open() as proc:
        info = proc.mountinfo()
    for mi in info:
        if mi.root != "/" or mi.fstype not in ("proc", "sysfs") or paths.inside(rootfs, mi.mountpoint):
            continue
        try:
            libc.mount(None, mi.mountpoint, None, libc.MS_SLAVE | libc.MS_REC)
        except SyscallError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        try:
            libc.umount2(mi.mountpoint, libc.MNT_DETACH)
        except SyscallError as exc:
            if exc.errno not in (errno.EINVAL, errno.EPERM):
                raise
            libc.mount("tmpfs", mi.mountpoint, "tmpfs", 0)  # cannot unmount (locked): cover it
    os.chdir(rootfs)
    libc.mount(rootfs, "/", None, libc.MS_MOVE)
    libc.chroot(".")


# --- after pivot ---------------------------------------------------------------------------------------


def finalize(spec: dict[str, Any]) -> None:
    """After pivot, still privileged: root propagation, sysctl, readonlyPaths, maskedPaths, /dev ro, root ro."""
    linux = spec.get("linux") or {}
    writes = sysctl.plan(spec)
    prop = mounts.root_propagation(spec, no_pivot=False)
    plans = mounts.plan_mounts(spec, bundle="/")
    root = paths.open_root("/")
    try:
        if prop:  # after pivot: applied to the container's '/', never to the host's (runc)
            mountfd.setattr_fd(root, 0, 0, recursive=bool(prop & libc.MS_REC), propagation=prop & ~libc.MS_REC)
        if writes:
            with ProcHandle.open() as proc:
                sysctl.apply(proc, writes)
        for i, path in enumerate(linux.get("readonlyPaths") or []):
            _readonly_path(root, path, f"linux.readonlyPaths[{i}]")
        for i, path in enumerate(linux.get("maskedPaths") or []):
            _mask_path(root, path, f"linux.maskedPaths[{i}]")
        if any(p.defer_readonly for p in plans):
            fd = paths.open_in_root(root, "/dev", os.O_PATH | os.O_DIRECTORY)
            try:
                mountfd.setattr_fd(fd, libc.MOUNT_ATTR_RDONLY, 0, recursive=False)
            finally:
                os.close(fd)
        if (spec.get("root") or {}).get("readonly"):
            mountfd.setattr_fd(root, libc.MOUNT_ATTR_RDONLY, 0, recursive=False)
    finally:
        os.close(root)


def _open_existing(root: int, path: Any, field: str) -> int | None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"config.json: {field}: {path!r} is not an absolute path")
    try:
        return paths.open_in_root(root, path, os.O_PATH)
    except SyscallError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None  # nonexistent targets are skipped (runc)
        raise SyscallError(f"{field}: open", exc.errno or errno.EIO, path=path) from None


def _readonly_path(root: int, path: Any, field: str) -> None:
    """Bind the path onto itself read-only (recursively), as one detached tree moved into place."""
    fd = _open_existing(root, path, field)
    if fd is None:
        return
    try:
        tree = mountfd.clone_tree(fd, recursive=True)
        try:
            mountfd.setattr_fd(tree, libc.MOUNT_ATTR_RDONLY, 0, recursive=True)
            mountfd.attach(tree, fd)
        finally:
            os.close(tree)
    except SyscallError as exc:
        raise SyscallError(f"{field}: make read-only", exc.errno or errno.EIO, path=path) from None
    finally:
        os.close(fd)


def _mask_path(root: int, path: Any, field: str) -> None:
    """Files: bind the container's /dev/null, verified char 1:3 on its fd (CVE-2025-31133); directories:
    a read-only, empty tmpfs."""
    fd = _open_existing(root, path, field)
    if fd is None:
        return
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            tree = mountfd.new_fs("tmpfs", [("nr_blocks", "1"), ("nr_inodes", "1"), ("mode", "0")],
                                  libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV
                                  | libc.MOUNT_ATTR_NOEXEC)
        else:
            null = paths.open_in_root(root, "/dev/null", os.O_PATH, follow=False)
            try:
                paths.verify_device_fd(null, "c", 1, 3, "/dev/null")
                tree = mountfd.clone_tree(null, recursive=False)
            finally:
                os.close(null)
        try:
            mountfd.attach(tree, fd)
        finally:
            os.close(tree)
    except SyscallError as exc:
        raise SyscallError(f"{field}: mask", exc.errno or errno.EIO, path=path,
                           why=None if exc.errno != errno.EPERM else str(exc)) from None
    finally:
        os.close(fd)


def enter_cwd(cwd: str) -> None:
    """After pivot: chdir to process.cwd resolved inside the root, created if missing (runc). Magic links
    are refused, so a cwd like /proc/self/fd/N cannot reach a leaked host fd (CVE-2024-21626, B2)."""
    root = paths.open_root("/")
    try:
        try:
            fd = paths.open_in_root(root, cwd, os.O_PATH | os.O_DIRECTORY)
        except SyscallError as exc:
            if exc.errno != errno.ENOENT:
                raise SyscallError("process.cwd: open", exc.errno or errno.EIO, path=cwd) from None
            fd = paths.mkdir_all_in_root(root, cwd)
        try:
            os.fchdir(fd)
        except OSError as exc:
            raise SyscallError("process.cwd: chdir", exc.errno or errno.EIO, path=cwd) from None
        finally:
            os.close(fd)
    finally:
        os.close(root)
