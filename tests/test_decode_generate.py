"""Batched, cached, grammar-constrained generation in MLX."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.decode.generate import Sampling, generate, left_pad
from exe_coder.decode.grammar import compile_grammar
from exe_coder.model.tokenizer import EOS, PAD, VOCAB_SIZE
from exe_coder.model.transformer import Transformer

PROMPTS = ["What is 17 plus -4?", "Add 3 and 5.", "x", "Compute the sum of -250 and 999, please."]


class RandomTableLM(nn.Module):
    """A real (if tiny) causal LM: logits = table[last token] + position_table[position].

    Its logits are arbitrary random numbers, so decoding it under the mask exercises the mask
    against every kind of preference, including strong ones for EOS or bytes outside the grammar.
    """

    def __init__(self, seed: int, scale: float, positions: int = 64):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.table = mx.array(rng.normal(0, scale, (VOCAB_SIZE, VOCAB_SIZE)).astype(np.float32))
        self.position_table = mx.array(rng.normal(0, scale, (positions, VOCAB_SIZE)).astype(np.float32))

    def make_cache(self) -> list[dict]:
        return [{"offset": 0}]

    def __call__(self, tokens, cache=None, pad_left=None):
        B, T = tokens.shape
        offset = cache[0]["offset"] if cache is not None else 0
        if cache is not None:
            cache[0]["offset"] += T
        pos = offset + mx.arange(T)[None, :] - (pad_left[:, None] if pad_left is not None else 0)
        return self.table[tokens] + self.position_table[mx.maximum(pos, 0)]


@pytest.fixture(scope="module")
def transformer() -> Transformer:
    mx.random.seed(1234)
    model = Transformer(layers=2, hidden_size=64, heads=4, seq_len=128)
    model.eval()
    return model


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    scale=st.sampled_from([0.1, 3.0, 100.0]),
    lo=st.integers(-(10**6), 10**6),
    width=st.integers(0, 10**6),
    temperature=st.sampled_from([0.0, 0.7, 1.5]),
    top_k=st.sampled_from([0, 1, 3]),
)
def test_random_logits_always_decode_to_in_bounds_sentences(seed, scale, lo, width, temperature, top_k):
    g = compile_grammar(lo, lo + width)
    model = RandomTableLM(seed, scale)
    out = generate(model, PROMPTS, g, sampling=Sampling(temperature, top_k, seed))
    assert all(out.finished)
    for text, tokens, logprobs in zip(out.texts, out.tokens, out.logprobs):
        parsed = g.parse(text)
        assert parsed is not None, text
        assert all(lo <= v <= lo + width for v in parsed)
        assert tokens[-1] == EOS and len(tokens) == len(text) + 1
        assert all(np.isfinite(lp) and lp <= 1e-6 for lp in logprobs)


def test_unconstrained_mode_is_not_masked():
    """A table that loves 'Z' writes Zs without the grammar and never with it."""
    model = RandomTableLM(0, 0.1)
    model.table = model.table + mx.array(np.eye(VOCAB_SIZE, dtype=np.float32)[ord("Z")] * 50)
    free = generate(model, ["hi"], None, max_tokens=8)
    assert free.texts == ["Z" * 8] and free.finished == [False]
    constrained = generate(model, ["hi"], compile_grammar(-9, 9))
    assert "Z" not in constrained.texts[0] and constrained.finished == [True]


def test_batched_equals_one_by_one(transformer):
    g = compile_grammar(-1000, 1000)
    batched = generate(transformer, PROMPTS, g)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(transformer, [prompt], g)
        assert alone.texts[0] == batched.texts[i]
        assert alone.tokens[0] == batched.tokens[i]
        np.testing.assert_allclose(alone.logprobs[0], batched.logprobs[i], atol=1e-4)


def test_cached_equals_uncached(transformer):
    g = compile_grammar(-1000, 1000)
    for grammar in (g, None):
        cached = generate(transformer, PROMPTS, grammar, max_tokens=12)
        uncached = generate(transformer, PROMPTS, grammar, max_tokens=12, use_cache=False)
        assert cached.tokens == uncached.tokens
        np.testing.assert_allclose(
            np.concatenate(cached.logprobs), np.concatenate(uncached.logprobs), atol=1e-4
        )


def test_logprobs_are_the_masked_distribution(transformer):
    """Each logprob equals log-softmax over the allowed tokens, recomputed from a full forward pass;
    a forced token (only '=' may follow 'A') has probability exactly 1."""
    g = compile_grammar(-1000, 1000)
    out = generate(transformer, PROMPTS[:2], g)
    tokens, pad_left = left_pad(PROMPTS[:2])
    width = max(len(t) for t in out.tokens)
    gen = mx.array([t + [EOS] * (width - len(t)) for t in out.tokens], dtype=mx.int32)
    logits = np.array(transformer(mx.concatenate([tokens, gen], axis=1), pad_left=pad_left))
    P = tokens.shape[1]
    for row, (toks, lps, states) in enumerate(zip(out.tokens, out.logprobs, out.states)):
        assert states[0] == g.start_state and states[1] == g.walk([ord("A")])
        assert lps[1] == 0.0  # '=' is forced after 'A'
        for t, (tok, lp, state) in enumerate(zip(toks, lps, states)):
            step = logits[row, P - 1 + t].astype(np.float64)
            step[~g.allowed[state]] = -np.inf
            expected = step[tok] - np.log(np.exp(step - step.max()).sum()) - step.max()
            assert lp == pytest.approx(expected, abs=1e-4)


def test_seeded_sampling_is_deterministic(transformer):
    g = compile_grammar(-1000, 1000)
    s = Sampling(temperature=1.0, top_k=20, seed=7)
    a = generate(transformer, PROMPTS * 4, g, sampling=s)
    b = generate(transformer, PROMPTS * 4, g, sampling=s)
    assert a.tokens == b.tokens and a.logprobs == b.logprobs
    greedy = generate(transformer, PROMPTS * 4, g)
    assert a.texts != greedy.texts  # sampling at temperature 1 over 16 rows departs from argmax


def test_top_k_one_is_greedy(transformer):
    g = compile_grammar(-1000, 1000)
    assert generate(transformer, PROMPTS, g, sampling=Sampling(2.0, 1, 3)).texts == generate(transformer, PROMPTS, g).texts


def test_left_pad():
    tokens, pad_left = left_pad(["ab", "abcd"])
    assert pad_left.tolist() == [2, 0]
    assert tokens.tolist()[0][:2] == [PAD, PAD] and PAD not in tokens.tolist()[1]


def test_bad_sampling_settings():
    with pytest.raises(ValueError):
        Sampling(temperature=-1)
    with pytest.raises(ValueError):
        Sampling(top_k=-2)
    assert generate(RandomTableLM(0, 1.0), [], None).texts == []


def test_a_prompt_too_long_for_the_model_is_refused(transformer):
    from exe_coder.decode.generate import PromptTooLong

    g = compile_grammar(-1000, 1000)
    fits = "x" * (transformer.seq_len - 2 - g.max_tokens)  # BOS + prompt + SEP + output == seq_len
    assert generate(transformer, [fits], g).finished == [True]
    with pytest.raises(PromptTooLong) as err:
        generate(transformer, ["short", fits + "y"], g)
    assert err.value.row == 1 and f"seq_len {transformer.seq_len}" in str(err.value)
