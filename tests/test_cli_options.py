"""The command line's surface: choices --help lists, one option name a concept, help text whose
brackets survive rich markup, config overrides handed to run-stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from exe_coder import cli
from exe_coder.cli import InferMode, ProbeMode, app
from exe_coder.paths import SPEC_SUFFIX, SPECS_DIR, shipped

runner = CliRunner()
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}  # no wrapping inside a bracketed phrase
COMMANDS = sorted(typer.main.get_command(app).commands.items())
OLD_SPELLINGS = {"--out-dir", "--ckpt", "--train-n", "--val-n", "--test-n", "--work"}


def _help(name: str) -> str:
    result = runner.invoke(app, [name, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def _visible(command: object) -> list[object]:
    return [p for p in command.params if not getattr(p, "hidden", False)]


@pytest.mark.parametrize("name,command", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_bracket_in_help_text_is_shown(name: str, command: object):
    # rich markup takes "[rl]" (or "[lo, hi]") for a style tag and drops it unless escaped "\["
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in _visible(command)]
    shown = re.sub(r"[\s│]+", " ", _help(name))
    for text in texts:
        for phrase in re.findall(r"\\?\[[^\[\]]*\]", text):
            assert re.sub(r"\s+", " ", phrase.lstrip("\\")) in shown, (name, phrase)


def test_the_rl_table_survives_in_evaluate_help():
    assert "the run's [rl] beta" in _help("evaluate")


@pytest.mark.parametrize(
    "name,choices",
    [
        ("infer", "sft_patch_model|oracle|regex_baseline"),
        ("probe", "sft_patch_model|regex_baseline"),
        ("verify", "auto|native|emulate"),
        ("evaluate", "val|test"),
        ("run-stage", "|".join(shipped(SPECS_DIR, SPEC_SUFFIX))),
    ],
)
def test_choices_are_listed_in_help(name: str, choices: str):
    assert choices in _help(name)


def test_infer_modes_are_the_decoders_modes():
    from exe_coder.decode.infer import MODES

    assert [m.value for m in InferMode] == list(MODES)
    assert [m.value for m in ProbeMode] == [m for m in MODES if m != "oracle"]  # a probe has no gold patch


@pytest.mark.parametrize("name,command", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_one_name_for_one_concept(name: str, command: object):
    opts = {o for p in _visible(command) for o in p.opts}
    assert not opts & OLD_SPELLINGS
    if "--out" in opts:
        assert "-o" in opts  # -o/--out wherever a file or folder is written
    if {"--limit-train", "--limit-val", "--limit-test"} & opts:
        assert {"--limit-train", "--limit-val", "--limit-test"} <= opts


def test_an_unknown_stage_is_refused_listing_the_shipped_ones():
    result = runner.invoke(app, ["run-stage", "stage9"], env=WIDE)
    assert result.exit_code == 2 and "'stage9' is not one of" in result.output and "'stage1a'" in result.output


def test_run_stage_hands_overrides_and_seed_to_the_stage(monkeypatch):
    import exe_coder.stages as stages
    import exe_coder.train.blas as blas

    seen = {}

    class Result:
        report_files, seconds = {}, {}

    def fake_run_stage(stage, **kwargs):
        seen.update(kwargs, stage=stage)
        return Result()

    monkeypatch.setattr(stages, "run_stage", fake_run_stage)
    monkeypatch.setattr(blas, "ensure_optimized_blas", lambda echo: None)
    result = runner.invoke(app, ["run-stage", "STAGE0", "--set", "train.max_steps=3", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert seen["stage"] == "stage0" and seen["overrides"] == ["train.max_steps=3", "run.seed=7"]


def _capture_evaluate(monkeypatch) -> dict:
    import exe_coder.evaluate.report as report

    seen: dict = {}

    def fake(predictions, out, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(report, "evaluate_files", fake)
    return seen


def test_evaluate_takes_the_run_as_weights_folder_or_file(monkeypatch, tmp_path: Path):
    seen = _capture_evaluate(monkeypatch)
    (tmp_path / "best_weights.safetensors").write_bytes(b"")
    for given in (tmp_path, tmp_path / "best_weights.safetensors"):
        result = runner.invoke(app, ["evaluate", "--predictions", "p.jsonl", "-o", "r.json", "--weights", str(given),
                                     "--split", "VAL"])
        assert result.exit_code == 0, result.output
        assert seen["ckpt"] == tmp_path and seen["split"] == "val"


def test_evaluate_keeps_ckpt_as_a_deprecated_alias(monkeypatch, tmp_path: Path):
    seen = _capture_evaluate(monkeypatch)
    result = runner.invoke(app, ["evaluate", "--predictions", "p.jsonl", "-o", "r.json", "--ckpt", str(tmp_path)])
    assert result.exit_code == 0 and seen["ckpt"] == tmp_path
    assert "--ckpt is deprecated; use --weights" in result.output
    both = runner.invoke(app, ["evaluate", "--predictions", "p", "-o", "r", "--ckpt", "a", "--weights", "b"])
    assert "--ckpt is the old spelling of --weights" in str(both.exception)


def test_config_overrides_put_shorthands_last():
    assert cli._config_overrides(["run.seed=1"], seed=2, max_steps=3, out=Path('we"ird')) == [
        "run.seed=1", "run.seed=2", "train.max_steps=3", 'run.output_dir="we\\"ird"',
    ]


class _Reexec(Exception):
    pass


@pytest.mark.parametrize("command", [
    ["infer", "--input", "missing.jsonl", "-o", "p.jsonl"],
    ["generate", "What is 1 plus 2?", "--weights", "missing_run", "-o", "e"],
    ["probe", "missing.jsonl", "--weights", "missing_run"],
    ["train", "--config", "missing.toml"],
    ["run-stage", "stage0"],
    ["acceptance"],
])
def test_commands_that_run_a_model_first_switch_to_the_fast_blas(monkeypatch, command):
    """Before anything else: the re-exec replaces the process, so work done before it is lost
    (Track B decodes 4.3x faster with OpenBLAS than with the reference BLAS of mlx[cpu])."""
    import exe_coder.train.blas as blas

    def reexec(echo):
        raise _Reexec

    monkeypatch.setattr(blas, "ensure_optimized_blas", reexec)
    result = runner.invoke(app, command)
    assert isinstance(result.exception, _Reexec), result.output
