"""The verifier: any bytes in, one ``Outcome`` out -- validate, check the signature, run, compare.

Order matters and mirrors a real launch: the loader's structural rules first (first failure
wins, ``invalid_macho:<rule>``), then the code signature (``bad_signature``, its ``rule`` one
of ``SIGNATURE_RULES``), then execution -- natively on an Apple Silicon Mac, under the emulator
elsewhere -- and finally the exit
status (``nonzero_exit``) and stdout (``wrong_output``). ``verify`` never raises on its input:
an unexpected error inside the verifier itself is reported as a ``crash`` whose detail starts
with ``VERIFIER_ERROR`` so that it can never pass for a correct program.
"""

from __future__ import annotations

from exe_coder.runtime import emulate as emulator
from exe_coder.runtime import native as host
from exe_coder.runtime.execution import Ending, Execution
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.runtime.signature import SignatureError, check_signature
from exe_coder.runtime.validate import validate

DEFAULT_MAX_INSTRUCTIONS = emulator.DEFAULT_MAX_INSTRUCTIONS
VERIFIER_ERROR = "VERIFIER_ERROR"


def verify(
    image: bytes,
    expect_stdout: str | bytes | None = None,
    *,
    max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
    native: bool | None = None,
    timeout_s: float = emulator.DEFAULT_TIMEOUT_S,
) -> Outcome:
    """Judge one executable image.

    ``expect_stdout``: the exact bytes stdout must hold (a str is UTF-8 encoded); None accepts any.
    ``native``: None runs natively when the host can (macOS arm64), True demands it (ValueError
    elsewhere), False always emulates.
    """
    if native and not host.native_available():
        raise ValueError("native execution needs an Apple Silicon Mac (macOS arm64)")
    run_native = host.native_available() if native is None else native
    expected = expect_stdout.encode() if isinstance(expect_stdout, str) else expect_stdout
    try:
        return _verify(bytes(image), expected, max_instructions, run_native, timeout_s)
    except Exception as err:  # the contract: every input ends as an Outcome
        return Outcome(kind=OutcomeKind.CRASH, detail=f"{VERIFIER_ERROR}: {type(err).__name__}: {err}"[:500])


def _verify(image: bytes, expected: bytes | None, max_instructions: int, run_native: bool, timeout_s: float) -> Outcome:
    parsed, violation = validate(image)
    if violation is not None:
        return Outcome(kind=OutcomeKind.INVALID_MACHO, rule=violation.rule, detail=violation.detail)
    assert parsed is not None
    try:
        check_signature(parsed)
    except SignatureError as err:
        return Outcome(kind=OutcomeKind.BAD_SIGNATURE, rule=err.rule, detail=f"{err.rule}: {err}")
    if run_native:
        execution = host.run_native(image, timeout_s=timeout_s)
    else:
        execution = emulator.emulate(parsed, max_instructions=max_instructions, timeout_s=timeout_s)
    return judge(execution, expected)


def judge(execution: Execution, expected: bytes | None) -> Outcome:
    """Classify how a run ended against the expected stdout."""
    facts = dict(
        stdout=execution.stdout,
        exit_code=execution.exit_code,
        instructions=execution.instructions,
        native=execution.native,
    )
    if execution.refused:
        # The emulator refused a call the program made; whatever happened next is not what a
        # Mac would do, so the run counts as a bad system call.
        refused = "; ".join(execution.refused[:3]) + (" ..." if len(execution.refused) > 3 else "")
        after = execution.detail or f"{execution.ending.value} {execution.exit_code if execution.exit_code is not None else ''}".strip()
        return Outcome(kind=OutcomeKind.BAD_SYSCALL, detail=f"refused {refused}; then {after}", **facts)
    kind = {
        Ending.CRASHED: OutcomeKind.CRASH,
        Ending.TIMED_OUT: OutcomeKind.TIMEOUT,
        Ending.KILLED_AT_LAUNCH: OutcomeKind.BAD_SIGNATURE,
        Ending.BAD_SYSCALL: OutcomeKind.BAD_SYSCALL,
    }.get(execution.ending)
    if kind is not None:
        return Outcome(kind=kind, detail=execution.detail, **facts)
    if execution.exit_code != 0:
        return Outcome(kind=OutcomeKind.NONZERO_EXIT, detail=f"exit status {execution.exit_code}", **facts)
    if expected is not None and execution.stdout != expected:
        return Outcome(kind=OutcomeKind.WRONG_OUTPUT, detail=f"stdout {execution.stdout[:64]!r} != {expected[:64]!r}", **facts)
    return Outcome(kind=OutcomeKind.OK, detail=execution.detail, **facts)
