"""Observe a container the same way for every runtime: from the host via /proc/<pid>/ and from inside with
busybox (the probe script), and normalise what is seen (pids, ids, temp paths, inode numbers)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
STATUS_KEYS = ("Uid", "Gid", "Groups", "Umask", "NSpid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
               "NoNewPrivs", "Seccomp")

# Sections the probe prints from inside every container ("@@name" starts a section).
PROBE = r"""
echo @@hostname; cat /proc/sys/kernel/hostname
echo @@domainname; cat /proc/sys/kernel/domainname
echo @@id; id
echo @@umask; umask
echo @@pwd; pwd
echo @@pid; echo $$
echo @@ulimit.nofile; echo "$(ulimit -Sn) $(ulimit -Hn)"
echo @@dev; for f in /dev/* /dev/.[!.]*; do [ -e "$f" ] || [ -L "$f" ] && stat -c '%n %F %a %u:%g %t:%T %N' "$f"; done
echo @@mountinfo; cat /proc/self/mountinfo
"""
READY = "@@READY"


def probe_script(extra: str = "") -> str:
    """The probe: standard sections, the scenario's own, then READY and wait for the host to close stdin."""
    return f"{PROBE}{extra}\necho {READY}\nread _ignored\n"


def write_check(path: str) -> str:
    """Probe snippet: section `write:<path>` is `ok` or `fail` (creating a file at path)."""
    return f'echo @@write:{path}; if ( : > {path} ) 2>/dev/null; then echo ok; rm -f {path}; else echo fail; fi\n'


@dataclass
class Normaliser:
    """Replaces run-specific strings (paths, ids, pids) with placeholders so runtimes compare."""

    subs: list[tuple[str, str]] = field(default_factory=list)

    def add(self, text: str, placeholder: str) -> None:
        if text:
            self.subs.append((text, placeholder))
            # Longest first: a bundle path contains the workspace path.
            self.subs.sort(key=lambda s: -len(s[0]))

    def __call__(self, text: str) -> str:
        for old, new in self.subs:
            text = text.replace(old, new)
        return text


def parse_sections(text: str) -> dict[str, str]:
    """Split probe output into {section: body}; lines before the first marker go to section ''."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items() if k or v}


_PROP = re.compile(r"^(shared|master|propagate_from):\d+$")


def normalise_mountinfo(text: str, norm: Normaliser) -> list[str]:
    """mountinfo lines → 'mountpoint fstype source root opts super-opts propagation', sorted by mountpoint.

    Mount ids, parent ids, device numbers and peer-group numbers differ run to run and are dropped."""
    rows: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split()
        if " - " not in line or len(parts) < 10:
            continue
        sep = parts.index("-")
        root, point, opts = parts[3], parts[4], parts[5]
        optional = parts[6:sep]
        fstype, source, sopts = parts[sep + 1], parts[sep + 2], parts[sep + 3] if len(parts) > sep + 3 else ""
        prop = sorted({_PROP.sub(r"\1", o) for o in optional if not o.startswith("propagate_from")}) or ["private"]
        # Fields stay octal-escaped as the kernel prints them (`\040` for a space): rows split on spaces.
        rows.append((point, " ".join([norm(point), fstype, norm(source), norm(root), opts, norm(sopts),
                                      ",".join(prop)])))
    rows.sort(key=lambda r: r[0])  # stable: stacked mounts keep their order
    return [r[1] for r in rows]


@dataclass(frozen=True, slots=True)
class MountRow:
    point: str
    fstype: str
    source: str
    root: str
    opts: frozenset[str]
    super_opts: frozenset[str]
    propagation: frozenset[str]

    @classmethod
    def parse(cls, row: str) -> MountRow:
        point, fstype, source, root, opts, sopts, prop = row.split(" ")
        return cls(point, fstype, source, root, frozenset(opts.split(",")), frozenset(sopts.split(",")),
                   frozenset(prop.split(",")))


def host_facts(pid: int, stage: str, norm: Normaliser, joined: dict[str, str]) -> dict[str, str]:
    """Facts about a container process seen from the host through /proc/<pid>/ (`host.<stage>.*`)."""
    facts: dict[str, str] = {}
    p = Path(f"/proc/{pid}")
    pre = f"host.{stage}."
    for ns in NS_TYPES:
        facts[pre + "ns." + ns] = _ns_relation(p, ns, joined)
    for name in ("uid_map", "gid_map"):
        facts[pre + name] = " | ".join(" ".join(ln.split()) for ln in _read(p / name).splitlines())
    facts[pre + "setgroups"] = _read(p / "setgroups").strip()
    facts[pre + "root"] = norm(_readlink(p / "root"))
    facts[pre + "cgroup"] = norm(_read(p / "cgroup").strip())
    facts[pre + "mounts"] = "\n".join(normalise_mountinfo(_read(p / "mountinfo"), norm))
    if stage == "created":
        # Between create and start the process is still the runtime's init; the spec lets a runtime apply the
        # process's own properties (ids, limits, ...) at create or at start, so only the environment counts.
        return facts
    status = dict(_kv(_read(p / "status")))
    for key in STATUS_KEYS:
        facts[pre + "status." + key] = " ".join(status.get(key, "<absent>").split())
    facts[pre + "status.NSpid"] = facts[pre + "status.NSpid"].replace(str(pid), "<pid>", 1)
    for line in _read(p / "limits").splitlines()[1:]:
        cols = re.split(r"\s{2,}", line.strip())
        if len(cols) >= 3:
            facts[pre + "limits." + cols[0]] = f"{cols[1]} {cols[2]}"
    facts[pre + "oom_score_adj"] = _read(p / "oom_score_adj").strip()
    facts[pre + "timens_offsets"] = " | ".join(" ".join(ln.split()) for ln in _read(p / "timens_offsets").splitlines())
    facts[pre + "cwd"] = norm(_readlink(p / "cwd"))
    facts[pre + "environ"] = "\n".join(norm(e) for e in _read(p / "environ").split("\0") if e)
    return facts


def inside_facts(stdout: str, norm: Normaliser) -> dict[str, str]:
    """Facts the probe printed from inside the container (`in.*`)."""
    sections = parse_sections(stdout)
    facts: dict[str, str] = {}
    for name, body in sections.items():
        if name == "READY":
            continue
        if name == "mountinfo":
            facts["in.mounts"] = "\n".join(normalise_mountinfo(body, norm))
        elif name == "":
            facts["in.preamble"] = norm(body)
        else:
            facts["in." + name] = norm(body)
    return facts


def mount_rows(facts: dict[str, str], key: str) -> dict[str, MountRow]:
    """Mount table fact → {mountpoint: top-most mount there}."""
    rows: dict[str, MountRow] = {}
    for line in facts.get(key, "").splitlines():
        row = MountRow.parse(line)
        rows[row.point] = row
    return rows


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), to recognise our own process later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def ns_link(path: str | Path) -> str:
    return _readlink(Path(path))


def _ns_relation(p: Path, ns: str, joined: dict[str, str]) -> str:
    mine = _readlink(p / "ns" / ns)
    if not mine:
        return "<absent>"
    if joined.get(ns) == mine:
        return "joined"
    return "host" if mine == _readlink(Path("/proc/self/ns") / ns) else "new"


def _kv(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out.append((k.strip(), v.strip()))
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"<error {exc.errno}>"


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
