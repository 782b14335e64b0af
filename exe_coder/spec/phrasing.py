"""Phrasebook frames -> phrasings: slot expansion (all of them, or one at random) and case.

A phrasing is a frame with every word slot filled: still holding ``{a}``, ``{b}`` and the
``{name}`` of any number slot. Enumerating them lets a spec load check held-out isolation
exactly and count what a phrasebook yields; drawing one is what sampling does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import product

from exe_coder.spec.model import CASE_STYLES, PLACEHOLDER, Frame, Phrasebook

MAX_PHRASINGS = 200_000  # per frame: enumerating more would make every spec load slow


def _tidy(text: str) -> str:
    """Runs of spaces to one, none at the ends: an empty slot leaves no double space."""
    return " ".join(part for part in text.split(" ") if part)


def count(book: Phrasebook, text: str, _seen: tuple[str, ...] = ()) -> int:
    """How many phrasings ``text`` expands to (an upper bound: two fills may coincide)."""
    n = 1
    for name in PLACEHOLDER.findall(text):
        slot = book.slot(name)
        if slot is None or slot.numbers is not None or name in _seen:
            continue
        n *= sum(count(book, w, (*_seen, name)) for w in slot.words)
    return n


def expand(book: Phrasebook, text: str) -> Iterator[str]:
    """Every filling of the word slots in ``text`` (number slots stay ``{name}``), untidied."""
    parts = PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
    choices: list[list[str]] = []
    for i, part in enumerate(parts):
        slot = book.slot(part) if i % 2 else None
        if i % 2 == 0 or slot is None or slot.numbers is not None:
            choices.append([part if i % 2 == 0 else "{" + part + "}"])
        else:
            choices.append([x for w in slot.words for x in expand(book, w)])
    for combo in product(*choices):
        yield "".join(combo)


def phrasings(book: Phrasebook, frame: Frame) -> set[str]:
    """The distinct phrasings of ``frame`` (tidied), before letter case is applied."""
    return {_tidy(t) for t in expand(book, frame.text)}


def cased_phrasings(book: Phrasebook, frame: Frame) -> set[str]:
    """The distinct phrasings with every letter case the phrasebook weights."""
    styles = [s for s, w in zip(CASE_STYLES, book.case.weights()) if w > 0]
    return {_protect_case(p, s) for p in phrasings(book, frame) for s in styles}


def fill(book: Phrasebook, text: str, rng: random.Random) -> str:
    """One phrasing of ``text`` at random: each slot picks an alternative uniformly, a number
    slot a number in its range (in digits); ``{a}`` and ``{b}`` are left for the operands."""

    def one(t: str) -> str:
        def sub(m) -> str:
            slot = book.slot(m.group(1))
            if slot is None:
                return m.group(0)
            if slot.numbers is not None:
                return str(rng.randint(slot.numbers.lo, slot.numbers.hi))
            return one(rng.choice(slot.words))

        return PLACEHOLDER.sub(sub, t)

    return _tidy(one(text))


def pick_case(book: Phrasebook, rng: random.Random) -> str:
    weights = book.case.weights()
    if sum(w > 0 for w in weights) == 1:
        return CASE_STYLES[next(i for i, w in enumerate(weights) if w > 0)]
    return rng.choices(CASE_STYLES, weights=weights)[0]


def apply_case(text: str, style: str) -> str:
    """The whole prompt (numbers in words too) in one letter case."""
    if style == "lower":
        return text.lower()
    if style == "upper":
        return text.upper()
    if style == "title":
        return text.title()
    if style == "sentence":
        return text[:1].upper() + text[1:]
    return text


def _protect_case(text: str, style: str) -> str:
    """``apply_case`` on a phrasing, leaving its placeholders as they are."""
    names = PLACEHOLDER.findall(text)
    masked = PLACEHOLDER.sub("\x00", text)
    cased = apply_case(masked, style).split("\x00")
    return "".join(piece + ("{" + names[i] + "}" if i < len(names) else "") for i, piece in enumerate(cased))
