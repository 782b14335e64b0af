"""Write a finished executable to disk: whole or not at all, and marked executable."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from exe_coder.files import write_bytes


@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    sha256: str


def write_executable(image: bytes, out: str | Path) -> Written:
    """Write ``image`` to ``out`` through ``files.write_bytes`` (atomic rename, mode 0755)."""
    path = write_bytes(out, image, executable=True)
    return Written(path, len(image), hashlib.sha256(image).hexdigest())
