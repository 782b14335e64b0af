"""Every output file exe-coder writes goes through here: whole or not at all, ordinary modes.

A file is written to a temporary sibling and renamed into place, so a reader (or a command that
was interrupted) never sees half of it. ``mkstemp`` creates files 0600; outputs are meant to be
shared and read by other tools, so the final file is 0644, or 0755 for executables. A
destination that is a folder, or a folder that cannot be made, is the user's error (one line),
never a traceback.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from exe_coder.errors import UserError

FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755


def _check_destination(path: Path) -> None:
    if path.is_dir():
        raise UserError("is a folder; give a file name to write", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError("cannot write here: a parent of this path is a file, not a folder", path) from None
    except OSError as err:
        raise UserError(f"cannot write: {err.strerror}", path) from None


def write_with(path: str | Path, write: Callable[[str], None], *, executable: bool = False) -> Path:
    """Let ``write(tmp_path)`` fill a temporary sibling of ``path``, then rename it into place.

    For writers that want a file name rather than bytes (``mx.save_safetensors``, sparse
    binaries). The temporary keeps ``path``'s suffix, since some writers append their own.
    """
    path = Path(path)
    _check_destination(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, EXECUTABLE_MODE if executable else FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserError(f"cannot write: {err.strerror or err}", path) from None
        raise
    return path


def write_bytes(path: str | Path, data: bytes, *, executable: bool = False) -> Path:
    """Write ``data`` to ``path`` whole or not at all (mode 0644, or 0755 when ``executable``)."""

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_with(path, fill, executable=executable)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_files(files: dict[Path, bytes]) -> list[Path]:
    """Several files that belong together (a report and its plots): every one is staged before
    any is renamed into place, so a failure while writing leaves the earlier set untouched."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            _check_destination(path)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, FILE_MODE)
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"cannot write: {err.strerror or err}", getattr(err, "filename", None)) from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [Path(p) for p in files]
