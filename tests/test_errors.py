"""The one-line error contract every command relies on."""

from hypothesis import given, strategies as st

from exe_coder.errors import UserError


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
