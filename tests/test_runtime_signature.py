"""The code signature: every header field no hash covers is held to what an ad-hoc, linker-signed
main executable may carry; tampering one fails with the rule that names it, on a binary zig
linked and on one of ours."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_programs import (  # noqa: F401  (programs: session fixture)
    CD_FIELDS,
    build_signature,
    code_directory_offset,
    programs,
    put,
    read_field,
    resign,
    set_field,
)

from exe_coder.codegen.program import ProgramTemplate
from exe_coder.runtime import macho as m
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.runtime.signature import (
    CSMAGIC_BLOBWRAPPER,
    CSMAGIC_REQUIREMENTS,
    SIGNATURE_RULES,
    check_signature,
    read_signature,
)
from exe_coder.runtime.verify import verify

GOLDEN = ["zig", "ours"]
REQUIREMENTS = struct.pack(">III", CSMAGIC_REQUIREMENTS, 12, 0)  # what `codesign -s -` writes: none


@pytest.fixture(scope="module")
def goldens(programs) -> dict[str, bytes]:
    return {"zig": programs["ok_write"], "ours": ProgramTemplate.load("add").build(a=17, b=-4)}


def _rejected(image: bytes) -> Outcome:
    outcome = verify(image, native=False)
    assert outcome.kind is OutcomeKind.BAD_SIGNATURE, outcome
    assert outcome.rule in SIGNATURE_RULES and outcome.detail.startswith(f"{outcome.rule}: ")
    assert not outcome.is_valid_macho
    return outcome


def _accepted(image: bytes) -> Outcome:
    outcome = verify(image, native=False)
    assert outcome.kind is not OutcomeKind.BAD_SIGNATURE and outcome.is_valid_macho, outcome
    return outcome


def _flip_code_byte(image: bytes) -> bytes:
    code = m.parse(image).segment("__TEXT").section("__text")
    return put(image, code.offset, "<B", image[code.offset] ^ 0x01)


def _flip_last_signed_byte(image: bytes) -> bytes:
    dataoff = m.parse(image).code_signatures[0].dataoff
    return put(image, dataoff - 1, "<B", image[dataoff - 1] ^ 0x80)


def _identifier_byte(at_end: bool, value: int):
    def mutate(image: bytes) -> bytes:
        cd = read_signature(m.parse(image)).code_directory
        where = cd.ident_end if at_end else cd.ident_offset
        return put(image, code_directory_offset(image) + where, ">B", value)

    return mutate


# (mutation, the rule it must break, a word the detail must hold); every one tampers a single field.
TAMPERS = {
    "superblob magic": (set_field("sb", "magic", 0xFADE0CC1), "superblob_magic", "SuperBlob magic"),
    "superblob length past the region": (set_field("sb", "length", 0xFFFF), "superblob_length", "SuperBlob length"),
    "superblob count huge": (set_field("sb", "count", 0x10000000), "superblob_length", "count"),
    "superblob count zero": (set_field("sb", "count", 0), "superblob_blobs", "CodeDirectories"),
    "index type not a CodeDirectory": (set_field("sb", "type0", 2), "superblob_blobs", "CodeDirectories"),
    "index offset inside the index": (set_field("sb", "offset0", 4), "superblob_index", "overlaps the SuperBlob index"),
    "index offset past the end": (set_field("sb", "offset0", 0xFFFF), "superblob_index", "runs past"),
    "cd magic": (set_field("cd", "magic", 0xFADE0C03), "cd_magic", "magic"),
    "cd length past the SuperBlob": (set_field("cd", "length", 0xFFFF), "cd_length", "length"),
    "cd length shrunk": (set_field("cd", "length", delta=-32), "cd_hash_offset", "CodeDirectory length"),
    "version before execSeg": (set_field("cd", "version", 0x20300), "cd_version", "version"),
    "version past codesign's limit": (set_field("cd", "version", 0x2F001), "cd_version", "version"),
    "version whose header overlaps the identifier": (set_field("cd", "version", 0x20500), "cd_version", "header"),
    "flags without CS_ADHOC": (set_field("cd", "flags", 0x20000), "cd_flags", "CS_ADHOC"),
    "flags with CS_KILL": (set_field("cd", "flags", 0x20202), "cd_flags", "flags 0x20202"),
    "flags with CS_RUNTIME": (set_field("cd", "flags", 0x10002), "cd_flags", "flags 0x10002"),
    "hashOffset forward": (set_field("cd", "hashOffset", delta=32), "cd_hash_offset", "hashOffset"),
    "hashOffset into the header": (set_field("cd", "hashOffset", 40), "cd_hash_offset", "hashOffset"),
    "identOffset into the header": (set_field("cd", "identOffset", 0), "cd_identifier", "identOffset 0"),
    "identOffset past the blob": (set_field("cd", "identOffset", 0xFFFFFF), "cd_identifier", "identOffset"),
    "identOffset into the hashes": (set_field("cd", "identOffset", delta=40), "cd_identifier", "identOffset"),
    "identifier unterminated": (_identifier_byte(True, ord("x")), "cd_identifier", "identifier"),
    "identifier empty": (_identifier_byte(False, 0), "cd_identifier", "identifier"),
    "nSpecialSlots 1": (set_field("cd", "nSpecialSlots", 1), "cd_special_slots", "nSpecialSlots 1"),
    "nSpecialSlots huge": (set_field("cd", "nSpecialSlots", 0xFFFFFFFF), "cd_special_slots", "nSpecialSlots"),
    "nCodeSlots 1": (set_field("cd", "nCodeSlots", 1), "cd_code_slots", "code slots"),
    "nCodeSlots huge": (set_field("cd", "nCodeSlots", 0xFFFFFFFF), "cd_code_slots", "code slots"),
    "codeLimit": (set_field("cd", "codeLimit", 0x100), "cd_code_limit", "codeLimit"),
    "codeLimit64": (set_field("cd", "codeLimit64", 1), "cd_code_limit", "codeLimit64"),
    "hashSize": (set_field("cd", "hashSize", 20), "cd_hash_size", "hash size"),
    "hashType": (set_field("cd", "hashType", 1), "cd_hash_type", "SHA-256"),
    "pageSize 2^13": (set_field("cd", "pageSize", 13), "cd_page_size", "page size"),
    "pageSize 0 (one infinite page)": (set_field("cd", "pageSize", 0), "cd_page_size", "page size"),
    "platform": (set_field("cd", "platform", 1), "cd_platform", "platform"),
    "spare2": (set_field("cd", "spare2", 1), "cd_spare", "spare2"),
    "spare3": (set_field("cd", "spare3", 1), "cd_spare", "spare3"),
    "scatterOffset": (set_field("cd", "scatterOffset", 88), "cd_scatter", "scatterOffset"),
    "teamOffset": (set_field("cd", "teamOffset", 88), "cd_team", "teamOffset"),
    "execSegBase": (set_field("cd", "execSegBase", 0x4000), "cd_exec_seg", "execSeg"),
    "execSegLimit": (set_field("cd", "execSegLimit", 0x10), "cd_exec_seg", "execSeg"),
    "execSegFlags zero": (set_field("cd", "execSegFlags", 0), "cd_exec_seg_flags", "CS_EXECSEG_MAIN_BINARY"),
    "execSegFlags allow-unsigned": (set_field("cd", "execSegFlags", 0x11), "cd_exec_seg_flags", "0x11"),
    "code byte": (_flip_code_byte, "page_hash", "hash does not match"),
    "last byte before the signature": (_flip_last_signed_byte, "page_hash", "hash does not match"),
}

# Tampers that need room for more than a field: a signature rebuilt around our golden binary.
REBUILT = {
    "version 0x20500 with a runtime version": (
        dict(version=0x20500, extension=struct.pack(">II", 0x0E0000, 0)), "cd_version_fields", "runtime"),
    "version 0x20600 with a linkage": (
        dict(version=0x20600, extension=bytes(8) + struct.pack(">BBHII", 2, 0, 0, 0, 0)), "cd_version_fields", "linkage"),
    "requirements blob without its special slot": (dict(blobs={2: REQUIREMENTS}), "superblob_blobs", "not hashed"),
    "requirements hash wrong": (
        dict(n_special=2, blobs={2: REQUIREMENTS}, special_hashes={2: bytes(31) + b"\1"}), "special_hash", "slot -2"),
    "Info.plist slot hashes a file we do not have": (dict(n_special=1, special_hashes={1: b"\1" * 32}), "special_hash", "slot -1"),
    "CMS blob not empty": (dict(blobs={0x10000: struct.pack(">II", CSMAGIC_BLOBWRAPPER, 12) + b"cms!"}), "superblob_blobs", "CMS"),
    "alternate CodeDirectory": (dict(blobs={0x1000: b"\xfa\xde\x0c\x02" + bytes(4)}), "superblob_index", "slot 0x1000"),
    "requirements blob with the wrong magic": (
        dict(n_special=2, blobs={2: struct.pack(">III", 0xFADE0C00, 12, 0)}), "superblob_index", "magic"),
    "flags with CS_HARD": (dict(flags=0x102), "cd_flags", "flags 0x102"),
}  # fmt: skip

# Layouts the kernel and codesign accept although we never write them: each must pass.
ACCEPTED = {
    "as we write it": {},
    "as `codesign -s -` writes it (no LINKER_SIGNED, a requirements blob, 2 special slots)": dict(
        flags=0x2, n_special=2, blobs={2: REQUIREMENTS}),
    "version 0x20500, runtime fields zero": dict(version=0x20500, extension=bytes(8)),
    "version 0x20600, linkage fields zero": dict(version=0x20600, extension=bytes(20)),
    "version 0x2F000 (codesign's limit), 0x20600 fields zero": dict(version=0x2F000, extension=bytes(20)),
    "an empty CMS wrapper": dict(blobs={0x10000: struct.pack(">II", CSMAGIC_BLOBWRAPPER, 8)}),
    "4 KiB pages": dict(page_shift=12),
}  # fmt: skip


@pytest.mark.parametrize("golden", GOLDEN)
def test_golden_binaries_have_a_valid_signature(goldens, golden):
    assert verify(goldens[golden], native=False).kind is OutcomeKind.OK


@pytest.mark.parametrize("golden", GOLDEN)
@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampered_field_fails_its_named_rule(goldens, golden, tamper):
    mutate, rule, word = TAMPERS[tamper]
    image = mutate(goldens[golden])
    assert image != goldens[golden] and len(image) == len(goldens[golden])
    outcome = _rejected(image)
    assert (outcome.rule, outcome.label) == (rule, "bad_signature"), outcome.detail
    assert word in outcome.detail


@pytest.mark.parametrize("tamper", list(REBUILT))
def test_rebuilt_signature_fails_its_named_rule(goldens, tamper):
    changes, rule, word = REBUILT[tamper]
    outcome = _rejected(build_signature(goldens["ours"], **changes))
    assert outcome.rule == rule and word in outcome.detail, outcome.detail


@pytest.mark.parametrize("layout", list(ACCEPTED))
def test_layouts_the_kernel_accepts_pass(goldens, layout):
    outcome = verify(build_signature(goldens["ours"], **ACCEPTED[layout]), "13\n", native=False)
    assert outcome.kind is OutcomeKind.OK, outcome


@pytest.mark.parametrize("golden", GOLDEN)
def test_identifier_text_and_linker_signed_bit_are_free(goldens, golden):
    """What the kernel does not hold either: any identifier text, CS_LINKER_SIGNED or not."""
    image = goldens[golden]
    cd = read_signature(m.parse(image)).code_directory
    renamed = put(image, code_directory_offset(image) + cd.ident_offset, ">B", ord("Z"))
    assert check_signature(m.parse(renamed)).code_directory.identifier == "Z" + cd.identifier[1:]
    _accepted(renamed)
    _accepted(set_field("cd", "flags", 0x2)(image))


def test_every_signature_rule_is_tampered_somewhere():
    tampered = {rule for _, rule, _ in TAMPERS.values()} | {rule for _, rule, _ in REBUILT.values()}
    assert tampered == set(SIGNATURE_RULES)
    assert all(why and "\n" not in why for why in SIGNATURE_RULES.values())


def test_every_header_field_is_tampered_somewhere():
    untested = [f for f in CD_FIELDS if not any(f.lower() in name.lower() for name in TAMPERS)]
    assert untested == []


# Fields with exactly one allowed value (or a floor): any other value must fail their rule.
STRICT = {
    "platform": ("cd_platform", 0),
    "spare2": ("cd_spare", 0),
    "spare3": ("cd_spare", 0),
    "scatterOffset": ("cd_scatter", 0),
    "teamOffset": ("cd_team", 0),
    "codeLimit64": ("cd_code_limit", 0),
    "hashType": ("cd_hash_type", 2),
    "hashSize": ("cd_hash_size", 32),
    "execSegFlags": ("cd_exec_seg_flags", 1),
    "codeLimit": ("cd_code_limit", None),
    "execSegBase": ("cd_exec_seg", None),
    "execSegLimit": ("cd_exec_seg", None),
    "nCodeSlots": ("cd_code_slots", None),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(STRICT)), data=st.data(), golden=st.sampled_from(GOLDEN))
def test_any_other_value_of_a_strict_field_fails_its_rule(goldens, field, data, golden):
    image = goldens[golden]
    rule, _ = STRICT[field]
    bits = {">B": 8, ">I": 32, ">Q": 64}[CD_FIELDS[field][1]]
    original = read_field(image, "cd", field)
    value = data.draw(st.integers(0, (1 << bits) - 1).filter(lambda v: v != original))
    outcome = _rejected(set_field("cd", field, value)(image))
    assert outcome.rule == rule, outcome.detail


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(CD_FIELDS)), value=st.integers(0, (1 << 64) - 1), golden=st.sampled_from(GOLDEN))
def test_any_field_value_is_an_outcome_with_a_named_rule(goldens, field, value, golden):
    fmt = CD_FIELDS[field][1]
    value &= {">B": 0xFF, ">I": 0xFFFFFFFF, ">Q": (1 << 64) - 1}[fmt]
    outcome = verify(set_field("cd", field, value)(goldens[golden]), native=False)
    assert outcome.kind in (OutcomeKind.OK, OutcomeKind.BAD_SIGNATURE), outcome
    assert outcome.kind is OutcomeKind.OK or outcome.rule in SIGNATURE_RULES


def test_resigning_a_code_change_makes_the_signature_valid_again(programs):
    tampered = _flip_code_byte(programs["ok_write"])
    assert _rejected(tampered).rule == "page_hash"
    assert verify(resign(tampered), native=False).kind is not OutcomeKind.BAD_SIGNATURE


def test_signature_summary_of_a_zig_binary(programs):
    signature = check_signature(m.parse(programs["ok_write"]))
    cd = signature.code_directory
    assert cd.identifier == "ok_write"  # zig names the signature after the output file
    assert cd.page_size in (1 << 12, 1 << 14)
    assert cd.n_code_slots == -(-cd.code_limit // cd.page_size)
    assert len(cd.cdhash) == 20


def test_inspect_names_the_failed_signature_rule(goldens):
    from exe_coder.runtime.describe import inspect_image

    inspection = inspect_image(set_field("cd", "platform", 1)(goldens["ours"]), "tampered")
    assert not inspection.valid
    assert any(line.startswith("signature     INVALID: cd_platform: platform 1") for line in inspection.lines)
