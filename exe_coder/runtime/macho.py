"""A small, strict Mach-O 64 reader: header, load commands, segments, entry, UUID, signature location.

It reads what the kernel and dyld read and nothing more, with every bounds check explicit, so
that it can be pointed at any bytes at all. A file it cannot read raises ``MachOFormatError``
naming the structural rule that failed (``truncated``, ``magic`` or ``load_commands``); every
other judgement (is this a *valid* macOS arm64 executable?) belongs to ``validate``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MH_MAGIC_64 = 0xFEEDFACF
CPU_TYPE_ARM64 = 0x0100000C
CPU_SUBTYPE_ARM64_ALL = 0
MH_EXECUTE = 2

MH_NOUNDEFS = 0x1
MH_DYLDLINK = 0x4
MH_TWOLEVEL = 0x80
MH_PIE = 0x200000

VM_PROT_READ = 0x1
VM_PROT_WRITE = 0x2
VM_PROT_EXECUTE = 0x4

LC_REQ_DYLD = 0x80000000
LC_SEGMENT = 0x1
LC_SYMTAB = 0x2
LC_UNIXTHREAD = 0x5
LC_DYSYMTAB = 0xB
LC_LOAD_DYLIB = 0xC
LC_ID_DYLIB = 0xD
LC_LOAD_DYLINKER = 0xE
LC_ID_DYLINKER = 0xF
LC_SEGMENT_64 = 0x19
LC_UUID = 0x1B
LC_CODE_SIGNATURE = 0x1D
LC_SEGMENT_SPLIT_INFO = 0x1E
LC_DYLD_INFO = 0x22
LC_DYLD_INFO_ONLY = 0x22 | LC_REQ_DYLD
LC_LOAD_WEAK_DYLIB = 0x18 | LC_REQ_DYLD
LC_RPATH = 0x1C | LC_REQ_DYLD
LC_REEXPORT_DYLIB = 0x1F | LC_REQ_DYLD
LC_VERSION_MIN_MACOSX = 0x24
LC_FUNCTION_STARTS = 0x26
LC_DYLD_ENVIRONMENT = 0x27
LC_MAIN = 0x28 | LC_REQ_DYLD
LC_DATA_IN_CODE = 0x29
LC_SOURCE_VERSION = 0x2A
LC_DYLIB_CODE_SIGN_DRS = 0x2B
LC_ENCRYPTION_INFO_64 = 0x2C
LC_LINKER_OPTION = 0x2D
LC_LINKER_OPTIMIZATION_HINT = 0x2E
LC_NOTE = 0x31
LC_BUILD_VERSION = 0x32
LC_DYLD_EXPORTS_TRIE = 0x33 | LC_REQ_DYLD
LC_DYLD_CHAINED_FIXUPS = 0x34 | LC_REQ_DYLD
LC_ATOM_INFO = 0x36

COMMAND_NAMES = {
    LC_SEGMENT: "LC_SEGMENT",
    LC_SYMTAB: "LC_SYMTAB",
    LC_UNIXTHREAD: "LC_UNIXTHREAD",
    LC_DYSYMTAB: "LC_DYSYMTAB",
    LC_LOAD_DYLIB: "LC_LOAD_DYLIB",
    LC_ID_DYLIB: "LC_ID_DYLIB",
    LC_LOAD_DYLINKER: "LC_LOAD_DYLINKER",
    LC_ID_DYLINKER: "LC_ID_DYLINKER",
    LC_SEGMENT_64: "LC_SEGMENT_64",
    LC_UUID: "LC_UUID",
    LC_CODE_SIGNATURE: "LC_CODE_SIGNATURE",
    LC_SEGMENT_SPLIT_INFO: "LC_SEGMENT_SPLIT_INFO",
    LC_DYLD_INFO: "LC_DYLD_INFO",
    LC_DYLD_INFO_ONLY: "LC_DYLD_INFO_ONLY",
    LC_LOAD_WEAK_DYLIB: "LC_LOAD_WEAK_DYLIB",
    LC_RPATH: "LC_RPATH",
    LC_REEXPORT_DYLIB: "LC_REEXPORT_DYLIB",
    LC_VERSION_MIN_MACOSX: "LC_VERSION_MIN_MACOSX",
    LC_FUNCTION_STARTS: "LC_FUNCTION_STARTS",
    LC_DYLD_ENVIRONMENT: "LC_DYLD_ENVIRONMENT",
    LC_MAIN: "LC_MAIN",
    LC_DATA_IN_CODE: "LC_DATA_IN_CODE",
    LC_SOURCE_VERSION: "LC_SOURCE_VERSION",
    LC_DYLIB_CODE_SIGN_DRS: "LC_DYLIB_CODE_SIGN_DRS",
    LC_ENCRYPTION_INFO_64: "LC_ENCRYPTION_INFO_64",
    LC_LINKER_OPTION: "LC_LINKER_OPTION",
    LC_LINKER_OPTIMIZATION_HINT: "LC_LINKER_OPTIMIZATION_HINT",
    LC_NOTE: "LC_NOTE",
    LC_BUILD_VERSION: "LC_BUILD_VERSION",
    LC_DYLD_EXPORTS_TRIE: "LC_DYLD_EXPORTS_TRIE",
    LC_DYLD_CHAINED_FIXUPS: "LC_DYLD_CHAINED_FIXUPS",
    LC_ATOM_INFO: "LC_ATOM_INFO",
}

# Commands that are `linkedit_data_command {cmd, cmdsize, dataoff, datasize}`: their bytes live in __LINKEDIT.
LINKEDIT_DATA_COMMANDS = frozenset(
    {
        LC_CODE_SIGNATURE,
        LC_SEGMENT_SPLIT_INFO,
        LC_FUNCTION_STARTS,
        LC_DATA_IN_CODE,
        LC_DYLIB_CODE_SIGN_DRS,
        LC_LINKER_OPTIMIZATION_HINT,
        LC_DYLD_EXPORTS_TRIE,
        LC_DYLD_CHAINED_FIXUPS,
        LC_ATOM_INFO,
    }
)
DYLIB_COMMANDS = frozenset({LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_ID_DYLIB})

ARM_THREAD_STATE64 = 6
ARM_THREAD_STATE64_COUNT = 68  # 32-bit words: x0..x28, fp, lr, sp, pc (8 bytes each), cpsr, pad

HEADER = struct.Struct("<IiiIIIII")  # mach_header_64
COMMAND = struct.Struct("<II")  # cmd, cmdsize
SEGMENT = struct.Struct("<II16sQQQQiiII")  # segment_command_64
SECTION = struct.Struct("<16s16sQQIIIIIIII")  # section_64
ENTRY = struct.Struct("<IIQQ")  # entry_point_command
LINKEDIT_DATA = struct.Struct("<IIII")
SYMTAB = struct.Struct("<IIIIII")
DYSYMTAB = struct.Struct("<II18I")
DYLD_INFO = struct.Struct("<II10I")
BUILD_VERSION = struct.Struct("<IIIIII")  # cmd, cmdsize, platform, minos, sdk, ntools
BUILD_TOOL = struct.Struct("<II")
DYLIB = struct.Struct("<IIIIII")  # cmd, cmdsize, name.offset, timestamp, current, compatibility
STRING_COMMAND = struct.Struct("<III")  # cmd, cmdsize, name.offset (dylinker, rpath)
UUID = struct.Struct("<II16s")
THREAD_HEADER = struct.Struct("<IIII")  # cmd, cmdsize, flavor, count


class MachOFormatError(ValueError):
    """The bytes cannot be read as a Mach-O 64 file; ``rule`` names the structural rule broken."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class Header:
    magic: int
    cputype: int
    cpusubtype: int
    filetype: int
    ncmds: int
    sizeofcmds: int
    flags: int


@dataclass(frozen=True)
class LoadCommand:
    cmd: int
    cmdsize: int
    offset: int  # file offset of the command

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.cmd, f"LC_0x{self.cmd:X}")


@dataclass(frozen=True)
class Section:
    sectname: str
    segname: str
    addr: int
    size: int
    offset: int
    align: int
    flags: int

    @property
    def is_zerofill(self) -> bool:
        # S_ZEROFILL, S_GB_ZEROFILL, S_THREAD_LOCAL_ZEROFILL occupy no file bytes
        return (self.flags & 0xFF) in (0x1, 0xC, 0x12)


@dataclass(frozen=True)
class Segment:
    name: str
    vmaddr: int
    vmsize: int
    fileoff: int
    filesize: int
    maxprot: int
    initprot: int
    flags: int
    sections: tuple[Section, ...]

    def section(self, sectname: str) -> Section | None:
        return next((s for s in self.sections if s.sectname == sectname), None)


@dataclass(frozen=True)
class EntryPoint:
    """LC_MAIN: the entry's file offset within __TEXT (dyld's start calls it, then exit())."""

    entryoff: int
    stacksize: int


@dataclass(frozen=True)
class ThreadEntry:
    """LC_UNIXTHREAD with an ARM_THREAD_STATE64: the initial pc (and sp, usually 0)."""

    flavor: int
    count: int
    pc: int
    sp: int


@dataclass(frozen=True)
class LinkeditData:
    cmd: int
    dataoff: int
    datasize: int


@dataclass(frozen=True)
class Symtab:
    symoff: int
    nsyms: int
    stroff: int
    strsize: int


@dataclass(frozen=True)
class Dysymtab:
    ilocalsym: int
    nlocalsym: int
    iextdefsym: int
    nextdefsym: int
    iundefsym: int
    nundefsym: int
    tocoff: int
    ntoc: int
    modtaboff: int
    nmodtab: int
    extrefsymoff: int
    nextrefsyms: int
    indirectsymoff: int
    nindirectsyms: int
    extreloff: int
    nextrel: int
    locreloff: int
    nlocrel: int


@dataclass(frozen=True)
class Dylib:
    cmd: int
    name: str
    current_version: int
    compatibility_version: int


@dataclass(frozen=True)
class BuildVersion:
    platform: int
    minos: int
    sdk: int
    tools: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class MachO:
    """One parsed file. The lists hold every occurrence so that rules can demand "exactly one"."""

    data: bytes
    header: Header
    commands: tuple[LoadCommand, ...]
    segments: tuple[Segment, ...] = ()
    entry_points: tuple[EntryPoint, ...] = ()
    thread_entries: tuple[ThreadEntry, ...] = ()
    dylinkers: tuple[str, ...] = ()
    dylibs: tuple[Dylib, ...] = ()
    uuids: tuple[bytes, ...] = ()
    symtabs: tuple[Symtab, ...] = ()
    dysymtabs: tuple[Dysymtab, ...] = ()
    build_versions: tuple[BuildVersion, ...] = ()
    linkedit_data: tuple[LinkeditData, ...] = ()
    dyld_info: tuple[tuple[int, ...], ...] = ()  # (offset, size) pairs of LC_DYLD_INFO[_ONLY]
    other: tuple[LoadCommand, ...] = field(default=())

    def segment(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    @property
    def code_signatures(self) -> tuple[LinkeditData, ...]:
        return tuple(d for d in self.linkedit_data if d.cmd == LC_CODE_SIGNATURE)

    @property
    def uuid(self) -> bytes | None:
        return self.uuids[0] if len(self.uuids) == 1 else None

    def entry_address(self) -> int | None:
        """The virtual address of the first instruction, or None without exactly one entry."""
        text = self.segment("__TEXT")
        if len(self.entry_points) + len(self.thread_entries) != 1:
            return None
        if self.entry_points:
            return None if text is None else text.vmaddr + self.entry_points[0].entryoff
        return self.thread_entries[0].pc


def _name(raw: bytes) -> str:
    """A fixed-width, NUL-padded name as text (undecodable bytes kept visible, never raising)."""
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _string_at(data: bytes, cmd: LoadCommand, name_offset: int, fixed_size: int) -> str:
    """The NUL-terminated string an lc_str points at, which must lie inside its own command."""
    if name_offset < fixed_size or name_offset >= cmd.cmdsize:
        raise MachOFormatError("load_commands", f"{cmd.name} at 0x{cmd.offset:x}: string offset {name_offset} outside the command")
    start = cmd.offset + name_offset
    end = data.find(b"\0", start, cmd.offset + cmd.cmdsize)
    if end < 0:
        raise MachOFormatError("load_commands", f"{cmd.name} at 0x{cmd.offset:x}: string is not NUL-terminated")
    return data[start:end].decode("latin-1")


def _need(cmd: LoadCommand, size: int) -> None:
    if cmd.cmdsize < size:
        raise MachOFormatError("load_commands", f"{cmd.name} at 0x{cmd.offset:x}: cmdsize {cmd.cmdsize} < {size}")


def read_header(data: bytes) -> Header:
    if len(data) < HEADER.size:
        raise MachOFormatError("truncated", f"{len(data)} bytes is shorter than the {HEADER.size}-byte mach_header_64")
    magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags, _reserved = HEADER.unpack_from(data, 0)
    if magic != MH_MAGIC_64:
        raise MachOFormatError("magic", f"magic 0x{magic:08x} is not MH_MAGIC_64 0x{MH_MAGIC_64:08x}")
    return Header(magic, cputype & 0xFFFFFFFF, cpusubtype & 0xFFFFFFFF, filetype, ncmds, sizeofcmds, flags)


def parse(data: bytes) -> MachO:
    """Read the header and every load command; raise ``MachOFormatError`` on anything unreadable."""
    data = bytes(data)
    header = read_header(data)
    end_of_commands = HEADER.size + header.sizeofcmds
    if end_of_commands > len(data):
        raise MachOFormatError("truncated", f"load commands end at 0x{end_of_commands:x}, past the file end 0x{len(data):x}")
    if header.ncmds * COMMAND.size > header.sizeofcmds:
        raise MachOFormatError("load_commands", f"{header.ncmds} commands cannot fit in sizeofcmds {header.sizeofcmds}")

    commands: list[LoadCommand] = []
    found: dict[str, list] = {
        k: []
        for k in (
            "segments entry_points thread_entries dylinkers dylibs uuids symtabs dysymtabs "
            "build_versions linkedit_data dyld_info other"
        ).split()
    }
    offset = HEADER.size
    for index in range(header.ncmds):
        if offset + COMMAND.size > end_of_commands:
            raise MachOFormatError("load_commands", f"command {index} at 0x{offset:x} runs past sizeofcmds")
        cmd_id, cmdsize = COMMAND.unpack_from(data, offset)
        cmd = LoadCommand(cmd_id, cmdsize, offset)
        if cmdsize < COMMAND.size or cmdsize % 8 != 0:
            raise MachOFormatError("load_commands", f"{cmd.name} at 0x{offset:x}: cmdsize {cmdsize} is not a positive multiple of 8")
        if offset + cmdsize > end_of_commands:
            raise MachOFormatError("load_commands", f"{cmd.name} at 0x{offset:x}: cmdsize {cmdsize} runs past sizeofcmds")
        _read_command(data, cmd, found)
        commands.append(cmd)
        offset += cmdsize
    if offset != end_of_commands:
        raise MachOFormatError("load_commands", f"commands end at 0x{offset:x} but sizeofcmds says 0x{end_of_commands:x}")
    return MachO(data=data, header=header, commands=tuple(commands), **{k: tuple(v) for k, v in found.items()})


def _read_command(data: bytes, cmd: LoadCommand, found: dict[str, list]) -> None:
    at = cmd.offset
    kind = cmd.cmd
    if kind == LC_SEGMENT_64:
        _need(cmd, SEGMENT.size)
        _, _, segname, vmaddr, vmsize, fileoff, filesize, maxprot, initprot, nsects, flags = SEGMENT.unpack_from(data, at)
        if SEGMENT.size + nsects * SECTION.size != cmd.cmdsize:
            raise MachOFormatError("load_commands", f"LC_SEGMENT_64 at 0x{at:x}: {nsects} sections do not fill cmdsize {cmd.cmdsize}")
        sections = []
        for i in range(nsects):
            sectname, sect_segname, addr, size, offset, align, _reloff, _nreloc, sflags, _r1, _r2, _r3 = SECTION.unpack_from(
                data, at + SEGMENT.size + i * SECTION.size
            )
            sections.append(Section(_name(sectname), _name(sect_segname), addr, size, offset, align, sflags))
        found["segments"].append(
            Segment(_name(segname), vmaddr, vmsize, fileoff, filesize, maxprot & 0xFFFFFFFF, initprot & 0xFFFFFFFF, flags, tuple(sections))
        )
    elif kind == LC_MAIN:
        _need(cmd, ENTRY.size)
        _, _, entryoff, stacksize = ENTRY.unpack_from(data, at)
        found["entry_points"].append(EntryPoint(entryoff, stacksize))
    elif kind == LC_UNIXTHREAD:
        _need(cmd, THREAD_HEADER.size)
        _, _, flavor, count = THREAD_HEADER.unpack_from(data, at)
        if flavor != ARM_THREAD_STATE64 or count != ARM_THREAD_STATE64_COUNT:
            raise MachOFormatError("load_commands", f"LC_UNIXTHREAD at 0x{at:x}: flavor {flavor}/count {count} is not ARM_THREAD_STATE64")
        _need(cmd, THREAD_HEADER.size + count * 4)
        state = at + THREAD_HEADER.size
        sp, pc = struct.unpack_from("<QQ", data, state + 31 * 8)
        found["thread_entries"].append(ThreadEntry(flavor, count, pc, sp))
    elif kind in LINKEDIT_DATA_COMMANDS:
        _need(cmd, LINKEDIT_DATA.size)
        _, _, dataoff, datasize = LINKEDIT_DATA.unpack_from(data, at)
        found["linkedit_data"].append(LinkeditData(kind, dataoff, datasize))
    elif kind == LC_SYMTAB:
        _need(cmd, SYMTAB.size)
        found["symtabs"].append(Symtab(*SYMTAB.unpack_from(data, at)[2:]))
    elif kind == LC_DYSYMTAB:
        _need(cmd, DYSYMTAB.size)
        found["dysymtabs"].append(Dysymtab(*DYSYMTAB.unpack_from(data, at)[2:]))
    elif kind in (LC_DYLD_INFO, LC_DYLD_INFO_ONLY):
        _need(cmd, DYLD_INFO.size)
        found["dyld_info"].append(DYLD_INFO.unpack_from(data, at)[2:])
    elif kind == LC_LOAD_DYLINKER:
        _need(cmd, STRING_COMMAND.size)
        found["dylinkers"].append(_string_at(data, cmd, STRING_COMMAND.unpack_from(data, at)[2], STRING_COMMAND.size))
    elif kind in DYLIB_COMMANDS:
        _need(cmd, DYLIB.size)
        _, _, name_offset, _timestamp, current, compat = DYLIB.unpack_from(data, at)
        found["dylibs"].append(Dylib(kind, _string_at(data, cmd, name_offset, DYLIB.size), current, compat))
    elif kind == LC_UUID:
        _need(cmd, UUID.size)
        found["uuids"].append(UUID.unpack_from(data, at)[2])
    elif kind == LC_BUILD_VERSION:
        _need(cmd, BUILD_VERSION.size)
        _, _, platform, minos, sdk, ntools = BUILD_VERSION.unpack_from(data, at)
        if BUILD_VERSION.size + ntools * BUILD_TOOL.size > cmd.cmdsize:
            raise MachOFormatError("load_commands", f"LC_BUILD_VERSION at 0x{at:x}: {ntools} tools overflow cmdsize {cmd.cmdsize}")
        tools = tuple(BUILD_TOOL.unpack_from(data, at + BUILD_VERSION.size + i * BUILD_TOOL.size) for i in range(ntools))
        found["build_versions"].append(BuildVersion(platform, minos, sdk, tools))
    elif kind == LC_SEGMENT:
        raise MachOFormatError("load_commands", f"LC_SEGMENT at 0x{at:x}: a 32-bit segment in a 64-bit file")
    elif kind & LC_REQ_DYLD and kind not in COMMAND_NAMES:
        # dyld refuses to load a file with a command it does not know but is told it must understand
        raise MachOFormatError("load_commands", f"unknown required command 0x{kind:x} at 0x{at:x}")
    else:
        found["other"].append(cmd)


def version_text(packed: int) -> str:
    """A Mach-O xxxx.yy.zz nibble-packed version as text, e.g. 0x000B0000 -> '11.0'."""
    major, minor, patch = packed >> 16, (packed >> 8) & 0xFF, packed & 0xFF
    return f"{major}.{minor}" + (f".{patch}" if patch else "")


def prot_text(prot: int) -> str:
    return "".join(c if prot & bit else "-" for c, bit in (("r", VM_PROT_READ), ("w", VM_PROT_WRITE), ("x", VM_PROT_EXECUTE)))
