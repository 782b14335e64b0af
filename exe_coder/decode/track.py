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
toolchain patches the program template's golden image (``reconstruct``). Track B
(``strict_one_shot``, ``FullImageTrack``) is the second: the model writes the whole image and
only ``finalize`` runs after it; ``StructuredImageTrack`` decodes Track B's weights under masks
that hold the image's structure fixed (an ablation: ``infer --track``). A track whose tokens are
not UTF-8 text also says how its token ids become text (``target_tokens``, ``decode_tokens``)
and how many it may generate (``max_tokens``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from exe_coder.codegen.finalize import finalize_unsigned, unsigned_image
from exe_coder.dataset.golden import golden_image
from exe_coder.dataset.operand_spans import prompt_order
from exe_coder.dataset.records import Example, patch_text
from exe_coder.decode import image_text
from exe_coder.decode.grammar import DecodeGrammar, TokenMasks, compile_grammar
from exe_coder.decode.image_structure import structure_masks
from exe_coder.decode.reconstruct import Reconstruction, reconstruct
from exe_coder.errors import UserError
from exe_coder.model.tokenizer import Tokenizer

# What the add template's operand encodings (movz/movk + sxtw) can hold: the default bounds when
# no training config gives narrower ones (the oracle and the regex baseline).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class Track(ABC):
    name: ClassVar[str]  # the config's [data].track value
    language: ClassVar[str]  # what its targets are ("patch", "image"): weights decode under any track of theirs

    @abstractmethod
    def target(self, example: Example) -> str:
        """The text a model is trained to write for ``example``."""

    @property
    @abstractmethod
    def constraint(self) -> TokenMasks | None:
        """The token masks decoding runs under, or None for unconstrained decoding."""

    @abstractmethod
    def realize(self, text: str, program: str) -> Reconstruction:
        """The executable ``text`` describes for ``program``, or the reason there is none."""

    # Token ids <-> text. A track whose text is its tokens' UTF-8 (Track A) keeps these defaults;
    # one whose tokens are not text (Track B's image bytes) spells them its own way.
    max_tokens: ClassVar[int | None] = None  # generation's limit; None: the grammar's longest sentence

    target_order: str = "as_given"  # the config's [data].target_order

    def target_operands(self, example: Example) -> tuple[int, int]:
        """(a, b) as the target writes them: as given, or with ``target_order = "prompt"`` in the
        prompt's order (found with the gold operands in hand: training's label, never an input)."""
        if self.target_order == "prompt":
            return prompt_order(example.prompt, example.a, example.b)
        return example.a, example.b

    def target_tokens(self, example: Example) -> list[int]:
        """The token ids of ``target(example)`` (EOS not included): what training reads."""
        return list(self.target(example).encode("utf-8"))

    def decode_tokens(self, ids: list[int]) -> str:
        """The text of generated ids (up to EOS): what ``realize`` reads and a prediction stores."""
        return Tokenizer().decode_text(ids)


class PatchTrack(Track):
    """Track A: operands as a patch (``A=17;B=-4\\n``) under ``grammar/track_a.lark`` within
    [min_int, max_int]; the binary is the program template patched and finalized."""

    name = "template_delta_operand_patch"
    language = "patch"

    def __init__(
        self, min_int: int = INT32_MIN, max_int: int = INT32_MAX, program: str | None = None, target_order: str = "as_given"
    ) -> None:
        del program  # the grammar bounds what is written, whatever the program
        self.grammar = compile_grammar(min_int, max_int)
        self.target_order = target_order

    def target(self, example: Example) -> str:
        """``A=a;B=b``, the operands in ``target_operands``' order."""
        return patch_text(*self.target_operands(example))

    @property
    def constraint(self) -> DecodeGrammar:
        return self.grammar

    def realize(self, text: str, program: str) -> Reconstruction:
        return reconstruct(text, self.grammar, program)

    def __str__(self) -> str:
        return f"{self.name}, bounds [{self.grammar.min_int}, {self.grammar.max_int}]"


class FullImageTrack(Track):
    """Track B (the seed's ``strict_one_shot`` / ``full_hex``): the model writes every byte of the
    image before the code signature, LC_UUID left zero (``image_text``: bytes, zero runs
    compressed), unconstrained. ``realize`` expands the tokens and runs ``finalize_unsigned`` (fill
    the UUID, append the ad-hoc signature: the linker's or codesign's step) -- no template, patch
    table or reconstructor, so ``program`` is ignored: the model wrote everything.

    The decode bounds are accepted (the config's decoding record carries them) and not used.
    Given the program its images are of, generation may run to that program's budget
    (``PROGRAM_MAX_TOKENS``: add_text's images are longer than add's); otherwise to ``max_tokens``.
    """

    name = "strict_one_shot"
    language = "image"
    max_tokens = 600  # add's golden targets are 506-510 tokens (int32 extremes: 510); room for a longer wrong one
    # Programs with longer images, each with ~15% room (a test holds every shipped template to it).
    # A table, not a measurement: decoding never builds a golden image, even to count its tokens.
    PROGRAM_MAX_TOKENS: ClassVar[dict[str, int]] = {"add_text": 680}  # 567-587 tokens (the digits' count)

    def __init__(
        self, min_int: int = INT32_MIN, max_int: int = INT32_MAX, program: str | None = None, target_order: str = "as_given"
    ) -> None:
        self.min_int, self.max_int = min_int, max_int
        self.max_tokens = self.PROGRAM_MAX_TOKENS.get(program, type(self).max_tokens)
        self.target_order = target_order

    def target(self, example: Example) -> str:
        return image_text.tokens_to_text(self.target_tokens(example))

    def target_tokens(self, example: Example) -> list[int]:
        """The golden unsigned image of the operands in ``target_operands``' order (either order
        is the same sum, so the same program output)."""
        golden = golden_image(example.program, *self.target_operands(example))
        return list(image_text.encode_image(unsigned_image(golden)))

    def decode_tokens(self, ids: list[int]) -> str:
        return image_text.tokens_to_text(ids)

    @property
    def constraint(self) -> None:
        return None

    def model_image(self, text: str) -> bytes:
        """The bytes the model wrote (before finalize); ImageTextError when the text is no stream."""
        return image_text.expand(image_text.text_to_tokens(text))

    def realize(self, text: str, program: str) -> Reconstruction:
        del program  # the model wrote every byte; nothing is taken from the program template
        try:
            image = finalize_unsigned(self.model_image(text))
        except ValueError as err:  # ImageTextError, or no place for the UUID or signature
            return ImageRealization(None, None, " ".join(str(err).split()))
        return ImageRealization(None, image)

    def __str__(self) -> str:
        return f"{self.name}, unconstrained, full image"


class StructuredImageTrack(FullImageTrack):
    """Track B's structural-constraint ablation: the same target and realization, decoded under
    ``image_structure.structure_masks(program)``: every byte no operand decides is held to the
    program's, the operand fields and zero-run lengths are the model's. Reported beside the
    unconstrained result under its own name, never in its place. Unlike plain Track B it reads
    the program template: the masks are built from it."""

    name = "strict_one_shot_structured"

    def __init__(
        self, min_int: int = INT32_MIN, max_int: int = INT32_MAX, program: str | None = None, target_order: str = "as_given"
    ) -> None:
        super().__init__(min_int, max_int, program, target_order)
        if program is None:
            raise UserError(f"track {self.name} holds a program's structure fixed: it needs the program")
        self.masks = structure_masks(program)
        self.max_tokens = self.masks.max_tokens  # every sentence ends by then

    @property
    def constraint(self) -> TokenMasks:
        return self.masks

    def __str__(self) -> str:
        return f"{self.name}, structure held fixed, operand fields free"


class ImageRealization(Reconstruction):
    """Track B's result: no operands were written, so 'parsed' means the stream became an image."""

    @property
    def parsed(self) -> bool:
        return self.image is not None


TRACKS: dict[str, type[Track]] = {
    t.name: t for t in (PatchTrack, FullImageTrack, StructuredImageTrack)
}
TRACK_ALIASES = {"a": PatchTrack.name, "b": FullImageTrack.name}  # run-stage --track


def track_for(
    name: str,
    *,
    min_int: int | None = None,
    max_int: int | None = None,
    program: str | None = None,
    target_order: str = "as_given",
) -> Track:
    """The track a config names, with its decode bounds (the template's int32 range by default),
    when known the program it realizes (Track B sizes its generation budget by it), and the
    order training's targets write the operands in."""
    if name not in TRACKS:
        raise UserError(f"track {name!r} is not implemented; implemented: {', '.join(TRACKS)}")
    lo, hi = INT32_MIN if min_int is None else min_int, INT32_MAX if max_int is None else max_int
    return TRACKS[name](lo, hi, program, target_order)


def program_of(examples: list[Example], where: str = "<data>") -> str:
    """The one program template a set of examples is built from (a run trains on one shape)."""
    programs = sorted({e.program for e in examples})
    if len(programs) != 1:
        raise UserError(f"examples name {len(programs)} program templates ({', '.join(programs)}); a run needs one", where)
    return programs[0]
