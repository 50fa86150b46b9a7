"""Default and linux.devices nodes and the /dev symlinks: a pure plan, applied relative to in-root fds.

config-linux.md#devices: nodes are created with mknod, or bind-mounted where mknod is not allowed (a user
namespace): the host's node at the same path, or else a node the runtime made in a private tmpfs before the
container entered its user namespace (node_tree(), as crun). An existing file that does not match the
requested device is an error, so a rootfs that plants a symlink or a regular file at /dev/null stops the
container (security.md class 9).
"""
from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Mapping
from typing import Any

from pyoci.errors import ConfigError, SyscallError
from pyoci.linux import libc, mountfd, paths
from pyoci.linux.mountfd import FdMounter

_KINDS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceNode:
    path: str          # cleaned absolute container path
    kind: str          # "c", "b" or "p" ("u" is a character device)
    major: int
    minor: int
    mode: int          # permission bits
    uid: int
    gid: int
    field: str         # "linux.devices[2]" or "default device /dev/null"
    index: int = dataclasses.field(default=-1, compare=False)  # in linux.devices; -1 for a default device

    @property
    def type_bits(self) -> int:
        return _KINDS[self.kind]


def _default(name: str, major: int, minor: int) -> DeviceNode:
    return DeviceNode(f"/dev/{name}", "c", major, minor, 0o666, 0, 0, f"default device /dev/{name}")


# config-linux.md#default-devices (console and ptmx are handled elsewhere).
DEFAULT_DEVICES = (_default("null", 1, 3), _default("zero", 1, 5), _default("full", 1, 7),
                   _default("random", 1, 8), _default("urandom", 1, 9), _default("tty", 5, 0))
# (name in /dev, target); ptmx replaces whatever is there (the devpts instance's ptmx must be used).
DEV_SYMLINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"))
PTMX = ("ptmx", "pts/ptmx")
CORE = ("core", "/proc/kcore")


def plan_devices(spec: dict[str, Any]) -> tuple[DeviceNode, ...]:
    """Default devices, then linux.devices; a spec device replaces a default at the same path."""
    out: dict[str, DeviceNode] = {d.path: d for d in DEFAULT_DEVICES}
    for i, d in enumerate((spec.get("linux") or {}).get("devices") or []):
        field = f"linux.devices[{i}]"
        path, kind = d.get("path"), d.get("type")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"config.json: {field}.path: must be an absolute path, got {path!r}")
        cpath = paths.clean(path)
        if cpath == "/":
            raise ConfigError(f"config.json: {field}.path: {path!r} is not a file path")
        if kind not in _KINDS:
            raise ConfigError(f"config.json: {field}.type: {kind!r} is not one of c, b, u, p")
        major, minor = d.get("major"), d.get("minor")
        if kind != "p" and (not isinstance(major, int) or not isinstance(minor, int)):
            raise ConfigError(f"config.json: {field}: major and minor are required for type {kind!r}")
        if kind != "p" and (major < 0 or minor < 0):
            raise ConfigError(f"config.json: {field}: negative major/minor")
        mode = d.get("fileMode", 0o666)
        if not isinstance(mode, int) or not 0 <= mode <= 0o177777:
            raise ConfigError(f"config.json: {field}.fileMode: invalid mode {mode!r}")
        out.pop(cpath, None)
        uid, gid = int(d.get("uid", 0) or 0), int(d.get("gid", 0) or 0)
        out[cpath] = DeviceNode(cpath, "c" if kind == "u" else kind, major or 0, minor or 0,
                                stat.S_IMODE(mode), uid, gid, field, index=i)
    return tuple(out.values())


def apply_devices(root_fd: int, nodes: tuple[DeviceNode, ...], *, bind: bool, mounter: FdMounter,
                  premade: Mapping[int, int] | None = None) -> None:
    """Create each node inside the root (parents resolved in-root, the node itself with *at calls).

    premade: linux.devices index → detached node made by node_tree() in the runtime, bound instead of the
    host's node (bind only); each is closed here once its node is done."""
    premade = premade or {}
    old = os.umask(0)  # fileMode is exact
    try:
        for node in nodes:
            tree = premade.get(node.index, -1) if node.index >= 0 else -1
            try:
                _apply_node(root_fd, node, bind=bind, mounter=mounter, tree=tree)
            finally:
                if tree >= 0:
                    os.close(tree)
    finally:
        os.umask(old)


def _apply_node(root_fd: int, node: DeviceNode, *, bind: bool, mounter: FdMounter, tree: int) -> None:
    parent, name = paths.open_parent_in_root(root_fd, node.path)
    try:
        st = paths.lstat_at(parent, name)
        if st is not None:
            if paths.is_device(st, node.kind, node.major, node.minor):
                return
            raise ConfigError(f"{node.field}: {node.path} already exists and is not the requested device "
                              f"{node.kind} {node.major}:{node.minor} ({_describe(st)})")
        if bind and tree >= 0:  # the host has no such node: the runtime made one (mknod is EPERM here)
            _attach_premade(parent, name, node, tree)
            return
        if not bind or node.kind == "p":
            try:
                paths.mknod_at(parent, name, node.type_bits | node.mode, os.makedev(node.major, node.minor))
                paths.chown_at(parent, name, node.uid, node.gid)
                return
            except SyscallError as exc:
                if exc.errno != errno.EPERM or node.kind == "p":
                    raise SyscallError(f"{node.field}: mknod", exc.errno or errno.EIO, path=node.path) from None
        _bind_from_host(parent, name, node, mounter)
    finally:
        os.close(parent)


def _attach_premade(parent: int, name: str, node: DeviceNode, tree: int) -> None:
    target = paths.create_empty_at(parent, name)
    try:
        mountfd.attach(tree, target)
    except SyscallError as exc:
        raise SyscallError(f"{node.field}: move_mount the runtime's device node", exc.errno or errno.EIO,
                           path=node.path) from None
    finally:
        os.close(target)
    _verify_mounted(parent, name, node)


def _bind_from_host(parent: int, name: str, node: DeviceNode, mounter: FdMounter) -> None:
    """mknod is not allowed (user namespace): bind the host's node at the same path, verified on its fd."""
    try:
        host = os.open(node.path, os.O_PATH | os.O_CLOEXEC)  # host path (runtime side, before pivot)
    except OSError as exc:
        raise SyscallError(f"{node.field}: open host device to bind it", exc.errno or errno.EIO,
                           path=node.path) from None
    try:
        if not paths.is_device(os.fstat(host), node.kind, node.major, node.minor):
            raise ConfigError(f"{node.field}: cannot bind {node.path} from the host in a user namespace: the "
                              f"host file is not {node.kind} {node.major}:{node.minor}")
        target = paths.create_empty_at(parent, name)
        try:
            mounter.bind(host, target, recursive=False, what=node.path, source=node.path)
        finally:
            os.close(target)
    finally:
        os.close(host)
    _verify_mounted(parent, name, node)


def _verify_mounted(parent: int, name: str, node: DeviceNode) -> None:
    """What the path shows now (the bind on top) must be the requested device: type and number."""
    fd = paths.open_at(parent, name, os.O_PATH)
    try:
        paths.verify_device_fd(fd, node.kind, node.major, node.minor, node.path)
    except SyscallError as exc:
        raise SyscallError(f"{node.field}: after the bind: {exc.op}", exc.errno or errno.EIO) from None
    finally:
        os.close(fd)


# --- runtime side, host user namespace ------------------------------------------------------------------


def host_has(node: DeviceNode) -> bool:
    """Is the host's file at node.path that device (type and number, checked on an O_PATH fd)?"""
    try:
        fd = os.open(node.path, os.O_PATH | os.O_CLOEXEC)  # as _bind_from_host() will open it
    except OSError:
        return False
    try:
        return paths.is_device(os.fstat(fd), node.kind, node.major, node.minor)
    finally:
        os.close(fd)


def node_tree(node: DeviceNode, host_uid: int, host_gid: int) -> int:
    """A detached bind of just one new device node, made in a private detached tmpfs (never attached to any
    mount table, so nothing is left behind): mknod needs CAP_MKNOD in the host's user namespace, and the
    filesystem must not be nodev. Owned by the host ids the container's uid/gid map to; CLOEXEC.
    Runtime side, before the container enters its user namespace."""
    try:
        fs = mountfd.new_fs("tmpfs", [("mode", "0700"), ("nr_inodes", "2"), ("nr_blocks", "1")],
                            libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC)
    except SyscallError as exc:
        raise SyscallError(f"{node.field}: private tmpfs for the device node", exc.errno or errno.EIO,
                           path=node.path) from None
    try:
        name = "dev"
        try:
            paths.mknod_at(fs, name, node.type_bits | 0o600, os.makedev(node.major, node.minor))
            paths.chown_at(fs, name, host_uid, host_gid)
            os.chmod(name, node.mode, dir_fd=fs)  # after chown (it clears set-id bits); no symlink in here
            tree = mountfd.clone_at(fs, name)
        except (SyscallError, OSError) as exc:
            raise SyscallError(f"{node.field}: make the device node", exc.errno or errno.EIO,
                               path=node.path) from None
    finally:
        os.close(fs)
    try:
        paths.verify_device_fd(tree, node.kind, node.major, node.minor, node.path)
    except BaseException:
        os.close(tree)
        raise
    return tree


def _describe(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if stat.S_ISREG(st.st_mode):
        return "a regular file"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        return f"device {kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f"mode {oct(st.st_mode)}"


def apply_symlinks(root_fd: int, *, with_core: bool) -> None:
    """/dev/fd, stdin, stdout, stderr (kept if present), /dev/ptmx → pts/ptmx (replacing what is there),
    /dev/core when the kernel has /proc/kcore; all relative to the in-root /dev directory fd."""
    dev = paths.mkdir_all_in_root(root_fd, "/dev")
    try:
        links = list(DEV_SYMLINKS) + ([CORE] if with_core else [])
        for name, target in links:
            if paths.lstat_at(dev, name) is None:
                paths.symlink_at(dev, name, target)
        name, target = PTMX
        st = paths.lstat_at(dev, name)
        if st is not None:
            if stat.S_ISLNK(st.st_mode) and paths.readlink_at(dev, name) == target:
                return
            paths.unlink_at(dev, name, is_dir=stat.S_ISDIR(st.st_mode))
        paths.symlink_at(dev, name, target)
    finally:
        os.close(dev)
