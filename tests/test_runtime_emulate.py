"""The emulator and verify() on hand-written programs linked by zig: each ends as the right Outcome."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_programs import programs  # noqa: F401  (session fixture)

from exe_coder.runtime import emulate as emu
from exe_coder.runtime.execution import Ending
from exe_coder.runtime.macho import parse
from exe_coder.runtime.outcome import OutcomeKind
from exe_coder.runtime.verify import verify

# program -> (expected kind, stdout, exit code)
EXPECTED = {
    "ok_write": (OutcomeKind.OK, b"13\n", 0),
    "stack_digits": (OutcomeKind.OK, b"-1234\n", 0),
    "crash_null": (OutcomeKind.CRASH, b"", None),
    "crash_udf": (OutcomeKind.CRASH, b"", None),
    "crash_write_text": (OutcomeKind.CRASH, b"", None),
    "loop_forever": (OutcomeKind.TIMEOUT, b"", None),
    "forbidden_syscall": (OutcomeKind.BAD_SYSCALL, b"", 78),  # exits with errno ENOSYS from x0
    "bad_fd": (OutcomeKind.BAD_SYSCALL, b"", 9),  # EBADF
    "bad_buffer": (OutcomeKind.BAD_SYSCALL, b"", 14),  # EFAULT
    "exit_3": (OutcomeKind.NONZERO_EXIT, b"13\n", 3),
    "return_7": (OutcomeKind.NONZERO_EXIT, b"", 7),
    "stderr_only": (OutcomeKind.OK, b"", 0),
    "leak_state": (OutcomeKind.OK, bytes(256), 0),  # registers and unused stack start zeroed
}


def test_every_fixture_program_has_an_expectation(programs):
    assert set(programs) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_program_outcome(programs, name):
    kind, stdout, exit_code = EXPECTED[name]
    outcome = verify(programs[name], native=False, max_instructions=20_000)
    assert outcome.kind is kind, outcome.detail
    assert outcome.stdout == stdout
    assert outcome.exit_code == exit_code
    assert outcome.native is False


def test_expected_stdout_is_compared(programs):
    assert verify(programs["ok_write"], "13\n", native=False).kind is OutcomeKind.OK
    assert verify(programs["ok_write"], b"13\n", native=False).kind is OutcomeKind.OK
    wrong = verify(programs["ok_write"], "14\n", native=False)
    assert wrong.kind is OutcomeKind.WRONG_OUTPUT and wrong.stdout == b"13\n"
    assert not wrong.stdout_correct and wrong.exec_ok
    # stderr never counts as stdout
    assert verify(programs["stderr_only"], "13\n", native=False).kind is OutcomeKind.WRONG_OUTPUT


def test_stderr_is_captured_separately(programs):
    run = emu.emulate(parse(programs["stderr_only"]))
    assert run.stderr == b"13\n" and run.stdout == b""


def test_refused_call_sets_carry_and_errno(programs):
    # the program exits with x0 only when the carry flag was set, else with 42
    run = emu.emulate(parse(programs["forbidden_syscall"]))
    assert run.ending is Ending.EXITED and run.exit_code == emu.ENOSYS
    assert run.refused and "getpid" in run.refused[0]


def test_successful_write_clears_carry_and_returns_length(programs):
    run = emu.emulate(parse(programs["ok_write"]))
    assert run.exit_code == 0  # 99 would mean carry set or x0 != 3 after write


def test_instruction_count_is_exact(programs):
    # ok_write executes 5 instructions, write, b.cs, cmp, b.ne, then 3 to exit: 11 in all
    assert emu.emulate(parse(programs["ok_write"])).instructions == 11
    # return_7: mov, ret
    assert emu.emulate(parse(programs["return_7"])).instructions == 2


@pytest.mark.parametrize("budget", [1, 7, 1000])
def test_budget_bounds_a_loop(programs, budget):
    outcome = verify(programs["loop_forever"], native=False, max_instructions=budget)
    assert outcome.kind is OutcomeKind.TIMEOUT and outcome.instructions == budget
    assert outcome.timeout_or_crash


def test_budget_too_small_for_a_correct_program(programs):
    assert verify(programs["stack_digits"], native=False, max_instructions=5).kind is OutcomeKind.TIMEOUT


def test_wall_clock_guard_stops_a_long_run(programs):
    outcome = verify(programs["loop_forever"], native=False, max_instructions=10**12, timeout_s=0.05)
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert "wall clock" in outcome.detail


def test_crash_detail_names_the_fault(programs):
    assert "read of unmapped 0x0" in verify(programs["crash_null"], native=False).detail
    assert "undefined instruction" in verify(programs["crash_udf"], native=False).detail
    assert "write to protected" in verify(programs["crash_write_text"], native=False).detail


def test_runs_do_not_leak_into_each_other(programs):
    # the engine is reused: alternate programs and check each result is unchanged
    first = {name: verify(image, native=False) for name, image in programs.items()}
    for name in reversed(sorted(programs)):
        assert verify(programs[name], native=False) == first[name]


def test_a_run_sees_nothing_of_the_runs_before_it(programs):
    first = verify(programs["leak_state"], native=False)
    for name in ("leak_state", "stack_digits", "crash_null", "forbidden_syscall"):  # they dirty registers and stack
        verify(programs[name], native=False)
        assert verify(programs["leak_state"], native=False) == first
    assert first.stdout == bytes(256)


def test_native_demanded_off_a_mac_is_refused(programs, monkeypatch):
    monkeypatch.setattr("exe_coder.runtime.native.native_available", lambda: False)
    with pytest.raises(ValueError):
        verify(programs["ok_write"], native=True)


def _wall_clock_outcome_in_child(image: bytes, queue) -> None:
    outcome = verify(image, native=False, max_instructions=10**12, timeout_s=0.1)
    queue.put((outcome.kind.value, outcome.detail))


def test_forked_worker_gets_its_own_engine_and_watchdog(programs):
    """A child forked after the parent emulated must still be stopped by the wall clock."""
    import multiprocessing

    verify(programs["ok_write"], native=False)  # the parent's engine (and watchdog thread) exist now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_wall_clock_outcome_in_child, args=(programs["loop_forever"], queue))
    child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child's run was never stopped")
    kind, detail = queue.get(timeout=5)
    assert kind == "timeout" and "wall clock" in detail


def test_a_finished_threads_engine_and_watchdog_go_away(programs):
    import gc
    import threading
    import time

    def watchdogs() -> int:
        return sum(t.name == "exe-coder-emulator-watchdog" for t in threading.enumerate())

    def settled() -> int:
        """Collect, then wait for the watchdogs of collected engines to end."""
        gc.collect()
        deadline = time.monotonic() + 5
        count = watchdogs()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if watchdogs() == count:
                return count
            count = watchdogs()
        return count

    before = settled()  # engines of earlier tests' finished threads are gone now
    gc.disable()  # engines are reference cycles (unicorn holds their hooks): freed by the collector
    try:
        for _ in range(3):
            worker = threading.Thread(target=lambda: verify(programs["ok_write"], native=False))
            worker.start()
            worker.join()
        assert watchdogs() == before + 3  # each thread made its own engine
    finally:
        gc.enable()
    assert settled() == before


@settings(max_examples=200, deadline=None)
@given(old=st.binary(min_size=8, max_size=256).map(lambda b: b[: len(b) - len(b) % 8]), data=st.data())
def test_changed_spans_cover_exactly_the_changed_words(old, data):
    """The code-cache invalidation drops every changed word and nothing outside the buffer."""
    new = bytearray(old)
    for index in data.draw(st.lists(st.integers(0, len(old) - 1), max_size=6)):
        new[index] ^= data.draw(st.integers(1, 255))
    spans = emu._changed_spans(old, bytes(new))
    covered = set()
    for lo, hi in spans:
        assert 0 <= lo < hi <= len(old) and lo % 8 == 0 and hi % 8 == 0
        covered.update(range(lo, hi))
    assert {i for i in range(len(old)) if old[i] != new[i]} <= covered
    assert (spans == []) == (bytes(new) == old)
    assert spans == sorted(spans)
