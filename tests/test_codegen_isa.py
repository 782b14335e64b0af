"""Every instruction form of isa.py against two references: capstone and zig's clang assembler.

For each row of ``isa.FORMS`` an instance with random operands is generated *from the row's own
operand specs*, assembled by us, disassembled by capstone, and capstone's text is assembled by
us again: the words must agree (a field at the wrong bits reads back as another value and
re-encodes differently), and capstone's mnemonic must be one that shares the row's opcode.
A seeded batch of every form also goes through zig once, byte for byte.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import lief
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.codegen import isa
from exe_coder.codegen.assembler import TextSite, assemble
from exe_coder.codegen.disasm import decode_word, disassemble
from exe_coder.codegen.reference import zig_build
from exe_coder.errors import UserError

ORIGIN = 0x1000_0000  # instructions sit here, so every branch target is a positive address


def random_instruction(form: isa.Form, pick, target) -> str:
    """A random, valid instance of ``form`` in assembler syntax.

    ``pick(lo, hi)`` draws an integer; ``target(bits, scale)`` returns a target operand: an offset
    of a signed ``bits``-bit count of ``scale``-byte units (4 for branches, 1 for adr).
    """
    width = (32, 64)[pick(0, 1)]
    values: dict[str, int] = {}
    parts: list[str] = []

    def reg(spec: isa.Reg) -> str:
        w = width if spec.width == "form" else spec.width
        if w == "any":
            w = (32, 64)[pick(0, 1)]
            values["_rt_width"] = w
        n = pick(0, 31)
        if form.name == "mov_sp" and spec.field == "Rd" and pick(0, 1):
            n = 31  # mov to or from sp: make sure sp takes part
        if form.name == "mov_sp" and spec.field == "Rn" and values.get("Rd") != 31:
            n = 31
        if form.writeback and spec.field == form.writeback[1] and n == values.get(form.writeback[0]) and n != 31:
            n = (n + 1) % 31  # writeback with Rt == Rn is unpredictable; assemblers refuse it
        values[spec.field] = n
        if n == 31:
            return ("wsp" if w == 32 else "sp") if spec.sp else ("wzr" if w == 32 else "xzr")
        return f"{'w' if w == 32 else 'x'}{n}"

    for spec in form.operands:
        if spec.optional and pick(0, 1) == 0:
            continue
        if isinstance(spec, isa.Reg):
            parts.append(reg(spec))
        elif isinstance(spec, isa.Imm):
            parts.append(f"#{pick(spec.lo, spec.hi)}")
        elif isinstance(spec, isa.Shift):
            limit = spec.max_for[width]
            parts.append(f"lsl #{spec.step * pick(0, limit // spec.step)}")
        elif isinstance(spec, isa.RegShift):
            parts.append(f"{('lsl', 'lsr', 'asr')[pick(0, 2)]} #{pick(0, width - 1)}")
        elif isinstance(spec, isa.WideImm):
            value = pick(0, 0xFFFF) << (16 * pick(0, width // 16 - 1))
            parts.append(f"#{value:#x}")
        elif isinstance(spec, isa.Cond):
            names = [n for n, code in isa.CONDITIONS.items() if spec.allow_al or code < 14]
            parts.append(names[pick(0, len(names) - 1)])
        elif isinstance(spec, isa.Target):
            parts.append(target(spec.bits, spec.scale))
        elif isinstance(spec, isa.BitNumber):
            parts.append(f"#{pick(0, values.get('_rt_width', 64) - 1)}")
        elif isinstance(spec, isa.Mem):
            n = pick(0, 31)
            if form.writeback and n == values.get(form.writeback[0]) and n != 31:
                n = (n + 1) % 31
            base = "sp" if n == 31 else f"x{n}"
            if spec.mode == "pre":
                parts.append(f"[{base}, #{pick(spec.lo, spec.hi)}]!")
            elif spec.mode == "base":
                parts.append(f"[{base}]")
            else:
                parts.append(f"[{base}, #{pick(spec.lo, spec.hi)}]")
        else:  # a new operand kind needs a generator here
            raise AssertionError(f"no generator for {spec!r}")
    mnemonic = form.mnemonic
    if mnemonic == "b.":
        names = list(isa.CONDITIONS)
        mnemonic = "b." + names[pick(0, len(names) - 1)]
    return f"{mnemonic} {', '.join(parts)}".strip()


def _signed_hex(operands: str) -> str:
    """capstone 5 prints a negative post-index offset as 64-bit unsigned hex; clang wants -n."""
    return re.sub(
        r"#0x([0-9a-f]{16})\b",
        lambda m: f"#{int(m.group(1), 16) - (1 << 64)}" if int(m.group(1), 16) >> 63 else m.group(0),
        operands,
    )


def _same_opcode_mnemonics(form: isa.Form) -> set[str]:
    return {f.mnemonic for f in isa.FORMS if f.base == form.base}


@pytest.mark.parametrize("form", isa.FORMS, ids=[f.name for f in isa.FORMS])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_form_matches_capstone(form: isa.Form, data: st.DataObject) -> None:
    def pick(lo: int, hi: int) -> int:
        return data.draw(st.integers(lo, hi))

    def target(bits: int, scale: int) -> str:
        units = pick(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return f"#{ORIGIN + scale * units:#x}"

    line = random_instruction(form, pick, target)
    word = assemble(line, origin=ORIGIN).code
    assert len(word) == 4
    decoded = decode_word(word, ORIGIN)
    assert decoded is not None, f"capstone cannot decode {line!r} -> {word.hex()}"
    mnemonic, operands = decoded
    family = _same_opcode_mnemonics(form)
    assert (mnemonic[:2] if mnemonic.startswith("b.") else mnemonic) in family, (line, decoded)
    again = assemble(f"{mnemonic} {_signed_hex(operands)}", origin=ORIGIN).code
    assert again == word, f"{line!r} -> {word.hex()} -> capstone {mnemonic} {operands} -> {again.hex()}"


def test_every_field_fits_its_word() -> None:
    """The table itself: fields lie inside 32 bits, do not overlap, and miss the fixed bits."""
    for form in isa.FORMS:
        used = 0
        for name, (lsb, width) in form.fields.items():
            mask = ((1 << width) - 1) << lsb
            assert lsb + width <= 32, (form.name, name)
            assert used & mask == 0, (form.name, name)
            assert form.base & mask == 0, (form.name, name)
            used |= mask


def _zig_text(source: str, tmp_path: Path) -> bytes:
    zig_build(source, tmp_path, name="forms")
    binary = lief.MachO.parse(str(tmp_path / "forms")).at(0)
    return bytes(binary.get_section("__text").content)


def test_every_form_matches_zig(tmp_path: Path) -> None:
    """One zig run over three seeded random instances of every form, branches to labels."""
    rng = random.Random(20240611)
    n_labels = 8
    body = []
    for form in isa.FORMS:
        for _ in range(3):
            body.append(random_instruction(form, rng.randint, lambda bits, scale: f"Lt{rng.randrange(n_labels)}"))
    for k in range(n_labels):
        body.insert(rng.randrange(len(body) + 1), f"Lt{k}:")
    source = "    .text\n    .globl _main\n    .p2align 2\n_main:\n" + "\n".join(f"    {line}" for line in body) + "\n"
    ours = assemble(source).code
    theirs = _zig_text(source, tmp_path)
    assert len(ours) == len(theirs)
    for i in range(0, len(ours), 4):
        assert ours[i : i + 4] == theirs[i : i + 4], f"word {i // 4}: ours {ours[i:i+4].hex()} zig {theirs[i:i+4].hex()}"


# --- the assembler's own behaviour ------------------------------------------------------------


def test_branches_forward_and_backward() -> None:
    code = assemble("top:\n  nop\n  b top\n  cbz x0, end\n  nop\nend:\n  b.ne top\n").code
    words = [int.from_bytes(code[i : i + 4], "little") for i in range(0, len(code), 4)]
    assert words[1] == 0x14000000 | ((-1) & 0x3FFFFFF)  # b -4 bytes
    assert words[2] == 0xB4000000 | (2 << 5)  # cbz +8 bytes
    assert words[4] == 0x54000001 | (((-4) & 0x7FFFF) << 5)  # b.ne -16 bytes


def test_p2align_pads_with_nops() -> None:
    code = assemble("  nop\n  .p2align 4\nhere:\n  ret\n")
    assert code.symbols["here"] == 16
    assert code.code[4:16] == bytes.fromhex("1f2003d5") * 3


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("  nop\n  movz w1, #70000\n", 2, "out of range 0..65535"),
        ("  nop\n\n  add x1, x2, #4096\n", 3, "out of range 0..4095"),
        ("  frob x1\n", 1, "unsupported instruction 'frob'"),
        ("  b nowhere\n", 1, "undefined label 'nowhere'"),
        ("a:\n  nop\na:\n", 3, "defined twice"),
        ("  add x1, w2, x3\n", 1, "wrong width"),
        ("  movk w1, #1, lsl #32\n", 1, "not allowed here"),
        ("  mov x1, #0x10001\n", 1, "not one 16-bit chunk"),
        ("  strb w1, [x1, #-1]!\n", 1, "writeback"),
        ("  tbz w1, #32, x\nx:\n", 1, "bit number 32 out of range"),
        ("  b.zz x\nx:\n", 1, "unknown condition"),
        ("  .data\n", 1, "unsupported directive"),
        ("  nop  // patch: a[15:0]\n", 1, "no patchable immediate"),
        ("  movz w1, #1  // patch: a[7:0]\n", 1, "is 8 bits"),
        ("  movz w1, #1  // patch: a[oops]\n", 1, "malformed patch annotation"),
        ("  svc\n", 1, "takes 1..1 operands"),
        ("  adr w1, x\nx:\n", 1, "expected a x register"),
        ('  .ascii "ab"\n  nop\n', 2, "not 4-byte aligned"),
        ('  .ascii "ab\n', 1, "needs string literals"),
        ('  .ascii "ab",\n', 1, "needs string literals"),
        ('  .ascii ab\n', 1, "needs string literals"),
        ('  .ascii "\\400"\n', 1, "out of range"),
        ('  .ascii "\\q"\n', 1, "unknown escape"),
        ('  .ascii "a" "b"\n', 1, "needs string literals"),
        ("  .zero -1\n", 1, "out of range"),
        ('  .ascii "12345678901"  // patch: a[text]\n', 1, "needs 12"),
        ("  movz w1, #1  // patch: a[text]\n", 1, "without '.ascii'"),
        ('  .ascii "\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0"  // patch: a[15:0]\n', 1, "without an instruction"),
        ('x: .ascii "000000000000"  // patch: a[text]\ny: .ascii "000000000000"  // patch: a[text]\n', 2, "already patched on line 1"),
    ],
)
def test_errors_name_the_line(source: str, line: int, message: str) -> None:
    with pytest.raises(UserError) as info:
        assemble(source, path="prog.s")
    assert info.value.path == "prog.s"
    assert info.value.line == line
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_adr_forward_and_backward() -> None:
    """adr holds a byte offset (not words): immlo in bits 30:29, immhi in 23:5."""
    code = assemble("top:\n  nop\n  adr x1, top\n  adr x2, data\n  adr xzr, #0x1009\n  nop\ndata:\n  .ascii \"x\"\n").code
    words = [int.from_bytes(code[i : i + 4], "little") for i in range(0, 20, 4)]
    assert words[1] == 0x10000000 | (((-4 >> 2) & 0x7FFFF) << 5) | 1  # -4 bytes: immlo 0
    assert words[2] == 0x10000000 | (3 << 5) | 2  # +12 bytes
    assert words[3] == 0x10000000 | (1 << 29) | (0x3FF << 5) | 31  # an address: +0xffd bytes from 12
    assert decode_word(code[8:12], 8) == ("adr", "x2, #0x14")


def test_adr_range_is_checked() -> None:
    far = "  adr x0, far\n  .zero 1048576\nfar:\n"  # 1 MiB + 4 bytes on: one past the range
    with pytest.raises(UserError, match=r"adr target \+1048580 bytes away is out of range \(\+-1048576 bytes\)"):
        assemble(far)
    near = "  adr x0, near\n  .zero 1048571\nnear:\n"  # +0xfffff: the last byte adr reaches forwards
    assert int.from_bytes(assemble(near).code[:4], "little") == 0x10000000 | (0x3FFFF << 5) | (3 << 29)
    back = assemble("back:\n  .zero 1048576\n  adr x0, back\n").code  # -1 MiB: the first byte backwards
    assert int.from_bytes(back[-4:], "little") == 0x10000000 | (0x40000 << 5)
    with pytest.raises(UserError, match=r"adr target -1048580 bytes away is out of range"):
        assemble("back:\n  .zero 1048580\n  adr x0, back\n")


def test_ascii_data_escapes_and_alignment() -> None:
    asm = assemble(
        '  nop\n'
        'msg: .ascii "a\\n\\t\\"\\\\", "\\0\\000\\1x\\101\\x41\\x141"  // a "//" in a string: no comment\n'
        '  .zero 2\n'
        '  .p2align 3\n'
        'next: ret\n'
    )
    data = b'a\n\t"\\' + b"\0\0\1xAAA"  # \x141: every hex digit, the low byte kept (0x41)
    assert asm.symbols == {"msg": 4, "next": 24}
    assert asm.code[4 : 4 + len(data)] == data
    assert asm.code[4 + len(data) : 20] == bytes(2 + 2)  # .zero 2, then zeros to the word boundary ...
    assert asm.code[20:24] == bytes.fromhex("1f2003d5")  # ... and nops to the 8-byte boundary
    assert asm.lines == (1, 2, 2, 2, 3, 0, 5)  # a word is the line of its first byte
    assert assemble('  .ascii "a//b\\"//"  // a comment\n').code == b'a//b"//'


def test_text_patch_sites() -> None:
    asm = assemble('  nop\nLa: .ascii "-17\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0"  // patch: a[text]\n')
    (site,) = asm.text_sites
    assert (site.operand, site.offset, site.width, site.line) == ("a", 4, 13, 2)
    assert site.extract(asm.code[4:17]) == -17 and site.apply(-17) == asm.code[4:17]
    assert site.apply(-(2**31)) == b"-2147483648\0\0" and site.extract(site.apply(2**31 - 1)) == 2**31 - 1
    for bad in (b"-0" + bytes(11), b"017" + bytes(10), b"+1" + bytes(11), b"1\x001" + bytes(10), bytes(13),
                b"1 " + bytes(11), b"-" + bytes(12), b"1234567890123"):  # only what apply writes reads back
        with pytest.raises(ValueError, match="text field of a"):
            site.extract(bad)
    with pytest.raises(ValueError, match="does not fit"):
        TextSite("a", 0, 12, 1).apply(-(10**11))


def test_branch_range_is_checked() -> None:
    far = "  tbz x0, #1, far\n" + "  nop\n" * 8192 + "far:\n  nop\n"  # 32 KiB + 4: one past imm14
    with pytest.raises(UserError, match="out of range"):
        assemble(far)
    near = "  tbz x0, #1, far\n" + "  nop\n" * 8190 + "far:\n  nop\n"
    assert len(assemble(near).code) == 4 * 8192


@settings(max_examples=60, deadline=None)
@given(value=st.integers(0, 0xFFFFFFFF))
def test_patch_site_apply_and_extract_round_trip(value: int) -> None:
    asm = assemble("  movz w9, #0  // patch: v[15:0]\n  movk w9, #0, lsl #16  // patch: v[31:16]\n")
    words = [int.from_bytes(asm.code[i : i + 4], "little") for i in (0, 4)]
    patched = [site.apply(words[i], value) for i, site in enumerate(asm.patch_sites)]
    direct = assemble(f"  movz w9, #{value & 0xFFFF}\n  movk w9, #{value >> 16}, lsl #16\n").code
    assert b"".join(w.to_bytes(4, "little") for w in patched) == direct
    assert sum(site.extract(w) for site, w in zip(asm.patch_sites, patched)) == value


def test_disassemble_keeps_going_past_bad_words() -> None:
    code = assemble("  nop\n  svc #0x80\n").code
    lines = disassemble(code[:4] + b"\xff\xff\xff\xff" + code[4:] + b"\x01\x02", 0x1000)
    assert lines == [
        "0x1000  d503201f  nop",
        "0x1004  ffffffff  .word 0xffffffff",
        "0x1008  d4001001  svc #0x80",
        "0x100c            .byte 0x01, 0x02",
    ]


def test_syntax_variants_assemble_alike() -> None:
    """Tabs, upper case, several labels on one line, a label before an instruction, .section."""
    plain = assemble("  .text\nstart:\n  movz w9, #17\n  b start\n")
    variant = assemble(
        "\t.section __TEXT,__text,regular,pure_instructions\n"
        "// a comment line\n"
        "start: other:\tMOVZ\tW9, #0x11   // trailing comment\n"
        "\tB start\n"
    )
    assert variant.code == plain.code
    assert variant.symbols == {"start": 0, "other": 0}


@pytest.mark.parametrize("form", isa.FORMS, ids=[f.name for f in isa.FORMS])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_reused_plans_match_like_a_full_match(form: isa.Form, data: st.DataObject) -> None:
    """A line that reuses the plan of an earlier line of the same shape (other immediates)
    encodes exactly as matching it from scratch does, errors included."""
    from exe_coder.codegen import assembler

    def pick(lo: int, hi: int) -> int:
        return data.draw(st.integers(lo, hi))

    def target(bits: int, scale: int) -> str:
        return f"#{ORIGIN + scale * pick(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)}"

    first = random_instruction(form, pick, target)
    assemble(first, origin=ORIGIN)  # leaves a plan for its shape

    def other(m: re.Match) -> str:  # another value of about the same size, sometimes out of range
        old = int(m.group(1), 0)
        return f"#{data.draw(st.integers(-abs(old) - 1, abs(old) + 1))}"

    second = re.sub(r"#(-?(?:0x[0-9a-f]+|\d+))", other, first)
    # a value far out of every field's range must still be refused
    wild = re.sub(r"#(-?(?:0x[0-9a-f]+|\d+))", lambda m: f"#{1 << 40}", first, count=1)
    for line in (second, wild):
        mnemonic, _, operand_text = line.partition(" ")
        try:
            expected = assembler._match(mnemonic, operand_text)[0]
        except assembler._LineError as err:
            with pytest.raises(UserError, match=re.escape(str(err))):
                assemble(line, origin=ORIGIN)
            continue
        assembler._parse_instruction.cache_clear()  # force the plan path, not the line memo
        assert assembler._parse_instruction(mnemonic, operand_text) == expected
