"""The validated form of a .spec file: what a dataset stage promises.

Source positions (``where``) ride along for error messages but are excluded from dumps, so a
spec's hash and snapshots depend on what it says, not on its layout or comments.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

Split = Literal["train", "val", "test"]
SignPattern = Literal["++", "+-", "-+", "--"]
MagnitudePair = Literal["core/core", "core/heldout", "heldout/core", "heldout/heldout"]
Bucket = Literal["core", "heldout"]
Operation = Literal["add", "sub"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
NUMERAL_STYLES = ("digits", "words", "grouped", "unicode", "mixed")
CASE_STYLES = ("asis", "lower", "upper", "title", "sentence")
SUBTRAHEND_SIGNS = ("positive", "negative")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def sign_pattern(a: int, b: int) -> SignPattern:
    """Zero counts as positive, as in the seed."""
    return ("+" if a >= 0 else "-") + ("+" if b >= 0 else "-")  # type: ignore[return-value]


class Where(BaseModel):
    """A place in a source file, for messages: ``file:line:column``."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int
    column: int


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    where: Where | None = Field(default=None, exclude=True, repr=False)


class IntRange(_Node):
    """An inclusive range ``lo..hi``."""

    lo: int
    hi: int

    def __contains__(self, x: int) -> bool:
        return self.lo <= x <= self.hi

    def __len__(self) -> int:
        return max(0, self.hi - self.lo + 1)

    def __str__(self) -> str:
        return f"{self.lo}..{self.hi}"


class Magnitudes(_Node):
    """Buckets of |operand|: ``core`` is seen in training, ``heldout`` only where a split asks."""

    core: list[IntRange]
    heldout: list[IntRange] = []

    def ranges(self, bucket: Bucket) -> list[IntRange]:
        return self.core if bucket == "core" else self.heldout

    def bucket_of(self, x: int) -> Bucket:
        m = abs(x)
        if any(m in r for r in self.core):
            return "core"
        if any(m in r for r in self.heldout):
            return "heldout"
        raise ValueError(f"|{x}| is in no magnitude bucket")


class Numerals(_Node):
    """Relative weights of how each operand is written in a prompt: digits ("-1250"), English
    words ("minus one thousand, two hundred and fifty"), grouped digits ("-1,250"), digits with
    a Unicode minus ("\u22121250"), or mixed digits and words ("minus 1 thousand 2 hundred and fifty")."""

    digits: int = 1
    words: int = 0
    grouped: int = 0
    unicode: int = 0
    mixed: int = 0

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # styles added after stage3 are dumped only when weighted: older specs hash as before
        data = handler(self)
        for style in ("grouped", "unicode", "mixed"):
            if not data.get(style):
                data.pop(style, None)
        return data

    def weights(self) -> tuple[int, ...]:
        return tuple(getattr(self, style) for style in NUMERAL_STYLES)


class PromptTemplate(_Node):
    """A prompt with ``{a}`` and ``{b}`` placeholders, known by a stable id."""

    id: str
    text: str

    def render(self, a: str, b: str) -> str:
        return self.text.replace("{a}", a).replace("{b}", b)


class PromptSet(_Node):
    name: str
    templates: list[PromptTemplate]


class Frame(PromptTemplate):
    """A phrasebook template: besides ``{a}`` and ``{b}`` it names slots (``{verb}``) of its
    phrasebook. Its id is the family id of every phrasing it yields. ``op`` sub: the text
    subtracts, so ``{b}`` is written as the subtrahend -b ("subtract 4 from 17": b = -4)."""

    op: Operation = "add"


class Slot(_Node):
    """Alternatives for one ``{name}`` in a frame: words (which may name other slots) or, for a
    distractor number, a range drawn uniformly and written in digits."""

    name: str
    words: list[str] = []
    numbers: IntRange | None = None


class CaseWeights(_Node):
    """Relative weights of the letter case a whole prompt is written in."""

    asis: int = 1
    lower: int = 0
    upper: int = 0
    title: int = 0
    sentence: int = 0

    def weights(self) -> tuple[int, ...]:
        return tuple(getattr(self, style) for style in CASE_STYLES)


class SubtrahendWeights(_Node):
    """Relative weights of the sign a split's sub frames write the subtrahend with ("take 4
    away" is positive, "take -4 away" negative). Without them the written sign follows the
    split's balanced sign patterns, so a sub frame writes -b as often as b: then the sign of the
    patch's b is the written sign XOR the operation, and neither alone tells anything about it."""

    positive: int = 1
    negative: int = 1

    def weights(self) -> tuple[int, ...]:
        return tuple(getattr(self, sign) for sign in SUBTRAHEND_SIGNS)


class Phrasebook(_Node):
    """A compositional prompt set: frames whose slots expand to many phrasings."""

    name: str
    slots: list[Slot]
    case: CaseWeights = CaseWeights()
    frames: list[Frame]

    @property
    def templates(self) -> list[Frame]:
        return self.frames

    def slot(self, name: str) -> Slot | None:
        for s in self.slots:
            if s.name == name:
                return s
        return None


class SplitSpec(_Node):
    """One split: its size, the prompt sets it draws from, the magnitude pairs it balances, and
    the sign its sub frames write the subtrahend with."""

    name: Split
    size: int
    prompt_sets: list[str]
    prompt_shares: list[int] | None = None  # one a prompt set; None: every set alike
    pairs: list[MagnitudePair]
    subtrahend: SubtrahendWeights | None = None  # None: b's sign balanced like a's

    @model_serializer(mode="wrap")
    def _without_absent_tables(self, handler):
        """Leave undeclared tables out, so specs without them hash as before they existed."""
        data = handler(self)
        for key in ("prompt_shares", "subtrahend"):
            if getattr(self, key) is None:
                data.pop(key, None)
        return data

    def share_of(self, prompt_set: str) -> int:
        return 1 if self.prompt_shares is None else self.prompt_shares[self.prompt_sets.index(prompt_set)]


class Spec(_Node):
    stage: str
    target: Literal["macos-arm64"]
    program: str
    seed: int
    operands: IntRange
    magnitudes: Magnitudes
    signs: list[SignPattern]
    numerals: Numerals = Numerals()
    prompt_sets: list[PromptSet | Phrasebook]
    splits: list[SplitSpec]
    path: str = Field(default="", exclude=True)

    def split(self, name: Split) -> SplitSpec:
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(name)

    def prompt_set(self, name: str) -> PromptSet:
        for p in self.prompt_sets:
            if p.name == name:
                return p
        raise KeyError(name)

    def book_of(self, template_id: str) -> Phrasebook | None:
        """The phrasebook a frame belongs to; None for a plain template."""
        for p in self.prompt_sets:
            if isinstance(p, Phrasebook) and any(f.id == template_id for f in p.frames):
                return p
        return None

    def templates_for(self, split: Split) -> list[PromptTemplate]:
        """The templates a split draws from, in declaration order, each once."""
        seen: dict[str, PromptTemplate] = {}
        for set_name in self.split(split).prompt_sets:
            for t in self.prompt_set(set_name).templates:
                seen.setdefault(t.id, t)
        return list(seen.values())

    def template_turns(self, split: Split) -> list[PromptTemplate]:
        """The order a split's examples take their templates in, round and round: each template
        once, or as many times as its prompt set's share."""
        s = self.split(split)
        turns: dict[str, tuple[PromptTemplate, int]] = {}
        for set_name in s.prompt_sets:
            for t in self.prompt_set(set_name).templates:
                turns.setdefault(t.id, (t, s.share_of(set_name)))
        return [t for t, share in turns.values() for _ in range(share)]

    @property
    def train_template_ids(self) -> list[str]:
        return [t.id for t in self.templates_for("train")]

    @property
    def heldout_template_ids(self) -> list[str]:
        """Templates that val or test use and train never does."""
        train = set(self.train_template_ids)
        out: dict[str, None] = {}
        for name in ("val", "test"):
            for t in self.templates_for(name):
                if t.id not in train:
                    out.setdefault(t.id)
        return list(out)

    def canonical_json(self) -> str:
        return self.model_dump_json()

    def sha256(self) -> str:
        """Hash of what the spec says (includes resolved; comments and layout ignored)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def operand_intervals(operands: IntRange, magnitudes: Magnitudes, sign: str, bucket: Bucket) -> list[IntRange]:
    """The operands of one sign ("+" counts zero) whose |x| lies in ``bucket``, as disjoint ranges."""
    out: list[IntRange] = []
    for r in magnitudes.ranges(bucket):
        if sign == "+":
            lo, hi = max(r.lo, 0, operands.lo), min(r.hi, operands.hi)
        else:
            lo, hi = max(-r.hi, operands.lo), min(-r.lo, operands.hi, -1)
        if lo <= hi:
            out.append(IntRange(lo=lo, hi=hi))
    return sorted(out, key=lambda r: r.lo)


def cells(signs: list[SignPattern], pairs: list[MagnitudePair]) -> list[tuple[SignPattern, MagnitudePair]]:
    """A split's strata (sign pattern x magnitude pair), ordered so every prefix is balanced.

    Cell k is (sign k mod S, pair (k + k // lcm(S, P)) mod P): signs and pairs each cycle, and
    the shift per block of lcm(S, P) cells reaches every cell once. So the first max(S, P)
    cells show every sign and every pair, and any prefix (a split whose size does not divide
    evenly, or a tiny smoke run) has counts within one of each other.
    """
    n_s, n_p = len(signs), len(pairs)
    block = math.lcm(n_s, n_p)
    return [(signs[k % n_s], pairs[(k + k // block) % n_p]) for k in range(n_s * n_p)]
