"""The after-decoding checks `generate` warns with: a prompt with no number, a number beyond the
decode bounds, an operand on a bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.dataset.numwords import to_words
from exe_coder.decode.prompt_check import NUMBER_WORDS, has_number, prompt_warnings

# letters that spell no number word ("one" needs o, n, e; "six" needs s, i, x; ...)
NO_NUMBER_TEXT = st.text(alphabet="abcdhjklmpqruyz ?!.,'", max_size=60)


@settings(max_examples=100, deadline=None)
@given(NO_NUMBER_TEXT, st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_a_prompt_without_digits_or_number_words_warns(prompt, a, b):
    assert not has_number(prompt)
    warnings = prompt_warnings(prompt, (a, b), -1000, 1000)
    assert warnings[0] == f"the prompt holds no number (no digits, no number word); a={a} and b={b} did not come from it"


@settings(max_examples=100, deadline=None)
@given(NO_NUMBER_TEXT, st.integers(-999, 999), NO_NUMBER_TEXT)
def test_digits_or_words_count_as_a_number(before, n, after):
    for written in (str(n), to_words(n), to_words(n).upper()):
        prompt = f"{before} {written} {after}"
        assert has_number(prompt), prompt
        assert prompt_warnings(prompt, (0, 1), -1000, 1000) == []


def test_number_words_are_whole_words():
    assert {"seventeen", "forty", "hundred", "thousand", "zero"} <= NUMBER_WORDS
    assert not has_number("Someone tennis often")  # "one", "ten" only inside other words
    assert has_number("add ten to it")


def test_no_number_and_nothing_parsed():
    assert prompt_warnings("hello", None, -9, 9) == ["the prompt holds no number (no digits, no number word)"]


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**6), 10**6), st.integers(0, 10**6), st.integers(0, 1), st.booleans())
def test_an_operand_on_a_bound_warns_and_one_inside_does_not(lo, width, which, at_max):
    hi = lo + width
    bound = hi if at_max else lo
    operands = (bound, lo) if which == 0 else (lo, bound)
    prompt = f"What is {abs(lo)} plus {abs(bound)}?"
    warnings = [w for w in prompt_warnings(prompt, operands, lo, hi) if "sits on a decode bound" in w]
    name = "ab"[which]
    assert f"operand {name}={bound} sits on a decode bound of [{lo}, {hi}]: the prompt's number may lie beyond it and have been clamped" in warnings
    if width >= 2:
        inside = (lo + 1, hi - 1)
        assert not any("sits on" in w for w in prompt_warnings(prompt, inside, lo, hi))


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 10**6), st.integers(1, 10**30))
def test_a_number_no_operand_can_take_is_named(bound, beyond):
    n = bound + beyond
    warnings = prompt_warnings(f"What is {n} plus 1?", (0, 1), -bound, bound)
    shown = str(n) if len(str(n)) <= 20 else str(n)[:20] + "..."
    assert warnings == [f"the prompt's number {shown} is outside the model's decode bounds [{-bound}, {bound}]: it cannot write it"]
    # either sign counts: -5 fits bounds [-9, 0], so "5" does too ("minus 5")
    assert prompt_warnings("What is minus 5 plus minus 1?", (-5, -1), -9, 0) == []


def test_a_long_digit_run_is_quoted_short():
    warnings = prompt_warnings("9" * 5000, (1, 2), -1000, 1000)
    assert warnings == ["the prompt's number 99999999999999999999... is outside the model's decode bounds [-1000, 1000]: it cannot write it"]
