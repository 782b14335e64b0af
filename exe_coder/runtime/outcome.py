"""The verifier's verdict on one binary: every input, however broken, ends as one Outcome."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator


class OutcomeKind(str, Enum):
    OK = "ok"
    PARSE_ERROR = "parse_error"  # decoding produced no patch / no bytes (set by decode, not the verifier)
    INVALID_MACHO = "invalid_macho"  # a structural rule failed; `rule` names it
    BAD_SIGNATURE = "bad_signature"
    CRASH = "crash"  # unmapped access, undefined instruction, fault of any kind
    TIMEOUT = "timeout"  # instruction budget or wall-clock limit reached
    BAD_SYSCALL = "bad_syscall"  # a refused syscall ended the program abnormally
    NONZERO_EXIT = "nonzero_exit"
    WRONG_OUTPUT = "wrong_output"  # ran to exit 0 but stdout differs from the expectation


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: OutcomeKind
    rule: str | None = None  # the failed structural rule (INVALID_MACHO) or signature rule (BAD_SIGNATURE)
    stdout: bytes = b""
    exit_code: int | None = None
    instructions: int | None = None  # emulated instructions executed (None when run natively)
    detail: str = ""  # human-readable context, one line
    native: bool = False  # True when it ran on the host CPU (macOS arm64) instead of the emulator

    # In JSON (a prediction record) stdout is latin-1 text: one character a byte, so any bytes a
    # program printed survive the round trip, and a digit answer still reads as itself.
    @field_serializer("stdout", when_used="json")
    def _stdout_as_text(self, stdout: bytes) -> str:
        return stdout.decode("latin-1")

    @field_validator("stdout", mode="before")
    @classmethod
    def _stdout_from_text(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return value.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError("stdout text holds a character above U+00FF; it is latin-1, one character a byte") from None
        return value

    @property
    def label(self) -> str:
        """The error-taxonomy key: ``invalid_macho:<rule>`` or the kind's value."""
        if self.kind is OutcomeKind.INVALID_MACHO and self.rule:
            return f"invalid_macho:{self.rule}"
        return self.kind.value

    @property
    def is_valid_macho(self) -> bool:
        return self.kind not in (OutcomeKind.PARSE_ERROR, OutcomeKind.INVALID_MACHO, OutcomeKind.BAD_SIGNATURE)

    @property
    def exec_ok(self) -> bool:
        """Ran to exit code 0 within budget (stdout may still be wrong)."""
        return self.kind in (OutcomeKind.OK, OutcomeKind.WRONG_OUTPUT)

    @property
    def stdout_correct(self) -> bool:
        return self.kind is OutcomeKind.OK

    def answers(self, expected_stdout: str) -> bool:
        """Printed exactly ``expected_stdout``: ``ok`` against this expectation, whatever the
        verifier was asked to expect when it ran (a gold answer may differ from it)."""
        return self.stdout_correct and self.stdout == expected_stdout.encode("utf-8")

    @property
    def timeout_or_crash(self) -> bool:
        return self.kind in (OutcomeKind.TIMEOUT, OutcomeKind.CRASH, OutcomeKind.BAD_SYSCALL)
