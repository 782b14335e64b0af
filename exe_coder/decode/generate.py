"""Batched generation with a key-value cache in MLX, optionally under a track's ``TokenMasks``.

Prompts are encoded ``BOS prompt SEP`` and left-padded with PAD; ``pad_left[B]`` tells the model
how many pads each row has, so a padded row computes what it would alone. Each step is

    logits += mask_bias[state]          # 0 where the grammar allows the token, -inf elsewhere
    token   = argmax(logits)            # or: sample(logits / temperature, top-k), seeded
    state   = next_state[state, token]

all on device, one gather and one add for the mask. Generation stops when every row has written
EOS or after ``max_tokens`` (by default the grammar's longest sentence plus EOS, so a constrained
row always finishes). Without a grammar the same loop decodes unconstrained (for comparisons).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import mlx.core as mx

from exe_coder.decode.grammar import TokenMasks
from exe_coder.model.tokenizer import EOS, PAD, Tokenizer

UNCONSTRAINED_MAX_TOKENS = 32  # a Track A patch is at most ~25 characters at int32 bounds


class CausalLM(Protocol):
    """What generation needs of a model (``exe_coder.model.transformer.Transformer`` is one)."""

    def __call__(self, tokens: mx.array, cache: Any = None, pad_left: mx.array | None = None) -> mx.array: ...

    def make_cache(self) -> Any: ...


@dataclass(frozen=True)
class Sampling:
    """Greedy when ``temperature == 0``; else softmax(logits / temperature) over the ``top_k`` best (0: all)."""

    temperature: float = 0.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


GREEDY = Sampling()


@dataclass(frozen=True)
class Generation:
    """One batch's outputs, row for row with the prompts."""

    tokens: list[list[int]]  # generated ids up to and including the first EOS
    texts: list[str]  # the byte tokens before EOS, as text
    logprobs: list[list[float]]  # per generated token: log p under the (masked) model, temperature 1
    states: list[list[int]]  # per generated token: the grammar state it was chosen in (RL re-masks with it)
    finished: list[bool]  # the row wrote EOS within max_tokens


class PromptTooLong(ValueError):
    """A prompt plus the longest output would exceed the model's ``seq_len``."""

    def __init__(self, row: int, prompt_tokens: int, max_tokens: int, seq_len: int):
        self.row = row
        super().__init__(
            f"prompt is {prompt_tokens} tokens; with up to {max_tokens} output tokens it exceeds the model's seq_len {seq_len}"
        )


def output_budget(grammar: TokenMasks | None, max_tokens: int | None) -> int:
    """The most tokens ``generate`` writes a row: ``max_tokens``, else the grammar's longest sentence."""
    if max_tokens is not None:
        return max_tokens
    return grammar.max_tokens if grammar is not None else UNCONSTRAINED_MAX_TOKENS


def fits(model: CausalLM, prompt: str, grammar: TokenMasks | None, max_tokens: int | None = None) -> bool:
    """Whether ``prompt`` and its longest output fit the model's ``seq_len`` (what ``generate``
    refuses with ``PromptTooLong`` otherwise)."""
    seq_len = getattr(model, "seq_len", None)
    return seq_len is None or len(Tokenizer().encode_prompt(prompt)) + output_budget(grammar, max_tokens) <= seq_len


def left_pad(prompts: list[str], tokenizer: Tokenizer = Tokenizer()) -> tuple[mx.array, mx.array]:
    """``tokens[B, T]`` (PAD on the left) and ``pad_left[B]``."""
    encoded = [tokenizer.encode_prompt(p) for p in prompts]
    width = max(len(e) for e in encoded)
    rows = [[PAD] * (width - len(e)) + e for e in encoded]
    return mx.array(rows, dtype=mx.int32), mx.array([width - len(e) for e in encoded], dtype=mx.int32)


@functools.lru_cache(maxsize=None)
def _step_fn(constrained: bool, temperature: float, top_k: int, vocab: int):
    """One compiled step for the whole batch: ``(token, logprob, next state, done, all done)``.

    Compiled once per (constrained, sampling) so the mask's gather and add fuse with the rest.
    """

    def step(logits, state, done, key, bias, next_flat):
        logits = logits.astype(mx.float32)
        if constrained:
            logits = logits + bias[state]
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if temperature == 0:
            token = mx.argmax(logits, axis=-1)
        else:
            scaled = logits / temperature
            if 0 < top_k < scaled.shape[-1]:
                kth = mx.topk(scaled, top_k, axis=-1).min(axis=-1, keepdims=True)
                scaled = mx.where(scaled >= kth, scaled, -mx.inf)
            token = mx.random.categorical(scaled, axis=-1, key=key)
        token = mx.where(done, EOS, token).astype(mx.int32)  # a finished row only repeats EOS
        logprob = mx.take_along_axis(logprobs, token[:, None], axis=-1)[:, 0]
        if constrained:
            state = next_flat[state * vocab + token]
        done = done | (token == EOS)
        return token, logprob, state, done, done.all()

    return mx.compile(step)


def generate(
    model: CausalLM,
    prompts: list[str],
    grammar: TokenMasks | None,
    *,
    sampling: Sampling = GREEDY,
    max_tokens: int | None = None,
    use_cache: bool = True,
) -> Generation:
    """Decode one batch. ``grammar=None`` decodes unconstrained; ``use_cache=False`` re-reads the
    whole sequence every step (slow; it exists to check the cache)."""
    if not prompts:
        return Generation([], [], [], [], [])
    max_tokens = output_budget(grammar, max_tokens)
    tokens, pad_left = left_pad(prompts)
    B, width = tokens.shape
    seq_len = getattr(model, "seq_len", None)  # the longest sequence (prompt + target) it was built for
    if seq_len is not None and width + max_tokens > seq_len:
        raise PromptTooLong(pad_left.tolist().index(0), width, max_tokens, seq_len)  # the longest prompt
    if grammar is not None:
        bias, next_flat, start = grammar.mask_bias_mx, grammar.next_state_mx.reshape(-1), grammar.start_state
    else:
        bias, next_flat, start = mx.zeros((1,)), mx.zeros((1,), dtype=mx.int32), 0
    vocab = grammar.allowed.shape[1] if grammar is not None else 0  # row stride of next_state
    step_fn = _step_fn(grammar is not None, float(sampling.temperature), int(sampling.top_k), vocab)
    state = mx.full((B,), start, dtype=mx.int32)
    done = mx.zeros((B,), dtype=mx.bool_)
    key = mx.random.key(sampling.seed)

    cache = model.make_cache() if use_cache else None
    logits = model(tokens, cache=cache, pad_left=pad_left)[:, -1, :]
    out_tokens, out_logprobs, out_states = [], [], []
    for step in range(max_tokens):
        sub = key
        if sampling.temperature > 0:
            key, sub = mx.random.split(key)
        out_states.append(state)
        token, logprob, state, done, all_done = step_fn(logits, state, done, sub, bias, next_flat)
        out_tokens.append(token)
        out_logprobs.append(logprob)
        mx.eval(token, logprob, state, done, all_done)
        if step + 1 == max_tokens or all_done.item():
            break
        if use_cache:
            logits = model(token[:, None], cache=cache, pad_left=pad_left)[:, -1, :]
        else:
            tokens = mx.concatenate([tokens, token[:, None]], axis=1)
            logits = model(tokens, pad_left=pad_left)[:, -1, :]
    return _collect(out_tokens, out_logprobs, out_states)


def _collect(out_tokens: list[mx.array], out_logprobs: list[mx.array], out_states: list[mx.array]) -> Generation:
    tok = mx.stack(out_tokens, axis=1).tolist()
    lps = mx.stack(out_logprobs, axis=1).tolist()
    sts = mx.stack(out_states, axis=1).tolist()
    tokenizer = Tokenizer()
    tokens, logprobs, states, texts, finished = [], [], [], [], []
    for row_tok, row_lp, row_st in zip(tok, lps, sts):
        n = row_tok.index(EOS) + 1 if EOS in row_tok else len(row_tok)
        tokens.append(row_tok[:n])
        logprobs.append(row_lp[:n])
        states.append(row_st[:n])
        texts.append(tokenizer.decode_text(row_tok[:n]))
        finished.append(EOS in row_tok)
    return Generation(tokens=tokens, texts=texts, logprobs=logprobs, states=states, finished=finished)
