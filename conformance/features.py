"""Scenarios for process confinement (issue 4), the container filesystem (issue 5), hooks (issue 6) and cgroups
(issue 8). Feature issues extend these lists; the base config already carries runc-spec caps, NNP, masked and
readonly paths."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance import observe
from conformance.checks import both, eq, every_line, mount_has, ns_is
from conformance.core import Facts, Run, RunError, Scenario, drive_probe

CAPS_BASE = "0000000020000420"  # CAP_KILL(5) | CAP_NET_BIND_SERVICE(10) | CAP_AUDIT_WRITE(29)
CHOWN_PROBE = "echo @@chown; touch /dev/shm/c && chown 1:1 /dev/shm/c 2>/dev/null && echo ok || echo fail\n"


def _caps_check(want: str) -> Any:
    return both(*(eq(f"host.running.status.{k}", want) for k in ("CapBnd", "CapPrm", "CapEff")),
                eq("host.running.status.CapInh", "0000000000000000"))


def _device(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["devices"] = [{"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3,
                                "fileMode": 0o640, "uid": 0, "gid": 5}]


def _deny_all(cfg: dict[str, Any], run: Run) -> None:
    cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}


def _dev_line(path: str, prefix: str) -> Any:
    def check(f: Facts) -> list[str]:
        for line in f.get("in.dev", "").splitlines():
            if line.startswith(path + " "):
                rest = line[len(path) + 1:]
                return [] if rest.startswith(prefix) else [f"{path}: expected {prefix!r}, got {rest!r}"]
        return [f"{path}: missing from /dev"]
    return check


def _cgroup_mount(cfg: dict[str, Any], run: Run) -> None:
    if any(m["destination"] == "/sys/fs/cgroup" for m in cfg["mounts"]):
        return  # BASE has it, as `runc spec` does
    cfg["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})


def _v1_hierarchies() -> list[str]:
    """Mount-point names of the host's cgroup v1 hierarchies (cpu, memory, ..., systemd)."""
    names = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        sep = parts.index("-")
        if parts[sep + 1] == "cgroup" and parts[4].startswith("/sys/fs/cgroup/"):
            names.append(parts[4].rsplit("/", 1)[1])
    return names


def _cgroup_mount_check(f: Facts) -> list[str]:
    out = mount_has("/sys/fs/cgroup", opts=("ro",))(f)
    rows = observe.mount_rows(f, "host.running.mounts")
    for name in _v1_hierarchies():
        row = rows.get(f"/sys/fs/cgroup/{name}")
        if row is None or row.fstype != "cgroup":
            out.append(f"/sys/fs/cgroup/{name}: no cgroup mount (the host has that v1 hierarchy)")
        elif row.root != "<cgroup>":
            out.append(f"/sys/fs/cgroup/{name}: shows {row.root!r}, not the container's own cgroup")
    return out


# ---- mount destinations that try to leave the rootfs (security.md class 4, scenarios A8/A9) -----------------
def _canary(run: Run) -> Path:
    canary = run.ws.path / f"canary-{run.runtime.name}-{run.tag}"
    if not canary.exists():
        canary.mkdir()
        (canary / "keep").write_text("canary\n")
    return canary


def _dotdot_mount(cfg: dict[str, Any], run: Run) -> None:
    cfg["mounts"].append({"destination": "/../../../../.." + str(_canary(run) / "x"), "type": "tmpfs",
                          "source": "tmpfs", "options": ["size=1m"]})


def _symlink_mount(cfg: dict[str, Any], run: Run) -> None:
    _canary(run)
    cfg["mounts"].append({"destination": "/mnt/link/x", "type": "tmpfs", "source": "tmpfs",
                          "options": ["size=1m"]})


def _plant_symlink(bundle: Path, run: Run) -> None:
    """The hostile image: /mnt/link in the rootfs points at the host canary dir by absolute path."""
    (bundle / "rootfs" / "mnt").mkdir(exist_ok=True)
    (bundle / "rootfs" / "mnt" / "link").symlink_to(_canary(run))


def _escape_drive(run: Run) -> Facts:
    """The probe driver, but a refused create is an acceptable outcome here."""
    try:
        facts = drive_probe(run)
        facts["create"] = "accepted"
    except RunError as exc:
        if "create failed" not in str(exc):
            raise
        facts = {"create": "refused"}
    canary = _canary(run)
    facts["canary.listing"] = " ".join(sorted(p.name for p in canary.iterdir()))
    # Where the mount must land when accepted: the canary's path taken *inside* the rootfs.
    facts["expected-point"] = run.norm(str(canary / "x"))
    return facts


def _escape_check(f: Facts) -> list[str]:
    out = []
    if f.get("canary.listing") != "keep":
        out.append(f"the host canary dir changed: {f.get('canary.listing')!r} (the mount left the rootfs)")
    if f.get("create") == "accepted":
        rows = observe.mount_rows(f, "host.running.mounts")
        row = rows.get(f.get("expected-point", ""))
        if row is None or row.fstype != "tmpfs":
            out.append(f"no tmpfs at {f.get('expected-point')} inside the container")
    return out


# ---- hooks ------------------------------------------------------------------------------------------------
HOOKS = ("prestart", "createRuntime", "poststart", "poststop")  # the ones that run in the runtime namespace


def _hooks(cfg: dict[str, Any], run: Run) -> None:
    log = run.ws.path / f"hooks-{run.runtime.name}-{run.tag}"
    run.values["hooks_log"] = log
    cfg["hooks"] = {name: [{"path": "/bin/sh", "args": [
        "sh", "-c", f'printf "%s " {name} >> {log}; cat >> {log}; echo >> {log}']}] for name in HOOKS}


def _hooks_after(run: Run) -> Facts:
    log: Path = run.values["hooks_log"]
    lines = log.read_text().splitlines() if log.exists() else []
    order, statuses, ids = [], [], []
    for line in lines:
        name, _, payload = line.partition(" ")
        order.append(name)
        try:
            state = json.loads(payload)
        except json.JSONDecodeError:
            state = {}
        statuses.append(f"{name}={state.get('status')}")
        ids.append(state.get("id") == run.containers[0].cid if run.containers else False)
    return {"hooks.order": " ".join(order), "hooks.status": " ".join(statuses),
            "hooks.state-ids-match": str(bool(ids) and all(ids))}


SCENARIOS: list[Scenario] = [
    # ---- issue 4: process confinement (the full set lives in tests/integration/confine_scenarios.py: caps.*,
    # nnp.*, seccomp.*, oomScoreAdj, scheduler, ioPriority, ...; `*confine_scenarios.SCENARIOS` merges it here)
    Scenario(
        "caps.default", "config.md#linux-process: capabilities (runc-spec sets: AUDIT_WRITE, KILL, NET_BIND)",
        both(_caps_check(CAPS_BASE), eq("in.chown", "fail")),
        probe=CHOWN_PROBE, facts=("host.running.status.Cap", "in.chown"), fast=True),
    # ---- issue 5: the container's filesystem
    Scenario(
        "maskedPaths", "config-linux.md#masked-paths: files read empty (null device), dirs are empty",
        both(eq("in.size:/proc/keys", "0"), eq("in.stat:/proc/timer_list", "character special file 1:3"),
             eq("in.count:/sys/firmware", "0"), eq("in.write:/sys/firmware/x", "fail")),
        probe=("echo @@size:/proc/keys; cat /proc/keys | wc -c\n"
               "echo @@stat:/proc/timer_list; stat -c '%F %t:%T' /proc/timer_list\n"
               "echo @@count:/sys/firmware; ls -A /sys/firmware | wc -l\n"
               + observe.write_check("/sys/firmware/x")),
        facts=("in.size", "in.stat", "in.count", "in.write"), fast=True),
    Scenario(
        "readonlyPaths", "config-linux.md#readonly-paths: remounted read-only",
        both(mount_has("/proc/sys", opts=("ro",)), mount_has("/proc/bus", opts=("ro",)),
             eq("in.write:/proc/sys/kernel/hostname", "fail")),
        probe=observe.write_check("/proc/sys/kernel/hostname"),
        facts=("in.write", "host.running.mounts")),
    Scenario(
        "sysctl", "config-linux.md#sysctl: namespaced sysctls are set in the container",
        both(eq("in.sysctl:net.ipv4.ip_forward", "1"), eq("in.sysctl:kernel.shm_rmid_forced", "1")),
        edit=lambda c, r: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}),
        probe=("echo @@sysctl:net.ipv4.ip_forward; cat /proc/sys/net/ipv4/ip_forward\n"
               "echo @@sysctl:kernel.shm_rmid_forced; cat /proc/sys/kernel/shm_rmid_forced\n"),
        facts=("in.sysctl",)),
    Scenario(
        "devices.custom", "config-linux.md#devices: linux.devices node with type, major:minor, mode, owner",
        _dev_line("/dev/conf-null", "character special file 640 0:5 1:3"),
        edit=_device, facts=("in.dev",)),
    Scenario(
        "namespace.cgroup.new", "config-linux.md#namespaces: a new cgroup namespace roots /proc/self/cgroup",
        both(ns_is("cgroup", "new"), every_line("in.cgroup", lambda ln: ln.endswith(":/"), "not at its root")),
        edit=lambda c, r: c["linux"]["namespaces"].append({"type": "cgroup"}),
        probe="echo @@cgroup; cat /proc/self/cgroup\n", facts=("host.running.ns.cgroup", "in.cgroup")),
    Scenario(
        "mount.dest.dotdot", "config.md#mounts + security.md A9: '..' in a destination stays inside the rootfs",
        _escape_check, edit=_dotdot_mount, drive=_escape_drive,
        facts=("create", "canary.", "host.running.mounts")),
    Scenario(
        "mount.dest.symlink", "security.md A8: a rootfs symlink in a destination resolves inside the rootfs",
        _escape_check, edit=_symlink_mount, prepare=_plant_symlink, drive=_escape_drive,
        facts=("create", "canary.", "host.running.mounts")),
    # ---- issue 6: hooks (the runtime-namespace ones; order and the state on stdin)
    Scenario(
        "hooks.order", "config.md#posix-platform-hooks: prestart, createRuntime, poststart, poststop in order",
        both(eq("hooks.order", "prestart createRuntime poststart poststop"), eq("hooks.state-ids-match", "True")),
        edit=_hooks, after=_hooks_after, facts=("hooks.",)),
    # ---- issue 8: cgroups
    Scenario(
        "cgroup.path", "config-linux.md#cgroups-path: the process is in cgroupsPath in every hierarchy",
        every_line("host.running.cgroup", lambda ln: ln.endswith(":<cgroup>"), "not in cgroupsPath"),
        facts=("host.running.cgroup",)),
    Scenario(
        "devices.cgroup-deny-all", "config-linux.md#default-devices stay usable under runc-spec's deny-all rule",
        both(eq("in.write:/dev/null", "ok"), eq("in.read:/dev/zero", "1"), eq("in.read:/dev/urandom", "1")),
        edit=_deny_all,
        probe=(observe.write_check("/dev/null")
               + "echo @@read:/dev/zero; head -c 1 /dev/zero | wc -c\n"
               + "echo @@read:/dev/urandom; head -c 1 /dev/urandom | wc -c\n"),
        facts=("in.write", "in.read")),
    Scenario(
        "mount.cgroup", "config.md#mounts type cgroup (runc/crun: each v1 hierarchy, the container's own cgroup)",
        _cgroup_mount_check, edit=_cgroup_mount, facts=("host.running.mounts",)),
]
