"""A program template: render -> assemble -> link -> finalize, and the in-place patch shortcut.

``ProgramTemplate.load("add")`` reads ``templates/add.s.j2`` once per process. ``build(a=, b=)``
is the full toolchain; ``patch(a=, b=)`` starts from the cached golden image, re-encodes the
operand fields at the assembler's patch sites, and finalizes again. An operand lives either in
instruction fields (bit sites, ``// patch: a[15:0]``: add.s.j2) or as decimal text in a data field
(one text site, ``// patch: a[text]``: add_text.s.j2). Loading proves the two paths agree (probe
operands through both) and that every operand has one text site or bit sites covering its 32
bits exactly once, so ``patch`` is byte-identical to ``build`` for every operand value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import jinja2.meta

from exe_coder.codegen.assembler import Assembly, PatchSite, TextSite, assemble
from exe_coder.codegen.finalize import finalize, locate
from exe_coder.codegen.macho import Linked, link
from exe_coder.errors import UserError
from exe_coder.paths import TEMPLATES_DIR

OPERAND_BITS = 32
OPERAND_MIN, OPERAND_MAX = -(1 << 31), (1 << 31) - 1
TEMPLATE_SUFFIX = ".s.j2"


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _dec_text(value: int, width: int) -> str:
    """The body of an ``.ascii`` text field: the decimal digits, then ``\\0`` escapes to ``width``
    bytes (``TextSite.apply``'s bytes). Only NULs follow an escape, so none runs into a digit as
    a longer octal escape."""
    text = str(value)
    if len(text) >= width:
        raise ValueError(f"{value} does not fit a {width}-byte text field with a NUL")
    return text + "\\0" * (width - len(text))


# Filters a template uses to split a signed 32-bit operand into movz/movk halves, or to write
# it as a text field.
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
_ENV.filters["lo16"] = lambda v: _u32(v) & 0xFFFF
_ENV.filters["hi16"] = lambda v: _u32(v) >> 16
_ENV.filters["u32"] = _u32
_ENV.filters["dec_text"] = _dec_text


@dataclass(frozen=True)
class Program:
    """One built program: the signed image and where its code lies (for listings)."""

    image: bytes
    text_offset: int
    text_size: int
    assembly: Assembly


class ProgramTemplate:
    """An assembly template whose operands can be rendered (``build``) or patched (``patch``)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = Path(path)
        self.name = name
        try:
            source = self.path.read_text()
        except OSError as err:
            raise UserError(f"cannot read template: {err.strerror}", path=self.path) from None
        try:
            self._template = _ENV.from_string(source)
            variables = jinja2.meta.find_undeclared_variables(_ENV.parse(source))
        except jinja2.TemplateSyntaxError as err:
            raise UserError(f"template syntax: {err.message}", path=self.path, line=err.lineno) from None

        zeros = {name: 0 for name in sorted(variables)}
        golden = self._compile(zeros)
        sites, text_sites = golden.assembly.patch_sites, golden.assembly.text_sites
        self.operands: tuple[str, ...] = tuple(dict.fromkeys(s.operand for s in (*sites, *text_sites)))
        self.patch_sites: tuple[PatchSite, ...] = sites
        self.text_sites: tuple[TextSite, ...] = text_sites
        self._check_sites(set(variables))
        self._golden = golden
        self._site_offsets = tuple((golden.text_offset + s.offset, s) for s in sites)
        self._text_offsets = tuple((golden.text_offset + s.offset, s) for s in text_sites)
        self._layout = locate(golden.image)
        self._check_patch_equals_build()

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def load(cls, name: str) -> ProgramTemplate:
        """The template ``templates/<name>.s.j2``, loaded once per process."""
        return _load_cached(name)

    @classmethod
    def from_path(cls, path: str | Path) -> ProgramTemplate:
        path = Path(path)
        if not path.is_file():
            raise UserError("no such template file", path=path)
        name = path.name.removesuffix(TEMPLATE_SUFFIX)
        return cls(path, name)

    def _check_sites(self, variables: set[str]) -> None:
        unpatched = variables - set(self.operands)
        if unpatched:
            raise UserError(f"operands {sorted(unpatched)} have no '// patch:' site", path=self.path)
        unused = set(self.operands) - variables
        if unused:
            raise UserError(f"'// patch:' names {sorted(unused)}, which the template never renders", path=self.path)
        for operand in self.operands:
            slices = sorted((s.value_lsb, s.field_width) for s in self.patch_sites if s.operand == operand)
            if any(s.operand == operand for s in self.text_sites):  # one at most: the assembler refuses a second
                if slices:
                    raise UserError(f"{operand!r} has a text site and bit sites {slices}; give it one or the other", path=self.path)
                continue
            covered = 0
            for lsb, width in slices:
                if lsb != covered:
                    break
                covered += width
            if covered != OPERAND_BITS:
                raise UserError(
                    f"patch sites of {operand!r} cover {slices} (lsb, width), not bits 0..31 exactly once",
                    path=self.path,
                )

    def _check_patch_equals_build(self) -> None:
        probes = [
            {op: OPERAND_MIN for op in self.operands},
            {op: 0x5A5A5A5A - 0x01010101 * i for i, op in enumerate(self.operands)},
        ]
        for ops in probes:
            if self.patch(**ops) != self.build(**ops):
                raise UserError(
                    f"patching {ops} does not reproduce the rendered build: an operand is used "
                    "outside its '// patch:' sites",
                    path=self.path,
                )

    # -- the two paths ----------------------------------------------------------------------

    def _operands(self, ops: dict[str, int]) -> dict[str, int]:
        if set(ops) != set(self.operands):
            raise ValueError(f"{self.name} takes operands {list(self.operands)}, got {sorted(ops)}")
        for name, value in ops.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"operand {name} must be an int, got {value!r}")
            if not OPERAND_MIN <= value <= OPERAND_MAX:
                raise ValueError(f"operand {name}={value} is outside signed 32-bit range")
        return ops

    def render(self, **ops: int) -> str:
        """The assembly source for these operands."""
        return self._template.render(**self._operands(ops))

    def _compile(self, ops: dict[str, int]) -> Program:
        assembly = assemble(self._template.render(**ops), path=str(self.path))
        linked: Linked = link(assembly, path=str(self.path))
        return Program(finalize(linked.image), linked.text_offset, linked.text_size, assembly)

    def build_program(self, **ops: int) -> Program:
        return self._compile(self._operands(ops))

    def build(self, **ops: int) -> bytes:
        """Slow path: render, assemble, link, finalize."""
        return self._compile(self._operands(ops)).image

    def patch(self, **ops: int) -> bytes:
        """Fast path: re-encode the operand fields of the golden image, then finalize."""
        ops = self._operands(ops)
        image = bytearray(self._golden.image)
        for offset, site in self._site_offsets:
            (word,) = struct.unpack_from("<I", image, offset)
            struct.pack_into("<I", image, offset, site.apply(word, ops[site.operand]))
        for offset, text in self._text_offsets:
            image[offset : offset + text.width] = text.apply(ops[text.operand])
        return finalize(image, layout=self._layout)

    def read_operands(self, image: bytes) -> dict[str, int]:
        """The operand values encoded at the patch sites of an image laid out like this template's.

        Every bit pattern of a bit site is some value; a text field must hold what ``patch``
        writes (canonical decimal, NUL-padded), and anything else raises ValueError naming it."""
        values = dict.fromkeys(self.operands, 0)
        for offset, site in self._site_offsets:
            (word,) = struct.unpack_from("<I", image, offset)
            values[site.operand] |= site.extract(word)
        values = {k: v - (1 << OPERAND_BITS) if v >> (OPERAND_BITS - 1) else v for k, v in values.items()}
        for offset, text in self._text_offsets:
            values[text.operand] = text.extract(image[offset : offset + text.width])
        return values

    def operand_bits(self) -> dict[int, int]:
        """Image offset -> the bits of that byte an operand's value decides (a bit site's field,
        every byte of a text field); every other byte of the image is the same for all operands."""
        bits: dict[int, int] = {}
        for offset, site in self._site_offsets:
            word = ((1 << site.field_width) - 1) << site.field_lsb
            for k in range(4):  # little-endian instruction words
                if (word >> (8 * k)) & 0xFF:
                    bits[offset + k] = bits.get(offset + k, 0) | (word >> (8 * k)) & 0xFF
        for offset, text in self._text_offsets:
            bits.update((offset + k, 0xFF) for k in range(text.width))
        return bits

    @property
    def text_offset(self) -> int:
        return self._golden.text_offset

    @property
    def text_size(self) -> int:
        return self._golden.text_size

    def __repr__(self) -> str:
        return f"ProgramTemplate({self.name!r}, operands={self.operands})"


@lru_cache(maxsize=None)
def _load_cached(name: str) -> ProgramTemplate:
    path = TEMPLATES_DIR / f"{name}{TEMPLATE_SUFFIX}"
    if not path.is_file():
        known = sorted(p.name.removesuffix(TEMPLATE_SUFFIX) for p in TEMPLATES_DIR.glob(f"*{TEMPLATE_SUFFIX}"))
        raise UserError(f"no template {name!r} (known: {', '.join(known) or 'none'})", path=path)
    return ProgramTemplate(path, name)


def parse_operand_settings(settings: list[str]) -> dict[str, int]:
    """``['a=17', 'b=-4']`` -> ``{'a': 17, 'b': -4}`` (the CLI's ``--set``); UserError when malformed."""
    ops: dict[str, int] = {}
    for setting in settings:
        name, eq, text = setting.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise UserError(f"--set {setting!r}: write NAME=INTEGER, e.g. --set a=17")
        try:
            value = int(text.strip(), 0)
        except ValueError:
            raise UserError(f"--set {setting!r}: {text.strip()!r} is not an integer") from None
        if not OPERAND_MIN <= value <= OPERAND_MAX:
            raise UserError(f"--set {setting!r}: {value} is outside signed 32-bit range")
        if name in ops:
            raise UserError(f"--set {name} given twice")
        ops[name] = value
    return ops


def build_template_file(path: str | Path, settings: list[str]) -> bytes:
    """Render, assemble, link and finalize the template file at ``path`` with ``--set`` operands."""
    template = ProgramTemplate.from_path(path)
    ops = parse_operand_settings(settings)
    try:
        return template.build(**ops)
    except ValueError as err:
        raise UserError(str(err), path=path) from None
