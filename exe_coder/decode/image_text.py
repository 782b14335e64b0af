"""Track B's output language: an image's bytes as tokens, zero runs compressed, and its text form.

Tokens are bytes (ids 0..255 of the byte tokenizer), one a byte of the image, except that a run
of zero bytes is written ``0x00`` then the run's length minus one as unsigned LEB128 (7 bits a
token, high bit = more follows). So ``00 00`` is one zero, ``00 02`` three, and the 15,570 zeros
before ``__text`` are ``00 d1 79``. Expanding the tokens gives every byte of the image; the only
arithmetic is the run length, and the model writes that too. Why bytes and not hex characters:
a hex character carries half a byte, so hex would double the ~520-token target; and why no new
vocabulary: Track A's models and grammar use the 260-token vocabulary, and run tokens would
change every model's embedding size for about 20% fewer target tokens.

The *text* of a token stream (what a ``Prediction`` stores, what ``target`` returns) is its hex,
two characters a token, with any special token the model wrote spelled ``<sep>`` and so on, so
a malformed stream stays visible and is refused by ``expand``.
"""

from __future__ import annotations

import re

from exe_coder.model.tokenizer import EOS, SPECIALS

ZERO = 0x00
MAX_IMAGE = 1 << 20  # a stream that expands past this is refused (a 16 KiB image is expected)


class ImageTextError(ValueError):
    """A token stream (or its text) that does not expand to an image."""


def encode_image(data: bytes) -> bytes:
    """The canonical token stream of ``data``: literal non-zero bytes, maximal zero runs."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        if data[i] != ZERO:
            out.append(data[i])
            i += 1
            continue
        j = i
        while j < n and data[j] == ZERO:
            j += 1
        out.append(ZERO)
        out += leb128(j - i - 1)
        i = j
    return bytes(out)


def leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def expand(tokens: bytes, limit: int = MAX_IMAGE) -> bytes:
    """The bytes a token stream stands for (ImageTextError when it ends inside a run or grows past ``limit``)."""
    out = bytearray()
    i, n = 0, len(tokens)
    while i < n:
        t = tokens[i]
        i += 1
        if t != ZERO:
            out.append(t)
        else:
            run, shift = 0, 0
            while True:
                if i >= n:
                    raise ImageTextError(f"the token stream ends inside a zero run (token {i})")
                t = tokens[i]
                i += 1
                run |= (t & 0x7F) << shift
                shift += 7
                if not t & 0x80:
                    break
                if shift > 21:  # 4 length tokens already hold 2^28 zeros: far past any image
                    raise ImageTextError(f"zero run at token {i} has a length of more than 4 tokens")
            if len(out) + run + 1 > limit:
                raise ImageTextError(f"the token stream expands past {limit} bytes")
            out += bytes(run + 1)
        if len(out) > limit:
            raise ImageTextError(f"the token stream expands past {limit} bytes")
    return bytes(out)


def tokens_to_text(ids: list[int]) -> str:
    """The text of generated ids up to the first EOS: hex a byte token, ``<name>`` a special one."""
    parts = []
    for i in ids:
        if i == EOS:
            break
        parts.append(f"{i:02x}" if 0 <= i < 256 else SPECIALS.get(i, f"<{i}>"))
    return "".join(parts)


_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def text_to_tokens(text: str) -> bytes:
    """The token stream a text spells (ImageTextError on a special token or anything not hex pairs)."""
    if not _HEX.fullmatch(text):
        bad = re.search(r"<[^>]*>", text)
        what = f"holds the special token {bad.group(0)}" if bad else "is not pairs of lowercase hex digits"
        raise ImageTextError(f"the image text {what}")
    return bytes.fromhex(text)
