"""Mount plans from config.json (pure): option parsing (config.md "Linux mount options"), destination rules.

Options become mount(2) flags to set and to clear, propagation changes (each its own mount(2) call),
recursive attributes for mount_setattr(AT_RECURSIVE), idmap requests and a data string of everything
unknown, in the order given ("Unknown options SHOULD be passed as the data string").
"""
from __future__ import annotations

import dataclasses
import os
import posixpath
from typing import Any

from pyoci.errors import ConfigError
from pyoci.linux import libc

# option → (clear?, MS_* flag); runc specconv mountFlags / mount(8).
FLAGS: dict[str, tuple[bool, int]] = {
    "acl": (False, libc.MS_POSIXACL), "noacl": (True, libc.MS_POSIXACL),
    "async": (True, libc.MS_SYNCHRONOUS), "sync": (False, libc.MS_SYNCHRONOUS),
    "atime": (True, libc.MS_NOATIME), "noatime": (False, libc.MS_NOATIME),
    "bind": (False, libc.MS_BIND), "rbind": (False, libc.MS_BIND | libc.MS_REC),
    "defaults": (False, 0),
    "dev": (True, libc.MS_NODEV), "nodev": (False, libc.MS_NODEV),
    "diratime": (True, libc.MS_NODIRATIME), "nodiratime": (False, libc.MS_NODIRATIME),
    "dirsync": (False, libc.MS_DIRSYNC),
    "exec": (True, libc.MS_NOEXEC), "noexec": (False, libc.MS_NOEXEC),
    "iversion": (False, libc.MS_I_VERSION), "noiversion": (True, libc.MS_I_VERSION),
    "lazytime": (False, libc.MS_LAZYTIME), "nolazytime": (True, libc.MS_LAZYTIME),
    "loud": (True, libc.MS_SILENT), "silent": (False, libc.MS_SILENT),
    "mand": (False, libc.MS_MANDLOCK), "nomand": (True, libc.MS_MANDLOCK),
    "relatime": (False, libc.MS_RELATIME), "norelatime": (True, libc.MS_RELATIME),
    "strictatime": (False, libc.MS_STRICTATIME), "nostrictatime": (True, libc.MS_STRICTATIME),
    "remount": (False, libc.MS_REMOUNT),
    "ro": (False, libc.MS_RDONLY), "rw": (True, libc.MS_RDONLY),
    "suid": (True, libc.MS_NOSUID), "nosuid": (False, libc.MS_NOSUID),
    "symfollow": (True, libc.MS_NOSYMFOLLOW), "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
}
PROPAGATION: dict[str, int] = {
    "private": libc.MS_PRIVATE, "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED, "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE, "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE, "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}
_ATIME_ALL = libc.MOUNT_ATTR__ATIME
# option → (MOUNT_ATTR_* to set, to clear) applied with mount_setattr(AT_RECURSIVE). The access-time mode
# is one field: setting one needs the whole MOUNT_ATTR__ATIME in attr_clr (mount_setattr(2)); clearing
# one ('ratime', 'rnorelatime', 'rnostrictatime') returns to the default, relatime.
RECURSIVE: dict[str, tuple[int, int]] = {
    "rro": (libc.MOUNT_ATTR_RDONLY, 0), "rrw": (0, libc.MOUNT_ATTR_RDONLY),
    "rnosuid": (libc.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, libc.MOUNT_ATTR_NOSUID),
    "rnodev": (libc.MOUNT_ATTR_NODEV, 0), "rdev": (0, libc.MOUNT_ATTR_NODEV),
    "rnoexec": (libc.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, libc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (libc.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, libc.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (libc.MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, libc.MOUNT_ATTR_NOSYMFOLLOW),
    "rrelatime": (libc.MOUNT_ATTR_RELATIME, _ATIME_ALL), "rnorelatime": (libc.MOUNT_ATTR_RELATIME, _ATIME_ALL),
    "rnoatime": (libc.MOUNT_ATTR_NOATIME, _ATIME_ALL), "ratime": (libc.MOUNT_ATTR_RELATIME, _ATIME_ALL),
    "rstrictatime": (libc.MOUNT_ATTR_STRICTATIME, _ATIME_ALL),
    "rnostrictatime": (libc.MOUNT_ATTR_RELATIME, _ATIME_ALL),
}
IDMAP = ("idmap", "ridmap")
EXTENSIONS = ("tmpcopyup",)

# Mounts inside /proc are refused except over these files (runc checkProcMount: lxcfs-style emulation).
PROC_ALLOWED = frozenset({"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                          "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                          "/proc/sys/kernel/ns_last_pid"})


@dataclasses.dataclass(frozen=True, slots=True)
class MountOptions:
    flags: int = 0                      # MS_* to set (bind/rec/remount included)
    clear: int = 0                      # MS_* the options explicitly clear (rw, suid, dev, exec, ...)
    propagation: tuple[int, ...] = ()   # each a separate mount(2) call, in order
    attr_set: int = 0                   # mount_setattr(AT_RECURSIVE) set
    attr_clr: int = 0                   # ... and clear
    data: str = ""                      # unknown options, comma-joined, in order
    idmap: str = ""                     # "", "idmap" or "ridmap"
    tmpcopyup: bool = False

    @property
    def bind(self) -> bool:
        return bool(self.flags & libc.MS_BIND)

    @property
    def recursive(self) -> bool:
        return bool(self.flags & libc.MS_REC)

    @property
    def readonly(self) -> bool:
        return bool(self.flags & libc.MS_RDONLY)

    @property
    def remount_flags(self) -> int:
        """Flags a bind mount needs a second MS_REMOUNT for (anything beyond bind/rec/remount)."""
        return self.flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)


def parse_options(options: list[str] | tuple[str, ...] | None) -> MountOptions:
    """Spec mount options → MountOptions. Later options win over earlier ones ('ro,rw' is rw)."""
    flags = clear = attr_set = attr_clr = 0
    prop: list[int] = []
    data: list[str] = []
    idmap, copyup = "", False
    for opt in options or ():
        if opt in FLAGS:
            is_clear, f = FLAGS[opt]
            if is_clear:
                flags, clear = flags & ~f, clear | f
            else:
                flags, clear = flags | f, clear & ~f
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        elif opt in RECURSIVE:
            s, c = RECURSIVE[opt]
            attr_set, attr_clr = (attr_set & ~c) | s, (attr_clr & ~s) | c
        elif opt in IDMAP:
            idmap = "ridmap" if "ridmap" in (opt, idmap) else "idmap"
        elif opt == "tmpcopyup":
            copyup = True
        elif opt.startswith("x-"):
            continue  # userspace-only options, as mount(8) drops them
        else:
            data.append(opt)
    return MountOptions(flags, clear, tuple(prop), attr_set, attr_clr, ",".join(data), idmap, copyup)


@dataclasses.dataclass(frozen=True, slots=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int


@dataclasses.dataclass(frozen=True, slots=True)
class MountPlan:
    index: int
    field: str                          # "mounts[3]" for error messages
    destination: str                    # cleaned absolute container path
    kind: str                           # "bind", "proc", "sysfs", "cgroup", "fs"
    fstype: str                         # filesystem type for mount(2) ("" for binds)
    source: str                         # bind: absolute host path; else mount(2) source
    options: MountOptions
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    defer_readonly: bool = False        # /dev: mounted rw for device creation, made ro in finalize

    @property
    def idmapped(self) -> bool:
        return bool(self.options.idmap)


def clean(path: str) -> str:
    p = posixpath.normpath("/" + path)
    return "/" + p.lstrip("/")


def proc_rule(dest: str, *, source_is_proc: bool) -> str | None:
    """Why a mount at the (cleaned, symlink-resolved) container path dest is refused, or None."""
    if dest == "/proc":
        return None if source_is_proc else "only a procfs may be mounted over /proc"
    if dest.startswith("/proc/") and dest not in PROC_ALLOWED:
        return f"{dest} is inside /proc (allowed there: {', '.join(sorted(PROC_ALLOWED))})"
    return None


def _mappings(value: Any, field: str) -> tuple[IdMapping, ...]:
    out = []
    for j, m in enumerate(value or []):
        try:
            out.append(IdMapping(int(m["containerID"]), int(m["hostID"]), int(m["size"])))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"config.json: {field}[{j}]: needs containerID, hostID and size") from None
    return tuple(out)


def plan_mount(i: int, m: dict[str, Any], *, bundle: str, spec: dict[str, Any]) -> MountPlan:
    field = f"mounts[{i}]"
    dest = m.get("destination")
    if not isinstance(dest, str) or not dest:
        raise ConfigError(f"config.json: {field}.destination: required")
    cdest = clean(dest)
    fstype = m.get("type") or ""
    opts = parse_options(m.get("options"))
    if fstype == "bind" and not opts.bind:  # old configs say type "bind" without the option (runc accepts)
        opts = dataclasses.replace(opts, flags=opts.flags | libc.MS_BIND)
    source = m.get("source") or ""
    if opts.bind:
        kind = "bind"
        if not source:
            raise ConfigError(f"config.json: {field}.source: a bind mount needs a source")
        source = source if os.path.isabs(source) else os.path.join(bundle, source)  # host side: bundle-relative
    elif fstype in ("proc", "sysfs", "cgroup"):
        kind = fstype
    elif not fstype:
        raise ConfigError(f"config.json: {field}.type: required for a mount that is not a bind mount")
    else:
        kind = "fs"
    if kind != "bind" and opts.tmpcopyup and fstype != "tmpfs":
        raise ConfigError(f"config.json: {field}.options: tmpcopyup is only valid for tmpfs")
    why = proc_rule(cdest, source_is_proc=(kind == "proc") or (kind == "bind"))  # bind: source checked later
    if why:
        raise ConfigError(f"config.json: {field}.destination: {why}")
    uidm = _mappings(m.get("uidMappings"), f"{field}.uidMappings")
    gidm = _mappings(m.get("gidMappings"), f"{field}.gidMappings")
    if bool(uidm) != bool(gidm):
        raise ConfigError(f"config.json: {field}: uidMappings and gidMappings must be given together")
    if (uidm or opts.idmap) and not opts.idmap:
        opts = dataclasses.replace(opts, idmap="idmap")  # mappings imply an idmapped mount (runc)
    if opts.idmap:
        if kind != "bind":
            raise ConfigError(f"config.json: {field}.options: {opts.idmap} is supported on bind mounts only")
        if not uidm:
            linux = spec.get("linux") or {}
            user_ns = any(n.get("type") == "user" for n in linux.get("namespaces") or [])
            if not user_ns:
                raise ConfigError(f"config.json: {field}.options: {opts.idmap} needs uidMappings/gidMappings "
                                  "or a user namespace")
            uidm = _mappings(linux.get("uidMappings"), "linux.uidMappings")
            gidm = _mappings(linux.get("gidMappings"), "linux.gidMappings")
    if fstype == "overlay" and opts.data:
        opts = dataclasses.replace(opts, data=_overlay_data(opts.data, bundle))
    defer_ro = cdest == "/dev" and kind != "bind" and opts.readonly
    if defer_ro:
        opts = dataclasses.replace(opts, flags=opts.flags & ~libc.MS_RDONLY)
    return MountPlan(i, field, cdest, kind, "" if kind == "bind" else fstype, source, opts, uidm, gidm, defer_ro)


def _overlay_data(data: str, bundle: str) -> str:
    """Relative lowerdir/upperdir/workdir entries are bundle-relative, like bind sources (mount(2) would
    resolve them against whatever the runtime's cwd happens to be)."""
    out = []
    for opt in data.split(","):
        key, eq, value = opt.partition("=")
        if eq and key in ("lowerdir", "upperdir", "workdir"):
            parts = value.split(":") if key == "lowerdir" else [value]
            value = ":".join(x if not x or os.path.isabs(x) else os.path.join(bundle, x) for x in parts)
            opt = f"{key}={value}"
        out.append(opt)
    return ",".join(out)


def plan_mounts(spec: dict[str, Any], *, bundle: str) -> tuple[MountPlan, ...]:
    mounts = spec.get("mounts") or []
    return tuple(plan_mount(i, m, bundle=bundle, spec=spec) for i, m in enumerate(mounts))


def root_propagation(spec: dict[str, Any], *, no_pivot: bool) -> int:
    """linux.rootfsPropagation → MS_* flag (0 when unset)."""
    value = (spec.get("linux") or {}).get("rootfsPropagation") or ""
    if not value:
        return 0
    if value not in PROPAGATION:
        raise ConfigError(f"config.json: linux.rootfsPropagation: unknown value {value!r} "
                          f"(one of {', '.join(sorted(PROPAGATION))})")
    flag = PROPAGATION[value]
    if no_pivot and flag & libc.MS_PRIVATE:
        # runc: with MS_MOVE+chroot the old root stays; a private root would keep host mounts pinned.
        raise ConfigError(f"config.json: linux.rootfsPropagation: {value!r} is not supported with --no-pivot")
    return flag


def needs_dev_setup(plans: tuple[MountPlan, ...]) -> bool:
    """Default devices and /dev symlinks are made unless /dev is a bind mount (runc needsSetupDev)."""
    return not any(p.kind == "bind" and p.destination == "/dev" for p in plans)
