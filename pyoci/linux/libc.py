"""ctypes bindings for the system calls the stdlib lacks, and the kernel constants pyoci uses.

Every wrapper checks its return value and raises SyscallError (op, args, errno). Only pyoci.linux
may import this module's functions; everything else goes through pyoci.linux.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct

from pyoci.errors import SyscallError

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# Syscalls numbered >= 424 are the same on every architecture; the older ones are per-arch.
_ARCH_NR = {
    "x86_64": {"pivot_root": 155, "unshare": 272, "setns": 308, "sched_setattr": 314,
               "ioprio_set": 251, "keyctl": 250, "personality": 135, "add_key": 248},
    "aarch64": {"pivot_root": 41, "unshare": 97, "setns": 268, "sched_setattr": 274,
                "ioprio_set": 30, "keyctl": 219, "personality": 92, "add_key": 217},
}
NR = dict(_ARCH_NR.get(platform.machine(), _ARCH_NR["x86_64"]))
NR.update(pidfd_send_signal=424, open_tree=428, move_mount=429, fsopen=430, fsconfig=431,
          fsmount=432, fspick=433, pidfd_open=434, clone3=435, close_range=436, openat2=437,
          mount_setattr=442)

# clone / unshare flags (linux/sched.h)
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags (linux/mount.h)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MS_PROPAGATION = MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# openat2 resolve flags (linux/openat2.h)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
O_PATH = os.O_PATH

# new mount API
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# statfs magics
PROC_SUPER_MAGIC = 0x9FA0
DEVPTS_SUPER_MAGIC = 0x1CD1
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270

# statfs f_flags (ST_*) to keep locked flags on bind remounts
ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC = 1, 2, 4, 8
ST_NOATIME, ST_NODIRATIME, ST_RELATIME = 1024, 2048, 4096

PR_SET_CHILD_SUBREAPER = 36


def _check(ret: int, op: str, **args: object) -> int:
    if ret < 0:
        raise SyscallError(op, ctypes.get_errno(), **args)
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None:
        return None
    return s if isinstance(s, bytes) else os.fsencode(s)


def unshare(flags: int) -> None:
    _check(_syscall(NR["unshare"], ctypes.c_int(flags)), "unshare", flags=hex(flags))


def setns(fd: int, nstype: int = 0, *, what: str | None = None) -> None:
    _check(_syscall(NR["setns"], ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", ns=what)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None, *, what: str | None = None) -> None:
    fn = _libc.mount
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    ret = fn(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, "mount", src=source, dst=what or target, type=fstype,
           flags=flag_names(flags) or None, data=data or None)


def umount2(target: str, flags: int = 0) -> None:
    fn = _libc.umount2
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int]
    _check(fn(_b(target), flags), "umount2", target=target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(NR["pivot_root"], _b(new_root), _b(put_old)), "pivot_root", new=new_root, old=put_old)


def sethostname(name: str) -> None:
    data = name.encode()
    _check(_libc.sethostname(data, ctypes.c_size_t(len(data))), "sethostname", name=name)


def setdomainname(name: str) -> None:
    data = name.encode()
    _check(_libc.setdomainname(data, ctypes.c_size_t(len(data))), "setdomainname", name=name)


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2); flags always get O_CLOEXEC."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve)
    buf = ctypes.create_string_buffer(how, len(how))
    return _check(_syscall(NR["openat2"], ctypes.c_int(dirfd), _b(path), buf, ctypes.c_size_t(len(how))),
                  "openat2", path=path, resolve=hex(resolve))


def open_tree(dirfd: int, path: str, flags: int) -> int:
    return _check(_syscall(NR["open_tree"], ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags)),
                  "open_tree", path=path or f"fd:{dirfd}")


def move_mount(from_dirfd: int, from_path: str, to_dirfd: int, to_path: str, flags: int) -> None:
    _check(_syscall(NR["move_mount"], ctypes.c_int(from_dirfd), _b(from_path), ctypes.c_int(to_dirfd),
                    _b(to_path), ctypes.c_uint(flags)), "move_mount", to=to_path or f"fd:{to_dirfd}")


def fsopen(fstype: str) -> int:
    return _check(_syscall(NR["fsopen"], _b(fstype), ctypes.c_uint(FSOPEN_CLOEXEC)), "fsopen", type=fstype)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    _check(_syscall(NR["fsconfig"], ctypes.c_int(fd), ctypes.c_uint(cmd), _b(key), _b(value),
                    ctypes.c_int(0)), "fsconfig", key=key, value=value)


def fsmount(fd: int, attr_flags: int = 0) -> int:
    return _check(_syscall(NR["fsmount"], ctypes.c_int(fd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                           ctypes.c_uint(attr_flags)), "fsmount")


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = struct.pack("QQQQ", attr_set, attr_clr, propagation, userns_fd)
    buf = ctypes.create_string_buffer(attr, len(attr))
    _check(_syscall(NR["mount_setattr"], ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags), buf,
                    ctypes.c_size_t(len(attr))), "mount_setattr", path=path or f"fd:{dirfd}",
           set=hex(attr_set), clr=hex(attr_clr))


def pidfd_open(pid: int) -> int:
    return _check(_syscall(NR["pidfd_open"], ctypes.c_int(pid), ctypes.c_uint(0)), "pidfd_open", pid=pid)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(_syscall(NR["pidfd_send_signal"], ctypes.c_int(pidfd), ctypes.c_int(sig), None,
                    ctypes.c_uint(0)), "pidfd_send_signal", sig=sig)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_syscall(NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags)),
           "close_range", first=first)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    fn = _libc.prctl
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _check(fn(option, arg2, arg3, arg4, arg5), "prctl", option=option)


def raw_syscall(name: str, *args: int) -> int:
    """Call a syscall by name (NR table) with integer/pointer args; checked."""
    return _check(_syscall(NR[name], *args), name)


def get_errno() -> int:
    return ctypes.get_errno()


_MS_NAMES = [(v, k) for k, v in sorted(globals().items()) if k.startswith("MS_") and k != "MS_PROPAGATION"]


def flag_names(flags: int) -> str:
    """Render MS_* flags as 'MS_BIND|MS_REC' for error messages."""
    names = [n for v, n in sorted(_MS_NAMES) if flags & v]
    return "|".join(names)


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long), ("f_blocks", ctypes.c_ulong),
                ("f_bfree", ctypes.c_ulong), ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
                ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2), ("f_namelen", ctypes.c_long),
                ("f_frsize", ctypes.c_long), ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4)]


def fstatfs(fd: int) -> tuple[int, int]:
    """(f_type, f_flags) of the filesystem behind fd."""
    buf = _Statfs()
    _check(_libc.fstatfs(ctypes.c_int(fd), ctypes.byref(buf)), "fstatfs", fd=fd)
    return buf.f_type & 0xFFFFFFFF, buf.f_flags


NS_GET_NSTYPE = 0xB703
