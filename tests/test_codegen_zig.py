"""Differential test of the add template: zig's clang assembler and linker versus ours.

The same rendered source goes through ``python -m ziglang cc`` and through exe-coder; the
``__text`` bytes must be identical and both binaries must behave the same under the verifier.
zig costs ~0.1-0.3 s a binary, so only a handful of operand pairs (the extremes among them).
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
    return bytes(lief.MachO.parse(list(image)).at(0).get_section("__text").content)


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_zig_agrees(tmp_path: Path, a: int, b: int) -> None:
    add = ProgramTemplate.load("add")
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
