"""Spec -> drawn examples (prompt, a, b, slices): deterministic by seed, one process.

Sampling is cheap next to building binaries, so it runs in the parent process, in a fixed
order, from random generators seeded by (spec seed, split name). The result does not depend
on the number of workers, and stages that share a seed and a train declaration share their
train split exactly (stage1, stage1a and stage1b differ only where they are meant to).

Each split is stratified: its size is shared out evenly over the cells sign pattern x
magnitude pair it declares, and over its templates (in the ratio of their prompt sets' shares,
where the split gives them; a split that weights the sign its sub frames write the subtrahend
with re-draws b's sign for those frames). No (template, a, b) and no prompt text
is drawn twice in a stage, so no prompt text is in two splits.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from itertools import product

from exe_coder.dataset.numwords import WordStyle, to_grouped, to_mixed, to_words
from exe_coder.errors import UserError
from exe_coder.spec import phrasing
from exe_coder.spec.model import (
    NUMERAL_STYLES,
    SPLITS,
    SUBTRAHEND_SIGNS,
    Frame,
    IntRange,
    MagnitudePair,
    Phrasebook,
    PromptTemplate,
    SignPattern,
    Spec,
    Split,
    SubtrahendWeights,
    cells,
    operand_intervals,
    sign_pattern,
)

RANDOM_TRIES = 64  # random draws per slot before enumerating what is left of its cell
ENUMERATE_LIMIT = 4_000_000  # a cell larger than this cannot have run out by chance


@dataclass(frozen=True)
class Draw:
    """One example before its golden binary exists."""

    id: str
    split: Split
    prompt: str
    template_id: str
    a: int
    b: int
    sign_pattern: SignPattern
    magnitude_pair: MagnitudePair
    numerals: str  # how a and b are written, "<style of a>/<style of b>" (NUMERAL_STYLES)


def quotas(spec: Spec, split: Split, size: int) -> list[tuple[tuple[SignPattern, MagnitudePair], int]]:
    """How many examples each cell of a split gets: even shares, the first cells take the rest."""
    split_cells = cells(spec.signs, spec.split(split).pairs)
    base, extra = divmod(size, len(split_cells))
    return [(cell, base + (1 if i < extra else 0)) for i, cell in enumerate(split_cells)]


class _Pool:
    """The operand values of one (sign, bucket): uniform draws over disjoint ranges."""

    def __init__(self, ranges: list[IntRange]) -> None:
        self.ranges = ranges
        self.size = sum(len(r) for r in ranges)

    def draw(self, rng: random.Random) -> int:
        k = rng.randrange(self.size)
        for r in self.ranges:
            if k < len(r):
                return r.lo + k
            k -= len(r)
        raise AssertionError("unreachable")

    def values(self):
        for r in self.ranges:
            yield from range(r.lo, r.hi + 1)


class _Renderer:
    """Writes an operand in a numeral style the spec weights (digits, words, ...) and a
    phrasebook frame as one of its phrasings, in one of its letter cases."""

    STYLES = tuple(
        WordStyle(negative=neg, use_and=use_and, commas=commas)
        for neg in ("minus", "negative")
        for use_and in (True, False)
        for commas in (False, True)
    )

    def __init__(self, spec: Spec) -> None:
        self.weights = spec.numerals.weights()
        self.books = {f.id: p for p in spec.prompt_sets if isinstance(p, Phrasebook) for f in p.frames}

    def number(self, x: int, rng: random.Random) -> tuple[str, str]:
        """(x written out, the name of its numeral style)."""
        if not any(self.weights[1:]):
            return str(x), "digits"  # digits only: no draw, so digit-only stages sample as they always did
        style = NUMERAL_STYLES[rng.choices(range(len(self.weights)), weights=self.weights)[0]]
        if style == "digits":
            return str(x), style
        if style == "words":
            return to_words(x, rng.choice(self.STYLES)), style
        if style == "grouped":
            return to_grouped(x), style
        if style == "unicode":
            return str(x).replace("-", "\u2212"), style
        return to_mixed(x, rng.choice(self.STYLES)), style

    def prompt(self, template: PromptTemplate, a: int, b: int, rng: random.Random) -> tuple[str, str]:
        """(the prompt, its numeral pair "<style of a>/<style of b>")."""
        book = self.books.get(template.id) if isinstance(template, Frame) else None
        text = template.text if book is None else phrasing.fill(book, template.text, rng)
        # a sub frame writes the subtrahend: "take 4 away from 17" is a=17, b=-4
        second = -b if isinstance(template, Frame) and template.op == "sub" else b
        (text_a, style_a), (text_b, style_b) = self.number(a, rng), self.number(second, rng)
        if _JUXTAPOSED.search(text) and not _is_digits(text_a) and not _is_digits(text_b):
            # "sum {a} {b}" with both in words can be split two ways ("one thousand two hundred
            # three" is 1000 + 203 or 1200 + 3): keep one operand in digits so it cannot.
            text_b, style_b = str(second), "digits"
        prompt = text.replace("{a}", text_a).replace("{b}", text_b)
        if book is not None:
            prompt = phrasing.apply_case(prompt, phrasing.pick_case(book, rng))
        return prompt, f"{style_a}/{style_b}"


def _with_subtrahend_sign(
    template: PromptTemplate, signs: SignPattern, weights: SubtrahendWeights | None, rng: random.Random
) -> SignPattern:
    """The slot's sign pattern, except in a sub frame of a split that weights the sign its
    subtrahend is written with: then b's sign is the opposite of the written sign drawn."""
    if weights is None or not (isinstance(template, Frame) and template.op == "sub"):
        return signs  # no draw: splits without the table sample as they always did
    written = SUBTRAHEND_SIGNS[rng.choices(range(2), weights=weights.weights())[0]]
    return signs[0] + ("-" if written == "positive" else "+")  # type: ignore[return-value]


_JUXTAPOSED = re.compile(r"\{a\}\s+\{b\}|\{b\}\s+\{a\}")


def _is_digits(text: str) -> bool:
    """Plain, grouped or Unicode-minus digits: a number that cannot run into its neighbour."""
    return text.lstrip("-\u2212").replace(",", "").isdigit()


def sample_stage(spec: Spec, sizes: dict[str, int] | None = None) -> dict[Split, list[Draw]]:
    """Draw every split of ``spec`` (sizes default to the spec's, ``sizes`` overrides some)."""
    sizes = sizes or {}
    used_keys: set[tuple[str, int, int]] = set()
    used_texts: set[str] = set()
    out: dict[Split, list[Draw]] = {}
    for split in SPLITS:
        size = sizes.get(split, spec.split(split).size)
        out[split] = _sample_split(spec, split, size, used_keys, used_texts)
    return out


def _sample_split(
    spec: Spec, split: Split, size: int, used_keys: set[tuple[str, int, int]], used_texts: set[str]
) -> list[Draw]:
    rng = random.Random(f"exe-coder/{spec.seed}/{split}")
    renderer = _Renderer(spec)
    pools: dict[tuple[str, str], _Pool] = {
        (sign, bucket): _Pool(operand_intervals(spec.operands, spec.magnitudes, sign, bucket))
        for sign in "+-"
        for bucket in ("core", "heldout")
    }
    slots = [cell for cell, n in quotas(spec, split, size) for _ in range(n)]
    rng.shuffle(slots)
    templates = spec.template_turns(split)
    rng.shuffle(templates)

    draws: list[Draw] = []
    for i, (signs, pair) in enumerate(slots):
        template = templates[i % len(templates)]
        signs = _with_subtrahend_sign(template, signs, spec.split(split).subtrahend, rng)
        bucket_a, bucket_b = pair.split("/")
        pool_a, pool_b = pools[(signs[0], bucket_a)], pools[(signs[1], bucket_b)]
        picked = None
        for _ in range(RANDOM_TRIES):
            a, b = pool_a.draw(rng), pool_b.draw(rng)
            if (template.id, a, b) in used_keys:
                continue
            text, numerals = renderer.prompt(template, a, b, rng)
            if text not in used_texts:
                picked = (a, b, text, numerals)
                break
        if picked is None:  # a crowded cell: this template first, then the split's others
            for k in range(len(templates)):
                candidate = templates[(i + k) % len(templates)]
                picked = _first_unused(spec, split, candidate, pool_a, pool_b, renderer, rng, used_keys, used_texts)
                if picked is not None:
                    template = candidate
                    break
        if picked is None:
            where = spec.split(split).where
            raise UserError(
                f"split {split}: ran out of distinct prompts with signs {signs} and magnitudes {pair}; "
                "ask for fewer examples or widen the operand range",
                spec.path if where is None else where.file,
                None if where is None else where.line,
            )
        a, b, text, numerals = picked
        used_keys.add((template.id, a, b))
        used_texts.add(text)
        assert sign_pattern(a, b) == signs
        draws.append(
            Draw(
                id=f"{spec.stage}-{split}-{i:06d}",
                split=split,
                prompt=text,
                template_id=template.id,
                a=a,
                b=b,
                sign_pattern=signs,
                magnitude_pair=pair,
                numerals=numerals,
            )
        )
    return draws


def _first_unused(spec, split, template, pool_a, pool_b, renderer, rng, used_keys, used_texts):
    """Pick at random among the (a, b) this template has not used yet; None if there are none."""
    if pool_a.size * pool_b.size > ENUMERATE_LIMIT:
        raise UserError(f"split {split}: sampling stalled in a cell of {pool_a.size * pool_b.size} operand pairs", spec.path)
    free = [(a, b) for a, b in product(pool_a.values(), pool_b.values()) if (template.id, a, b) not in used_keys]
    rng.shuffle(free)
    for a, b in free:
        text, numerals = renderer.prompt(template, a, b, rng)
        if text not in used_texts:
            return a, b, text, numerals
    return None
