"""Test helpers for the runtime: programs linked by zig, binary surgery, rule mutations, re-signing.

The programs under ``tests/fixtures/runtime/*.s`` are linked once per test session by a real
toolchain (``python -m ziglang cc -target aarch64-macos.11.0``), so the verifier is tested
against binaries nobody in this project wrote the writer for.
"""

from __future__ import annotations

import hashlib
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exe_coder.codegen.reference import zig_link
from exe_coder.runtime import macho as m
from exe_coder.runtime.signature import (
    CODE_DIRECTORY,
    CS_ADHOC,
    CS_EXECSEG_MAIN_BINARY,
    CS_HASHTYPE_SHA256,
    CS_LINKER_SIGNED,
    CS_SUPPORTS_EXECSEG,
    CSMAGIC_CODEDIRECTORY,
    CSMAGIC_EMBEDDED_SIGNATURE,
    read_signature,
)

FIXTURES = Path(__file__).parent / "fixtures" / "runtime"
PROGRAM_NAMES = sorted(p.stem for p in FIXTURES.glob("*.s"))


@pytest.fixture(scope="session")
def programs(tmp_path_factory) -> dict[str, bytes]:
    """Every fixture program, linked by zig: name -> signed Mach-O bytes."""
    folder = tmp_path_factory.mktemp("zig-programs")
    with ThreadPoolExecutor(max_workers=2) as pool:
        images = pool.map(lambda name: zig_link(FIXTURES / f"{name}.s", folder / name), PROGRAM_NAMES)
        return dict(zip(PROGRAM_NAMES, images))


def command_offset(image: bytes, cmd: int, index: int = 0) -> int:
    """File offset of the ``index``-th load command with id ``cmd``."""
    offsets = [c.offset for c in m.parse(image).commands if c.cmd == cmd]
    return offsets[index]


def segment_command_offset(image: bytes, name: str) -> int:
    f = m.parse(image)
    for c in f.commands:
        if c.cmd == m.LC_SEGMENT_64 and image[c.offset + 8 : c.offset + 24].rstrip(b"\0") == name.encode():
            return c.offset
    raise KeyError(name)


def put(image: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(image)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def resign(image: bytes) -> bytes:
    """Recompute every code-slot hash in place, as a linker's finalize step would."""
    f = m.parse(image)
    sig = f.code_signatures[0]
    cd = read_signature(f).code_directory
    cd_start = sig.dataoff + f.data[sig.dataoff : sig.dataoff + sig.datasize].find(cd.raw)
    out = bytearray(image)
    for i in range(cd.n_code_slots):
        page = image[i * cd.page_size : min((i + 1) * cd.page_size, cd.code_limit)]
        at = cd_start + cd.hash_offset + 32 * i
        out[at : at + 32] = hashlib.sha256(page).digest()
    return bytes(out)


# --- one mutation per structural rule -----------------------------------------------------

UNKNOWN_OPTIONAL_COMMAND = 0x7F  # no LC_REQ_DYLD bit: the loader skips it, so the original command is gone


def _segment_field(name: str, field: str, value: int):
    # segment_command_64: cmd cmdsize segname[16] vmaddr vmsize fileoff filesize maxprot initprot nsects flags
    offsets = {"vmaddr": 24, "vmsize": 32, "fileoff": 40, "filesize": 48, "maxprot": 56, "initprot": 60}
    fmt = "<Q" if offsets[field] < 56 else "<I"
    return lambda image: put(image, segment_command_offset(image, name) + offsets[field], fmt, value)


def _segment_field_delta(name: str, field: str, delta: int):
    def mutate(image: bytes) -> bytes:
        seg = m.parse(image).segment(name)
        return _segment_field(name, field, getattr(seg, field) + delta)(image)

    return mutate


def _both_prots(name: str, prot: int):
    return lambda image: _segment_field(name, "initprot", prot)(_segment_field(name, "maxprot", prot)(image))


def _hide_command(cmd: int):
    return lambda image: put(image, command_offset(image, cmd), "<I", UNKNOWN_OPTIONAL_COMMAND)


def _replace_string(old: bytes, new: bytes):
    assert len(old) == len(new)

    def mutate(image: bytes) -> bytes:
        assert image.count(old) >= 1
        at = image.index(old)
        return image[:at] + new + image[at + len(old) :]

    return mutate


def _header_word(offset: int, transform):
    return lambda image: put(image, offset, "<I", transform(struct.unpack_from("<I", image, offset)[0]))


# One mutation per rule: each breaks that rule and nothing the table checks before it.
MUTATIONS = {
    "truncated": lambda image: image[:20],
    "magic": _header_word(0, lambda _: 0xFEEDFACE),
    "load_commands": lambda image: put(image, m.HEADER.size + 4, "<I", 0x44),  # first cmdsize not a multiple of 8
    "cputype": _header_word(4, lambda _: 0x01000007),  # x86_64
    "filetype": _header_word(12, lambda _: 6),  # MH_DYLIB
    "flags_dyldlink": _header_word(24, lambda f: f & ~m.MH_DYLDLINK),
    "flags_pie": _header_word(24, lambda f: f & ~m.MH_PIE),
    "segment_bounds": _segment_field_delta("__LINKEDIT", "filesize", 0x100000),
    "segment_alignment": _segment_field_delta("__LINKEDIT", "vmaddr", 0x1000),
    "pagezero": _segment_field("__PAGEZERO", "vmsize", 0x4000),
    "segment_wx": _both_prots("__TEXT", 7),
    "text_segment": _both_prots("__TEXT", 1),  # r--: no longer executable
    "linkedit": _both_prots("__LINKEDIT", 3),
    "dylinker": _replace_string(b"/usr/lib/dyld\0", b"/usr/lib/dyle\0"),
    "entry_point": lambda image: put(image, command_offset(image, m.LC_MAIN) + 8, "<Q", 0x20000),
    "symtab": _hide_command(m.LC_SYMTAB),
    "dysymtab": _hide_command(m.LC_DYSYMTAB),
    "build_version": lambda image: put(image, command_offset(image, m.LC_BUILD_VERSION) + 8, "<I", 2),  # iOS
    "libsystem": _replace_string(b"libSystem.B.dylib", b"libSystem.C.dylib"),
    "uuid": _hide_command(m.LC_UUID),
    "code_signature": _hide_command(m.LC_CODE_SIGNATURE),
}


# --- code-signature surgery -------------------------------------------------------------------

# Byte offset and big-endian format of every SuperBlob / CodeDirectory header field.
SUPERBLOB_FIELDS = {"magic": (0, ">I"), "length": (4, ">I"), "count": (8, ">I"), "type0": (12, ">I"), "offset0": (16, ">I")}
CD_FIELDS = {
    "magic": (0, ">I"), "length": (4, ">I"), "version": (8, ">I"), "flags": (12, ">I"), "hashOffset": (16, ">I"),
    "identOffset": (20, ">I"), "nSpecialSlots": (24, ">I"), "nCodeSlots": (28, ">I"), "codeLimit": (32, ">I"),
    "hashSize": (36, ">B"), "hashType": (37, ">B"), "platform": (38, ">B"), "pageSize": (39, ">B"), "spare2": (40, ">I"),
    "scatterOffset": (44, ">I"), "teamOffset": (48, ">I"), "spare3": (52, ">I"), "codeLimit64": (56, ">Q"),
    "execSegBase": (64, ">Q"), "execSegLimit": (72, ">Q"), "execSegFlags": (80, ">Q"),
}  # fmt: skip


def code_directory_offset(image: bytes) -> int:
    """File offset of the CodeDirectory, from the SuperBlob's index."""
    f = m.parse(image)
    dataoff = f.code_signatures[0].dataoff
    count = struct.unpack_from(">I", image, dataoff + 8)[0]
    for i in range(count):
        slot, offset = struct.unpack_from(">II", image, dataoff + 12 + 8 * i)
        if slot == 0:
            return dataoff + offset
    raise KeyError("no CodeDirectory")


def read_field(image: bytes, blob: str, field: str) -> int:
    offset, fmt = (CD_FIELDS if blob == "cd" else SUPERBLOB_FIELDS)[field]
    base = code_directory_offset(image) if blob == "cd" else m.parse(image).code_signatures[0].dataoff
    return struct.unpack_from(fmt, image, base + offset)[0]


def set_field(blob: str, field: str, value=None, *, delta: int = 0):
    """A mutation writing ``value`` (or the field's value plus ``delta``) into one header field."""
    offset, fmt = (CD_FIELDS if blob == "cd" else SUPERBLOB_FIELDS)[field]

    def mutate(image: bytes) -> bytes:
        base = code_directory_offset(image) if blob == "cd" else m.parse(image).code_signatures[0].dataoff
        new = read_field(image, blob, field) + delta if value is None else value
        return put(image, base + offset, fmt, new)

    return mutate


def build_signature(
    image: bytes,
    *,
    version: int = CS_SUPPORTS_EXECSEG,
    flags: int = CS_ADHOC | CS_LINKER_SIGNED,
    extension: bytes = b"",
    page_shift: int = 14,
    n_special: int = 0,
    blobs: dict[int, bytes] | None = None,
    special_hashes: dict[int, bytes] | None = None,
) -> bytes:
    """Replace the signature with one built here field by field (as codesign and the linkers lay it
    out: header, version fields, identifier, special hashes, code hashes; then the other blobs).
    The new SuperBlob must fit the old LC_CODE_SIGNATURE region, so 16 KiB pages are the default."""
    f = m.parse(image)
    sig = f.code_signatures[0]
    text = f.segment("__TEXT")
    old = read_signature(f).code_directory
    blobs = blobs or {}
    code, page = image[: sig.dataoff], 1 << page_shift
    code_hashes = b"".join(hashlib.sha256(code[i : i + page]).digest() for i in range(0, len(code), page))
    specials = {k: hashlib.sha256(blob).digest() for k, blob in blobs.items() if 0 < k <= n_special}
    specials.update(special_hashes or {})
    special = b"".join(specials.get(k, bytes(32)) for k in range(n_special, 0, -1))
    ident = old.identifier.encode() + b"\0"
    header = CODE_DIRECTORY.size + len(extension)
    hash_offset = header + len(ident) + len(special)
    length = hash_offset + len(code_hashes)
    fields = (
        CSMAGIC_CODEDIRECTORY, length, version, flags, hash_offset, header, n_special, len(code_hashes) // 32,
        sig.dataoff, 32, CS_HASHTYPE_SHA256, 0, page_shift, 0, 0, 0, 0, 0, text.fileoff, text.filesize,
        CS_EXECSEG_MAIN_BINARY,
    )  # fmt: skip
    directory = CODE_DIRECTORY.pack(*fields) + extension + ident + special + code_hashes
    entries = [(0, directory), *sorted(blobs.items())]
    offset = 12 + 8 * len(entries)
    index, body = b"", b""
    for slot, blob in entries:
        index += struct.pack(">II", slot, offset + len(body))
        body += blob
    superblob = struct.pack(">III", CSMAGIC_EMBEDDED_SIGNATURE, offset + len(body), len(entries)) + index + body
    assert len(superblob) <= sig.datasize, (len(superblob), sig.datasize)
    return code + superblob + bytes(sig.datasize - len(superblob))
