"""The ad-hoc code signature: a SuperBlob holding one CodeDirectory of SHA-256 page hashes.

Layout as xnu (``bsd/kern/ubc_subr.c``), lld (``CodeSignatureSection``) and zig write it; every
integer here is big-endian, unlike the rest of the Mach-O. No special slots, no requirements
blob: what the linkers emit for an ad-hoc, linker-signed executable.
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CS_SUPPORTSEXECSEG = 0x20400  # CodeDirectory version with the exec-segment fields
CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000
CS_HASHTYPE_SHA256 = 2
CS_EXECSEG_MAIN_BINARY = 0x1
CSSLOT_CODEDIRECTORY = 0

SUPERBLOB_HEADER = 12  # magic, length, count
BLOB_INDEX = 8  # type, offset
CODEDIRECTORY_HEADER = 88
HASH_SIZE = 32
DEFAULT_PAGE_SHIFT = 12  # 4 KiB pages, as lld and Go sign; the kernel also accepts 14 (zig)
IDENTIFIER = "exe-coder"  # fixed, so a binary's bytes never depend on its file name

_CD_HEADER = struct.Struct(">IIIIIIIIIBBBBIIIIQQQQ")
assert _CD_HEADER.size == CODEDIRECTORY_HEADER


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


@lru_cache(maxsize=4)
def _zero_page(page_shift: int) -> tuple[bytes, bytes]:
    """A page of zeros and its hash: padding pages are common and need not be hashed again."""
    page = bytes(1 << page_shift)
    return page, hashlib.sha256(page).digest()


def signature_size(code_limit: int, identifier: str = IDENTIFIER, page_shift: int = DEFAULT_PAGE_SHIFT) -> int:
    """Bytes the signature of a file whose first ``code_limit`` bytes are hashed occupies (16-aligned)."""
    slots = -(-code_limit // (1 << page_shift))
    blob = SUPERBLOB_HEADER + BLOB_INDEX + CODEDIRECTORY_HEADER + len(identifier.encode()) + 1 + HASH_SIZE * slots
    return _align(blob, 16)


def code_signature(
    content: bytes | bytearray | memoryview,
    *,
    exec_seg_base: int,
    exec_seg_limit: int,
    identifier: str = IDENTIFIER,
    page_shift: int = DEFAULT_PAGE_SHIFT,
) -> bytes:
    """The SuperBlob signing ``content`` (every byte before the signature's ``dataoff``)."""
    data = bytes(content)
    code_limit = len(data)
    page = 1 << page_shift
    zero_page, zero_hash = _zero_page(page_shift)
    sha256 = hashlib.sha256
    hashes = []
    for i in range(0, code_limit, page):
        chunk = data[i : i + page]
        hashes.append(zero_hash if chunk == zero_page else sha256(chunk).digest())
    hashes = b"".join(hashes)
    ident = identifier.encode() + b"\0"
    hash_offset = CODEDIRECTORY_HEADER + len(ident)
    cd_length = hash_offset + len(hashes)
    directory = _CD_HEADER.pack(
        CSMAGIC_CODEDIRECTORY,
        cd_length,
        CS_SUPPORTSEXECSEG,
        CS_ADHOC | CS_LINKER_SIGNED,
        hash_offset,
        CODEDIRECTORY_HEADER,  # identOffset: the identifier follows the header
        0,  # nSpecialSlots
        len(hashes) // HASH_SIZE,  # nCodeSlots
        code_limit,
        HASH_SIZE,
        CS_HASHTYPE_SHA256,
        0,  # platform
        page_shift,
        0,  # spare2
        0,  # scatterOffset
        0,  # teamOffset
        0,  # spare3
        0,  # codeLimit64
        exec_seg_base,
        exec_seg_limit,
        CS_EXECSEG_MAIN_BINARY,
    )
    header_size = SUPERBLOB_HEADER + BLOB_INDEX
    superblob = struct.pack(
        ">IIIII",
        CSMAGIC_EMBEDDED_SIGNATURE,
        header_size + cd_length,
        1,
        CSSLOT_CODEDIRECTORY,
        header_size,
    )
    return superblob + directory + ident + hashes
