"""Differential test of the program templates: zig's clang assembler and linker versus ours.

The same rendered source goes through ``python -m ziglang cc`` and through exe-coder; the
``__text`` bytes must be identical and both binaries must behave the same under the verifier.
zig costs ~0.1-0.3 s a binary, so only a handful of operand pairs (the extremes among them).
Data in the code (``.ascii``, ``.zero``, the padding ``.p2align`` puts after it) and ``adr`` in
both directions are checked the same way on a source of their own.
"""

from __future__ import annotations

from pathlib import Path

import lief
import pytest

from exe_coder.codegen.reference import zig_build
from exe_coder.codegen.program import OPERAND_MAX, OPERAND_MIN, ProgramTemplate
from exe_coder.runtime.verify import verify

PAIRS = [(17, -4), (0, 0), (OPERAND_MIN, OPERAND_MIN), (OPERAND_MAX, OPERAND_MAX), (-1000, 999)]


def text_section(image: bytes) -> bytes:
    fat = lief.MachO.parse(list(image))  # held while reading: the section's bytes live in it
    return bytes(fat.at(0).get_section("__text").content)


@pytest.mark.parametrize("template", ["add", "add_text"])
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_zig_agrees(tmp_path: Path, template: str, a: int, b: int) -> None:
    add = ProgramTemplate.load(template)
    ours = add.build(a=a, b=b)
    theirs = zig_build(add.render(a=a, b=b), tmp_path)
    assert text_section(ours) == text_section(theirs)
    expected = f"{a + b}\n"
    ours_outcome = verify(ours, expected, native=False)
    theirs_outcome = verify(theirs, expected, native=False)
    assert ours_outcome.stdout_correct and theirs_outcome.stdout_correct, (ours_outcome, theirs_outcome)
    assert (ours_outcome.stdout, ours_outcome.exit_code, ours_outcome.instructions) == (
        theirs_outcome.stdout, theirs_outcome.exit_code, theirs_outcome.instructions,
    )  # fmt: skip


DATA_AND_ADR = r"""
    .text
    .globl _main
    .p2align 2
_main:
    adr     x1, Lfield                  // forwards, to data
    adr     x2, _main                   // backwards
    adr     x3, Lodd                    // forwards, to a byte off the word boundary
    nop
Lfield: .ascii "-2147483648\0"
    .ascii "a\n\t\"\\", "\000\1\101\x41z"
Lodd: .zero 3
    .p2align 3
Lafter:
    adr     x4, Lodd                    // backwards, past the data
    adr     x5, Lfield
    ret
"""


def test_zig_agrees_on_data_and_adr(tmp_path: Path) -> None:
    from exe_coder.codegen.assembler import assemble

    ours = assemble(DATA_AND_ADR)
    theirs = zig_build(DATA_AND_ADR, tmp_path, name="data")
    assert ours.symbols["Lafter"] % 8 == 0 and len(ours.code) % 4 == 0
    assert ours.code == text_section(theirs)
