"""AppArmor / SELinux labels and the private procfs handle used for every /proc write of the container init.

Labels and oom_score_adj are written through files opened *before* pivot_root from a detached procfs
instance of our own (fsopen, or an OPEN_TREE_CLONE copy of /proc), with RESOLVE_NO_XDEV|NO_MAGICLINKS and
an fstatfs check: after pivot_root the container's /proc may be fake, symlinked or over-mounted
(security.md classes 5 and 6). A requested label on a host without that LSM is an error (fail closed).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from pyoci.errors import ConfigError, PyociError, SyscallError
from pyoci.linux import libc

AT_FDCWD = -100
_RESOLVE = libc.RESOLVE_BENEATH | libc.RESOLVE_NO_XDEV | libc.RESOLVE_NO_MAGICLINKS


@dataclasses.dataclass(frozen=True, slots=True)
class Label:
    """One label write: `data` goes to thread-self/`attr` (an fd opened in prepare)."""

    field: str
    lsm: str
    data: str
    attr: str


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096).strip()
    except OSError:
        return ""


def enabled() -> frozenset[str]:
    """The active LSMs among apparmor and selinux (read while the host's /sys is visible)."""
    active = set(_read("/sys/kernel/security/lsm").split(","))
    if _read("/sys/module/apparmor/parameters/enabled") == "Y":
        active.add("apparmor")
    if os.path.exists("/sys/fs/selinux/enforce"):
        active.add("selinux")
    return frozenset(active & {"apparmor", "selinux"})


def plan(spec: Mapping[str, Any], active: frozenset[str]) -> tuple[Label, ...]:
    """Pure: the label writes the config asks for; ConfigError when the LSM is not enabled (fail closed)."""
    proc = spec.get("process") or {}
    linux = spec.get("linux") or {}
    labels: list[Label] = []
    profile = proc.get("apparmorProfile")
    if profile:
        if "apparmor" not in active:
            raise ConfigError(f"process.apparmorProfile {profile!r}: AppArmor is not enabled on this host")
        labels.append(Label("process.apparmorProfile", "apparmor", f"exec {profile}", "attr/apparmor/exec"))
    label = proc.get("selinuxLabel")
    if label:
        if "selinux" not in active:
            raise ConfigError(f"process.selinuxLabel {label!r}: SELinux is not enabled on this host")
        labels.append(Label("process.selinuxLabel", "selinux", label, "attr/exec"))
    mount_label = linux.get("mountLabel")
    if mount_label and "selinux" not in active:
        # Applied by the rootfs code as the `context=` mount option; checked here so nothing runs unlabelled.
        raise ConfigError(f"linux.mountLabel {mount_label!r}: SELinux is not enabled on this host")
    return tuple(labels)


def open_private_proc() -> int:
    """A detached procfs of our own (mount fd), verified to be procfs. Call before pivot_root."""
    try:
        fs = libc.fsopen("proc")
        try:
            libc.fsconfig(fs, libc.FSCONFIG_CMD_CREATE)
            mnt = libc.fsmount(fs)
        finally:
            os.close(fs)
    except OSError:
        # e.g. a user namespace that may not mount procfs: a detached copy of the /proc we can see.
        mnt = libc.open_tree(AT_FDCWD, "/proc", libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC)
    if libc.fstatfs(mnt)[0] != libc.PROC_SUPER_MAGIC:
        os.close(mnt)
        raise PyociError("private /proc handle is not a procfs")
    return mnt


def open_proc_file(proc_fd: int, path: str, flags: int) -> int:
    """Open <proc>/path beneath the handle (no mount crossing, no magic links) and re-check it is procfs.

    `self`/`thread-self` are plain symlinks inside procfs and resolve for the calling thread.
    """
    fd = libc.openat2(proc_fd, path, flags | os.O_NOFOLLOW, resolve=_RESOLVE)
    if libc.fstatfs(fd)[0] != libc.PROC_SUPER_MAGIC:
        os.close(fd)
        raise PyociError(f"/proc/{path} is not on procfs")
    return fd


def open_label(proc_fd: int, label: Label) -> int:
    """The attr file for a label, opened for writing (apparmor: attr/apparmor/exec, else attr/exec)."""
    candidates = [label.attr] + (["attr/exec"] if label.attr != "attr/exec" else [])
    err: OSError | None = None
    for attr in candidates:
        try:
            return open_proc_file(proc_fd, f"thread-self/{attr}", os.O_WRONLY)
        except OSError as exc:
            err = exc
    raise PyociError(f"{label.field}: cannot open /proc/thread-self/{label.attr}: {err}")


def write_label(fd: int, label: Label) -> None:
    """Set the label for our next execve; the fd must have been opened by this same thread."""
    try:
        os.write(fd, label.data.encode())
    except OSError as exc:
        raise SyscallError("write /proc/thread-self/" + label.attr, exc.errno or 22, label=label.data) from None
