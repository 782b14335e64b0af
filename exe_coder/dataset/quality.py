"""The quality report: does a built dataset keep the spec's promises?

Every check recomputes what it checks from the records themselves (signs and magnitude
buckets from a and b, prompts from the text), so a sampler bug cannot vouch for itself.
The build writes this report beside the manifest and fails when any check fails.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from exe_coder.dataset.records import Example, patch_text
from exe_coder.spec.model import SPLITS, Spec, Split, sign_pattern


class Check(BaseModel):
    name: str
    ok: bool
    detail: str = ""


class SplitQuality(BaseModel):
    size: int
    sign_pattern: dict[str, int]
    magnitude_pair: dict[str, int]
    cells: dict[str, int]  # "<sign> <pair>" -> count
    templates: dict[str, int]
    heldout_template_examples: int  # examples whose template train never uses


class QualityReport(BaseModel):
    stage: str
    ok: bool
    checks: list[Check]
    splits: dict[str, SplitQuality]

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def _counts(values) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def assess(spec: Spec, records: dict[Split, list[Example]], sizes: dict[Split, int]) -> QualityReport:
    """Check ``records`` against ``spec``; ``sizes`` are the sizes asked for (spec or limits)."""
    checks: list[Check] = []

    def check(name: str, failures: list[str], total: int | None = None) -> None:
        detail = "; ".join(failures[:5]) + (f"; ... {len(failures) - 5} more" if len(failures) > 5 else "")
        checks.append(Check(name=name, ok=not failures, detail=detail or (f"{total} checked" if total else "")))

    heldout = set(spec.heldout_template_ids)
    every = [r for s in SPLITS for r in records[s]]

    check(
        "sizes",
        [f"{s}: {len(records[s])} records, {sizes[s]} asked" for s in SPLITS if len(records[s]) != sizes[s]],
    )
    check(
        "records are consistent (split, program, sign pattern, target, stdout from a and b)",
        [
            f"{r.id}"
            for s in SPLITS
            for r in records[s]
            if r.split != s
            or r.program != spec.program
            or r.sign_pattern != sign_pattern(r.a, r.b)
            or r.target != patch_text(r.a, r.b)
            or r.expected_stdout != f"{r.a + r.b}\n"
        ],
        len(every),
    )
    check(
        "magnitude pair of every record matches the buckets of |a| and |b|",
        [
            f"{r.id} is {r.magnitude_pair}"
            for r in every
            if r.magnitude_pair != f"{_bucket(spec, r.a)}/{_bucket(spec, r.b)}"
        ],
        len(every),
    )
    check(
        "operands within the operand range",
        [f"{r.id}: ({r.a}, {r.b})" for r in every if not (r.a in spec.operands and r.b in spec.operands)],
        len(every),
    )

    seen: dict[str, str] = {}
    collisions = []
    for r in every:
        if r.prompt in seen:
            collisions.append(f"{r.id} repeats the prompt of {seen[r.prompt]}")
        seen[r.prompt] = r.id
    check("no prompt text twice (so none in two splits)", collisions, len(every))
    check(
        "held-out templates never in train",
        [f"{r.id} uses {r.template_id}" for r in records["train"] if r.template_id in heldout],
        len(records["train"]),
    )
    check(
        "train draws only core magnitudes",
        [f"{r.id} is {r.magnitude_pair}" for r in records["train"] if r.magnitude_pair != "core/core"],
        len(records["train"]),
    )

    qualities: dict[str, SplitQuality] = {}
    for s in SPLITS:
        rs = records[s]
        split = spec.split(s)
        templates = {t.id for t in spec.templates_for(s)}
        n = len(rs)
        quality = SplitQuality(
            size=n,
            sign_pattern=_counts(r.sign_pattern for r in rs),
            magnitude_pair=_counts(r.magnitude_pair for r in rs),
            cells=_counts(f"{r.sign_pattern} {r.magnitude_pair}" for r in rs),
            templates=_counts(r.template_id for r in rs),
            heldout_template_examples=sum(r.template_id in heldout for r in rs),
        )
        qualities[s] = quality
        check(
            f"{s}: templates only from its prompt sets",
            sorted({f"{r.template_id} is not in {', '.join(split.prompt_sets)}" for r in rs if r.template_id not in templates}),
        )
        balanced = split.subtrahend is None  # weighted subtrahend signs skew b's sign on purpose
        how = "balanced" if balanced else "b's sign skewed by subtrahend weights"
        check(
            f"{s}: sign patterns {' '.join(spec.signs)} all present and {how}",
            _coverage(quality.sign_pattern, spec.signs, n, balanced),
        )
        check(
            f"{s}: magnitude slices {' '.join(split.pairs)} all present and balanced",
            _coverage(quality.magnitude_pair, split.pairs, n),
        )
        cell_names = [f"{sp} {mp}" for sp in spec.signs for mp in split.pairs]
        check(f"{s}: every cell sign x magnitude present and {how}", _coverage(quality.cells, cell_names, n, balanced))
        check(
            f"{s}: every template present",
            [f"{t!r} missing" for t in sorted(templates) if n >= len(templates) and t not in quality.templates],
        )
    return QualityReport(stage=spec.stage, ok=all(c.ok for c in checks), checks=checks, splits=qualities)


def _bucket(spec: Spec, x: int) -> str:
    try:
        return spec.magnitudes.bucket_of(x)
    except ValueError:
        return "none"


def _coverage(counts: dict[str, int], declared: list[str], n: int, balanced: bool = True) -> list[str]:
    """Declared keys present (as far as n allows), counts within one of each other (if
    ``balanced``), nothing else."""
    problems = [f"unexpected {k!r}" for k in counts if k not in declared]
    if n >= len(declared):
        problems += [f"{k!r} missing" for k in declared if counts.get(k, 0) == 0]
    present = [counts.get(k, 0) for k in declared]
    if balanced and present and max(present) - min(present) > 1:
        problems.append(f"unbalanced: {min(present)}..{max(present)} per key")
    return problems
