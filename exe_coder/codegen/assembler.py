r"""Assemble the AArch64 subset of ``isa.py`` from clang/GNU-as syntax into machine code.

The source is what ``python -m ziglang cc`` (clang's integrated assembler) also accepts:

* one instruction per line, ``//`` starts a comment, labels end with ``:`` (several may share
  a line with an instruction); labels are case-sensitive, mnemonics and registers are not;
* directives ``.text``, ``.section __TEXT,__text...``, ``.globl``/``.global NAME``,
  ``.p2align N`` / ``.align N`` (pad to 2**N bytes: zeros up to a word boundary, then ``nop``,
  as clang does);
* data in the code: ``.ascii "..."`` (one or more C string literals: ``\n \t \" \\``, octal
  ``\0``..``\377``, ``\xHH``) and ``.zero N``; an instruction must still start on a 4-byte
  boundary (put ``.p2align 2`` after data whose length is not a multiple of 4);
* branches and ``adr`` to labels before or after them, range-checked against their offset field;
* a trailing ``// patch: NAME[HI:LO]`` comment marks the instruction whose patchable immediate
  field holds bits HI..LO of the program operand NAME. These become ``patch_sites``: where a
  golden binary's operand lives and how to re-encode it in place;
* a trailing ``// patch: NAME[text]`` comment on an ``.ascii`` line marks its bytes as operand
  NAME in decimal text, NUL-padded to the string's length (``text_sites``): the program reads
  the digits at run time, so the binary holds the operand as the characters a prompt spells.

Every error is a ``UserError`` naming the source path, line and column. The result is
``Assembly``: the code bytes, the labels' offsets, which labels are global, and the patch sites.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from exe_coder.codegen import isa
from exe_coder.errors import UserError

NOP = 0xD503201F
# A text field holds any int32 in decimal with a NUL after it: "-2147483648" is 11 characters.
TEXT_FIELD_MIN = 12


@dataclass(frozen=True)
class PatchSite:
    """Bits ``value_lsb .. value_lsb+field_width-1`` of operand ``operand`` live in the
    ``field_width``-bit field at bit ``field_lsb`` of the instruction word at byte ``offset``."""

    operand: str
    offset: int
    field_lsb: int
    field_width: int
    value_lsb: int
    line: int
    form: str

    def apply(self, word: int, value: int) -> int:
        """Re-encode ``word`` so its field holds this site's slice of ``value`` (two's complement)."""
        mask = (1 << self.field_width) - 1
        return (word & ~(mask << self.field_lsb)) | (((value >> self.value_lsb) & mask) << self.field_lsb)

    def extract(self, word: int) -> int:
        """This site's slice of the operand, read back from ``word`` (already shifted into place)."""
        return ((word >> self.field_lsb) & ((1 << self.field_width) - 1)) << self.value_lsb


@dataclass(frozen=True)
class TextSite:
    """Operand ``operand`` as decimal text, left-aligned and NUL-padded, in the ``width`` bytes at
    byte ``offset`` of the code (an ``.ascii`` field the program parses at run time)."""

    operand: str
    offset: int
    width: int
    line: int

    def apply(self, value: int) -> bytes:
        """The field's bytes for ``value``: what ``.ascii`` renders for it."""
        text = str(value).encode("ascii")
        if len(text) >= self.width:
            raise ValueError(f"{self.operand}={value} does not fit its {self.width}-byte text field with a NUL")
        return text.ljust(self.width, b"\0")

    def extract(self, field: bytes) -> int:
        """The value in a field, which must read exactly as ``apply`` writes it; ValueError otherwise."""
        text, nul, rest = bytes(field).partition(b"\0")
        if not nul or rest.strip(b"\0") or not _DECIMAL.fullmatch(text):
            raise ValueError(f"the text field of {self.operand} holds {bytes(field)!r}, not a NUL-padded decimal")
        return int(text)


_DECIMAL = re.compile(rb"0|-?[1-9][0-9]*")  # canonical: no '+', no leading zeros, no "-0"


@dataclass(frozen=True)
class Assembly:
    code: bytes
    symbols: dict[str, int]  # label -> byte offset from the start of the code
    globals: tuple[str, ...]
    patch_sites: tuple[PatchSite, ...]
    lines: tuple[int, ...]  # source line of each 4-byte word: the line that wrote its first byte (0: padding)
    text_sites: tuple[TextSite, ...] = ()


class _LineError(Exception):
    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*)\s*:")
_PATCH = re.compile(r"\s*patch:\s*([A-Za-z_]\w*)\s*\[\s*(?:(\d+)\s*:\s*(\d+)|(text))\s*\]\s*$")
_PATCH_LOOSE = re.compile(r"\s*patch:")


def _split_operands(text: str) -> list[str]:
    """Split on commas outside brackets: 'w1, [x0, #-1]!' -> ['w1', '[x0, #-1]!']."""
    if "[" not in text:
        parts = [p.strip() for p in text.split(",")] if text else []
        if "" in parts:
            raise _LineError("empty operand")
        return parts
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    if last or parts:
        parts.append(last)
    if "" in parts:
        raise _LineError("empty operand")
    return parts


class _Parsed(NamedTuple):  # a NamedTuple: made on every memo miss, so cheap to create
    form: isa.Form
    word: int  # the encoding with the target-offset fields (if any) still zero
    target: tuple[str, object] | None
    target_operand: isa.Target | None  # how the offset to the target is encoded


# An immediate literal exactly as isa.parse_int reads it; replaced by '#' it gives a line's shape.
_IMMEDIATE = re.compile(r"#\s*[+-]?(?:0x[0-9a-fA-F]+|0b[01]+|\d+)\b")


class _Plan(NamedTuple):
    """How a shape of instruction matched: re-parse only its immediates for another value."""

    form: isa.Form
    width: int | None
    values: dict[str, int]  # fields set by the operands that hold no immediate
    target: tuple[str, object] | None
    target_operand: isa.Target | None
    n_operands: int
    immediate_operands: tuple[int, ...]  # indices of the operands that hold immediates


_plans: dict[tuple[str, str], _Plan] = {}
_MAX_PLANS = 4096


@lru_cache(maxsize=8192)
def _parse_instruction(mnemonic: str, operand_text: str) -> _Parsed:
    """Match one instruction against its candidate forms; memoised (templates repeat lines).

    A line seen before with other immediates (``movz w9, #17`` after ``movz w9, #5``) reuses
    that match's plan and re-parses only the immediates. A plan is kept only when no form
    before the matching one was refused for a value (every earlier refusal was about operand
    kinds), so the plan picks the form a full match would; any doubt falls back to the full match.
    """
    shape = (mnemonic, _IMMEDIATE.sub("#", operand_text))
    plan = _plans.get(shape)
    if plan is not None:
        parsed = _reparse(plan, mnemonic, operand_text)
        if parsed is not None:
            return parsed
    parsed, plan = _match(mnemonic, operand_text)
    if plan is not None:
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        _plans[shape] = plan
    return parsed


def _reparse(plan: _Plan, mnemonic: str, operand_text: str) -> _Parsed | None:
    try:
        operands = _split_operands(operand_text)
    except _LineError:
        return None
    if len(operands) != plan.n_operands:
        return None
    ctx = isa.Context(values=dict(plan.values))
    ctx.width, ctx.target, ctx.target_operand = plan.width, plan.target, plan.target_operand
    try:
        for i in plan.immediate_operands:
            plan.form.operands[i].parse(operands[i], ctx)
        return _complete(plan.form, ctx, mnemonic)
    except (isa.OperandMismatch, isa.OperandError, _LineError):
        return None


def _match(mnemonic: str, operand_text: str) -> tuple[_Parsed, _Plan | None]:
    """Try the mnemonic's forms in table order; the first whose operands all parse wins."""
    preset: dict[str, int] = {}
    key = mnemonic
    if mnemonic.startswith("b."):
        cond = mnemonic[2:]
        if cond not in isa.CONDITIONS:
            raise _LineError(f"unknown condition {cond!r} in {mnemonic!r}")
        key, preset = "b.", {"cond": isa.CONDITIONS[cond]}
    forms = isa.FORMS_BY_MNEMONIC.get(key)
    if not forms:
        raise _LineError(f"unsupported instruction {mnemonic!r}")
    operands = _split_operands(operand_text)
    immediate_operands = tuple(i for i, text in enumerate(operands) if _IMMEDIATE.search(text))
    best: tuple[int, str] = (-1, "")
    value_refused = False  # an earlier form was refused for a value, not for operand kinds
    for form in forms:
        required = form.required
        if not required <= len(operands) <= len(form.operands):
            best = max(best, (0, f"{mnemonic} takes {required}..{len(form.operands)} operands, got {len(operands)}"))
            continue
        ctx = isa.Context(values=dict(preset))
        try:
            for i, spec in enumerate(form.operands):
                if i < len(operands):
                    try:
                        spec.parse(operands[i], ctx)
                    except isa.OperandError as err:
                        raise isa.OperandError(f"operand {i + 1}: {err}") from None
                    except isa.OperandMismatch as err:
                        best = max(best, (1 + i, f"operand {i + 1}: {err}"))
                        raise
                else:
                    spec.default(ctx)
        except isa.OperandMismatch:
            continue
        except isa.OperandError as err:
            best = max(best, (100, str(err)))
            value_refused = True
            continue
        return _complete(form, ctx, mnemonic), None if value_refused else _plan(form, preset, operands, immediate_operands)
    raise _LineError(f"invalid operands for {mnemonic}: {best[1]}")


def _plan(form: isa.Form, preset: dict[str, int], operands: list[str], immediate_operands: tuple[int, ...]) -> _Plan | None:
    """Parse the operands that hold no immediate once more, on their own, as the plan's base."""
    plain = isa.Context(values=dict(preset))
    try:
        for i, spec in enumerate(form.operands):
            if i >= len(operands):
                spec.default(plain)
            elif i not in immediate_operands:
                spec.parse(operands[i], plain)
    except (isa.OperandMismatch, isa.OperandError):
        return None
    return _Plan(form, plain.width, plain.values, plain.target, plain.target_operand, len(operands), immediate_operands)


def _complete(form: isa.Form, ctx: isa.Context, mnemonic: str) -> _Parsed:
    """Fill the fields the syntax implies, check constraints, encode (branch offset left zero)."""
    values = ctx.values
    values.pop("_rt_width", None)
    values.update(form.fixed)
    for dst, src in form.copies.items():
        values[dst] = values[src]
    if form.sized:
        values["sf"] = 1 if (ctx.width or 64) == 64 else 0
    if form.writeback:
        rt, rn = (values[f] for f in form.writeback)
        if rt == rn and rn != 31:
            raise _LineError(f"{mnemonic}: writeback base register is also the transfer register (unpredictable)")
    if ctx.target_operand is not None:
        values.update(dict.fromkeys(ctx.target_operand.fields, 0))
    try:
        word = form.encode(values)
    except isa.OperandError as err:
        raise _LineError(f"{mnemonic}: {err}") from None
    return _Parsed(form, word, ctx.target, ctx.target_operand)


class _Line(NamedTuple):
    """What one source line holds, independent of where it sits (so it can be memoised)."""

    labels: tuple[tuple[str, int], ...] = ()  # (name, column)
    column: int = 1
    directive: tuple[str, object] | None = None  # from _parse_directive
    instruction: _Parsed | None = None
    patch: tuple[str, int, int] | None = None  # (operand, hi, lo)
    text_patch: str | None = None  # the operand an .ascii field holds as text


_EMPTY = _Line()


def _split_comment(raw: str) -> tuple[str, str, str]:
    """``raw.partition("//")``, except that a ``//`` inside a string literal is not a comment."""
    if '"' not in raw:
        return raw.partition("//")
    quoted = False
    i = 0
    while i < len(raw) - 1:
        ch = raw[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and raw.startswith("//", i):
            return raw[:i], "//", raw[i + 2 :]
        i += 1
    return raw, "", ""


@lru_cache(maxsize=16384)
def _scan_line(raw: str) -> _Line:
    code, sep, comment = _split_comment(raw)
    annotated = sep and "patch:" in comment and _PATCH_LOOSE.match(comment)
    if not annotated and not code.strip():
        return _EMPTY
    labels = []
    pos = 0
    while ":" in code and (m := _LABEL.match(code, pos)):
        labels.append((m.group(1), m.start(1) + 1))
        pos = m.end()
    body = code[pos:].strip()
    column = len(code) - len(code[pos:].lstrip()) + 1
    patch = text_patch = None
    if annotated:
        m = _PATCH.match(comment)
        if m is None:
            raise _LineError("malformed patch annotation; write '// patch: NAME[HI:LO]' or '// patch: NAME[text]'")
        if m.group(4):
            text_patch = m.group(1)
            if not body.lower().startswith(".ascii"):
                raise _LineError("text patch annotation on a line without '.ascii' data")
        else:
            patch = (m.group(1), int(m.group(2)), int(m.group(3)))
            if not body or body.startswith("."):
                raise _LineError("patch annotation on a line without an instruction")
    if not body:
        return _Line(tuple(labels), column)
    if body.startswith("."):
        directive, arg = (body.split(None, 1) + [""])[:2]  # a string literal keeps its tabs
        try:
            parsed_directive = _parse_directive(directive.lower(), arg.strip())
        except _LineError as err:
            raise _LineError(str(err), column) from None
        return _Line(tuple(labels), column, directive=parsed_directive, text_patch=text_patch)
    mnemonic, _, operand_text = body.replace("\t", " ").partition(" ")
    try:
        parsed = _parse_instruction(mnemonic.lower(), operand_text.strip())
    except _LineError as err:
        raise _LineError(str(err), column) from None
    return _Line(tuple(labels), column, instruction=parsed, patch=patch)


@dataclass
class _Pending:
    offset: int  # byte offset of the instruction
    parsed: _Parsed
    line: int
    column: int


def assemble(source: str, *, path: str | None = None, origin: int = 0) -> Assembly:
    """Assemble ``source``; ``origin`` is the address of the first byte (for '#address' targets)."""
    symbols: dict[str, int] = {}
    globals_: list[str] = []
    pending: list[_Pending] = []
    code = bytearray()
    lines: list[int] = []
    sites: list[PatchSite] = []
    text_sites: list[TextSite] = []
    seen_slices: dict[tuple[str, int], int] = {}

    def fail(message: str, lineno: int, column: int | None = None) -> UserError:
        return UserError(message, path=path or "<assembly>", line=lineno, column=column)

    def emit(data: bytes, lineno: int) -> None:
        """Append ``data``; every word whose first byte it writes is this line's."""
        code.extend(data)
        lines.extend([lineno] * (-(-len(code) // 4) - len(lines)))

    for lineno, raw in enumerate(source.splitlines(), start=1):
        try:
            line = _scan_line(raw)
        except _LineError as err:
            raise fail(str(err), lineno, err.column) from None
        if line is _EMPTY:
            continue
        for name, column in line.labels:
            if name in symbols:
                raise fail(f"label {name!r} defined twice", lineno, column)
            symbols[name] = len(code)
        parsed = line.instruction
        if parsed is None:
            if line.directive is not None:
                kind, arg = line.directive
                if kind == "globl":
                    globals_.append(arg)
                elif kind == "align":
                    pad = -len(code) % (1 << arg)
                    emit(bytes(pad % 4) + _NOP_BYTES * (pad // 4), 0)
                elif kind == "data":
                    if line.text_patch:
                        name = line.text_patch
                        if len(arg) < TEXT_FIELD_MIN:
                            raise fail(f"text field of {name} is {len(arg)} bytes; it needs {TEXT_FIELD_MIN} (\"-2147483648\" and a NUL)", lineno)
                        if (name, -1) in seen_slices:
                            raise fail(f"{name}[text] already patched on line {seen_slices[name, -1]}", lineno)
                        seen_slices[name, -1] = lineno
                        text_sites.append(TextSite(name, len(code), len(arg), lineno))
                    emit(arg, lineno)
            continue
        if len(code) % 4:
            raise fail(f"instruction at byte {len(code)} is not 4-byte aligned (data before it; add '.p2align 2')", lineno, line.column)
        if line.patch:
            name, hi, lo = line.patch
            form = parsed.form
            if form.patchable is None:
                raise fail(f"patch annotation on {form.mnemonic}, which has no patchable immediate", lineno)
            lsb, width = form.fields[form.patchable]
            if hi - lo + 1 != width:
                raise fail(f"patch slice {name}[{hi}:{lo}] is {hi - lo + 1} bits, the {form.patchable} field is {width}", lineno)
            if (name, lo) in seen_slices:
                raise fail(f"{name}[{hi}:{lo}] already patched on line {seen_slices[name, lo]}", lineno)
            seen_slices[name, lo] = lineno
            sites.append(PatchSite(name, len(code), lsb, width, lo, lineno, form.name))
        if parsed.target is not None:
            pending.append(_Pending(len(code), parsed, lineno, line.column))
        emit(struct.pack("<I", parsed.word), lineno)

    for item in pending:
        kind, where = item.parsed.target
        here = origin + item.offset
        if kind == "label":
            if where not in symbols:
                raise fail(f"undefined label {where!r}", item.line, item.column)
            delta = origin + symbols[where] - here
        else:
            delta = where - here
        target = item.parsed.target_operand
        what = "branch target" if target.scale == 4 else f"{item.parsed.form.mnemonic} target"
        if delta % target.scale:
            raise fail(f"{what} {delta:+d} bytes away is not a multiple of {target.scale}", item.line, item.column)
        limit = 1 << (target.bits - 1)
        if not -limit <= delta // target.scale < limit:
            raise fail(f"{what} {delta:+d} bytes away is out of range (+-{target.scale * limit} bytes)", item.line, item.column)
        (word,) = struct.unpack_from("<I", code, item.offset)
        struct.pack_into("<I", code, item.offset, word | item.parsed.form.place(target.fields, delta // target.scale))

    for name in globals_:
        if name not in symbols:
            raise UserError(f"global symbol {name!r} is never defined", path=path or "<assembly>")
    return Assembly(bytes(code), symbols, tuple(globals_), tuple(sites), tuple(lines), tuple(text_sites))


_NOP_BYTES = struct.pack("<I", NOP)
_MAX_ZERO = 1 << 24  # '.zero N' beyond 16 MiB is surely a mistake in a 16 KiB program


def _parse_directive(directive: str, arg: str) -> tuple[str, object]:
    """A directive line -> ("ignore", None) | ("globl", name) | ("align", power) | ("data", bytes);
    _LineError if unsupported."""
    if directive == ".text" and not arg:
        return ("ignore", None)
    if directive == ".section" and arg.replace(" ", "").lower().startswith("__text,__text"):
        return ("ignore", None)
    if directive in (".globl", ".global") and re.fullmatch(r"[A-Za-z_.$][\w.$]*", arg):
        return ("globl", arg)
    if directive in (".p2align", ".align"):
        try:
            power = int(arg.split(",")[0], 0)
        except ValueError:
            raise _LineError(f"{directive} needs a number, got {arg!r}") from None
        if not 2 <= power <= 14:
            raise _LineError(f"{directive} {power} out of range 2..14")
        return ("align", power)
    if directive == ".ascii":
        return ("data", _string_literals(arg))
    if directive == ".zero":
        try:
            count = int(arg, 0)
        except ValueError:
            raise _LineError(f".zero needs a byte count, got {arg!r}") from None
        if not 0 <= count <= _MAX_ZERO:
            raise _LineError(f".zero {count} out of range 0..{_MAX_ZERO}")
        return ("data", bytes(count))
    raise _LineError(f"unsupported directive {(directive + ' ' + arg).strip()!r}")


_STRING = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*(,?)')
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|[xX]([0-9a-fA-F]+)|(.))")
_SIMPLE_ESCAPES = {"b": 8, "f": 12, "n": 10, "r": 13, "t": 9, '"': 34, "\\": 92}


def _string_literals(arg: str) -> bytes:
    """The bytes of ``"..."{, "..."}``, with C escapes as clang reads them."""
    out, pos = bytearray(), 0
    while m := _STRING.match(arg, pos):
        out += _unescape(m.group(1))
        pos = m.end()
        if not m.group(2):  # no comma: the last string
            if pos == len(arg):
                return bytes(out)
            break
    raise _LineError(f'.ascii needs string literals ("...", "..."), got {arg!r}')


def _unescape(body: str) -> bytes:
    """Octal ``\\0``..``\\377`` (up to 3 digits), ``\\x`` with every hex digit after it (the low
    byte kept), ``\\b \\f \\n \\r \\t \\" \\\\``; any other escape is an error."""
    out, pos = bytearray(), 0
    for m in _ESCAPE.finditer(body):
        out += body[pos : m.start()].encode("utf-8")
        octal, hexa, char = m.groups()
        if octal is not None:
            if int(octal, 8) > 0xFF:
                raise _LineError(f"octal escape \\{octal} is out of range (at most \\377)")
            out.append(int(octal, 8))
        elif hexa is not None:
            out.append(int(hexa, 16) & 0xFF)
        elif char in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[char])
        else:
            raise _LineError(f"unknown escape \\{char} in a string")
        pos = m.end()
    return bytes(out + body[pos:].encode("utf-8"))
