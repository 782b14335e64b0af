"""Patch text -> executable: parse the decode language, then patch the template's golden image.

The model writes only operands (``A=17;B=-4\\n``); everything else -- the template's code, the
operand encodings at its patch sites, the UUID and code signature -- is derived by the
toolchain (``ProgramTemplate.patch``), so what the model produced and what was derived stay
apart. A text that is not a sentence of the grammar, or whose operands fall outside the decode
bounds or the template's operand range, gives no image: the caller records ``parse_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

from exe_coder.codegen.program import ProgramTemplate
from exe_coder.decode.grammar import DecodeGrammar

@dataclass(frozen=True)
class Reconstruction:
    operands: tuple[int, int] | None  # (a, b) when the text parsed within bounds
    image: bytes | None  # the finalized executable, when one could be made
    error: str = ""  # why there is no image, one line

    @property
    def parsed(self) -> bool:
        return self.operands is not None


def reconstruct(text: str, grammar: DecodeGrammar, program: str) -> Reconstruction:
    """The executable that ``text`` describes, or the reason there is none."""
    operands = grammar.parse(text)
    if operands is None:
        return Reconstruction(None, None, f"not a sentence of the decode grammar within [{grammar.min_int}, {grammar.max_int}]")
    return reconstruct_operands(*operands, program=program)


def reconstruct_operands(a: int, b: int, program: str) -> Reconstruction:
    """The template ``program`` patched with operands ``a`` and ``b`` (fast path, no assembler)."""
    try:
        image = ProgramTemplate.load(program).patch(a=a, b=b)
    except ValueError as err:  # operands outside what the template's encodings can hold
        return Reconstruction((a, b), None, " ".join(str(err).split()))
    return Reconstruction((a, b), image)
