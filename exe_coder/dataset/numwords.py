"""Integers as English words ("minus forty-two", "three thousand and five") and back.

Hand-written so that nothing is downloaded at run time; the default style matches the
``num2words`` package (British "and", commas between groups), which the tests use as the
reference. The styles exist so that a stage can vary how numbers are written: a prompt
reader has to understand the words, not match one fixed spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
MAX_ABS = 10**12 - 1  # below a trillion: far beyond a signed 32-bit operand


@dataclass(frozen=True)
class WordStyle:
    """How to spell a number: ``negative`` word, British "and" before the last part, commas."""

    negative: str = "minus"
    use_and: bool = True
    commas: bool = True


def _below_hundred(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + ("" if ones == 0 else "-" + ONES[ones])


def _below_thousand(n: int, use_and: bool) -> str:
    hundreds, rest = divmod(n, 100)
    if hundreds == 0:
        return _below_hundred(rest)
    head = ONES[hundreds] + " hundred"
    if rest == 0:
        return head
    return head + (" and " if use_and else " ") + _below_hundred(rest)


def to_words(n: int, style: WordStyle = WordStyle()) -> str:
    """``-3005`` -> ``"minus three thousand and five"`` (in the default style)."""
    if abs(n) > MAX_ABS:
        raise ValueError(f"{n} is out of range for number words (|n| <= {MAX_ABS})")
    if n < 0:
        return f"{style.negative} {to_words(-n, style)}"
    if n == 0:
        return "zero"
    groups: list[str] = []  # "three thousand", "two hundred and five", ...
    rest = n
    for value, name in SCALES:
        count, rest = divmod(rest, value)
        if count:
            groups.append(f"{_below_thousand(count, style.use_and)} {name}")
    if rest:
        tail = _below_thousand(rest, style.use_and)
        if groups and rest < 100 and style.use_and:
            # "three thousand and five": the "and" joins the last small part, no comma
            return (", " if style.commas else " ").join(groups) + " and " + tail
        groups.append(tail)
    return (", " if style.commas else " ").join(groups)


def to_grouped(n: int) -> str:
    """Digits with thousands separators: ``-1250`` -> ``"-1,250"``."""
    return f"{n:,}"


def to_mixed(n: int, style: WordStyle = WordStyle()) -> str:
    """Digits for the thousands and hundreds, words for the rest: ``4250`` ->
    ``"4 thousand 2 hundred and fifty"``, ``-42`` -> ``"minus forty-two"``."""
    if abs(n) > MAX_ABS:
        raise ValueError(f"{n} is out of range for number words (|n| <= {MAX_ABS})")
    if n < 0:
        return f"{style.negative} {to_mixed(-n, style)}"
    thousands, rest = divmod(n, 1000)
    hundreds, tail = divmod(rest, 100)
    parts = ([f"{thousands} thousand"] if thousands else []) + ([f"{hundreds} hundred"] if hundreds else [])
    if tail or not parts:
        joiner = "and " if parts and style.use_and else ""
        parts.append(joiner + _below_hundred(tail))
    return " ".join(parts)


_WORD_VALUES = {word: i for i, word in enumerate(ONES)} | {
    word: 10 * i for i, word in enumerate(TENS) if word != "_"
}
_SCALE_VALUES = {name: value for value, name in SCALES}
_NEGATIVE_WORDS = {"minus", "negative"}


def from_words(text: str) -> int:
    """Parse what :func:`to_words` or :func:`to_mixed` writes, in any style; ``ValueError`` otherwise."""
    words = [w for w in re.split(r"[\s,\-]+", text.strip().lower()) if w and w != "and"]
    if not words:
        raise ValueError(f"no number in {text!r}")
    sign = 1
    if words[0] in _NEGATIVE_WORDS:
        sign, words = -1, words[1:]
    total = group = 0
    seen_any = False
    for word in words:
        if word in _WORD_VALUES:
            group += _WORD_VALUES[word]
        elif word.isascii() and word.isdigit():  # to_mixed's "4 thousand 2 hundred"
            group += int(word)
        elif word == "hundred":
            group *= 100
        elif word in _SCALE_VALUES:
            total += group * _SCALE_VALUES[word]
            group = 0
        else:
            raise ValueError(f"{word!r} is not a number word in {text!r}")
        seen_any = True
    if not seen_any:
        raise ValueError(f"no number in {text!r}")
    return sign * (total + group)
