"""A small valid spec, as text, for tests to break one piece at a time."""

from __future__ import annotations

from pathlib import Path

from exe_coder.spec.load import normalized_wording
from exe_coder.spec.phrasing import expand

PROMPTS = """\
prompts train {
    t1 "What is {a} plus {b}?"
    t2 "add {b} to {a}"
    t3 "{a} + {b}"
}
prompts heldout {
    h1 "Determine the sum of {a} and {b}."
    h2 "Tally {a} with {b}"
}
"""

SPEC = """\
stage tiny
target macos-arm64
program add
seed 7
operands -50..50
magnitudes {
    core 0..39
    heldout 40..50
}
signs ++ +- -+ --
include "tiny.prompts"
split train 40 { prompts train pairs core/core }
split val 16 { prompts heldout pairs core/core core/heldout heldout/core heldout/heldout }
split test 16 { prompts heldout pairs core/core core/heldout heldout/core heldout/heldout }
"""


def write_spec(folder: Path, spec: str = SPEC, prompts: str = PROMPTS, name: str = "tiny.spec") -> Path:
    """Write ``spec`` (and the prompt file it includes) into ``folder``; return the spec's path."""
    (folder / "tiny.prompts").write_text(prompts)
    path = folder / name
    path.write_text(spec)
    return path


def wordings(spec, templates) -> set[str]:
    """The templates' phrasings up to case and punctuation (a fixed template is its one phrasing)."""
    out = set()
    for t in templates:
        book = spec.book_of(t.id)
        out |= {normalized_wording(p) for p in (expand(book, t.text) if book else [t.text])}
    return out


def split_wordings(spec, split: str) -> set[str]:
    """A split's phrasings up to case and punctuation."""
    return wordings(spec, spec.templates_for(split))
