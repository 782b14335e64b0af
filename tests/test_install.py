"""Installable anywhere: the wheel carries the declared inputs, runs from an empty folder, and
shipped specs, configs and templates are addressable by name (issue 9)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from exe_coder.cli import app
from exe_coder.errors import UserError
from exe_coder.paths import (
    CONFIGS_DIR,
    REPO_ROOT,
    SPECS_DIR,
    TEMPLATES_DIR,
    resolve_config,
    resolve_spec,
    resolve_template,
    shipped,
)

# what the program reads at run time, as the repository lays it out
RUNTIME_GLOBS = ("grammar/*.lark", "templates/*.s.j2", "specs/*.spec", "specs/prompts/*.prompts", "configs/*.toml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to build the wheel (it runs these tests: `uv run pytest`)"
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([uv, "build", "--quiet", "--wheel", "-o", str(out)], cwd=REPO_ROOT, check=True)
    (built,) = out.glob("exe_coder-*.whl")
    return built


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    """The wheel as an installer lays it out: the package alone, no checkout beside it."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def _installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # the unpacked wheel comes first on the path, ahead of the editable checkout
    env = {**os.environ, "PYTHONPATH": str(site), "EXE_CODER_NO_BLAS_PRELOAD": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_wheel_carries_every_runtime_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        expected = [p for g in RUNTIME_GLOBS for p in sorted(REPO_ROOT.glob(g))]
        assert len(expected) >= 15  # the globs still match the repository's layout
        for path in expected:
            packed = f"exe_coder/_resources/{path.relative_to(REPO_ROOT).as_posix()}"
            assert packed in names, packed
            assert zf.read(packed) == path.read_bytes(), packed


def test_installed_copy_reads_its_packaged_resources(unpacked, tmp_path):
    probe = (
        "import exe_coder.paths as p; "
        "print(p.RESOURCES_ROOT); print(p.resolve_spec('stage0')); print(p.resolve_config('sft_stage0_overfit'))"
    )
    proc = _installed(unpacked, tmp_path, "-c", probe)
    assert proc.returncode == 0, proc.stderr
    root, spec, config = (Path(line) for line in proc.stdout.splitlines())
    assert root == unpacked / "exe_coder" / "_resources"
    assert spec == root / "specs" / "stage0.spec" and config == root / "configs" / "sft_stage0_overfit.toml"


def test_installed_build_by_name_writes_under_the_working_folder_where_train_reads(unpacked, tmp_path):
    proc = _installed(
        unpacked, tmp_path, "-m", "exe_coder.cli", "build", "stage0",
        "--limit-train", "8", "--limit-val", "4", "--limit-test", "4", "--jobs", "1",
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "data" / "processed" / "stage0" / "manifest.json").read_text())
    assert manifest["spec"]["path"] == "specs/stage0.spec"  # as from a checkout: manifests do not say where
    assert (tmp_path / "outputs" / "bin" / "stage0").is_dir()
    assert not (unpacked / "data").exists() and not (unpacked / "exe_coder" / "_resources" / "data").exists()
    # the shipped config, named from this folder, trains on exactly what build just wrote here
    check = (
        "from pathlib import Path; from exe_coder.paths import resolve_config; "
        "from exe_coder.train.config import load_config; d = load_config(resolve_config('sft_stage0_overfit')).data; "
        "print(all(Path(p).is_file() for p in (d.train_jsonl, d.val_jsonl, d.test_jsonl)))"
    )
    agree = _installed(unpacked, tmp_path, "-c", check)
    assert agree.stdout.strip() == "True", agree.stderr


def test_default_outputs_go_under_the_working_folder(tmp_path, monkeypatch):
    from exe_coder.dataset.build import default_bin_dir, default_out_dir

    monkeypatch.chdir(tmp_path)
    assert default_out_dir("stage1") == tmp_path / "data" / "processed" / "stage1"
    assert default_bin_dir("stage1") == tmp_path / "outputs" / "bin" / "stage1"


def test_installed_assemble_by_template_name(unpacked, tmp_path):
    proc = _installed(unpacked, tmp_path, "-m", "exe_coder.cli", "assemble", "add", "--set", "a=17", "--set", "b=-4", "-o", "add")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "add").stat().st_size == 16704


def test_names_resolve_to_shipped_files():
    assert resolve_spec("stage0") == SPECS_DIR / "stage0.spec"
    assert resolve_spec("stage1.spec") == SPECS_DIR / "stage1.spec"
    assert resolve_config("sft_stage0_overfit") == CONFIGS_DIR / "sft_stage0_overfit.toml"
    assert resolve_template("add") == TEMPLATES_DIR / "add.s.j2"
    assert "stage3" in shipped(SPECS_DIR, ".spec") and "add" in shipped(TEMPLATES_DIR, ".s.j2")


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("stage0").write_text("stage mine\n")
    assert resolve_spec("stage0") == Path("stage0")
    assert resolve_config(CONFIGS_DIR / "sft_scratch.toml") == CONFIGS_DIR / "sft_scratch.toml"


@pytest.mark.parametrize(
    ("resolve", "value", "names"),
    [
        (resolve_spec, "stage9", "shipped stage"),
        (resolve_spec, "elsewhere/stage0", "shipped stage"),  # a path is never read as a name
        (resolve_config, "sft_nope", "shipped config"),
        (resolve_template, "mul", "shipped template"),
    ],
)
def test_unknown_name_is_one_line_error_listing_the_shipped_names(resolve, value, names):
    with pytest.raises(UserError) as err:
        resolve(value)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{value}: no such ") and "file, and no shipped" in text
    assert names in text and ("stage0" in text or "sft_stage0_overfit" in text or "add" in text)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
@example("a" * 300)  # too long for the OS to look up: not there, rather than an OSError
def test_any_text_resolves_to_an_existing_file_or_a_one_line_error(text):
    try:
        path = resolve_spec(text)
    except UserError as err:
        assert "\n" not in str(err).replace(text, "")
    else:
        assert path.exists()


@pytest.mark.parametrize(
    "args",
    [["build", "stage9"], ["train", "--config", "sft_nope"], ["run-stage", "stage0", "--config", "sft_nope"], ["assemble", "mul", "-o", "x"]],
)
def test_cli_refuses_unknown_names_with_exit_2(args, tmp_path):
    env = {**os.environ, "EXE_CODER_NO_BLAS_PRELOAD": "1"}
    proc = subprocess.run([sys.executable, "-m", "exe_coder.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "file, and no shipped" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_version_and_completion():
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"exe-coder {version('exe-coder')}\n"
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
