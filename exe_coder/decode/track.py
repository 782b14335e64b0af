"""A track: what one way of producing an executable contributes to train, decode and evaluate.

The research plan runs two tracks under one evaluator. A track says three things, and nothing
else differs between them:

- ``target(example)``: the text the model is trained to write for an example (train);
- ``constraint``: the decode grammar whose token masks the decoder runs under, or None for
  unconstrained decoding (decode);
- ``realize(text, program)``: how a decoded text becomes an executable, or why it cannot
  (decode, evaluate, and later RL rollouts).

Train, infer, the training eval hook and ``generate`` call only this interface, so the next
track is a new subclass and a new ``TRACKS`` entry, not a fork of those modules. Track A
(``template_delta_operand_patch``) is the first: the model writes ``A=<int>;B=<int>\\n`` and the
toolchain patches the program template's golden image (``reconstruct``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from exe_coder.dataset.records import Example, patch_text
from exe_coder.decode.grammar import DecodeGrammar, compile_grammar
from exe_coder.decode.reconstruct import Reconstruction, reconstruct
from exe_coder.errors import UserError

# What the add template's operand encodings (movz/movk + sxtw) can hold: the default bounds when
# no training config gives narrower ones (the oracle and the regex baseline).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class Track(ABC):
    name: ClassVar[str]  # the config's [data].track value

    @abstractmethod
    def target(self, example: Example) -> str:
        """The text a model is trained to write for ``example``."""

    @property
    @abstractmethod
    def constraint(self) -> DecodeGrammar | None:
        """The grammar decoding runs under (token masks), or None for unconstrained decoding."""

    @abstractmethod
    def realize(self, text: str, program: str) -> Reconstruction:
        """The executable ``text`` describes for ``program``, or the reason there is none."""


class PatchTrack(Track):
    """Track A: operands as a patch (``A=17;B=-4\\n``) under ``grammar/track_a.lark`` within
    [min_int, max_int]; the binary is the program template patched and finalized."""

    name = "template_delta_operand_patch"

    def __init__(self, min_int: int = INT32_MIN, max_int: int = INT32_MAX) -> None:
        self.grammar = compile_grammar(min_int, max_int)

    def target(self, example: Example) -> str:
        return patch_text(example.a, example.b)

    @property
    def constraint(self) -> DecodeGrammar:
        return self.grammar

    def realize(self, text: str, program: str) -> Reconstruction:
        return reconstruct(text, self.grammar, program)

    def __str__(self) -> str:
        return f"{self.name}, bounds [{self.grammar.min_int}, {self.grammar.max_int}]"


TRACKS: dict[str, type[Track]] = {PatchTrack.name: PatchTrack}


def track_for(name: str, *, min_int: int | None = None, max_int: int | None = None) -> Track:
    """The track a config names, with its decode bounds (the template's int32 range by default)."""
    if name not in TRACKS:
        raise UserError(f"track {name!r} is not implemented; implemented: {', '.join(TRACKS)}")
    return TRACKS[name](INT32_MIN if min_int is None else min_int, INT32_MAX if max_int is None else max_int)


def program_of(examples: list[Example], where: str = "<data>") -> str:
    """The one program template a set of examples is built from (a run trains on one shape)."""
    programs = sorted({e.program for e in examples})
    if len(programs) != 1:
        raise UserError(f"examples name {len(programs)} program templates ({', '.join(programs)}); a run needs one", where)
    return programs[0]
