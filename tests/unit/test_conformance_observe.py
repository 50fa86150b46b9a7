"""Pure parts of the conformance suite: probe parsing, mountinfo normalisation, checks, diffs, summary."""
from __future__ import annotations

import pytest

from conformance import observe, report
from conformance.core import Scenario
from conformance.runner import Outcome, ScenarioResult, diff_facts, select
from conformance.checks import both, eq, mount_has

MOUNTINFO = """\
68 46 254:0 /tmp/conf-abc/runc-001-x/rootfs / ro,relatime - ext4 /dev/vda rw,discard
69 68 0:41 / /proc rw,relatime - proc proc rw
70 68 0:42 / /dev rw,nosuid shared:7 - tmpfs tmpfs rw,size=65536k,mode=755
90 68 0:50 / /mnt/prop rw,relatime master:3 propagate_from:2 - tmpfs conf-prop rw,size=1024k
91 68 0:51 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def _norm() -> observe.Normaliser:
    n = observe.Normaliser()
    n.add("/tmp/conf-abc", "<ws>")
    n.add("/tmp/conf-abc/runc-001-x", "<bundle>")
    return n


def test_normaliser_longest_first() -> None:
    assert _norm()("/tmp/conf-abc/runc-001-x/rootfs and /tmp/conf-abc/y") == "<bundle>/rootfs and <ws>/y"


def test_mountinfo_drops_ids_and_peer_numbers_and_sorts() -> None:
    rows = observe.normalise_mountinfo(MOUNTINFO, _norm())
    assert rows == [
        "/ ext4 /dev/vda <bundle>/rootfs ro,relatime rw,discard private",
        "/dev tmpfs tmpfs / rw,nosuid rw,size=65536k,mode=755 shared",
        "/mnt/prop tmpfs conf-prop / rw,relatime rw,size=1024k master",
        "/mnt/with\\040space tmpfs tmpfs / rw rw private",
        "/proc proc proc / rw,relatime rw private",
    ]


def test_mount_rows_and_mount_has() -> None:
    facts = {"host.running.mounts": "\n".join(observe.normalise_mountinfo(MOUNTINFO, _norm()))}
    rows = observe.mount_rows(facts, "host.running.mounts")
    assert rows["/mnt/prop"].propagation == frozenset({"master"})
    assert rows["/"].opts == frozenset({"ro", "relatime"})
    assert mount_has("/mnt/prop", fstype="tmpfs", super_opts=("size=1024k",), propagation=("master",))(facts) == []
    problems = mount_has("/dev", opts=("noexec",), propagation=("master",))(facts)
    assert len(problems) == 2 and "noexec" in problems[0]
    assert mount_has("/nope")(facts) == ["host.running.mounts: no mount at /nope"]


def test_parse_sections() -> None:
    out = "noise\n@@hostname\nh1\n@@write:/x\nfail\n@@empty\n@@READY\n"
    assert observe.parse_sections(out) == {"": "noise", "hostname": "h1", "write:/x": "fail", "empty": "",
                                           "READY": ""}
    facts = observe.inside_facts(out, observe.Normaliser())
    assert facts["in.hostname"] == "h1" and "in.READY" not in facts


def test_probe_script_ends_waiting_for_stdin() -> None:
    script = observe.probe_script("echo @@extra; echo 1")
    assert script.index("@@extra") < script.index(observe.READY) < script.index("read ")


@pytest.mark.parametrize("facts,problems", [
    ({"a": "1", "b": "2"}, 0),
    ({"a": "1", "b": "3"}, 1),
    ({"b": "3"}, 2),
])
def test_eq_and_both(facts: dict[str, str], problems: int) -> None:
    assert len(both(eq("a", "1"), eq("b", "2"))(facts)) == problems


def test_diff_facts_multiline_as_sets() -> None:
    lines = diff_facts({"k": "x\ny", "s": "1", "same": "v"}, {"k": "y\nz", "s": "2", "same": "v"}, "pyoci", "runc")
    assert lines == ["k:", "  -pyoci: x", "  +runc: z", "s: pyoci='1' runc='2'"]


def _result(name: str, **verdicts: str) -> ScenarioResult:
    scn = Scenario(name, "spec", lambda f: [])
    return ScenarioResult(scn, {rt: Outcome(rt, v) for rt, v in verdicts.items()})


def test_summary_line_counts_errors_as_failed() -> None:
    results = [_result("a", pyoci="pass", runc="pass"), _result("b", pyoci="error", runc="pass"),
               _result("c", pyoci="fail", runc="fail"), _result("d", pyoci="skip", runc="skip")]
    assert report.summary_line(results, "pyoci") == "1 passed, 2 failed, 1 skipped"
    assert report.summary_line(results[:2], "pyoci") == "1 passed, 1 failed"


def test_select_pattern_and_fast() -> None:
    scns = [Scenario("mount.a", "", lambda f: [], fast=True), Scenario("mount.b", "", lambda f: []),
            Scenario("userns.x", "", lambda f: [], fast=True)]
    assert [s.name for s in select(scns, "mount")] == ["mount.a", "mount.b"]
    assert [s.name for s in select(scns, "mount,userns", fast=True)] == ["mount.a", "userns.x"]


def test_scenario_names_unique_and_documented() -> None:
    from conformance.scenarios import SCENARIOS, by_name
    assert len(by_name()) == len(SCENARIOS)
    assert all(s.spec for s in SCENARIOS)
