"""One dataset example as written to ``data/processed/<stage>/<split>.jsonl``, and its reader."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from exe_coder import files
from exe_coder.errors import UserError
from exe_coder.spec.model import MagnitudePair, SignPattern, Split

# A stage2 train split is about 15 MB; anything near this is not an Example file.
MAX_EXAMPLES_BYTES = 1 << 30


def patch_text(a: int, b: int) -> str:
    """The Track A target: the decode grammar's sentence for (a, b)."""
    return f"A={a};B={b}\n"


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    split: Split
    prompt: str
    template_id: str
    program: str  # the program template (templates/<program>.s.j2) the golden binary is built from
    a: int
    b: int
    expected_stdout: str  # f"{a+b}\n"
    target: str  # patch_text(a, b)
    sign_pattern: SignPattern
    magnitude_pair: MagnitudePair
    # How the prompt writes a and b, "<style of a>/<style of b>" with styles from the spec's
    # numerals (digits, words, grouped, unicode, mixed): what evaluate's numerals slice groups by.
    numerals: str
    # The golden binary's file, relative to the folder holding this JSONL (POSIX separators);
    # "" where none is stored (train: rebuilt on demand from program, a and b). Never null, so
    # every split has one column type and the splits load together (Hugging Face ``datasets``).
    binary_path: str
    binary_sha256: str

    @model_validator(mode="before")
    @classmethod
    def _has_numerals(cls, data: object) -> object:
        if isinstance(data, dict) and "numerals" not in data:  # record format 2
            raise ValueError("no numerals: this build predates record format 3; rebuild it with `exe-coder build --force`")
        return data

    @field_validator("binary_path", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # record format 1 (binary_path relative to the binaries folder)
            raise ValueError("null: this build predates record format 2; rebuild it with `exe-coder build --force`")
        return value

    def binary_file(self, data_dir: str | Path) -> Path | None:
        """The stored golden binary, given the folder holding the JSONL; None where none is stored."""
        return Path(data_dir) / self.binary_path if self.binary_path else None


def load_examples(path: str | Path) -> list[Example]:
    """Read an Example JSONL file; a missing file tells the user how to build it.

    Only a regular file is read (a FIFO would block, /dev/zero never ends), and only up to
    ``MAX_EXAMPLES_BYTES``; every bad line is a one-line error naming the file and line.
    """
    path = Path(path)
    missing = f"data file not found; run `exe-coder build {path.parent.name or '<stage>'}` first"
    with files.open_regular(path, limit=MAX_EXAMPLES_BYTES, what="an Example JSONL file", missing=missing) as f:
        examples = [ex for n, raw in enumerate(f, 1) if (ex := _parse_line(raw, path, n)) is not None]
    if not examples:
        raise UserError("data file holds no examples", path)
    return examples


def _parse_line(raw: bytes, path: Path, n: int) -> Example | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"line is not UTF-8 text (byte {err.start + 1})", path, n) from None
    if not line.strip():
        return None
    try:
        return Example.model_validate_json(line)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise UserError(f"bad Example record ({where}: {first['msg']})", path, n) from None
