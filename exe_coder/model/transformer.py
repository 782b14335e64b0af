"""A small decoder-only transformer in MLX (mlx-lm style): pre-norm blocks, tied embeddings.

Position signal (``position``): "rope", "learned" or "none" (NoPE: only the causal mask orders
tokens). Optionally (``digit_positions``) each token also gets an embedding of its place inside
its run of decimal digits (0 = not a digit, 1 = first digit, 2 = second, ...), computed from the
token ids alone, as in "Abacus" embeddings (McLeish et al., 2024). Copying the k-th digit of an
operand then becomes "attend to the digit whose place is k", whatever the digit and wherever the
number sits in the prompt -- the operation Track A needs on unseen magnitudes and templates.
``number_positions`` adds the same idea one level up: each digit's number's ordinal in the
sequence (1 = first run of digits, 2 = second, ...), so "the first digit of the second number"
is one attention lookup instead of a count the model must learn from few examples. Numbers
past ``max_number_ordinal`` share one embedding. With ``output_ordinals = "restart"`` the numbers
the model writes (after SEP) are counted from 1 again, so an output field's ordinal does not
depend on how many numbers the prompt holds; Track B needs this and a larger table, because its
image holds 13 runs of digit bytes (machine code) before the two operand fields, which under the
default count (one sequence, 8 embeddings) share the saturated embedding with them. With
``signed_numbers`` a minus sign ('-' or U+2212) right before a prompt number carries that
number's ordinal too, so its sign is found the way its digits are, not by its distance from them
(stage2's "Adding -4273 to 4040" -> ``A=-4040;B=4273``: a sign copied onto the other number).
Like digit ends it reads the next prompt token, so it is computed over the prompt only.
With ``digit_ends`` each digit of the prompt also knows its place counted from the end of its
number (1 = last digit), so "this was the number's last digit, write ';'" is a lookup too. It is
computed over the prompt only (up to SEP: the prompt is given whole, in one call), never over
what the model writes, which would leak the length of its own answer.

Measured on this task (see configs/): RoPE learned the copy far faster than learned positions,
but it ties the copy to the distance between prompt and answer, which held-out templates with
long trailing text break; NoPE + digit places + number ordinals addresses digits by content
alone and generalises to held-out templates much better. The shipped configs use that.

Digit places and ends meet only their trained embeddings: a number longer than any in training
has a place no row ever used, and the model writes ``1000`` as ``100``. ``place_shift[B]``
(training's ``digit_place_shift``, after Abacus) counts row i's places and ends from
``1 + place_shift[i]``, so every place up to the longest number plus the shift is trained and
the copy must match places relative to each other. Inference passes none (places from 1).
``ordinal_shift[B]`` (training's ``number_ordinal_shift``) does the same one level up: row i's
number ordinals count from ``1 + ordinal_shift[i]``, so ordinals past those of a two-number
prompt are trained too (stage0's "Generate an arm64 executable that prints {a} + {b}" makes b
the third number, an ordinal only that template trains otherwise) and the copy must relate the
answer's ordinals to the prompt's rather than match one fixed pair.

``model(tokens[B, T], cache=None, pad_left=None, place_shift=None, ordinal_shift=None) -> logits[B, T, V]``.

``pad_left[B]`` counts left-padding tokens per row (batched generation pads prompts on the
left): those keys are masked out, and positions are shifted so that each row's first real token
is position 0 -- so a padded row computes exactly what it would alone. With a cache, pass the
same ``pad_left`` on every call of one generation (the cache also remembers the first one).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

from exe_coder.model.tokenizer import SEP, VOCAB_SIZE


MAX_DIGIT_PLACE = 16  # places past this share one embedding (int32 operands have at most 10 digits)
# Causal attention over a longer sequence is computed in blocks of this many queries, each against
# the keys up to its own end, so the masked half of the score matrix is never computed. The same
# function to float rounding; on the CPU, where softmax's exp over T x T scores dominated a Track B
# step (~700 tokens), one rank's step is 1.6x faster (bench/attention.py).
ATTENTION_BLOCK = 128


class KVCache:
    """Keys and values seen so far for one layer (``update_and_fetch`` as in mlx-lm).

    Grows in steps of 256 positions so incremental decoding does not copy the cache each token.
    """

    step = 256

    def __init__(self) -> None:
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0
        self.pad_left: mx.array | None = None
        self.digit_run: mx.array | None = None  # [B] digits in the run that ends the cache
        self.number_count: mx.array | None = None  # [B] digit runs seen so far (in the row's part)
        # [B] the row has passed SEP: digit ends and signs are the prompt's only, restarted
        # ordinals count the output apart
        self.in_output: mx.array | None = None

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        prev = self.offset
        n = keys.shape[2]
        if self.keys is None or prev + n > self.keys.shape[2]:
            B, H, _, D = keys.shape
            grow = ((n + self.step - 1) // self.step) * self.step
            new_k = mx.zeros((B, H, grow, D), keys.dtype)
            new_v = mx.zeros((B, H, grow, values.shape[3]), values.dtype)
            if self.keys is None:
                self.keys, self.values = new_k, new_v
            else:
                self.keys = mx.concatenate([self.keys[..., :prev, :], new_k], axis=2)
                self.values = mx.concatenate([self.values[..., :prev, :], new_v], axis=2)
        self.offset += n
        self.keys[..., prev : self.offset, :] = keys
        self.values[..., prev : self.offset, :] = values
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :]

    @property
    def state(self) -> tuple[mx.array, mx.array] | None:
        if self.keys is None:
            return None
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :]


class Attention(nn.Module):
    def __init__(self, dims: int, heads: int, rope: bool, rope_theta: float, rope_fraction: float = 1.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dims // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dims, 3 * dims, bias=False)
        self.out = nn.Linear(dims, dims, bias=False)
        # Partial rotary (GPT-NeoX's rotary_pct): only the first dims of each head are rotated;
        # the rest compare content alone, so a head can find a digit by its place embeddings
        # wherever it sits and still see which letters are next to each other.
        rope_dims = max(2, int(self.head_dim * rope_fraction) // 2 * 2)
        self.rope = nn.RoPE(rope_dims, traditional=False, base=rope_theta) if rope else None

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | str | None,
        positions: mx.array | int,
        cache: KVCache | None,
    ) -> mx.array:
        B, T, _ = x.shape
        q, k, v = mx.split(self.qkv(x), 3, axis=-1)
        q, k, v = (t.reshape(B, T, self.heads, self.head_dim).transpose(0, 2, 1, 3) for t in (q, k, v))
        if self.rope is not None:
            q = self.rope(q, offset=positions)
            k = self.rope(k, offset=positions)
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        if isinstance(mask, str) and T > ATTENTION_BLOCK:  # "causal" from position 0
            o = blocked_causal_attention(q, k, v, self.scale, ATTENTION_BLOCK)
        else:
            o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.out(o.transpose(0, 2, 1, 3).reshape(B, T, -1))


def blocked_causal_attention(q: mx.array, k: mx.array, v: mx.array, scale: float, block: int) -> mx.array:
    """Causal attention of ``q[B, H, T, D]`` over keys from position 0, ``block`` queries at a time:
    block i attends to keys ``[0, end_i)`` only, so about half the scores of the full T x T matrix
    (all of them masked) are never computed."""
    T = q.shape[2]
    out = []
    for start in range(0, T, block):
        end = min(start + block, T)
        out.append(mx.fast.scaled_dot_product_attention(
            q[:, :, start:end], k[:, :, :end], v[:, :, :end], scale=scale, mask=_causal_mask(end - start, start)
        ))
    return mx.concatenate(out, axis=2)


def relu2(x: mx.array) -> mx.array:
    """Squared ReLU (Primer, So et al. 2021). On the CPU it is ~30x cheaper than GELU's tanh:
    MLX's CPU transcendentals cost ~16 ns an element, and the MLP's activation dominated a step."""
    return mx.square(nn.relu(x))


ACTIVATIONS = {"gelu": nn.gelu_approx, "relu2": relu2}


class MLP(nn.Module):
    def __init__(self, dims: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        self.up = nn.Linear(dims, hidden, bias=False)
        self.down = nn.Linear(hidden, dims, bias=False)
        self.activation = ACTIVATIONS[activation]

    def __call__(self, x: mx.array) -> mx.array:
        return self.down(self.activation(self.up(x)))


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x)); stable without warmup tricks."""

    def __init__(
        self,
        dims: int,
        heads: int,
        mlp_ratio: int,
        dropout: float,
        rope: bool,
        rope_theta: float,
        activation: str,
        rope_fraction: float = 1.0,
    ):
        super().__init__()
        self.attn_norm = nn.RMSNorm(dims)
        self.attn = Attention(dims, heads, rope, rope_theta, rope_fraction)
        self.mlp_norm = nn.RMSNorm(dims)
        self.mlp = MLP(dims, mlp_ratio * dims, activation)
        self.dropout = nn.Dropout(dropout)

    def __call__(self, x, mask, positions, cache=None):
        x = x + self.dropout(self.attn(self.attn_norm(x), mask, positions, cache))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class Transformer(nn.Module):
    def __init__(
        self,
        layers: int,
        hidden_size: int,
        heads: int,
        seq_len: int,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
        position: str = "rope",
        rope_theta: float = 10000.0,
        tie_embeddings: bool = True,
        digit_positions: bool = False,
        number_positions: bool = False,
        activation: str = "gelu",
        vocab_size: int = VOCAB_SIZE,
        digit_ends: bool = False,
        rope_fraction: float = 1.0,
        max_number_ordinal: int = 8,
        output_ordinals: str = "continue",
        signed_numbers: bool = False,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.use_rope = position == "rope"
        self.use_learned = position == "learned"  # "none": no position signal but the causal mask
        self.embed = nn.Embedding(vocab_size, hidden_size)
        if self.use_learned:
            self.pos_embed = nn.Embedding(seq_len, hidden_size)
        self.digit_positions = digit_positions
        if digit_positions:
            self.digit_embed = nn.Embedding(MAX_DIGIT_PLACE + 1, hidden_size)
        self.number_positions = number_positions
        self.max_number_ordinal = max_number_ordinal
        self.restart_ordinals = output_ordinals == "restart"
        self.signed_numbers = signed_numbers
        self.digit_ends = digit_ends
        if digit_ends:
            self.digit_end_embed = nn.Embedding(MAX_DIGIT_PLACE + 1, hidden_size)
        if number_positions:
            self.number_embed = nn.Embedding(max_number_ordinal + 1, hidden_size)
        self.blocks = [
            Block(hidden_size, heads, mlp_ratio, dropout, self.use_rope, rope_theta, activation, rope_fraction)
            for _ in range(layers)
        ]
        self.norm = nn.RMSNorm(hidden_size)
        self.tie_embeddings = tie_embeddings
        if not tie_embeddings:
            self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False)

    @classmethod
    def from_config(cls, cfg: Any) -> Transformer:
        """From a ``[model]`` table (``exe_coder.model.config.ModelConfig``)."""
        return cls(
            layers=cfg.layers,
            hidden_size=cfg.hidden_size,
            heads=cfg.heads,
            seq_len=cfg.seq_len,
            dropout=cfg.dropout,
            mlp_ratio=cfg.mlp_ratio,
            position=cfg.position,
            rope_theta=cfg.rope_theta,
            tie_embeddings=cfg.tie_embeddings,
            digit_positions=cfg.digit_positions,
            number_positions=cfg.number_positions,
            activation=cfg.activation,
            digit_ends=cfg.digit_ends,
            rope_fraction=cfg.rope_fraction,
            max_number_ordinal=cfg.max_number_ordinal,
            output_ordinals=cfg.output_ordinals,
            signed_numbers=cfg.signed_numbers,
        )

    def make_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.blocks]

    def __call__(
        self,
        tokens: mx.array,
        cache: list[KVCache] | None = None,
        pad_left: mx.array | None = None,
        place_shift: mx.array | None = None,
        ordinal_shift: mx.array | None = None,
    ) -> mx.array:
        B, T = tokens.shape
        offset = cache[0].offset if cache is not None else 0
        if cache is not None:
            if pad_left is None:
                pad_left = cache[0].pad_left
            elif cache[0].pad_left is None:
                for c in cache:
                    c.pad_left = pad_left

        if pad_left is None:
            # Every row starts at position 0: a plain causal mask (fast path used in training).
            positions: mx.array | int = offset
            mask: mx.array | str | None = "causal" if T > 1 and offset == 0 else None
            if T > 1 and offset > 0:
                mask = _causal_mask(T, offset)
        else:
            pad_left = pad_left.astype(mx.int32)
            positions = offset - pad_left  # RoPE offset per row: first real token at 0
            q_idx = offset + mx.arange(T)[:, None]
            k_idx = mx.arange(offset + T)[None, :]
            keep = (k_idx <= q_idx)[None] & (k_idx[None] >= pad_left[:, None, None])  # [B, T, S]
            # A pad query sees no real key; let it see itself so softmax stays finite.
            keep = keep | (k_idx == q_idx)[None]
            mask = keep[:, None]

        x = self.embed(tokens)
        if self.use_learned:
            pos = offset + mx.arange(T)[None, :]
            if pad_left is not None:
                pos = mx.maximum(pos - pad_left[:, None], 0)
            x = x + self.pos_embed(pos)
        c = cache[0] if cache is not None else None
        # each row's part at the chunk's start (prompt or output), and each token's
        in_output = c.in_output if c is not None and c.in_output is not None else mx.zeros((B,), mx.bool_)
        output = from_sep(tokens) | in_output[:, None]
        if c is not None:
            c.in_output = output[:, -1]
        if self.digit_positions or self.number_positions:
            places = digit_places(tokens, c.digit_run if c is not None else None)
            after_sep = output if self.restart_ordinals else None
            counts = number_counts(places, c.number_count if c is not None else None, after_sep, in_output)
            if c is not None:
                c.digit_run = places[:, -1]
                c.number_count = counts[:, -1]
            if self.digit_positions:
                x = x + self.digit_embed(mx.minimum(shifted(places, place_shift), MAX_DIGIT_PLACE))
            if self.number_positions:
                ordinals = mx.where(places > 0, counts, 0)
                if self.signed_numbers:
                    signs = prompt_signs(tokens, places) & ~output
                    ordinals = mx.where(signs, _next(counts), ordinals)
                x = x + self.number_embed(mx.minimum(shifted(ordinals, ordinal_shift), self.max_number_ordinal))
        if self.digit_ends:
            ends = mx.where(output, 0, prompt_digit_ends(tokens))
            x = x + self.digit_end_embed(mx.minimum(shifted(ends, place_shift), MAX_DIGIT_PLACE))
        for i, block in enumerate(self.blocks):
            x = block(x, mask, positions, cache[i] if cache is not None else None)
        x = self.norm(x)
        if self.tie_embeddings:
            return self.embed.as_linear(x)
        return self.lm_head(x)


def digit_places(tokens: mx.array, carry: mx.array | None = None) -> mx.array:
    """Each token's place in its run of ASCII digits: 0 for a non-digit, 1, 2, ... for digits.

    ``carry[B]`` is the place of the token just before ``tokens`` (incremental decoding).
    """
    B, T = tokens.shape
    is_digit = (tokens >= 48) & (tokens <= 57)
    t = mx.broadcast_to(mx.arange(T)[None], (B, T))
    last_break = mx.cummax(mx.where(is_digit, -1, t), axis=1)  # latest non-digit at or before t
    start = mx.zeros((B,), mx.int32) if carry is None else carry.astype(mx.int32)
    places = mx.where(last_break < 0, start[:, None] + t + 1, t - last_break)
    return mx.where(is_digit, places, 0).astype(mx.int32)


def shifted(places: mx.array, shift: mx.array | None) -> mx.array:
    """Digit places (or ends, or number ordinals) of row i counted from 1 + shift[i]; non-digits
    stay 0 (training's ``digit_place_shift`` and ``number_ordinal_shift``)."""
    if shift is None:
        return places
    return mx.where(places > 0, places + shift.astype(places.dtype)[:, None], 0)


def prompt_digit_ends(tokens: mx.array) -> mx.array:
    """Each prompt digit's place counted from the end of its number (1 = last digit); 0 for
    non-digits and for every token from the first SEP on (the model's own output)."""
    ends = digit_places(tokens[:, ::-1])[:, ::-1]
    return mx.where(from_sep(tokens), 0, ends)


def number_ordinals(
    places: mx.array, carry: mx.array | None = None, after_sep: mx.array | None = None, carry_in_output: mx.array | bool = False
) -> mx.array:
    """Each digit's number's ordinal (1 = first run of digits in the sequence); 0 for non-digits.

    ``places`` comes from ``digit_places``; ``carry[B]`` counts runs before these tokens. With
    ``after_sep[B, T]`` (``from_sep``: True from the first SEP on) the output's runs are counted
    from 1 again; ``carry`` then counts the output's runs where ``carry_in_output`` (a chunk
    before these tokens held SEP), else the prompt's.
    """
    return mx.where(places > 0, number_counts(places, carry, after_sep, carry_in_output), 0)


def _next(a: mx.array) -> mx.array:
    """Each column's right neighbour (0 past the end)."""
    return mx.concatenate([a[:, 1:], mx.zeros_like(a[:, :1])], axis=1)


def prompt_signs(tokens: mx.array, places: mx.array) -> mx.array:
    """True for each prompt token that is a minus sign right before a number: '-' or the last
    byte of U+2212 (E2 88 92) followed by a first digit."""
    prev = mx.concatenate([mx.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)
    prev2 = mx.concatenate([mx.zeros_like(tokens[:, :2]), tokens[:, :-2]], axis=1)[:, : tokens.shape[1]]
    minus = (tokens == ord("-")) | ((tokens == 0x92) & (prev == 0x88) & (prev2 == 0xE2))
    return minus & (_next(places) == 1) & ~from_sep(tokens)


def from_sep(tokens: mx.array) -> mx.array:
    """True from the first SEP on (SEP and the model's output), False for the prompt."""
    return mx.cumsum((tokens == SEP).astype(mx.int32), axis=1) > 0


def number_counts(
    places: mx.array, carry: mx.array | None = None, after_sep: mx.array | None = None, carry_in_output: mx.array | bool = False
) -> mx.array:
    """Runs of digits counted so far at each token (``number_ordinals`` before masking); the
    last column is the carry for the next chunk."""
    starts = (places == 1).astype(mx.int32)
    carry = mx.zeros((places.shape[0],), mx.int32) if carry is None else carry.astype(mx.int32)
    if after_sep is None:
        return mx.cumsum(starts, axis=1) + carry[:, None]
    out = after_sep.astype(mx.int32)
    into_output = mx.array(carry_in_output).astype(mx.int32)
    prompt = mx.cumsum(starts * (1 - out), axis=1) + (carry * (1 - into_output))[..., None]
    output = mx.cumsum(starts * out, axis=1) + (carry * into_output)[..., None]
    return mx.where(out > 0, output, prompt)


def _causal_mask(T: int, offset: int) -> mx.array:
    q_idx = offset + mx.arange(T)[:, None]
    k_idx = mx.arange(offset + T)[None, :]
    return k_idx <= q_idx


def count_parameters(model: nn.Module) -> int:
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(model.parameters()))
