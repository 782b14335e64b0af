"""AArch64 instruction encodings as data: each form is a row of fixed bits, fields and operands.

In the spirit of LLVM's MC layer, an instruction form says *what* its bits are -- the fixed
opcode bits (``base``), the named fields and their bit positions, and how each written operand
fills those fields -- and one generic ``Form.encode`` turns field values into a word. Nothing
else in exe-coder writes instruction bits by hand. Every row is checked against capstone's
disassembler (tests/test_codegen_isa.py) and against zig's clang assembler (the differential
test).

Supported subset (A64, little-endian; ``R`` = a W or X register, the form's width; ``|sp`` = the
stack pointer is allowed where register 31 means sp; an immediate may be written ``#17``,
``#-4``, ``#0x11``):

    movz / movk  Rd, #imm16{, lsl #0|16|32|48}    mov Rd, #imm   (alias of movz; imm must fit one)
    add / adds / sub / subs  Rd|sp, Rn|sp, #imm12{, lsl #0|12}   cmp / cmn Rn|sp, #imm12
    add / adds / sub / subs  Rd, Rn, Rm{, lsl|lsr|asr #n}         cmp / cmn Rn, Rm{, shift}
    neg / negs Rd, Rm{, shift}
    orr Rd, Rn, Rm{, shift}    mov Rd, Rm (alias of orr)    mov Rd|sp, Rn|sp (alias of add #0)
    sxtw Xd, Wn    udiv / sdiv Rd, Rn, Rm    madd / msub Rd, Rn, Rm, Ra    mul / mneg Rd, Rn, Rm
    csel / csinc / csneg Rd, Rn, Rm, cond    cset Rd, cond    cinc / cneg Rd, Rn, cond
    strb / ldrb  Wt, [Xn|sp, #simm9]!   Wt, [Xn|sp], #simm9   Wt, [Xn|sp{, #uimm12}]
    b / bl label    b.cond label    cbz / cbnz Rt, label    tbz / tbnz Rt, #bit, label
    adr Xd, label    svc #imm16    ret {Xn}    nop

A branch or adr target is a label or, as disassemblers print it, ``#address`` (absolute, relative
to the assembler's origin). Conditions: eq ne cs hs cc lo mi pl vs vc hi ls ge lt gt le al nv.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

# --- operand parsing ------------------------------------------------------------------------


class OperandMismatch(Exception):
    """The operand is of another kind than this form wants (try the next form)."""


class OperandError(Exception):
    """The operand is of the right kind but its value is not allowed (report it)."""


class Context:
    """What one instruction's operands learn while they are parsed."""

    __slots__ = ("width", "values", "target", "target_operand")

    def __init__(self, values: dict[str, int] | None = None) -> None:
        self.width: int | None = None  # 32 or 64, set by the first register of the form's width
        self.values: dict[str, int] = {} if values is None else values
        self.target: tuple[str, object] | None = None  # ("label", name) or ("address", int)
        self.target_operand: Target | None = None  # which fields the resolved offset goes to


_REG = re.compile(r"^(?:([wx])(\d{1,2})|(wzr|xzr|wsp|sp|fp|lr))$")


@lru_cache(maxsize=1024)
def parse_register(text: str) -> tuple[int, int, str]:
    """'x9' -> (64, 9, 'gpr'); 'wzr' -> (32, 31, 'zr'); 'sp' -> (64, 31, 'sp')."""
    m = _REG.match(text.strip().lower())
    if not m:
        raise OperandMismatch(f"expected a register, got {text.strip()!r}")
    if m.group(1):
        number = int(m.group(2))
        if number > 30:
            raise OperandMismatch(f"no register {text.strip()!r}")
        return (32 if m.group(1) == "w" else 64), number, "gpr"
    name = m.group(3)
    return {
        "wzr": (32, 31, "zr"),
        "xzr": (64, 31, "zr"),
        "wsp": (32, 31, "sp"),
        "sp": (64, 31, "sp"),
        "fp": (64, 29, "gpr"),
        "lr": (64, 30, "gpr"),
    }[name]


_INT = re.compile(r"^#?\s*([+-]?(?:0x[0-9a-f]+|0b[01]+|\d+))$")


def parse_int(text: str, *, hash_required: bool = False) -> int:
    t = text.strip().lower()
    if hash_required and not t.startswith("#"):
        raise OperandMismatch(f"expected an immediate '#n', got {text.strip()!r}")
    m = _INT.match(t)
    if not m:
        raise OperandMismatch(f"expected an integer, got {text.strip()!r}")
    return int(m.group(1), 0)


class Operand(ABC):
    """One written operand: parse its text into field values (in ``ctx.values``)."""

    optional = False

    @abstractmethod
    def parse(self, text: str, ctx: Context) -> None: ...

    def default(self, ctx: Context) -> None:  # called when an optional operand is absent
        pass


@dataclass(frozen=True)
class Reg(Operand):
    """A general register. width 'form' means the form's width (sets sf); 32/64 are fixed."""

    field: str
    sp: bool = False  # register 31 is sp here (else it is the zero register)
    width: object = "form"

    def parse(self, text: str, ctx: Context) -> None:
        width, number, kind = parse_register(text)
        if kind == "sp" and not self.sp:
            raise OperandMismatch("sp is not allowed here")
        if kind == "zr" and self.sp:
            raise OperandMismatch("the zero register is not allowed here")
        if self.width == "form":
            if ctx.width is None:
                ctx.width = width
            elif ctx.width != width:
                raise OperandError(f"register {text.strip()} has the wrong width (mixed w and x registers)")
        elif self.width in (32, 64) and width != self.width:
            raise OperandMismatch(f"expected a {'w' if self.width == 32 else 'x'} register")
        elif self.width == "any":
            ctx.values["_rt_width"] = width
        ctx.values[self.field] = number


@dataclass(frozen=True)
class Imm(Operand):
    """An immediate stored as-is (two's complement for signed ranges)."""

    field: str
    lo: int
    hi: int
    bits: int

    def parse(self, text: str, ctx: Context) -> None:
        value = parse_int(text)
        if not self.lo <= value <= self.hi:
            raise OperandError(f"immediate {value} out of range {self.lo}..{self.hi}")
        ctx.values[self.field] = value & ((1 << self.bits) - 1)


@dataclass(frozen=True)
class Shift(Operand):
    """An optional trailing 'lsl #n' whose field holds n // step (e.g. hw for movz, sh for add)."""

    field: str
    step: int
    max_for: dict = None  # {32: largest n, 64: largest n}
    optional = True

    def parse(self, text: str, ctx: Context) -> None:
        t = text.strip().lower()
        if not t.startswith("lsl"):
            raise OperandMismatch(f"expected 'lsl #n', got {text.strip()!r}")
        amount = parse_int(t[3:])
        limit = self.max_for[ctx.width or 64]
        if amount % self.step or not 0 <= amount <= limit:
            allowed = ", ".join(f"#{n}" for n in range(0, limit + 1, self.step))
            raise OperandError(f"shift 'lsl #{amount}' not allowed here (use {allowed})")
        ctx.values[self.field] = amount // self.step

    def default(self, ctx: Context) -> None:
        ctx.values[self.field] = 0


_SHIFT_TYPES = {"lsl": 0, "lsr": 1, "asr": 2}


@dataclass(frozen=True)
class RegShift(Operand):
    """An optional trailing 'lsl|lsr|asr #n' applied to a shifted-register operand."""

    type_field: str
    amount_field: str
    optional = True

    def parse(self, text: str, ctx: Context) -> None:
        t = text.strip().lower()
        kind = t[:3]
        if kind not in _SHIFT_TYPES:
            raise OperandMismatch(f"expected a shift (lsl, lsr, asr), got {text.strip()!r}")
        amount = parse_int(t[3:])
        if not 0 <= amount < (ctx.width or 64):
            raise OperandError(f"shift amount {amount} out of range 0..{(ctx.width or 64) - 1}")
        ctx.values[self.type_field] = _SHIFT_TYPES[kind]
        ctx.values[self.amount_field] = amount

    def default(self, ctx: Context) -> None:
        ctx.values[self.type_field] = 0
        ctx.values[self.amount_field] = 0


@dataclass(frozen=True)
class WideImm(Operand):
    """'mov Rd, #value': a value movz can make, split into imm16 and hw."""

    imm_field: str
    hw_field: str

    def parse(self, text: str, ctx: Context) -> None:
        value = parse_int(text, hash_required=True)
        bits = ctx.width or 64
        if not -(1 << (bits - 1)) <= value < (1 << bits):
            raise OperandError(f"immediate {value} does not fit a {bits}-bit register")
        value &= (1 << bits) - 1
        for hw in range(bits // 16):
            if value & ~(0xFFFF << (16 * hw)) == 0:
                ctx.values[self.imm_field] = value >> (16 * hw)
                ctx.values[self.hw_field] = hw
                return
        raise OperandError(f"immediate {value:#x} is not one 16-bit chunk (movz); use movz + movk")


CONDITIONS = {
    "eq": 0, "ne": 1, "cs": 2, "hs": 2, "cc": 3, "lo": 3, "mi": 4, "pl": 5, "vs": 6, "vc": 7,
    "hi": 8, "ls": 9, "ge": 10, "lt": 11, "gt": 12, "le": 13, "al": 14, "nv": 15,
}  # fmt: skip


@dataclass(frozen=True)
class Cond(Operand):
    field: str
    invert: bool = False  # aliases such as cneg store the opposite condition
    allow_al: bool = True

    def parse(self, text: str, ctx: Context) -> None:
        name = text.strip().lower()
        if name not in CONDITIONS:
            raise OperandMismatch(f"expected a condition, got {text.strip()!r}")
        code = CONDITIONS[name]
        if not self.allow_al and code >= 14:
            raise OperandError(f"condition {name} is not allowed here")
        ctx.values[self.field] = code ^ 1 if self.invert else code


@dataclass(frozen=True)
class Target(Operand):
    """A pc-relative target: a label, or '#address'. Resolved when encoding: the offset from the
    instruction in units of ``scale`` bytes (4 for branches, 1 for adr), a signed ``bits``-bit
    value whose low bits fill ``fields[0]``, the next ones ``fields[1]`` (adr splits it: immlo, immhi)."""

    fields: tuple[str, ...]
    bits: int
    scale: int = 4

    def parse(self, text: str, ctx: Context) -> None:
        t = text.strip()
        if t.startswith("#"):
            ctx.target = ("address", parse_int(t))
        elif re.fullmatch(r"[A-Za-z_.$][\w.$]*", t):
            ctx.target = ("label", t)
        else:
            raise OperandMismatch(f"expected a label, got {t!r}")
        ctx.target_operand = self


@dataclass(frozen=True)
class BitNumber(Operand):
    """tbz/tbnz bit number: b5 (bit 31) and b40 (bits 23:19); below 32 for a w register."""

    b5_field: str
    b40_field: str

    def parse(self, text: str, ctx: Context) -> None:
        bit = parse_int(text, hash_required=True)
        limit = ctx.values.get("_rt_width", 64)
        if not 0 <= bit < limit:
            raise OperandError(f"bit number {bit} out of range 0..{limit - 1}")
        ctx.values[self.b5_field] = bit >> 5
        ctx.values[self.b40_field] = bit & 31


_MEM = re.compile(r"^\[\s*([^\],]+?)\s*(?:,\s*([^\]]+?)\s*)?\]\s*(!?)$")


@dataclass(frozen=True)
class Mem(Operand):
    """'[Xn|sp, #imm]!' (pre), '[Xn|sp]' (post: the offset is the next operand), '[Xn|sp{, #imm}]'."""

    rn_field: str
    mode: str  # "pre", "base", "offset"
    imm_field: str | None = None
    lo: int = 0
    hi: int = 0
    bits: int = 0

    def parse(self, text: str, ctx: Context) -> None:
        m = _MEM.match(text.strip().lower())
        if not m:
            raise OperandMismatch(f"expected a memory operand '[xn, #imm]', got {text.strip()!r}")
        base, offset, bang = m.groups()
        width, number, kind = parse_register(base)
        if width != 64 or kind == "zr":
            raise OperandError(f"base register must be an x register or sp, got {base}")
        if (self.mode == "pre") != bool(bang) or (self.mode == "base" and offset is not None):
            raise OperandMismatch("another addressing mode")
        ctx.values[self.rn_field] = number
        if self.imm_field is None:
            return
        value = 0 if offset is None else parse_int(offset, hash_required=True)
        if self.mode == "pre" and offset is None:
            raise OperandMismatch("pre-index needs an offset")
        if not self.lo <= value <= self.hi:
            raise OperandError(f"offset {value} out of range {self.lo}..{self.hi}")
        ctx.values[self.imm_field] = value & ((1 << self.bits) - 1)


# --- forms ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """One encodable instruction form: fixed bits, named fields, written operands.

    ``fields`` maps a field name to (lsb, width). ``fixed`` gives fields the syntax does not
    write (cmp's Rd is the zero register); ``copies`` fills a field from another (cneg's Rm is
    its Rn). ``sized`` forms set bit 31 (sf) from their registers' width. ``patchable`` names
    the immediate field a ``// patch:`` annotation may re-encode.
    """

    name: str
    mnemonic: str
    base: int
    fields: dict[str, tuple[int, int]]
    operands: tuple[Operand, ...]
    fixed: dict[str, int] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)
    sized: bool = True
    patchable: str | None = None
    writeback: tuple[str, str] | None = None  # (Rt, Rn): must differ unless Rn is sp

    @cached_property
    def required(self) -> int:
        """How many operands must be written (the optional ones trail)."""
        return sum(1 for spec in self.operands if not spec.optional)

    def encode(self, values: dict[str, int]) -> int:
        word = self.base
        for name, (lsb, width) in self.fields.items():
            value = values[name]
            if not 0 <= value < (1 << width):
                raise OperandError(f"field {name}={value} does not fit {width} bits")
            word |= value << lsb
        return word

    def field_mask(self, name: str) -> int:
        lsb, width = self.fields[name]
        return ((1 << width) - 1) << lsb

    def place(self, names: tuple[str, ...], value: int) -> int:
        """The bits of ``value`` (two's complement) spread over the fields ``names``, low bits first."""
        word = 0
        for name in names:
            lsb, width = self.fields[name]
            word |= (value & ((1 << width) - 1)) << lsb
            value >>= width
        return word


# Field layouts shared by families of forms (bit positions from the Arm ARM, section C4).
_D_N_M = {"sf": (31, 1), "Rd": (0, 5), "Rn": (5, 5), "Rm": (16, 5)}
_WIDE = {"sf": (31, 1), "Rd": (0, 5), "imm16": (5, 16), "hw": (21, 2)}
_ADDSUB_IMM = {"sf": (31, 1), "Rd": (0, 5), "Rn": (5, 5), "imm12": (10, 12), "sh": (22, 1)}
_ADDSUB_REG = {**_D_N_M, "imm6": (10, 6), "shift": (22, 2)}
_DP3 = {**_D_N_M, "Ra": (10, 5)}
_CSEL = {**_D_N_M, "cond": (12, 4)}
_LDST_PREPOST = {"Rt": (0, 5), "Rn": (5, 5), "imm9": (12, 9)}
_LDST_UOFF = {"Rt": (0, 5), "Rn": (5, 5), "imm12": (10, 12)}

_HW = Shift("hw", 16, {32: 16, 64: 48})
_SH12 = Shift("sh", 12, {32: 12, 64: 12})
_REGSHIFT = RegShift("shift", "imm6")
_SIMM9 = dict(lo=-256, hi=255, bits=9)


def _wide(name: str, base: int) -> Form:
    return Form(name, name, base, _WIDE, (Reg("Rd"), Imm("imm16", 0, 0xFFFF, 16), _HW), patchable="imm16")


def _addsub_imm(name: str, base: int, flags: bool) -> Form:
    # The flag-setting forms write the zero register, not sp, when Rd is 31.
    return Form(
        name, name.split("_")[0], base, _ADDSUB_IMM, (Reg("Rd", sp=not flags), Reg("Rn", sp=True), Imm("imm12", 0, 4095, 12), _SH12),
        patchable="imm12",
    )


def _addsub_reg(name: str, base: int) -> Form:
    return Form(name, name.split("_")[0], base, _ADDSUB_REG, (Reg("Rd"), Reg("Rn"), Reg("Rm"), _REGSHIFT))


def _csel(name: str, base: int) -> Form:
    return Form(name, name, base, _CSEL, (Reg("Rd"), Reg("Rn"), Reg("Rm"), Cond("cond")))


FORMS: tuple[Form, ...] = (
    _wide("movz", 0x12800000 | 2 << 29),
    _wide("movk", 0x12800000 | 3 << 29),
    Form("mov_wide", "mov", 0x52800000, _WIDE, (Reg("Rd"), WideImm("imm16", "hw"))),
    _addsub_imm("add_imm", 0x11000000, flags=False),
    _addsub_imm("adds_imm", 0x31000000, flags=True),
    _addsub_imm("sub_imm", 0x51000000, flags=False),
    _addsub_imm("subs_imm", 0x71000000, flags=True),
    Form("cmp_imm", "cmp", 0x71000000, _ADDSUB_IMM, (Reg("Rn", sp=True), Imm("imm12", 0, 4095, 12), _SH12), fixed={"Rd": 31}),
    Form("cmn_imm", "cmn", 0x31000000, _ADDSUB_IMM, (Reg("Rn", sp=True), Imm("imm12", 0, 4095, 12), _SH12), fixed={"Rd": 31}),
    _addsub_reg("add_reg", 0x0B000000),
    _addsub_reg("adds_reg", 0x2B000000),
    _addsub_reg("sub_reg", 0x4B000000),
    _addsub_reg("subs_reg", 0x6B000000),
    Form("cmp_reg", "cmp", 0x6B000000, _ADDSUB_REG, (Reg("Rn"), Reg("Rm"), _REGSHIFT), fixed={"Rd": 31}),
    Form("cmn_reg", "cmn", 0x2B000000, _ADDSUB_REG, (Reg("Rn"), Reg("Rm"), _REGSHIFT), fixed={"Rd": 31}),
    Form("neg", "neg", 0x4B000000, _ADDSUB_REG, (Reg("Rd"), Reg("Rm"), _REGSHIFT), fixed={"Rn": 31}),
    Form("negs", "negs", 0x6B000000, _ADDSUB_REG, (Reg("Rd"), Reg("Rm"), _REGSHIFT), fixed={"Rn": 31}),
    _addsub_reg("orr_reg", 0x2A000000),
    Form("mov_reg", "mov", 0x2A000000, _ADDSUB_REG, (Reg("Rd"), Reg("Rm")), fixed={"Rn": 31, "shift": 0, "imm6": 0}),
    Form("mov_sp", "mov", 0x11000000, _ADDSUB_IMM, (Reg("Rd", sp=True), Reg("Rn", sp=True)), fixed={"imm12": 0, "sh": 0}),
    Form("sxtw", "sxtw", 0x93407C00, {"Rd": (0, 5), "Rn": (5, 5)}, (Reg("Rd", width=64), Reg("Rn", width=32)), sized=False),
    Form("udiv", "udiv", 0x1AC00800, _D_N_M, (Reg("Rd"), Reg("Rn"), Reg("Rm"))),
    Form("sdiv", "sdiv", 0x1AC00C00, _D_N_M, (Reg("Rd"), Reg("Rn"), Reg("Rm"))),
    Form("madd", "madd", 0x1B000000, _DP3, (Reg("Rd"), Reg("Rn"), Reg("Rm"), Reg("Ra"))),
    Form("msub", "msub", 0x1B008000, _DP3, (Reg("Rd"), Reg("Rn"), Reg("Rm"), Reg("Ra"))),
    Form("mul", "mul", 0x1B000000, _DP3, (Reg("Rd"), Reg("Rn"), Reg("Rm")), fixed={"Ra": 31}),
    Form("mneg", "mneg", 0x1B008000, _DP3, (Reg("Rd"), Reg("Rn"), Reg("Rm")), fixed={"Ra": 31}),
    _csel("csel", 0x1A800000),
    _csel("csinc", 0x1A800400),
    _csel("csneg", 0x5A800400),
    Form("cset", "cset", 0x1A800400, _CSEL, (Reg("Rd"), Cond("cond", invert=True, allow_al=False)), fixed={"Rn": 31, "Rm": 31}),
    Form("cinc", "cinc", 0x1A800400, _CSEL, (Reg("Rd"), Reg("Rn"), Cond("cond", invert=True, allow_al=False)), copies={"Rm": "Rn"}),
    Form("cneg", "cneg", 0x5A800400, _CSEL, (Reg("Rd"), Reg("Rn"), Cond("cond", invert=True, allow_al=False)), copies={"Rm": "Rn"}),
    Form("strb_pre", "strb", 0x38000C00, _LDST_PREPOST, (Reg("Rt", width=32), Mem("Rn", "pre", "imm9", **_SIMM9)), sized=False, writeback=("Rt", "Rn")),
    Form("strb_post", "strb", 0x38000400, _LDST_PREPOST, (Reg("Rt", width=32), Mem("Rn", "base"), Imm("imm9", **_SIMM9)), sized=False, writeback=("Rt", "Rn")),
    Form("strb_off", "strb", 0x39000000, _LDST_UOFF, (Reg("Rt", width=32), Mem("Rn", "offset", "imm12", 0, 4095, 12)), sized=False),
    Form("ldrb_pre", "ldrb", 0x38400C00, _LDST_PREPOST, (Reg("Rt", width=32), Mem("Rn", "pre", "imm9", **_SIMM9)), sized=False, writeback=("Rt", "Rn")),
    Form("ldrb_post", "ldrb", 0x38400400, _LDST_PREPOST, (Reg("Rt", width=32), Mem("Rn", "base"), Imm("imm9", **_SIMM9)), sized=False, writeback=("Rt", "Rn")),
    Form("ldrb_off", "ldrb", 0x39400000, _LDST_UOFF, (Reg("Rt", width=32), Mem("Rn", "offset", "imm12", 0, 4095, 12)), sized=False),
    Form("b", "b", 0x14000000, {"imm26": (0, 26)}, (Target(("imm26",), 26),), sized=False),
    Form("bl", "bl", 0x94000000, {"imm26": (0, 26)}, (Target(("imm26",), 26),), sized=False),
    Form("b_cond", "b.", 0x54000000, {"cond": (0, 4), "imm19": (5, 19)}, (Target(("imm19",), 19),), sized=False),
    Form("cbz", "cbz", 0x34000000, {"sf": (31, 1), "Rt": (0, 5), "imm19": (5, 19)}, (Reg("Rt"), Target(("imm19",), 19))),
    Form("cbnz", "cbnz", 0x35000000, {"sf": (31, 1), "Rt": (0, 5), "imm19": (5, 19)}, (Reg("Rt"), Target(("imm19",), 19))),
    Form("tbz", "tbz", 0x36000000, {"Rt": (0, 5), "b40": (19, 5), "b5": (31, 1), "imm14": (5, 14)},
         (Reg("Rt", width="any"), BitNumber("b5", "b40"), Target(("imm14",), 14)), sized=False),
    Form("tbnz", "tbnz", 0x37000000, {"Rt": (0, 5), "b40": (19, 5), "b5": (31, 1), "imm14": (5, 14)},
         (Reg("Rt", width="any"), BitNumber("b5", "b40"), Target(("imm14",), 14)), sized=False),
    Form("adr", "adr", 0x10000000, {"Rd": (0, 5), "immlo": (29, 2), "immhi": (5, 19)},
         (Reg("Rd", width=64), Target(("immlo", "immhi"), 21, scale=1)), sized=False),
    Form("svc", "svc", 0xD4000001, {"imm16": (5, 16)}, (Imm("imm16", 0, 0xFFFF, 16),), sized=False),
    Form("ret", "ret", 0xD65F0000, {"Rn": (5, 5)}, (Reg("Rn", width=64),), sized=False),
    Form("ret_lr", "ret", 0xD65F0000, {"Rn": (5, 5)}, (), fixed={"Rn": 30}, sized=False),
    Form("nop", "nop", 0xD503201F, {}, (), sized=False),
)  # fmt: skip

# mnemonic -> candidate forms, tried in table order (b.cond is looked up as "b.")
FORMS_BY_MNEMONIC: dict[str, tuple[Form, ...]] = {}
for _form in FORMS:
    FORMS_BY_MNEMONIC[_form.mnemonic] = FORMS_BY_MNEMONIC.get(_form.mnemonic, ()) + (_form,)
FORMS_BY_NAME: dict[str, Form] = {form.name: form for form in FORMS}
