"""Shared fixtures (the root/CI rules are in the repository's top-level conftest.py)."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BUSYBOX_ROOTFS = REPO / "bundles" / "busybox" / "rootfs"
PYOCI = [sys.executable, "-m", "pyoci"]


def base_config(args: list[str] | None = None) -> dict[str, Any]:
    """A runc-spec-like config without a user namespace, terminal false."""
    from pyoci.spec import default_spec
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args or ["true"]
    spec["root"]["readonly"] = False
    # v1 cgroup mounts are the cgroups work's business; keep the base minimal.
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "cgroup"]
    return spec


def run_pyoci(argv: list[str], check: bool = False, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    cmd = [*PYOCI, *argv]
    if kw.pop("capture_output", True) and "stdout" not in kw:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            rc = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=timeout, cwd=REPO,
                                **kw).returncode
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(cmd, rc, out.read(), err.read())
    else:
        p = subprocess.run(cmd, text=True, timeout=timeout, cwd=REPO, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr}")
    return p


class Bundle:
    """A tmp bundle (config.json + a symlinked-in rootfs copy) with its own --root and container id."""

    def __init__(self, tmp: Path, spec: dict[str, Any]) -> None:
        self.dir = tmp / "bundle"
        self.dir.mkdir()
        self.rootfs = self.dir / "rootfs"
        shutil.copytree(BUSYBOX_ROOTFS, self.rootfs, symlinks=True)
        self.root = tmp / "state"
        self.id = f"pyoci-test-{uuid.uuid4().hex[:10]}"
        self.spec = copy.deepcopy(spec)
        self.write()

    def write(self) -> None:
        (self.dir / "config.json").write_text(json.dumps(self.spec))

    def pyoci(self, *args: str, check: bool = False, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run pyoci. Output goes through temp files, not pipes: a created container inherits create's
        stdout/stderr (terminal false), so a pipe would not reach EOF until the container exits."""
        return run_pyoci(["--root", str(self.root), *args], check=check, timeout=timeout, **kw)

    def state(self) -> dict[str, Any]:
        return json.loads(self.pyoci("state", self.id, check=True).stdout)

    def cleanup(self) -> None:
        self.pyoci("delete", "--force", self.id)


@pytest.fixture
def make_bundle() -> Any:
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700, which a container root mapped to another host uid
    # (user namespace) cannot traverse to reach its rootfs.
    tmp_path = Path(tempfile.mkdtemp(prefix="pyoci-test-"))
    tmp_path.chmod(0o755)
    made: list[Bundle] = []

    def make(spec: dict[str, Any] | None = None, args: list[str] | None = None) -> Bundle:
        sub = tmp_path / f"b{len(made)}"
        sub.mkdir()
        b = Bundle(sub, spec if spec is not None else base_config(args))
        made.append(b)
        return b

    try:
        yield make
    finally:
        for b in made:
            b.cleanup()
        shutil.rmtree(tmp_path, ignore_errors=True)
