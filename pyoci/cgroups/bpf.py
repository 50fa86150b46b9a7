"""cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program built from the rules, attached with bpf(2).

The program (build_program, pure) reads struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor}
(access_type = access << 16 | type) and checks each exception of device_rules.effective() in turn; the first
match returns the exception's verdict, no match returns the default. Matching mirrors the v1 kernel:
an allow exception needs every requested access bit, a deny exception any of them.
"""
from __future__ import annotations

import logging
import os
import struct
import sys

from pyoci.cgroups.device_rules import ACCESS_ORDER, ANY, DeviceRule, Effective, effective
from pyoci.cgroups.fs import CgroupError

log = logging.getLogger(__name__)

DEV_TYPE = {"b": 1, "c": 2}                 # BPF_DEVCG_DEV_BLOCK / _CHAR
ACC_BITS = {"m": 1, "r": 2, "w": 4}         # BPF_DEVCG_ACC_MKNOD / _READ / _WRITE
_ALL = 7

# opcodes (linux/bpf_common.h, linux/bpf.h)
LDX_W = 0x61     # BPF_LDX | BPF_MEM | BPF_W
AND32_K = 0x54   # BPF_ALU | BPF_AND | BPF_K
RSH32_K = 0x74   # BPF_ALU | BPF_RSH | BPF_K
MOV32_X = 0xBC   # BPF_ALU | BPF_MOV | BPF_X
MOV32_K = 0xB4   # BPF_ALU | BPF_MOV | BPF_K
JNE_K = 0x55     # BPF_JMP | BPF_JNE | BPF_K
JEQ_K = 0x15     # BPF_JMP | BPF_JEQ | BPF_K
EXIT = 0x95      # BPF_JMP | BPF_EXIT


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    regs = (src << 4 | dst) if sys.byteorder == "little" else (dst << 4 | src)
    return struct.pack("=BBhi", code, regs, off, imm)


def _bits(access: str) -> int:
    return sum(ACC_BITS[c] for c in access)


def _block(e: DeviceRule, default_allow: bool) -> list[tuple[int, int, int, int | None]]:
    """One exception as (code, dst, src, imm) with off=None meaning 'jump to the next block'."""
    out: list[tuple[int, int, int, int | None]] = [(JNE_K, 2, 0, DEV_TYPE[e.type])]
    acc = _bits(e.access)
    if acc != _ALL:
        out.append((MOV32_X, 1, 3, 0))
        if default_allow:   # deny exception: matches when any requested bit is in it
            out += [(AND32_K, 1, 0, acc), (JEQ_K, 1, 0, 0)]
        else:               # allow exception: matches when no requested bit is outside it
            out += [(AND32_K, 1, 0, _ALL & ~acc), (JNE_K, 1, 0, 0)]
    if e.major != ANY:
        out.append((JNE_K, 4, 0, e.major))
    if e.minor != ANY:
        out.append((JNE_K, 5, 0, e.minor))
    return out


def build_program(eff: Effective) -> bytes:
    """The program's instructions (8 bytes each)."""
    prog = [insn(LDX_W, 2, 1, 0), insn(AND32_K, 2, imm=0xFFFF),     # r2 = device type
            insn(LDX_W, 3, 1, 0), insn(RSH32_K, 3, imm=16),         # r3 = requested access bits
            insn(LDX_W, 4, 1, 4), insn(LDX_W, 5, 1, 8)]             # r4 = major, r5 = minor
    for e in eff.exceptions:
        body = _block(e, eff.default_allow)
        n = len(body) + 2   # + "r0 = verdict; exit"
        for i, (code, dst, src, imm) in enumerate(body):
            jump = code in (JNE_K, JEQ_K)
            prog.append(insn(code, dst, src, off=n - i - 1 if jump else 0, imm=imm or 0))
        prog += [insn(MOV32_K, 0, imm=int(e.allow)), insn(EXIT)]
    prog += [insn(MOV32_K, 0, imm=int(eff.default_allow)), insn(EXIT)]
    return b"".join(prog)


def describe(eff: Effective) -> str:
    rules = ", ".join(f"{'allow' if e.allow else 'deny'} {e.v1_line()}" for e in eff.exceptions)
    return f"default {'allow' if eff.default_allow else 'deny'}" + (f"; {rules}" if rules else "")


def apply(cgroup_dir: str, rules: tuple[DeviceRule, ...]) -> None:
    """Load the program for `rules` and make it the only device program pyoci attached to cgroup_dir.

    The new program is attached before the old ones are detached, so there is no window without a filter.
    Raises: CgroupError naming linux.resources.devices.
    """
    from pyoci.errors import SyscallError
    from pyoci.linux import libc

    eff = effective(rules)
    code = build_program(eff)
    try:
        dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupError(f"linux.resources.devices: open {cgroup_dir!r}: {exc.strerror}", exc.errno) from None
    try:
        old = libc.bpf_prog_query(dfd, libc.BPF_CGROUP_DEVICE)
        pfd = libc.bpf_prog_load(libc.BPF_PROG_TYPE_CGROUP_DEVICE, code, "Apache", libc.BPF_CGROUP_DEVICE)
        try:
            libc.bpf_prog_attach(dfd, pfd, libc.BPF_CGROUP_DEVICE, libc.BPF_F_ALLOW_MULTI)
        finally:
            os.close(pfd)
        for pid in old:
            ofd = libc.bpf_prog_get_fd_by_id(pid)
            try:
                libc.bpf_prog_detach(dfd, ofd, libc.BPF_CGROUP_DEVICE)
            finally:
                os.close(ofd)
    except SyscallError as exc:
        raise CgroupError(f"linux.resources.devices: device filter for {cgroup_dir!r}: {exc}", exc.errno) from None
    finally:
        os.close(dfd)
    log.debug("devices: %d-insn BPF program on %s (%s)", len(code) // 8, cgroup_dir, describe(eff))


def attached(cgroup_dir: str) -> list[int]:
    """Ids of device programs attached to cgroup_dir (tests, diagnostics)."""
    from pyoci.linux import libc
    dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return libc.bpf_prog_query(dfd, libc.BPF_CGROUP_DEVICE)
    finally:
        os.close(dfd)


__all__ = ["ACCESS_ORDER", "apply", "attached", "build_program", "describe"]
