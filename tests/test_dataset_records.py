"""The Example reader: every bad input is one UserError naming the file (and line), never a
traceback or a hang."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.dataset import records as records_module
from exe_coder.dataset.records import Example, load_examples, patch_text
from exe_coder.errors import UserError


def _example(a: int = 17, b: int = -4) -> Example:
    return Example(
        id="val-00000", split="val", prompt=f"What is {a} plus {b}?", template_id="t1", program="add", a=a, b=b,
        expected_stdout=f"{a + b}\n", target=patch_text(a, b), sign_pattern="+-", magnitude_pair="core/core",
        numerals="digits/digits", binary_path="", binary_sha256="0" * 64,
    )


GOOD = (_example().model_dump_json() + "\n").encode()


def _refused(path: Path) -> UserError:
    """``load_examples(path)`` must raise at once; a reader that blocks fails here, not hangs."""
    caught: list[BaseException] = []

    def read() -> None:
        try:
            load_examples(path)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            caught.append(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), f"load_examples({path}) blocked"
    assert caught and isinstance(caught[0], UserError), caught
    return caught[0]


def test_round_trip(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_bytes(GOOD + b"\n" + GOOD)  # blank lines are skipped
    assert load_examples(path) == [_example(), _example()]


def test_a_non_utf8_line_names_file_and_line(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_bytes(GOOD + b'{"id": "\xff\xfe"}\n')
    err = _refused(path)
    assert (err.path, err.line) == (str(path), 2)
    assert "not UTF-8" in err.message


@pytest.mark.parametrize("special", ["/dev/zero", "folder", "fifo"])
def test_a_file_that_is_not_regular_is_refused(tmp_path, special):
    if special == "folder":
        path = tmp_path / "stage0"
        path.mkdir()
    elif special == "fifo":
        path = tmp_path / "val.jsonl"
        os.mkfifo(path)  # no writer: opening it for reading would wait forever
    else:
        path = Path(special)
    err = _refused(path)
    assert err.path == str(path)
    assert err.message == ("is a folder; give an Example JSONL file" if special == "folder" else
                           "is not a regular file (a FIFO, device or socket); give an Example JSONL file")


def test_a_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "train.jsonl"
    path.write_bytes(GOOD * 3)
    monkeypatch.setattr(records_module, "MAX_EXAMPLES_BYTES", len(GOOD) * 2)
    err = _refused(path)
    assert err.path == str(path) and "limit" in err.message and str(len(GOOD) * 3) in err.message


def test_a_path_the_system_cannot_open_is_a_user_error(tmp_path):
    path = tmp_path / ("x" * 300 + ".jsonl")  # longer than any file system's name limit
    err = _refused(path)
    assert err.path == str(path) and "cannot read" in err.message


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=64).filter(lambda b: b"\n" not in b and b.strip()))
def test_any_bad_line_is_a_one_line_error_naming_its_line(tmp_path_factory, garbage):
    path = tmp_path_factory.mktemp("r") / "val.jsonl"
    path.write_bytes(GOOD + garbage + b"\n" + GOOD)
    try:
        got = load_examples(path)
    except UserError as err:
        assert (err.path, err.line) == (str(path), 2) and "\n" not in str(err)
    else:  # the garbage was blank (in Unicode's sense) or happened to be a valid record
        assert len(got) == (3 if garbage.decode().strip() else 2)
