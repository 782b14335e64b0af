"""The structural rules: a mutated binary for each rule is rejected naming it (signature: test_runtime_signature)."""

from __future__ import annotations

import lief
import pytest
from runtime_programs import MUTATIONS, programs, resign  # noqa: F401  (programs: session fixture)

from exe_coder.runtime import macho as m
from exe_coder.runtime.outcome import OutcomeKind
from exe_coder.runtime.signature import SignatureError, check_signature
from exe_coder.runtime.validate import RULE_NAMES, RULES, check_rules, validate
from exe_coder.runtime.verify import verify

GOLDEN = ["ok_write", "stack_digits"]


def test_every_rule_has_a_mutation_and_a_reason():
    assert set(MUTATIONS) == set(RULE_NAMES)
    assert len(RULE_NAMES) == len(set(RULE_NAMES))
    for rule in RULES:
        assert rule.reason and "\n" not in rule.reason


@pytest.mark.parametrize("golden", GOLDEN)
def test_golden_binaries_pass_every_rule(programs, golden):
    parsed, violation = validate(programs[golden])
    assert violation is None and parsed is not None
    check_signature(parsed)


@pytest.mark.parametrize("golden", GOLDEN)
@pytest.mark.parametrize("rule", RULE_NAMES)
def test_mutation_is_rejected_naming_its_rule(programs, golden, rule):
    mutated = MUTATIONS[rule](programs[golden])
    _, violation = validate(mutated)
    assert violation is not None and violation.rule == rule, violation
    outcome = verify(mutated, native=False)
    assert outcome.kind is OutcomeKind.INVALID_MACHO
    assert outcome.label == f"invalid_macho:{rule}"
    assert not outcome.is_valid_macho


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_mutation_is_rejected_even_when_resigned(programs, rule):
    """Re-signing cannot rescue a structural fault (where the signature is still readable)."""
    mutated = MUTATIONS[rule](programs["ok_write"])
    try:
        mutated = resign(mutated)
    except (m.MachOFormatError, SignatureError, IndexError, KeyError):
        pass  # the mutation broke what re-signing needs; the unsigned mutant is tested above
    assert verify(mutated, native=False).label == f"invalid_macho:{rule}"


def test_check_rules_reports_the_first_failure_in_table_order(programs):
    image = MUTATIONS["uuid"](MUTATIONS["flags_pie"](programs["ok_write"]))
    assert check_rules(m.parse(image)).rule == "flags_pie"


# --- an independent parser agrees -------------------------------------------------------------


@pytest.mark.parametrize("golden", GOLDEN)
def test_lief_agrees_on_segments_entry_and_uuid(programs, golden):
    image = programs[golden]
    ours = m.parse(image)
    theirs = lief.MachO.parse(list(image)).at(0)
    assert lief.MachO.check_layout(theirs)[0]
    assert [(s.name, s.virtual_address, s.virtual_size, s.file_offset, s.file_size) for s in theirs.segments] == [
        (s.name, s.vmaddr, s.vmsize, s.fileoff, s.filesize) for s in ours.segments
    ]
    assert theirs.main_command.entrypoint == ours.entry_points[0].entryoff
    assert bytes(theirs.uuid.uuid) == ours.uuid
    assert [c.command.name for c in theirs.commands] == [c.name.removeprefix("LC_") for c in ours.commands]
    assert theirs.code_signature.data_offset == ours.code_signatures[0].dataoff
