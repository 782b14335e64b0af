"""Digit-permutation augmentation: renamed digits keep an example true, and only where its
target's numbers are copies of digits in the prompt."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.dataset.records import patch_text
from exe_coder.model.tokenizer import Tokenizer
from exe_coder.train.data import Batch, Batcher, TokenizedSplit, digit_copies, make_batch, permute_digits, tokenize
from _train_fixtures import make_examples


def _texts(batch: Batch, row: int) -> tuple[str, str]:
    """(prompt, target) of one batch row, read back from its tokens."""
    tok = Tokenizer()
    ids = [int(t) for t in np.concatenate([batch.inputs[row, :1], batch.targets[row]])]
    sep = ids.index(tok.sep_id)
    prompt = bytes(i for i in ids[1:sep]).decode()
    target = bytes(ids[sep + 1 : ids.index(tok.eos_id)]).decode()
    return prompt, target


def test_digit_copies_knows_digits_from_words():
    assert digit_copies("What is 17 plus -4?", patch_text(17, -4))
    assert not digit_copies("What is seventeen plus -4?", patch_text(17, -4))
    assert not digit_copies("What is 170 plus -4?", patch_text(17, -4))  # a run, not a substring


@settings(max_examples=40, deadline=None)
@given(a=st.integers(-9999, 9999), b=st.integers(-9999, 9999), seed=st.integers(0, 2**32 - 1))
def test_a_permuted_example_still_copies_its_numbers(a, b, seed):
    """Whatever the permutation: the target's numbers are the prompt's numbers (in order), no
    number gains a leading zero, signs and digit counts stay, and the mask is untouched."""
    ex = make_examples(1, "train", 0)[0].model_copy(
        update={"prompt": f"What is {a} plus {b} on arm64?", "a": a, "b": b, "target": patch_text(a, b)}
    )
    split = tokenize([ex], Tokenizer(), 64, target=lambda e: e.target)
    batch = make_batch(split, np.array([0]))
    out = permute_digits(batch, np.array([True]), 1.0, np.random.default_rng(seed))
    prompt, target = _texts(out, 0)
    na, nb = (int(x) for x in re.findall(r"-?[0-9]+", prompt)[:2])
    assert target == patch_text(na, nb)
    assert (len(str(abs(na))), len(str(abs(nb)))) == (len(str(abs(a))), len(str(abs(b))))
    assert (na < 0, nb < 0) == (a < 0, b < 0)
    assert np.array_equal(out.target_mask, batch.target_mask)
    assert "arm" in prompt


@settings(max_examples=60, deadline=None)
@given(a=st.integers(-9999, 9999), b=st.integers(-9999, 9999), seed=st.integers(0, 2**32 - 1))
def test_renaming_zero_too_still_copies_its_numbers_and_writes_no_leading_zero(a, b, seed):
    """With ``zero`` the example stays true as above, and no number (the prompt's "arm64" too)
    comes out with a leading zero or as "-0"."""
    ex = make_examples(1, "train", 0)[0].model_copy(
        update={"prompt": f"What is {a} plus {b} on arm64?", "a": a, "b": b, "target": patch_text(a, b)}
    )
    split = tokenize([ex], Tokenizer(), 64, target=lambda e: e.target)
    batch = make_batch(split, np.array([0]))
    out = permute_digits(batch, np.array([True]), 1.0, np.random.default_rng(seed), zero=True)
    prompt, target = _texts(out, 0)
    na, nb = (int(x) for x in re.findall(r"-?[0-9]+", prompt)[:2])
    assert target == patch_text(na, nb)
    assert (len(str(abs(na))), len(str(abs(nb)))) == (len(str(abs(a))), len(str(abs(b))))
    assert (na < 0, nb < 0) == (a < 0, b < 0)
    assert not re.search(r"(?<![0-9])0[0-9]|-0", prompt + target)


def test_renaming_zero_too_makes_lone_zeros_and_renames_zeros():
    """Over many draws a lone digit becomes 0 and a 0 inside a number becomes another digit;
    without ``zero`` neither ever happens."""
    ex = make_examples(1, "train", 0)[0].model_copy(
        update={"prompt": "What is 7 plus 105?", "a": 7, "b": 105, "target": patch_text(7, 105)}
    )
    batch = make_batch(tokenize([ex], Tokenizer(), 64, target=lambda e: e.target), np.array([0]))
    seen = {z: [_texts(permute_digits(batch, np.array([True]), 1.0, np.random.default_rng(s), zero=z), 0)[1]
                for s in range(200)] for z in (True, False)}
    middle = {z: [re.search(r"B=([0-9]+)", t).group(1)[1] for t in seen[z]] for z in seen}  # 105's 0, renamed
    assert any(t.startswith("A=0;") for t in seen[True]) and any(m != "0" for m in middle[True])
    assert not any(t.startswith("A=0;") for t in seen[False]) and set(middle[False]) == {"0"}


def test_rows_that_do_not_copy_digits_are_never_permuted():
    exs = make_examples(8, "train", 3)
    words = [e.model_copy(update={"prompt": e.prompt.replace(str(abs(e.a)), "many")}) for e in exs]
    split = tokenize(words, Tokenizer(), 64, target=lambda e: e.target)
    assert not split.digit_copies.any()
    batch = make_batch(split, np.arange(8))
    out = permute_digits(batch, split.digit_copies, 1.0, np.random.default_rng(0))
    assert np.array_equal(out.inputs, batch.inputs) and np.array_equal(out.targets, batch.targets)


def test_the_batch_at_a_step_is_a_function_of_seed_and_step():
    split: TokenizedSplit = tokenize(make_examples(64, "train", 5), Tokenizer(), 64, target=lambda e: e.target)
    one = Batcher(split, 8, seed=3, digit_permutation=0.5)
    two = Batcher(split, 8, seed=3, digit_permutation=0.5)
    plain = Batcher(split, 8, seed=3)
    for step in (0, 5, 17):
        assert np.array_equal(one.batch_at(step).inputs, two.batch_at(step).inputs)
    changed = sum(not np.array_equal(one.batch_at(s).inputs, plain.batch_at(s).inputs) for s in range(8))
    assert changed >= 6  # about half the rows of every batch are renamed
