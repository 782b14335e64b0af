"""verify() never raises and never hangs: random bytes, mutated goldens, and random code, re-signed."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_programs import programs, resign  # noqa: F401  (programs: session fixture)

from exe_coder.runtime import macho as m
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.runtime.verify import VERIFIER_ERROR, verify

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BUDGET = 5_000


def _checked(image: bytes) -> Outcome:
    outcome = verify(image, "13\n", native=False, max_instructions=BUDGET, timeout_s=2.0)
    assert isinstance(outcome, Outcome)
    assert not outcome.detail.startswith(VERIFIER_ERROR), outcome.detail
    if outcome.instructions is not None:
        assert outcome.instructions <= BUDGET
    return outcome


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(data):
    assert _checked(data).kind is OutcomeKind.INVALID_MACHO


@FUZZ
@given(tail=st.binary(max_size=1024))
def test_random_bytes_behind_a_valid_magic(tail):
    outcome = _checked(struct.pack("<I", m.MH_MAGIC_64) + tail)
    assert outcome.kind is OutcomeKind.INVALID_MACHO


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 0x7FF), st.integers(0, 255)), min_size=1, max_size=8),
    sign_again=st.booleans(),
)
def test_mutated_header_and_load_commands(programs, edits, sign_again):
    image = bytearray(programs["ok_write"])
    for offset, value in edits:
        image[offset] = value
    image = bytes(image)
    if sign_again:
        try:
            image = resign(image)
        except Exception:
            pass  # the edit broke what re-signing needs; the unsigned mutant is still a fine input
    _checked(image)


@FUZZ
@given(at=st.floats(0, 1), length=st.integers(1, 64), truncate=st.booleans(), data=st.data())
def test_mutated_anywhere_or_truncated(programs, at, length, truncate, data):
    golden = programs["stack_digits"]
    dataoff = m.parse(golden).code_signatures[0].dataoff
    image = bytearray(golden)
    start = int(at * (len(image) - 1))
    if truncate:
        image = image[:start]
    else:
        image[start : start + length] = data.draw(st.binary(min_size=length, max_size=length))
    outcome = _checked(bytes(image))
    if truncate or image[:dataoff] != golden[:dataoff]:
        assert not outcome.is_valid_macho  # a short file, or a changed signed byte, never runs


@FUZZ
@given(words=st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=12))
def test_random_code_reaches_the_emulator(programs, words):
    """Overwrite __text with random instructions and re-sign: the emulator must classify it."""
    image = bytearray(programs["ok_write"])
    code = m.parse(bytes(image)).segment("__TEXT").section("__text")
    blob = struct.pack(f"<{len(words)}I", *words)[: code.size]
    image[code.offset : code.offset + len(blob)] = blob
    image = resign(bytes(image))
    outcome = _checked(image)
    assert outcome.is_valid_macho  # structure and signature intact: the verdict came from running it
    verify(programs["stack_digits"], native=False)  # another program in between
    assert _checked(image) == outcome  # the same bytes, the same verdict, down to the detail


def test_internal_errors_become_an_outcome(programs, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("exe_coder.runtime.emulate.emulate", broken)
    outcome = verify(programs["ok_write"], "13\n", native=False)
    assert outcome.kind is OutcomeKind.CRASH and outcome.detail.startswith(VERIFIER_ERROR)
    assert not outcome.exec_ok


@pytest.mark.parametrize("image", [b"", b"\0", bytes(32), b"\xcf\xfa\xed\xfe" + bytes(28)])
def test_degenerate_inputs(image):
    assert _checked(image).kind is OutcomeKind.INVALID_MACHO


def test_non_bytes_like_input_is_an_outcome():
    assert isinstance(verify(bytearray(b"\xcf\xfa"), native=False), Outcome)
    assert isinstance(verify(memoryview(b"\xcf\xfa\xed\xfe"), native=False), Outcome)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 0x7FF), st.integers(0, 255)), max_size=8), cut=st.integers(0, 60000))
def test_inspect_describes_any_mutant(programs, edits, cut):
    from exe_coder.runtime.describe import inspect_image

    image = bytearray(programs["ok_write"][:cut])
    for offset, value in edits:
        if offset < len(image):
            image[offset] = value
    inspection = inspect_image(bytes(image), "mutant")
    assert inspection.lines and inspection.lines[0].startswith("file")
    assert inspection.valid == (verify(bytes(image), native=False).is_valid_macho)
