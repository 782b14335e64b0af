"""Plain-text views of a binary and of an Outcome, for ``exe-coder inspect`` and ``verify``.

Lines, not rich markup, so that they can be snapshot-tested and piped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from exe_coder.codegen.disasm import disassemble
from exe_coder.runtime import macho as m
from exe_coder.runtime.emulate import CPU_MODEL_NAME
from exe_coder.runtime.outcome import Outcome
from exe_coder.runtime.signature import CS_ADHOC, CS_LINKER_SIGNED, SignatureError, check_signature, read_signature
from exe_coder.runtime.validate import RULES, validate

HEADER_FLAGS = {
    m.MH_NOUNDEFS: "NOUNDEFS",
    m.MH_DYLDLINK: "DYLDLINK",
    m.MH_TWOLEVEL: "TWOLEVEL",
    m.MH_PIE: "PIE",
    0x100000: "NO_REEXPORTED_DYLIBS",
}
PLATFORMS = {1: "macOS", 2: "iOS", 3: "tvOS", 4: "watchOS", 6: "macCatalyst"}


@dataclass(frozen=True)
class Inspection:
    lines: list[str]
    valid: bool  # every structural rule holds and the signature verifies


def describe_outcome(outcome: Outcome) -> list[str]:
    ran = "natively" if outcome.native else f"emulated (unicorn, {CPU_MODEL_NAME})"
    lines = [
        f"outcome       {outcome.label}",
        f"stdout        {outcome.stdout!r}",
        f"exit code     {'-' if outcome.exit_code is None else outcome.exit_code}",
        f"instructions  {'-' if outcome.instructions is None else outcome.instructions}",
        f"run           {ran if outcome.is_valid_macho else 'not run'}",
    ]
    if outcome.detail:
        lines.append(f"detail        {outcome.detail}")
    return lines


def _flags_text(flags: int) -> str:
    names = [name for bit, name in HEADER_FLAGS.items() if flags & bit]
    rest = flags & ~sum(HEADER_FLAGS)
    return "|".join(names + ([f"0x{rest:x}"] if rest else [])) or "0"


def _command_detail(f: m.MachO, cmd: m.LoadCommand, counters: dict[int, int]) -> list[str]:
    """What one load command says, in one line (plus one per section for a segment)."""
    index = counters.get(cmd.cmd, 0)
    counters[cmd.cmd] = index + 1
    if cmd.cmd == m.LC_SEGMENT_64:
        s = f.segments[index]
        head = (
            f"{s.name:<12} vm 0x{s.vmaddr:x}+0x{s.vmsize:x}  file 0x{s.fileoff:x}+0x{s.filesize:x}  "
            f"{m.prot_text(s.initprot)}/{m.prot_text(s.maxprot)}"
        )
        return [head] + [f"  section {x.sectname:<10} addr 0x{x.addr:x} size 0x{x.size:x} offset 0x{x.offset:x}" for x in s.sections]
    if cmd.cmd == m.LC_MAIN:
        e = f.entry_points[index]
        text = f.segment("__TEXT")
        at = f" (0x{text.vmaddr + e.entryoff:x})" if text else ""
        return [f"entryoff 0x{e.entryoff:x}{at}  stacksize 0x{e.stacksize:x}"]
    if cmd.cmd == m.LC_UNIXTHREAD:
        return [f"pc 0x{f.thread_entries[index].pc:x}"]
    if cmd.cmd in m.LINKEDIT_DATA_COMMANDS:
        d = [x for x in f.linkedit_data if x.cmd == cmd.cmd][index]
        return [f"dataoff 0x{d.dataoff:x}  datasize 0x{d.datasize:x}"]
    if cmd.cmd == m.LC_SYMTAB:
        s = f.symtabs[index]
        return [f"{s.nsyms} symbols at 0x{s.symoff:x}  strings 0x{s.stroff:x}+0x{s.strsize:x}"]
    if cmd.cmd == m.LC_DYSYMTAB:
        d = f.dysymtabs[index]
        return [f"local {d.ilocalsym}+{d.nlocalsym}  extdef {d.iextdefsym}+{d.nextdefsym}  undef {d.iundefsym}+{d.nundefsym}"]
    if cmd.cmd == m.LC_LOAD_DYLINKER:
        return [f.dylinkers[index]]
    if cmd.cmd in m.DYLIB_COMMANDS:
        d = [x for x in f.dylibs if x.cmd == cmd.cmd][index]
        return [f"{d.name}  current {m.version_text(d.current_version)}  compat {m.version_text(d.compatibility_version)}"]
    if cmd.cmd == m.LC_UUID:
        u = f.uuids[index].hex().upper()
        return [f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"]
    if cmd.cmd == m.LC_BUILD_VERSION:
        b = f.build_versions[index]
        return [f"{PLATFORMS.get(b.platform, b.platform)}  minos {m.version_text(b.minos)}  sdk {m.version_text(b.sdk)}"]
    return [""]


def inspect_image(image: bytes, name: str = "") -> Inspection:
    """The header, load-command table, rule verdict, signature summary and __text disassembly."""
    lines = [f"file          {name}  {len(image)} bytes  sha256 {hashlib.sha256(image).hexdigest()}"]
    parsed, violation = validate(image)
    if parsed is None:
        lines.append(f"structure     INVALID  invalid_macho:{violation.rule}: {violation.detail}")
        return Inspection(lines, valid=False)
    h = parsed.header
    lines += [
        f"header        cputype 0x{h.cputype:x}  subtype 0x{h.cpusubtype:x}  filetype {h.filetype}  flags {_flags_text(h.flags)}",
        f"load commands {h.ncmds}, {h.sizeofcmds} bytes",
        "  #  offset  command                     size  details",
    ]
    counters: dict[int, int] = {}
    for i, cmd in enumerate(parsed.commands):
        first, *more = _command_detail(parsed, cmd, counters)
        lines.append(f"{i:>3}  0x{cmd.offset:04x}  {cmd.name:<26} {cmd.cmdsize:>5}  {first}".rstrip())
        lines += [f"{'':>44}{extra}" for extra in more]
    if violation is None:
        lines.append(f"structure     valid: all {len(RULES)} rules hold")
    else:
        lines.append(f"structure     INVALID  invalid_macho:{violation.rule}: {violation.detail}")

    signature_ok = False
    try:
        signature = read_signature(parsed)
    except SignatureError as err:
        lines.append(f"signature     unreadable: {err.rule}: {err}")
    else:
        cd = signature.code_directory
        kinds = [n for bit, n in ((CS_ADHOC, "adhoc"), (CS_LINKER_SIGNED, "linker-signed")) if cd.flags & bit]
        try:
            check_signature(parsed)
            verdict, signature_ok = "valid", True
        except SignatureError as err:
            verdict = f"INVALID: {err.rule}: {err}"
        lines += [
            f"signature     {verdict}",
            f"  identifier  {cd.identifier}",
            f"  flags       0x{cd.flags:x} ({', '.join(kinds) or 'none'})  version 0x{cd.version:x}",
            f"  page size   {cd.page_size}  code slots {cd.n_code_slots}  special slots {cd.n_special_slots}",
            f"  code limit  0x{cd.code_limit:x}  exec segment 0x{cd.exec_seg_base:x}+0x{cd.exec_seg_limit:x}",
            f"  cdhash      {cd.cdhash.hex()}",
        ]

    text = parsed.segment("__TEXT")
    code = text.section("__text") if text else None
    if code is not None and code.offset + code.size <= len(image):
        lines.append(f"__text        0x{code.addr:x}, {code.size} bytes")
        lines += ["  " + line for line in disassemble(image[code.offset : code.offset + code.size], code.addr)]
    return Inspection(lines, valid=violation is None and signature_ok)
