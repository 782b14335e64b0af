"""Native runs: how a process's end is classified, and the runner's plumbing on any POSIX host.

The runner itself is exercised with shell scripts, which every POSIX kernel executes the way
macOS executes a Mach-O: written to a private file, made executable, run with no arguments.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from exe_coder.runtime.execution import Ending
from exe_coder.runtime.native import classify, native_available, run_native
from exe_coder.runtime.outcome import OutcomeKind
from exe_coder.runtime.verify import judge

@pytest.mark.parametrize(
    ("returncode", "stdout", "timed_out", "ending", "kind"),
    [
        (0, b"13\n", False, Ending.EXITED, OutcomeKind.OK),
        (3, b"13\n", False, Ending.EXITED, OutcomeKind.NONZERO_EXIT),
        (-signal.SIGKILL, b"", False, Ending.KILLED_AT_LAUNCH, OutcomeKind.BAD_SIGNATURE),
        (-signal.SIGKILL, b"1", False, Ending.CRASHED, OutcomeKind.CRASH),  # it ran: not a launch refusal
        (-signal.SIGSEGV, b"", False, Ending.CRASHED, OutcomeKind.CRASH),
        (-signal.SIGILL, b"", False, Ending.CRASHED, OutcomeKind.CRASH),
        (-signal.SIGBUS, b"", False, Ending.CRASHED, OutcomeKind.CRASH),
        (-signal.SIGSYS, b"", False, Ending.BAD_SYSCALL, OutcomeKind.BAD_SYSCALL),  # an invalid syscall on macOS
        (None, b"", True, Ending.TIMED_OUT, OutcomeKind.TIMEOUT),
    ],
)
def test_classify(returncode, stdout, timed_out, ending, kind):
    run = classify(returncode, stdout, b"", timed_out)
    assert run.ending is ending and run.native
    outcome = judge(run, b"13\n")
    assert outcome.kind is kind and outcome.native


def test_native_available_only_on_apple_silicon():
    assert native_available() == (sys.platform == "darwin" and os.uname().machine == "arm64")


def test_runner_captures_stdout_and_status():
    run = run_native(b"#!/bin/sh\nprintf '13\\n'\nprintf 'e' >&2\nexit 0\n")
    assert (run.ending, run.stdout, run.stderr, run.exit_code, run.native) == (Ending.EXITED, b"13\n", b"e", 0, True)
    assert run_native(b"#!/bin/sh\nexit 3\n").exit_code == 3


def test_runner_runs_with_no_arguments_and_no_environment():
    run = run_native(b'#!/bin/sh\nprintf "%s|%s" "$#" "${HOME:-unset}"\n')
    assert run.stdout == b"0|unset"


def test_runner_times_out():
    run = run_native(b"#!/bin/sh\nexec sleep 5\n", timeout_s=0.3)
    assert run.ending is Ending.TIMED_OUT


@pytest.mark.parametrize(("signum", "ending"), [(signal.SIGSEGV, Ending.CRASHED), (signal.SIGKILL, Ending.KILLED_AT_LAUNCH)])
def test_runner_sees_signals(signum, ending):
    assert run_native(f"#!/bin/sh\nkill -{int(signum)} $$\n".encode()).ending is ending


def test_runner_refused_exec_is_reported():
    # no "#!" line and not a binary this kernel can load: execve fails (ENOEXEC), nothing runs
    run = run_native(b"\x00\x01\x02\x03 not an executable")
    assert run.ending is Ending.KILLED_AT_LAUNCH and "exec failed" in run.detail
    assert judge(run, None).kind is OutcomeKind.BAD_SIGNATURE
