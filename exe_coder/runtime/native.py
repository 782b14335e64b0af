"""Run an executable on the host CPU when the host is an Apple Silicon Mac.

The kernel is then the judge of the signature (it SIGKILLs a badly signed program before its
first instruction) and of system calls (SIGSYS for an invalid one). Elsewhere this module is
never asked to run anything; ``classify`` is a pure function so that it is tested everywhere.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile

from exe_coder.runtime.execution import Ending, Execution

DEFAULT_TIMEOUT_S = 5.0


def native_available() -> bool:
    """True on macOS arm64, the only host that can run these binaries directly."""
    return sys.platform == "darwin" and platform.machine() == "arm64"


def classify(returncode: int | None, stdout: bytes, stderr: bytes, timed_out: bool, timeout_s: float = DEFAULT_TIMEOUT_S) -> Execution:
    """Turn what ``subprocess`` saw into an ``Execution`` (a negative return code is a signal)."""
    facts = dict(stdout=stdout, stderr=stderr, native=True)
    if timed_out or returncode is None:
        return Execution(Ending.TIMED_OUT, detail=f"wall clock over {timeout_s:g} s", **facts)
    if returncode >= 0:
        return Execution(Ending.EXITED, exit_code=returncode, **facts)
    signum = -returncode
    name = _signal_name(signum)
    if signum == signal.SIGKILL and not stdout and not stderr:
        # "Killed: 9" with no output is how macOS refuses an invalid code signature
        return Execution(Ending.KILLED_AT_LAUNCH, detail=f"{name} at launch (code signature refused)", **facts)
    if signum == getattr(signal, "SIGSYS", 12):
        return Execution(Ending.BAD_SYSCALL, detail=f"{name}: the kernel refused a system call", **facts)
    return Execution(Ending.CRASHED, detail=f"killed by {name}", **facts)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def run_native(image: bytes, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Execution:
    """Write the image to a private temporary file, make it executable, run it with no arguments."""
    with tempfile.TemporaryDirectory(prefix="exe-coder-") as folder:
        path = os.path.join(folder, "a.out")
        with open(path, "wb") as out:
            out.write(image)
        os.chmod(path, 0o700)
        try:
            done = subprocess.run([path], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, env={}, cwd=folder)
        except subprocess.TimeoutExpired as late:
            return classify(None, late.stdout or b"", late.stderr or b"", True, timeout_s)
        except OSError as err:  # e.g. EBADARCH: the kernel would not even start it
            return Execution(Ending.KILLED_AT_LAUNCH, detail=f"exec failed: {err}", native=True)
        return classify(done.returncode, done.stdout, done.stderr, False, timeout_s)
