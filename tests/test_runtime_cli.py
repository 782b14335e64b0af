"""`exe-coder verify`, `inspect` and `selfcheck`: what they print and their exit statuses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_programs import MUTATIONS, programs  # noqa: F401  (programs: session fixture)
from typer.testing import CliRunner

from exe_coder.cli import app
from exe_coder.codegen.program import ProgramTemplate
from exe_coder.errors import UserError
from exe_coder.runtime.describe import describe_outcome, inspect_image
from exe_coder.runtime.binary_file import MAX_BINARY_BYTES, MAX_BINARY_MIB
from exe_coder.runtime.selfcheck import run_selfcheck, run_selfchecks
from exe_coder.runtime.verify import verify

runner = CliRunner()


@pytest.fixture(scope="module")
def add17(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bin") / "add"
    path.write_bytes(ProgramTemplate.load("add").build(a=17, b=-4))
    return path


def _write(tmp_path: Path, name: str, image: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(image)
    return path


def test_verify_ok_exits_0(add17):
    result = runner.invoke(app, ["verify", str(add17), "--expect", "13", "--run", "emulate"])
    assert result.exit_code == 0, result.output
    assert "outcome       ok" in result.output
    assert "stdout        b'13\\n'" in result.output
    assert "emulated" in result.output


def test_verify_wrong_output_exits_1(add17):
    result = runner.invoke(app, ["verify", str(add17), "--expect", "14", "--run", "emulate"])
    assert result.exit_code == 1
    assert "wrong_output" in result.output


def test_verify_json_is_one_object(add17):
    result = runner.invoke(app, ["verify", str(add17), "--expect", "13\n", "--json", "--run", "emulate"])
    record = json.loads(result.output)
    assert record["label"] == "ok" and record["stdout"] == "13\n" and record["exit_code"] == 0
    assert record["instructions"] > 0 and record["native"] is False


@pytest.mark.parametrize("name", ["crash_null", "loop_forever", "forbidden_syscall", "exit_3"])
def test_verify_failing_programs_exit_1(programs, tmp_path, name):
    path = _write(tmp_path, name, programs[name])
    result = runner.invoke(app, ["verify", str(path), "--run", "emulate", "--max-instructions", "1000"])
    assert result.exit_code == 1
    assert f"outcome       {verify(programs[name], native=False, max_instructions=1000).label}" in result.output


def test_verify_names_the_broken_rule(programs, tmp_path):
    path = _write(tmp_path, "bad", MUTATIONS["flags_pie"](programs["ok_write"]))
    result = runner.invoke(app, ["verify", str(path), "--run", "emulate"])
    assert result.exit_code == 1 and "invalid_macho:flags_pie" in result.output


def test_missing_file_is_one_line_and_exit_2(tmp_path):
    missing = str(tmp_path / "nope")
    done = subprocess.run([sys.executable, "-m", "exe_coder.cli", "verify", missing], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: {missing}: no such file\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "{folder}"], "is a folder; give an executable file"),
        (["inspect", "{missing}"], "no such file"),
        (["selfcheck", "--template", "nope"], "no template 'nope'"),
    ],
)
def test_bad_input_is_a_user_error(add17, tmp_path, args, message):
    values = {"missing": str(tmp_path / "nope"), "folder": str(tmp_path), "binary": str(add17)}
    result = runner.invoke(app, [a.format(**values) for a in args])
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert result.output.strip() == ""  # nothing printed before the error


def test_run_is_a_listed_choice_any_case(add17):
    bad = runner.invoke(app, ["verify", str(add17), "--run", "fast"])
    said = " ".join(bad.output.replace("│", " ").split())  # click's error box wraps at the terminal width
    assert bad.exit_code == 2 and "'fast' is not one of 'auto', 'native', 'emulate'" in said
    ok = runner.invoke(app, ["verify", str(add17), "--expect", "13", "--run", "EMULATE"])
    assert ok.exit_code == 0, ok.output


def test_inspect_valid_binary_exits_0(add17):
    result = runner.invoke(app, ["inspect", str(add17)])
    assert result.exit_code == 0, result.output
    for expected in ("LC_CODE_SIGNATURE", "structure     valid", "signature     valid", "cdhash", "svc #0x80"):
        assert expected in result.output


def test_inspect_tampered_binary_exits_1(add17, tmp_path):
    image = bytearray(add17.read_bytes())
    image[ProgramTemplate.load("add").text_offset] ^= 1
    result = runner.invoke(app, ["inspect", str(_write(tmp_path, "t", bytes(image)))])
    assert result.exit_code == 1
    assert "signature     INVALID: page" in result.output


def test_inspect_snapshot(snapshot):
    image = ProgramTemplate.load("add").build(a=17, b=-4)
    assert "\n".join(inspect_image(image, "add(17,-4)").lines) == snapshot


def test_outcome_description_snapshot(programs, snapshot):
    described = {
        name: describe_outcome(verify(programs[name], native=False, max_instructions=1000))
        for name in ("ok_write", "crash_null", "loop_forever", "bad_fd", "return_7")
    }
    assert described == snapshot


def test_selfcheck_passes_and_reports_every_check():
    checks = run_selfcheck("add", operands=((0, 0), (-(1 << 31), (1 << 31) - 1)), native=False)
    assert all(c.passed for c in checks), checks
    names = [c.name for c in checks]
    assert any("deterministic" in n for n in names) and any("LIEF" in n for n in names)
    assert names[-1] == "verifier refuses a flipped code byte"


def test_selfcheck_of_add_text():
    result = runner.invoke(app, ["selfcheck", "--template", "add_text"])
    assert result.exit_code == 0, result.output
    assert "selfcheck (add_text)" in result.output and "FAIL" not in result.output


def test_selfcheck_fails_when_the_toolchain_is_wrong(monkeypatch):
    real_build = ProgramTemplate.build
    ProgramTemplate.load("add")  # loaded (and self-checked) with the real toolchain, whatever ran before

    def off_by_one(self, **ops):  # a broken toolchain: builds a+b+1 unless a == 0
        if ops["a"]:
            ops = dict(ops, b=ops["b"] + 1)
        return real_build(self, **ops)

    monkeypatch.setattr(ProgramTemplate, "build", off_by_one)
    checks = {c.name: c for c in run_selfcheck("add", operands=((0, 0), (5, 6)), native=False)}
    assert not checks["patch == build"].passed
    assert not checks["emulated: valid, signed, prints a+b, exit 0"].passed
    assert "a=5 b=6" in checks["emulated: valid, signed, prints a+b, exit 0"].detail


def test_selfcheck_command_prints_a_table():
    result = runner.invoke(app, ["selfcheck"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    assert "checks passed" in result.output


# --- verify / inspect read only a regular file of bounded size --------------------------------


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exe_coder.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = _cli(command, str(fifo), timeout=30)  # before: blocked in open() until a writer came
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: {fifo}: is not a regular file (a FIFO, device or socket); give an executable file\n"


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_a_device_is_refused_without_reading_it(command):
    done = _cli(command, "/dev/zero", timeout=30)  # before: read zeros until memory ran out
    assert done.returncode == 2 and done.stderr.startswith("error: /dev/zero: is not a regular file")


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        result = runner.invoke(app, ["inspect", str(path)])
    assert isinstance(result.exception, UserError) and "not a regular file" in str(result.exception)


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_a_file_over_the_limit_is_refused_unread(tmp_path, command):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(MAX_BINARY_BYTES + 1)  # sparse: costs no disk, and must never be read
    result = runner.invoke(app, [command, str(big)])
    assert isinstance(result.exception, UserError)
    assert str(result.exception) == f"{big}: is {MAX_BINARY_BYTES + 1} bytes, over the {MAX_BINARY_BYTES}-byte limit for an executable file"
    assert result.output.strip() == ""


def test_a_file_at_the_limit_is_read(tmp_path, monkeypatch, add17):
    from exe_coder.runtime import binary_file

    size = len(add17.read_bytes())
    monkeypatch.setattr(binary_file, "MAX_BINARY_BYTES", size)
    assert binary_file.read_binary(add17) == add17.read_bytes()
    monkeypatch.setattr(binary_file, "MAX_BINARY_BYTES", size - 1)
    with pytest.raises(UserError, match="over the"):
        binary_file.read_binary(add17)


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_help_states_the_size_limit(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert f"at most {MAX_BINARY_MIB} MiB" in result.output


# --- selfcheck covers every template ----------------------------------------------------------


@pytest.fixture
def two_templates(tmp_path, monkeypatch):
    """A templates folder with `add` and a copy of it named `twin`."""
    import exe_coder.codegen.program as program
    import exe_coder.paths as paths
    import exe_coder.runtime.selfcheck as selfcheck

    for name in ("add", "twin"):
        shutil.copy(paths.TEMPLATES_DIR / "add.s.j2", tmp_path / f"{name}.s.j2")
    for module in (paths, program, selfcheck):
        monkeypatch.setattr(module, "TEMPLATES_DIR", tmp_path)
    yield tmp_path
    program._load_cached.cache_clear()  # "add" was loaded from the copy


def test_selfcheck_checks_every_template_by_default(two_templates):
    checks = run_selfchecks(operands=((1, 2),), native=False)
    single = run_selfcheck("add", operands=((1, 2),), native=False)
    assert [c.name for c in checks] == [f"{t}: {c.name}" for t in ("add", "twin") for c in single]
    assert all(c.passed for c in checks), checks


def test_selfcheck_of_one_template_keeps_plain_names(two_templates):
    checks = run_selfchecks(["twin"], operands=((1, 2),), native=False)
    assert [c.name for c in checks] == [c.name for c in run_selfcheck("add", operands=((1, 2),), native=False)]


def test_selfcheck_with_no_templates_is_a_user_error(tmp_path, monkeypatch):
    import exe_coder.runtime.selfcheck as selfcheck

    monkeypatch.setattr(selfcheck, "TEMPLATES_DIR", tmp_path)
    with pytest.raises(UserError, match="no templates"):
        run_selfchecks()


def test_selfcheck_command_names_each_template(two_templates):
    result = runner.invoke(app, ["selfcheck"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "exe-coder selfcheck (add, twin)" in result.output
    assert "add: patch == build" in result.output and "twin: patch == build" in result.output
