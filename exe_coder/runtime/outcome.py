"""The verifier's verdict on one binary: every input, however broken, ends as one Outcome."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict


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
    rule: str | None = None  # the failed structural rule, for INVALID_MACHO
    stdout: bytes = b""
    exit_code: int | None = None
    instructions: int | None = None  # emulated instructions executed (None when run natively)
    detail: str = ""  # human-readable context, one line
    native: bool = False  # True when it ran on the host CPU (macOS arm64) instead of the emulator

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

    @property
    def timeout_or_crash(self) -> bool:
        return self.kind in (OutcomeKind.TIMEOUT, OutcomeKind.CRASH, OutcomeKind.BAD_SYSCALL)
