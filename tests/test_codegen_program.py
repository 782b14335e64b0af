"""ProgramTemplate end to end: the golden binaries print a+b, patch == build, determinism.

Both shipped programs: add (operands in movz/movk fields) and add_text (operands as decimal text
in __text, parsed at run time)."""

from __future__ import annotations

from pathlib import Path

import lief
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exe_coder.codegen.program import (
    OPERAND_MAX,
    OPERAND_MIN,
    ProgramTemplate,
    build_template_file,
    parse_operand_settings,
)
from exe_coder.errors import UserError
from exe_coder.runtime.verify import verify

INT32 = st.integers(OPERAND_MIN, OPERAND_MAX)
EXTREMES = [(0, 0), (OPERAND_MIN, OPERAND_MIN), (OPERAND_MAX, OPERAND_MAX), (OPERAND_MIN, OPERAND_MAX), (OPERAND_MAX, 1)]


@pytest.fixture(scope="module")
def add() -> ProgramTemplate:
    return ProgramTemplate.load("add")


@pytest.fixture(scope="module")
def add_text() -> ProgramTemplate:
    return ProgramTemplate.load("add_text")


def test_load_is_cached_and_describes_the_operands(add: ProgramTemplate) -> None:
    assert ProgramTemplate.load("add") is add
    assert add.name == "add"
    assert add.operands == ("a", "b")
    assert [(s.operand, s.value_lsb, s.field_width) for s in add.patch_sites] == [
        ("a", 0, 16), ("a", 16, 16), ("b", 0, 16), ("b", 16, 16),
    ]  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(a=INT32, b=INT32)
@example(a=0, b=0)
@example(a=OPERAND_MIN, b=OPERAND_MIN)
@example(a=OPERAND_MAX, b=OPERAND_MAX)
@example(a=17, b=-4)
@example(a=-1, b=1)
def test_golden_binary_prints_the_sum(add: ProgramTemplate, a: int, b: int) -> None:
    image = add.build(a=a, b=b)
    assert lief.MachO.check_layout(lief.MachO.parse(list(image)).at(0))[0]
    outcome = verify(image, f"{a + b}\n", native=False)
    assert outcome.stdout_correct, (a, b, outcome)
    assert outcome.exit_code == 0


@settings(max_examples=150, deadline=None)
@given(a=INT32, b=INT32)
@example(a=OPERAND_MIN, b=OPERAND_MAX)
@example(a=-1, b=0)
def test_patch_equals_build(add: ProgramTemplate, a: int, b: int) -> None:
    built = add.build(a=a, b=b)
    assert add.patch(a=a, b=b) == built
    assert add.read_operands(built) == {"a": a, "b": b}


@pytest.mark.parametrize(("a", "b"), EXTREMES + [(17, -4)])
def test_lief_parses_and_layout_holds(add: ProgramTemplate, a: int, b: int) -> None:
    image = add.build(a=a, b=b)
    fat = lief.MachO.parse(list(image))  # held: the binary and its sections' bytes live in it
    binary = fat.at(0)
    ok, message = lief.MachO.check_layout(binary)
    assert ok, message
    text = binary.get_section("__text")
    assert bytes(text.content) == add.build_program(a=a, b=b).assembly.code
    assert binary.main_command.entrypoint == text.offset  # _main is the first instruction


def test_add_text_keeps_its_operands_as_text_at_the_end_of_its_code(add_text: ProgramTemplate) -> None:
    assert add_text.operands == ("a", "b") and not add_text.patch_sites
    code = add_text.build_program(a=17, b=-4).assembly.code
    assert [(s.operand, s.offset, s.width) for s in add_text.text_sites] == [("a", len(code) - 24, 12), ("b", len(code) - 12, 12)]
    assert code[-24:] == b"17" + bytes(10) + b"-4" + bytes(10)  # the digits a prompt spells
    assert "\\0" in add_text.render(a=17, b=-4) and '"-2147483648\\0"' in add_text.render(a=OPERAND_MIN, b=0)


@settings(max_examples=120, deadline=None)
@given(a=INT32, b=INT32)
@example(a=0, b=0)
@example(a=OPERAND_MIN, b=OPERAND_MIN)
@example(a=OPERAND_MAX, b=OPERAND_MAX)
@example(a=OPERAND_MIN, b=OPERAND_MAX)
@example(a=-1, b=1)
@example(a=10, b=-100)
def test_add_text_prints_the_sum_and_patch_equals_build(add_text: ProgramTemplate, a: int, b: int) -> None:
    built = add_text.build(a=a, b=b)
    assert add_text.patch(a=a, b=b) == built
    assert add_text.read_operands(built) == {"a": a, "b": b}
    outcome = verify(built, f"{a + b}\n", native=False)
    assert outcome.stdout_correct and outcome.exit_code == 0, (a, b, outcome)


@pytest.mark.parametrize("field", [b"-0", b"017", b"1x", b"", b"-", b"12345678901x"])
def test_read_operands_refuses_a_text_field_patch_cannot_have_written(add_text: ProgramTemplate, field: bytes) -> None:
    image = bytearray(add_text.patch(a=5, b=6))
    offset = add_text.text_offset + add_text.text_sites[1].offset
    image[offset : offset + 12] = field.ljust(12, b"\0")
    with pytest.raises(ValueError, match="text field of b"):
        add_text.read_operands(bytes(image))


def test_deterministic_and_operand_dependent(add: ProgramTemplate) -> None:
    first = add.build(a=5, b=6)
    assert add.build(a=5, b=6) == first
    assert ProgramTemplate.from_path(add.path).build(a=5, b=6) == first  # a fresh load, same bytes
    assert add.build(a=6, b=5) != first


@pytest.mark.parametrize(
    "ops",
    [{"a": 1}, {"a": 1, "b": 2, "c": 3}, {"a": OPERAND_MAX + 1, "b": 0}, {"a": OPERAND_MIN - 1, "b": 0}, {"a": 1.0, "b": 2}, {"a": True, "b": 2}],
)
def test_bad_operands_raise_value_error(add: ProgramTemplate, ops: dict) -> None:
    with pytest.raises(ValueError):
        add.build(**ops)
    with pytest.raises(ValueError):
        add.patch(**ops)


def test_operand_settings() -> None:
    assert parse_operand_settings(["a=17", "b=-4", "c=0x10"]) == {"a": 17, "b": -4, "c": 16}
    for bad in (["a"], ["=3"], ["a=x"], ["a=1", "a=2"], [f"a={OPERAND_MAX + 1}"], ["1a=3"]):
        with pytest.raises(UserError):
            parse_operand_settings(bad)


def test_unknown_template_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no template 'nope'"):
        ProgramTemplate.load("nope")


HEADER = "    .text\n    .globl _main\n_main:\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # a is rendered but has no patch site
        ("    movz w9, #{{ a | lo16 }}\n", "no '// patch:' site"),
        # only the low half is patchable
        ("    movz w9, #{{ a | lo16 }}  // patch: a[15:0]\n", "not bits 0..31"),
        # patched, but the rendered value is used elsewhere too: patch would miss it
        (
            "    movz w9, #{{ a | lo16 }}  // patch: a[15:0]\n    movk w9, #{{ a | hi16 }}, lsl #16  // patch: a[31:16]\n"
            "    movz w10, #{{ a | lo16 }}\n",
            "does not reproduce",
        ),
        ("    movz w9, #{{ a | lo16 }\n", "template syntax"),
        # an annotation names an operand the template never renders
        ("    movz w9, #0  // patch: c[15:0]\n    movk w9, #0, lsl #16  // patch: c[31:16]\n", "never renders"),
        ("    movz w9, #{{ a | lo16 }}  // patch: a[15:0]\n    frob\n", "unsupported instruction"),
        # a text site and bit sites for one operand
        ('    movz w9, #{{ a | lo16 }}  // patch: a[15:0]\nLa: .ascii "{{ a | dec_text(12) }}"  // patch: a[text]\n', "one or the other"),
        # the text is used outside its field too
        ('    movz w9, #{{ a | u32 % 7 }}\nLa: .ascii "{{ a | dec_text(12) }}"  // patch: a[text]\n', "does not reproduce"),
        # a field too narrow for every int32 with its NUL
        ('La: .ascii "{{ a | dec_text(11) }}"  // patch: a[text]\n', "needs 12"),
    ],
)
def test_inconsistent_templates_are_refused(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.s.j2"
    path.write_text(HEADER + body)
    with pytest.raises(UserError, match=message) as info:
        ProgramTemplate.from_path(path)
    assert info.value.path == str(path)


def test_missing_entry_symbol(tmp_path: Path) -> None:
    path = tmp_path / "noentry.s.j2"
    path.write_text("    .text\nstart:\n    nop\n")
    with pytest.raises(UserError, match="entry symbol '_main'"):
        build_template_file(path, [])


def test_assembler_error_in_template_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.s.j2"
    path.write_text(HEADER + "    mov x0, #0\n    add x0, x0, #5000\n")
    with pytest.raises(UserError) as info:
        build_template_file(path, [])
    assert (info.value.path, info.value.line) == (str(path), 5)
