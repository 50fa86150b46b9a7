"""JSON messages over a SOCK_SEQPACKET socketpair between the runtime (parent) and the container side.

One datagram = one JSON object, so framing and lengths are the kernel's job (no length prefix to overflow,
security.md class 12). Protocol, in order (C1 = intermediate child, C2 = container init):

| sender | message                         | reply                     | what happens                             |
|--------|---------------------------------|---------------------------|------------------------------------------|
| parent | {"type":"go"}                   | –                         | C1 is in the cgroup: join/unshare now     |
| C1     | {"type":"idmap"}                | {"type":"ok"} / error     | parent writes uid_map, setgroups, gid_map |
| C1     | {"type":"pid","pid":N}          | {"type":"hostpid","pid"}  | C1 forked C2 and exits; reply goes to C2  |
| C2     | {"type":"log","level","msg"}    | –                         | parent re-emits the line                  |
| C2     | {"type":"create-runtime"}       | {"type":"ok"} / error     | prestart + createRuntime hooks, netDevices |
| C2     | {"type":"ready"}                | –                         | parent writes state + pid file, returns   |
| C1/C2  | {"type":"error","msg","hook"}   | –                         | create fails; parent cleans up (and runs  |
|        |                                 |                           | poststop when "hook": createContainer)    |
After "ready" the socket is closed; C2 reports to `start` through exec.fifo instead (lifecycle.start):
"0" = released, then EOF = execve done, or "H<msg>"/"E<msg>" = a startContainer hook / anything else failed.
`exec` uses the same protocol shape with its own messages (table in pyoci/tenant.py).
"""
from __future__ import annotations

import json
import logging
import socket
from typing import Any

from pyoci.errors import ChildError

MAX = 1 << 16


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, **msg: Any) -> None:
    sock.send(json.dumps(msg).encode())


def recv(sock: socket.socket) -> dict[str, Any] | None:
    """One message, or None on EOF (every holder of the other end is gone)."""
    data = sock.recv(MAX)
    if not data:
        return None
    return json.loads(data)  # type: ignore[no-any-return]


def expect_ok(sock: socket.socket) -> None:
    """Wait for the parent's reply to a request; raise ChildError on error or EOF."""
    msg = recv(sock)
    if msg is None:
        raise ChildError("runtime went away")
    if msg.get("type") == "error":
        raise ChildError(msg.get("msg", "error"))


class SocketLogHandler(logging.Handler):
    """Container side: children never log directly, they send log lines to the parent."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock: socket.socket | None = sock

    def emit(self, record: logging.LogRecord) -> None:
        if self.sock is None:
            return
        try:
            send(self.sock, type="log", level=record.levelname.lower(), msg=record.getMessage())
        except OSError:
            self.sock = None
