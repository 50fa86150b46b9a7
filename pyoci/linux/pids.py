"""Process facts from /proc and signalling that is safe against pid reuse (pidfd + start time)."""
from __future__ import annotations

import errno
import os
import signal

from pyoci.errors import SyscallError
from pyoci.linux import libc


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the comm field (index 0 = field 3 'state'); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2:].split()


def start_time(pid: int) -> int:
    """Field 22 (starttime, clock ticks since boot); 0 when the process does not exist."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else 0


def alive(pid: int, expected_start: int) -> bool:
    """True when pid exists, is not a zombie and has the recorded start time."""
    if pid <= 0:
        return False
    fields = stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return expected_start == 0 or int(fields[19]) == expected_start


def signal_pid(pid: int, expected_start: int, sig: int) -> bool:
    """Send sig through a pidfd after checking the start time; False when the process is gone."""
    try:
        pidfd = libc.pidfd_open(pid)
    except SyscallError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    try:
        # The pidfd pins the process: once it is open, checking the start time rules out pid reuse.
        if expected_start and start_time(pid) != expected_start:
            return False
        try:
            libc.pidfd_send_signal(pidfd, sig)
        except SyscallError as exc:
            if exc.errno == errno.ESRCH:
                return False
            raise
        return True
    finally:
        os.close(pidfd)


def parse_signal(text: str) -> int:
    """'9', 'KILL', 'SIGKILL', 'sigkill' → 9 (runc kill.go parseSignal)."""
    t = text.strip()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
        raise ValueError(f"invalid signal {text!r}")
    name = t.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise ValueError(f"unknown signal {text!r}") from None


def listen_fds() -> int:
    """LISTEN_FDS, honoured only when LISTEN_PID is our own pid (sd_listen_fds semantics)."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) == os.getpid():
            return max(0, int(os.environ.get("LISTEN_FDS", "0")))
    except ValueError:
        pass
    return 0


def restore_default_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across execve: undo that
    before exec'ing anything that is not pyoci (the container's program, hooks)."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
