"""The structural rules of a macOS arm64 executable (design/macho-arm64.md), as a table.

Each rule has a name (the ``invalid_macho:<rule>`` label), a one-line reason (why the loader
cares) and a check that returns ``None`` when the rule holds or a one-line detail when it
fails. ``validate`` applies them in table order and reports the first failure. The first
three rules are enforced while reading (``macho.parse`` raises naming them); their checks
are therefore always satisfied by a parsed file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exe_coder.runtime import macho as m

PAGE_SIZE = 0x4000  # arm64 macOS page: segment file offsets and addresses are multiples of it
PAGEZERO_MIN = 1 << 32
MIN_MACOS = 0x000B0000  # 11.0, the first macOS on arm64
PLATFORM_MACOS = 1
DYLD_PATH = "/usr/lib/dyld"
LIBSYSTEM_PATH = "/usr/lib/libSystem.B.dylib"
CODE_SIGNATURE_ALIGN = 16


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str


@dataclass(frozen=True)
class Rule:
    name: str
    reason: str
    check: Callable[[m.MachO], str | None]


def _read_by_parser(_: m.MachO) -> None:
    return None


def _cputype(f: m.MachO) -> str | None:
    if f.header.cputype != m.CPU_TYPE_ARM64:
        return f"cputype 0x{f.header.cputype:x} is not CPU_TYPE_ARM64"
    if f.header.cpusubtype & 0x00FFFFFF != m.CPU_SUBTYPE_ARM64_ALL:  # high byte holds capability bits
        return f"cpusubtype 0x{f.header.cpusubtype:x} is not CPU_SUBTYPE_ARM64_ALL"
    return None


def _filetype(f: m.MachO) -> str | None:
    return None if f.header.filetype == m.MH_EXECUTE else f"filetype {f.header.filetype} is not MH_EXECUTE"


def _flags_dyldlink(f: m.MachO) -> str | None:
    return None if f.header.flags & m.MH_DYLDLINK else f"flags 0x{f.header.flags:x} lack MH_DYLDLINK"


def _flags_pie(f: m.MachO) -> str | None:
    return None if f.header.flags & m.MH_PIE else f"flags 0x{f.header.flags:x} lack MH_PIE"


def _segment_bounds(f: m.MachO) -> str | None:
    size = len(f.data)
    seen: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    for seg in f.segments:
        if seg.name in seen:
            return f"segment {seg.name} appears twice"
        seen.add(seg.name)
        if seg.fileoff + seg.filesize > size:
            return f"{seg.name} file range 0x{seg.fileoff:x}+0x{seg.filesize:x} runs past the file end 0x{size:x}"
        if seg.filesize > seg.vmsize:
            return f"{seg.name} filesize 0x{seg.filesize:x} exceeds vmsize 0x{seg.vmsize:x}"
        if seg.vmaddr + seg.vmsize > 1 << 64:
            return f"{seg.name} address range wraps around"
        if seg.initprot & ~seg.maxprot & 0x7:
            return f"{seg.name} initprot {m.prot_text(seg.initprot)} exceeds maxprot {m.prot_text(seg.maxprot)}"
        for sect in seg.sections:
            if sect.addr < seg.vmaddr or sect.addr + sect.size > seg.vmaddr + seg.vmsize:
                return f"section {sect.segname},{sect.sectname} lies outside {seg.name}'s addresses"
            if not sect.is_zerofill and sect.size and (
                sect.offset < seg.fileoff or sect.offset + sect.size > seg.fileoff + seg.filesize
            ):
                return f"section {sect.segname},{sect.sectname} lies outside {seg.name}'s file bytes"
        if seg.vmsize:
            spans.append((seg.vmaddr, seg.vmaddr + seg.vmsize, seg.name))
    spans.sort()
    for (_, end, name), (start, _, other) in zip(spans, spans[1:]):
        if start < end:
            return f"segments {name} and {other} overlap in memory"
    return None


def _segment_alignment(f: m.MachO) -> str | None:
    for seg in f.segments:
        if seg.fileoff % PAGE_SIZE or seg.vmaddr % PAGE_SIZE:
            return f"{seg.name} fileoff 0x{seg.fileoff:x} / vmaddr 0x{seg.vmaddr:x} not a multiple of 0x{PAGE_SIZE:x}"
    return None


def _segment_wx(f: m.MachO) -> str | None:
    for seg in f.segments:
        if seg.initprot & m.VM_PROT_WRITE and seg.initprot & m.VM_PROT_EXECUTE:
            return f"{seg.name} is mapped {m.prot_text(seg.initprot)}: writable and executable at once"
    return None


def _pagezero(f: m.MachO) -> str | None:
    if not f.segments or f.segments[0].name != "__PAGEZERO":
        return "the first segment is not __PAGEZERO"
    z = f.segments[0]
    if z.vmaddr != 0 or z.vmsize < PAGEZERO_MIN:
        return f"__PAGEZERO covers 0x{z.vmaddr:x}+0x{z.vmsize:x}, not the low 4 GiB"
    if z.maxprot or z.initprot or z.filesize or z.sections:
        return "__PAGEZERO must have no access, no file bytes and no sections"
    return None


def _text_segment(f: m.MachO) -> str | None:
    text = f.segment("__TEXT")
    if text is None:
        return "no __TEXT segment"
    if text.fileoff != 0:
        return f"__TEXT fileoff 0x{text.fileoff:x} is not 0 (it must map the header)"
    end_of_commands = m.HEADER.size + f.header.sizeofcmds
    if text.filesize < end_of_commands:
        return "__TEXT does not cover the header and load commands"
    if text.initprot != m.VM_PROT_READ | m.VM_PROT_EXECUTE or text.maxprot & 0x7 != m.VM_PROT_READ | m.VM_PROT_EXECUTE:
        return f"__TEXT protection {m.prot_text(text.initprot)}/{m.prot_text(text.maxprot)} is not r-x/r-x"
    code = text.section("__text")
    if code is None or code.size == 0:
        return "__TEXT has no non-empty __text section"
    for sect in text.sections:
        if not sect.is_zerofill and sect.size and sect.offset < end_of_commands:
            return f"section __TEXT,{sect.sectname} overlaps the load commands"
    return None


def _linkedit(f: m.MachO) -> str | None:
    link = f.segment("__LINKEDIT")
    if link is None:
        return "no __LINKEDIT segment"
    if max(f.segments, key=lambda s: s.fileoff + s.filesize) is not link:
        return "__LINKEDIT is not the last segment in the file"
    if link.fileoff + link.filesize != len(f.data):
        return f"__LINKEDIT ends at 0x{link.fileoff + link.filesize:x}, not at the file end 0x{len(f.data):x}"
    if link.initprot != m.VM_PROT_READ:
        return f"__LINKEDIT protection {m.prot_text(link.initprot)} is not r--"
    start, end = link.fileoff, link.fileoff + link.filesize
    ranges = [(m.COMMAND_NAMES.get(d.cmd, hex(d.cmd)), d.dataoff, d.datasize) for d in f.linkedit_data]
    for st in f.symtabs:
        ranges += [("symbol table", st.symoff, st.nsyms * 16), ("string table", st.stroff, st.strsize)]
    for dy in f.dysymtabs:
        ranges.append(("indirect symbols", dy.indirectsymoff, dy.nindirectsyms * 4))
    for info in f.dyld_info:
        ranges += [("dyld info", info[i], info[i + 1]) for i in range(0, 10, 2)]
    for what, offset, size in ranges:
        if size and (offset < start or offset + size > end):
            return f"{what} at 0x{offset:x}+0x{size:x} lies outside __LINKEDIT"
    return None


def _dylinker(f: m.MachO) -> str | None:
    if f.dylinkers != (DYLD_PATH,):
        return f"LC_LOAD_DYLINKER is {list(f.dylinkers)}, want exactly one {DYLD_PATH!r}"
    return None


def _entry_point(f: m.MachO) -> str | None:
    count = len(f.entry_points) + len(f.thread_entries)
    if count != 1:
        return f"{len(f.entry_points)} LC_MAIN and {len(f.thread_entries)} LC_UNIXTHREAD; want exactly one entry"
    text = f.segment("__TEXT")
    code = text.section("__text") if text else None
    if text is None or code is None:
        return "no __TEXT,__text to enter"
    if f.entry_points:
        # stacksize may be non-zero (zig asks for 16 MiB); the kernel then sizes the stack from it
        address = text.vmaddr + f.entry_points[0].entryoff
    else:
        address = f.thread_entries[0].pc
    if address % 4 or not code.addr <= address < code.addr + code.size:
        return f"entry 0x{address:x} is not an instruction in __text"
    return None


def _symtab(f: m.MachO) -> str | None:
    return None if len(f.symtabs) == 1 else f"{len(f.symtabs)} LC_SYMTAB commands; want one"


def _dysymtab(f: m.MachO) -> str | None:
    if len(f.dysymtabs) != 1:
        return f"{len(f.dysymtabs)} LC_DYSYMTAB commands; want one"
    dy, nsyms = f.dysymtabs[0], (f.symtabs[0].nsyms if f.symtabs else 0)
    for group, first, count in (
        ("local", dy.ilocalsym, dy.nlocalsym),
        ("external", dy.iextdefsym, dy.nextdefsym),
        ("undefined", dy.iundefsym, dy.nundefsym),
    ):
        if count and first + count > nsyms:
            return f"{group} symbols {first}+{count} exceed the {nsyms} symbols of LC_SYMTAB"
    return None


def _build_version(f: m.MachO) -> str | None:
    if len(f.build_versions) != 1:
        return f"{len(f.build_versions)} LC_BUILD_VERSION commands; want one"
    bv = f.build_versions[0]
    if bv.platform != PLATFORM_MACOS:
        return f"platform {bv.platform} is not macOS (1)"
    if bv.minos < MIN_MACOS:
        return f"minos {m.version_text(bv.minos)} predates macOS 11.0 (the first arm64 macOS)"
    return None


def _libsystem(f: m.MachO) -> str | None:
    loads = [d.name for d in f.dylibs if d.cmd == m.LC_LOAD_DYLIB]
    return None if LIBSYSTEM_PATH in loads else f"no LC_LOAD_DYLIB {LIBSYSTEM_PATH} (have {loads})"


def _uuid(f: m.MachO) -> str | None:
    return None if len(f.uuids) == 1 else f"{len(f.uuids)} LC_UUID commands; want one"


def _code_signature(f: m.MachO) -> str | None:
    sigs = f.code_signatures
    if len(sigs) != 1:
        return f"{len(sigs)} LC_CODE_SIGNATURE commands; want one (Apple Silicon kills unsigned code)"
    sig = sigs[0]
    if sig.dataoff % CODE_SIGNATURE_ALIGN:
        return f"signature offset 0x{sig.dataoff:x} is not {CODE_SIGNATURE_ALIGN}-byte aligned"
    if sig.datasize == 0 or sig.dataoff + sig.datasize != len(f.data):
        return f"signature 0x{sig.dataoff:x}+0x{sig.datasize:x} does not end the file (0x{len(f.data):x})"
    return None


RULES: tuple[Rule, ...] = (
    Rule("truncated", "the file is shorter than its header or load commands", _read_by_parser),
    Rule("magic", "the loader only accepts MH_MAGIC_64 (0xFEEDFACF)", _read_by_parser),
    Rule("load_commands", "load commands must be well-formed, 8-byte sized and fill sizeofcmds exactly", _read_by_parser),
    Rule("cputype", "CPU_TYPE_ARM64 with CPU_SUBTYPE_ARM64_ALL", _cputype),
    Rule("filetype", "only MH_EXECUTE files are programs", _filetype),
    Rule("flags_dyldlink", "a static arm64 executable (no MH_DYLDLINK) is refused", _flags_dyldlink),
    Rule("flags_pie", "MH_PIE is required on arm64", _flags_pie),
    Rule("segment_bounds", "segments and sections lie inside the file, are unique and do not overlap", _segment_bounds),
    Rule("segment_alignment", "segment file offsets and addresses are multiples of the 16 KiB page", _segment_alignment),
    Rule("segment_wx", "Apple Silicon never maps a page writable and executable at once (W^X)", _segment_wx),
    Rule("pagezero", "__PAGEZERO comes first and reserves the low 4 GiB with no access", _pagezero),
    Rule("text_segment", "__TEXT starts at file offset 0, is r-x and holds __text after the load commands", _text_segment),
    Rule("linkedit", "__LINKEDIT is read-only, last, ends the file and holds all link-edit data", _linkedit),
    Rule("dylinker", "LC_LOAD_DYLINKER names /usr/lib/dyld", _dylinker),
    Rule("entry_point", "exactly one LC_MAIN or LC_UNIXTHREAD, entering an instruction of __text", _entry_point),
    Rule("symtab", "LC_SYMTAB is present (it may be empty)", _symtab),
    Rule("dysymtab", "LC_DYSYMTAB is present and indexes LC_SYMTAB's symbols", _dysymtab),
    Rule("build_version", "LC_BUILD_VERSION for macOS, minos >= 11.0", _build_version),
    Rule("libsystem", "dyld demands LC_LOAD_DYLIB /usr/lib/libSystem.B.dylib", _libsystem),
    Rule("uuid", "dyld demands exactly one LC_UUID", _uuid),
    Rule("code_signature", "one 16-aligned LC_CODE_SIGNATURE holds the last bytes of the file", _code_signature),
)
RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)


def check_rules(f: m.MachO) -> Violation | None:
    """The first rule a parsed file breaks, or None."""
    for rule in RULES:
        detail = rule.check(f)
        if detail is not None:
            return Violation(rule.name, detail)
    return None


def validate(data: bytes) -> tuple[m.MachO | None, Violation | None]:
    """Parse and check ``data``: (file, None) when every rule holds, else (file or None, first violation)."""
    try:
        parsed = m.parse(data)
    except m.MachOFormatError as err:
        return None, Violation(err.rule, err.detail)
    return parsed, check_rules(parsed)
