"""`exe-coder assemble`: writes a signed, executable, verified binary; bad input is one line, exit 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exe_coder.paths import TEMPLATES_DIR
from exe_coder.runtime.verify import verify

ADD = str(TEMPLATES_DIR / "add.s.j2")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exe_coder.cli", *args], capture_output=True, text=True)


def test_assemble_writes_a_verified_executable(tmp_path: Path) -> None:
    out = tmp_path / "bin" / "add"
    result = run_cli("assemble", ADD, "--set", "a=17", "--set", "b=-4", "-o", str(out))
    assert result.returncode == 0, result.stderr
    image = out.read_bytes()
    assert os.access(out, os.X_OK)
    assert hashlib.sha256(image).hexdigest() in result.stdout
    assert f"{len(image)} bytes" in result.stdout
    assert verify(image, "13\n", native=False).stdout_correct
    assert [p.name for p in out.parent.iterdir()] == ["add"]  # no temporary file left behind


def test_assemble_add_text_by_name(tmp_path: Path) -> None:
    out = tmp_path / "add_text"
    result = run_cli("assemble", "add_text", "--set", "a=-2147483648", "--set", "b=-1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert verify(out.read_bytes(), "-2147483649\n", native=False).stdout_correct


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "a=17", "--set", "b=x"], "'x' is not an integer"),
        (["--set", "a=17"], "takes operands ['a', 'b']"),
        (["--set", "a=17", "--set", "b=4294967296"], "outside signed 32-bit range"),
        (["--set", "a17", "--set", "b=1"], "write NAME=INTEGER"),
    ],
)
def test_bad_settings(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "add"
    result = run_cli("assemble", ADD, *args, "-o", str(out))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not out.exists()


def test_missing_template_and_assembler_error(tmp_path: Path) -> None:
    result = run_cli("assemble", str(tmp_path / "nope.s.j2"), "-o", str(tmp_path / "x"))
    assert result.returncode == 2 and "no such template file" in result.stderr
    bad = tmp_path / "bad.s.j2"
    bad.write_text("    .globl _main\n_main:\n    movz w9, #{{ a | lo16 }}  // patch: a[15:0]\n"
                   "    movk w9, #{{ a | hi16 }}, lsl #16  // patch: a[31:16]\n    add x0, x0, #99999\n")  # fmt: skip
    result = run_cli("assemble", str(bad), "--set", "a=1", "-o", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}:5:5: invalid operands for add: operand 3: immediate 99999 out of range 0..4095"
    assert not (tmp_path / "x").exists()


def test_assemble_into_a_folder_is_one_line(tmp_path: Path) -> None:
    result = run_cli("assemble", ADD, "--set", "a=1", "--set", "b=2", "-o", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path}: is a folder; give a file name to write\n"
    assert list(tmp_path.iterdir()) == []


def test_write_executable_goes_through_the_one_writer(tmp_path: Path, monkeypatch) -> None:
    from exe_coder import files
    from exe_coder.codegen import emit

    calls = []
    real = files.write_bytes
    monkeypatch.setattr(emit, "write_bytes", lambda *a, **k: calls.append(k) or real(*a, **k))
    old_umask = os.umask(0o077)  # the mode must not depend on the caller's umask
    try:
        written = emit.write_executable(b"\xcf\xfa\xed\xfe", tmp_path / "x")
    finally:
        os.umask(old_umask)
    assert calls == [{"executable": True}]
    assert (written.path, written.size, written.sha256) == (tmp_path / "x", 4, hashlib.sha256(b"\xcf\xfa\xed\xfe").hexdigest())
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o755
