"""Conformance scenarios for the container's filesystem (issue 5): linux.devices, /dev symlinks, masked and
readonly paths, tmpfs options, binds of files/fifos/sockets, recursive and atime mount attributes,
nosymfollow, rootfsPropagation, --no-pivot, overlay, tmpcopyup, idmapped mounts and sysctl keys that MUST be
refused. Merged into `scenarios.SCENARIOS`.

Busybox `stat -c '%t:%T'` prints major:minor in hex. Every host-side resource (source dirs, fifos, sockets,
submounts) lives in the workspace and is removed by its setup's `finally`."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conformance import observe
from conformance.checks import Check, both, contains, eq, mount_has
from conformance.core import Facts, Run, Scenario

Edit = Callable[[dict[str, Any], Run], None]


# ---- small builders ---------------------------------------------------------------------------------------
def _edits(*edits: Edit) -> Edit:
    def edit(cfg: dict[str, Any], run: Run) -> None:
        for e in edits:
            e(cfg, run)
    return edit


def _mount(dest: str, kind: str, source: str | Callable[[Run], str], options: list[str],
           **extra: Any) -> Edit:
    def edit(cfg: dict[str, Any], run: Run) -> None:
        src = source(run) if callable(source) else source
        cfg["mounts"].append({"destination": dest, "type": kind, "source": src, "options": list(options),
                              **extra})
    return edit


def _src(key: str) -> Callable[[Run], str]:
    return lambda run: str(run.values[key])


def _stat(path: str, fmt: str = "%F %a %u:%g") -> str:
    return f"echo @@stat:{path}; stat -c '{fmt}' {path} 2>&1\n"


def _cat(path: str) -> str:
    return f"echo @@cat:{path}; cat {path} 2>&1\n"


def _try(name: str, cmd: str) -> str:
    """Section `name`: `ok` when the command succeeds, else `fail`."""
    return f"echo @@{name}; if ( {cmd} ) >/dev/null 2>&1; then echo ok; else echo fail; fi\n"


def _no_mount(point: str) -> Check:
    def check(f: Facts) -> list[str]:
        rows = observe.mount_rows(f, "host.running.mounts")
        return [f"a mount at {point} (a missing path must be skipped)"] if point in rows else []
    return check


def _rootfs_dir(rel: str, files: dict[str, str] | None = None) -> Callable[[Path, Run], None]:
    """prepare: a directory (and files) in the bundle's rootfs copy, owned by the host's root."""
    def prepare(bundle: Path, run: Run) -> None:
        d = bundle / "rootfs" / rel.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (d / name).write_text(text)
    return prepare


def _rootfs_file(rel: str, text: str) -> Callable[[Path, Run], None]:
    def prepare(bundle: Path, run: Run) -> None:
        p = bundle / "rootfs" / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return prepare


def _sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=30)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


# ---- linux.devices ----------------------------------------------------------------------------------------
def _dev_row(path: str, want: str) -> Check:
    """The probe's `in.dev` row for path starts with want ('<%F> <%a> <%u:%g> <%t:%T>')."""
    def check(f: Facts) -> list[str]:
        for line in f.get("in.dev", "").splitlines():
            if line.startswith(path + " "):
                rest = line[len(path) + 1:]
                return [] if rest.startswith(want) else [f"{path}: expected {want!r}, got {rest!r}"]
        return [f"{path}: missing from /dev"]
    return check


def _majmin(path: str, want: str) -> Check:
    def check(f: Facts) -> list[str]:
        row = next((ln for ln in f.get("in.dev", "").splitlines() if ln.startswith(path + " ")), "")
        return [] if f" {want} " in row else [f"{path}: not device {want} ({row or 'missing'!r})"]
    return check


def _device(**dev: Any) -> Edit:
    return lambda cfg, run: cfg["linux"].setdefault("devices", []).append(dict(dev))


def _userns(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


PTMX_PROBE = (
    "echo @@links; for l in fd stdin stdout stderr ptmx; do echo \"$l -> $(readlink /dev/$l)\"; done\n"
    "echo @@stdout-is-fd1; [ /dev/stdout -ef /proc/$$/fd/1 ] && echo yes || echo no\n"
    "echo @@fd-resolves; ls /dev/fd/ >/dev/null 2>&1 && echo ok || echo fail\n"
    # Opening /dev/ptmx allocates pty 0 of the container's own devpts instance (newinstance).
    "echo @@ptmx-open; ( exec 3<>/dev/ptmx && echo $(ls /dev/pts) ) 2>&1\n"
)


# ---- host-side resources ----------------------------------------------------------------------------------
@contextlib.contextmanager
def host_file(run: Run) -> Iterator[None]:
    """A regular file, a fifo and a listening unix socket of ours in the workspace (single-file binds)."""
    base = run.ws.path / f"files-{run.runtime.name}-{run.tag}"
    base.mkdir()
    base.chmod(0o755)
    (base / "file").write_text("bound file\n")
    (base / "file").chmod(0o644)
    os.mkfifo(base / "fifo")
    (base / "fifo").chmod(0o644)  # explicit modes: the runner's umask must not change what is compared
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(base / "sock"))
        sock.listen(1)
        run.values.update(file=base / "file", fifo=base / "fifo", sock=base / "sock")
        yield
    finally:
        sock.close()


@contextlib.contextmanager
def tree_with_submount(run: Run) -> Iterator[None]:
    """A host dir with a tmpfs of ours on `sub`: a marker and an executable script (recursive attrs)."""
    src = run.ws.path / f"tree-{run.runtime.name}-{run.tag}"
    (src / "sub").mkdir(parents=True)
    src.chmod(0o755)
    (src / "top").write_text("top\n")
    _sh("mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "conf-tree", str(src / "sub"))
    try:
        (src / "sub" / "marker").write_text("submount\n")
        script = src / "sub" / "run.sh"
        script.write_text("#!/bin/sh\necho ran\n")
        script.chmod(0o755)
        run.values["src"] = src
        yield
    finally:
        _umount(src / "sub")


@contextlib.contextmanager
def overlay_dirs(run: Run) -> Iterator[None]:
    base = run.ws.path / f"ovl-{run.runtime.name}-{run.tag}"
    for d in ("lower", "upper", "work"):
        (base / d).mkdir(parents=True)
    base.chmod(0o755)
    (base / "lower" / "from-lower").write_text("lower layer\n")
    run.values.update(lower=base / "lower", upper=base / "upper", work=base / "work")
    yield


def _overlay(cfg: dict[str, Any], run: Run) -> None:
    v = run.values
    cfg["mounts"].append({"destination": "/mnt/ov", "type": "overlay", "source": "overlay",
                          "options": [f"lowerdir={v['lower']}", f"upperdir={v['upper']}",
                                      f"workdir={v['work']}"]})


def _overlay_after(run: Run) -> Facts:
    v = run.values
    return {"host.upper": " ".join(sorted(p.name for p in v["upper"].iterdir())),
            "host.lower": " ".join(sorted(p.name for p in v["lower"].iterdir()))}


@contextlib.contextmanager
def idmap_source(run: Run) -> Iterator[None]:
    """A host dir (0755, root-owned) with `f` owned 0:0 and `g` owned 1:1, the source of idmapped binds."""
    src = run.ws.path / f"idmap-{run.runtime.name}-{run.tag}"
    src.mkdir()
    src.chmod(0o755)
    (src / "f").write_text("root-owned\n")
    (src / "g").write_text("uid-1-owned\n")
    os.chown(src / "g", 1, 1)
    run.values["src"] = src
    yield


def _idmap_after(run: Run) -> Facts:
    new = run.values["src"] / "new"
    if not new.exists():
        return {"host.new-owner": "<absent>"}
    st = new.stat()
    return {"host.new-owner": f"{st.st_uid}:{st.st_gid}"}


def _idmap_mount(mapping: dict[str, int]) -> Edit:
    return _mount("/mnt/idmap", "bind", _src("src"), ["bind", "idmap"],
                  uidMappings=[dict(mapping)], gidMappings=[dict(mapping)])


IDMAP_PROBE = (_stat("/mnt/idmap/f", "%u:%g") + _stat("/mnt/idmap/g", "%u:%g")
               + _try("write:/mnt/idmap/new", "echo x > /mnt/idmap/new"))


@contextlib.contextmanager
def watch_bundle_mounts(run: Run) -> Iterator[None]:
    """After the run: no host mount may remain under this run's bundles (a shared rootfs must not leak its
    container's mounts to the host); any that do are lazily unmounted so nothing is left behind."""
    try:
        yield
    finally:
        for point in reversed(_host_mounts_under(run)):
            _umount(Path(point))


def _host_mounts_under(run: Run) -> list[str]:
    prefixes = tuple(str(c.bundle) + "/" for c in run.containers)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if prefixes and point.startswith(prefixes):
            out.append(point)
    return out


def _leak_after(run: Run) -> Facts:
    return {"host.mounts-under-bundle": str(len(_host_mounts_under(run)))}


# ---- create that MUST fail (sysctl) -----------------------------------------------------------------------
def _refuse_drive(run: Run) -> Facts:
    ctr, res = run.create(run.config(["true"]), keep_stdin=False)
    f: Facts = {"create.rc": "0" if res.ok else "nonzero",
                "state.rc": "0" if run.verb("state", ctr.cid).ok else "nonzero",
                "message": run.norm((res.err.strip().splitlines() or [""])[-1])[:300]}
    return f


def _refused_naming(key: str) -> Check:
    def check(f: Facts) -> list[str]:
        out = []
        if f.get("create.rc") != "nonzero":
            out.append("create succeeded")
        if f.get("state.rc") != "nonzero":
            out.append("a container exists after the failed create")
        elif f.get("create.rc") == "nonzero" and key not in f.get("message", ""):
            out.append(f"the error does not name {key!r}: {f.get('message')!r}")
        return out
    return check


def _host_sysctl(key: str) -> str:
    return Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()


def _sysctl(key: str) -> Edit:
    # The host's current value: a runtime that wrongly accepts it changes nothing on the host.
    return lambda cfg, run: cfg["linux"].update(sysctl={key: _host_sysctl(key)})


def _drop_ns(kind: str) -> Edit:
    def edit(cfg: dict[str, Any], run: Run) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != kind]
    return edit


def _skip_unless_sysctl(key: str) -> Callable[[], str | None]:
    return lambda: None if Path("/proc/sys/" + key.replace(".", "/")).exists() else f"no sysctl {key} here"


# ---- checks -----------------------------------------------------------------------------------------------
def _prop(point: str, want: str) -> Check:
    return mount_has(point, propagation=(want,))


def _atime(point: str, have: tuple[str, ...], absent: tuple[str, ...]) -> Check:
    return mount_has(point, fstype="tmpfs", opts=have, absent_opts=absent)


REC = "/mnt/r"
REC_SUB = "/mnt/r/sub"


def _rec(attr: str) -> Edit:
    return _mount(REC, "bind", _src("src"), ["rbind", attr])


TMPFS_AT = "/mnt/at"


def _tmpfs(options: list[str], dest: str = TMPFS_AT) -> Edit:
    return _mount(dest, "tmpfs", "tmpfs", ["size=1m", *options])


SCENARIOS: list[Scenario] = [
    # ---- linux.devices: type, major:minor, fileMode, uid, gid
    Scenario(
        "devices.char", "config-linux.md#devices: type c with major/minor, fileMode, uid, gid",
        _dev_row("/dev/conf-c", "character special file 620 1:2 1:5"),
        edit=_device(path="/dev/conf-c", type="c", major=1, minor=5, fileMode=0o620, uid=1, gid=2),
        facts=("in.dev",)),
    Scenario(
        "devices.unbuffered", "config-linux.md#devices: type u (unbuffered character device)",
        _dev_row("/dev/conf-u", "character special file 604 3:4 1:7"),
        edit=_device(path="/dev/conf-u", type="u", major=1, minor=7, fileMode=0o604, uid=3, gid=4),
        facts=("in.dev",)),
    Scenario(
        "devices.block", "config-linux.md#devices: type b (block device)",
        _dev_row("/dev/conf-b", "block special file 660 0:6 7:0"),
        edit=_device(path="/dev/conf-b", type="b", major=7, minor=0, fileMode=0o660, uid=0, gid=6),
        facts=("in.dev",)),
    Scenario(
        "devices.fifo", "config-linux.md#devices: type p (FIFO), no major/minor",
        _dev_row("/dev/conf-p", "fifo 600 1000:1000"),
        edit=_device(path="/dev/conf-p", type="p", fileMode=0o600, uid=1000, gid=1000),
        facts=("in.dev",)),
    Scenario(
        "devices.userns",
        "config-linux.md#devices: MUST be available in a user namespace (bind of the host node)",
        both(_dev_row("/dev/fuse", "character special file"), _majmin("/dev/fuse", "a:e5")),  # hex: 10:229
        edit=_edits(_userns, _device(path="/dev/fuse", type="c", major=10, minor=229, fileMode=0o666,
                                     uid=0, gid=0)),
        skip=lambda: None if Path("/dev/fuse").is_char_device() else "the host has no /dev/fuse to bind",
        facts=("in.dev",)),
    Scenario(
        "devices.userns.no-host-node",
        "config-linux.md#devices: MUST be available in a user namespace, even without a host node there",
        both(_dev_row("/dev/conf-null", "character special file"), _majmin("/dev/conf-null", "1:3"),
             eq("in.write:/dev/conf-null", "ok")),
        edit=_edits(_userns, _device(path="/dev/conf-null", type="c", major=1, minor=3, fileMode=0o666,
                                     uid=0, gid=0)),
        probe=_try("write:/dev/conf-null", "echo x > /dev/conf-null"), facts=("in.dev", "in.write")),
    Scenario(
        "devices.symlinks",
        "runtime-linux.md#dev-symbolic-links and config-linux.md#default-devices: /dev/ptmx",
        both(eq("in.links", "fd -> /proc/self/fd\nstdin -> /proc/self/fd/0\nstdout -> /proc/self/fd/1\n"
                            "stderr -> /proc/self/fd/2\nptmx -> pts/ptmx"),
             eq("in.stdout-is-fd1", "yes"), eq("in.fd-resolves", "ok"), eq("in.ptmx-open", "0 ptmx")),
        probe=PTMX_PROBE, facts=("in.links", "in.stdout-is-fd1", "in.fd-resolves", "in.ptmx-open")),
    # ---- maskedPaths / readonlyPaths on the image's own paths
    Scenario(
        "maskedPaths.dir", "config-linux.md#masked-paths: a directory is masked (read-only tmpfs, empty)",
        both(mount_has("/conf-masked", fstype="tmpfs", opts=("ro",)), eq("in.ls:/conf-masked", ""),
             eq("in.write:/conf-masked/x", "fail")),
        edit=lambda c, r: c["linux"]["maskedPaths"].append("/conf-masked"),
        prepare=_rootfs_dir("/conf-masked", {"secret": "host secret\n"}),
        probe="echo @@ls:/conf-masked; ls -A /conf-masked\n" + observe.write_check("/conf-masked/x"),
        facts=("in.ls", "in.write", "host.running.mounts")),
    Scenario(
        "maskedPaths.file", "config-linux.md#masked-paths: a file is masked (reads empty, /dev/null over it)",
        both(eq("in.cat:/conf-secret", ""), eq("in.stat:/conf-secret", "character special file 1:3")),
        edit=lambda c, r: c["linux"]["maskedPaths"].append("/conf-secret"),
        prepare=_rootfs_file("/conf-secret", "host secret\n"),
        probe=_cat("/conf-secret") + _stat("/conf-secret", "%F %t:%T"), facts=("in.cat", "in.stat")),
    Scenario(
        "maskedPaths.missing", "config-linux.md#masked-paths: a path missing in the rootfs is skipped",
        both(_no_mount("/conf-missing"), eq("in.exists:/conf-missing", "no"),
             eq("state.after-start", "running")),
        edit=lambda c, r: c["linux"]["maskedPaths"].extend(["/conf-missing", "/proc/conf-missing"]),
        probe="echo @@exists:/conf-missing; [ -e /conf-missing ] && echo yes || echo no\n",
        facts=("in.exists", "state.", "host.running.mounts")),
    Scenario(
        "readonlyPaths.dir", "config-linux.md#readonly-paths: a directory of a writable rootfs is read-only",
        both(mount_has("/conf-ro", opts=("ro",)), eq("in.cat:/conf-ro/keep", "kept"),
             eq("in.write:/conf-ro/new", "fail"), eq("in.write:/conf-rw-probe", "ok")),
        edit=lambda c, r: (c["root"].update(readonly=False), c["linux"]["readonlyPaths"].append("/conf-ro")),
        prepare=_rootfs_dir("/conf-ro", {"keep": "kept\n"}),
        probe=(_cat("/conf-ro/keep") + observe.write_check("/conf-ro/new")
               + observe.write_check("/conf-rw-probe")),
        facts=("in.cat", "in.write", "host.running.mounts")),
    Scenario(
        "readonlyPaths.missing", "config-linux.md#readonly-paths: a path missing in the rootfs is skipped",
        both(_no_mount("/conf-missing"), eq("in.exists:/conf-missing", "no"),
             eq("state.after-start", "running")),
        edit=lambda c, r: c["linux"]["readonlyPaths"].extend(["/conf-missing", "/proc/conf-missing"]),
        probe="echo @@exists:/conf-missing; [ -e /conf-missing ] && echo yes || echo no\n",
        facts=("in.exists", "state.", "host.running.mounts")),
    # ---- tmpfs data options, single-file binds
    Scenario(
        "mount.tmpfs.owner", "config.md#mounts: tmpfs size, mode, uid and gid (data options)",
        both(mount_has("/mnt/own", fstype="tmpfs",
                       super_opts=("size=2048k", "mode=710", "uid=1000", "gid=1000")),
             eq("in.stat:/mnt/own", "directory 710 1000:1000")),
        edit=_tmpfs(["size=2m", "mode=0710", "uid=1000", "gid=1000"], "/mnt/own"),
        probe=_stat("/mnt/own"), facts=("in.stat", "host.running.mounts")),
    Scenario(
        "mount.bind.file", "config.md#mounts: bind of a single file (a file mountpoint is created)",
        both(mount_has("/etc/conf-bound", opts=("ro",)), eq("in.cat:/etc/conf-bound", "bound file"),
             eq("in.stat:/etc/conf-bound", "regular file 644 0:0")),
        setup=host_file, edit=_mount("/etc/conf-bound", "bind", _src("file"), ["bind", "ro"]),
        probe=_cat("/etc/conf-bound") + _stat("/etc/conf-bound"),
        facts=("in.cat", "in.stat", "host.running.mounts")),
    Scenario(
        "mount.bind.fifo", "config.md#mounts: bind of a FIFO",
        both(mount_has("/mnt/conf-fifo"), eq("in.stat:/mnt/conf-fifo", "fifo 644 0:0")),
        setup=host_file, edit=_mount("/mnt/conf-fifo", "bind", _src("fifo"), ["bind"]),
        probe=_stat("/mnt/conf-fifo"), facts=("in.stat", "host.running.mounts")),
    Scenario(
        "mount.bind.socket", "config.md#mounts: bind of a unix socket",
        both(mount_has("/mnt/conf-sock"), contains("in.stat:/mnt/conf-sock", "socket")),
        setup=host_file, edit=_mount("/mnt/conf-sock", "bind", _src("sock"), ["bind"]),
        probe=_stat("/mnt/conf-sock", "%F"), facts=("in.stat", "host.running.mounts")),
    # ---- recursive mount attributes (mount_setattr AT_RECURSIVE): the submount gets them too
    Scenario(
        "mount.rro", "config.md#mounts: rro makes the bind and its submounts read-only",
        both(mount_has(REC, opts=("ro",)), mount_has(REC_SUB, fstype="tmpfs", opts=("ro",)),
             eq("in.write:/mnt/r/sub/new", "fail"), eq("in.cat:/mnt/r/sub/marker", "submount")),
        setup=tree_with_submount, edit=_rec("rro"),
        probe=observe.write_check("/mnt/r/sub/new") + _cat("/mnt/r/sub/marker"),
        facts=("in.write", "in.cat", "host.running.mounts"), fast=True),
    Scenario(
        "mount.rnosuid", "config.md#mounts: rnosuid on the bind and its submounts",
        both(mount_has(REC, opts=("nosuid",)), mount_has(REC_SUB, opts=("nosuid",))),
        setup=tree_with_submount, edit=_rec("rnosuid"), facts=("host.running.mounts",)),
    Scenario(
        "mount.rnodev", "config.md#mounts: rnodev on the bind and its submounts",
        both(mount_has(REC, opts=("nodev",)), mount_has(REC_SUB, opts=("nodev",))),
        setup=tree_with_submount, edit=_rec("rnodev"), facts=("host.running.mounts",)),
    Scenario(
        "mount.rnoexec", "config.md#mounts: rnoexec on the bind and its submounts (exec refused)",
        both(mount_has(REC, opts=("noexec",)), mount_has(REC_SUB, opts=("noexec",)),
             eq("in.exec:/mnt/r/sub/run.sh", "fail")),
        setup=tree_with_submount, edit=_rec("rnoexec"),
        probe=_try("exec:/mnt/r/sub/run.sh", "/mnt/r/sub/run.sh"),
        facts=("in.exec", "host.running.mounts")),
    # ---- atime family, nosymfollow
    Scenario(
        "mount.noatime", "config.md#mounts: noatime",
        _atime(TMPFS_AT, ("noatime",), ("relatime",)), edit=_tmpfs(["noatime"]),
        facts=("host.running.mounts",)),
    Scenario(
        "mount.strictatime", "config.md#mounts: strictatime (neither relatime nor noatime)",
        _atime(TMPFS_AT, (), ("relatime", "noatime")), edit=_tmpfs(["strictatime"]),
        facts=("host.running.mounts",)),
    Scenario(
        "mount.relatime", "config.md#mounts: relatime",
        _atime(TMPFS_AT, ("relatime",), ("noatime",)), edit=_tmpfs(["relatime"]),
        facts=("host.running.mounts",)),
    Scenario(
        "mount.nodiratime", "config.md#mounts: nodiratime",
        _atime(TMPFS_AT, ("nodiratime",), ()), edit=_tmpfs(["nodiratime"]), facts=("host.running.mounts",)),
    Scenario(
        "mount.nosymfollow", "config.md#mounts: nosymfollow (SHOULD): symlinks on the mount are not followed",
        both(mount_has(TMPFS_AT, fstype="tmpfs", opts=("nosymfollow",)), eq("in.follow", "fail"),
             eq("in.link-made", "ok")),
        edit=_tmpfs(["nosymfollow"]),
        probe=(_try("link-made", f"ln -s /etc/hostname {TMPFS_AT}/l")
               + _try("follow", f"cat {TMPFS_AT}/l")),
        facts=("in.follow", "in.link-made", "host.running.mounts")),
    # ---- rootfsPropagation, --no-pivot
    Scenario(
        "rootfsPropagation.shared", "config-linux.md#rootfs-mount-propagation: shared",
        both(_prop("/", "shared"), eq("host.mounts-under-bundle", "0")),
        setup=watch_bundle_mounts, after=_leak_after,
        edit=lambda c, r: c["linux"].update(rootfsPropagation="shared"),
        facts=("host.running.mounts", "host.")),
    Scenario(
        "rootfsPropagation.private", "config-linux.md#rootfs-mount-propagation: private",
        _prop("/", "private"),
        edit=lambda c, r: c["linux"].update(rootfsPropagation="private"), facts=("host.running.mounts",)),
    Scenario(
        "rootfsPropagation.unbindable", "config-linux.md#rootfs-mount-propagation: unbindable",
        _prop("/", "unbindable"),
        edit=lambda c, r: c["linux"].update(rootfsPropagation="unbindable"), facts=("host.running.mounts",)),
    Scenario(
        "no-pivot", "runc CLI create --no-pivot: MS_MOVE + chroot; same container as with pivot_root",
        both(eq("host.running.root", "/"), mount_has("/", opts=("ro",)),
             mount_has("/proc", fstype="proc"), eq("in.write:/conf-probe", "fail"),
             eq("in.hostname", "conf-base")),
        create_args=("--no-pivot",), probe=observe.write_check("/conf-probe"),
        facts=("host.running.root", "host.running.mounts", "in.write", "in.hostname")),
    # ---- overlay, tmpcopyup
    Scenario(
        "mount.overlay", "config.md#mounts: overlay with lowerdir, upperdir, workdir (writes reach upperdir)",
        both(mount_has("/mnt/ov", fstype="overlay"), eq("in.cat:/mnt/ov/from-lower", "lower layer"),
             eq("in.write:/mnt/ov/new", "ok"), eq("host.upper", "new"), eq("host.lower", "from-lower")),
        setup=overlay_dirs, edit=_overlay, after=_overlay_after,
        probe=_cat("/mnt/ov/from-lower") + _try("write:/mnt/ov/new", "echo x > /mnt/ov/new"),
        facts=("in.cat", "in.write", "host.upper", "host.lower", "host.running.mounts")),
    Scenario(
        "mount.tmpcopyup", "config.md#mounts: tmpcopyup (MAY) copies the image's directory into the tmpfs",
        both(mount_has("/conf-copy", fstype="tmpfs"), eq("in.cat:/conf-copy/seed", "seeded"),
             eq("in.write:/conf-copy/new", "ok")),
        prepare=_rootfs_dir("/conf-copy", {"seed": "seeded\n"}),
        edit=_mount("/conf-copy", "tmpfs", "tmpfs", ["tmpcopyup", "size=1m", "mode=755"]),
        probe=_cat("/conf-copy/seed") + observe.write_check("/conf-copy/new"),
        facts=("in.cat", "in.write", "host.running.mounts")),
    # ---- idmapped bind mounts (mount_setattr MOUNT_ATTR_IDMAP)
    Scenario(
        "mount.idmap", "config.md#mounts: idmap + uid/gidMappings without a user namespace (0 shows as 1000)",
        both(eq("in.stat:/mnt/idmap/f", "1000:1000"), eq("in.stat:/mnt/idmap/g", "65534:65534")),
        setup=idmap_source, edit=_idmap_mount({"containerID": 0, "hostID": 1000, "size": 1}),
        probe=IDMAP_PROBE, facts=("in.stat", "host.running.mounts")),
    Scenario(
        "mount.idmap.userns",
        "config.md#mounts: idmap in a user namespace (the host's 0 is the container's 0)",
        both(eq("in.stat:/mnt/idmap/f", "0:0"), eq("in.stat:/mnt/idmap/g", "1:1"),
             eq("in.write:/mnt/idmap/new", "ok"), eq("host.new-owner", "0:0")),
        setup=idmap_source, prepare=_rootfs_dir("/mnt/idmap"), after=_idmap_after,
        edit=_edits(_userns, _idmap_mount({"containerID": 0, "hostID": 100000, "size": 65536})),
        probe=IDMAP_PROBE, facts=("in.stat", "in.write", "host.new-owner", "host.running.mounts")),
    # ---- sysctl keys that would change the host: MUST be refused, naming the key
    Scenario(
        "sysctl.reject.not-namespaced",
        "config-linux.md#sysctl (issue 5): kernel.core_pattern is not namespaced",
        _refused_naming("kernel.core_pattern"), edit=_sysctl("kernel.core_pattern"), drive=_refuse_drive,
        facts=("create.rc", "state.rc", "message")),
    Scenario(
        "sysctl.reject.net-without-netns",
        "config-linux.md#sysctl (issue 5): net.* needs the container's own netns",
        _refused_naming("net.ipv4.ip_forward"),
        edit=_edits(_drop_ns("network"), _sysctl("net.ipv4.ip_forward")),
        drive=_refuse_drive, facts=("create.rc", "state.rc", "message")),
    Scenario(
        "sysctl.reject.ipc-without-ipcns",
        "config-linux.md#sysctl (issue 5): kernel.shm* needs an ipc namespace",
        _refused_naming("kernel.shm_rmid_forced"),
        edit=_edits(_drop_ns("ipc"), _sysctl("kernel.shm_rmid_forced")),
        drive=_refuse_drive, facts=("create.rc", "state.rc", "message")),
]
