"""The decode grammar's automaton: exactly the canonical in-bounds sentences, every prefix completable."""

from __future__ import annotations

import itertools
import re

import lark
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.decode.grammar import TRACK_A_GRAMMAR, compile_grammar
from exe_coder.errors import UserError
from exe_coder.model.tokenizer import BOS, EOS, PAD, SEP

INT_ALPHABET = "-0123456789"
# Every string of up to 4 such characters: all candidates for integers in [-999, 999].
SHORT_STRINGS = ["".join(p) for n in range(1, 5) for p in itertools.product(INT_ALPHABET, repeat=n)]


def _int_regex() -> re.Pattern:
    parser = lark.Lark(TRACK_A_GRAMMAR.read_text(), parser="lalr")
    (pattern,) = [t.pattern.to_regexp() for t in parser.terminals if t.name == "INT"]
    return re.compile(pattern)


def _accepts_int(g, s: str) -> bool:
    """The automaton's verdict on ``s`` as operand A (B fixed to an in-bounds value)."""
    return g.accepts_text(f"A={s};B={g.min_int}\n")


def _is_canonical(s: str) -> bool:
    try:
        return str(int(s)) == s
    except ValueError:
        return False


@settings(max_examples=25, deadline=None)
@given(st.integers(-999, 999), st.integers(0, 300))
def test_automaton_accepts_exactly_the_canonical_integers_in_range(lo, width):
    hi = min(lo + width, 999)
    g = compile_grammar(lo, hi)
    accepted = {s for s in SHORT_STRINGS if _accepts_int(g, s)}
    expected = {s for s in SHORT_STRINGS if _is_canonical(s) and lo <= int(s) <= hi}
    assert accepted == expected
    # Nothing longer is accepted either: the longest sentence is the longest two integers.
    longest = max(len(str(lo)), len(str(hi)))
    assert g.max_tokens == len("A=;B=\n") + 2 * longest + 1


@settings(max_examples=40, deadline=None)
@given(st.integers(-(2**40), 2**40), st.integers(0, 2**40), st.data())
def test_large_bounds_accept_inside_and_reject_outside(lo, width, data):
    hi = lo + width
    g = compile_grammar(lo, hi)
    inside = data.draw(st.integers(lo, hi))
    assert _accepts_int(g, str(inside))
    assert g.parse(f"A={inside};B={hi}\n") == (inside, hi)
    for outside in (lo - 1, hi + 1, lo - data.draw(st.integers(1, 10**12)), hi + data.draw(st.integers(1, 10**12))):
        assert not _accepts_int(g, str(outside))
        assert g.parse(f"A={lo};B={outside}\n") is None
    for noncanonical in ("0" + str(abs(inside)), "+" + str(abs(inside)), "-0"):
        assert not _accepts_int(g, noncanonical)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="AB=;-0123456789\n", max_size=16))
def test_parse_and_automaton_agree(text):
    g = compile_grammar(-500, 500)
    parsed = g.parse(text)
    assert (parsed is not None) == g.accepts_text(text)
    if parsed is not None:
        assert text == f"A={parsed[0]};B={parsed[1]}\n"


@settings(max_examples=30, deadline=None)
@given(st.integers(-5000, 5000), st.integers(0, 10000), st.integers(0, 2**32 - 1))
def test_every_prefix_can_be_completed(lo, width, seed):
    """A random walk through allowed tokens always reaches EOS within max_tokens, in bounds."""
    g = compile_grammar(lo, lo + width)
    rng = np.random.default_rng(seed)
    state, tokens = g.start_state, []
    for _ in range(g.max_tokens):
        choices = np.flatnonzero(g.allowed[state])
        assert choices.size > 0, "a reachable state allows nothing"
        tok = int(rng.choice(choices))
        tokens.append(tok)
        state = int(g.next_state[state, tok])
        if tok == EOS:
            break
    assert state == g.done_state
    text = bytes(tokens[:-1]).decode()
    a, b = g.parse(text)
    assert lo <= a <= lo + width and lo <= b <= lo + width


def test_tables_shape_eos_and_specials():
    g = compile_grammar(-1000, 1000)
    assert g.allowed.shape == g.next_state.shape == (g.num_states, 260)
    # EOS only where a sentence is complete (and again once done); PAD/BOS/SEP never.
    eos_states = set(np.flatnonzero(g.allowed[:, EOS]).tolist())
    assert eos_states == set(np.flatnonzero(g.accepting).tolist()) | {g.done_state}
    assert not g.allowed[:, [PAD, BOS, SEP]].any()
    assert not g.allowed[:, 128:256].any()
    assert not g.allowed[g.dead_state].any()
    assert (g.next_state[~g.allowed] == g.dead_state).all()
    assert np.array_equal(np.array(g.allowed_mx), g.allowed)
    assert np.array_equal(np.array(g.next_state_mx), g.next_state)
    bias = np.array(g.mask_bias_mx)
    assert (bias[g.allowed] == 0).all() and np.isneginf(bias[~g.allowed]).all()


def test_accepted_integers_match_the_grammar_files_int_terminal():
    regex = _int_regex()
    g = compile_grammar(-120, 120)
    for s in SHORT_STRINGS:
        if _accepts_int(g, s):
            assert regex.fullmatch(s), s


def test_examples():
    g = compile_grammar(-1000, 1000)
    assert g.parse("A=17;B=-4\n") == (17, -4)
    assert g.parse("A=0;B=0\n") == (0, 0)
    assert g.parse("A=-1000;B=1000\n") == (-1000, 1000)
    for bad in ("A=17;B=-4", "A=17;B=-4\n\n", "A=-0;B=1\n", "A=01;B=1\n", "A=1001;B=1\n", "B=1;A=2\n", "A= 1;B=2\n", ""):
        assert g.parse(bad) is None, bad
        assert not g.accepts_text(bad), bad


def test_compiled_once_per_file_and_bounds():
    assert compile_grammar(-7, 7) is compile_grammar(-7, 7)
    assert compile_grammar(-7, 7) is not compile_grammar(-7, 8)


def test_empty_bounds_are_a_user_error():
    with pytest.raises(UserError, match="decode_min_int 5 > decode_max_int 4"):
        compile_grammar(5, 4)


def test_bad_grammar_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.lark"
    with pytest.raises(UserError, match="missing.lark"):
        compile_grammar(0, 9, missing)
    recursive = tmp_path / "recursive.lark"
    recursive.write_text('start: "A=" INT x\nx: ";" INT x | "\\n"\nINT: /[0-9]+/\n')
    with pytest.raises(UserError, match="recursive.lark: decode grammar must not be recursive"):
        compile_grammar(0, 9, recursive)
    regex_terminal = tmp_path / "regex.lark"
    regex_terminal.write_text('start: "A=" WORD "\\n"\nWORD: /[a-z]+/\n')
    with pytest.raises(UserError, match="regex.lark: decode grammar terminal WORD"):
        compile_grammar(0, 9, regex_terminal)
    broken = tmp_path / "broken.lark"
    broken.write_text('start: "A=" (\n')
    with pytest.raises(UserError, match="broken.lark"):
        compile_grammar(0, 9, broken)


def test_a_different_grammar_file_is_compiled_by_its_own_rules(tmp_path):
    """The automaton comes from the file: a grammar with alternatives and optional parts."""
    path = tmp_path / "alt.lark"
    path.write_text('start: ("A=" | "a=") a ";" b? "\\n"\na: INT\nb: "B=" INT\nINT: "0" | /-?[1-9][0-9]*/\n')
    g = compile_grammar(-3, 3, path)
    assert g.accepts_text("A=3;\n") and g.accepts_text("a=-3;B=0\n")
    assert not g.accepts_text("A=4;\n") and not g.accepts_text("b=1;\n")
