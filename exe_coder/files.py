"""Every output file exe-coder writes goes through here: whole or not at all, ordinary modes.
And every input file it reads as a whole: a regular file of bounded size, or a one-line error.

A file is written to a temporary sibling and renamed into place, so a reader (or a command that
was interrupted) never sees half of it. ``mkstemp`` creates files 0600; outputs are meant to be
shared and read by other tools, so the final file is 0644, or 0755 for executables. A
destination that is a folder, or a folder that cannot be made, is the user's error (one line),
never a traceback.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from exe_coder.errors import UserError

FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755


def check_destination(path: str | Path) -> None:
    """Refuse a destination that can never be written (a folder, a path under a file); make its folder."""
    path = Path(path)
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
    check_destination(path)
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
            check_destination(path)
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


# --- reading -------------------------------------------------------------------------------


def _refuse(info: os.stat_result, limit: int, what: str, path: Path) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"is a folder; give {what}", path)
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"is not a regular file (a FIFO, device or socket); give {what}", path)
    if info.st_size > limit:
        raise UserError(f"is {info.st_size} bytes, over the {limit}-byte limit for {what}", path)


@contextmanager
def open_regular(
    path: str | Path, *, limit: int, what: str, missing: str = "no such file", shown: str | Path | None = None
) -> Iterator[BinaryIO]:
    """``path`` opened for reading if it is a regular file of at most ``limit`` bytes.

    ``stat`` comes before ``open`` so that a FIFO is never opened for reading (that would wait for
    a writer forever) and a device such as /dev/zero is never read (it has no end); the
    descriptor is opened non-blocking and checked again in case the path changed in between.
    ``what`` names the expected input in messages ("an Example JSONL file"); ``shown`` is the
    name messages give the file (default: ``path``).
    """
    path = Path(path)
    shown = path if shown is None else shown
    try:
        _refuse(os.stat(path), limit, what, shown)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(missing, shown) from None
    except OSError as err:
        raise UserError(f"cannot read: {err.strerror or err}", shown) from None
    with os.fdopen(fd, "rb") as f:
        _refuse(os.fstat(fd), limit, what, shown)
        yield f


def read_regular(path: str | Path, *, limit: int, what: str, shown: str | Path | None = None) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``; see ``open_regular``)."""
    shown = path if shown is None else shown
    try:
        with open_regular(path, limit=limit, what=what, shown=shown) as f:
            data = f.read(limit + 1)  # one byte more tells a file that grew meanwhile
    except OSError as err:
        raise UserError(f"cannot read: {err.strerror or err}", shown) from None
    if len(data) > limit:
        raise UserError(f"is over the {limit}-byte limit for {what}", shown)
    return data
