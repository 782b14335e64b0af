"""Finalize an image: derive LC_UUID from the content, then write the ad-hoc code signature.

Both are hashes of the bytes before the signature, so they are the last step after anything
that changes a byte (linking, patching an operand, a model writing the image) and are never
part of what a model has to predict. The UUID follows zig's rule (``src/link/MachO/uuid.zig``,
also LLVM lld's): MD5 of each 1 MiB chunk of the file up to ``dataoff`` with the UUID field
zeroed, MD5 of those digests, then the RFC 4122 version-3 and variant bits. (A plain MD5 of the
bytes, as the design notes first said, does not reproduce zig's UUIDs; the chunked rule does.)
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from exe_coder.codegen.codesign import DEFAULT_PAGE_SHIFT, IDENTIFIER, code_signature

_MH_MAGIC_64 = 0xFEEDFACF
_LC_SEGMENT_64 = 0x19
_LC_UUID = 0x1B
_LC_CODE_SIGNATURE = 0x1D
_UUID_CHUNK = 1 << 20


def content_uuid(content: bytes | bytearray | memoryview, prefix_end: int = 0) -> bytes:
    """zig's content-derived UUID of ``content`` (the bytes up to dataoff, UUID zeroed).

    ``prefix_end``: the bytes before it are likely the same as last call's (the header and
    padding before ``__text``); their MD5 state is remembered and reused when they match.
    """
    view = memoryview(content)
    if len(view) <= _UUID_CHUNK and prefix_end:
        inner = _md5_with_prefix(view, prefix_end)
    else:
        inner = b"".join(hashlib.md5(view[i : i + _UUID_CHUNK]).digest() for i in range(0, len(view), _UUID_CHUNK))
    uuid = bytearray(hashlib.md5(inner).digest())
    uuid[6] = (uuid[6] & 0x0F) | 0x30  # version 3 (name-based, MD5)
    uuid[8] = (uuid[8] & 0x3F) | 0x80  # RFC 4122 variant
    return bytes(uuid)


_prefix_state: tuple[bytes, object] = (b"", hashlib.md5())


def _md5_with_prefix(view: memoryview, prefix_end: int) -> bytes:
    """MD5 of ``view``, resuming from the remembered state when its first ``prefix_end`` bytes
    equal the remembered prefix (compared in full, so the result is always the plain MD5)."""
    global _prefix_state
    prefix = bytes(view[:prefix_end])
    cached_prefix, cached_state = _prefix_state
    if prefix == cached_prefix:
        digest = cached_state.copy()
    else:
        digest = hashlib.md5(prefix)
        _prefix_state = (prefix, digest.copy())
    digest.update(view[prefix_end:])
    return digest.digest()


@dataclass(frozen=True)
class SignatureLayout:
    """Where finalize writes: found from the load commands, reusable for images laid out alike."""

    uuid_at: int | None  # file offset of the 16 UUID bytes
    dataoff: int
    datasize: int
    text_fileoff: int
    text_filesize: int
    code_offset: int  # file offset of __TEXT's first section (0 if none): bytes before it rarely change


def locate(image: bytes | bytearray) -> SignatureLayout:
    """Read the UUID field, the signature's place and __TEXT from the load commands (ValueError if absent)."""
    if len(image) < 32:
        raise ValueError("not a Mach-O image: shorter than a header")
    magic, _, _, _, ncmds, sizeofcmds = struct.unpack_from("<IiiIII", image, 0)
    if magic != _MH_MAGIC_64:
        raise ValueError(f"not a 64-bit Mach-O image (magic {magic:#x})")
    if 32 + sizeofcmds > len(image):
        raise ValueError("load commands run past the end of the image")
    uuid_at = signature = text = None
    offset = 32
    for _ in range(ncmds):
        if offset + 8 > 32 + sizeofcmds:
            raise ValueError("load command table is truncated")
        cmd, cmdsize = struct.unpack_from("<II", image, offset)
        if cmdsize < 8 or offset + cmdsize > 32 + sizeofcmds:
            raise ValueError(f"load command at {offset:#x} has a bad size {cmdsize}")
        if cmd == _LC_UUID and cmdsize >= 24:
            uuid_at = offset + 8
        elif cmd == _LC_CODE_SIGNATURE and cmdsize >= 16:
            signature = struct.unpack_from("<II", image, offset + 8)
        elif cmd == _LC_SEGMENT_64 and cmdsize >= 72 and image[offset + 8 : offset + 24].rstrip(b"\0") == b"__TEXT":
            fileoff, filesize = struct.unpack_from("<QQ", image, offset + 40)
            (nsects,) = struct.unpack_from("<I", image, offset + 64)
            first_section = struct.unpack_from("<I", image, offset + 72 + 48)[0] if nsects and cmdsize >= 152 else 0
            text = (fileoff, filesize, first_section)
        offset += cmdsize
    if signature is None:
        raise ValueError("no LC_CODE_SIGNATURE: nowhere to put the signature")
    if text is None:
        raise ValueError("no __TEXT segment")
    dataoff, datasize = signature
    if dataoff + datasize > len(image) or dataoff < 32 + sizeofcmds:
        raise ValueError(f"LC_CODE_SIGNATURE {dataoff:#x}+{datasize:#x} lies outside the file")
    return SignatureLayout(uuid_at, dataoff, datasize, text[0], text[1], min(text[2], dataoff))


def finalize(
    image: bytes | bytearray,
    *,
    identifier: str = IDENTIFIER,
    page_shift: int = DEFAULT_PAGE_SHIFT,
    layout: SignatureLayout | None = None,
) -> bytes:
    """Return ``image`` with its UUID and code signature recomputed (raises ValueError if it has
    no place for them). Deterministic: the same bytes in give the same bytes out.

    ``layout`` skips reading the load commands when the caller knows them (``locate`` of an
    image with the same header, e.g. a golden image whose operands were patched)."""
    if layout is None:
        layout = locate(image)
    uuid_at, dataoff, datasize = layout.uuid_at, layout.dataoff, layout.datasize
    out = bytearray(image)
    if uuid_at is not None:
        out[uuid_at : uuid_at + 16] = bytes(16)
        out[uuid_at : uuid_at + 16] = content_uuid(memoryview(out)[:dataoff], prefix_end=layout.code_offset)
    blob = code_signature(
        memoryview(out)[:dataoff],
        exec_seg_base=layout.text_fileoff,
        exec_seg_limit=layout.text_filesize,
        identifier=identifier,
        page_shift=page_shift,
    )
    if len(blob) > datasize:
        raise ValueError(f"code signature needs {len(blob)} bytes, LC_CODE_SIGNATURE reserves {datasize}")
    out[dataoff : dataoff + datasize] = blob.ljust(datasize, b"\0")
    return bytes(out)


def unsigned_image(image: bytes | bytearray) -> bytes:
    """What precedes ``finalize``: the bytes before the code signature, the UUID field zeroed
    (Track B's target; ``finalize_unsigned`` of it is ``image`` again when ``image`` is finalized)."""
    layout = locate(image)
    out = bytearray(image[: layout.dataoff])
    if layout.uuid_at is not None:
        out[layout.uuid_at : layout.uuid_at + 16] = bytes(16)
    return bytes(out)


def finalize_unsigned(unsigned: bytes | bytearray) -> bytes:
    """Fill the UUID and append the ad-hoc signature to the bytes before the signature, as the
    linker (or ``codesign``) does; ValueError unless ``LC_CODE_SIGNATURE`` starts right at the end."""
    if len(unsigned) < 32:
        raise ValueError("not a Mach-O image: shorter than a header")
    padded = bytes(unsigned) + bytes(signature_size(unsigned))
    layout = locate(padded)
    if layout.dataoff != len(unsigned):
        raise ValueError(f"the image is {len(unsigned)} bytes, but LC_CODE_SIGNATURE puts the signature at {layout.dataoff:#x}")
    return finalize(padded, layout=layout)


def signature_size(image: bytes | bytearray) -> int:
    """LC_CODE_SIGNATURE's datasize (0 when it is absent; ``locate`` then says why)."""
    _, _, _, _, ncmds, sizeofcmds = struct.unpack_from("<IiiIII", image, 0)
    offset, end = 32, min(32 + sizeofcmds, len(image))
    for _ in range(ncmds):
        if offset + 16 > end:
            break
        cmd, cmdsize = struct.unpack_from("<II", image, offset)
        if cmd == _LC_CODE_SIGNATURE:
            return min(struct.unpack_from("<I", image, offset + 12)[0], MAX_SIGNATURE)
        if cmdsize < 8:
            break
        offset += cmdsize
    return 0


MAX_SIGNATURE = 1 << 20  # a model-written datasize is not trusted to size an allocation
