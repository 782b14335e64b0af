"""Number words: the default style equals num2words (the reference); every style round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from num2words import num2words

from exe_coder.dataset.numwords import MAX_ABS, WordStyle, from_words, to_grouped, to_mixed, to_words

STYLES = [WordStyle(n, a, c) for n in ("minus", "negative") for a in (True, False) for c in (True, False)]
INT32 = st.integers(-(2**31), 2**31 - 1)


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (-42, "minus forty-two"),
        (3005, "three thousand and five"),
        (1234, "one thousand, two hundred and thirty-four"),
        (1100, "one thousand, one hundred"),
        (1000001, "one million and one"),
        (110, "one hundred and ten"),
    ],
)
def test_known_spellings(n, words):
    assert to_words(n) == words


def test_every_number_in_the_stage_ranges_matches_num2words():
    for n in range(-5000, 5001):
        assert to_words(n) == num2words(n), n


@settings(max_examples=300, deadline=None)
@given(INT32)
def test_int32_matches_num2words(n):
    assert to_words(n) == num2words(n)


@settings(max_examples=300, deadline=None)
@given(INT32, st.sampled_from(STYLES))
def test_round_trip_in_every_style(n, style):
    words = to_words(n, style)
    assert from_words(words) == n
    assert not any(ch.isdigit() for ch in words)
    if not style.use_and:
        assert " and " not in words
    if not style.commas:
        assert "," not in words
    if n < 0:
        assert words.startswith(style.negative + " ")


def test_out_of_range_and_garbage():
    with pytest.raises(ValueError):
        to_words(MAX_ABS + 1)
    with pytest.raises(ValueError):
        from_words("forty-two bananas")
    with pytest.raises(ValueError):
        from_words("minus")


@pytest.mark.parametrize(
    "n, mixed, grouped",
    [
        (4250, "4 thousand 2 hundred and fifty", "4,250"),
        (-4005, "minus 4 thousand and five", "-4,005"),
        (-42, "minus forty-two", "-42"),
        (300, "3 hundred", "300"),
        (0, "zero", "0"),
    ],
)
def test_mixed_and_grouped_spellings(n, mixed, grouped):
    assert to_mixed(n) == mixed and to_grouped(n) == grouped


@settings(max_examples=300, deadline=None)
@given(INT32, st.sampled_from(STYLES))
def test_mixed_round_trips_and_mixes(n, style):
    text = to_mixed(n, style)
    assert from_words(text) == n
    if abs(n) >= 100:
        assert any(ch.isdigit() for ch in text) and any(ch.isalpha() for ch in text)
    assert int(to_grouped(n).replace(",", "")) == n
