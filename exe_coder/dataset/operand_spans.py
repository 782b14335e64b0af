"""Where a prompt writes its operands: ``plan`` finds, once per row, the span of each operand's
magnitude (any rendering the dataset sampler writes -- digits, "1,250", words, "4 thousand 2
hundred" -- case-insensitively, as a whole number) with its form, word style and letter case.

Training reads it twice, and only with the gold operands in hand (never at inference): digit
renaming re-renders the spans (``train.renaming``), and a prompt-order target writes the operands
in the order the prompt does (``prompt_order``).
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
    claimed = _claimed(_found(prompt, a, b))
    if claimed is None:
        return None  # an operand missing or written twice: which one to rename is unclear
    spans = []
    for s in sorted(claimed, key=lambda s: s.operand):
        case = _case(prompt, prompt[s.start : s.end], s.start)
        if case is None:
            return None
        spans.append(Span(s.start, s.end, s.operand, s.form, s.use_and, s.commas, case))
    return spans[0], spans[1]


def _found(prompt: str, a: int, b: int) -> list[tuple[int, Span]]:
    """(length, span) of every whole rendering of |a| and |b| in ``prompt``."""
    found: list[tuple[int, Span]] = []
    lower = prompt.translate(_ASCII_LOWER)  # renderings are ASCII; this keeps every index in place
    for operand, value in enumerate((a, b)):
        for text, kind in _renderings(abs(value), operand):
            start = lower.find(text)
            while start >= 0:
                end = start + len(text)
                if _whole(prompt, start, end, text):
                    found.append((len(text), Span(start, end, operand, kind.form, kind.use_and, kind.commas)))
                start = lower.find(text, start + 1)
    return found


def _claimed(found: list[tuple[int, Span]]) -> list[Span] | None:
    """The spans that stand, longest first (a shorter match inside a longer one is part of it);
    None unless each operand has exactly one."""
    claimed: list[Span] = []
    for _, span in sorted(found, key=lambda f: -f[0]):
        if not any(span.start < c.end and c.start < span.end for c in claimed):
            claimed.append(span)
    return claimed if sorted(s.operand for s in claimed) == [0, 1] else None


def prompt_order(prompt: str, a: int, b: int) -> tuple[int, int]:
    """(a, b) in the order the prompt writes them: (b, a) where b's magnitude comes first. As
    given where that cannot be told (an operand not found once, or |a| == |b|): either order is
    a right answer for the sum, so a row left as given teaches nothing wrong."""
    claimed = _claimed(_found(prompt, a, b)) if abs(a) != abs(b) else None
    if claimed is None:
        return a, b
    first = min(claimed, key=lambda s: s.start)
    return (b, a) if first.operand == 1 else (a, b)
