"""Link machine code into the smallest Mach-O executable macOS arm64 will load.

The file (rules: ``/work/shared/design/macho-arm64.md``; every one is checked by the tests):

    0x0000  mach_header_64   MH_EXECUTE, arm64, flags NOUNDEFS|DYLDLINK|TWOLEVEL|PIE
            load commands    __PAGEZERO, __TEXT(__text), __LINKEDIT, DYLD_INFO_ONLY (empty),
                             SYMTAB, DYSYMTAB, LOAD_DYLINKER, UUID, BUILD_VERSION, MAIN,
                             LOAD_DYLIB libSystem, CODE_SIGNATURE
            (zeros)
            __text           the code, 16-byte aligned, ending the __TEXT segment (as ld64 does)
    0x4000  __LINKEDIT       symbol table (the global labels), string table, then the
                             code signature at a 16-byte aligned ``dataoff``

``__TEXT`` maps the file from offset 0 (header included) and is padded to the 16 KiB arm64
page, so ``__LINKEDIT`` starts on a page boundary. ``link`` leaves the UUID and the signature
zero: ``finalize`` derives both from the content.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from exe_coder.codegen.assembler import Assembly
from exe_coder.codegen.codesign import signature_size
from exe_coder.errors import UserError

MH_MAGIC_64 = 0xFEEDFACF
CPU_TYPE_ARM64 = 0x0100000C
CPU_SUBTYPE_ARM64_ALL = 0
MH_EXECUTE = 2
MH_NOUNDEFS, MH_DYLDLINK, MH_TWOLEVEL, MH_PIE = 0x1, 0x4, 0x80, 0x200000
MH_FLAGS = MH_NOUNDEFS | MH_DYLDLINK | MH_TWOLEVEL | MH_PIE

LC_SEGMENT_64 = 0x19
LC_SYMTAB = 0x2
LC_DYSYMTAB = 0xB
LC_LOAD_DYLIB = 0xC
LC_LOAD_DYLINKER = 0xE
LC_UUID = 0x1B
LC_CODE_SIGNATURE = 0x1D
LC_BUILD_VERSION = 0x32
LC_REQ_DYLD = 0x80000000
LC_DYLD_INFO_ONLY = 0x22 | LC_REQ_DYLD
LC_MAIN = 0x28 | LC_REQ_DYLD

VM_PROT_READ, VM_PROT_EXECUTE = 0x1, 0x4
S_ATTR_PURE_INSTRUCTIONS, S_ATTR_SOME_INSTRUCTIONS = 0x80000000, 0x400
N_SECT, N_EXT = 0xE, 0x1
PLATFORM_MACOS = 1
MACOS_11_0 = 11 << 16  # xxxx.yy.zz nibbles: 11.0.0

PAGE_SIZE = 0x4000  # arm64 pages: segment file offsets and vm sizes are multiples of it
PAGEZERO_SIZE = 1 << 32
TEXT_VMADDR = PAGEZERO_SIZE
DYLD_PATH = "/usr/lib/dyld"
LIBSYSTEM_PATH = "/usr/lib/libSystem.B.dylib"
LIBSYSTEM_CURRENT_VERSION = 1359 << 16  # what zig and ld64 record for libSystem
LIBSYSTEM_COMPAT_VERSION = 1 << 16

_HEADER = struct.Struct("<IiiIIIII")
_SEGMENT = struct.Struct("<II16sQQQQiiII")
_SECTION = struct.Struct("<16s16sQQIIIIIIII")
_NLIST = struct.Struct("<IBBHQ")


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def _segment(name: str, vmaddr: int, vmsize: int, fileoff: int, filesize: int, prot: int, sections: bytes = b"") -> bytes:
    nsects = len(sections) // _SECTION.size
    cmdsize = _SEGMENT.size + len(sections)
    return _SEGMENT.pack(LC_SEGMENT_64, cmdsize, name.encode(), vmaddr, vmsize, fileoff, filesize, prot, prot, nsects, 0) + sections


def _path_command(cmd: int, path: str, header: bytes) -> bytes:
    """A load command naming a path (dylinker, dylib): header, then the padded string."""
    body = path.encode() + b"\0"
    cmdsize = _align(8 + len(header) + len(body), 8)
    return (struct.pack("<II", cmd, cmdsize) + header + body).ljust(cmdsize, b"\0")


@dataclass(frozen=True)
class Linked:
    """A linked but not yet finalized image (UUID and signature zero), and where its code lies."""

    image: bytes
    text_offset: int  # file offset of __text (== its offset from the __TEXT vmaddr)
    text_size: int

    @property
    def text_vmaddr(self) -> int:
        return TEXT_VMADDR + self.text_offset


# Sizes of the fixed load commands, so the code offset is known before they are written.
_N_COMMANDS = 12
_COMMANDS_SIZE = (
    _SEGMENT.size  # __PAGEZERO
    + _SEGMENT.size + _SECTION.size  # __TEXT + __text
    + _SEGMENT.size  # __LINKEDIT
    + 48  # LC_DYLD_INFO_ONLY
    + 24  # LC_SYMTAB
    + 80  # LC_DYSYMTAB
    + _align(12 + len(DYLD_PATH) + 1, 8)  # LC_LOAD_DYLINKER
    + 24  # LC_UUID
    + 24  # LC_BUILD_VERSION (no tools)
    + 24  # LC_MAIN
    + _align(24 + len(LIBSYSTEM_PATH) + 1, 8)  # LC_LOAD_DYLIB
    + 16  # LC_CODE_SIGNATURE
)
HEADER_END = _HEADER.size + _COMMANDS_SIZE


def link(assembly: Assembly, *, entry: str = "_main", path: str | None = None) -> Linked:
    """Lay out ``assembly`` as an MH_EXECUTE image entered at label ``entry``."""
    if entry not in assembly.symbols:
        raise UserError(f"entry symbol {entry!r} is not defined", path=path)
    code = assembly.code
    exported = tuple(sorted((name, assembly.symbols[name]) for name in set(assembly.globals)))
    head, text_offset, linkedit_off, linkedit, size = _layout(len(code), assembly.symbols[entry], exported)
    image = bytearray(size)
    image[: len(head)] = head
    image[text_offset : text_offset + len(code)] = code
    image[linkedit_off : linkedit_off + len(linkedit)] = linkedit
    return Linked(bytes(image), text_offset, len(code))


@lru_cache(maxsize=256)
def _layout(code_size: int, entry_offset: int, exported: tuple[tuple[str, int], ...]) -> tuple[bytes, int, int, bytes, int]:
    """Everything but the code, for code of this size: (header + load commands, __text offset,
    __LINKEDIT offset, symbol and string tables, file size). Memoised: a template's builds share it."""
    # __text ends the __TEXT segment (as ld64 places it): the bytes before it -- header, load
    # commands, padding -- are then the same for every operand value.
    text_filesize = _align(HEADER_END + code_size, PAGE_SIZE)
    text_offset = (text_filesize - code_size) // 16 * 16
    text_vmaddr = TEXT_VMADDR + text_offset

    # __LINKEDIT: nlist entries for the global labels, their names, then the signature.
    linkedit_off = text_filesize
    strtab = bytearray(b"\0")
    symtab = bytearray()
    for name, offset in exported:
        symtab += _NLIST.pack(len(strtab), N_SECT | N_EXT, 1, 0, text_vmaddr + offset)
        strtab += name.encode() + b"\0"
    strtab = bytes(strtab.ljust(_align(len(strtab), 8), b"\0"))
    symoff = linkedit_off
    stroff = symoff + len(symtab)
    dataoff = _align(stroff + len(strtab), 16)
    datasize = signature_size(dataoff)
    linkedit_filesize = dataoff + datasize - linkedit_off

    text_section = _SECTION.pack(
        b"__text", b"__TEXT", text_vmaddr, code_size, text_offset, 2, 0, 0,
        S_ATTR_PURE_INSTRUCTIONS | S_ATTR_SOME_INSTRUCTIONS, 0, 0, 0,
    )  # fmt: skip
    commands = b"".join(
        (
            _segment("__PAGEZERO", 0, PAGEZERO_SIZE, 0, 0, 0),
            _segment("__TEXT", TEXT_VMADDR, text_filesize, 0, text_filesize, VM_PROT_READ | VM_PROT_EXECUTE, text_section),
            _segment("__LINKEDIT", TEXT_VMADDR + text_filesize, _align(linkedit_filesize, PAGE_SIZE), linkedit_off, linkedit_filesize, VM_PROT_READ),
            struct.pack("<II10I", LC_DYLD_INFO_ONLY, 48, *[0] * 10),  # no rebases, binds or exports
            struct.pack("<6I", LC_SYMTAB, 24, symoff, len(exported), stroff, len(strtab)),
            struct.pack("<20I", LC_DYSYMTAB, 80, 0, 0, 0, len(exported), len(exported), 0, *[0] * 12),
            _path_command(LC_LOAD_DYLINKER, DYLD_PATH, struct.pack("<I", 12)),
            struct.pack("<II16s", LC_UUID, 24, b""),  # zero until finalize
            struct.pack("<6I", LC_BUILD_VERSION, 24, PLATFORM_MACOS, MACOS_11_0, MACOS_11_0, 0),
            struct.pack("<IIQQ", LC_MAIN, 24, text_offset + entry_offset, 0),
            _path_command(LC_LOAD_DYLIB, LIBSYSTEM_PATH, struct.pack("<IIII", 24, 2, LIBSYSTEM_CURRENT_VERSION, LIBSYSTEM_COMPAT_VERSION)),
            struct.pack("<4I", LC_CODE_SIGNATURE, 16, dataoff, datasize),
        )
    )  # fmt: skip
    assert len(commands) == _COMMANDS_SIZE
    header = _HEADER.pack(MH_MAGIC_64, CPU_TYPE_ARM64, CPU_SUBTYPE_ARM64_ALL, MH_EXECUTE, _N_COMMANDS, len(commands), MH_FLAGS, 0)
    linkedit = symtab + strtab
    return header + commands, text_offset, linkedit_off, bytes(linkedit), dataoff + datasize
