"""Read one executable for `verify` and `inspect`: a regular file of bounded size, or a UserError.

``stat`` comes before ``open`` so that a FIFO is never opened for reading (that would wait for a
writer forever) and a device such as /dev/zero is never read (it has no end). The descriptor is
opened non-blocking and checked again with ``fstat`` in case the path changed in between.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from exe_coder.errors import UserError

MAX_BINARY_MIB = 64  # a golden binary is 16 KiB; anything near this is not one of ours
MAX_BINARY_BYTES = MAX_BINARY_MIB << 20


def _refuse(mode: int, size: int, path: Path) -> None:
    if stat.S_ISDIR(mode):
        raise UserError("is a directory, not a binary", path=path)
    if not stat.S_ISREG(mode):
        raise UserError("is not a regular file (a FIFO, device or socket); give an executable file", path=path)
    if size > MAX_BINARY_BYTES:
        raise UserError(f"is {size} bytes, over the {MAX_BINARY_MIB} MiB limit for a binary", path=path)


def read_binary(path: str | Path) -> bytes:
    """The bytes of the regular file ``path`` (at most ``MAX_BINARY_BYTES``); UserError otherwise."""
    path = Path(path)
    try:
        info = os.stat(path)
        _refuse(info.st_mode, info.st_size, path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise UserError("no such file", path=path) from None
    except OSError as err:
        raise UserError(f"cannot read: {err.strerror}", path=path) from None
    try:
        info = os.fstat(fd)
        _refuse(info.st_mode, info.st_size, path)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BINARY_BYTES + 1)  # one byte more tells a file that grew meanwhile
    except OSError as err:
        raise UserError(f"cannot read: {err.strerror}", path=path) from None
    finally:
        os.close(fd)
    _refuse(stat.S_IFREG, len(data), path)
    return data
