"""ctypes bindings for the system calls the stdlib lacks, and the kernel constants pyoci uses.

Every wrapper checks its return value and raises SyscallError (op, args, errno). Only pyoci.linux
may import this module's functions; everything else goes through pyoci.linux.
"""
from __future__ import annotations

import ctypes
import os
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
NR = dict(_ARCH_NR.get(os.uname().machine, _ARCH_NR["x86_64"]))
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


# --- rootfs / mounts / devices helpers (appended by the filesystem work) ---
MS_POSIXACL = 1 << 16
STATX_MNT_ID = 0x1000
STATX_MNT_ID_UNIQUE = 0x4000
RENAME_EXCHANGE = 2


def statx_mnt_id(fd: int) -> int:
    """Mount id of the mount that fd lives on (statx STATX_MNT_ID on the fd itself)."""
    buf = ctypes.create_string_buffer(256)
    fn = _libc.statx
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    _check(fn(fd, b"", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, buf), "statx", fd=fd)
    mask, = struct.unpack_from("I", buf.raw, 0)
    if not mask & STATX_MNT_ID:
        raise SyscallError("statx (no STATX_MNT_ID)", 95, fd=fd)
    return int(struct.unpack_from("Q", buf.raw, 144)[0])


def chroot(path: str) -> None:
    _check(_libc.chroot(_b(path)), "chroot", path=path)


# --------------------------------------------------------------------------- process confinement
# (capabilities, seccomp, scheduler, I/O priority, personality, keyrings, rlimits: used by pyoci.confine)
import errno  # noqa: E402  (this section is appended; resource is a C extension: load it now, never after pivot)
import resource  # noqa: E402
_NR_CONFINE = {
    "x86_64": {"capget": 125, "capset": 126, "seccomp": 317, "ioprio_get": 252},
    "aarch64": {"capget": 90, "capset": 91, "seccomp": 277, "ioprio_get": 31},
}
NR.update(_NR_CONFINE.get(os.uname().machine, _NR_CONFINE["x86_64"]))

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32

KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
IOPRIO_WHO_PROCESS = 1
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread as 64-bit masks."""
    hdr = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    hbuf, dbuf = ctypes.create_string_buffer(hdr, 8), ctypes.create_string_buffer(24)
    _check(_syscall(NR["capget"], hbuf, dbuf), "capget")
    e0, p0, i0, e1, p1, i1 = struct.unpack("6I", dbuf.raw)
    return e0 | e1 << 32, p0 | p1 << 32, i0 | i1 << 32


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) of the calling thread, all three sets at once (64-bit masks)."""
    lo, hi = 0xFFFFFFFF, 32
    hbuf = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0), 8)
    data = struct.pack("6I", effective & lo, permitted & lo, inheritable & lo,
                       effective >> hi & lo, permitted >> hi & lo, inheritable >> hi & lo)
    dbuf = ctypes.create_string_buffer(data, len(data))
    _check(_syscall(NR["capset"], hbuf, dbuf), "capset", effective=hex(effective), permitted=hex(permitted),
           inheritable=hex(inheritable))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(prog: bytes | None, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog); returns the listener fd with NEW_LISTENER, else 0.

    prog=None probes whether the kernel accepts `flags`: it then fails with EFAULT (flags fine) or EINVAL.
    """
    if prog is None:
        return _check(_syscall(NR["seccomp"], ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags),
                               None), "seccomp", flags=hex(flags))
    insns = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.addressof(insns))
    return _check(_syscall(NR["seccomp"], ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags),
                           ctypes.byref(fprog)), "seccomp SECCOMP_SET_MODE_FILTER", flags=hex(flags),
                  instructions=len(prog) // 8)


def seccomp_action_avail(action: int) -> bool:
    """seccomp(SECCOMP_GET_ACTION_AVAIL): does the kernel know this SECCOMP_RET_* action?"""
    val = ctypes.c_uint32(action)
    if _syscall(NR["seccomp"], ctypes.c_uint(SECCOMP_GET_ACTION_AVAIL), ctypes.c_uint(0), ctypes.byref(val)) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EOPNOTSUPP:
        return False
    raise SyscallError("seccomp SECCOMP_GET_ACTION_AVAIL", err, action=hex(action))


def sched_setattr(attr: bytes, pid: int = 0, *, what: str | None = None) -> None:
    buf = ctypes.create_string_buffer(attr, len(attr))
    _check(_syscall(NR["sched_setattr"], ctypes.c_int(pid), buf, ctypes.c_uint(0)), "sched_setattr",
           policy=what)


def ioprio_set(which: int, who: int, ioprio: int) -> None:
    _check(_syscall(NR["ioprio_set"], ctypes.c_int(which), ctypes.c_int(who), ctypes.c_int(ioprio)),
           "ioprio_set", ioprio=hex(ioprio))


def ioprio_get(which: int, who: int) -> int:
    return _check(_syscall(NR["ioprio_get"], ctypes.c_int(which), ctypes.c_int(who)), "ioprio_get")


def personality(persona: int) -> int:
    """personality(2); returns the previous persona (0xffffffff only queries)."""
    ret = _syscall(NR["personality"], ctypes.c_ulong(persona))
    if ret == -1:
        raise SyscallError("personality", ctypes.get_errno(), persona=hex(persona))
    return ret & 0xFFFFFFFF


def keyctl_join_session_keyring(name: str | None) -> int:
    """Join (or create) the named session keyring; returns its serial."""
    return _check(_syscall(NR["keyctl"], ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), _b(name)),
                  "keyctl KEYCTL_JOIN_SESSION_KEYRING", name=name)


def keyctl_describe(key: int) -> str:
    """'type;uid;gid;perm;description' of a key."""
    buf = ctypes.create_string_buffer(4096)
    n = _check(_syscall(NR["keyctl"], ctypes.c_int(KEYCTL_DESCRIBE), ctypes.c_int(key), buf,
                        ctypes.c_size_t(len(buf))), "keyctl KEYCTL_DESCRIBE", key=key)
    return buf.raw[:max(0, min(n, len(buf)) - 1)].decode(errors="replace")


def keyctl_setperm(key: int, perm: int) -> None:
    _check(_syscall(NR["keyctl"], ctypes.c_int(KEYCTL_SETPERM), ctypes.c_int(key), ctypes.c_uint(perm)),
           "keyctl KEYCTL_SETPERM", key=key, perm=hex(perm))


def setrlimit(resource_nr: int, soft: int, hard: int, *, what: str) -> None:
    """prlimit(2) on ourselves; values >= 2**63 mean RLIM_INFINITY."""
    def lim(v: int) -> int:
        return resource.RLIM_INFINITY if v >= 1 << 63 else v

    try:
        resource.prlimit(0, resource_nr, (lim(soft), lim(hard)))
    except OSError as exc:
        raise SyscallError("setrlimit", exc.errno or errno.EINVAL, limit=what, soft=soft, hard=hard) from None
    except ValueError as exc:
        raise SyscallError("setrlimit", errno.EINVAL, limit=what, soft=soft, hard=hard, why=str(exc)) from None


# --- bpf(2): cgroup v2 device programs (pyoci.cgroups.bpf builds the instructions) ---
NR.setdefault("bpf", {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321))
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_GET_FD_BY_ID, BPF_PROG_QUERY = 5, 8, 9, 13, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
_BPF_ATTR_SIZE = 128


def _bpf(cmd: int, attr: bytes | ctypes.Array[ctypes.c_char], op: str, **args: object) -> int:
    buf = attr if isinstance(attr, ctypes.Array) else ctypes.create_string_buffer(attr, _BPF_ATTR_SIZE)
    return _check(_syscall(NR["bpf"], ctypes.c_int(cmd), buf, ctypes.c_uint(_BPF_ATTR_SIZE)), op, **args)


def bpf_prog_load(prog_type: int, insns: bytes, license: str, expected_attach_type: int) -> int:
    """Load a program; returns an O_CLOEXEC fd. On failure it is loaded again with a log for the error."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(1 << 20)

    def attr(level: int) -> bytes:
        a = struct.pack("=IIQQIIQ", prog_type, len(insns) // 8, ctypes.addressof(code), ctypes.addressof(lic),
                        level, len(log) if level else 0, ctypes.addressof(log) if level else 0)
        return a + bytes(68 - len(a)) + struct.pack("=I", expected_attach_type)   # expected_attach_type @68

    try:
        return _bpf(BPF_PROG_LOAD, attr(0), "bpf BPF_PROG_LOAD", insns=len(insns) // 8)
    except SyscallError as exc:
        try:
            os.close(_bpf(BPF_PROG_LOAD, attr(1), "bpf BPF_PROG_LOAD"))
        except SyscallError:
            pass
        text = log.value.decode(errors="replace").strip().replace("\n", "; ")[-400:]
        raise SyscallError("bpf BPF_PROG_LOAD", exc.errno or 0, insns=len(insns) // 8, log=text or None) from None


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
    _bpf(BPF_PROG_ATTACH, struct.pack("=IIII", target_fd, prog_fd, attach_type, flags), "bpf BPF_PROG_ATTACH",
         flags=flags)


def bpf_prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    _bpf(BPF_PROG_DETACH, struct.pack("=III", target_fd, prog_fd, attach_type), "bpf BPF_PROG_DETACH")


def bpf_prog_query(target_fd: int, attach_type: int, max_progs: int = 64) -> list[int]:
    """Ids of the programs attached to target_fd for attach_type."""
    ids = (ctypes.c_uint32 * max_progs)()
    attr = ctypes.create_string_buffer(struct.pack("=IIIIQI", target_fd, attach_type, 0, 0, ctypes.addressof(ids),
                                                   max_progs), _BPF_ATTR_SIZE)
    _bpf(BPF_PROG_QUERY, attr, "bpf BPF_PROG_QUERY")
    count = struct.unpack_from("=I", attr.raw, 24)[0]
    return [int(ids[i]) for i in range(min(count, max_progs))]


def bpf_prog_get_fd_by_id(prog_id: int) -> int:
    return _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("=I", prog_id), "bpf BPF_PROG_GET_FD_BY_ID", id=prog_id)


def get_pdeathsig() -> int:
    """prctl(PR_GET_PDEATHSIG): the parent-death signal of the calling thread (0 = none)."""
    sig = ctypes.c_int(0)
    fn = _libc.prctl
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    try:
        _check(fn(2, ctypes.addressof(sig), 0, 0, 0), "prctl PR_GET_PDEATHSIG")
    finally:
        fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return sig.value


# --- terminals: pty allocation inside the container (pyoci.console) ---
# asm-generic ioctl numbers (x86_64 and aarch64 share them).
import fcntl  # noqa: E402  (appended section; loaded with this module, never lazily after pivot)
TIOCGPTN = 0x80045430      # _IOR('T', 0x30, unsigned int): index of the pty pair
TIOCSPTLCK = 0x40045431    # _IOW('T', 0x31, int): (un)lock the peer
TIOCGPTPEER = 0x5441       # _IO('T', 0x41): open the peer of a master fd (Linux 4.13)
UNIX98_PTY_SLAVE_MAJOR = 136
UNIX98_PTY_MAJOR_COUNT = 8
PTMX_MAJOR, PTMX_MINOR = 5, 2


def pty_unlock(master: int) -> None:
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    except OSError as exc:
        raise SyscallError("ioctl TIOCSPTLCK", exc.errno or errno.EIO) from None


def pty_index(master: int) -> int:
    try:
        return int(struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0])
    except OSError as exc:
        raise SyscallError("ioctl TIOCGPTN", exc.errno or errno.EIO) from None


def pty_peer(master: int, flags: int) -> int:
    """TIOCGPTPEER: an fd for the peer of `master`, without any path lookup."""
    try:
        return int(fcntl.ioctl(master, TIOCGPTPEER, flags))
    except OSError as exc:
        raise SyscallError("ioctl TIOCGPTPEER", exc.errno or errno.EIO) from None


def close_fds_except(first: int, keep: int) -> None:
    """close_range(first, ~0), sparing one fd (keep < first: nothing to spare)."""
    if keep >= first:
        if keep > first:
            close_range(first, keep - 1)
        close_range(keep + 1)
    else:
        close_range(first)
