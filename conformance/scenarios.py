"""The scenarios: one entry per spec behaviour. A feature issue adds its scenarios to SCENARIOS (see README).

Each check returns the list of ways the observation departs from the spec (empty = pass). Fact keys:
`host.created.*` / `host.running.*` (/proc/<pid>/ seen from the host), `in.*` (the probe's sections),
`state.*`, `during.*` and the lifecycle drivers' own keys (see lifecycle.py)."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conformance import cgroups, confine, exec_hooks, features, filesystem, invalid, lifecycle, observe
from conformance.checks import both, contains, eq, mount_has, ns_is
from conformance.core import LEAK_ENV, Facts, Run, RunError, Scenario


def _add_mount(cfg: dict[str, Any], mount: dict[str, Any]) -> None:
    cfg["mounts"].append(mount)


# ---- host-side resources ----------------------------------------------------------------------------------
def _sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def netns_holder(run: Run) -> Iterator[None]:
    """A process we start in a new network namespace (with a dummy link when the kernel has the module);
    the container joins it by path /proc/<pid>/ns/net."""
    script = "ip link add conf0 type dummy 2>/dev/null && echo dummy=yes || echo dummy=no; exec sleep 600"
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        # The namespace exists and is set up once the holder speaks.
        run.values["dummy"] = proc.stdout.readline().decode().strip() == "dummy=yes"
        path = Path(f"/proc/{proc.pid}/ns/net")
        link = observe.ns_link(path)
        if not link or link == observe.ns_link("/proc/self/ns/net"):
            raise RunError("unshare --net did not give the holder its own network namespace")
        run.joined["net"] = link
        run.values["netns_path"] = str(path)
        yield
    finally:
        proc.kill()  # our own child, by pid
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def host_dir(run: Run) -> Iterator[None]:
    """A host directory with a file in it, for bind mounts."""
    src = run.ws.path / f"src-{run.runtime.name}-{run.tag}"
    src.mkdir()
    src.chmod(0o755)
    (src / "hello").write_text("hello from the host\n")
    run.values["src"] = src
    yield


@contextlib.contextmanager
def shared_mount(run: Run) -> Iterator[None]:
    """A tmpfs of our own, made shared, for propagation scenarios (the host's mounts are left alone)."""
    src = run.ws.path / f"prop-{run.runtime.name}-{run.tag}"
    src.mkdir()
    _sh("mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "conf-prop", str(src))
    try:
        _sh("mount", "--make-shared", str(src))
        (src / "sub").mkdir()
        run.values["src"] = src
        yield
    finally:
        for target in (src / "sub", src):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@contextlib.contextmanager
def host_dir_with_submount(run: Run) -> Iterator[None]:
    """A host directory with a tmpfs of our own mounted on its `sub` directory (for bind vs rbind)."""
    src = run.ws.path / f"rsrc-{run.runtime.name}-{run.tag}"
    (src / "sub").mkdir(parents=True)
    src.chmod(0o755)
    _sh("mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "conf-sub", str(src / "sub"))
    try:
        (src / "sub" / "marker").write_text("submount\n")
        run.values["src"] = src
        yield
    finally:
        subprocess.run(["umount", "-l", str(src / "sub")], capture_output=True, timeout=30)


def _mount_sub_on_host(run: Run, pid: int) -> Facts:
    """While the container runs, mount a tmpfs under the shared source on the host; does the container see it?"""
    sub = run.values["src"] / "sub"
    _sh("mount", "-t", "tmpfs", "-o", "size=1m", "conf-prop-sub", str(sub))
    time.sleep(0.05)
    points = observe.mount_rows({"m": "\n".join(observe.normalise_mountinfo(
        Path(f"/proc/{pid}/mountinfo").read_text(), run.norm))}, "m")
    return {"during.host-mount-seen": "yes" if "/mnt/prop/sub" in points else "no"}


# ---- probe scenarios --------------------------------------------------------------------------------------
def _user(cfg: dict[str, Any], run: Run) -> None:
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 100]}


def _groups_check(f: Facts) -> list[str]:
    got = set(f.get("host.running.status.Groups", "").split())
    want = {"5", "100"}
    # additionalGids are the supplementary groups; the primary gid may or may not be listed as well.
    return [] if got - {"1000"} == want else [f"host.running.status.Groups: expected 5 100, got {sorted(got)}"]


def _userns(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _bind_of(option: str) -> Any:
    def edit(cfg: dict[str, Any], run: Run) -> None:
        _add_mount(cfg, {"destination": "/mnt/b", "type": "bind", "source": str(run.values["src"]),
                         "options": [option, "ro"]})
    return edit


SUB_PROBE = "echo @@cat:/mnt/b/sub/marker; cat /mnt/b/sub/marker 2>/dev/null || echo absent\n"


def _time_offsets(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["namespaces"].append({"type": "time"})
    cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 86400, "nanosecs": 0},
                                   "boottime": {"secs": 172800, "nanosecs": 0}}


def _uptime_check(f: Facts) -> list[str]:
    try:
        inside = float(f.get("in.uptime", "0").split()[0])
    except (ValueError, IndexError):
        return [f"in.uptime: unreadable {f.get('in.uptime')!r}"]
    host = float(Path("/proc/uptime").read_text().split()[0])
    return [] if inside - host > 172000 else [f"in.uptime {inside:.0f}s: the boottime offset is not applied "
                                              f"(host {host:.0f}s)"]


ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", "CONF_A=1",
       "CONF_B=two words"]


def _no_home(cfg: dict[str, Any], run: Run) -> None:
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}  # /etc/passwd: user:x:1000:1000:user:/home:/bin/sh


def _env_check(f: Facts) -> list[str]:
    environ = f.get("host.running.environ", "").splitlines()
    out = [f"process.env entry {e!r} missing from the environment" for e in ENV if e not in environ]
    leaked = [e for e in environ if e.startswith(LEAK_ENV[0] + "=")]
    out += [f"the runtime's own environment leaked in: {e!r}" for e in leaked]
    extra = [e for e in environ if e not in ENV and not e.startswith("HOME=") and e not in leaked]
    out += [f"unexpected variable {e!r} (only process.env, plus HOME, may reach the process)" for e in extra]
    return out


DEVICES = {  # path → (type, major:minor in hex as busybox stat prints them)
    "/dev/null": "1:3", "/dev/zero": "1:5", "/dev/full": "1:7", "/dev/random": "1:8",
    "/dev/urandom": "1:9", "/dev/tty": "5:0",
}
SYMLINKS = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1",
            "/dev/stderr": "/proc/self/fd/2"}


def _devices_check(f: Facts) -> list[str]:
    rows = {}
    for line in f.get("in.dev", "").splitlines():
        name, _, rest = line.partition(" ")
        rows[name] = rest
    out = []
    for dev, majmin in DEVICES.items():
        row = rows.get(dev)
        if row is None:
            out.append(f"{dev} missing")
        elif not row.startswith("character special file") or f" {majmin} " not in row:
            out.append(f"{dev}: expected character device {majmin}, got {row!r}")
    for link, target in SYMLINKS.items():
        row = rows.get(link, "")
        if f"-> '{target}'" not in row:
            out.append(f"{link}: expected symlink to {target}, got {row or 'nothing'!r}")
    ptmx = rows.get("/dev/ptmx", "")
    if "-> 'pts/ptmx'" not in ptmx and " 5:2 " not in ptmx:
        out.append(f"/dev/ptmx: expected a symlink to pts/ptmx or device 5:2, got {ptmx or 'nothing'!r}")
    if f.get("in.write:/dev/null") != "ok":
        out.append("/dev/null is not writable")
    return out + mount_has("/dev/pts", fstype="devpts")(f)


def _base_check(f: Facts) -> list[str]:
    out: list[str] = []
    for ns, want in (("pid", "new"), ("net", "new"), ("ipc", "new"), ("uts", "new"), ("mnt", "new"),
                     ("user", "host"), ("cgroup", "host")):
        out += ns_is(ns, want)(f)
    out += mount_has("/proc", fstype="proc")(f)
    out += mount_has("/dev", fstype="tmpfs", opts=("nosuid",), super_opts=("mode=755",))(f)
    out += mount_has("/dev/shm", fstype="tmpfs", opts=("nosuid", "noexec", "nodev"))(f)
    out += mount_has("/dev/mqueue", fstype="mqueue", opts=("nosuid", "noexec", "nodev"))(f)
    out += mount_has("/sys", fstype="sysfs", opts=("ro", "nosuid", "noexec", "nodev"))(f)
    out += mount_has("/", opts=("ro",))(f)
    out += eq("in.hostname", "conf-base")(f)
    out += eq("host.running.limits.Max open files", "1024 1024")(f)
    out += eq("host.running.status.NoNewPrivs", "1")(f)
    # oomScoreAdj unset: the runtime MUST NOT change it (the runner's own value is inherited).
    out += eq("host.running.oom_score_adj", Path("/proc/self/oom_score_adj").read_text().strip())(f)
    for stage in ("after-create", "after-start", "after-exit"):
        want = {"after-create": "created", "after-start": "running", "after-exit": "stopped"}[stage]
        out += eq(f"state.{stage}", want)(f)
    return out


def _net_path(cfg: dict[str, Any], run: Run) -> None:
    for ns in cfg["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = run.values["netns_path"]


def _net_path_check(f: Facts) -> list[str]:
    out = ns_is("net", "joined")(f)
    if f.get("during.holder-dummy") == "yes" and "conf0" not in f.get("in.links", ""):
        out.append("the joined namespace's dummy link conf0 is not visible inside")
    return out


def _no_pid_ns(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]


SCENARIOS: list[Scenario] = [
    Scenario(
        "base", "runc-spec defaults: namespaces, default mounts, readonly root, rlimits, state transitions",
        _base_check, facts=("host.", "in.", "state."), fast=True),
    Scenario(
        "hostname", "config.md#hostname: sethostname in the container's UTS namespace",
        both(eq("in.hostname", "conf-host"), ns_is("uts", "new")),
        edit=lambda c, r: c.update(hostname="conf-host"), facts=("in.hostname", "host.running.ns.uts"),
        fast=True),
    Scenario(
        "domainname", "config.md#domainname: setdomainname in the container's UTS namespace",
        eq("in.domainname", "conf.example"),
        edit=lambda c, r: c.update(domainname="conf.example"), facts=("in.domainname",)),
    Scenario(
        "user.uid-gid-groups", "config.md#user: uid, gid, additionalGids of the process",
        both(eq("host.running.status.Uid", "1000 1000 1000 1000"),
             eq("host.running.status.Gid", "1000 1000 1000 1000"), _groups_check),
        edit=_user, facts=("host.running.status.Uid", "host.running.status.Gid", "host.running.status.Groups",
                           "in.id"), fast=True),
    Scenario(
        "umask", "config.md#user: process.user.umask",
        both(eq("in.umask", "0027"), eq("host.running.status.Umask", "0027")),
        edit=lambda c, r: c["process"]["user"].update(umask=0o027),
        facts=("in.umask", "host.running.status.Umask")),
    Scenario(
        "rlimits.nofile", "config.md#posix-process: rlimits (getrlimit MUST match)",
        both(eq("host.running.limits.Max open files", "512 768"), eq("in.ulimit.nofile", "512 768")),
        edit=lambda c, r: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}]),
        facts=("host.running.limits.", "in.ulimit"), fast=True),
    Scenario(
        "mount.tmpfs.options", "config.md#mounts: tmpfs with nosuid,nodev,noexec and data options",
        both(mount_has("/mnt/tmp", fstype="tmpfs", opts=("rw", "nosuid", "nodev", "noexec"),
                       super_opts=("size=1024k", "mode=1770")),
             eq("in.mode:/mnt/tmp", "1770"), eq("in.write:/mnt/tmp/f", "ok")),
        edit=lambda c, r: _add_mount(c, {"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs",
                                         "options": ["nosuid", "nodev", "noexec", "mode=1770", "size=1m"]}),
        probe="echo @@mode:/mnt/tmp; stat -c %a /mnt/tmp\n" + observe.write_check("/mnt/tmp/f"),
        facts=("host.running.mounts", "in.mode", "in.write"), fast=True),
    Scenario(
        "mount.bind.ro", "config.md#mounts: bind mount with ro is read-only, contents visible",
        both(mount_has("/mnt/ro", opts=("ro",)), eq("in.cat:/mnt/ro/hello", "hello from the host"),
             eq("in.write:/mnt/ro/new", "fail")),
        setup=host_dir,
        edit=lambda c, r: _add_mount(c, {"destination": "/mnt/ro", "type": "bind", "source": str(r.values["src"]),
                                         "options": ["bind", "ro"]}),
        probe="echo @@cat:/mnt/ro/hello; cat /mnt/ro/hello\n" + observe.write_check("/mnt/ro/new"),
        facts=("host.running.mounts", "in.cat", "in.write"), fast=True),
    Scenario(
        "mount.bind.rw", "config.md#mounts: rw bind mount; the container's writes reach the host directory",
        both(mount_has("/mnt/rw", opts=("rw",)), eq("in.write:/mnt/rw/new", "ok")),
        setup=host_dir,
        edit=lambda c, r: _add_mount(c, {"destination": "/mnt/rw", "type": "bind", "source": str(r.values["src"]),
                                         "options": ["rbind"]}),
        probe=observe.write_check("/mnt/rw/new"),
        facts=("host.running.mounts", "in.write")),
    Scenario(
        "mount.propagation.rslave", "config.md#mounts: rslave bind receives the host's later mounts",
        both(mount_has("/mnt/prop", propagation=("master",)), eq("during.host-mount-seen", "yes")),
        setup=shared_mount, during=_mount_sub_on_host,
        edit=lambda c, r: _add_mount(c, {"destination": "/mnt/prop", "type": "bind",
                                         "source": str(r.values["src"]), "options": ["rbind", "rslave"]}),
        facts=("host.running.mounts", "during.")),
    Scenario(
        "mount.propagation.rprivate", "config.md#mounts: rprivate bind does not receive the host's later mounts",
        both(mount_has("/mnt/prop", propagation=("private",)), eq("during.host-mount-seen", "no")),
        setup=shared_mount, during=_mount_sub_on_host,
        edit=lambda c, r: _add_mount(c, {"destination": "/mnt/prop", "type": "bind",
                                         "source": str(r.values["src"]), "options": ["rbind", "rprivate"]}),
        facts=("host.running.mounts", "during.")),
    Scenario(
        "rootfsPropagation.slave", "config-linux.md#rootfs-mount-propagation: slave root; rslave bind receives",
        both(mount_has("/mnt/prop", propagation=("master",)), eq("during.host-mount-seen", "yes")),
        setup=shared_mount, during=_mount_sub_on_host,
        edit=lambda c, r: (_add_mount(c, {"destination": "/mnt/prop", "type": "bind",
                                          "source": str(r.values["src"]), "options": ["rbind", "rslave"]}),
                           c["linux"].update(rootfsPropagation="slave")),
        facts=("host.running.mounts", "during.")),
    Scenario(
        "mount.bind.nonrecursive", "config.md#mounts: `bind` does not carry the source's submounts",
        both(mount_has("/mnt/b", opts=("ro",)), eq("in.cat:/mnt/b/sub/marker", "absent")),
        setup=host_dir_with_submount, edit=_bind_of("bind"), probe=SUB_PROBE,
        facts=("host.running.mounts", "in.cat")),
    Scenario(
        "mount.rbind.recursive", "config.md#mounts: `rbind` carries the source's submounts",
        both(mount_has("/mnt/b", opts=("ro",)), mount_has("/mnt/b/sub", fstype="tmpfs"),
             eq("in.cat:/mnt/b/sub/marker", "submount")),
        setup=host_dir_with_submount, edit=_bind_of("rbind"), probe=SUB_PROBE,
        facts=("host.running.mounts", "in.cat")),
    Scenario(
        "namespace.pid.new", "config-linux.md#namespaces: new pid namespace, the process is pid 1",
        both(ns_is("pid", "new"), eq("in.pid", "1"), eq("host.running.status.NSpid", "<pid> 1")),
        facts=("host.running.ns.pid", "in.pid", "host.running.status.NSpid"), fast=True),
    Scenario(
        "namespace.pid.host", "config-linux.md#namespaces: no pid namespace entry = the runtime's namespace",
        both(ns_is("pid", "host"), eq("in.pid", "<hostpid>")),
        edit=_no_pid_ns, facts=("host.running.ns.pid", "in.pid")),
    Scenario(
        "namespace.net.path", "config-linux.md#namespaces: path = join that namespace",
        _net_path_check, setup=netns_holder, edit=_net_path,
        skip=lambda: None if shutil.which("unshare") else "unshare(1) not installed (util-linux)",
        during=lambda r, pid: {"during.holder-dummy": "yes" if r.values["dummy"] else "no"},
        probe="echo @@links; ip -o link | cut -d: -f2\n",
        facts=("host.running.ns.net", "in.links")),
    Scenario(
        "namespace.time.offsets", "config-linux.md#namespaces (time) and timeOffsets",
        both(ns_is("time", "new"), eq("host.running.timens_offsets", "monotonic 86400 0 | boottime 172800 0"),
             _uptime_check),
        edit=_time_offsets, probe="echo @@uptime; cat /proc/uptime\n",
        facts=("host.running.ns.time", "host.running.timens_offsets", "in.uptime")),
    Scenario(
        "userns.mappings", "config-linux.md#user-namespace-mappings: uid/gid maps written, root inside",
        both(ns_is("user", "new"), eq("host.running.uid_map", "0 100000 65536"),
             eq("host.running.gid_map", "0 100000 65536"),
             eq("host.running.status.Uid", "100000 100000 100000 100000"),
             lambda f: [] if f.get("in.id", "").startswith("uid=0(root) gid=0(root)")
             else [f"in.id: expected uid=0(root) gid=0(root), got {f.get('in.id')!r}"]),
        edit=_userns, facts=("host.running.ns.user", "host.running.uid_map", "host.running.gid_map",
                             "host.running.status.Uid", "in.id"), fast=True),
    Scenario(
        "root.readonly", "config.md#root: readonly true = the root filesystem is read-only",
        both(mount_has("/", opts=("ro",)), eq("in.write:/conf-probe", "fail")),
        probe=observe.write_check("/conf-probe"), facts=("host.running.mounts", "in.write"), fast=True),
    Scenario(
        "root.readwrite", "config.md#root: readonly false = the root filesystem is writable",
        both(mount_has("/", opts=("rw",)), eq("in.write:/conf-probe", "ok")),
        edit=lambda c, r: c["root"].update(readonly=False),
        probe=observe.write_check("/conf-probe"), facts=("host.running.mounts", "in.write")),
    Scenario(
        "env.only-process-env", "config.md#process: env is process.env only (runtime env must not leak)",
        _env_check, edit=lambda c, r: c["process"].update(env=list(ENV)),
        facts=("host.running.environ",), fast=True),
    Scenario(
        "env.home-default", "compat, not spec (runc, crun): HOME from /etc/passwd when process.env lacks it",
        contains("host.running.environ", "HOME=/home"), edit=_no_home, facts=("host.running.environ",)),
    Scenario(
        "cwd", "config.md#process: cwd is the working directory of the process",
        both(eq("host.running.cwd", "/home"), eq("in.pwd", "/home")),
        edit=lambda c, r: c["process"].update(cwd="/home"), facts=("host.running.cwd", "in.pwd"), fast=True),
    Scenario(
        "devices.default", "config-linux.md#default-devices and runtime-linux.md#dev-symbolic-links",
        _devices_check, probe=observe.write_check("/dev/null"), facts=("in.dev", "in.write"), fast=True),
    *lifecycle.SCENARIOS,
    *features.SCENARIOS,
    *invalid.SCENARIOS,
    *confine.SCENARIOS,  # issue 4: caps, NNP, seccomp, rlimits, oom, sched, ioprio, personality, keyring, LSM
    *filesystem.SCENARIOS, *cgroups.SCENARIOS,  # issue 5: the container's filesystem; issue 8: cgroups
    *exec_hooks.SCENARIOS,  # issue 6: exec, console socket, hooks
]


def by_name() -> dict[str, Scenario]:
    names = [s.name for s in SCENARIOS]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"duplicate scenario names: {sorted(dupes)}")
    return {s.name: s for s in SCENARIOS}
