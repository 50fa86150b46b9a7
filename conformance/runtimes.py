"""The runtimes under comparison: how to invoke each one (argv, own --root) and call its OCI verbs."""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
CGROUP2_CONTROLLERS = Path("/sys/fs/cgroup/unified/cgroup.controllers")
VERB_TIMEOUT = 30.0

# crun 1.8.1 refuses every container while the hybrid cgroup2 mount lists a controller. Each crun verb runs in
# its own private mount namespace where an empty file hides that list; the host's file is never changed.
# `--propagation unchanged` keeps the host's shared mounts shared, so a scenario's rslave/shared mounts behave
# as they do under runc; the unified mount is made private first so the bind cannot propagate to the host.
_CRUN_WRAPPER = (
    'mount --make-private "${1%/*}" && mount --bind "$2" "$1" && shift 2 && exec "$0" "$@"'
)


@dataclass(frozen=True, slots=True)
class VerbResult:
    """The outcome of one runtime invocation."""

    argv: tuple[str, ...]
    rc: int
    out: str
    err: str
    args: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def line(self) -> str:
        """One-line transcript of the call (for reports)."""
        tail = (self.err.strip().splitlines() or [""])[-1][:200]
        return f"{' '.join(self.args or self.argv[-3:])} -> rc={self.rc}{' ' + tail if tail else ''}"


@dataclass(frozen=True, slots=True)
class Runtime:
    """A runtime binary plus its own state root; every verb goes through `verb()`."""

    name: str
    argv: tuple[str, ...]
    root: Path
    missing: str | None = None  # why the runtime cannot be used at all (binary not found)
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        return [*self.argv, "--root", str(self.root), *args]

    def verb(
        self,
        *args: str,
        stdin: int | IO[bytes] | None = subprocess.DEVNULL,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
        timeout: float = VERB_TIMEOUT,
        extra_env: dict[str, str] | None = None,
    ) -> VerbResult:
        """Run `<runtime> --root R <args>`; stdout/stderr are captured unless files are given."""
        argv = self.command(*args)
        env = {**os.environ, **self.env, **(extra_env or {})}
        cap_out = stdout is None
        cap_err = stderr is None
        try:
            proc = subprocess.run(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE if cap_out else stdout,
                stderr=subprocess.PIPE if cap_err else stderr,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return VerbResult(tuple(argv), -1, "", f"timed out after {timeout:.0f}s", args)
        except OSError as exc:
            return VerbResult(tuple(argv), -1, "", f"cannot execute: {exc}", args)
        out = proc.stdout.decode(errors="replace") if cap_out and proc.stdout is not None else ""
        err = proc.stderr.decode(errors="replace") if cap_err and proc.stderr is not None else ""
        log.debug("%s: %s rc=%d", self.name, " ".join(args), proc.returncode)
        return VerbResult(tuple(argv), proc.returncode, out, err, args)

    def state(self, cid: str) -> dict[str, object] | None:
        """Parsed `state <id>` output, or None when the runtime reports an error."""
        res = self.verb("state", cid)
        if not res.ok:
            return None
        try:
            data = json.loads(res.out)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None


def default_pyoci() -> list[str]:
    """The venv's pyoci entry point (never the pyenv shim)."""
    venv_bin = REPO / ".venv" / "bin"
    if (venv_bin / "pyoci").exists():
        return [str(venv_bin / "pyoci")]
    py = venv_bin / "python" if (venv_bin / "python").exists() else Path(sys.executable)
    return [str(py), "-m", "pyoci"]


def default_specs() -> dict[str, list[str]]:
    """name → argv of the runtimes compared by default, in report order."""
    return {"pyoci": default_pyoci(), "runc": ["runc"], "crun": ["crun"]}


def parse_spec(text: str) -> tuple[str, list[str]]:
    """`NAME=CMD` (CMD split like a shell) → (name, argv)."""
    name, sep, cmd = text.partition("=")
    if not sep or not name or not cmd.strip():
        raise ValueError(f"--runtime {text!r}: expected NAME=CMD")
    return name.strip(), shlex.split(cmd)


def crun_needs_wrapper() -> bool:
    try:
        return bool(CGROUP2_CONTROLLERS.read_text().strip())
    except OSError:
        return False


def make_runtime(name: str, argv: list[str], state_dir: Path, empty_file: Path) -> Runtime:
    """Resolve the binary, add the crun mount-namespace wrapper where needed, give it its own --root."""
    root = state_dir / name
    exe = shutil.which(argv[0]) if argv else None
    if exe is None:
        return Runtime(name, tuple(argv), root, missing=f"{argv[0] if argv else name!r} not found")
    argv = [exe, *argv[1:]]
    if Path(exe).name == "crun" and crun_needs_wrapper():
        unshare = shutil.which("unshare")
        if unshare is None:
            return Runtime(name, tuple(argv), root, missing="crun needs unshare(1) to hide cgroup.controllers")
        empty_file.touch()
        argv = [unshare, "-m", "--propagation", "unchanged", "sh", "-c", _CRUN_WRAPPER, exe,
                str(CGROUP2_CONTROLLERS), str(empty_file), *argv[1:]]
    root.mkdir(parents=True, exist_ok=True)
    return Runtime(name, tuple(argv), root)
