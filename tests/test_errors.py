"""The one-line error contract every command relies on."""

from hypothesis import given, strategies as st

from exe_coder.errors import MESSAGE_LIMIT, UserError, excerpt


def test_location_prefixes_message():
    err = UserError("expected one of: INT", path="specs/x.spec", line=3, column=7)
    assert str(err) == "specs/x.spec:3:7: expected one of: INT"


def test_column_needs_a_line():
    assert str(UserError("bad", path="f.toml", column=4)) == "f.toml: bad"
    assert str(UserError("bad", path="f.toml", line=2)) == "f.toml:2: bad"


def test_no_path_is_just_the_message():
    assert str(UserError("no such stage")) == "no such stage"


@given(st.text(min_size=1))
def test_message_is_always_one_line(message):
    text = str(UserError(message, path="a.spec", line=1))
    assert "\n" not in text and "\r" not in text
    assert text.startswith("a.spec:1:")


def test_a_huge_message_is_cut_and_says_how_long_it_was():
    err = UserError("unexpected " + "x" * 50_000_000, path="big.spec", line=1, column=1)
    text = str(err)
    assert text.startswith("big.spec:1:1: unexpected xxx")
    assert text.endswith(f"... ({50_000_011} characters)")
    assert len(text) < len("big.spec:1:1: ") + MESSAGE_LIMIT + 30


def test_excerpt_quotes_short_text_whole_and_cuts_long_text():
    assert excerpt("seed") == "'seed'"
    assert excerpt("a" * 1000, limit=5) == "'aaaaa'... (1000 characters)"


@given(st.text(min_size=1, max_size=2000))
def test_every_message_is_short(message):
    text = str(UserError(message, path="a.spec", line=1))
    assert len(text) <= len("a.spec:1: ") + MESSAGE_LIMIT + len("... (2000 characters)")
