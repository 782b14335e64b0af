"""How one run of a program ended, whether emulated or native: the raw facts before judging them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Ending(str, Enum):
    EXITED = "exited"  # exit() or a return from main; exit_code holds the status
    CRASHED = "crashed"  # fault, undefined instruction, fatal signal
    TIMED_OUT = "timed_out"  # instruction budget or wall-clock limit
    KILLED_AT_LAUNCH = "killed_at_launch"  # native only: SIGKILL before running (code signature refused)
    BAD_SYSCALL = "bad_syscall"  # native only: SIGSYS (the kernel refused a system call)


@dataclass(frozen=True)
class Execution:
    ending: Ending
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None
    instructions: int | None = None  # None when run natively
    refused: tuple[str, ...] = field(default=())  # system calls the emulator refused, in order
    detail: str = ""
    native: bool = False
