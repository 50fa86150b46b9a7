"""Capabilities: the name table, the pure per-set plan (warnings vs errors), and the real apply order in a
forked child (root only) that reports /proc/self/status through a pipe."""
from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pyoci import capabilities as caps
from pyoci.errors import ConfigError

ALL = (1 << 41) - 1


def m(*names: str) -> int:
    return caps.mask(caps.CAPS[n] for n in names)


def test_table_matches_the_kernel_headers_as_python_prctl_knows_them():
    import _prctl  # python-prctl's C module carries linux/capability.h's numbers
    assert len(caps.CAPS) == 41 and sorted(caps.CAPS.values()) == list(range(41))
    known = {name: nr for name, nr in caps.CAPS.items() if hasattr(_prctl, name)}
    assert len(known) >= 38  # python-prctl 1.8 predates CAP_CHECKPOINT_RESTORE's name
    for name, nr in known.items():
        assert getattr(_prctl, name) == nr, name
    assert _prctl.CAP_LAST_CAP == max(caps.CAPS.values())


def test_plan_exact_sets():
    spec = {"bounding": ["CAP_KILL", "CAP_NET_RAW", "CAP_CHOWN"], "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL", "CAP_NET_RAW"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
    p = caps.plan(spec, last_cap=40, available=ALL)
    assert (p.bounding, p.effective, p.permitted, p.inheritable, p.ambient) == (
        m("CAP_KILL", "CAP_NET_RAW", "CAP_CHOWN"), m("CAP_KILL"), m("CAP_KILL", "CAP_NET_RAW"), m("CAP_KILL"),
        m("CAP_KILL"))
    assert p.warnings == ()


@pytest.mark.parametrize("spec", [None, {}, {"bounding": []}])
def test_absent_sets_are_empty_never_inherited(spec):
    p = caps.plan(spec, last_cap=40, available=ALL)
    assert (p.bounding, p.effective, p.permitted, p.inheritable, p.ambient) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("name", ["CAP_KILLL", "cap_kill", "KILL", "CAP_", ""])
def test_a_name_that_is_not_a_capability_is_a_config_error(name):
    with pytest.raises(ConfigError, match=r"^process\.capabilities\.permitted\[1\]: .* is not a capability"):
        caps.plan({"permitted": ["CAP_KILL", name]}, last_cap=40, available=ALL)


def test_ungrantable_capability_is_a_warning_naming_it():
    # CAP_SYS_RESOURCE is not in this machine's bounding set; spec 1.3: warn, and the container still runs.
    spec = {k: ["CAP_KILL", "CAP_SYS_RESOURCE"] for k in caps.SETS}
    p = caps.plan(spec, last_cap=40, available=ALL & ~m("CAP_SYS_RESOURCE"))
    assert p.warnings == ("capability CAP_SYS_RESOURCE is not in the runtime's bounding set and cannot be granted: "
                          "ignored",)  # once, not once per set
    assert p.bounding == p.effective == p.permitted == p.inheritable == p.ambient == m("CAP_KILL")


def test_capability_unknown_to_the_kernel_is_a_warning():
    p = caps.plan({"bounding": ["CAP_CHECKPOINT_RESTORE", "CAP_BPF"]}, last_cap=38, available=ALL)
    assert p.bounding == 0
    assert [w.split(" is ")[0] for w in p.warnings] == ["capability CAP_CHECKPOINT_RESTORE", "capability CAP_BPF"]
    assert "not known to the running kernel (last cap 38)" in p.warnings[0]


@pytest.mark.parametrize("spec, field, value, why", [
    ({"bounding": ["CAP_KILL"], "permitted": [], "effective": ["CAP_KILL"]}, "effective", 0,
     "effective but not permitted"),
    ({"bounding": [], "inheritable": ["CAP_KILL"]}, "inheritable", 0, "inheritable but not in the bounding set"),
    ({"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]}, "ambient", 0,
     "ambient but not permitted and inheritable"),
])
def test_kernel_rules_clamp_with_a_warning(spec, field, value, why):
    p = caps.plan(spec, last_cap=40, available=ALL)
    assert getattr(p, field) == value
    assert p.warnings == (f"capabilities CAP_KILL are {why}: ignored",)


def test_names_roundtrip():
    assert caps.names(m("CAP_CHOWN", "CAP_KILL") | 1 << 63) == ["CAP_CHOWN", "CAP_KILL", "CAP_63"]


def test_this_kernel():
    assert caps.last_cap() == int(open("/proc/sys/kernel/cap_last_cap").read())


# --------------------------------------------------------------------------- applied, in a forked child

def _status_in_child(spec: dict[str, Any]) -> dict[str, str]:
    from pyoci import confine
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            c = confine.prepare(spec, cid="captest", bundle="/", no_new_keyring=True)
            confine.apply_credentials(c, {})
            confine.final(c, {})
            st = dict(line.rstrip("\n").split(":\t", 1) for line in open("/proc/self/status") if ":\t" in line)
            st["dumpable"] = str(__import__("pyoci.linux.libc", fromlist=["x"]).prctl(3))
            os.write(w, json.dumps(st).encode())
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            os.write(w, json.dumps({"error": repr(exc)}).encode())
            os._exit(1)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)  # type: ignore[no-any-return]


def hexmask(*names: str) -> str:
    return f"{m(*names):016x}"


SETS = {"bounding": ["CAP_KILL", "CAP_NET_RAW", "CAP_SETPCAP", "CAP_AUDIT_WRITE"],
        "permitted": ["CAP_KILL", "CAP_NET_RAW", "CAP_SETPCAP"],
        "effective": ["CAP_KILL", "CAP_SETPCAP"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL"]}


@pytest.mark.root
@pytest.mark.parametrize("uid", [0, 1000])
def test_all_five_sets_exactly_for_root_and_non_root(uid):
    st = _status_in_child({"process": {"user": {"uid": uid, "gid": uid, "additionalGids": [7]},
                                       "capabilities": SETS, "noNewPrivileges": True}})
    assert "error" not in st, st
    assert st["CapBnd"] == hexmask(*SETS["bounding"])
    assert st["CapPrm"] == hexmask(*SETS["permitted"])
    assert st["CapEff"] == hexmask(*SETS["effective"])
    assert st["CapInh"] == hexmask(*SETS["inheritable"])
    assert st["CapAmb"] == hexmask(*SETS["ambient"])
    assert st["Uid"].split() == [str(uid)] * 4 and st["Gid"].split() == [str(uid)] * 4
    assert st["Groups"].split() == ["7"] and st["NoNewPrivs"] == "1"
    assert st["dumpable"] == "0"  # re-asserted after setuid: still hidden from the container until execve


@pytest.mark.root
def test_no_capabilities_object_drops_everything():
    st = _status_in_child({"process": {"user": {"uid": 0, "gid": 0}}})
    assert "error" not in st, st
    assert {st[k] for k in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb")} == {"0" * 16}
    assert st["Groups"].strip() == "" and st["NoNewPrivs"] == "0"
