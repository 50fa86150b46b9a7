"""Foreground `run`/`exec` with process.terminal and no --console-socket (runc tty.go).

pyoci is then its own console-socket caller: it keeps one end of a socketpair, receives the pty master the
container side allocated, puts its own terminal in raw mode (output post-processing kept, ONLCR cleared on
the pty, as runc does), relays bytes both ways in a poll loop (no threads: the runtime must stay
single-threaded), follows window-size changes (SIGWINCH), and restores its terminal when the process exits.
Other signals are forwarded to the process by lifecycle._SignalRelay.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import socket
import termios
from typing import Any

from pyoci import console
from pyoci.linux import libc

_IDLE_DRAIN_MS = 100   # after the process exited: stop once the pty has been quiet this long


class ConsolePair:
    """A connected socketpair: runtime_end goes to create/exec as the console socket, we receive on ours."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ours: socket.socket | None = ours
        self.runtime_end = theirs.detach()

    def receive(self) -> int | None:
        """The master (sent before create/exec returned), or None when the process has no terminal."""
        self._close_runtime_end()
        assert self.ours is not None
        got = console.recv_master(self.ours, block=False)
        return got[0] if got else None

    def _close_runtime_end(self) -> None:
        if self.runtime_end >= 0:
            os.close(self.runtime_end)
            self.runtime_end = -1

    def close(self) -> None:
        self._close_runtime_end()
        if self.ours is not None:
            self.ours.close()
            self.ours = None


def host_terminal() -> int | None:
    """Our terminal: the first of stdin, stdout, stderr that is one."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return fd
        except OSError:
            continue
    return None


def raw_mode(mode: list[Any]) -> list[Any]:
    """cfmakeraw(3), but output post-processing stays on (containerd/console SetRaw): the pty's ONLCR is
    cleared instead, so a "\\n" from the container becomes exactly one "\\r\\n" on our terminal."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = mode
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR | termios.IGNCR
               | termios.ICRNL | termios.IXON)
    oflag |= termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc = list(cc)
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


def _clear_onlcr(master: int) -> None:
    try:
        mode = termios.tcgetattr(master)
        mode[1] &= ~termios.ONLCR
        termios.tcsetattr(master, termios.TCSANOW, mode)
    except termios.error:
        pass


def _resize(host: int | None, master: int) -> None:
    size = console.get_size(host) if host is not None else None
    if size and all(size):
        try:
            console.set_size(master, *size)
        except OSError:
            pass  # the process may be gone already


def adopt(master: int) -> None:
    """Before the program runs (between create and start): the pty takes our terminal's size, whatever
    consoleSize said (runc resizes too, but only after start: a race we avoid), and ONLCR goes off."""
    _clear_onlcr(master)
    _resize(host_terminal(), master)


def host_size() -> tuple[int, int] | None:
    """Our terminal's (rows, cols): `exec -t` in the foreground asks for it as consoleSize."""
    host = host_terminal()
    size = console.get_size(host) if host is not None else None
    return size if size and all(size) else None


def relay(master: int, pid: int, *, stdin: int = 0, stdout: int = 1) -> int:
    """Relay until `pid` (our child) exits; return its exit status (128+signal). Closes master."""
    host = host_terminal()
    saved = None
    if host is not None:
        saved = termios.tcgetattr(host)
        termios.tcsetattr(host, termios.TCSANOW, raw_mode(saved))
    _clear_onlcr(master)
    old_winch = signal.signal(signal.SIGWINCH, lambda _s, _f: _resize(host, master))
    try:
        _resize(host, master)  # it may have changed meanwhile
        return _Loop(master, pid, stdin, stdout).run()
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            try:
                termios.tcsetattr(host, termios.TCSADRAIN, saved)
            except termios.error:
                pass
        os.close(master)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class _Loop:
    def __init__(self, master: int, pid: int, stdin: int, stdout: int) -> None:
        self.master, self.pid, self.stdin, self.stdout = master, pid, stdin, stdout
        self.pending = b""          # keystrokes not yet accepted by the pty
        self.poller = select.poll()
        os.set_blocking(master, False)
        self.poller.register(master, select.POLLIN)
        self.master_open = True
        self.pidfd = libc.pidfd_open(pid)
        self.poller.register(self.pidfd, select.POLLIN)
        self.stdin_open = True
        try:
            os.fstat(stdin)
            self.poller.register(stdin, select.POLLIN)
        except OSError:
            self.stdin_open = False

    def run(self) -> int:
        try:
            while True:
                for fd, ev in self.poller.poll():
                    if fd == self.pidfd:
                        _pid, status = os.waitpid(self.pid, 0)
                        self._drain()
                        return exit_code(status)
                    if fd == self.master:
                        self._on_master(ev)
                    elif fd == self.stdin:
                        self._on_stdin()
        finally:
            os.close(self.pidfd)

    def _on_master(self, ev: int) -> None:
        if ev & select.POLLOUT:
            self._flush()
        if ev & (select.POLLIN | select.POLLHUP | select.POLLERR) and not self._copy_out():
            self.poller.unregister(self.master)  # every peer closed; wait for the process itself
            self.master_open = False

    def _copy_out(self) -> bool:
        """Copy what the pty has to stdout; False at EOF/EIO (no peer left)."""
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        _write_all(self.stdout, data)
        return True

    def _on_stdin(self) -> None:
        try:
            data = os.read(self.stdin, 65536)
        except BlockingIOError:
            return
        if not data:  # EOF: stop reading; the pty has no half-close (runc does the same)
            self.poller.unregister(self.stdin)
            self.stdin_open = False
            return
        self.pending += data
        self._flush()

    def _flush(self) -> None:
        if not self.master_open:
            self.pending = b""
            return
        try:
            while self.pending:
                n = os.write(self.master, self.pending)
                self.pending = self.pending[n:]
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self.pending = b""
        self.poller.modify(self.master, select.POLLIN | (select.POLLOUT if self.pending else 0))

    def _drain(self) -> None:
        """The process exited: copy what is left in the pty until EIO or it has been quiet for a while."""
        if not self.master_open:
            return
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        while poller.poll(_IDLE_DRAIN_MS):
            if not self._copy_out():
                return


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return
        data = data[n:]
