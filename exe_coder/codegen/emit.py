"""Write a finished executable to disk: whole or not at all, and marked executable."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from exe_coder.errors import UserError


@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    sha256: str


def write_executable(image: bytes, out: str | Path) -> Written:
    """Write ``image`` to ``out`` via a temporary file in the same folder and an atomic rename,
    so a reader never sees half a binary; mode 0755."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    except OSError as err:
        raise UserError(f"cannot write: {err.strerror}", path=out) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(image)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserError(f"cannot write: {err.strerror}", path=out) from None
        raise
    return Written(out, len(image), hashlib.sha256(image).hexdigest())
