"""The verifier on the project's own golden binaries (codegen's add template): stdout is a+b."""

from __future__ import annotations

import lief
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from runtime_programs import MUTATIONS

from exe_coder.codegen.program import ProgramTemplate
from exe_coder.runtime import macho as m
from exe_coder.runtime.outcome import OutcomeKind
from exe_coder.runtime.signature import check_signature
from exe_coder.runtime.validate import RULE_NAMES, validate
from exe_coder.runtime.verify import verify

INT32 = st.integers(-(1 << 31), (1 << 31) - 1)
EXTREMES = [-(1 << 31), -1, 0, 1, (1 << 31) - 1]


@pytest.fixture(scope="module")
def add() -> ProgramTemplate:
    return ProgramTemplate.load("add")


@settings(max_examples=150, deadline=None)
@given(a=INT32, b=INT32)
@example(a=-(1 << 31), b=-(1 << 31))
@example(a=(1 << 31) - 1, b=(1 << 31) - 1)
@example(a=0, b=0)
@example(a=-(1 << 31), b=(1 << 31) - 1)
@example(a=17, b=-4)
def test_emulated_stdout_is_the_sum(a, b):
    image = ProgramTemplate.load("add").patch(a=a, b=b)
    outcome = verify(image, f"{a + b}\n", native=False)
    assert outcome.kind is OutcomeKind.OK, outcome
    assert outcome.stdout == f"{a + b}\n".encode() and outcome.exit_code == 0
    assert outcome.instructions and outcome.instructions < 200


@pytest.mark.parametrize("a", EXTREMES)
@pytest.mark.parametrize("b", EXTREMES)
def test_extremes_and_zero_through_the_slow_path(add, a, b):
    assert verify(add.build(a=a, b=b), f"{a + b}\n", native=False).kind is OutcomeKind.OK


def test_a_wrong_expectation_is_wrong_output(add):
    outcome = verify(add.patch(a=2, b=2), "5\n", native=False)
    assert outcome.kind is OutcomeKind.WRONG_OUTPUT and outcome.stdout == b"4\n"


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_mutated_golden_binary_is_rejected_naming_the_rule(add, rule):
    mutated = MUTATIONS[rule](add.build(a=17, b=-4))
    assert verify(mutated, native=False).label == f"invalid_macho:{rule}"


def test_golden_binary_agrees_with_lief(add):
    image = add.build(a=17, b=-4)
    ours, violation = validate(image)
    assert violation is None
    check_signature(ours)
    theirs = lief.MachO.parse(list(image)).at(0)
    assert lief.MachO.check_layout(theirs)[0]
    assert [(s.name, s.virtual_address, s.virtual_size, s.file_offset, s.file_size) for s in theirs.segments] == [
        (s.name, s.vmaddr, s.vmsize, s.fileoff, s.filesize) for s in ours.segments
    ]
    assert theirs.main_command.entrypoint == ours.entry_points[0].entryoff
    assert bytes(theirs.uuid.uuid) == ours.uuid


def test_patched_binary_differs_only_where_expected(add):
    """Different operands give different UUIDs (content-derived) but the same layout."""
    one, two = m.parse(add.patch(a=1, b=2)), m.parse(add.patch(a=3, b=4))
    assert one.uuid != two.uuid
    assert one.segments == two.segments


def test_threads_verify_concurrently(add):
    """Each thread has its own engine: concurrent runs never see each other's programs."""
    from concurrent.futures import ThreadPoolExecutor

    pairs = [(a, -3 * a + 7) for a in range(-60, 60)]
    images = [add.patch(a=a, b=b) for a, b in pairs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda image: verify(image, native=False), images))
    assert [o.stdout for o in outcomes] == [f"{a + b}\n".encode() for a, b in pairs]
