"""One dataset example as written to ``data/processed/<stage>/<split>.jsonl``, and its reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

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
    binary_path: str | None  # relative to the binaries dir; None where it is rebuilt on demand
    binary_sha256: str


def load_examples(path: str | Path) -> list[Example]:
    """Read an Example JSONL file; a missing file tells the user how to build it.

    Only a regular file is read (a FIFO would block, /dev/zero never ends), and only up to
    ``MAX_EXAMPLES_BYTES``; every bad line is a one-line error naming the file and line.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        stage = path.parent.name or "<stage>"
        raise UserError(f"data file not found; run `exe-coder build specs/{stage}.spec` first", path) from None
    except OSError as err:
        raise UserError(f"cannot read: {err.strerror or err}", path) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file; give an Example JSONL file"
    elif info.st_size > MAX_EXAMPLES_BYTES:
        problem = f"{info.st_size} bytes is over the {MAX_EXAMPLES_BYTES}-byte limit of a data file"
    else:
        problem = None
    if problem is not None:
        os.close(fd)
        raise UserError(problem, path)
    with os.fdopen(fd, "rb") as f:
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
