"""Digit renaming for operands written in any numeral form (words, "1,250", "4 thousand ..."):
the string-level twin of ``data.permute_digits``, for rows whose target digits are not copies of
digit runs in the prompt.

``plan`` finds, once per row, the span of each operand's magnitude in the prompt (any rendering
the dataset sampler writes, case-insensitively, as a whole number) and its form, style and letter
case; ``rename`` maps both magnitudes digitwise through a permutation of 1-9 (0 stays, so digit
counts and the zero pattern that decides "and"/commas stay too), re-renders each span in its own
form, style and case, and leaves everything else -- sign words included -- as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exe_coder.dataset.numwords import ONES, SCALES, TENS, WordStyle, to_grouped, to_mixed, to_words
from exe_coder.spec.phrasing import apply_case  # the case the prompt was written in

_NUMBER_WORDS = "|".join([*ONES, *(t for t in TENS if t != "_"), "hundred", *(name for _, name in SCALES)])
_SCALE = r"(?:hundred|thousand|million|billion)"
# Words around a span that make it part of a longer number, or a prompt that reads two ways.
_SCALE_AFTER = re.compile(rf"\s+{_SCALE}\b", re.IGNORECASE)
_WORD_AFTER = re.compile(rf",?\s+(?:and\s+)?(?:{_NUMBER_WORDS})\b", re.IGNORECASE)
_ENDS_IN_SCALE = re.compile(rf"{_SCALE}$", re.IGNORECASE)
_SCALE_BEFORE = re.compile(rf"\b{_SCALE},?\s+(?:and\s+)?$", re.IGNORECASE)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Span:
    """Where operand ``operand`` (0: a, 1: b) is written, and how: form, word style, letter case."""

    start: int
    end: int
    operand: int
    form: str  # digits | grouped | words | mixed
    use_and: bool = True
    commas: bool = True
    case: str = "lower"  # lower | upper | title | sentence (phrasing.apply_case) | none (no letters)


def render(magnitude: int, span: Span) -> str:
    """``magnitude`` written in ``span``'s form and style, lower case."""
    style = WordStyle(use_and=span.use_and, commas=span.commas)
    if span.form == "digits":
        return str(magnitude)
    if span.form == "grouped":
        return to_grouped(magnitude)
    if span.form == "words":
        return to_words(magnitude, style)
    return to_mixed(magnitude, style)


def _renderings(magnitude: int, operand: int) -> list[tuple[str, Span]]:
    """Every distinct text the sampler can write for ``magnitude`` (sign aside), longest first."""
    kinds = [Span(0, 0, operand, "digits"), Span(0, 0, operand, "grouped")]
    kinds += [Span(0, 0, operand, "words", u, c) for u in (True, False) for c in (True, False)]
    kinds += [Span(0, 0, operand, "mixed", u) for u in (True, False)]
    seen: dict[str, Span] = {}
    for kind in kinds:
        seen.setdefault(render(magnitude, kind), kind)  # equal texts stay equal after renaming
    return sorted(seen.items(), key=lambda item: -len(item[0]))


def _whole(prompt: str, start: int, end: int, text: str) -> bool:
    """Not part of a longer word or number: "forty" in "forty-two", "one" in "someone", "12" in
    "1,250", "64" in "arm64" or "64-bit" are not whole; nor is a number that the words around it
    continue ("five| thousand", "five hundred| and seven", "one thousand, |five")."""
    before, after = prompt[max(0, start - 2) : start], prompt[end : end + 2]
    if before[-1:].isalnum() or (before[-1:] in ("-", ",", ".") and before[:1].isalnum() and len(before) == 2):
        return False
    if after[:1].isalnum() or (after[:1] in ("-", ",", ".") and after[1:2].isalnum()):
        return False
    if _SCALE_AFTER.match(prompt, end):
        return False
    if text[:1].isalpha() and _SCALE_BEFORE.search(prompt, max(0, start - 24), start):
        return False  # words after a scale word continue its number; digits ("thousand and 92") cannot
    return not (_ENDS_IN_SCALE.search(text) and _WORD_AFTER.match(prompt, end))


def _case(prompt: str, span: str, start: int) -> str | None:
    """The letter case ``phrasing.apply_case`` left on ``span``; None if it is none of them."""
    if not any(c.isalpha() for c in span):
        return "none"
    if span == span.lower():
        return "lower"
    if span == span.upper():
        return "upper"
    title, sentence = span.title(), span[:1].upper() + span[1:].lower()
    # a capital mid-prompt is title case; at the start one word reads both ways: ask the prompt
    if span == title and (start > 0 or span != sentence or prompt == prompt.title()):
        return "title"
    return "sentence" if span == sentence else None


def plan(prompt: str, a: int, b: int) -> tuple[Span, Span] | None:
    """The spans of |a| and |b| in ``prompt``; None unless each is found exactly once, apart."""
    found: list[tuple[int, Span]] = []  # (length, span)
    lower = prompt.translate(_ASCII_LOWER)  # renderings are ASCII; this keeps every index in place
    for operand, value in enumerate((a, b)):
        for text, kind in _renderings(abs(value), operand):
            start = lower.find(text)
            while start >= 0:
                end = start + len(text)
                if _whole(prompt, start, end, text):
                    found.append((len(text), Span(start, end, operand, kind.form, kind.use_and, kind.commas)))
                start = lower.find(text, start + 1)
    claimed: list[Span] = []
    for _, span in sorted(found, key=lambda f: -f[0]):  # longest first: a shorter match inside is part of it
        if not any(span.start < c.end and c.start < span.end for c in claimed):
            claimed.append(span)
    if sorted(s.operand for s in claimed) != [0, 1]:
        return None  # an operand missing or written twice: which one to rename is unclear
    spans = []
    for s in sorted(claimed, key=lambda s: s.operand):
        case = _case(prompt, prompt[s.start : s.end], s.start)
        if case is None:
            return None
        spans.append(Span(s.start, s.end, s.operand, s.form, s.use_and, s.commas, case))
    return spans[0], spans[1]


def rename_int(value: int, perm: list[int]) -> int:
    """``value`` with each digit d written ``perm[d]`` (``perm[0] == 0``), sign kept."""
    magnitude = int("".join(str(perm[int(d)]) for d in str(abs(value))))
    return -magnitude if value < 0 else magnitude


def rename(prompt: str, a: int, b: int, spans: tuple[Span, Span], perm: list[int]) -> tuple[str, int, int]:
    """(prompt, a, b) with both operands renamed by ``perm`` and re-rendered in place."""
    new = (rename_int(a, perm), rename_int(b, perm))
    out, at = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out += [prompt[at : span.start], apply_case(render(abs(new[span.operand]), span), span.case)]
        at = span.end
    out.append(prompt[at:])
    return "".join(out), new[0], new[1]
