"""The transformer's contract with decoding: left padding and the KV cache change nothing."""

from __future__ import annotations

import copy

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.model.tokenizer import PAD, SEP, VOCAB_SIZE
from exe_coder.model import transformer
from exe_coder.model.transformer import Transformer, blocked_causal_attention, digit_places, number_ordinals, shifted

TOL = 1e-4


def _model(position: str, digits: bool = False, rope_fraction: float = 1.0, **ordinals) -> Transformer:
    mx.random.seed(0)
    model = Transformer(
        layers=2, hidden_size=64, heads=4, seq_len=64, position=position, digit_positions=digits,
        number_positions=digits, activation="relu2" if digits else "gelu", rope_fraction=rope_fraction, **ordinals,
    )
    mx.eval(model.parameters())
    model.eval()
    return model


MODELS = {
    "rope": _model("rope"), "learned": _model("learned"), "none": _model("none", True), "shipped": _model("rope", True),
    "partial_rope": _model("rope", True, rope_fraction=0.25),
    # Track B's counting: output numbers from 1 again, a small table so that rows saturate it
    "restart": _model("rope", True, rope_fraction=0.25, output_ordinals="restart", max_number_ordinal=3),
}
# rows rich in digits (and SEPs), so digit runs cross the prompt/output and cache boundaries
token = st.one_of(st.integers(48, 57), st.just(SEP), st.integers(0, VOCAB_SIZE - 1))
rows = st.lists(token, min_size=1, max_size=12)


def _places_reference(row: list[int]) -> list[int]:
    out, run = [], 0
    for t in row:
        run = run + 1 if 48 <= t <= 57 else 0
        out.append(run)
    return out


def _ordinals_reference(row: list[int], restart: bool = False) -> list[int]:
    out, count, prev_digit, seen_sep = [], 0, False, False
    for t in row:
        if restart and t == SEP and not seen_sep:
            count, seen_sep = 0, True
        digit = 48 <= t <= 57
        count += digit and not prev_digit
        out.append(count if digit else 0)
        prev_digit = digit
    return out


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(rows, min_size=1, max_size=4).map(lambda b: [r + [65] * (12 - len(r)) for r in b]), cut=st.integers(0, 12))
def test_digit_places_match_a_reference_and_carry_across_chunks(batch: list[list[int]], cut: int):
    tokens = mx.array(batch)
    want = [_places_reference(r) for r in batch]
    assert digit_places(tokens).tolist() == want
    assert number_ordinals(digit_places(tokens)).tolist() == [_ordinals_reference(r) for r in batch]
    if 0 < cut < 12:
        head = digit_places(tokens[:, :cut])
        tail = digit_places(tokens[:, cut:], head[:, -1])
        assert mx.concatenate([head, tail], axis=1).tolist() == want
        runs_before = (head == 1).astype(mx.int32).sum(axis=1)
        ordinals = mx.concatenate([number_ordinals(head), number_ordinals(tail, runs_before)], axis=1)
        assert ordinals.tolist() == [_ordinals_reference(r) for r in batch]


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(rows, min_size=1, max_size=4).map(lambda b: [r + [65] * (12 - len(r)) for r in b]), cut=st.integers(0, 12))
def test_restarted_ordinals_count_the_output_from_one_and_carry_across_chunks(batch: list[list[int]], cut: int):
    """With ``output_ordinals = "restart"`` the runs after the first SEP are counted from 1 again;
    a chunk's carry counts the output's runs once a chunk before it held SEP, else the prompt's."""
    tokens = mx.array(batch)
    after_sep = transformer.from_sep(tokens)
    want = [_ordinals_reference(r, restart=True) for r in batch]
    assert number_ordinals(digit_places(tokens), after_sep=after_sep).tolist() == want
    if 0 < cut < 12:
        head_places = digit_places(tokens[:, :cut])
        head_counts = transformer.number_counts(head_places, None, after_sep[:, :cut])
        tail_places = digit_places(tokens[:, cut:], head_places[:, -1])
        tail = number_ordinals(tail_places, head_counts[:, -1], after_sep[:, cut:], after_sep[:, cut - 1])
        assert mx.concatenate([number_ordinals(head_places, None, after_sep[:, :cut]), tail], axis=1).tolist() == want


def _signs_reference(row: list[int]) -> list[bool]:
    """A '-' or U+2212's last byte, before SEP, whose next token starts a digit run."""
    out = []
    for i, t in enumerate(row):
        minus = t == 45 or (t == 0x92 and row[max(i - 2, 0) : i] == [0xE2, 0x88] and i >= 2)
        nxt_first_digit = i + 1 < len(row) and 48 <= row[i + 1] <= 57
        out.append(bool(minus and nxt_first_digit and SEP not in row[: i + 1]))
    return out


sign_token = st.one_of(st.just(45), st.just(0x92), st.just(0x88), st.just(0xE2), token)


@settings(max_examples=150, deadline=None)
@given(row=st.lists(sign_token, min_size=1, max_size=14))
def test_prompt_signs_match_a_reference(row: list[int]):
    tokens = mx.array([row])
    assert transformer.prompt_signs(tokens, digit_places(tokens)).tolist() == [_signs_reference(row)]


def test_a_minus_sign_carries_its_numbers_ordinal_in_the_prompt_only():
    """'-12' and '−3' (U+2212): each sign reads as part of the number after it; '-x' and the
    output's '-' do not; the signed model's features for a row equal its digits' where it should."""
    text = "a -12 b −3 c-x".encode()
    tokens = mx.array([[*text, SEP, 45, 49]])
    places = digit_places(tokens)
    signs = transformer.prompt_signs(tokens, places).tolist()[0]
    assert [i for i, s in enumerate(signs) if s] == [2, 10]
    mx.random.seed(0)
    signed = Transformer(layers=1, hidden_size=32, heads=2, seq_len=32, position="none", digit_positions=True,
                         number_positions=True, signed_numbers=True)
    plain = Transformer(layers=1, hidden_size=32, heads=2, seq_len=32, position="none", digit_positions=True,
                        number_positions=True)
    plain.update(signed.parameters())
    differ = np.abs(np.array(signed(tokens) - plain(tokens))).max(axis=-1)[0] > TOL
    # the features change at the two signs, and causally everything after the first one
    assert not differ[:2].any() and differ[2]
    # whole prompt then one token at a time equals the full forward pass (as generation runs)
    cache = signed.make_cache()
    n = len(text) + 1
    pieces = [signed(tokens[:, :n], cache=cache)] + [signed(tokens[:, t : t + 1], cache=cache) for t in range(n, n + 2)]
    assert np.abs(np.array(mx.concatenate(pieces, axis=1) - signed(tokens))).max() < TOL


def test_restart_gives_the_output_its_own_ordinals():
    """Prompt numbers 1, 2, 3, 4 and the output's first number 1 again (Track B's operand fields
    then get their ordinal whatever the prompt holds); the model's table has max_number_ordinal + 1 rows."""
    tokens = mx.array([[65, 49, 32, 50, 32, 51, 32, 52, SEP, 53, 54, 59, 55]])
    places = digit_places(tokens)
    after = transformer.from_sep(tokens)
    assert after.tolist() == [[False] * 8 + [True] * 5]
    assert number_ordinals(places, after_sep=after).tolist() == [[0, 1, 0, 2, 0, 3, 0, 4, 0, 1, 1, 0, 2]]
    assert number_ordinals(places).tolist() == [[0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 5, 0, 6]]
    assert MODELS["restart"].number_embed.weight.shape[0] == 4
    assert MODELS["shipped"].number_embed.weight.shape[0] == 9


def test_output_shape():
    out = MODELS["rope"](mx.array([[1, 2, 3]]))
    assert out.shape == (1, 3, VOCAB_SIZE)


@pytest.mark.parametrize("position", list(MODELS))
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


@pytest.mark.parametrize("position", list(MODELS))
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


def test_digit_ends_see_the_prompt_only_and_decode_incrementally():
    """Digit ends are computed over the prompt alone: the model's own output never tells it how
    long the number it is writing will be, and a cached decode (prompt whole, then one token at
    a time) equals the full forward pass."""
    from exe_coder.model.tokenizer import SEP
    from exe_coder.model.transformer import prompt_digit_ends

    tokens = mx.array([[65, 49, 50, 51, 32, 52, SEP, 49, 50, 59]])
    assert prompt_digit_ends(tokens).tolist() == [[0, 3, 2, 1, 0, 1, 0, 0, 0, 0]]
    mx.random.seed(0)
    model = Transformer(layers=2, hidden_size=32, heads=2, seq_len=32, position="none", digit_positions=True,
                        number_positions=True, digit_ends=True)
    mx.eval(model.parameters())
    full = model(tokens)
    cache = model.make_cache()
    pieces = [model(tokens[:, :7], cache=cache)] + [model(tokens[:, t : t + 1], cache=cache) for t in range(7, 10)]
    assert np.abs(np.array(mx.concatenate(pieces, axis=1) - full)).max() < TOL
    # the answer's digits change nothing before them: no leak of the output's length into the prompt
    longer = mx.array([[65, 49, 50, 51, 32, 52, SEP, 49, 50, 51]])
    assert np.abs(np.array(model(longer)[:, :9] - full[:, :9])).max() < TOL


@pytest.mark.parametrize("fraction, rotated", [(1.0, 16), (0.5, 8), (0.25, 4), (0.01, 2)])
def test_partial_rope_rotates_only_its_share_of_each_head(fraction: float, rotated: int):
    """rope_fraction rotates the first dims of a head (head_dim 16 here) and leaves the rest as
    they are at every position, so those dims compare content alone."""
    attn = _model("rope", rope_fraction=fraction).blocks[0].attn
    x = mx.random.normal((1, 4, 6, 16))
    y = attn.rope(x, offset=3)
    changed = np.abs(np.array(y - x)).max(axis=(0, 1, 2)) > 1e-6
    assert changed[:rotated].all() and not changed[rotated:].any()


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 40), block=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_blocked_causal_attention_equals_full_causal_attention_and_its_gradients(T: int, block: int, seed: int):
    """The same outputs and gradients as one causal attention over all T positions, whatever
    the block size and however T divides by it."""
    key = mx.random.key(seed)
    q, k, v = (mx.random.normal((2, 3, T, 8), key=kk) for kk in mx.random.split(key, 3))

    def full(q, k, v):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=0.3, mask="causal")

    def blocked(q, k, v):
        return blocked_causal_attention(q, k, v, 0.3, block)

    assert np.abs(np.array(blocked(q, k, v) - full(q, k, v))).max() < 1e-5
    cot = mx.random.normal((2, 3, T, 8), key=mx.random.key(seed + 1))  # a loss that weighs every output
    g_full = mx.grad(lambda *a: (full(*a) * cot).sum(), argnums=(0, 1, 2))(q, k, v)
    g_blocked = mx.grad(lambda *a: (blocked(*a) * cot).sum(), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_full, g_blocked):
        assert np.abs(np.array(a - b)).max() < 1e-4


def test_a_sequence_longer_than_a_block_gives_the_logits_of_unblocked_attention(monkeypatch):
    """The model takes the blocked path past ATTENTION_BLOCK tokens (training, Track B's long
    images) and computes what one causal attention would; incremental decoding agrees with it."""
    model = MODELS["partial_rope"]
    tokens = mx.array(np.random.default_rng(0).integers(0, VOCAB_SIZE, size=(2, 50)))
    monkeypatch.setattr(transformer, "ATTENTION_BLOCK", 16)
    calls = []
    real = transformer.blocked_causal_attention
    monkeypatch.setattr(transformer, "blocked_causal_attention", lambda *a: calls.append(1) or real(*a))
    blocked = model(tokens)
    assert calls  # the blocked path ran
    monkeypatch.setattr(transformer, "ATTENTION_BLOCK", 64)
    calls.clear()
    whole = model(tokens)
    assert not calls
    assert np.abs(np.array(blocked - whole)).max() < TOL
    cache = model.make_cache()
    inc = mx.concatenate([model(tokens[:, :20], cache=cache)] + [model(tokens[:, t : t + 1], cache=cache) for t in range(20, 50)], axis=1)
    assert np.abs(np.array(inc - blocked)).max() < TOL


@settings(max_examples=40, deadline=None)
@given(row=st.lists(token, min_size=1, max_size=12), k=st.integers(0, 4))
def test_a_place_shift_moves_every_digit_feature_by_k_and_leaves_the_rest(row: list[int], k: int):
    """Row i's digit places and digit ends count from 1 + shift[i]: exactly the logits of the
    unshifted model whose place and end tables are moved k rows up (row 0, "not a digit", stays)."""
    mx.random.seed(1)
    model = Transformer(layers=1, hidden_size=32, heads=2, seq_len=64, digit_positions=True,
                        number_positions=True, digit_ends=True, activation="relu2", rope_fraction=0.25)
    model.eval()
    tokens = mx.array([row])
    places = digit_places(tokens)
    assert np.array_equal(np.array(shifted(places, mx.array([k]))), np.where(np.array(places) > 0, np.array(places) + k, 0))
    moved = copy.deepcopy(model)
    for name in ("digit_embed", "digit_end_embed"):
        table = np.array(getattr(model, name).weight)
        table[1 : len(table) - k] = table[1 + k :]  # place p of the moved model = place p + k of the original
        getattr(moved, name).weight = mx.array(table)
    got = model(tokens, place_shift=mx.array([k]))
    assert np.abs(np.array(got - moved(tokens))).max() < TOL
    assert np.array_equal(np.array(model(tokens, place_shift=mx.array([0]))), np.array(model(tokens)))


@settings(max_examples=40, deadline=None)
@given(row=st.lists(token, min_size=1, max_size=12), k=st.integers(0, 3), signed=st.booleans())
def test_an_ordinal_shift_moves_every_number_ordinal_by_k_and_leaves_the_rest(row: list[int], k: int, signed: bool):
    """Row i's number ordinals count from 1 + ordinal_shift[i] (signs' too): exactly the logits of
    the unshifted model whose ordinal table is moved k rows up (row 0, "no number", stays; the
    table is long enough that no shifted ordinal saturates)."""
    mx.random.seed(2)
    model = Transformer(layers=1, hidden_size=32, heads=2, seq_len=64, digit_positions=True, number_positions=True,
                        digit_ends=True, signed_numbers=signed, max_number_ordinal=16, activation="relu2", rope_fraction=0.25)
    model.eval()
    tokens = mx.array([row])
    moved = copy.deepcopy(model)
    table = np.array(model.number_embed.weight)
    table[1 : len(table) - k] = table[1 + k :]  # ordinal n of the moved model = ordinal n + k of the original
    moved.number_embed.weight = mx.array(table)
    got = model(tokens, ordinal_shift=mx.array([k]))
    assert np.abs(np.array(got - moved(tokens))).max() < TOL
    assert np.array_equal(np.array(model(tokens, ordinal_shift=mx.array([0]))), np.array(model(tokens)))
    if k and any(48 <= t <= 57 for t in row):  # a row with a number: the shift reaches the logits
        assert np.abs(np.array(got - model(tokens))).max() > 0
