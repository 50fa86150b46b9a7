"""`ps` table output like `ps -ef` (UID PID PPID C STIME TTY TIME CMD), built from /proc without running ps.

format_table() is pure; read_procs() gathers the facts (through pyoci.linux.pids for /proc/<pid>/stat).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    uid: int
    tty_nr: int
    start_ticks: int     # since boot
    cpu_ticks: int       # utime + stime
    cmd: str


def _tty(nr: int) -> str:
    if nr == 0:
        return "?"
    major, minor = (nr >> 8) & 0xFFF, (nr & 0xFF) | ((nr >> 12) & 0xFFF00)
    if major == 136:
        return f"pts/{minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    return "?"


def _cputime(ticks: int) -> str:
    s = ticks // CLK_TCK
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}-{text}" if days else text


def format_table(procs: list[ProcInfo], users: dict[int, str], boot_time: float, now: float) -> str:
    """ps -ef's columns; STIME is HH:MM for today, MonDD before, like procps."""
    rows = [["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]]
    for p in procs:
        started = boot_time + p.start_ticks / CLK_TCK
        elapsed = max(now - started, 1e-9)
        c = min(99, int(100 * (p.cpu_ticks / CLK_TCK) / elapsed))
        lt = time.localtime(started)
        stime = time.strftime("%H:%M", lt) if time.localtime(now)[:3] == lt[:3] else time.strftime("%b%d", lt)
        rows.append([users.get(p.uid, str(p.uid)), str(p.pid), str(p.ppid), str(c), stime, _tty(p.tty_nr),
                     _cputime(p.cpu_ticks), p.cmd])
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    out = []
    for r in rows:
        cells = [r[0].ljust(max(widths[0], 8))] + [r[i].rjust(widths[i]) for i in (1, 2, 3)] + \
                [r[4].ljust(max(widths[4], 5)), r[5].ljust(max(widths[5], 8)), r[6].rjust(widths[6]), r[7]]
        out.append(" ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def read_procs(pids: list[int]) -> list[ProcInfo]:
    from pyoci.linux.pids import stat_fields
    out = []
    for pid in pids:
        f = stat_fields(pid)
        if not f:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
                uid = next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
                comm = fh.read().strip()
        except (OSError, StopIteration):
            continue
        # stat fields after comm: [0]=state [1]=ppid ... [4]=tty_nr [11]=utime [12]=stime [19]=starttime
        out.append(ProcInfo(pid, int(f[1]), uid, int(f[4]), int(f[19]), int(f[11]) + int(f[12]),
                            " ".join(argv) if argv else f"[{comm}]"))
    return out


def users() -> dict[int, str]:
    """uid → name from /etc/passwd (read as data, no NSS)."""
    out: dict[int, str] = {}
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2].isdigit():
                    out.setdefault(int(parts[2]), parts[0])
    except OSError:
        pass
    return out


def boot_time() -> float:
    with open("/proc/stat", encoding="utf-8") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0
