"""One dataset example as written to ``data/processed/<stage>/<split>.jsonl``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Split = Literal["train", "val", "test"]
SignPattern = Literal["++", "+-", "-+", "--"]
MagnitudePair = Literal["core/core", "core/heldout", "heldout/core", "heldout/heldout"]


def sign_pattern(a: int, b: int) -> SignPattern:
    """Zero counts as positive, as in the seed."""
    return ("+" if a >= 0 else "-") + ("+" if b >= 0 else "-")  # type: ignore[return-value]


def patch_text(a: int, b: int) -> str:
    """The Track A target: the decode grammar's sentence for (a, b)."""
    return f"A={a};B={b}\n"


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    split: Split
    prompt: str
    template_id: str
    a: int
    b: int
    expected_stdout: str  # f"{a+b}\n"
    target: str  # patch_text(a, b)
    sign_pattern: SignPattern
    magnitude_pair: MagnitudePair
    binary_path: str | None  # relative to the binaries dir; None where it is rebuilt on demand
    binary_sha256: str
