"""Resolve and create paths inside a container rootfs without ever leaving it (security.md classes 4, 9, 13).

Every rootfs path goes through this module: openat2(root_fd, path, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)
when the path exists (symlinks are followed, but '/' and '..' stay the rootfs), and a component walk with
O_PATH|O_NOFOLLOW for the part that must be created: symlinks met on the way, dangling ones included, are
resolved inside the root too, and the missing components are made with mkdirat/openat(O_CREAT|O_EXCL|
O_NOFOLLOW)/mknodat/symlinkat relative to directory fds we hold. Nothing here joins a rootfs path string.
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat

from pyoci.errors import SyscallError
from pyoci.linux import libc
from pyoci.linux.proc import ProcHandle

RESOLVE = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
MAX_SYMLINKS = 40
_O = os.O_CLOEXEC


def clean(path: str) -> str:
    """Lexically clean a container path: absolute, no '.', '..' or '//' ('/../../x' → '/x')."""
    p = posixpath.normpath("/" + path)
    return "/" + p.lstrip("/")


def _rel(path: str) -> str:
    return clean(path).lstrip("/") or "."


def _err(op: str, exc: OSError, path: str) -> SyscallError:
    return SyscallError(op, exc.errno or errno.EIO, path=path)


def open_root(path: str) -> int:
    """O_PATH directory fd of the rootfs (a host path from the bundle: trusted, resolved normally)."""
    try:
        return os.open(path, os.O_PATH | os.O_DIRECTORY | _O)
    except OSError as exc:
        raise _err("open", exc, path) from None


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH, *, follow: bool = True, mode: int = 0) -> int:
    """Open path inside the root; symlinks are followed inside it (not the last one when follow=False)."""
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        return libc.openat2(root_fd, _rel(path), flags, mode, RESOLVE)
    except SyscallError as exc:
        if exc.errno not in (errno.ENOSYS, errno.E2BIG):
            raise SyscallError("open in rootfs", exc.errno or errno.EIO, path=clean(path)) from None
    # openat2 unavailable (kernel < 5.6): the component walk, which never follows anything out.
    fd, missing = walk(root_fd, path, follow_last=follow)
    if missing:
        os.close(fd)
        raise SyscallError("open in rootfs", errno.ENOENT, path=clean(path))
    if flags & os.O_PATH and not flags & os.O_DIRECTORY:
        return fd
    try:
        return _reopen(fd, flags, path)
    finally:
        os.close(fd)


def _reopen(fd: int, flags: int, path: str) -> int:
    st = os.fstat(fd)
    if flags & os.O_DIRECTORY and not stat.S_ISDIR(st.st_mode):
        raise SyscallError("open in rootfs", errno.ENOTDIR, path=clean(path))
    if stat.S_ISLNK(st.st_mode):
        raise SyscallError("open in rootfs", errno.ELOOP, path=clean(path))
    # Reopen the O_PATH fd through its magic link in a verified private procfs: no rootfs path involved.
    with ProcHandle.open() as proc:
        ref = f"{proc.pid_dir('thread-self')}/fd/{fd}"
        try:
            return os.open(ref, (flags & ~os.O_NOFOLLOW) | _O, dir_fd=proc.fd)
        except OSError as exc:
            raise _err("reopen in rootfs", exc, path) from None


def walk(root_fd: int, path: str, *, follow_last: bool = True) -> tuple[int, list[str]]:
    """Resolve path inside the root one component at a time (securejoin-style).

    Returns (fd of the deepest existing component, the missing components after it). '..' is handled on
    our own stack of fds (never by the kernel), symlink targets are re-rooted at root_fd, and each step
    opens with O_PATH|O_NOFOLLOW and checks it opened what it stat'ed (a swap in between is an error).
    """
    parts = [p for p in clean(path).split("/") if p]
    parts.reverse()  # a stack: parts[-1] is next
    stack = [os.dup(root_fd)]
    links = 0
    try:
        while parts:
            comp = parts.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                st = os.stat(comp, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                missing = _missing(comp, parts)
                if missing and missing[0] == "..":  # 'gone/../x': '..' cancels a missing component
                    parts.extend(reversed(missing))
                    continue
                return stack.pop(), missing
            except OSError as exc:
                raise _err("walk in rootfs", exc, path) from None
            if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise SyscallError("walk in rootfs", errno.ELOOP, path=clean(path))
                target = os.readlink(comp, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts.extend(reversed([t for t in target.split("/") if t]))
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                raise SyscallError("walk in rootfs", errno.ENOTDIR, path=clean(path))
            try:
                fd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | _O, dir_fd=stack[-1])
            except OSError as exc:
                raise _err("walk in rootfs", exc, path) from None
            got = os.fstat(fd)
            if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)
                raise SyscallError("walk in rootfs (changed during lookup)", errno.EAGAIN, path=clean(path))
            stack.append(fd)
        return stack.pop(), []
    finally:
        for fd in stack:
            os.close(fd)


def _missing(comp: str, parts: list[str]) -> list[str]:
    """The remaining components (comp first) lexically cleaned; may start with '..' entries."""
    rest = [comp, *reversed(parts)]
    parts.clear()
    norm = posixpath.normpath("/".join(rest))
    return [] if norm == "." else norm.split("/")


def mkdir_all_in_root(root_fd: int, path: str, mode: int = 0o755) -> int:
    """O_PATH fd of directory path inside the root, creating what is missing (mkdir -p, in-root)."""
    try:
        return open_in_root(root_fd, path, os.O_PATH | os.O_DIRECTORY)
    except SyscallError as exc:
        if exc.errno != errno.ENOENT:
            raise
    fd, missing = walk(root_fd, path)
    try:
        for comp in missing:
            fd = _step(fd, _mkdir_step(fd, comp, mode, path))
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise SyscallError("mkdir in rootfs", errno.ENOTDIR, path=clean(path))
        return fd
    except BaseException:
        os.close(fd)
        raise


def _step(old: int, new: int) -> int:
    os.close(old)
    return new


def _mkdir_step(dir_fd: int, comp: str, mode: int, path: str) -> int:
    """mkdirat + open it O_NOFOLLOW; returns the new directory's fd (dir_fd stays open)."""
    try:
        try:
            os.mkdir(comp, mode, dir_fd=dir_fd)
        except FileExistsError:
            pass  # raced with a creator: the O_NOFOLLOW|O_DIRECTORY open below refuses anything but a dir
        return os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | _O, dir_fd=dir_fd)
    except OSError as exc:
        raise _err("mkdir in rootfs", exc, path) from None


def open_parent_in_root(root_fd: int, path: str, mode: int = 0o755) -> tuple[int, str]:
    """(fd of the parent directory, created if missing, final name) for creating path's last component.

    The parent is resolved inside the root; the name is a single component used with *at() calls that
    do not follow it."""
    p = clean(path)
    parent, name = posixpath.split(p)
    if not name:
        raise SyscallError("create in rootfs (no file name)", errno.EINVAL, path=p)
    return mkdir_all_in_root(root_fd, parent, mode), name


def create_file_in_root(root_fd: int, path: str, mode: int = 0o644, *, dir_mode: int = 0o755) -> int:
    """O_PATH fd of path, an existing non-directory (symlinks resolved inside the root) or a new empty
    regular file created O_CREAT|O_EXCL|O_NOFOLLOW. A dangling symlink's target is created in the root."""
    try:
        fd = open_in_root(root_fd, path, os.O_PATH)
    except SyscallError as exc:
        if exc.errno != errno.ENOENT:
            raise
    else:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise SyscallError("create file in rootfs", errno.EISDIR, path=clean(path))
        return fd
    fd, missing = walk(root_fd, path)
    try:
        for comp in missing[:-1]:
            fd = _step(fd, _mkdir_step(fd, comp, dir_mode, path))
        if not missing:  # appeared meanwhile
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise SyscallError("create file in rootfs", errno.EISDIR, path=clean(path))
            out, fd = fd, -1
            return out
        name = missing[-1]
        try:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_RDONLY | _O, mode, dir_fd=fd))
        except FileExistsError:
            pass  # raced: the O_NOFOLLOW open below takes it only if it is not a symlink
        except OSError as exc:
            raise _err("create file in rootfs", exc, path) from None
        try:
            out = os.open(name, os.O_PATH | os.O_NOFOLLOW | _O, dir_fd=fd)
        except OSError as exc:
            raise _err("create file in rootfs", exc, path) from None
        st = os.fstat(out)
        if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
            os.close(out)
            raise SyscallError("create file in rootfs (raced)", errno.EEXIST, path=clean(path))
        return out
    finally:
        if fd >= 0:
            os.close(fd)


# --- single-component operations relative to a verified directory fd ----------------------------------


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _err("lstat", exc, name) from None


def mknod_at(dir_fd: int, name: str, mode: int, device: int) -> None:
    try:
        os.mknod(name, mode, device, dir_fd=dir_fd)
    except OSError as exc:
        raise _err("mknod", exc, name) from None


def chown_at(dir_fd: int, name: str, uid: int, gid: int) -> None:
    try:
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise _err("chown", exc, name) from None


def symlink_at(dir_fd: int, name: str, target: str) -> None:
    try:
        os.symlink(target, name, dir_fd=dir_fd)
    except OSError as exc:
        raise _err("symlink", exc, name) from None


def readlink_at(dir_fd: int, name: str) -> str:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        raise _err("readlink", exc, name) from None


def unlink_at(dir_fd: int, name: str, *, is_dir: bool = False) -> None:
    try:
        if is_dir:
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _err("unlink", exc, name) from None


def open_at(dir_fd: int, name: str, flags: int = os.O_PATH) -> int:
    """Open a single component relative to dir_fd without following it."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | _O, dir_fd=dir_fd)
    except OSError as exc:
        raise _err("open", exc, name) from None


def create_empty_at(dir_fd: int, name: str, mode: int = 0) -> int:
    """Create an empty regular file (O_EXCL|O_NOFOLLOW) and return its O_PATH fd."""
    try:
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_RDONLY | _O, mode, dir_fd=dir_fd))
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | _O, dir_fd=dir_fd)
    except OSError as exc:
        raise _err("create", exc, name) from None


def is_device(st: os.stat_result, kind: str, major: int, minor: int) -> bool:
    """kind 'c'/'b'/'p': the file type and, for c/b, the device number (never the number alone)."""
    if kind == "p":
        return stat.S_ISFIFO(st.st_mode)
    want = stat.S_ISCHR if kind == "c" else stat.S_ISBLK
    return want(st.st_mode) and os.major(st.st_rdev) == major and os.minor(st.st_rdev) == minor


def verify_device_fd(fd: int, kind: str, major: int, minor: int, what: str) -> None:
    """Raise unless the file fd refers to is that device (checked on the fd: no path involved)."""
    st = os.fstat(fd)
    if not is_device(st, kind, major, minor):
        raise SyscallError(f"verify {what}: not {kind} {major}:{minor} (mode {oct(st.st_mode)}, "
                           f"rdev {os.major(st.st_rdev)}:{os.minor(st.st_rdev)})", errno.EPERM)


def inside(root_path: str, path: str) -> bool:
    """Lexically, is path root_path or below it."""
    root_path = root_path.rstrip("/")
    return path == root_path or path.startswith(root_path + "/") or root_path == ""


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """tmpcopyup: copy the directory src_fd (the covered mountpoint) into dst_fd (the new tmpfs), with
    owners and modes; never follows a symlink (they are copied as symlinks), everything *at-relative."""
    src = os.open(".", os.O_RDONLY | os.O_DIRECTORY | _O, dir_fd=src_fd)
    try:
        st = os.fstat(src)
        dst = os.open(".", os.O_RDONLY | os.O_DIRECTORY | _O, dir_fd=dst_fd)
        try:
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.fchown(dst, st.st_uid, st.st_gid)
            for name in os.listdir(src):
                _copy_entry(src, dst, name)
        finally:
            os.close(dst)
    except OSError as exc:
        raise _err("tmpcopyup", exc, "") from None
    finally:
        os.close(src)


def _copy_entry(src: int, dst: int, name: str) -> None:
    st = os.stat(name, dir_fd=src, follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o700, dir_fd=dst)
        s = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | _O, dir_fd=src)
        d = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | _O, dir_fd=dst)
        try:
            copy_tree(s, d)
        finally:
            os.close(s)
            os.close(d)
        return
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
    elif stat.S_ISREG(st.st_mode):
        s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | _O, dir_fd=src)
        try:
            d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O, 0o600, dir_fd=dst)
            try:
                while os.sendfile(d, s, None, 1 << 20) > 0:
                    pass
                os.fchmod(d, mode)
            finally:
                os.close(d)
        finally:
            os.close(s)
    else:  # fifo, socket, device: recreate the node
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst)
    os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
