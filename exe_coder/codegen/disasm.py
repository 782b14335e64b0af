"""Disassemble AArch64 code with capstone: one line a word, for snapshots and ``inspect``."""

from __future__ import annotations

from functools import lru_cache

import capstone


@lru_cache(maxsize=1)
def _capstone() -> capstone.Cs:
    return capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


def decode_word(word: bytes, addr: int = 0) -> tuple[str, str] | None:
    """(mnemonic, operands) of one 4-byte instruction, or None if it is not a valid one."""
    for insn in _capstone().disasm(word, addr, 1):
        return insn.mnemonic, insn.op_str
    return None


def disassemble(code: bytes, addr: int) -> list[str]:
    """``'0x100000290  52800229  mov w9, #0x11'`` for each word of ``code`` loaded at ``addr``.

    A word capstone cannot decode is listed as ``.word`` rather than ending the listing, so a
    corrupted binary still shows everything after the bad word. A trailing partial word is
    listed as ``.byte``.
    """
    out = []
    whole = len(code) - len(code) % 4
    for off in range(0, whole, 4):
        word = code[off : off + 4]
        decoded = decode_word(word, addr + off)
        hex_word = int.from_bytes(word, "little")
        if decoded is None:
            text = f".word {hex_word:#010x}"
        else:
            text = f"{decoded[0]} {decoded[1]}".rstrip()
        out.append(f"{addr + off:#x}  {hex_word:08x}  {text}")
    if whole < len(code):
        tail = ", ".join(f"{b:#04x}" for b in code[whole:])
        out.append(f"{addr + whole:#x}  {'':8}  .byte {tail}")
    return out
