"""Logging set-up: logrus-compatible text or JSON lines, to stderr or --log FILE; relay of child lines."""
from __future__ import annotations

import json
import logging
import os
import sys

_LEVELS = {"CRITICAL": "fatal", "ERROR": "error", "WARNING": "warning", "INFO": "info", "DEBUG": "debug"}


def _now() -> str:
    import datetime  # only when something is logged
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds").replace("+00:00", "Z")


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVELS.get(record.levelname, record.levelname.lower())
        msg = record.getMessage()
        if self.json:
            # logrus JSONFormatter: keys sorted, one complete object per line.
            return json.dumps({"level": level, "msg": msg, "time": _now()}, sort_keys=True)
        return f'time="{_now()}" level={level} msg={json.dumps(msg)}'


class _FileHandler(logging.Handler):
    """O_APPEND|O_SYNC writes of whole lines (no threads, no buffering across forks)."""

    def __init__(self, path: str | None) -> None:
        super().__init__()
        self.fd = (os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                   if path else 2)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self.fd, (self.format(record) + "\n").encode())
        except OSError:
            pass


_state = {"to_stderr": True}


def setup(log_file: str | None, fmt: str, debug: bool) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = _FileHandler(log_file)
    handler.setFormatter(_Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    _state["to_stderr"] = log_file is None


def fatal(msg: str) -> None:
    """Log the error once; as runc does, also print plain text on stderr when the log is a file."""
    logging.getLogger("pyoci").error("%s", msg)
    if not _state["to_stderr"]:
        sys.stderr.write(msg + "\n")


def relay(level: str, msg: str) -> None:
    """Re-emit a log line that the container side sent over the sync socket."""
    lvl = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}.get(level, logging.DEBUG)
    logging.getLogger("pyoci.init").log(lvl, "%s", msg)
