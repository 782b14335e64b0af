"""Golden binaries: patch the program template with (a, b), verify, write where asked.

Runs inside the build's worker processes; everything a worker needs arrives in its task, so
the result of a task depends only on the task. A binary is written only after it verified.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from exe_coder import files
from exe_coder.codegen.program import ProgramTemplate
from exe_coder.runtime.outcome import OutcomeKind
from exe_coder.runtime.verify import verify

SPARSE_BLOCK = 4096  # a golden binary is mostly zero padding: leave whole zero blocks as holes


@dataclass(frozen=True)
class GoldenTask:
    """A chunk of examples for one worker; ``rel_path`` None means: verify, do not write."""

    program: str
    bin_root: str
    items: tuple[tuple[int, int, str | None], ...]


@dataclass(frozen=True)
class GoldenResult:
    sha256: str
    outcome: str  # Outcome.label: "ok" or what went wrong
    detail: str
    size: int


def golden_image(program: str, a: int, b: int) -> bytes:
    """The golden binary of (a, b): what a train record's ``binary_sha256`` is the hash of."""
    return ProgramTemplate.load(program).patch(a=a, b=b)


def build_chunk(task: GoldenTask) -> list[GoldenResult]:
    out: list[GoldenResult] = []
    for a, b, rel_path in task.items:
        image = golden_image(task.program, a, b)
        outcome = verify(image, f"{a + b}\n")
        if outcome.kind is OutcomeKind.OK and rel_path is not None:
            write_executable(Path(task.bin_root) / rel_path, image)
        out.append(GoldenResult(hashlib.sha256(image).hexdigest(), outcome.label, outcome.detail, len(image)))
    return out


def write_executable(path: Path, data: bytes) -> None:
    """Write ``data`` as an executable file (0755, atomic), its zero blocks as holes (sparse)."""
    zero = bytes(SPARSE_BLOCK)

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            for start in range(0, len(data), SPARSE_BLOCK):
                block = data[start : start + SPARSE_BLOCK]
                if block == zero:
                    f.seek(len(block), os.SEEK_CUR)
                else:
                    f.write(block)
            f.truncate(len(data))

    files.write_with(path, fill, executable=True)
