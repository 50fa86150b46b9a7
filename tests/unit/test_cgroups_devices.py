"""Device rules: parsing, v1 lines, v1 kernel semantics, and the v2 BPF program (run in a tiny interpreter)."""
from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest

from pyoci.cgroups import bpf
from pyoci.cgroups.device_rules import ANY, DeviceRule, Effective, effective, parse, permits, v1_writes
from pyoci.errors import ConfigError

CONTAINERD = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
              {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
              {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
              {"allow": True, "type": "c", "major": 136, "access": "rwm"}]
RUNC_DEFAULTS = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "access": "m"},
                 {"allow": True, "type": "b", "access": "m"}, {"allow": True, "type": "c", "major": 1, "minor": 3,
                                                               "access": "rwm"}]


def run(prog: bytes, typ: str, major: int, minor: int, access: str) -> int:
    """Execute the program's instruction subset on a bpf_cgroup_dev_ctx."""
    acc = sum(bpf.ACC_BITS[c] for c in access)
    ctx = struct.pack("=III", acc << 16 | bpf.DEV_TYPE[typ], major, minor)
    insns = [struct.unpack_from("=BBhi", prog, i) for i in range(0, len(prog), 8)]
    regs, pc = [0] * 11, 0
    for _ in range(10000):
        code, rb, off, imm = insns[pc]
        dst, src = rb & 0xF, rb >> 4
        pc += 1
        if code == bpf.LDX_W:
            assert src == 1
            regs[dst] = struct.unpack_from("=I", ctx, off)[0]
        elif code == bpf.AND32_K:
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif code == bpf.RSH32_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == bpf.MOV32_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == bpf.MOV32_K:
            regs[dst] = imm & 0xFFFFFFFF
        elif code in (bpf.JNE_K, bpf.JEQ_K):
            if (regs[dst] != imm) == (code == bpf.JNE_K):
                pc += off
        elif code == bpf.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
    raise AssertionError("program did not terminate")


def test_parse_defaults_and_expansion() -> None:
    assert parse([{"allow": False}]) == (DeviceRule(False, "a", ANY, ANY, "rwm"),)
    # a typed-`a` rule narrower than "everything" must never become a v1 "a" line (the kernel reads that as all).
    assert parse([{"allow": True, "type": "a", "major": 1, "minor": 3, "access": "wr"}]) == (
        DeviceRule(True, "b", 1, 3, "rw"), DeviceRule(True, "c", 1, 3, "rw"))
    assert parse([{"allow": True, "access": "m"}]) == (DeviceRule(True, "b", ANY, ANY, "m"),
                                                        DeviceRule(True, "c", ANY, ANY, "m"))


@pytest.mark.parametrize("bad,msg", [([{"type": "c"}], r"\[0\]: 'allow'"), ([{"allow": True, "type": "x"}], "type"),
                                     ([{"allow": True, "access": "rx"}], "access"),
                                     ([{"allow": True, "major": -2}], "major"), ({}, "must be an array")])
def test_parse_errors(bad: Any, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        parse(bad)


def test_v1_lines() -> None:
    assert v1_writes(parse(RUNC_DEFAULTS)) == [("devices.deny", "a"), ("devices.allow", "c *:* m"),
                                              ("devices.allow", "b *:* m"), ("devices.allow", "c 1:3 rwm")]


def test_effective_replays_kernel_semantics() -> None:
    rules = parse([{"allow": False}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
                   {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"},      # merged: rw
                   {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                   {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # removed again
                   {"allow": True, "type": "b", "major": 8, "access": "r"}])
    assert effective(rules) == Effective(False, (DeviceRule(True, "c", 1, 3, "rw"), DeviceRule(True, "b", 8, ANY, "r")))
    assert effective(parse([{"allow": True, "type": "c", "major": 1, "minor": 3}, {"allow": True}])) == Effective(True, ())
    assert effective(()) == Effective(True, ())


def test_permits() -> None:
    eff = effective(parse(CONTAINERD))
    assert permits(eff, "c", 1, 3, "rw") and permits(eff, "c", 136, 7, "rwm")
    assert not permits(eff, "c", 1, 5, "r") and not permits(eff, "b", 8, 0, "r")
    black = effective(parse([{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]))
    assert permits(black, "c", 1, 3, "r") and not permits(black, "c", 1, 3, "rw") and permits(black, "c", 1, 5, "w")


RULESETS = [
    CONTAINERD, RUNC_DEFAULTS, [],
    [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}, {"allow": False, "type": "b", "access": "m"}],
    [{"allow": False}, {"allow": True, "type": "c", "major": 1, "access": "r"},
     {"allow": True, "type": "c", "minor": 5, "access": "wm"}, {"allow": False, "type": "c", "major": 1, "minor": 3}],
    [{"allow": False}, {"allow": True}, {"allow": False, "type": "a", "major": 4, "minor": 1, "access": "r"}],
]
DEVICES = [(t, mj, mn) for t in "bc" for mj in (1, 4, 5, 8, 136) for mn in (0, 1, 3, 5, 7)]
ACCESSES = ["".join(c) for n in (1, 2, 3) for c in itertools.combinations("rwm", n)]


@pytest.mark.parametrize("i", range(len(RULESETS)))
def test_bpf_program_matches_kernel_semantics(i: int) -> None:
    eff = effective(parse(RULESETS[i]))
    prog = bpf.build_program(eff)
    for (t, mj, mn), acc in itertools.product(DEVICES, ACCESSES):
        assert run(prog, t, mj, mn, acc) == int(permits(eff, t, mj, mn, acc)), (t, mj, mn, acc)


def test_bpf_program_shape() -> None:
    prog = bpf.build_program(Effective(True, ()))
    assert len(prog) == 8 * 8   # 6 loads + r0 = 1 + exit
    assert prog[-8:] == bpf.insn(bpf.EXIT) and prog[-16:-8] == bpf.insn(bpf.MOV32_K, 0, imm=1)
