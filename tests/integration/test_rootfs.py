"""pyoci.rootfs on the real kernel: prepare → pivot → finalize in a forked child with real namespaces,
inspected from inside (mountinfo, stat, writes that must fail). See rootfs_harness.py."""
from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rootfs_harness as h

from pyoci import rootfs as pyoci_rootfs
from pyoci.linux import libc

pytestmark = pytest.mark.root


@pytest.fixture
def wd() -> Iterator[h.Workdir]:
    w = h.Workdir()
    try:
        yield w
    finally:
        w.cleanup()


def _mounts_by_point() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in h.mountinfo():
        out[m["mountpoint"]] = m  # the last (top) mount wins
    return out


def _ok(res: h.Result) -> dict[str, Any]:
    assert res.ok, f"{res.error_type}: {res.error}"
    return res.data


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_default_container_filesystem(wd: h.Workdir, userns: bool) -> None:
    b, r = wd.bundle()
    host_ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()

    def check() -> dict[str, Any]:
        dev = {n: h.stat_of("/dev/" + n) for n in ("null", "zero", "full", "random", "urandom", "tty")}
        links = {n: os.readlink("/dev/" + n) for n in ("fd", "stdin", "stdout", "stderr", "ptmx")}
        return {"mounts": _mounts_by_point(), "dev": dev, "links": links, "pid": os.getpid(), "cwd": os.getcwd(),
                "keys": h.stat_of("/proc/keys"), "acpi": os.listdir("/proc/acpi"),
                "drop_caches": h.try_open("/proc/sys/vm/drop_caches", os.O_WRONLY | os.O_APPEND),
                "sys_write": h.try_open("/sys/kernel/profiling", os.O_WRONLY | os.O_APPEND),
                "root_ls": sorted(os.listdir("/"))}

    d = _ok(h.run(h.base_spec(userns=userns), bundle=b, rootfs=r, userns=userns, check=check))
    m = d["mounts"]
    assert d["pid"] == 1 and d["cwd"] == "/"
    assert set(m) >= {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"}
    assert (m["/proc"]["fstype"], m["/dev"]["fstype"], m["/dev/pts"]["fstype"], m["/dev/mqueue"]["fstype"],
            m["/sys"]["fstype"]) == ("proc", "tmpfs", "devpts", "mqueue", "sysfs")
    assert {"nosuid", "noexec", "nodev", "ro"} <= set(m["/sys"]["options"])
    assert {"nosuid", "noexec", "nodev"} <= set(m["/dev/shm"]["options"])
    # only container paths are mount points: the old root was detached (C12)
    assert not [p for p in m if p.startswith((str(wd.path), "/tmp/"))]
    assert "bin" in d["root_ls"] and "etc" in d["root_ls"]
    for name, (ma, mi) in {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
                           "tty": (5, 0)}.items():
        st = d["dev"][name]
        assert stat.S_ISCHR(st["mode"]) and (st["major"], st["minor"]) == (ma, mi), name
        if not userns:
            assert stat.S_IMODE(st["mode"]) == 0o666 and st["uid"] == 0
    if userns:  # bound from the host: the host's nodes, each its own mount
        assert all(m[f"/dev/{n}"]["fstype"] == "devtmpfs" for n in ("null", "zero", "tty"))
    assert d["links"] == {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                          "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
    # maskedPaths: a file shows the null device, a directory an empty read-only tmpfs
    assert stat.S_ISCHR(d["keys"]["mode"]) and (d["keys"]["major"], d["keys"]["minor"]) == (1, 3)
    assert d["acpi"] == [] and m["/proc/acpi"]["fstype"] == "tmpfs" and "ro" in m["/proc/acpi"]["options"]
    # readonlyPaths: opening for write fails with EROFS (nothing is ever written)
    assert "ro" in m["/proc/sys"]["options"] and (d["drop_caches"] == 30 or userns and d["drop_caches"] == 13)
    assert d["sys_write"] == 30 or userns and d["sys_write"] == 13  # host-owned sysfs files: EACCES first
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_ip_forward


def test_root_readonly_and_dev_ro_deferred(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    spec = h.base_spec()
    spec["root"]["readonly"] = True
    spec["mounts"][1]["options"].append("ro")  # /dev tmpfs ro: devices are made first, ro at the end

    def check() -> dict[str, Any]:
        return {"mounts": _mounts_by_point(), "tmp": h.try_open("/tmp/x", os.O_WRONLY | os.O_CREAT),
                "dev": h.try_open("/dev/newfile", os.O_WRONLY | os.O_CREAT), "null": h.stat_of("/dev/null")}

    d = _ok(h.run(spec, bundle=b, rootfs=r, check=check))
    assert "ro" in d["mounts"]["/"]["options"] and d["tmp"] == 30
    assert "ro" in d["mounts"]["/dev"]["options"] and d["dev"] == 30
    assert stat.S_ISCHR(d["null"]["mode"])
    assert not (r / "tmp" / "x").exists()


# slave of a private mount is private: "master:" shows only when the host's / is shared (it is not here)
HOST_ROOT_SHARED = any(" / / " in ln and "shared:" in ln for ln in Path("/proc/self/mountinfo").read_text().splitlines())


@pytest.mark.parametrize("prop, expect", [("shared", "shared:"), ("rshared", "shared:"),
                                          ("slave", "master:" if HOST_ROOT_SHARED else None),
                                          ("rslave", "master:" if HOST_ROOT_SHARED else None),
                                          ("private", None), ("rprivate", None),
                                          ("unbindable", "unbindable"), ("runbindable", "unbindable")])
def test_rootfs_propagation(wd: h.Workdir, prop: str, expect: str | None) -> None:
    b, r = wd.bundle()
    spec = h.base_spec(masked=False)
    spec["linux"]["rootfsPropagation"] = prop

    def check() -> dict[str, Any]:
        return {"root": _mounts_by_point()["/"]["optional"]}

    opt = _ok(h.run(spec, bundle=b, rootfs=r, check=check))["root"]
    if expect is None:
        assert opt == []
    else:
        assert any(o.startswith(expect) for o in opt), opt


def test_mount_options_in_mountinfo(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    vol = wd.path / "vol"
    (vol / "sub").mkdir(parents=True)
    (vol / "f").write_text("data\n")
    spec = h.base_spec(masked=False)
    spec["mounts"] += [
        {"destination": "/ro", "source": str(vol), "options": ["bind", "ro", "nosuid", "nodev", "noexec"]},
        {"destination": "/t1", "type": "tmpfs", "source": "tmpfs",
         "options": ["noatime", "nodiratime", "size=1m", "mode=700", "uid=5", "gid=6"]},
        {"destination": "/t2", "type": "tmpfs", "source": "tmpfs", "options": ["strictatime", "sync", "shared"]},
        {"destination": "/t3", "type": "tmpfs", "source": "tmpfs", "options": ["unbindable", "dirsync"]},
        {"destination": "/t4", "type": "tmpfs", "source": "tmpfs", "options": ["nosymfollow"]},
        {"destination": "/t4", "type": "tmpfs", "source": "tmpfs", "options": ["remount", "ro", "nosymfollow"]},
        {"destination": "/t1/sub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/rec", "source": str(r / "t1"), "options": ["rbind", "rro", "rnosuid", "rnoatime"]},
        {"destination": "/t5", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "rw", "x-ignored"]},
    ]

    def check() -> dict[str, Any]:
        t1 = os.stat("/t1")
        vfs = os.statvfs("/t1")
        return {"m": _mounts_by_point(), "t1": [stat.S_IMODE(t1.st_mode), t1.st_uid, t1.st_gid],
                "t1_size": vfs.f_blocks * vfs.f_frsize, "f": open("/ro/f").read(),
                "ro_w": h.try_open("/ro/new", os.O_WRONLY | os.O_CREAT),
                "rec_sub_w": h.try_open("/rec/sub/x", os.O_WRONLY | os.O_CREAT),
                "t1_sub_w": h.try_open("/t1/sub/x", os.O_WRONLY | os.O_CREAT)}

    d = _ok(h.run(spec, bundle=b, rootfs=r, check=check))
    m = d["m"]
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(m["/ro"]["options"]) and d["f"] == "data\n"
    assert d["ro_w"] == 30 and not (vol / "new").exists()
    assert {"noatime", "nodiratime"} <= set(m["/t1"]["options"])
    assert d["t1"] == [0o700, 5, 6] and d["t1_size"] == 1 << 20
    assert "relatime" not in m["/t2"]["options"] and "sync" in m["/t2"]["super"]
    assert any(o.startswith("shared:") for o in m["/t2"]["optional"])
    assert "unbindable" in m["/t3"]["optional"] and "dirsync" in m["/t3"]["super"]
    assert {"ro", "nosymfollow"} <= set(m["/t4"]["options"])
    # rbind + rro/rnosuid/rnoatime: the submount is read-only too (mount_setattr AT_RECURSIVE)
    assert {"ro", "nosuid", "noatime"} <= set(m["/rec"]["options"]) and "ro" in m["/rec/sub"]["options"]
    assert {"nosuid", "noatime"} <= set(m["/rec/sub"]["options"])
    assert d["rec_sub_w"] == 30 and d["t1_sub_w"] == 0
    assert "rw" in m["/t5"]["options"]


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_bind_ro_keeps_locked_flags_and_binds_files_fifos_sockets(wd: h.Workdir, userns: bool) -> None:
    b, r = wd.bundle(owner=h.USERNS_BASE if userns else None)
    vol = wd.path / "vol"
    vol.mkdir()
    vol.chmod(0o777)
    (vol / "file").write_text("hello\n")
    os.mkfifo(vol / "fifo")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(vol / "sock"))
    spec = h.base_spec(userns=userns, masked=False)
    spec["mounts"] += [
        # the host's / is relatime: in a user namespace that flag is locked and a plain remount gets EPERM
        {"destination": "/vol", "source": str(vol), "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/etc/hello", "source": str(vol / "file"), "options": ["bind", "ro"]},
        {"destination": "/run/a/b/fifo", "source": str(vol / "fifo"), "options": ["bind"]},
        {"destination": "/run/sock", "source": str(vol / "sock"), "options": ["bind"]},
    ]

    def check() -> dict[str, Any]:
        return {"m": _mounts_by_point(), "hello": open("/etc/hello").read(),
                "fifo": h.stat_of("/run/a/b/fifo")["mode"], "sock": h.stat_of("/run/sock")["mode"],
                "w": h.try_open("/vol/x", os.O_WRONLY | os.O_CREAT)}

    try:
        d = _ok(h.run(spec, bundle=b, rootfs=r, userns=userns, check=check))
    finally:
        srv.close()
    assert {"ro", "nosuid"} <= set(d["m"]["/vol"]["options"]) and d["w"] == 30
    assert d["hello"] == "hello\n" and "ro" in d["m"]["/etc/hello"]["options"]
    assert stat.S_ISFIFO(d["fifo"]) and stat.S_ISSOCK(d["sock"])


def test_overlay_mount(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    for n in ("lower", "upper", "work"):
        (wd.path / n).mkdir()
    (wd.path / "lower" / "from-lower").write_text("L\n")
    spec = h.base_spec(masked=False)
    spec["mounts"].append({"destination": "/merged", "type": "overlay", "source": "overlay", "options": [
        f"lowerdir={wd.path / 'lower'}", f"upperdir={wd.path / 'upper'}", f"workdir={wd.path / 'work'}"]})

    def check() -> dict[str, Any]:
        with open("/merged/new", "w") as f:
            f.write("U\n")
        return {"m": _mounts_by_point()["/merged"]["fstype"], "ls": sorted(os.listdir("/merged"))}

    d = _ok(h.run(spec, bundle=b, rootfs=r, check=check))
    assert d == {"m": "overlay", "ls": ["from-lower", "new"]}
    assert (wd.path / "upper" / "new").read_text() == "U\n" and not (wd.path / "lower" / "new").exists()


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_idmapped_bind(wd: h.Workdir, userns: bool) -> None:
    b, r = wd.bundle(owner=h.USERNS_BASE if userns else None)
    vol = wd.path / "vol"
    (vol / "sub").mkdir(parents=True)
    (vol / "owned-by-0").write_text("x")
    (vol / "owned-by-7").write_text("x")
    os.chown(vol / "owned-by-7", 7, 7)
    spec = h.base_spec(userns=userns, masked=False)
    # the on-disk id 0 shows as host id 1000 (no userns) or as container root (userns 0 → 100000)
    host = 100000 if userns else 1000
    maps = [{"containerID": 0, "hostID": host, "size": 100}]
    spec["mounts"].append({"destination": "/idm", "source": str(vol), "options": ["bind", "idmap"],
                           "uidMappings": maps, "gidMappings": maps})
    premounted = pyoci_rootfs.open_idmapped_mounts(spec, bundle=str(b)) if userns else None

    def check() -> dict[str, Any]:
        return {"zero": h.stat_of("/idm/owned-by-0")["uid"], "seven": h.stat_of("/idm/owned-by-7")["gid"],
                "m": _mounts_by_point()["/idm"]["options"]}

    try:
        d = _ok(h.run(spec, bundle=b, rootfs=r, userns=userns, check=check, premounted=premounted))
    finally:
        for fd in (premounted or {}).values():
            os.close(fd)
    expect0, expect7 = (0, 7) if userns else (1000, 1007)
    assert (d["zero"], d["seven"]) == (expect0, expect7)
    assert "idmapped" in d["m"]
    assert os.stat(vol / "owned-by-0").st_uid == 0  # the host view is untouched


@pytest.mark.parametrize("cgroupns", [False, True], ids=["no-cgroupns", "cgroupns"])
def test_cgroup_mount(wd: h.Workdir, cgroupns: bool) -> None:
    b, r = wd.bundle()
    spec = h.base_spec(masked=False)
    spec["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "relatime"]})  # no ro/rw given
    flags = h.NS_DEFAULT
    if cgroupns:
        spec["linux"]["namespaces"].append({"type": "cgroup"})
        flags |= libc.CLONE_NEWCGROUP
    host_mem = Path("/proc/self/cgroup").read_text()

    def check() -> dict[str, Any]:
        m = _mounts_by_point()
        cg = {p: v for p, v in m.items() if p.startswith("/sys/fs/cgroup")}
        return {"cg": cg, "procs_w": h.try_open("/sys/fs/cgroup/memory/cgroup.procs", os.O_WRONLY | os.O_APPEND),
                "mem_ls": "memory.limit_in_bytes" in os.listdir("/sys/fs/cgroup/memory"),
                "self": open("/proc/self/cgroup").read()}

    d = _ok(h.run(spec, bundle=b, rootfs=r, ns_flags=flags, check=check))
    cg = d["cg"]
    assert cg["/sys/fs/cgroup"]["fstype"] == "tmpfs"
    assert {"memory", "cpu", "pids", "devices", "unified"} <= {p.rsplit("/", 1)[1] for p in cg}
    assert cg["/sys/fs/cgroup/unified"]["fstype"] == "cgroup2" and d["mem_ls"]
    if cgroupns:  # fresh mounts of the namespace root, writable as the spec did not say ro
        assert "memory:/\n" in d["self"]
        assert cg["/sys/fs/cgroup/memory"]["root"] == "/" and "rw" in cg["/sys/fs/cgroup/memory"]["options"]
    else:  # binds of our own cgroups, read-only by default (security.md class 11)
        mem_path = next(ln.split(":", 2)[2] for ln in host_mem.splitlines() if ":memory:" in ln)
        assert cg["/sys/fs/cgroup/memory"]["root"] == mem_path
        assert all("ro" in v["options"] for v in cg.values()) and d["procs_w"] == 30


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_spec_devices(wd: h.Workdir, userns: bool) -> None:
    b, r = wd.bundle()
    spec = h.base_spec(userns=userns, masked=False)
    spec["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620, "uid": 7, "gid": 8},
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640},
    ]

    def check() -> dict[str, Any]:
        return {n: h.stat_of(n) for n in ("/dev/fuse", "/dev/net/tun", "/dev/myfifo")}

    d = _ok(h.run(spec, bundle=b, rootfs=r, userns=userns, check=check))
    fuse, tun, fifo = d["/dev/fuse"], d["/dev/net/tun"], d["/dev/myfifo"]
    assert stat.S_ISCHR(fuse["mode"]) and (fuse["major"], fuse["minor"]) == (10, 229)
    assert stat.S_ISCHR(tun["mode"]) and (tun["major"], tun["minor"]) == (10, 200)
    assert stat.S_ISFIFO(fifo["mode"]) and stat.S_IMODE(fifo["mode"]) == 0o640
    if not userns:
        assert stat.S_IMODE(fuse["mode"]) == 0o620 and (fuse["uid"], fuse["gid"]) == (7, 8)


def test_existing_non_matching_device_is_an_error(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    (r / "dev" / "null").write_text("not a device\n")
    spec = h.base_spec(masked=False)
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    res = h.run(spec, bundle=b, rootfs=r)
    assert not res.ok and "/dev/null already exists and is not the requested device c 1:3" in res.error
    assert "a regular file" in res.error


def test_sysctl_in_own_namespaces(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    spec = h.base_spec()
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456", "kernel.domainname": "dom"}
    flags = h.NS_DEFAULT
    host = {k: Path(p).read_text() for k, p in (("fwd", "/proc/sys/net/ipv4/ip_forward"),
                                                 ("shm", "/proc/sys/kernel/shmmax"))}

    def check() -> dict[str, Any]:
        return {k: open(p).read().strip() for k, p in (("fwd", "/proc/sys/net/ipv4/ip_forward"),
                                                        ("shm", "/proc/sys/kernel/shmmax"),
                                                        ("dom", "/proc/sys/kernel/domainname"))}

    assert _ok(h.run(spec, bundle=b, rootfs=r, ns_flags=flags, check=check)) == {"fwd": "1", "shm": "123456",
                                                                                 "dom": "dom"}
    assert {k: Path(p).read_text() for k, p in (("fwd", "/proc/sys/net/ipv4/ip_forward"),
                                                 ("shm", "/proc/sys/kernel/shmmax"))} == host


def test_tmpcopyup(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    (r / "etc" / "sub").mkdir()
    (r / "etc" / "sub" / "deep").write_text("deep\n")
    os.symlink("passwd", r / "etc" / "pw-link")
    spec = h.base_spec(masked=False)
    spec["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]})

    def check() -> dict[str, Any]:
        with open("/etc/new", "w") as f:
            f.write("x")
        return {"fs": _mounts_by_point()["/etc"]["fstype"], "deep": open("/etc/sub/deep").read(),
                "link": os.readlink("/etc/pw-link"), "passwd": open("/etc/passwd").read().startswith("root:")}

    assert _ok(h.run(spec, bundle=b, rootfs=r, check=check)) == {"fs": "tmpfs", "deep": "deep\n", "link": "passwd",
                                                                 "passwd": True}
    assert not (r / "etc" / "new").exists()


def test_no_pivot(wd: h.Workdir) -> None:
    b, r = wd.bundle()

    def check() -> dict[str, Any]:
        return {"ls": sorted(os.listdir("/")), "up": sorted(os.listdir("/..")),
                "root_up": sorted(os.listdir("/proc/1/root/..")), "cwd": os.getcwd(),
                "m": sorted(_mounts_by_point())}

    d = _ok(h.run(h.base_spec(), bundle=b, rootfs=r, no_pivot=True, check=check))
    assert d["ls"] == d["up"] == d["root_up"] and "bin" in d["ls"] and d["cwd"] == "/"
    assert str(wd.path) not in " ".join(d["ls"])


def test_errors_are_one_line_and_name_the_field(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    spec = h.base_spec(masked=False)
    spec["mounts"].append({"destination": "/x", "source": str(wd.path / "missing"), "options": ["bind"]})
    res = h.run(spec, bundle=b, rootfs=r)
    assert not res.ok and res.error_type == "SyscallError"
    assert res.error.startswith("mounts[6].source: open") and "ENOENT" in res.error and "\n" not in res.error
    spec = h.base_spec(masked=False)
    spec["linux"]["sysctl"] = {"kernel.core_pattern": "core"}
    res = h.run(spec, bundle=b, rootfs=r)
    assert res.error_type == "ConfigError" and "linux.sysctl['kernel.core_pattern']" in res.error


def test_enter_cwd(wd: h.Workdir) -> None:
    b, r = wd.bundle()
    os.symlink("/proc/self/fd/3", r / "leak")

    def check() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cwd in ("/new/dir", "/etc/../tmp", "/proc/self/fd/0", "/leak", "/etc/passwd"):
            try:
                pyoci_rootfs.enter_cwd(cwd)
                out[cwd] = os.getcwd()
            except Exception as exc:  # noqa: BLE001
                out[cwd] = f"error {getattr(exc, 'errno', '?')}"
        return out

    d = _ok(h.run(h.base_spec(masked=False), bundle=b, rootfs=r, check=check))
    assert d["/new/dir"] == "/new/dir" and (r / "new" / "dir").is_dir()
    assert d["/etc/../tmp"] == "/tmp"
    assert d["/proc/self/fd/0"] == "error 40" and d["/leak"] == "error 40"  # ELOOP: magic links refused
    assert d["/etc/passwd"] == "error 20"


def test_prepare_from_a_cwd_the_userns_cannot_enter(wd: h.Workdir) -> None:
    """The runtime may be started from a 0700 home: container root (host 100000) cannot open '.' there."""
    b, r = wd.bundle()
    private = wd.path / "private"
    private.mkdir(mode=0o700)
    _ok(h.run(h.base_spec(userns=True), bundle=b, rootfs=r, userns=True, cwd=str(private)))


def test_proc_allow_list_and_procfs_bind(wd: h.Workdir) -> None:
    """lxcfs-style binds over allow-listed /proc files work; a procfs root may be bound over /proc."""
    b, r = wd.bundle()
    fake = wd.path / "cpuinfo"
    fake.write_text("processor: fake\n")
    spec = h.base_spec(masked=False)
    spec["mounts"].append({"destination": "/proc/cpuinfo", "source": str(fake), "options": ["bind", "ro"]})

    def check() -> dict[str, Any]:
        return {"cpuinfo": Path("/proc/cpuinfo").read_text()}

    assert _ok(h.run(spec, bundle=b, rootfs=r, check=check)) == {"cpuinfo": "processor: fake\n"}
    spec = h.base_spec(masked=False)
    spec["mounts"][0] = {"destination": "/proc", "source": "/proc", "options": ["rbind"]}
    res = h.run(spec, bundle=b, rootfs=r, ns_flags=h.NS_DEFAULT & ~libc.CLONE_NEWPID,
                check=lambda: {"fs": _mounts_by_point()["/proc"]["fstype"]})
    assert _ok(res) == {"fs": "proc"}


def test_sysfs_in_a_userns_without_netns_falls_back_to_a_bind(wd: h.Workdir) -> None:
    """sysfs needs the owner of the network namespace: without one, the host's /sys is bound ro (runc)."""
    b, r = wd.bundle()
    spec = h.base_spec(userns=True, masked=False)
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]

    def check() -> dict[str, Any]:
        m = _mounts_by_point()
        return {"sys": m["/sys"]["options"], "cg": "/sys/fs/cgroup" in m,
                "w": h.try_open("/sys/kernel/profiling", os.O_WRONLY | os.O_APPEND)}

    d = _ok(h.run(spec, bundle=b, rootfs=r, userns=True, ns_flags=h.NS_DEFAULT & ~libc.CLONE_NEWNET, check=check))
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(d["sys"]) and d["cg"]  # rbind carried the submounts
    assert d["w"] in (13, 30)
