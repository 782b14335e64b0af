"""The one error type a user sees: a clear one-line message that names the file and line."""

from __future__ import annotations

from pathlib import Path


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
        return f"{where}: {text}" if where else text
