"""Declarations -> a validated ``Spec``: resolve includes, assemble, check every promise.

Each semantic error is one ``UserError`` that names the problem and the line it comes from.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path

from exe_coder.errors import UserError, excerpt
from exe_coder.paths import TEMPLATES_DIR
from exe_coder.spec import phrasing
from exe_coder.spec.model import (
    CASE_STYLES,
    NUMERAL_STYLES,
    PLACEHOLDER,
    SPLITS,
    SUBTRAHEND_SIGNS,
    CaseWeights,
    Frame,
    IntRange,
    Magnitudes,
    Numerals,
    Phrasebook,
    PromptSet,
    PromptTemplate,
    Slot,
    Spec,
    SplitSpec,
    SubtrahendWeights,
    Where,
    cells,
    operand_intervals,
)
from exe_coder.spec.parser import Decl, parse_file

INT32 = IntRange(lo=-(2**31), hi=2**31 - 1)
SINGLETONS = ("stage", "target", "program", "seed", "operands", "magnitudes", "signs", "numerals")
REQUIRED = ("stage", "target", "program", "seed", "operands", "magnitudes", "signs")


def _fail(message: str, where: Where | None) -> UserError:
    if where is None:
        return UserError(message)
    return UserError(message, where.file, where.line, where.column)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system names no file
        return False


def load_spec(path: str | Path) -> Spec:
    """Parse ``path`` (and what it includes) into a validated ``Spec``; ``UserError`` if bad."""
    path = Path(path)
    decls = _expand_includes(parse_file(path), path, str(path), [path.resolve()])
    spec = _assemble(decls, str(path))
    _check(spec)
    return spec


def _expand_includes(decls: list[Decl], path: Path, label: str, stack: list[Path]) -> list[Decl]:
    """Replace each ``include "x"`` by the prompt sets of x (relative to the including file)."""
    out: list[Decl] = []
    for d in decls:
        if d.keyword != "include":
            out.append(d)
            continue
        target = path.parent / d.value
        target_label = os.path.normpath(os.path.join(os.path.dirname(label), d.value))
        if not _is_file(target):
            raise _fail(f"included file {excerpt(d.value)} not found (looked for {excerpt(target_label, 120)})", d.where)
        resolved = target.resolve()
        if resolved in stack:
            raise _fail(f"include cycle: {excerpt(d.value)} includes itself", d.where)
        included = parse_file(target, start="prompt_file", label=target_label)
        out.extend(_expand_includes(included, target, target_label, [*stack, resolved]))
    return out


def _assemble(decls: list[Decl], label: str) -> Spec:
    one: dict[str, Decl] = {}
    sets: dict[str, Decl] = {}
    splits: dict[str, Decl] = {}
    for d in decls:
        if d.keyword in SINGLETONS:
            if d.keyword in one:
                first = one[d.keyword].where
                raise _fail(f"`{d.keyword}` declared twice (first at line {first.line} of {first.file})", d.where)
            one[d.keyword] = d
        elif d.keyword in ("prompts", "phrasebook"):
            name = d.value[0]
            if name in sets:
                raise _fail(f"prompt set {excerpt(name)} declared twice", d.where)
            sets[name] = d
        elif d.keyword == "split":
            name = d.value[0]
            if name in splits:
                raise _fail(f"split {excerpt(name)} declared twice", d.where)
            splits[name] = d
    for key in REQUIRED:
        if key not in one:
            raise UserError(f"the spec declares no `{key}`", label)
    for name in SPLITS:
        if name not in splits:
            raise UserError(f"the spec declares no `split {name}`", label)

    def value(key: str):
        return one[key].value

    if value("target") != "macos-arm64":
        raise _fail(f"unknown target {excerpt(value('target'))}; the only target is macos-arm64", one["target"].where)
    known = sorted(p.name.removesuffix(".s.j2") for p in TEMPLATES_DIR.glob("*.s.j2"))
    if value("program") not in known:  # not a stat: a name of any length is an answer, not an OSError
        raise _fail(
            f"unknown program template {excerpt(value('program'))}; templates/ has: {', '.join(known) or 'none'}",
            one["program"].where,
        )
    ops = value("operands")
    _check_operands(ops)
    for s in value("signs"):
        if "-" in s and ops.lo >= 0:
            raise _fail(f"sign pattern {s} is impossible: operands {ops} are never negative", one["signs"].where)
        if "+" in s and ops.hi < 0:
            raise _fail(f"sign pattern {s} is impossible: operands {ops} are never >= 0", one["signs"].where)
    return Spec(
        stage=value("stage"),
        target="macos-arm64",
        program=value("program"),
        seed=value("seed"),
        operands=value("operands"),
        magnitudes=_magnitudes(one["magnitudes"]),
        signs=_signs(one["signs"]),
        numerals=_numerals(one["numerals"]) if "numerals" in one else Numerals(),
        prompt_sets=[
            _phrasebook(d) if d.keyword == "phrasebook" else PromptSet(name=d.value[0], templates=d.value[1], where=d.where)
            for d in sets.values()
        ],
        splits=[_split(splits[name]) for name in SPLITS],
        path=label,
        where=Where(file=label, line=1, column=1),
    )


def _magnitudes(d: Decl) -> Magnitudes:
    buckets: dict[str, list[IntRange]] = {}
    for b in d.value:
        if b.keyword in buckets:
            raise _fail(f"magnitude bucket {b.keyword!r} declared twice", b.where)
        buckets[b.keyword] = b.value
    if "core" not in buckets:
        raise _fail("magnitudes declare no `core` bucket", d.where)
    return Magnitudes(core=buckets["core"], heldout=buckets.get("heldout", []), where=d.where)


def _signs(d: Decl) -> list:
    seen: list[str] = []
    for s in d.value:
        if s in seen:
            raise _fail(f"sign pattern {s} listed twice", d.where)
        seen.append(s)
    return seen


def _weights(d: Decl, what: str, table: str, names: tuple[str, ...]) -> dict[str, int]:
    """A ``{ name weight ... }`` table: each name once, no negative weight, some weight positive."""
    weights: dict[str, int] = {}
    for w in d.value:
        if w.keyword in weights:
            raise _fail(f"{what} {w.keyword!r} weighted twice", w.where)
        if w.value < 0:
            raise _fail(f"{what} {w.keyword!r}: a weight cannot be negative", w.where)
        weights[w.keyword] = w.value
    if sum(weights.values()) <= 0:
        raise _fail(f"{table}: at least one {what} needs a positive weight", d.where)
    return {name: weights.get(name, 0) for name in names}


def _numerals(d: Decl) -> Numerals:
    return Numerals(**_weights(d, "numeral style", "numerals", NUMERAL_STYLES), where=d.where)


def _phrasebook(d: Decl) -> Phrasebook:
    name, items = d.value
    slots: dict[str, Slot] = {}
    cases: list[Decl] = []
    for item in items:
        if isinstance(item, Slot):
            if item.name in slots:
                raise _fail(f"phrasebook {excerpt(name)}: slot {excerpt(item.name)} declared twice", item.where)
            slots[item.name] = item
        elif isinstance(item, Decl):
            cases.append(item)
    if len(cases) > 1:
        raise _fail(f"phrasebook {excerpt(name)}: `case` declared twice", cases[1].where)
    case = CaseWeights()
    if cases:
        case = CaseWeights(**_weights(cases[0], "letter case", "case", CASE_STYLES), where=cases[0].where)
    frames = [item for item in items if isinstance(item, Frame)]
    return Phrasebook(name=name, slots=list(slots.values()), case=case, frames=frames, where=d.where)


def _split(d: Decl) -> SplitSpec:
    name, size, fields = d.value
    got: dict[str, Decl] = {}
    for f in fields:
        if f.keyword in got:
            raise _fail(f"split {name}: `{f.keyword}` given twice", f.where)
        got[f.keyword] = f
    for key in ("prompts", "pairs"):
        if key not in got:
            raise _fail(f"split {name} declares no `{key}`", d.where)
    pairs = got["pairs"].value
    for i, p in enumerate(pairs):
        if p in pairs[:i]:
            raise _fail(f"split {name}: magnitude pair {p} listed twice", got["pairs"].where)
    if size <= 0:
        raise _fail(f"split {name}: size must be positive", d.where)
    subtrahend = None
    if "subtrahend" in got:
        weights = _weights(got["subtrahend"], "subtrahend sign", "subtrahend", SUBTRAHEND_SIGNS)
        subtrahend = SubtrahendWeights(**weights, where=got["subtrahend"].where)
    prompt_sets, shares = _prompt_shares(name, got["prompts"].value)
    return SplitSpec(
        name=name,
        size=size,
        prompt_sets=prompt_sets,
        prompt_shares=shares,
        pairs=pairs,
        subtrahend=subtrahend,
        where=d.where,
    )


def _prompt_shares(split: str, shares: list[Decl]) -> tuple[list[str], list[int] | None]:
    """A split's prompt sets and their shares (None where no set is given one: all alike)."""
    names: list[str] = []
    for s in shares:
        if s.keyword in names:
            raise _fail(f"split {split}: prompt set {excerpt(s.keyword)} listed twice", s.where)
        if s.value is not None and s.value < 1:
            raise _fail(f"split {split}: prompt set {excerpt(s.keyword)}: a share must be a positive integer", s.where)
        names.append(s.keyword)
    if all(s.value is None for s in shares):
        return names, None
    return names, [1 if s.value is None else s.value for s in shares]


# --- semantic checks ------------------------------------------------------------------------


_NOT_WORD = re.compile(r"[^a-z0-9{}]+")


def normalized_wording(text: str) -> str:
    """A template's words: case, punctuation and spacing removed (placeholders kept)."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def _check(spec: Spec) -> None:
    _check_magnitudes(spec)
    _check_phrasebooks(spec)
    _check_templates(spec)
    _check_splits(spec)
    _check_heldout_wording(spec)
    _check_space(spec)


def _check_operands(r: IntRange) -> None:
    if r.lo > r.hi:
        raise _fail(f"operand range {r} is empty", r.where)
    if r.lo < INT32.lo or r.hi > INT32.hi:
        raise _fail(f"operand range {r} leaves signed 32-bit {INT32}", r.where)


def _check_magnitudes(spec: Spec) -> None:
    ops = spec.operands
    top = max(abs(ops.lo), abs(ops.hi))
    bottom = 0 if ops.lo <= 0 <= ops.hi else min(abs(ops.lo), abs(ops.hi))
    ranges = [(b, r) for b in ("core", "heldout") for r in spec.magnitudes.ranges(b)]
    for bucket, r in ranges:
        if r.lo > r.hi:
            raise _fail(f"magnitude range {r} is empty", r.where)
        if r.lo < 0:
            raise _fail(f"magnitude range {r} is negative; magnitudes are |operand| >= 0", r.where)
        if r.hi > top:
            raise _fail(f"magnitude range {r} ({bucket}) is out of range: operands {ops} reach |x| <= {top}", r.where)
    ordered = sorted(ranges, key=lambda br: br[1].lo)
    for (b1, r1), (b2, r2) in zip(ordered, ordered[1:]):
        if r2.lo <= r1.hi:
            raise _fail(f"magnitude buckets overlap: {b2} {r2} and {b1} {r1}", r2.where)
    covered = bottom
    for _, r in ordered:
        if r.hi < covered:
            continue
        if r.lo > covered:
            raise _fail(f"magnitudes {covered}..{r.lo - 1} of operands {ops} are in no bucket", spec.magnitudes.where)
        covered = r.hi + 1
    if covered <= top:
        raise _fail(f"magnitudes {covered}..{top} of operands {ops} are in no bucket", spec.magnitudes.where)


def _check_templates(spec: Spec) -> None:
    ids: dict[str, PromptTemplate] = {}
    texts: dict[tuple[str, str], PromptTemplate] = {}
    for pset in spec.prompt_sets:
        if not pset.templates:
            raise _fail(f"prompt set {excerpt(pset.name)} is empty", pset.where)
        book = pset if isinstance(pset, Phrasebook) else None
        slot_names = {s.name for s in book.slots} if book else set()
        for t in pset.templates:
            if t.id in ids:
                first = ids[t.id].where
                raise _fail(f"duplicate template id {excerpt(t.id)} (first at {first.file}:{first.line})", t.where)
            ids[t.id] = t
            names = PLACEHOLDER.findall(t.text)
            for name in names:
                if name not in ("a", "b") and name not in slot_names:
                    use = "{a}, {b} or a slot of its phrasebook" if book else "{a} and {b}"
                    raise _fail(f"template {t.id}: unknown placeholder {{{name}}}; use {use}", t.where)
            for name in ("a", "b"):
                if names.count(name) != 1:
                    raise _fail(
                        f"template {t.id} must contain {{{name}}} exactly once (found {names.count(name)})",
                        t.where,
                    )
            if "{" in PLACEHOLDER.sub("", t.text) or "}" in PLACEHOLDER.sub("", t.text):
                raise _fail(f"template {t.id}: stray brace outside {{a}} / {{b}}", t.where)
            if t.text != t.text.strip() or not t.text:
                raise _fail(f"template {t.id}: leading or trailing whitespace", t.where)
            # a frame's text means something only with its own phrasebook's slots
            key = (book.name if book else "", t.text)
            if key in texts:
                raise _fail(f"template {t.id} repeats the text of template {texts[key].id}", t.where)
            texts[key] = t


def _check_splits(spec: Spec) -> None:
    names = {p.name for p in spec.prompt_sets}
    for split in spec.splits:
        for set_name in split.prompt_sets:
            if set_name not in names:
                raise _fail(
                    f"split {split.name}: unknown prompt set {excerpt(set_name)} (declared: {', '.join(sorted(names)) or 'none'})",
                    split.where,
                )
        for pair in split.pairs:
            if "heldout" in pair and not spec.magnitudes.heldout:
                raise _fail(f"split {split.name}: pair {pair} needs a `heldout` magnitude bucket", split.where)
    train_pairs = spec.split("train").pairs
    if any("heldout" in p for p in train_pairs):
        raise _fail("split train: held-out magnitudes may not be trained on (use pairs core/core)", spec.split("train").where)


def _wordings(spec: Spec, t: PromptTemplate) -> list[str]:
    """A template's wordings: one for a plain template, every phrasing for a frame."""
    book = spec.book_of(t.id) if isinstance(t, Frame) else None
    if book is None:
        return [normalized_wording(t.text)]
    return sorted({normalized_wording(p) for p in phrasing.expand(book, t.text)})  # spacing: normalized away


def _check_heldout_wording(spec: Spec) -> None:
    """A held-out template (or any phrasing of a held-out frame) must differ from every train
    template (every phrasing of a train frame) in wording, not only in case or punctuation."""
    train = {w: t for t in spec.templates_for("train") for w in _wordings(spec, t)}
    train_ids = set(spec.train_template_ids)
    for name in ("val", "test"):
        for t in spec.templates_for(name):
            if t.id in train_ids:
                continue
            for wording in _wordings(spec, t):
                twin = train.get(wording)
                if twin is None:
                    continue
                if isinstance(t, Frame) or isinstance(twin, Frame):
                    # name each side for what it is: a split may mix plain sets and phrasebooks
                    kind, its = ("frame", "its phrasing") if isinstance(t, Frame) else ("template", "its wording")
                    of = f"a phrasing of train frame {twin.id}" if isinstance(twin, Frame) else f"train template {twin.id}"
                    raise _fail(f"held-out {kind} {t.id} leaks into train: {its} {excerpt(wording)} is also {of}", t.where)
                raise _fail(
                    f"held-out template {t.id} differs from train template {twin.id} only in case or punctuation",
                    t.where,
                )


def _check_phrasebooks(spec: Spec) -> None:
    """Slots: every one used, every reference declared, no cycles, no operands inside; frames
    within the enumeration bound."""
    for book in spec.prompt_sets:
        if not isinstance(book, Phrasebook):
            continue
        names = {s.name for s in book.slots}
        used: set[str] = set()
        for slot in book.slots:
            if slot.name in ("a", "b"):
                raise _fail(f"slot {{{slot.name}}}: the names a and b belong to the operands", slot.where)
            if slot.numbers is not None and slot.numbers.lo > slot.numbers.hi:
                raise _fail(f"slot {slot.name}: number range {slot.numbers} is empty", slot.where)
            for word in slot.words:  # one listed twice is drawn twice as often: that is how to weight
                refs = PLACEHOLDER.findall(word)
                if "{" in PLACEHOLDER.sub("", word) or "}" in PLACEHOLDER.sub("", word):
                    raise _fail(f"slot {slot.name}: stray brace in {excerpt(word)}", slot.where)
                for ref in refs:
                    if ref in ("a", "b"):
                        raise _fail(f"slot {slot.name}: {{{ref}}} belongs in a frame, not a slot", slot.where)
                    if ref not in names:
                        raise _fail(f"slot {slot.name}: unknown slot {{{ref}}}", slot.where)
                    used.add(ref)
        _check_slot_cycles(book)
        for frame in book.frames:
            for name in PLACEHOLDER.findall(frame.text):
                if name not in ("a", "b") and name not in names:  # before "unused": the likelier typo
                    raise _fail(
                        f"template {frame.id}: unknown placeholder {{{name}}}; use {{a}}, {{b}} or a slot of its phrasebook",
                        frame.where,
                    )
                used.add(name)
            n = phrasing.count(book, frame.text)
            if n > phrasing.MAX_PHRASINGS:
                raise _fail(
                    f"frame {frame.id} expands to {n} phrasings, over the limit of {phrasing.MAX_PHRASINGS}; "
                    "split it into several frames",
                    frame.where,
                )
        for slot in book.slots:
            if slot.name not in used:
                raise _fail(f"slot {slot.name} is used by no frame or slot of phrasebook {excerpt(book.name)}", slot.where)


def _check_slot_cycles(book: Phrasebook) -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            raise _fail(f"slots refer to each other in a cycle: {' -> '.join([*path, name])}", book.slot(path[0]).where)
        state[name] = "open"
        for word in book.slot(name).words:
            for ref in PLACEHOLDER.findall(word):
                visit(ref, [*path, name])
        state[name] = "done"

    for slot in book.slots:
        visit(slot.name, [])


def _check_space(spec: Spec) -> None:
    """Every split's cells must have more distinct (template, a, b) than it asks for."""
    count = {
        (sign, bucket): sum(len(r) for r in operand_intervals(spec.operands, spec.magnitudes, sign, bucket))
        for sign in "+-"
        for bucket in ("core", "heldout")
    }

    def pairs_in(sign_pattern: str, pair: str) -> int:
        ba, bb = pair.split("/")
        return count[(sign_pattern[0], ba)] * count[(sign_pattern[1], bb)]

    demand: dict[tuple[str, str], int] = defaultdict(int)
    templates_used: dict[tuple[str, str], set[str]] = defaultdict(set)
    for split in spec.splits:
        split_cells = cells(spec.signs, split.pairs)
        per_cell = math.ceil(split.size / len(split_cells))
        ids = {t.id for t in spec.templates_for(split.name)}
        for cell in split_cells:
            space = pairs_in(*cell) * len(ids)
            if per_cell > space:
                raise _fail(
                    f"split {split.name} of size {split.size} asks for {per_cell} examples with signs {cell[0]} "
                    f"and magnitudes {cell[1]}, but operands {spec.operands} and {len(ids)} templates allow "
                    f"only {space} distinct prompts",
                    split.where,
                )
            demand[cell] += per_cell
            templates_used[cell] |= ids
    for cell, asked in demand.items():
        space = pairs_in(*cell) * len(templates_used[cell])
        if asked > space:
            raise _fail(
                f"the splits together ask for {asked} examples with signs {cell[0]} and magnitudes {cell[1]}, "
                f"but only {space} distinct prompts exist; shrink the splits or widen the operands",
                spec.split("train").where,
            )
