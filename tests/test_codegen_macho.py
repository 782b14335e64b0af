"""The linker's output against every rule of macho-arm64.md, and finalize against zig.

The rules are read back with LIEF (an independent parser) and, for the signature, recomputed
here from the raw bytes, so a mistake shared by the writer and the project's own validator
cannot hide.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import lief
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.codegen import macho
from exe_coder.codegen.assembler import assemble
from exe_coder.codegen.codesign import IDENTIFIER
from exe_coder.codegen.finalize import content_uuid, finalize, locate
from exe_coder.codegen.program import ProgramTemplate
from exe_coder.codegen.reference import zig_build
from exe_coder.runtime.verify import verify

CMD = lief.MachO.LoadCommand.TYPE


@pytest.fixture(scope="module")
def image() -> bytes:
    return ProgramTemplate.load("add").build(a=17, b=-4)


@pytest.fixture(scope="module")
def binary(image: bytes) -> lief.MachO.Binary:
    return lief.MachO.parse(list(image)).at(0)


def test_header(binary: lief.MachO.Binary) -> None:
    header = binary.header
    assert header.magic == lief.MachO.MACHO_TYPES.MAGIC_64
    assert header.cpu_type == lief.MachO.Header.CPU_TYPE.ARM64
    assert header.cpu_subtype == 0
    assert header.file_type == lief.MachO.Header.FILE_TYPE.EXECUTE
    assert header.flags == 0x1 | 0x4 | 0x80 | 0x200000  # NOUNDEFS | DYLDLINK | TWOLEVEL | PIE


def test_segments(binary: lief.MachO.Binary, image: bytes) -> None:
    segments = {s.name: s for s in binary.segments}
    assert list(segments) == ["__PAGEZERO", "__TEXT", "__LINKEDIT"]
    zero = segments["__PAGEZERO"]
    assert (zero.virtual_address, zero.virtual_size, zero.file_size) == (0, 1 << 32, 0)
    assert zero.max_protection == zero.init_protection == 0
    text = segments["__TEXT"]
    assert text.file_offset == 0 and text.virtual_address == 1 << 32
    assert text.init_protection == text.max_protection == 5  # r-x
    assert [s.name for s in text.sections] == ["__text"]
    linkedit = segments["__LINKEDIT"]
    assert linkedit.init_protection == 1
    for segment in segments.values():
        assert segment.file_offset % 0x4000 == 0, segment.name
        assert segment.virtual_size % 0x4000 == 0, segment.name
    assert linkedit.file_offset + linkedit.file_size == len(image)  # __LINKEDIT ends the file


def test_load_commands(binary: lief.MachO.Binary) -> None:
    kinds = [c.command for c in binary.commands]
    for required in (CMD.DYLD_INFO_ONLY, CMD.SYMTAB, CMD.DYSYMTAB, CMD.LOAD_DYLINKER, CMD.MAIN,
                     CMD.BUILD_VERSION, CMD.LOAD_DYLIB, CMD.UUID, CMD.CODE_SIGNATURE):  # fmt: skip
        assert kinds.count(required) == 1, required
    assert CMD.UNIXTHREAD not in kinds
    assert binary.dylinker.name == "/usr/lib/dyld"
    assert [lib.name for lib in binary.libraries] == ["/usr/lib/libSystem.B.dylib"]
    assert binary.main_command.stack_size == 0
    assert binary.main_command.entrypoint == binary.get_section("__text").offset
    build = binary.build_version
    assert build.platform == lief.MachO.BuildVersion.PLATFORMS.MACOS
    assert list(build.minos) == [11, 0, 0]
    assert [s.name for s in binary.symbols] == ["_main"]
    assert binary.symbols[0].value == binary.get_section("__text").virtual_address


def test_code_signature_recomputed_here(binary: lief.MachO.Binary, image: bytes) -> None:
    """Rebuild the SuperBlob's CodeDirectory rule by rule from the raw bytes."""
    cs = binary.code_signature
    dataoff, datasize = cs.data_offset, cs.data_size
    linkedit = binary.get_segment("__LINKEDIT")
    assert dataoff % 16 == 0 and dataoff + datasize == linkedit.file_offset + linkedit.file_size
    magic, length, count, slot_type, slot_offset = struct.unpack_from(">5I", image, dataoff)
    assert (magic, count, slot_type, slot_offset) == (0xFADE0CC0, 1, 0, 20)
    cd = dataoff + 20
    fields = struct.unpack_from(">9I4B4I4Q", image, cd)
    (cd_magic, cd_length, version, flags, hash_offset, ident_offset, n_special, n_code, code_limit,
     hash_size, hash_type, platform, page_shift, _spare2, _scatter, _team, _spare3, _limit64,
     exec_base, exec_limit, exec_flags) = fields  # fmt: skip
    assert (cd_magic, version, flags) == (0xFADE0C02, 0x20400, 0x20002)
    assert length == 20 + cd_length <= datasize
    assert code_limit == dataoff and ident_offset == 88 and n_special == 0
    assert (hash_size, hash_type, platform, page_shift) == (32, 2, 0, 12)
    text = binary.get_segment("__TEXT")
    assert (exec_base, exec_limit, exec_flags) == (text.file_offset, text.file_size, 1)
    ident_end = image.index(b"\0", cd + ident_offset)
    assert image[cd + ident_offset : ident_end].decode() == IDENTIFIER
    assert hash_offset == 88 + len(IDENTIFIER) + 1
    page = 1 << page_shift
    assert n_code == -(-code_limit // page)
    for i in range(n_code):
        expected = hashlib.sha256(image[i * page : min((i + 1) * page, code_limit)]).digest()
        assert image[cd + hash_offset + 32 * i : cd + hash_offset + 32 * (i + 1)] == expected
    assert image[dataoff + length : dataoff + datasize] == bytes(datasize - length)


def test_uuid_is_content_derived(binary: lief.MachO.Binary, image: bytes) -> None:
    uuid = bytes(binary.uuid.uuid)
    assert uuid[6] >> 4 == 3 and uuid[8] >> 6 == 2  # RFC 4122 version 3, variant 10
    at = image.index(uuid)
    blank = image[:at] + bytes(16) + image[at + 16 :]
    dataoff = binary.code_signature.data_offset
    assert uuid == content_uuid(blank[:dataoff])
    other = ProgramTemplate.load("add").build(a=17, b=-5)
    assert bytes(lief.MachO.parse(list(other)).at(0).uuid.uuid) != uuid


def test_finalize_is_idempotent_and_ignores_old_hashes(image: bytes) -> None:
    assert finalize(image) == image
    layout = locate(image)
    scrambled = bytearray(image)
    scrambled[layout.uuid_at : layout.uuid_at + 16] = b"\xff" * 16
    scrambled[layout.dataoff :] = b"\xaa" * (len(image) - layout.dataoff)
    assert finalize(bytes(scrambled)) == image


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:16], "shorter than a header"),
        (lambda b: b"\0" * 4 + b[4:], "not a 64-bit Mach-O"),
        (lambda b: b[: locate(b).dataoff], "outside the file"),
    ],
)
def test_finalize_refuses_images_without_room(image: bytes, mutate, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        finalize(mutate(image))


def test_code_larger_than_a_page_gets_a_bigger_text_segment() -> None:
    source = "    .globl _main\n_main:\n" + "    nop\n" * 5000 + "    mov x0, #0\n    mov x16, #1\n    svc #0x80\n"
    linked = macho.link(assemble(source))
    image = finalize(linked.image)
    binary = lief.MachO.parse(list(image)).at(0)
    assert lief.MachO.check_layout(binary)[0]
    assert binary.get_segment("__TEXT").file_size == 0x8000
    assert verify(image, b"", native=False).stdout_correct


def test_finalize_reproduces_zig_signature_and_uuid(tmp_path: Path) -> None:
    """Blank zig's own UUID and signature; finalize with zig's identifier and page size
    must give back zig's file byte for byte."""
    source = ProgramTemplate.load("add").render(a=-123456, b=98765)
    theirs = zig_build(source, tmp_path, name="prog")
    layout = locate(theirs)
    blank = bytearray(theirs)
    blank[layout.uuid_at : layout.uuid_at + 16] = bytes(16)
    blank[layout.dataoff :] = bytes(len(theirs) - layout.dataoff)
    assert finalize(bytes(blank), identifier="prog", page_shift=14) == theirs


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 0x300), st.integers(0, 255)), min_size=1, max_size=8), cut=st.integers(0, 20000))
def test_finalize_on_mutated_images_returns_or_raises_value_error(image: bytes, edits, cut: int) -> None:
    """Track B hands finalize whatever bytes a model wrote: it must answer with an image or a
    ValueError, never another exception. Edits land in the header and load commands."""
    mutated = bytearray(image[:cut] if cut < len(image) else image)
    for offset, value in edits:
        if offset < len(mutated):
            mutated[offset] = value
    try:
        out = finalize(bytes(mutated))
    except ValueError:
        return
    assert len(out) == len(mutated)
