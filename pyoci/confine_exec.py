"""The program the container runs: execvp-style lookup of process.args[0] inside the container root (after
pivot_root), refusing what would run a host binary in there, and HOME from the container's /etc/passwd.

Class 1 (CVE-2019-5736): a process that runs the host interpreter inside the container exposes it as
/proc/<pid>/exe, and the container can reopen that magic link for writing. args[0] (and each interpreter its
#! line or ELF PT_INTERP names) is therefore resolved with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS): a
magic link such as /proc/self/exe or /dev/fd/N anywhere in the chain, or a file that is the runtime's own
interpreter (a bind mount of it), is refused. confine_seal.seal() closes the remaining race (the file swapped
between this check and execve) by making /proc/self/exe an unwritable sealed memfd.
"""
from __future__ import annotations

import errno
import os
import stat
import struct
import sys
from collections.abc import Mapping, Sequence

from pyoci.errors import ChildError
from pyoci.linux import libc

DEFAULT_PATH = "/bin:/usr/bin"  # execvp(3) when PATH is unset (glibc _PATH_DEFPATH)

_HOST_EXES: set[tuple[int, int]] = set()
_IN_ROOT = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_MAX_INTERP_DEPTH = 5  # the kernel's binfmt recursion limit


def remember_host_executables() -> None:
    """(dev, ino) of our interpreter and libpython, recorded while the host fs is visible."""
    for path in ("/proc/self/exe", sys.executable):
        try:
            st = os.stat(path)
            _HOST_EXES.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and "libpython" in parts[5]:
                    major, minor = (int(x, 16) for x in parts[3].split(":"))
                    _HOST_EXES.add((os.makedev(major, minor), int(parts[4])))
    except OSError:
        pass


def _env_get(env: Sequence[str] | Mapping[str, str] | str | None, key: str) -> str | None:
    if env is None or isinstance(env, str):
        return env
    if isinstance(env, Mapping):
        return env.get(key)
    for kv in reversed(list(env)):
        if kv.startswith(key + "="):
            return kv[len(key) + 1:]
    return None


def resolve_executable(args0: str, env: Sequence[str] | Mapping[str, str] | str | None, cwd: str = "/") -> str:
    """execvp-style lookup of process.args[0] inside the container (call after pivot_root).

    `env` is the container's environment (list or mapping) or directly its PATH value. Returns the path to
    execve. Raises ChildError with "executable file not found in $PATH" / "no such file or directory" /
    "permission denied" (podman maps those to exit 127/126), or a refusal for magic links and host binaries.
    """
    if not args0:
        raise ChildError('exec: "": process.args[0] is empty')
    if "/" in args0:
        candidates = [args0]
    else:
        path = _env_get(env, "PATH")
        dirs = (DEFAULT_PATH if path is None else path).split(":")
        candidates = [os.path.join(d or ".", args0) for d in dirs]
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        denied = False
        for cand in candidates:
            full = os.path.normpath(os.path.join(cwd, cand))
            try:
                _check_executable(root, full, cwd, args0, 0)
                return full
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError:
                denied = True  # execvp: remember EACCES, keep searching
    finally:
        os.close(root)
    if denied:
        raise ChildError(f'exec: "{args0}": permission denied')
    if "/" in args0:
        raise ChildError(f'exec: "{args0}": stat {args0}: no such file or directory')
    raise ChildError(f'exec: "{args0}": executable file not found in $PATH')


def _open_in_root(root: int, path: str, flags: int, args0: str) -> int:
    try:
        return libc.openat2(root, path, flags, resolve=_IN_ROOT)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise OSError(exc.errno, os.strerror(exc.errno or errno.EIO), path) from None
    # ELOOP: a real symlink loop, or a magic link (which RESOLVE_NO_MAGICLINKS refuses).
    try:
        os.close(os.open(path, os.O_PATH | os.O_CLOEXEC))
    except OSError:
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
    raise ChildError(f'exec: "{args0}": refusing to execute {path!r}: it resolves through a /proc magic link, '
                     "which would run a host binary inside the container (CVE-2019-5736)")


def _check_executable(root: int, path: str, cwd: str, args0: str, depth: int) -> None:
    fd = _open_in_root(root, path, os.O_PATH, args0)
    try:
        st = os.fstat(fd)
        noexec = bool(os.fstatvfs(fd).f_flag & os.ST_NOEXEC)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111 or noexec:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    if (st.st_dev, st.st_ino) in _HOST_EXES:
        raise ChildError(f'exec: "{args0}": refusing to execute {path!r}: it is the runtime\'s own interpreter')
    if depth >= _MAX_INTERP_DEPTH:
        return
    interp = _interpreter(root, path, args0)
    if interp:
        _check_executable(root, os.path.normpath(os.path.join(cwd, interp)), cwd, args0, depth + 1)


def _interpreter(root: int, path: str, args0: str) -> str | None:
    """The #! interpreter or ELF PT_INTERP the kernel would load for `path` (None if unreadable/none)."""
    try:
        fd = _open_in_root(root, path, os.O_RDONLY | os.O_NONBLOCK, args0)
    except (PermissionError, FileNotFoundError):
        return None  # execute-only file: the kernel can still run it; nothing we can inspect
    try:
        head = os.pread(fd, 256, 0)
        if head.startswith(b"#!"):
            line = head[2:].split(b"\n", 1)[0].strip()
            return os.fsdecode(line.split(None, 1)[0]) if line else None
        if head.startswith(b"\x7fELF") and len(head) >= 52:
            return _elf_interp(fd, head)
        return None
    finally:
        os.close(fd)


def _elf_interp(fd: int, head: bytes) -> str | None:
    is64, end = head[4] == 2, "<" if head[5] == 1 else ">"
    if is64 and len(head) >= 64:
        phoff, = struct.unpack_from(end + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 0x36)
    else:
        phoff, = struct.unpack_from(end + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 0x2A)
    table = os.pread(fd, phentsize * min(phnum, 256), phoff)
    for i in range(min(phnum, len(table) // max(phentsize, 1))):
        ph = table[i * phentsize:(i + 1) * phentsize]
        if len(ph) < 24 or struct.unpack_from(end + "I", ph, 0)[0] != 3:  # PT_INTERP
            continue
        if is64:
            off, = struct.unpack_from(end + "Q", ph, 8)
            size, = struct.unpack_from(end + "Q", ph, 32)
        else:
            off, = struct.unpack_from(end + "I", ph, 4)
            size, = struct.unpack_from(end + "I", ph, 16)
        return os.fsdecode(os.pread(fd, min(size, 4096), off).split(b"\0", 1)[0]) or None
    return None


def with_home(env: Sequence[str], uid: int) -> list[str]:
    """process.env plus HOME from the container's /etc/passwd (read as data, no NSS) when it is unset (runc)."""
    env = list(env)
    if any(kv.startswith("HOME=") for kv in env):
        return env
    home = "/"
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = libc.openat2(root, "etc/passwd", os.O_RDONLY | os.O_NONBLOCK, resolve=_IN_ROOT)
    except OSError:
        fd = -1
    finally:
        os.close(root)
    if fd >= 0:
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                for line in os.read(fd, 1 << 20).decode(errors="replace").splitlines():
                    f = line.split(":")
                    if len(f) >= 7 and f[2].isdigit() and int(f[2]) == uid and f[5]:
                        home = f[5]
                        break
        finally:
            os.close(fd)
    return env + [f"HOME={home}"]
