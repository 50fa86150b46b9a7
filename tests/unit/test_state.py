import json
import os

import pytest

from pyoci.errors import ConfigError, ContainerExists, ContainerNotFound
from pyoci.state import State, StateStore, Status, derive_status, validate_id


@pytest.mark.parametrize("recorded,alive,match,fifo,frozen,expected", [
    ("creating", True, True, True, False, Status.CREATING),
    ("creating", False, True, True, False, Status.STOPPED),
    ("created", True, True, True, False, Status.CREATED),
    ("created", True, True, False, False, Status.RUNNING),
    ("running", True, True, False, True, Status.PAUSED),
    ("running", True, False, False, False, Status.STOPPED),  # pid reused by another process
    ("running", False, True, False, False, Status.STOPPED),
    ("created", False, True, True, False, Status.STOPPED),
])
def test_derive_status(recorded, alive, match, fifo, frozen, expected):
    assert derive_status(recorded, alive, match, fifo, frozen) == expected


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "../x", "x" * 256, "x" * 1024, "a b", "a\nb", "é"])
def test_invalid_ids(cid):
    with pytest.raises(ConfigError, match="invalid container id"):
        validate_id(cid)


@pytest.mark.parametrize("cid", ["a", "A-b_c.d+e", "0", "x" * 255, "..a"])
def test_valid_ids(cid):
    validate_id(cid)


def test_store_roundtrip_and_exclusive(tmp_path):
    store = StateStore(str(tmp_path / "root"))
    d = store.create_dir("c1")
    assert oct(os.stat(d).st_mode & 0o777) == "0o711"
    with pytest.raises(ContainerExists):
        store.create_dir("c1")
    st = State(id="c1", bundle="/b", rootfs="/b/rootfs", created="t", pid=42, annotations={"k": "v"})
    store.save(st)
    assert store.load("c1") == st
    assert list(store.ids()) == ["c1"]
    store.remove("c1")
    with pytest.raises(ContainerNotFound, match="does not exist"):
        store.load("c1")


def test_oci_state_shape():
    st = State(id="c1", bundle="/b", rootfs="/b/rootfs", created="t", pid=42)
    out = st.oci(Status.RUNNING)
    assert list(out) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"]
    assert st.oci(Status.STOPPED)["pid"] == 0
    st.annotations = {"a": "b"}
    assert "annotations" in st.oci(Status.RUNNING)


def test_state_validates_against_our_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path
    schema_path = Path(__file__).resolve().parents[2] / "schemas" / "state-schema.json"
    if not schema_path.exists():
        pytest.skip("schemas/state-schema.json not written yet")
    schema = json.loads(schema_path.read_text())
    for status in Status:
        jsonschema.validate(State(id="c", bundle="/b", rootfs="/r", created="t", pid=1).oci(status), schema)
