"""pyoci.linux.paths: in-root resolution and creation (openat2 and the component-walk fallback agree)."""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyoci.errors import SyscallError
from pyoci.linux import paths


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A fake rootfs full of hostile symlinks; outside/ is the 'host' next to it."""
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "real" / "dir").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("host\n")
    os.symlink(str(tmp_path / "outside"), r / "abs-out")        # absolute: must mean <root>/<tmp>/outside
    os.symlink("../../../../outside", r / "rel-out")            # relative: '..' stops at the root
    os.symlink("/real", r / "to-real")
    os.symlink("/nowhere/deeper", r / "dangling")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("/etc/passwd", r / "etc" / "pw")
    fd = paths.open_root(str(r))
    try:
        yield r, fd
    finally:
        os.close(fd)


def where(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@pytest.mark.parametrize("path, expect", [
    ("/etc/passwd", "etc/passwd"), ("etc/passwd", "etc/passwd"), ("/../../etc/passwd", "etc/passwd"),
    ("/to-real/dir", "real/dir"), ("/etc/pw", "etc/passwd"), ("/real/dir/../../etc", "etc"), ("/", ""),
])
def test_open_in_root_and_walk_agree(root: tuple[Path, int], path: str, expect: str) -> None:
    r, fd = root
    want = str(r / expect) if expect else str(r)
    assert where(paths.open_in_root(fd, path)) == want
    wfd, missing = paths.walk(fd, path)
    assert missing == [] and where(wfd) == want


@pytest.mark.parametrize("path", ["/abs-out/secret", "/rel-out/secret", "/abs-out/../../outside/secret"])
def test_symlinks_out_of_the_root_stay_inside(root: tuple[Path, int], path: str) -> None:
    _, fd = root
    with pytest.raises(SyscallError) as ei:
        os.close(paths.open_in_root(fd, path))
    assert ei.value.errno == errno.ENOENT  # <root>/<tmp>/outside does not exist: never the host's file
    wfd, missing = paths.walk(fd, path)
    os.close(wfd)
    assert missing  # the walk stops inside the root as well


def test_last_component_not_followed(root: tuple[Path, int]) -> None:
    _, fd = root
    f = paths.open_in_root(fd, "/etc/pw", follow=False)
    try:
        assert stat.S_ISLNK(os.fstat(f).st_mode)
    finally:
        os.close(f)


def test_loop_is_eloop(root: tuple[Path, int]) -> None:
    _, fd = root
    with pytest.raises(SyscallError) as ei:
        paths.open_in_root(fd, "/loop1/x")
    assert ei.value.errno == errno.ELOOP
    with pytest.raises(SyscallError) as ei:
        paths.walk(fd, "/loop1/x")
    assert ei.value.errno == errno.ELOOP


def test_magic_links_refused() -> None:
    # /proc/self/fd/N would lead anywhere (CVE-2024-21626 style): refused even with the host's / as root
    fd = paths.open_root("/")
    try:
        with pytest.raises(SyscallError) as ei:
            paths.open_in_root(fd, "/proc/self/fd/0")
        assert ei.value.errno in (errno.ELOOP, errno.EXDEV)
    finally:
        os.close(fd)


def test_mkdir_all_through_dangling_and_outward_symlinks(root: tuple[Path, int], tmp_path: Path) -> None:
    r, fd = root
    assert where(paths.mkdir_all_in_root(fd, "/dangling/x/y")) == str(r / "nowhere" / "deeper" / "x" / "y")
    inside = r / str(tmp_path / "outside").lstrip("/") / "new"
    assert where(paths.mkdir_all_in_root(fd, "/abs-out/new")) == str(inside)
    assert not (tmp_path / "outside" / "new").exists()
    assert where(paths.mkdir_all_in_root(fd, "/a/../b/./c//d")) == str(r / "b" / "c" / "d")
    assert not (r / "a").exists()


def test_mkdir_all_refuses_a_file(root: tuple[Path, int]) -> None:
    _, fd = root
    with pytest.raises(SyscallError) as ei:
        paths.mkdir_all_in_root(fd, "/etc/passwd/x")
    assert ei.value.errno == errno.ENOTDIR


def test_create_file_in_root(root: tuple[Path, int], tmp_path: Path) -> None:
    r, fd = root
    assert where(paths.create_file_in_root(fd, "/etc/passwd")) == str(r / "etc" / "passwd")  # existing kept
    assert (r / "etc" / "passwd").read_text() == "root\n"
    assert where(paths.create_file_in_root(fd, "/new/dir/file")) == str(r / "new" / "dir" / "file")
    # a dangling absolute symlink: its target is created inside the root (A8: never on the host)
    os.symlink(str(tmp_path / "outside" / "created"), r / "etc" / "resolv.conf")
    inside = r / str(tmp_path / "outside").lstrip("/") / "created"
    assert where(paths.create_file_in_root(fd, "/etc/resolv.conf")) == str(inside)
    assert not (tmp_path / "outside" / "created").exists()
    with pytest.raises(SyscallError) as ei:
        paths.create_file_in_root(fd, "/real/dir")
    assert ei.value.errno == errno.EISDIR


def test_open_parent_in_root(root: tuple[Path, int]) -> None:
    r, fd = root
    parent, name = paths.open_parent_in_root(fd, "/dev/../../to-real/node")
    assert name == "node" and where(parent) == str(r / "real")
    with pytest.raises(SyscallError):
        paths.open_parent_in_root(fd, "/")


def test_single_component_helpers_never_follow(root: tuple[Path, int], tmp_path: Path) -> None:
    r, fd = root
    etc = paths.open_in_root(fd, "/etc", os.O_PATH | os.O_DIRECTORY)
    try:
        st = paths.lstat_at(etc, "pw")
        assert st is not None and stat.S_ISLNK(st.st_mode)
        assert paths.lstat_at(etc, "missing") is None
        paths.symlink_at(etc, "l", "/x")
        assert paths.readlink_at(etc, "l") == "/x"
        with pytest.raises(SyscallError):
            paths.create_empty_at(etc, "pw")  # O_EXCL|O_NOFOLLOW: an existing symlink is never opened
        paths.unlink_at(etc, "l")
        paths.unlink_at(etc, "l")  # missing is fine
        assert not (r / "etc" / "l").exists()
    finally:
        os.close(etc)


def test_device_identity_is_type_and_number() -> None:
    null = os.stat("/dev/null")
    assert paths.is_device(null, "c", 1, 3) and not paths.is_device(null, "b", 1, 3)
    assert not paths.is_device(os.stat("/dev/zero"), "c", 1, 3)
    # a regular file or a pipe has st_rdev 0: never "a device 0:0" by number alone (crun CVE-2026-88265 class)
    assert not paths.is_device(os.stat("/etc/hostname"), "c", 0, 0)
    fd = os.open("/dev/null", os.O_PATH)
    try:
        paths.verify_device_fd(fd, "c", 1, 3, "/dev/null")
        with pytest.raises(SyscallError, match="not c 1:5"):
            paths.verify_device_fd(fd, "c", 1, 5, "/dev/zero")
    finally:
        os.close(fd)
