"""Check an ad-hoc code signature the way the kernel does: every page hash, recomputed.

The signature (big-endian, unlike the rest of the file) is a SuperBlob whose CodeDirectory
lists one SHA-256 per page of the file up to ``codeLimit``. Apple Silicon kills a program
whose pages do not match, so a single flipped byte anywhere before the signature is fatal.
``read_signature`` parses (raising ``SignatureError`` with a reason), ``check_signature``
also recomputes and compares; both take a parsed ``MachO`` that passed ``validate``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from exe_coder.runtime.macho import MachO

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSSLOT_CODEDIRECTORY = 0
CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000
CS_EXECSEG_MAIN_BINARY = 0x1
CS_HASHTYPE_SHA256 = 2
CS_SUPPORTS_EXECSEG = 0x20400  # the first CodeDirectory version with execSeg fields
PAGE_SIZES_LOG2 = (12, 14)  # the kernel accepts 4 KiB and 16 KiB pages only

BLOB_HEADER = struct.Struct(">III")  # magic, length, count (SuperBlob) / magic, length (others)
BLOB_INDEX = struct.Struct(">II")  # type, offset
# magic length version flags hashOffset identOffset nSpecialSlots nCodeSlots codeLimit hashSize
# hashType platform pageSize spare2 scatterOffset teamOffset spare3 codeLimit64 execSegBase
# execSegLimit execSegFlags
CODE_DIRECTORY = struct.Struct(">IIIIIIIIIBBBBIIIIQQQQ")


class SignatureError(ValueError):
    """The signature is missing, malformed or does not match the file; the message says why."""


@dataclass(frozen=True)
class CodeDirectory:
    version: int
    flags: int
    hash_offset: int
    ident_offset: int
    n_special_slots: int
    n_code_slots: int
    code_limit: int
    hash_size: int
    hash_type: int
    platform: int
    page_size_log2: int
    exec_seg_base: int
    exec_seg_limit: int
    exec_seg_flags: int
    identifier: str
    raw: bytes  # the whole CodeDirectory blob, whose hash is the cdhash

    @property
    def page_size(self) -> int:
        return 1 << self.page_size_log2

    @property
    def cdhash(self) -> bytes:
        """What the kernel and `codesign -d` call the CDHash: SHA-256 of the blob, first 20 bytes."""
        return hashlib.sha256(self.raw).digest()[:20]

    def code_hash(self, slot: int) -> bytes:
        start = self.hash_offset + slot * self.hash_size
        return self.raw[start : start + self.hash_size]

    def special_hash(self, slot: int) -> bytes:
        """The hash of special slot ``-slot`` (1 = Info.plist, 2 = requirements, 5 = entitlements...)."""
        start = self.hash_offset - slot * self.hash_size
        return self.raw[start : start + self.hash_size]


@dataclass(frozen=True)
class CodeSignature:
    blobs: tuple[tuple[int, bytes], ...]  # (slot type, blob bytes) from the SuperBlob index
    code_directory: CodeDirectory


def _blob(region: bytes, offset: int, what: str) -> bytes:
    if offset + 8 > len(region):
        raise SignatureError(f"{what} at +{offset} runs past the signature")
    _magic, length = struct.unpack_from(">II", region, offset)
    if length < 8 or offset + length > len(region):
        raise SignatureError(f"{what} length {length} at +{offset} runs past the signature")
    return region[offset : offset + length]


def read_signature(f: MachO) -> CodeSignature:
    """Parse the SuperBlob and its CodeDirectory (structure only; no hashes are recomputed)."""
    sigs = f.code_signatures
    if len(sigs) != 1:
        raise SignatureError("no single LC_CODE_SIGNATURE")
    sig = sigs[0]
    region = f.data[sig.dataoff : sig.dataoff + sig.datasize]
    if len(region) < BLOB_HEADER.size:
        raise SignatureError("signature region shorter than a SuperBlob header")
    magic, length, count = BLOB_HEADER.unpack_from(region, 0)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        raise SignatureError(f"SuperBlob magic 0x{magic:08x} is not 0x{CSMAGIC_EMBEDDED_SIGNATURE:08x}")
    if length > len(region) or BLOB_HEADER.size + count * BLOB_INDEX.size > length:
        raise SignatureError(f"SuperBlob length {length} / count {count} overflow its {len(region)} bytes")
    region = region[:length]
    blobs = []
    for i in range(count):
        slot, offset = BLOB_INDEX.unpack_from(region, BLOB_HEADER.size + i * BLOB_INDEX.size)
        blobs.append((slot, _blob(region, offset, f"blob {i} (slot {slot})")))
    directories = [b for slot, b in blobs if slot == CSSLOT_CODEDIRECTORY]
    if len(directories) != 1:
        raise SignatureError(f"{len(directories)} CodeDirectories in slot 0; want one")
    return CodeSignature(tuple(blobs), _code_directory(directories[0]))


def _code_directory(raw: bytes) -> CodeDirectory:
    if len(raw) < CODE_DIRECTORY.size:
        raise SignatureError(f"CodeDirectory of {len(raw)} bytes is shorter than its {CODE_DIRECTORY.size}-byte header")
    (
        magic, length, version, flags, hash_offset, ident_offset, n_special, n_code, code_limit,
        hash_size, hash_type, platform, page_log2, _spare2, _scatter, _team, _spare3, code_limit64,
        exec_base, exec_limit, exec_flags,
    ) = CODE_DIRECTORY.unpack_from(raw, 0)  # fmt: skip
    if magic != CSMAGIC_CODEDIRECTORY:
        raise SignatureError(f"CodeDirectory magic 0x{magic:08x} is not 0x{CSMAGIC_CODEDIRECTORY:08x}")
    if version < CS_SUPPORTS_EXECSEG:
        raise SignatureError(f"CodeDirectory version 0x{version:x} predates execSeg (0x{CS_SUPPORTS_EXECSEG:x})")
    if hash_type != CS_HASHTYPE_SHA256 or hash_size != 32:
        raise SignatureError(f"hash type {hash_type} size {hash_size} is not SHA-256 (2, 32)")
    if page_log2 not in PAGE_SIZES_LOG2:
        raise SignatureError(f"page size 2^{page_log2} is not 2^12 or 2^14")
    if code_limit64:
        raise SignatureError("codeLimit64 set for a file under 4 GiB")
    if hash_offset < n_special * hash_size or hash_offset + n_code * hash_size > length:
        raise SignatureError(f"hash slots at {hash_offset} (-{n_special}..{n_code}) overflow the {length}-byte CodeDirectory")
    end = raw.find(b"\0", ident_offset, length) if CODE_DIRECTORY.size <= ident_offset < length else -1
    if end < 0:
        raise SignatureError("identifier is missing or not NUL-terminated")
    return CodeDirectory(
        version, flags, hash_offset, ident_offset, n_special, n_code, code_limit, hash_size, hash_type, platform,
        page_log2, exec_base, exec_limit, exec_flags, raw[ident_offset:end].decode("latin-1"), raw,
    )  # fmt: skip


def check_signature(f: MachO) -> CodeSignature:
    """Verify the signature against the file; return it, or raise ``SignatureError`` naming the first mismatch."""
    signature = read_signature(f)
    cd = signature.code_directory
    dataoff = f.code_signatures[0].dataoff
    if cd.code_limit != dataoff:
        raise SignatureError(f"codeLimit 0x{cd.code_limit:x} is not the signature offset 0x{dataoff:x}")
    if not cd.flags & CS_ADHOC:
        raise SignatureError(f"flags 0x{cd.flags:x} lack CS_ADHOC; only ad-hoc signatures can be checked offline")
    pages = -(-cd.code_limit // cd.page_size)
    if cd.n_code_slots != pages:
        raise SignatureError(f"{cd.n_code_slots} code slots for {pages} pages of 2^{cd.page_size_log2} bytes")
    text = f.segment("__TEXT")
    if text is None or (cd.exec_seg_base, cd.exec_seg_limit) != (text.fileoff, text.filesize):
        raise SignatureError(f"execSeg 0x{cd.exec_seg_base:x}+0x{cd.exec_seg_limit:x} does not match __TEXT")
    if not cd.exec_seg_flags & CS_EXECSEG_MAIN_BINARY:
        raise SignatureError(f"execSegFlags 0x{cd.exec_seg_flags:x} lack CS_EXECSEG_MAIN_BINARY")
    present = dict(signature.blobs)
    for slot in range(1, cd.n_special_slots + 1):
        blob = present.get(slot)
        want = hashlib.sha256(blob).digest() if blob is not None else bytes(cd.hash_size)
        if cd.special_hash(slot) != want:
            raise SignatureError(f"special slot -{slot} hash does not match")
    data, page, raw, offset = f.data, cd.page_size, cd.raw, cd.hash_offset
    sha256 = hashlib.sha256
    for i in range(pages):
        start = i * page
        if sha256(data[start : min(start + page, dataoff)]).digest() != raw[offset + 32 * i : offset + 32 * i + 32]:
            raise SignatureError(f"page {i} (file 0x{start:x}) hash does not match")
    return signature
