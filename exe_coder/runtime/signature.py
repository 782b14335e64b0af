"""Check an ad-hoc code signature the way the kernel does: every page hash, recomputed.

The signature (big-endian, unlike the rest of the file) is a SuperBlob whose CodeDirectory
lists one SHA-256 per page of the file up to ``codeLimit``. Apple Silicon kills a program
whose pages do not match, so a single flipped byte anywhere before the signature is fatal.

Hashes cover the pages, not the signature's own headers: for an ad-hoc signature nothing signs
the CodeDirectory, so every header field is held here to what the kernel (xnu
``cs_validate_codedirectory``) and ``codesign`` accept for an ad-hoc, linker-signed main
executable (``SIGNATURE_RULES``). A failure raises ``SignatureError`` whose ``rule`` names the
field. ``read_signature`` only parses (bounds and magics, so ``inspect`` can still show a
tampered signature); ``check_signature`` applies every rule and recomputes the hashes. Both take
a parsed ``MachO`` that passed ``validate``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from exe_coder.runtime.macho import MachO

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_REQUIREMENTS = 0xFADE0C01
CSMAGIC_EMBEDDED_ENTITLEMENTS = 0xFADE7171
CSMAGIC_EMBEDDED_DER_ENTITLEMENTS = 0xFADE7172
CSMAGIC_BLOBWRAPPER = 0xFADE0B01
CSSLOT_CODEDIRECTORY = 0
CSSLOT_SIGNATURESLOT = 0x10000  # the CMS signature; empty in an ad-hoc signature
CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000
CS_EXECSEG_MAIN_BINARY = 0x1
CS_HASHTYPE_SHA256 = 2
CS_SUPPORTS_EXECSEG = 0x20400  # the first CodeDirectory version with execSeg fields
CS_SUPPORTS_RUNTIME = 0x20500  # adds runtime, preEncryptOffset
CS_SUPPORTS_LINKAGE = 0x20600  # adds the linkage fields
CS_VERSION_LIMIT = 0x2F000  # codesign's compatibilityLimit: newer CodeDirectories are refused
PAGE_SIZES_LOG2 = (12, 14)  # 4 KiB (lld, Go) and 16 KiB (zig) pages; no signer writes 8 KiB ones
HASH_SIZE = 32

# A special slot's blob and the magic it must carry. Slots 1, 3, 4 and 6 (Info.plist, resources,
# application, rep-specific) hash files outside the binary, of which a bare executable has none.
SPECIAL_BLOB_MAGIC = {2: CSMAGIC_REQUIREMENTS, 5: CSMAGIC_EMBEDDED_ENTITLEMENTS, 7: CSMAGIC_EMBEDDED_DER_ENTITLEMENTS}

BLOB_HEADER = struct.Struct(">III")  # magic, length, count (SuperBlob) / magic, length (others)
BLOB_INDEX = struct.Struct(">II")  # type, offset
# magic length version flags hashOffset identOffset nSpecialSlots nCodeSlots codeLimit hashSize
# hashType platform pageSize spare2 scatterOffset teamOffset spare3 codeLimit64 execSegBase
# execSegLimit execSegFlags
CODE_DIRECTORY = struct.Struct(">IIIIIIIIIBBBBIIIIQQQQ")

# Every way a signature can fail, named; the Outcome of a failure carries the name as its rule.
SIGNATURE_RULES: dict[str, str] = {
    "superblob_magic": "the signature starts with an embedded-signature SuperBlob (0xFADE0CC0)",
    "superblob_length": "the SuperBlob's length holds its index and blobs and fits the LC_CODE_SIGNATURE region",
    "superblob_index": "each index entry points past the index at a whole blob of a known type, once per type",
    "superblob_blobs": "one CodeDirectory; special blobs are hashed by a special slot; the CMS blob is empty (ad-hoc)",
    "cd_magic": "the slot-0 blob is a CodeDirectory (0xFADE0C02)",
    "cd_length": "the CodeDirectory's length holds its header and fits its SuperBlob",
    "cd_version": "version 0x20400 (execSeg fields) up to codesign's limit 0x2F000, its header before the identifier",
    "cd_version_fields": "fields newer than 0x20400 (runtime, preEncryptOffset, linkage) are zero",
    "cd_flags": "CS_ADHOC, optionally CS_LINKER_SIGNED, nothing else",
    "cd_hash_type": "SHA-256 (type 2), the only hash we recompute and what every arm64 signer writes",
    "cd_hash_size": "32 bytes, SHA-256's size",
    "cd_page_size": "pages of 2^12 or 2^14 bytes",
    "cd_platform": "0: a non-zero platform claims an Apple platform binary",
    "cd_spare": "spare2 and spare3 are zero (reserved)",
    "cd_scatter": "scatterOffset is 0: no scatter vector (linkers never write one)",
    "cd_team": "teamOffset is 0: an ad-hoc signature has no team identifier",
    "cd_code_limit": "codeLimit is the signature's file offset; codeLimit64 is 0",
    "cd_code_slots": "one code slot per page up to codeLimit",
    "cd_hash_offset": "the code hashes lie after the header and inside the CodeDirectory",
    "cd_special_slots": "the special hashes lie between the header and the code hashes",
    "cd_identifier": "a non-empty NUL-terminated identifier after the header, before the hashes",
    "cd_exec_seg": "execSegBase and execSegLimit are __TEXT's file offset and size",
    "cd_exec_seg_flags": "exactly CS_EXECSEG_MAIN_BINARY; the other bits come from entitlements we do not have",
    "special_hash": "each special slot holds its blob's SHA-256, or zeros when there is no blob",
    "page_hash": "each code slot holds its page's SHA-256",
}


class SignatureError(ValueError):
    """The signature is missing, malformed or does not match the file; ``rule`` names what failed."""

    def __init__(self, rule: str, message: str) -> None:
        assert rule in SIGNATURE_RULES, rule
        super().__init__(message)
        self.rule = rule


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
    identifier: str  # "" when ident_end is None
    raw: bytes  # the whole CodeDirectory blob, whose hash is the cdhash
    spare2: int = 0
    scatter_offset: int = 0
    team_offset: int = 0
    spare3: int = 0
    code_limit64: int = 0
    ident_end: int | None = None  # offset of the identifier's NUL; None when it has none

    @property
    def length(self) -> int:
        return len(self.raw)

    @property
    def page_size(self) -> int:
        return 1 << min(self.page_size_log2, 63)

    @property
    def header_size(self) -> int:
        """Bytes of fixed fields this version declares (later versions append fields)."""
        if self.version >= CS_SUPPORTS_LINKAGE:
            return 108
        return 96 if self.version >= CS_SUPPORTS_RUNTIME else CODE_DIRECTORY.size

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


def _blob(region: bytes, offset: int, what: str, rule: str) -> bytes:
    if offset + 8 > len(region):
        raise SignatureError("superblob_index", f"{what} at +{offset} runs past the SuperBlob")
    _magic, length = struct.unpack_from(">II", region, offset)
    if length < 8 or offset + length > len(region):
        raise SignatureError(rule, f"{what} length {length} at +{offset} runs past the SuperBlob's {len(region)} bytes")
    return region[offset : offset + length]


def read_signature(f: MachO) -> CodeSignature:
    """Parse the SuperBlob and its CodeDirectory (bounds and magics only; no policy, no hashes)."""
    sigs = f.code_signatures
    if len(sigs) != 1:
        raise SignatureError("superblob_length", "no single LC_CODE_SIGNATURE")
    sig = sigs[0]
    region = f.data[sig.dataoff : sig.dataoff + sig.datasize]
    if len(region) < BLOB_HEADER.size:
        raise SignatureError("superblob_length", "signature region shorter than a SuperBlob header")
    magic, length, count = BLOB_HEADER.unpack_from(region, 0)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        raise SignatureError("superblob_magic", f"SuperBlob magic 0x{magic:08x} is not 0x{CSMAGIC_EMBEDDED_SIGNATURE:08x}")
    index_end = BLOB_HEADER.size + count * BLOB_INDEX.size
    if length > len(region) or index_end > length:
        raise SignatureError("superblob_length", f"SuperBlob length {length} / count {count} overflow its {len(region)} bytes")
    region = region[:length]
    blobs = []
    for i in range(count):
        slot, offset = BLOB_INDEX.unpack_from(region, BLOB_HEADER.size + i * BLOB_INDEX.size)
        if offset < index_end:
            raise SignatureError("superblob_index", f"blob {i} (slot 0x{slot:x}) at +{offset} overlaps the SuperBlob index")
        rule = "cd_length" if slot == CSSLOT_CODEDIRECTORY else "superblob_index"
        blobs.append((slot, _blob(region, offset, f"blob {i} (slot 0x{slot:x})", rule)))
    directories = [b for slot, b in blobs if slot == CSSLOT_CODEDIRECTORY]
    if len(directories) != 1:
        raise SignatureError("superblob_blobs", f"{len(directories)} CodeDirectories in slot 0; want one")
    return CodeSignature(tuple(blobs), _code_directory(directories[0]))


def _code_directory(raw: bytes) -> CodeDirectory:
    if len(raw) < CODE_DIRECTORY.size:
        raise SignatureError("cd_length", f"CodeDirectory of {len(raw)} bytes is shorter than its {CODE_DIRECTORY.size}-byte header")
    (
        magic, _length, version, flags, hash_offset, ident_offset, n_special, n_code, code_limit,
        hash_size, hash_type, platform, page_log2, spare2, scatter, team, spare3, code_limit64,
        exec_base, exec_limit, exec_flags,
    ) = CODE_DIRECTORY.unpack_from(raw, 0)  # fmt: skip
    if magic != CSMAGIC_CODEDIRECTORY:
        raise SignatureError("cd_magic", f"CodeDirectory magic 0x{magic:08x} is not 0x{CSMAGIC_CODEDIRECTORY:08x}")
    end = raw.find(b"\0", ident_offset) if ident_offset < len(raw) else -1
    ident_end = end if end >= 0 else None
    identifier = raw[ident_offset:end].decode("latin-1") if ident_end is not None else ""
    return CodeDirectory(
        version, flags, hash_offset, ident_offset, n_special, n_code, code_limit, hash_size, hash_type, platform,
        page_log2, exec_base, exec_limit, exec_flags, identifier, raw,
        spare2, scatter, team, spare3, code_limit64, ident_end,
    )  # fmt: skip


def _check_code_directory(cd: CodeDirectory, code_limit: int, text: tuple[int, int] | None) -> None:
    """Every CodeDirectory header rule, in an order where each check trusts only fields checked before it."""

    def fail(rule: str, message: str) -> None:
        raise SignatureError(rule, message)

    if not CS_SUPPORTS_EXECSEG <= cd.version <= CS_VERSION_LIMIT:
        fail("cd_version", f"CodeDirectory version 0x{cd.version:x} is outside 0x{CS_SUPPORTS_EXECSEG:x}..0x{CS_VERSION_LIMIT:x}")
    # A version past 0x20400 appends header fields; they must not run into the identifier or hashes.
    first_content = min(cd.ident_offset, cd.hash_offset - cd.n_special_slots * cd.hash_size, cd.length)
    if cd.header_size > CODE_DIRECTORY.size and cd.header_size > first_content:
        fail("cd_version", f"version 0x{cd.version:x} has a {cd.header_size}-byte header, but its content starts at {first_content}")
    # runtime/preEncryptOffset/linkage: hardened-runtime version, encrypted pages, linkage hash;
    # none exists for an ad-hoc linker-signed executable.
    if any(cd.raw[CODE_DIRECTORY.size : cd.header_size]):
        fail("cd_version_fields", f"runtime/preEncryptOffset/linkage fields of version 0x{cd.version:x} are not zero")
    # ADHOC: there is no certificate chain, the cdhash is the identity. LINKER_SIGNED is set by
    # ld and zig and dropped by `codesign -s -`; both launch. Every other bit (hard, kill,
    # restrict, runtime, library validation...) is a policy no ad-hoc main executable carries.
    if cd.flags & ~CS_LINKER_SIGNED != CS_ADHOC:
        fail("cd_flags", f"flags 0x{cd.flags:x} are not CS_ADHOC (0x2) with optional CS_LINKER_SIGNED (0x20000)")
    if cd.hash_type != CS_HASHTYPE_SHA256:
        fail("cd_hash_type", f"hash type {cd.hash_type} is not SHA-256 ({CS_HASHTYPE_SHA256})")
    if cd.hash_size != HASH_SIZE:
        fail("cd_hash_size", f"hash size {cd.hash_size} is not SHA-256's {HASH_SIZE}")
    if cd.page_size_log2 not in PAGE_SIZES_LOG2:
        fail("cd_page_size", f"page size 2^{cd.page_size_log2} is not 2^12 or 2^14")
    if cd.platform:
        fail("cd_platform", f"platform {cd.platform} is not 0 (only Apple's platform binaries set it)")
    if cd.spare2 or cd.spare3:
        fail("cd_spare", f"spare2 0x{cd.spare2:x} / spare3 0x{cd.spare3:x} are not zero")
    if cd.scatter_offset:
        fail("cd_scatter", f"scatterOffset {cd.scatter_offset} is not 0")
    if cd.team_offset:
        fail("cd_team", f"teamOffset {cd.team_offset} is not 0; an ad-hoc signature has no team")
    if cd.code_limit != code_limit or cd.code_limit64:
        fail("cd_code_limit", f"codeLimit 0x{cd.code_limit:x} (codeLimit64 0x{cd.code_limit64:x}) is not the signature offset 0x{code_limit:x}")
    pages = -(-cd.code_limit // cd.page_size)
    if cd.n_code_slots != pages:
        fail("cd_code_slots", f"{cd.n_code_slots} code slots for {pages} pages of 2^{cd.page_size_log2} bytes")
    if cd.hash_offset < cd.header_size or cd.hash_offset + cd.n_code_slots * cd.hash_size > cd.length:
        fail("cd_hash_offset", f"hashOffset {cd.hash_offset} puts {cd.n_code_slots} code hashes outside {cd.header_size}..{cd.length} (the CodeDirectory length)")
    specials = cd.hash_offset - cd.n_special_slots * cd.hash_size
    if specials < cd.header_size:
        fail("cd_special_slots", f"nSpecialSlots {cd.n_special_slots} puts special hashes at {specials}, inside the {cd.header_size}-byte header")
    # The identifier's text is free (zig and lld write the file name); it must only be there.
    if not (cd.header_size <= cd.ident_offset and cd.ident_end is not None and cd.ident_offset < cd.ident_end < specials):
        fail("cd_identifier", f"identifier at identOffset {cd.ident_offset} is empty, unterminated or not between the header and the hashes at {specials}")
    if text is None or (cd.exec_seg_base, cd.exec_seg_limit) != text:
        fail("cd_exec_seg", f"execSeg 0x{cd.exec_seg_base:x}+0x{cd.exec_seg_limit:x} does not match __TEXT")
    if cd.exec_seg_flags != CS_EXECSEG_MAIN_BINARY:
        fail("cd_exec_seg_flags", f"execSegFlags 0x{cd.exec_seg_flags:x} are not CS_EXECSEG_MAIN_BINARY (0x1) alone")


def _check_blobs(signature: CodeSignature) -> None:
    cd = signature.code_directory
    seen: set[int] = set()
    for slot, blob in signature.blobs:
        if slot in seen:
            raise SignatureError("superblob_index", f"slot 0x{slot:x} appears twice in the SuperBlob index")
        seen.add(slot)
        magic = struct.unpack_from(">I", blob)[0]
        if slot == CSSLOT_CODEDIRECTORY:
            continue
        if slot == CSSLOT_SIGNATURESLOT:
            if magic != CSMAGIC_BLOBWRAPPER or len(blob) != 8:
                raise SignatureError("superblob_blobs", f"CMS blob (magic 0x{magic:08x}, {len(blob)} bytes) is not the empty wrapper of an ad-hoc signature")
        elif slot not in SPECIAL_BLOB_MAGIC:
            # alternate CodeDirectories (0x1000..) would be the kernel's choice over the one we check
            raise SignatureError("superblob_index", f"slot 0x{slot:x} is not a blob an ad-hoc executable carries")
        elif magic != SPECIAL_BLOB_MAGIC[slot]:
            raise SignatureError("superblob_index", f"slot {slot} blob magic 0x{magic:08x} is not 0x{SPECIAL_BLOB_MAGIC[slot]:08x}")
        elif slot > cd.n_special_slots:
            raise SignatureError("superblob_blobs", f"slot {slot} blob is not hashed: only {cd.n_special_slots} special slots")


def check_signature(f: MachO) -> CodeSignature:
    """Verify the signature against the file; return it, or raise ``SignatureError`` naming the first rule broken."""
    signature = read_signature(f)
    cd = signature.code_directory
    dataoff = f.code_signatures[0].dataoff
    text = f.segment("__TEXT")
    _check_code_directory(cd, dataoff, None if text is None else (text.fileoff, text.filesize))
    _check_blobs(signature)
    present = dict(signature.blobs)
    for slot in range(1, cd.n_special_slots + 1):
        blob = present.get(slot)
        want = hashlib.sha256(blob).digest() if blob is not None else bytes(cd.hash_size)
        if cd.special_hash(slot) != want:
            raise SignatureError("special_hash", f"special slot -{slot} hash does not match")
    data, page, raw, offset = f.data, cd.page_size, cd.raw, cd.hash_offset
    sha256 = hashlib.sha256
    for i in range(cd.n_code_slots):
        start = i * page
        if sha256(data[start : min(start + page, dataoff)]).digest() != raw[offset + 32 * i : offset + 32 * i + 32]:
            raise SignatureError("page_hash", f"page {i} (file 0x{start:x}) hash does not match")
    return signature
