"""The structural rules and the code signature: a mutated binary for each rule is rejected naming it."""

from __future__ import annotations

import lief
import pytest
from runtime_programs import MUTATIONS, programs, put, resign  # noqa: F401  (programs: session fixture)

from exe_coder.runtime import macho as m
from exe_coder.runtime.outcome import OutcomeKind
from exe_coder.runtime.signature import SignatureError, check_signature, read_signature
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


# --- code signature ------------------------------------------------------------------------


def _cd_field(offset: int, fmt: str, value):
    """Overwrite a CodeDirectory header field (big-endian) of the binary's signature."""

    def mutate(image: bytes) -> bytes:
        f = m.parse(image)
        sig = f.code_signatures[0]
        cd = read_signature(f).code_directory
        at = sig.dataoff + image[sig.dataoff :].find(cd.raw[:64]) + offset
        return put(image, at, fmt, value)

    return mutate


def _flip_code_byte(image: bytes) -> bytes:
    code = m.parse(image).segment("__TEXT").section("__text")
    return put(image, code.offset, "<B", image[code.offset] ^ 0x01)


def _flip_last_signed_byte(image: bytes) -> bytes:
    dataoff = m.parse(image).code_signatures[0].dataoff
    return put(image, dataoff - 1, "<B", image[dataoff - 1] ^ 0x80)


SIGNATURE_TAMPERS = {
    "code byte": (_flip_code_byte, "page 0"),
    "last byte before the signature": (_flip_last_signed_byte, "hash does not match"),
    "superblob magic": (lambda i: put(i, m.parse(i).code_signatures[0].dataoff, ">I", 0xFADE0CC1), "SuperBlob magic"),
    "codeLimit": (_cd_field(32, ">I", 0x100), "codeLimit"),
    "hash type": (_cd_field(37, ">B", 1), "SHA-256"),
    "page size": (_cd_field(39, ">B", 13), "page size"),
    "execSeg limit": (_cd_field(72, ">Q", 0x10), "execSeg"),
    "execSeg flags": (_cd_field(80, ">Q", 0), "CS_EXECSEG_MAIN_BINARY"),
    "flags": (_cd_field(12, ">I", 0x20000), "CS_ADHOC"),
    "version": (_cd_field(8, ">I", 0x20100), "version"),
    "code slots": (_cd_field(28, ">I", 1), "code slots"),
}


@pytest.mark.parametrize("tamper", sorted(SIGNATURE_TAMPERS))
def test_signature_tamper_is_a_bad_signature(programs, tamper):
    mutate, reason = SIGNATURE_TAMPERS[tamper]
    outcome = verify(mutate(programs["ok_write"]), native=False)
    assert outcome.kind is OutcomeKind.BAD_SIGNATURE, outcome
    assert reason in outcome.detail
    assert not outcome.is_valid_macho


def test_resigning_a_code_change_makes_the_signature_valid_again(programs):
    tampered = _flip_code_byte(programs["ok_write"])
    assert verify(tampered, native=False).kind is OutcomeKind.BAD_SIGNATURE
    assert verify(resign(tampered), native=False).kind is not OutcomeKind.BAD_SIGNATURE


def test_signature_summary_of_a_zig_binary(programs):
    signature = check_signature(m.parse(programs["ok_write"]))
    cd = signature.code_directory
    assert cd.identifier == "ok_write"  # zig names the signature after the output file
    assert cd.page_size in (1 << 12, 1 << 14)
    assert cd.n_code_slots == -(-cd.code_limit // cd.page_size)
    assert len(cd.cdhash) == 20


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
