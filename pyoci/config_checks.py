"""Semantic checks on a schema-valid config.json: the spec's "MUST error" rules a JSON Schema cannot express.

Pure functions over the parsed dict. Each check raises Invalid(json_path, why); pyoci.config adds the source.
"""
from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

# getrlimit(2) resources (the kernel's RLIMIT_NLIMITS = 16).
RLIMITS = frozenset({
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS", "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
})
HOOK_PHASES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# SemVer 2.0.0 (semver.org's regex, named groups trimmed).
# Patterns stay strings: re compiles (and caches) them on first use, keeping this module cheap to import.
_SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_CPU_LIST = r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$"
_SYSCTL = r"^[A-Za-z0-9_-]+([./][A-Za-z0-9_@:+-]+)*$"
_ERRNO_ACTIONS = {"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"}
_IDMAP_OPTIONS = {"idmap", "ridmap"}
_MAX_ID_EXTENTS = 340  # kernel UID_GID_MAP_MAX_EXTENTS
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
_HOST_NAME_MAX = 64


class Invalid(Exception):
    """A check failed at `path` (a JSON path like mounts[2].destination)."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__(path, msg)
        self.path, self.msg = path, msg


def fail(path: str, msg: str) -> NoReturn:
    raise Invalid(path, msg)


def fmt_path(parts: Iterable[str | int], base: str = "") -> str:
    """['mounts', 2, 'destination'] → 'mounts[2].destination'; odd keys → linux.sysctl["net.ipv4.x"]."""
    out = base
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.match(_IDENT, p):
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(p)}]"
    return out


def get(d: Any, *keys: str, default: Any = None) -> Any:
    """d[k1][k2]... or default when a level is missing."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def namespaces(cfg: dict[str, Any]) -> dict[str, str | None]:
    """type → path (None: a new namespace). An empty path means new, as in runc."""
    return {ns["type"]: (ns.get("path") or None) for ns in get(cfg, "linux", "namespaces", default=[])}


def sysctl_dots(key: str) -> str:
    # sysctl.d(5): a key whose first separator is '/' uses '/' between parts and '.' inside them.
    i = min((j for j in (key.find("."), key.find("/")) if j >= 0), default=-1)
    if i < 0 or key[i] == ".":
        return key
    return key.translate(str.maketrans("./", "/."))


def _cpu_list(value: str, path: str) -> None:
    if value.strip() == "":
        return
    if not re.match(_CPU_LIST, value):
        fail(path, f"{value!r} is not a CPU list like '0-3,6'")
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(lo) > int(hi):
            fail(path, f"{value!r}: range {part.strip()!r} is reversed")


def _check_nul(doc: Any, at: str) -> None:
    # A NUL can't reach a path, argv or environ (Python raises ValueError deep in exec/open): say where it is.
    stack: list[tuple[Any, str]] = [(doc, at)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if "\0" in node:
                fail(path, "contains a NUL character")
        elif isinstance(node, dict):
            stack.extend((v, fmt_path([k], path)) for k, v in node.items())
            for k in node:
                if "\0" in k:
                    fail(path, f"key {k!r} contains a NUL character")
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))


# --------------------------------------------------------------------------- process checks

ProcessCheck = Callable[[dict[str, Any], str], None]


def _p(at: str, *parts: str | int) -> str:
    return fmt_path(parts, at)


def _check_args_cwd(proc: dict[str, Any], at: str) -> None:
    # config.md#process: args needs ≥1 entry (non-Windows); cwd MUST be absolute.
    args = proc.get("args")
    if not args:
        fail(_p(at, "args"), "must have at least one entry (the program to run)")
    if args[0] == "":
        fail(_p(at, "args", 0), "the program name must not be empty")
    if not proc["cwd"].startswith("/"):
        fail(_p(at, "cwd"), f"{proc['cwd']!r} is not an absolute path")


def _check_env(proc: dict[str, Any], at: str) -> None:
    for i, kv in enumerate(proc.get("env", [])):
        name, eq, _ = kv.partition("=")
        if not eq or not name:
            fail(_p(at, "env", i), f"{kv!r} is not NAME=value")


def _check_rlimits(proc: dict[str, Any], at: str) -> None:
    # config.md#posix-process: unmappable type and duplicated type MUST error.
    seen: dict[str, int] = {}
    for i, rl in enumerate(proc.get("rlimits", [])):
        t = rl["type"]
        if t not in RLIMITS:
            fail(_p(at, "rlimits", i, "type"), f"{t!r} is not a Linux resource limit")
        if t in seen:
            fail(_p(at, "rlimits", i, "type"), f"duplicate {t} (also rlimits[{seen[t]}])")
        seen[t] = i
        if rl["soft"] > rl["hard"]:
            fail(_p(at, "rlimits", i), f"soft {rl['soft']} is greater than hard {rl['hard']}")


def _check_scheduler(proc: dict[str, Any], at: str) -> None:
    # sched_setattr(2) rules, as runc/youki validate them before starting anything.
    s = proc.get("scheduler")
    if not s:
        return
    policy = s["policy"]
    if not -20 <= s.get("nice", 0) <= 19:
        fail(_p(at, "scheduler", "nice"), f"{s['nice']} is outside -20..19")
    if s.get("priority", 0) != 0 and policy not in ("SCHED_FIFO", "SCHED_RR"):
        fail(_p(at, "scheduler", "priority"), f"only SCHED_FIFO and SCHED_RR take a priority, not {policy}")
    if policy != "SCHED_DEADLINE":
        for k in ("runtime", "deadline", "period"):
            if s.get(k, 0) != 0:
                fail(_p(at, "scheduler", k), f"only SCHED_DEADLINE takes runtime/deadline/period, not {policy}")


def _check_misc_process(proc: dict[str, Any], at: str) -> None:
    io = proc.get("ioPriority")
    if io and not 0 <= io["priority"] <= 7:
        fail(_p(at, "ioPriority", "priority"), f"{io['priority']} is outside 0..7")
    oom = proc.get("oomScoreAdj")
    if oom is not None and not -1000 <= oom <= 1000:
        fail(_p(at, "oomScoreAdj"), f"{oom} is outside -1000..1000")
    for k, v in (proc.get("execCPUAffinity") or {}).items():
        if k in ("initial", "final"):
            _cpu_list(v, _p(at, "execCPUAffinity", k))


def _check_process_nul(proc: dict[str, Any], at: str) -> None:
    _check_nul(proc, at)


PROCESS_CHECKS: list[ProcessCheck] = [
    _check_process_nul, _check_args_cwd, _check_env, _check_rlimits, _check_scheduler, _check_misc_process,
]


# --------------------------------------------------------------------------- container checks

Check = Callable[[dict[str, Any]], None]


def _check_oci_version(cfg: dict[str, Any]) -> None:
    v = cfg["ociVersion"]
    m = re.match(_SEMVER, v)
    if not m:
        fail("ociVersion", f"{v!r} is not a SemVer 2.0.0 version")
    if m.group(1) != "1":
        fail("ociVersion", f"{v!r}: unsupported major version (pyoci implements runtime-spec 1.x, up to 1.3.0)")



_STRING_FIELDS = ("root", "mounts", "hostname", "domainname", "hooks")
_LINUX_STRING_FIELDS = ("namespaces", "devices", "netDevices", "cgroupsPath", "resources", "sysctl", "seccomp",
                        "maskedPaths", "readonlyPaths", "mountLabel", "personality")


def _check_strings(cfg: dict[str, Any]) -> None:
    # Known fields only: unknown properties MUST be ignored (config.md#extensibility); process has its own walk.
    _check_nul({k: cfg[k] for k in _STRING_FIELDS if k in cfg}, "")
    linux = cfg.get("linux") or {}
    _check_nul({k: linux[k] for k in _LINUX_STRING_FIELDS if k in linux}, "linux")


def _check_root(cfg: dict[str, Any]) -> None:
    if cfg["root"]["path"] == "":
        fail("root.path", "must not be empty")


def _check_process(cfg: dict[str, Any]) -> None:
    # The spec only needs process at start; runc (and so pyoci) rejects a config without it at create.
    proc = cfg.get("process")
    if proc is None:
        fail("process", "missing: pyoci, like runc, needs the container process at create")
    for check in PROCESS_CHECKS:
        check(proc, "process")


def _check_namespaces(cfg: dict[str, Any]) -> None:
    # config-linux.md#namespaces: duplicated type MUST error; path MUST be absolute in the runtime mount ns.
    seen: dict[str, int] = {}
    for i, ns in enumerate(get(cfg, "linux", "namespaces", default=[])):
        t = ns["type"]
        if t in seen:
            fail(f"linux.namespaces[{i}].type", f"duplicate namespace type {t!r} (also namespaces[{seen[t]}])")
        seen[t] = i
        path = ns.get("path")
        if path and not path.startswith("/"):
            fail(f"linux.namespaces[{i}].path", f"{path!r} is not an absolute path")


def _check_uts(cfg: dict[str, Any]) -> None:
    ns = namespaces(cfg)
    for field in ("hostname", "domainname"):
        value = cfg.get(field)
        if value and "uts" not in ns:  # runc validator.go uts()
            fail(field, f"unable to set {field} without a private UTS namespace")
        if value and len(value.encode()) > _HOST_NAME_MAX:
            fail(field, f"{value[:20]!r}… is longer than {_HOST_NAME_MAX} bytes")


def _check_mapping_list(maps: list[dict[str, int]], path: str) -> None:
    if len(maps) > _MAX_ID_EXTENTS:
        fail(path, f"{len(maps)} entries; the kernel allows at most {_MAX_ID_EXTENTS}")
    for key in ("containerID", "hostID"):
        spans = sorted((m[key], m[key] + m["size"], i) for i, m in enumerate(maps))
        for (_, end, _), (start, _, j) in itertools.pairwise(spans):
            if start < end:
                fail(f"{path}[{j}].{key}", f"range overlaps another entry of {path.rsplit('.', 1)[-1]}")
    for i, m in enumerate(maps):
        if m["size"] == 0:
            fail(f"{path}[{i}].size", "must be at least 1")


def _check_id_mappings(cfg: dict[str, Any]) -> None:
    linux = cfg.get("linux") or {}
    uid, gid = linux.get("uidMappings") or [], linux.get("gidMappings") or []
    ns = namespaces(cfg)
    if (uid or gid) and "user" not in ns:
        fail("linux.uidMappings" if uid else "linux.gidMappings",
             "mappings given without a user namespace in linux.namespaces")
    if bool(uid) != bool(gid):
        fail("linux.gidMappings" if uid else "linux.uidMappings", "uidMappings and gidMappings must be given together")
    if "user" in ns and ns["user"] is None and not uid:
        # runc: "User namespaces enabled, but no uid mappings found" — an unmapped init would run as nobody.
        fail("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    _check_mapping_list(uid, "linux.uidMappings")
    _check_mapping_list(gid, "linux.gidMappings")


def _check_time_offsets(cfg: dict[str, Any]) -> None:
    if get(cfg, "linux", "timeOffsets") is None:
        return
    ns = namespaces(cfg)
    if "time" not in ns:
        fail("linux.timeOffsets", "offsets given without a time namespace in linux.namespaces")
    if ns["time"] is not None:
        fail("linux.timeOffsets", "cannot set offsets of an existing time namespace (namespace has a path)")


def _check_mounts(cfg: dict[str, Any]) -> None:
    ns = namespaces(cfg)
    has_userns = "user" in ns
    for i, m in enumerate(cfg.get("mounts", [])):
        at = f"mounts[{i}]"
        # config.md#mounts: relative destinations are deprecated (relative to "/") but allowed.
        if m["destination"] == "":
            fail(f"{at}.destination", "must not be empty")
        uid, gid = "uidMappings" in m, "gidMappings" in m
        if uid != gid:
            fail(f"{at}.{'gidMappings' if uid else 'uidMappings'}",
                 "uidMappings and gidMappings must be given together")
        if uid:
            _check_mapping_list(m["uidMappings"], f"{at}.uidMappings")
            _check_mapping_list(m["gidMappings"], f"{at}.gidMappings")
        idmap = _IDMAP_OPTIONS.intersection(m.get("options", []))
        if idmap and not uid and not has_userns:
            fail(f"{at}.options", f"{min(idmap)!r} without uidMappings/gidMappings needs a user namespace")
    if "mount" not in ns:
        # Without a private mount namespace these would change the host's mount table.
        for field, value in (("mounts", cfg.get("mounts")), ("linux.maskedPaths", get(cfg, "linux", "maskedPaths")),
                             ("linux.readonlyPaths", get(cfg, "linux", "readonlyPaths")),
                             ("root.readonly", cfg["root"].get("readonly"))):
            if value:
                fail(field, "needs a private mount namespace (add {\"type\": \"mount\"} to linux.namespaces)")


def _check_paths(cfg: dict[str, Any]) -> None:
    # config-linux.md: maskedPaths/readonlyPaths MUST be absolute; devices' path is the full path in the container.
    for field in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(get(cfg, "linux", field, default=[])):
            if not p.startswith("/"):
                fail(f"linux.{field}[{i}]", f"{p!r} is not an absolute path")
    for i, d in enumerate(get(cfg, "linux", "devices", default=[])):
        if not d["path"].startswith("/"):
            fail(f"linux.devices[{i}].path", f"{d['path']!r} is not an absolute path")
        if d["type"] != "p":
            for k in ("major", "minor"):
                if k not in d:
                    fail(f"linux.devices[{i}]", f"'{k}' is required for a type {d['type']!r} device")
    for phase in HOOK_PHASES:
        for i, h in enumerate(get(cfg, "hooks", phase, default=[])):
            if not h["path"].startswith("/"):  # config.md#posix-platform-hooks: path MUST be absolute
                fail(f"hooks.{phase}[{i}].path", f"{h['path']!r} is not an absolute path")


def _valid_ifname(name: str) -> bool:
    # net/core/dev.c dev_valid_name()
    return 0 < len(name) < 16 and name not in (".", "..") and not any(c in "/:" or c.isspace() for c in name)


def _check_net_devices(cfg: dict[str, Any]) -> None:
    devs = get(cfg, "linux", "netDevices", default={})
    if not devs:
        return
    if "network" not in namespaces(cfg):
        fail("linux.netDevices", "moving network devices needs a network namespace in linux.namespaces")
    targets: dict[str, str] = {}
    for host, dev in devs.items():
        at = fmt_path(["netDevices", host], "linux")
        if not _valid_ifname(host):
            fail(at, f"{host!r} is not a valid interface name")
        target = dev.get("name") or host
        if not _valid_ifname(target):
            fail(f"{at}.name", f"{target!r} is not a valid interface name")
        if target in targets and "%d" not in target:
            fail(f"{at}.name", f"{target!r} is also the name for {targets[target]!r}")
        targets[target] = host


def _check_sysctl(cfg: dict[str, Any]) -> None:
    # Only namespaced sysctls, and only when that namespace is the container's own (runc validator.go).
    ns = namespaces(cfg)
    for key in get(cfg, "linux", "sysctl", default={}):
        at = fmt_path(["sysctl", key], "linux")
        if not re.match(_SYSCTL, key):  # also keeps '..' and empty parts out of /proc/sys paths
            fail(at, "not a sysctl name like 'net.ipv4.ip_forward'")
        s = sysctl_dots(key)
        if s in _IPC_SYSCTLS or s.startswith("fs.mqueue."):
            if "ipc" not in ns:
                fail(at, "not allowed in the runtime's IPC namespace (add an ipc namespace)")
        elif s.startswith("net."):
            if "network" not in ns:
                fail(at, "not allowed in the runtime's network namespace (add a network namespace)")
        elif s == "kernel.hostname" and "uts" in ns:
            fail(at, "conflicts with the \"hostname\" field; set that instead")
        elif not ((s == "kernel.domainname" and "uts" in ns) or (s.startswith("user.") and "user" in ns)):
            fail(at, "not in a namespace the container owns (the host's value would change)")


def _check_seccomp(cfg: dict[str, Any]) -> None:
    sc = get(cfg, "linux", "seccomp")
    if sc is None:
        return
    at = "linux.seccomp"
    if "listenerMetadata" in sc and not sc.get("listenerPath"):
        fail(f"{at}.listenerMetadata", "MUST NOT be set without listenerPath")
    if "defaultErrnoRet" in sc and sc["defaultAction"] not in _ERRNO_ACTIONS:
        fail(f"{at}.defaultErrnoRet", f"defaultAction {sc['defaultAction']} cannot return an errno")
    if sc["defaultAction"] == "SCMP_ACT_NOTIFY":
        fail(f"{at}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    for i, rule in enumerate(sc.get("syscalls", [])):
        r = f"{at}.syscalls[{i}]"
        if "errnoRet" in rule and rule["action"] not in _ERRNO_ACTIONS:
            fail(f"{r}.errnoRet", f"action {rule['action']} cannot return an errno")
        if rule["action"] == "SCMP_ACT_NOTIFY" and not sc.get("listenerPath"):
            fail(f"{r}.action", "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
        for j, name in enumerate(rule["names"]):
            if not name:
                fail(f"{r}.names[{j}]", "empty syscall name")
        for j, arg in enumerate(rule.get("args", [])):
            if arg["index"] > 5:
                fail(f"{r}.args[{j}].index", f"{arg['index']} is not a syscall argument index (0..5)")


def _check_resources(cfg: dict[str, Any]) -> None:
    res = get(cfg, "linux", "resources")
    if not res:
        return
    at = "linux.resources"
    cpu, mem = res.get("cpu") or {}, res.get("memory") or {}
    # config-linux.md#cpu: quota MUST be ≥ burst (runtime MAY error — pyoci does).
    if "burst" in cpu and cpu.get("quota", 0) > 0 and cpu["burst"] > cpu["quota"]:
        fail(f"{at}.cpu.burst", f"{cpu['burst']} is greater than quota {cpu['quota']}")
    for k in ("cpus", "mems"):
        if k in cpu:
            _cpu_list(cpu[k], f"{at}.cpu.{k}")
    if cpu.get("idle", 0) not in (0, 1):
        fail(f"{at}.cpu.idle", f"{cpu['idle']} is not 0 or 1")
    if mem.get("limit", 0) > 0 and mem.get("swap", 0) > 0 and mem["swap"] < mem["limit"]:
        fail(f"{at}.memory.swap", f"{mem['swap']} (memory+swap) is less than limit {mem['limit']}")
    if mem.get("swappiness", 0) > 100:
        fail(f"{at}.memory.swappiness", f"{mem['swappiness']} is outside 0..100")
    for i, rule in enumerate(res.get("devices", [])):
        if rule.get("type", "a") not in ("a", "b", "c"):
            fail(f"{at}.devices[{i}].type", f"{rule['type']!r} is not 'a', 'b' or 'c'")
        access = rule.get("access", "rwm")
        if not set(access) <= set("rwm"):
            fail(f"{at}.devices[{i}].access", f"{access!r} is not a combination of r, w, m")
    for i, wd in enumerate(get(res, "blockIO", "weightDevice", default=[])):
        if "weight" not in wd and "leafWeight" not in wd:  # config-linux.md#block-io: MUST have one
            fail(f"{at}.blockIO.weightDevice[{i}]", "needs weight or leafWeight")
    for dev, lim in (res.get("rdma") or {}).items():
        if "hcaHandles" not in lim and "hcaObjects" not in lim:  # config-linux.md#rdma: at least one
            fail(fmt_path(["rdma", dev], at), "needs hcaHandles or hcaObjects")


# Order: version first, so an unsupported major is reported before anything it might explain.
CHECKS: list[Check] = [
    _check_oci_version,
    _check_strings,
    _check_root,
    _check_process,
    _check_namespaces,
    _check_uts,
    _check_id_mappings,
    _check_time_offsets,
    _check_mounts,
    _check_paths,
    _check_net_devices,
    _check_sysctl,
    _check_seccomp,
    _check_resources,
]
