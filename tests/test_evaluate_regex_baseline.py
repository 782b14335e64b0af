"""The regex baseline reads digit operands, in text order, and cannot read number words."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.dataset.numwords import to_words
from exe_coder.dataset.records import patch_text
from exe_coder.decode.regex_baseline import baseline_text, extract_operands
from exe_coder.paths import SPECS_DIR
from exe_coder.spec import load_spec

INT32 = st.integers(-(2**31), 2**31 - 1)
# filler text with no digits in it: what surrounds the operands in a prompt
FILLER = st.text(st.characters(blacklist_categories=("Nd", "Cs")), max_size=30)


def _shipped_templates():
    spec = load_spec(SPECS_DIR / "stage1.spec")
    return [t for s in spec.prompt_sets for t in s.templates]


TEMPLATES = _shipped_templates()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TEMPLATES), INT32, INT32)
def test_shipped_templates_with_digits_are_read(template, a, b):
    """Every shipped template rendered with digit operands gives back the operands in the
    order they appear in the text (so a template that names b first gives them swapped)."""
    prompt = template.render(str(a), str(b))
    b_first = template.text.index("{b}") < template.text.index("{a}")
    assert extract_operands(prompt) == ((b, a) if b_first else (a, b)), prompt


@settings(max_examples=150, deadline=None)
@given(FILLER, FILLER, FILLER, INT32, INT32)
def test_any_digit_free_text_around_two_numbers(pre, mid, post, a, b):
    # a separator that cannot glue the numbers to a letter or to each other
    prompt = f"{pre} {a} {mid} {b} {post}"
    assert extract_operands(prompt) == (a, b)
    assert baseline_text(prompt) == patch_text(a, b)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(TEMPLATES), st.integers(-5000, 5000), st.integers(-5000, 5000))
def test_number_words_are_not_read(template, a, b):
    """stage3's prompts: with both operands in words there is nothing for a regex to read."""
    prompt = template.render(to_words(a), to_words(b))
    found = extract_operands(prompt)
    assert found is None or found != (a, b)
    assert baseline_text(prompt) == "" or baseline_text(prompt) != patch_text(a, b)


def test_examples():
    assert extract_operands("What is 17 plus -4?") == (17, -4)
    assert extract_operands("17+-4=") == (17, -4)
    assert extract_operands("17-4") == (17, 4)  # a minus after a digit is an operator
    assert extract_operands("Generate an arm64 executable that prints 3 + 5") == (3, 5)
    assert extract_operands("add \u22125 and 2") == (-5, 2)
    assert extract_operands("add 4 to 17") == (4, 17)  # swapped: the patch will be wrong
    assert extract_operands("What is minus forty-two plus 17?") is None
    assert extract_operands("") is None


def test_bounds_make_it_unparsed():
    assert baseline_text("1500 plus 3", min_int=-1000, max_int=1000) == ""
    assert baseline_text("-1000 plus 1000", min_int=-1000, max_int=1000) == "A=-1000;B=1000\n"
    assert baseline_text("nothing here") == ""
