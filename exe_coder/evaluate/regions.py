"""Track B's own evaluation: the model's image before ``finalize``, and where its bytes go wrong.

For each Track B prediction the model's image (the expanded token stream, before the UUID and
signature are filled in) is compared with the golden unsigned image of its example:

- ``image_exact_match_rate``: every byte equal;
- ``image_exact_either_order_rate``: every byte equal to the golden image of (a, b) or of (b, a):
  the same sum, so the same output -- what a run trained with ``target_order = "prompt"`` writes
  for a b-first phrasing. The regions and text fields below compare the model's image with the
  nearer of the two (fewer wrong bytes; as given on a tie), so a swap is not counted as two
  wrong fields;
- ``image_structural_ok_rate``: the verifier's structural rules except the two that involve the
  signature (``uuid``, ``code_signature``) hold for the model's image (its signature space zeroed);
- a breakdown of byte errors by region of the golden layout: the Mach-O header, each load
  command, the padding before ``__text``, each instruction word of ``__text`` (for ``movz``/``movk``
  words, the 16-bit operand field apart from the word's other fields; an operand held as decimal
  text, add_text's, is one region of its own, "a text"), the padding after it and ``__LINKEDIT``. A region counts the predictions with at least one wrong byte (bit, for the
  instruction fields) there, so a reader sees whether the model fails at structure or at
  encoding numbers into instruction fields;
- for an operand held as decimal text, the field read back (its bytes up to the first NUL) against
  the golden one: sign right, length right, characters right by place, whole text right -- how
  far the model is from copying the prompt's number.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from exe_coder.codegen.disasm import decode_word
from exe_coder.codegen.finalize import signature_size, unsigned_image
from exe_coder.codegen.program import ProgramTemplate
from exe_coder.dataset.golden import golden_image
from exe_coder.decode.image_text import ImageTextError, expand, text_to_tokens
from exe_coder.decode.prediction import Prediction
from exe_coder.runtime import macho as m
from exe_coder.runtime.validate import RULES

# Track B's tracks, unconstrained and the structural ablation: decode.track's image tracks, named
# here so evaluation does not load the decoder (a test keeps the two equal)
DECODING_ABLATIONS = frozenset({"strict_one_shot_structured"})  # a trained track decoded another way
IMAGE_TRACKS = frozenset({"strict_one_shot"}) | DECODING_ABLATIONS
SIGNATURE_RULES = ("uuid", "code_signature")  # hashes of the content: finalize's, not the model's
IMM16 = 0xFFFF << 5  # movz/movk imm16 field, bits 5..20
_MOVZ_MOVK = ((0x7F800000, 0x52800000), (0x7F800000, 0x72800000))  # (mask, value), sf ignored


@dataclass(frozen=True)
class Region:
    name: str
    start: int
    end: int
    bit_mask: int = 0  # for a field inside one 32-bit word: the bits it holds (0: whole bytes)


class RegionErrors(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str
    offset: int
    size: int  # bytes
    wrong_predictions: int  # predictions with a wrong byte (or bit of the field) here
    wrong_bytes: int  # summed over predictions (bits, for a field)


class TextFieldScore(BaseModel):
    """One operand's decimal text field, read back up to its first NUL, against the golden text."""

    model_config = ConfigDict(extra="forbid")

    operand: str
    n: int
    sign_rate: float  # a '-' where the golden text has one, and only there
    length_rate: float  # as many characters as the golden text
    char_rate: float  # of the golden text's characters, those the model wrote at the same place
    exact_rate: float


class ImageReport(BaseModel):
    """What only Track B shows: the model's image before finalize."""

    model_config = ConfigDict(extra="forbid")

    n: int
    image_exact_match_rate: float
    image_exact_either_order_rate: float | None = None  # None in reports written before it
    image_structural_ok_rate: float
    expanded_rate: float  # the token stream expanded to bytes at all
    length_mismatch: int  # predictions whose image is not the golden image's length
    regions: list[RegionErrors]
    text_fields: list[TextFieldScore] = []  # programs with operands as decimal text (add_text)


@lru_cache(maxsize=4)
def layout_regions(program: str) -> tuple[Region, ...]:
    """The named regions of ``program``'s unsigned golden image (its layout does not depend on operands)."""
    image = unsigned_image(golden_image(program, 0, 0))
    f = m.parse(image + bytes(signature_size(image)))
    regions = [Region("header", 0, 32)]
    for i, cmd in enumerate(f.commands):
        regions.append(Region(f"lc[{i}] {m.COMMAND_NAMES.get(cmd.cmd, hex(cmd.cmd))}", cmd.offset, cmd.offset + cmd.cmdsize))
    text = next(s for seg in f.segments for s in seg.sections if s.sectname == "__text")
    regions.append(Region("padding before __text", regions[-1].end, text.offset))
    fields = {text.offset + s.offset: s for s in ProgramTemplate.load(program).text_sites}
    k, end = text.offset, text.offset + text.size
    while k < end:
        if k in fields:  # an operand's text field: one region, whatever its width
            site = fields[k]
            regions.append(Region(f"{site.operand} text", k, k + site.width))
            k += site.width
            continue
        word = image[k : min(k + 4, end, *(o for o in fields if o > k))]  # a word, or bytes before a field
        decoded = decode_word(word) if len(word) == 4 else None
        name = f"__text[{(k - text.offset) // 4}] {decoded[0] if decoded else '.word' if len(word) == 4 else '.byte'}"
        if decoded and any(struct.unpack("<I", word)[0] & mask == want for mask, want in _MOVZ_MOVK):
            regions.append(Region(f"{name} operand field", k, k + 4, IMM16))
            regions.append(Region(f"{name} other fields", k, k + 4, 0xFFFFFFFF & ~IMM16))
        else:
            regions.append(Region(name, k, k + len(word)))
        k += len(word)
    linkedit = f.segment("__LINKEDIT")
    regions.append(Region("padding after __text", text.offset + text.size, linkedit.fileoff))
    regions.append(Region("__LINKEDIT", linkedit.fileoff, len(image)))
    return tuple(regions)


def model_image(p: Prediction) -> bytes | None:
    """The bytes the model wrote for a Track B prediction (None when its tokens do not expand)."""
    try:
        return expand(text_to_tokens(p.text))
    except ImageTextError:
        return None


def region_errors(model: bytes, gold: bytes, regions: Sequence[Region]) -> list[int]:
    """Wrong bytes (bits, for a field) of ``model`` in each region; bytes past its end are wrong."""
    out = []
    for r in regions:
        if r.bit_mask:
            if len(model) < r.end:  # the word is missing: every bit of the field is wrong
                out.append(bin(r.bit_mask).count("1"))
                continue
            diff = (struct.unpack("<I", model[r.start : r.end])[0] ^ struct.unpack("<I", gold[r.start : r.end])[0]) & r.bit_mask
            out.append(bin(diff).count("1"))
        else:
            a, b = model[r.start : r.end], gold[r.start : r.end]
            out.append(sum(x != y for x, y in zip(a, b)) + (len(b) - len(a)))
    return out


def field_text(image: bytes, region: Region) -> bytes:
    """A text field's characters: its bytes up to the first NUL (what add_text's parser reads)."""
    return image[region.start : region.end].split(b"\0", 1)[0]


def text_field_scores(pairs: Sequence[tuple[bytes, bytes]], regions: Sequence[Region]) -> list[TextFieldScore]:
    """Per text-field region ("a text", ...): ``pairs`` of (model image, golden image) read back."""
    scores = []
    for r in (r for r in regions if r.name.endswith(" text")):
        sign = length = chars = total = exact = 0
        for model, gold in pairs:
            got, want = field_text(model, r), field_text(gold, r)
            sign += got.startswith(b"-") == want.startswith(b"-")
            length += len(got) == len(want)
            chars += sum(x == y for x, y in zip(got, want))
            total += len(want)
            exact += got == want
        n = len(pairs)
        scores.append(TextFieldScore(
            operand=r.name.removesuffix(" text"), n=n, sign_rate=sign / n, length_rate=length / n,
            char_rate=chars / max(total, 1), exact_rate=exact / n,
        ))
    return scores


def structural_ok(image: bytes) -> bool:
    """The non-signature structural rules hold for ``image`` with its signature space zeroed."""
    try:
        f = m.parse(image + bytes(signature_size(image)))
    except (m.MachOFormatError, struct.error):
        return False
    return all(rule.check(f) is None for rule in RULES if rule.name not in SIGNATURE_RULES)


def image_report(predictions: Sequence[Prediction]) -> ImageReport | None:
    """The Track B section of a report; None when no prediction is Track B's."""
    preds = [p for p in predictions if p.track in IMAGE_TRACKS]
    if not preds:
        return None
    exact = either = structural = expanded = mismatch = 0
    program = preds[0].example.program
    regions = layout_regions(program)
    wrong_preds, wrong_bytes = [0] * len(regions), [0] * len(regions)
    pairs = []  # (model image, golden image) of the predictions laid out like the first
    for p in preds:
        image = model_image(p)
        if image is None:
            image = b""
        else:
            expanded += 1
        regs = regions if p.example.program == program else layout_regions(p.example.program)
        given, swapped = (unsigned_image(golden_image(p.example.program, *ab)) for ab in
                          ((p.example.a, p.example.b), (p.example.b, p.example.a)))
        errors = [region_errors(image, gold, regs) for gold in (given, swapped)]
        nearer = 1 if sum(errors[1]) < sum(errors[0]) else 0
        gold = (given, swapped)[nearer]
        exact += image == given
        either += image in (given, swapped)
        mismatch += len(image) != len(gold)
        structural += bool(image) and structural_ok(image)
        if p.example.program == program:
            pairs.append((image, gold))
        for i, k in enumerate(errors[nearer]):
            wrong_preds[i] += k > 0
            wrong_bytes[i] += k
    n = len(preds)
    return ImageReport(
        n=n,
        image_exact_match_rate=exact / n,
        image_exact_either_order_rate=either / n,
        image_structural_ok_rate=structural / n,
        expanded_rate=expanded / n,
        length_mismatch=mismatch,
        regions=[
            RegionErrors(region=r.name, offset=r.start, size=r.end - r.start, wrong_predictions=wp, wrong_bytes=wb)
            for r, wp, wb in zip(regions, wrong_preds, wrong_bytes)
        ],
        text_fields=text_field_scores(pairs, regions),
    )


def markdown_lines(report: ImageReport) -> list[str]:
    """The report's Track B section: the model's image, then its byte errors by region."""
    lines = [
        "## The model's image (Track B, before finalize)",
        "",
        f"- image exact match (golden unsigned image): {report.image_exact_match_rate:.3f} of {report.n}"
        + ("" if report.image_exact_either_order_rate is None
           else f"; with the operands in either order: {report.image_exact_either_order_rate:.3f}"),
        f"- structural rules without the signature's (uuid, code_signature): {report.image_structural_ok_rate:.3f}",
        f"- token stream expanded to bytes: {report.expanded_rate:.3f}; wrong length: {report.length_mismatch}",
        "",
        "### Byte errors by region",
        "",
        "Predictions with a wrong byte in the region (operand fields: a wrong bit), and the wrong bytes (bits) summed;",
        "each image against the golden image of its operands in the nearer order (a sum's two orders print the same).",
        "",
        "| region | offset | bytes | predictions wrong | bytes (bits) wrong |",
        "|---|---|---|---|---|",
    ]
    for r in report.regions:
        lines.append(f"| {r.region} | {r.offset:#x} | {r.size} | {r.wrong_predictions} | {r.wrong_bytes} |")
    if report.text_fields:
        lines += [
            "",
            "### Operand text fields read back",
            "",
            "Each field up to its first NUL against the golden text: sign, length, characters by place, whole text.",
            "",
            "| operand | n | sign right | length right | characters right | exact |",
            "|---|---|---|---|---|---|",
        ]
        for f in report.text_fields:
            lines.append(
                f"| {f.operand} | {f.n} | {f.sign_rate:.3f} | {f.length_rate:.3f} | {f.char_rate:.3f} | {f.exact_rate:.3f} |"
            )
    return lines + [""]
