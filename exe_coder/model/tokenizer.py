"""Bytes in, bytes out: the prompt as UTF-8 bytes, the target as characters (also bytes).

Token ids 0..255 are the byte values; four special tokens follow. A Track A target such as
``"A=17;B=-4\n"`` is its ASCII bytes then EOS; a Track B target is the image's bytes with zero
runs compressed (``decode/image_text.py``), in the same 256 byte ids: no vocabulary is added, so
every model and decode grammar keeps the 260-token vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

PAD = 256  # right padding in training batches, left padding in generation batches
BOS = 257  # starts every sequence
SEP = 258  # ends the prompt: the model writes the target after it
EOS = 259  # ends the target
VOCAB_SIZE = 260
SPECIALS = {PAD: "<pad>", BOS: "<bos>", SEP: "<sep>", EOS: "<eos>"}


@dataclass(frozen=True)
class Tokenizer:
    vocab_size: int = VOCAB_SIZE
    pad_id: int = PAD
    bos_id: int = BOS
    sep_id: int = SEP
    eos_id: int = EOS

    def encode_prompt(self, prompt: str) -> list[int]:
        """``BOS prompt-bytes SEP``: everything the model reads before writing."""
        return [BOS, *prompt.encode("utf-8"), SEP]

    def encode_target(self, target: str | bytes | list[int]) -> list[int]:
        """A text's UTF-8 bytes, or a track's token ids as they are, then EOS."""
        data = target.encode("utf-8") if isinstance(target, str) else target
        return [*data, EOS]

    def encode_example(self, prompt: str, target: str | bytes | list[int]) -> tuple[list[int], list[bool]]:
        """Token ids and a loss mask that is True on target tokens (and EOS) only."""
        p = self.encode_prompt(prompt)
        t = self.encode_target(target)
        return p + t, [False] * len(p) + [True] * len(t)

    def decode_bytes(self, ids: list[int]) -> bytes:
        """The byte tokens up to the first EOS; other special tokens are dropped."""
        out = bytearray()
        for i in ids:
            if i == EOS:
                break
            if i < 256:
                out.append(i)
        return bytes(out)

    def decode_text(self, ids: list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_text(self, i: int) -> str:
        """A token's text as the decode grammar sees it ('' for specials)."""
        return chr(i) if i < 128 else ("" if i in SPECIALS else bytes([i]).decode("latin-1"))
