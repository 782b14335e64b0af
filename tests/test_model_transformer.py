"""The transformer's contract with decoding: left padding and the KV cache change nothing."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.model.tokenizer import PAD, VOCAB_SIZE
from exe_coder.model.transformer import Transformer

TOL = 1e-4


def _model(position: str) -> Transformer:
    mx.random.seed(0)
    model = Transformer(layers=2, hidden_size=64, heads=4, seq_len=64, position=position)
    mx.eval(model.parameters())
    model.eval()
    return model


MODELS = {p: _model(p) for p in ("rope", "learned")}
rows = st.lists(st.integers(0, VOCAB_SIZE - 1), min_size=1, max_size=12)


def test_output_shape():
    out = MODELS["rope"](mx.array([[1, 2, 3]]))
    assert out.shape == (1, 3, VOCAB_SIZE)


@pytest.mark.parametrize("position", ["rope", "learned"])
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(rows, min_size=1, max_size=4))
def test_left_padded_batch_equals_single_rows(position: str, batch: list[list[int]]):
    model = MODELS[position]
    width = max(len(r) for r in batch)
    padded = mx.array([[PAD] * (width - len(r)) + r for r in batch])
    pad_left = mx.array([width - len(r) for r in batch], dtype=mx.int32)
    out = model(padded, pad_left=pad_left)
    for i, r in enumerate(batch):
        alone = model(mx.array([r]))[0]
        got = out[i, width - len(r) :]
        assert np.abs(np.array(got - alone)).max() < TOL


@pytest.mark.parametrize("position", ["rope", "learned"])
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(rows, min_size=1, max_size=3), split=st.integers(1, 6))
def test_cached_incremental_decoding_equals_full_forward(position: str, batch: list[list[int]], split: int):
    model = MODELS[position]
    width = max(len(r) for r in batch)
    padded = mx.array([[PAD] * (width - len(r)) + r for r in batch])
    pad_left = mx.array([width - len(r) for r in batch], dtype=mx.int32)
    full = model(padded, pad_left=pad_left)
    first = min(split, width)
    cache = model.make_cache()
    pieces = [model(padded[:, :first], cache=cache, pad_left=pad_left)]
    for t in range(first, width):
        pieces.append(model(padded[:, t : t + 1], cache=cache, pad_left=pad_left))
    inc = mx.concatenate(pieces, axis=1)
    for i, r in enumerate(batch):
        real = slice(width - len(r), width)  # pad positions' outputs are unused
        assert np.abs(np.array(inc[i, real] - full[i, real])).max() < TOL
    assert cache[0].offset == width


def test_cache_without_padding_equals_full_forward():
    model = MODELS["rope"]
    tokens = mx.array([[257, 65, 66, 67, 258, 49, 50]])
    full = model(tokens)
    cache = model.make_cache()
    inc = mx.concatenate([model(tokens[:, :3], cache=cache)] + [model(tokens[:, t : t + 1], cache=cache) for t in range(3, 7)], axis=1)
    assert np.abs(np.array(inc - full)).max() < TOL


def test_cache_grows_past_its_step():
    model = MODELS["rope"]
    cache = model.make_cache()
    cache[0].step = 4  # force several reallocations on a short sequence
    for c in cache:
        c.step = 4
    tokens = mx.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]])
    inc = mx.concatenate([model(tokens[:, t : t + 1], cache=cache) for t in range(10)], axis=1)
    assert np.abs(np.array(inc - model(tokens))).max() < TOL


def test_causality():
    """Changing a later token never changes an earlier position's logits."""
    model = MODELS["rope"]
    a = model(mx.array([[1, 2, 3, 4]]))
    b = model(mx.array([[1, 2, 3, 99]]))
    assert np.abs(np.array(a[0, :3] - b[0, :3])).max() < TOL
    assert np.abs(np.array(a[0, 3] - b[0, 3])).max() > TOL
