"""Mount option parsing and mount plans (pure), path cleaning and /proc parsers."""
from __future__ import annotations

from typing import Any

import pytest

from pyoci import mounts
from pyoci.errors import ConfigError
from pyoci.linux import libc
from pyoci.linux.paths import clean, inside
from pyoci.linux.proc import parse_mountinfo, parse_ns_link, parse_stat_start_time
from pyoci.mounts import MountOptions, parse_options

L = libc


@pytest.mark.parametrize("opts, flags, clear", [
    ([], 0, 0),
    (["defaults"], 0, 0),
    (["ro"], L.MS_RDONLY, 0),
    (["rw"], 0, L.MS_RDONLY),
    (["ro", "rw"], 0, L.MS_RDONLY),
    (["rw", "ro"], L.MS_RDONLY, 0),
    (["nosuid", "nodev", "noexec"], L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC, 0),
    (["suid", "dev", "exec"], 0, L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC),
    (["nosuid", "suid"], 0, L.MS_NOSUID),
    (["noatime"], L.MS_NOATIME, 0),
    (["atime"], 0, L.MS_NOATIME),
    (["relatime"], L.MS_RELATIME, 0),
    (["norelatime"], 0, L.MS_RELATIME),
    (["strictatime"], L.MS_STRICTATIME, 0),
    (["nostrictatime"], 0, L.MS_STRICTATIME),
    (["nodiratime"], L.MS_NODIRATIME, 0),
    (["diratime"], 0, L.MS_NODIRATIME),
    (["sync"], L.MS_SYNCHRONOUS, 0),
    (["async"], 0, L.MS_SYNCHRONOUS),
    (["dirsync"], L.MS_DIRSYNC, 0),
    (["iversion"], L.MS_I_VERSION, 0),
    (["noiversion"], 0, L.MS_I_VERSION),
    (["lazytime"], L.MS_LAZYTIME, 0),
    (["nolazytime"], 0, L.MS_LAZYTIME),
    (["mand"], L.MS_MANDLOCK, 0),
    (["nomand"], 0, L.MS_MANDLOCK),
    (["silent"], L.MS_SILENT, 0),
    (["loud"], 0, L.MS_SILENT),
    (["nosymfollow"], L.MS_NOSYMFOLLOW, 0),
    (["symfollow"], 0, L.MS_NOSYMFOLLOW),
    (["bind"], L.MS_BIND, 0),
    (["rbind"], L.MS_BIND | L.MS_REC, 0),
    (["remount"], L.MS_REMOUNT, 0),
    (["acl"], L.MS_POSIXACL, 0),
])
def test_flags(opts: list[str], flags: int, clear: int) -> None:
    o = parse_options(opts)
    assert (o.flags, o.clear) == (flags, clear)
    assert o.data == "" and o.propagation == ()


@pytest.mark.parametrize("opt, flag", [
    ("private", L.MS_PRIVATE), ("rprivate", L.MS_PRIVATE | L.MS_REC),
    ("shared", L.MS_SHARED), ("rshared", L.MS_SHARED | L.MS_REC),
    ("slave", L.MS_SLAVE), ("rslave", L.MS_SLAVE | L.MS_REC),
    ("unbindable", L.MS_UNBINDABLE), ("runbindable", L.MS_UNBINDABLE | L.MS_REC),
])
def test_propagation_is_separate(opt: str, flag: int) -> None:
    o = parse_options(["bind", opt, "ro"])
    assert o.propagation == (flag,)
    assert o.flags == L.MS_BIND | L.MS_RDONLY  # never mixed into the mount flags


def test_propagation_keeps_order() -> None:
    assert parse_options(["rslave", "shared"]).propagation == (L.MS_SLAVE | L.MS_REC, L.MS_SHARED)


@pytest.mark.parametrize("opts, attr_set, attr_clr", [
    (["rro"], L.MOUNT_ATTR_RDONLY, 0),
    (["rrw"], 0, L.MOUNT_ATTR_RDONLY),
    (["rro", "rrw"], 0, L.MOUNT_ATTR_RDONLY),
    (["rnosuid", "rnodev", "rnoexec"], L.MOUNT_ATTR_NOSUID | L.MOUNT_ATTR_NODEV | L.MOUNT_ATTR_NOEXEC, 0),
    (["rsuid", "rdev", "rexec"], 0, L.MOUNT_ATTR_NOSUID | L.MOUNT_ATTR_NODEV | L.MOUNT_ATTR_NOEXEC),
    (["rnoatime"], L.MOUNT_ATTR_NOATIME, L.MOUNT_ATTR__ATIME),
    (["rstrictatime"], L.MOUNT_ATTR_STRICTATIME, L.MOUNT_ATTR__ATIME),
    (["rrelatime"], L.MOUNT_ATTR_RELATIME, L.MOUNT_ATTR__ATIME),
    (["ratime"], L.MOUNT_ATTR_RELATIME, L.MOUNT_ATTR__ATIME),
    (["rnoatime", "ratime"], L.MOUNT_ATTR_RELATIME, L.MOUNT_ATTR__ATIME),
    (["rnodiratime"], L.MOUNT_ATTR_NODIRATIME, 0),
    (["rdiratime"], 0, L.MOUNT_ATTR_NODIRATIME),
    (["rnosymfollow"], L.MOUNT_ATTR_NOSYMFOLLOW, 0),
    (["rsymfollow"], 0, L.MOUNT_ATTR_NOSYMFOLLOW),
])
def test_recursive_attrs(opts: list[str], attr_set: int, attr_clr: int) -> None:
    o = parse_options(opts)
    assert (o.attr_set, o.attr_clr) == (attr_set, attr_clr)
    assert o.flags == 0
    # mount_setattr(2): setting an access-time mode needs the whole MOUNT_ATTR__ATIME in attr_clr
    if o.attr_set & L.MOUNT_ATTR__ATIME or o.attr_clr & L.MOUNT_ATTR__ATIME:
        assert o.attr_clr & L.MOUNT_ATTR__ATIME == L.MOUNT_ATTR__ATIME


@pytest.mark.parametrize("opts, data", [
    (["size=65536k", "mode=755"], "size=65536k,mode=755"),
    (["nosuid", "mode=1777", "ro", "size=1m"], "mode=1777,size=1m"),
    (["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"], "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    (["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"], "lowerdir=/a:/b,upperdir=/u,workdir=/w"),
    (["x-systemd.automount", "uid=1"], "uid=1"),  # userspace-only x-* options are dropped like mount(8)
    (["unknown-flag"], "unknown-flag"),
])
def test_unknown_options_go_to_data_in_order(opts: list[str], data: str) -> None:
    assert parse_options(opts).data == data


@pytest.mark.parametrize("opts, idmap", [(["idmap"], "idmap"), (["ridmap"], "ridmap"),
                                         (["idmap", "ridmap"], "ridmap"), (["ridmap", "idmap"], "ridmap"),
                                         ([], "")])
def test_idmap_options(opts: list[str], idmap: str) -> None:
    assert parse_options(["bind", *opts]).idmap == idmap


def test_bind_remount_flags() -> None:
    assert parse_options(["rbind", "ro", "nosuid"]).remount_flags == L.MS_RDONLY | L.MS_NOSUID
    assert parse_options(["rbind"]).remount_flags == 0
    assert parse_options(["tmpcopyup"]).tmpcopyup


def _plan(m: dict[str, Any], spec: dict[str, Any] | None = None) -> mounts.MountPlan:
    return mounts.plan_mount(3, m, bundle="/b", spec=spec or {})


def test_plan_bind_relative_source_is_bundle_relative() -> None:
    p = _plan({"destination": "data//x/../y", "source": "vol", "options": ["rbind", "ro"]})
    assert (p.kind, p.source, p.destination, p.fstype) == ("bind", "/b/vol", "/data/y", "")
    assert p.options.recursive and p.options.readonly


def test_plan_type_bind_without_option() -> None:
    p = _plan({"destination": "/x", "type": "bind", "source": "/src"})
    assert p.kind == "bind" and p.options.bind


@pytest.mark.parametrize("m, kind", [
    ({"destination": "/proc", "type": "proc", "source": "proc"}, "proc"),
    ({"destination": "/sys", "type": "sysfs", "source": "sysfs"}, "sysfs"),
    ({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}, "cgroup"),
    ({"destination": "/t", "type": "tmpfs", "source": "tmpfs"}, "fs"),
    ({"destination": "/o", "type": "overlay", "source": "overlay", "options": ["lowerdir=/l"]}, "fs"),
])
def test_plan_kinds(m: dict[str, Any], kind: str) -> None:
    assert _plan(m).kind == kind


@pytest.mark.parametrize("m, msg", [
    ({"type": "tmpfs"}, "mounts[3].destination: required"),
    ({"destination": "/x", "options": ["bind"]}, "mounts[3].source: a bind mount needs a source"),
    ({"destination": "/x", "source": "x"}, "mounts[3].type: required"),
    ({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}, "only a procfs may be mounted over /proc"),
    ({"destination": "/proc/self/attr", "type": "tmpfs", "source": "t"}, "/proc/self/attr is inside /proc"),
    ({"destination": "/proc/../proc/sys", "type": "tmpfs", "source": "t"}, "/proc/sys is inside /proc"),
    ({"destination": "/proc/sys/kernel/x", "source": "/h", "options": ["bind"]}, "inside /proc"),
    ({"destination": "/x", "type": "tmpfs", "source": "t", "options": ["idmap"]}, "bind mounts only"),
    ({"destination": "/x", "source": "/h", "options": ["bind", "idmap"]}, "needs uidMappings/gidMappings"),
    ({"destination": "/x", "source": "/h", "options": ["bind"],
      "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}, "must be given together"),
    ({"destination": "/x", "type": "proc", "source": "p", "options": ["tmpcopyup"]}, "only valid for tmpfs"),
])
def test_plan_errors_name_the_field(m: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError) as ei:
        _plan(m)
    assert msg in str(ei.value) and "mounts[3]" in str(ei.value)


@pytest.mark.parametrize("dest", sorted(mounts.PROC_ALLOWED))
def test_proc_allow_list(dest: str) -> None:
    assert _plan({"destination": dest, "source": "/lxcfs" + dest, "options": ["bind"]}).destination == dest


def test_proc_bind_over_proc_is_checked_later() -> None:
    # allowed by the plan; prepare() verifies the source really is a procfs root
    assert _plan({"destination": "/proc", "source": "/proc", "options": ["rbind"]}).kind == "bind"


def test_idmap_defaults_to_userns_mappings_and_mappings_imply_idmap() -> None:
    spec = {"linux": {"namespaces": [{"type": "user"}],
                      "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
                      "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}]}}
    p = _plan({"destination": "/x", "source": "/h", "options": ["bind", "ridmap"]}, spec)
    assert p.options.idmap == "ridmap"
    assert p.uid_mappings == (mounts.IdMapping(0, 1000, 10),) and p.gid_mappings == (mounts.IdMapping(0, 2000, 10),)
    q = _plan({"destination": "/x", "source": "/h", "options": ["bind"],
               "uidMappings": [{"containerID": 0, "hostID": 5, "size": 1}],
               "gidMappings": [{"containerID": 0, "hostID": 6, "size": 1}]})
    assert q.idmapped and q.options.idmap == "idmap"


def test_dev_ro_is_deferred() -> None:
    p = _plan({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid"]})
    assert p.defer_readonly and not p.options.readonly and p.options.flags == L.MS_NOSUID


@pytest.mark.parametrize("value, flag", [("", 0), ("shared", L.MS_SHARED), ("rslave", L.MS_SLAVE | L.MS_REC),
                                         ("private", L.MS_PRIVATE), ("runbindable", L.MS_UNBINDABLE | L.MS_REC)])
def test_root_propagation(value: str, flag: int) -> None:
    assert mounts.root_propagation({"linux": {"rootfsPropagation": value}}, no_pivot=False) == flag


def test_root_propagation_errors() -> None:
    with pytest.raises(ConfigError, match="linux.rootfsPropagation: unknown value 'sideways'"):
        mounts.root_propagation({"linux": {"rootfsPropagation": "sideways"}}, no_pivot=False)
    with pytest.raises(ConfigError, match="not supported with --no-pivot"):
        mounts.root_propagation({"linux": {"rootfsPropagation": "rprivate"}}, no_pivot=True)
    assert mounts.root_propagation({"linux": {"rootfsPropagation": "slave"}}, no_pivot=True) == L.MS_SLAVE


def test_needs_dev_setup() -> None:
    spec = {"mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}]}
    assert mounts.needs_dev_setup(mounts.plan_mounts(spec, bundle="/b"))
    spec = {"mounts": [{"destination": "/dev/", "source": "/dev", "options": ["rbind"]}]}
    assert not mounts.needs_dev_setup(mounts.plan_mounts(spec, bundle="/b"))


@pytest.mark.parametrize("raw, cleaned", [
    ("/", "/"), ("", "/"), ("a", "/a"), ("/a/", "/a"), ("//a//b", "/a/b"), ("/a/./b", "/a/b"),
    ("/../../../../etc/x", "/etc/x"), ("/dev/../../x/evil", "/x/evil"), ("a/../../b", "/b"), ("/..", "/"),
])
def test_clean(raw: str, cleaned: str) -> None:
    assert clean(raw) == cleaned


@pytest.mark.parametrize("root, path, ok", [("/r", "/r", True), ("/r", "/r/x", True), ("/r", "/rx", False),
                                            ("/r/", "/r/x", True), ("/r", "/", False)])
def test_inside(root: str, path: str, ok: bool) -> None:
    assert inside(root, path) is ok


MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "45 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw,discard\n"
    "60 45 0:50 / /a\\040b rw master:3 propagate_from:2 - tmpfs my\\134src rw,size=4k\n"
    "61 60 0:51 / /u ro unbindable - cgroup2 cgroup2 rw\n"
)


def test_parse_mountinfo() -> None:
    mi = parse_mountinfo(MOUNTINFO)
    assert [m.mount_id for m in mi] == [22, 45, 60, 61]
    assert mi[1].shared and not mi[1].slave and mi[1].root == "/run/netns" and (mi[1].major, mi[1].minor) == (254, 0)
    assert mi[2].mountpoint == "/a b" and mi[2].source == "my\\src" and mi[2].slave and not mi[2].shared
    assert mi[2].optional == ("master:3", "propagate_from:2") and mi[2].super_options == ("rw", "size=4k")
    assert mi[3].unbindable and mi[3].options == ("ro",) and mi[3].fstype == "cgroup2"


def test_parse_stat_and_ns() -> None:
    # comm may contain spaces and ')'
    line = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 " + " ".join(str(i) for i in range(12, 60)) + "\n"
    assert parse_stat_start_time(line) == 24  # field n (n >= 10) holds n + 2 here
    assert parse_ns_link("net:[4026531840]") == 4026531840
    with pytest.raises(ValueError):
        parse_ns_link("/proc/1/ns/net")


def test_options_dataclass_is_frozen() -> None:
    with pytest.raises(AttributeError):
        MountOptions().flags = 1  # type: ignore[misc]


def test_overlay_relative_dirs_are_bundle_relative() -> None:
    p = _plan({"destination": "/o", "type": "overlay", "source": "overlay",
               "options": ["lowerdir=l1:/abs/l2", "upperdir=up", "workdir=/w", "index=off", "ro"]})
    assert p.options.data == "lowerdir=/b/l1:/abs/l2,upperdir=/b/up,workdir=/w,index=off"
    assert p.options.readonly
