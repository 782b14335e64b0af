"""The byte tokenizer: ids are stable, encoding round-trips, the loss mask covers the target only."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.dataset.records import patch_text
from exe_coder.model.tokenizer import BOS, EOS, PAD, SEP, VOCAB_SIZE, Tokenizer

tok = Tokenizer()


def test_special_ids_are_the_contract():
    assert (PAD, BOS, SEP, EOS, VOCAB_SIZE) == (256, 257, 258, 259, 260)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_prompt_round_trip(text: str):
    ids = tok.encode_prompt(text)
    assert ids[0] == BOS and ids[-1] == SEP
    assert all(0 <= i < 256 for i in ids[1:-1])
    assert tok.decode_text(ids) == text


@settings(max_examples=200, deadline=None)
@given(a=st.integers(-(2**31), 2**31 - 1), b=st.integers(-(2**31), 2**31 - 1))
def test_target_round_trip(a: int, b: int):
    ids = tok.encode_target(patch_text(a, b))
    assert ids[-1] == EOS
    assert tok.decode_text(ids) == patch_text(a, b)
    # decoding stops at the first EOS: anything after it is not part of the output
    assert tok.decode_text(ids + [ord("9"), EOS]) == patch_text(a, b)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=64))
def test_bytes_round_trip(data: bytes):
    assert tok.decode_bytes(tok.encode_target(data)) == data


@settings(max_examples=100, deadline=None)
@given(prompt=st.text(max_size=40), a=st.integers(-5000, 5000), b=st.integers(-5000, 5000))
def test_loss_mask_covers_exactly_the_target(prompt: str, a: int, b: int):
    ids, mask = tok.encode_example(prompt, patch_text(a, b))
    n_prompt = len(prompt.encode()) + 2
    assert len(ids) == len(mask)
    assert mask == [False] * n_prompt + [True] * (len(patch_text(a, b)) + 1)
    assert [i for i, m in zip(ids, mask) if m] == tok.encode_target(patch_text(a, b))
