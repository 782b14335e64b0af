"""The one output-file writer: whole or not at all, ordinary modes, one-line errors."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.errors import UserError
from exe_coder.files import write_bytes, write_files, write_text, write_with


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=5000))
def test_write_bytes_round_trips_with_mode_0644(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("w") / "sub" / "file.bin"
    write_bytes(out, data)
    assert out.read_bytes() == data
    assert _mode(out) == 0o644
    assert os.listdir(out.parent) == ["file.bin"]  # no temporary left behind


def test_executables_are_0755_and_replace_atomically(tmp_path):
    out = tmp_path / "prog"
    write_bytes(out, b"old", executable=True)
    write_bytes(out, b"new", executable=True)
    assert out.read_bytes() == b"new" and _mode(out) == 0o755


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "w.safetensors"
    write_text(out, "old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_with(out, broken)
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_a_folder_as_destination_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        write_bytes(tmp_path, b"x")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="parent of this path is a file"):
        write_bytes(tmp_path / "afile" / "out.json", b"x")


def test_write_files_renames_nothing_when_one_fails(tmp_path):
    a, b = tmp_path / "r.json", tmp_path / "r.md"
    write_files({a: b"1", b: b"2"})
    (tmp_path / "r.png").mkdir()
    with pytest.raises(UserError):
        write_files({a: b"new", tmp_path / "r.png": b"png"})
    assert a.read_bytes() == b"1"
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.md", "r.png"]
    assert _mode(a) == 0o644
