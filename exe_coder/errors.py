"""The one error type a user sees: a clear one-line message that names the file and line."""

from __future__ import annotations

from pathlib import Path

MESSAGE_LIMIT = 300  # characters of message; a message that quotes a huge input stays readable
EXCERPT_LIMIT = 40  # characters of offending input that a message quotes


def excerpt(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """``text`` quoted as ``repr`` does, cut to ``limit`` characters with its total length."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class UserError(Exception):
    """Bad input from the user (a malformed spec, a bad config key, a missing file).

    The CLI prints ``str(err)`` on one line and exits with ``exit_code``; nothing is written.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        super().__init__(self.format())

    def format(self) -> str:
        where = self.path or ""
        if self.path is not None and self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = " ".join(self.message.split())  # always one line
        if len(text) > MESSAGE_LIMIT:  # the last guard; messages should quote an excerpt() anyway
            text = f"{text[:MESSAGE_LIMIT]}... ({len(text)} characters)"
        return f"{where}: {text}" if where else text
