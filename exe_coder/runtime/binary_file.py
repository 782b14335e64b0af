"""Read one executable for `verify` and `inspect`: a regular file of bounded size, or a UserError."""

from __future__ import annotations

from pathlib import Path

from exe_coder.files import read_regular

MAX_BINARY_MIB = 64  # a golden binary is 16 KiB; anything near this is not one of ours
MAX_BINARY_BYTES = MAX_BINARY_MIB << 20


def read_binary(path: str | Path) -> bytes:
    """The bytes of the regular file ``path`` (at most ``MAX_BINARY_BYTES``); UserError otherwise."""
    return read_regular(path, limit=MAX_BINARY_BYTES, what="an executable file")
