"""Length-bucketed batches: deterministic per (seed, step), an epoch covers every kept row once,
less padding than plain shuffled batches, and rank shards partition the global batch."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.model.tokenizer import PAD
from exe_coder.train.data import Batcher, TokenizedSplit, padding_share, shard


def _split(lengths: list[int]) -> TokenizedSplit:
    T = max(lengths)
    tokens = np.full((len(lengths), T), PAD, dtype=np.int32)
    target = np.zeros((len(lengths), T), dtype=bool)
    for i, n in enumerate(lengths):
        tokens[i, :n] = 1 + i % 200
        target[i, n // 2 : n] = True
    lengths_arr = np.array(lengths, dtype=np.int32)
    return TokenizedSplit(tokens, target, ~target & (tokens != PAD), lengths_arr, np.zeros(len(lengths), dtype=bool))


def _rows(batch) -> list[tuple]:
    return sorted(tuple(r) for r in batch.inputs.tolist())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(3, 90), min_size=8, max_size=120), st.integers(1, 8), st.integers(1, 8), st.integers(0, 9))
def test_an_epoch_covers_each_row_once_and_is_a_function_of_seed_and_step(lengths, batch_size, window, seed):
    split = _split(lengths)
    b = Batcher(split, batch_size, seed, window_batches=window)
    order = b._order(0)
    assert len(order) == b.steps_per_epoch * b.batch_size == len(set(order.tolist()))
    again = Batcher(split, batch_size, seed, window_batches=window)
    for step in (0, b.steps_per_epoch - 1, b.steps_per_epoch + 1):
        assert _rows(again.batch_at(step)) == _rows(b.batch_at(step))


def test_bucketing_cuts_padding_against_plain_shuffled_batches():
    lengths = np.random.default_rng(0).integers(20, 90, size=2048).tolist()
    split = _split(lengths)
    plain, bucketed = Batcher(split, 32, 1, window_batches=1), Batcher(split, 32, 1)
    before = padding_share(plain.batch_at(s) for s in range(plain.steps_per_epoch))
    after = padding_share(bucketed.batch_at(s) for s in range(bucketed.steps_per_epoch))
    assert after < before / 2, (before, after)


@given(st.integers(1, 8))
def test_rank_shards_partition_the_global_batch(size):
    batch = Batcher(_split(list(range(10, 42))), 16, 3).batch_at(5)
    parts = [shard(batch, r, size) for r in range(size)]
    assert sum(len(p.inputs) for p in parts) == len(batch.inputs)
    assert sorted(t for p in parts for t in map(tuple, p.inputs.tolist())) == _rows(batch)
    assert sum(p.target_mask.sum() for p in parts) == batch.target_mask.sum()
