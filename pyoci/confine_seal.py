"""Class 1 (CVE-2019-5736) for an interpreter: re-exec once from a sealed memfd copy of /proc/self/exe.

Every process pyoci puts into a container (the init, `exec` tenants) is forked from the CLI process, so its
/proc/<pid>/exe is the CLI's interpreter. After seal() that is an unwritable, unlinked memfd ("/memfd:pyoci
(deleted)") instead of the host's python binary, so nothing in a container can rewrite the host interpreter
through that magic link, even when it wins a race against confine.resolve_executable's checks or holds
CAP_SYS_PTRACE. runc does the same with its exeseal package, youki with pentacle.

Deliberately tiny (os, sys, fcntl only): call it first thing in `create`, `run` and `exec`; the extra cost is
one interpreter start-up (~10 ms here).
"""
from __future__ import annotations

import fcntl
import os
import sys

SEALED_ENV = "_PYOCI_SEALED_EXE"
_F_ADD_SEALS = 1033
_SEALS = 0x1 | 0x2 | 0x4 | 0x8  # F_SEAL_SEAL | SHRINK | GROW | WRITE
_F_SEAL_EXEC = 0x20             # Linux 6.3: the exec bit cannot be changed either
_MFD_EXEC = 0x10                # Linux 6.3: explicitly executable (vm.memfd_noexec may default to NOEXEC)


def seal() -> bool:
    """Re-exec from a sealed copy unless already running from one; returns False when it cannot (the caller
    continues unsealed: the exec-path checks in confine.resolve_executable still apply)."""
    if os.environ.pop(SEALED_ENV, None) == "1":
        return True
    try:
        src = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                mfd = os.memfd_create("pyoci", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | _MFD_EXEC)
            except OSError:
                mfd = os.memfd_create("pyoci", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            size, offset = os.fstat(src).st_size, 0
            while offset < size:
                n = os.sendfile(mfd, src, offset, size - offset)
                if n <= 0:
                    raise OSError("short copy of the interpreter")
                offset += n
        finally:
            os.close(src)
        try:
            fcntl.fcntl(mfd, _F_ADD_SEALS, _SEALS | _F_SEAL_EXEC)
        except OSError:
            fcntl.fcntl(mfd, _F_ADD_SEALS, _SEALS)
        env = dict(os.environ)
        env[SEALED_ENV] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        # argv[0] stays the venv's python: the interpreter finds its prefix and pyvenv.cfg from it.
        os.execve(mfd, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:
        return False
    return False  # not reached: execve does not return
