"""The stage table and the acceptance run end to end (tiny build, tiny model, few steps)."""

from __future__ import annotations

import json
import stat

import pytest

from exe_coder.acceptance import check_outputs, run_acceptance
from exe_coder.errors import UserError
from exe_coder.paths import CONFIGS_DIR, SPECS_DIR
from exe_coder.stages import STAGE_CONFIGS, default_paths
from exe_coder.train.config import load_config


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_every_stage_has_a_spec_and_a_config_reading_its_data(stage):
    paths = default_paths(stage)
    assert paths.spec == SPECS_DIR / f"{stage}.spec" and paths.spec.is_file()
    config = load_config(paths.config)
    # the config trains on the data that the stage's build writes
    assert config.data.train_jsonl.endswith(f"processed/{stage}/train.jsonl")
    assert config.data.val_jsonl.endswith(f"processed/{stage}/val.jsonl")


def test_unknown_stage_and_missing_config_are_user_errors():
    with pytest.raises(UserError, match="unknown stage 'stage9'"):
        default_paths("stage9")
    with pytest.raises(UserError, match="no spec for stage"):
        default_paths("stage9", config=CONFIGS_DIR / "x.toml")


def test_acceptance_end_to_end(tmp_path):
    sizes = {"train": 16, "val": 8, "test": 8}
    work = tmp_path / "acceptance"
    checks, result = run_acceptance(train_n=16, val_n=8, test_n=8, steps=20, work=work)
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    assert not failed
    names = {c.name for c in checks}
    assert {"build train.jsonl", "build val binaries", "train metrics.jsonl", "evaluate val report",
            "oracle scores 1.0"} <= names

    reports = work / "reports" / "stage0" / "acceptance"  # keyed by stage and run name
    report = json.loads((reports / "stage0_val.json").read_text())
    assert report["metrics"]["n"] == 8 and report["baseline"]["mode"] == "regex_baseline"
    assert report["split_role"].startswith("checkpoint-selection") and report["metrics"]["too_small_to_judge"]
    assert report["metrics"]["intervals"]["answer_accuracy"]["n"] == 8
    card = report["run_card"]
    assert card["written_by"] == "run-stage" and card["run_name"] == "acceptance" and card["seed"] is not None
    assert set(card["phases_s"]) == {"build", "train", "infer test", "evaluate test", "infer val"}
    # stage0's prompts carry their operands in digits: the baseline gets every answer
    assert report["baseline"]["metrics"]["answer_accuracy"] == 1.0
    assert report["training"]["train_loss_start"] > report["training"]["train_loss_end"]
    summary = json.loads((reports / "stage0_run.json").read_text())
    assert set(summary["seconds"]) == {"build", "train", "infer val", "evaluate val", "infer test", "evaluate test"}
    assert summary["headline_split"] == "test" and summary["run_card"]["phases_s"] == summary["seconds"]
    assert json.loads((reports / "run_card.json").read_text()) == summary["run_card"]
    # every report, prediction file, the run summary and card are ordinary shared files
    shared = [*reports.iterdir(), *(work / "predictions" / "stage0" / "acceptance").iterdir(), work / "acceptance.toml"]
    assert len(shared) == 15
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in shared} == {p.name: 0o644 for p in shared}

    # the checks can fail: a missing plot and a truncated predictions file are caught
    (reports / "stage0_test_slices.png").unlink()
    pred = work / "predictions" / "stage0" / "acceptance" / "stage0_val_model.jsonl"
    pred.write_text("".join(pred.read_text().splitlines(keepends=True)[:-1]))
    paths = default_paths("stage0")
    paths.predictions_dir, paths.reports_dir = work / "predictions", work / "reports"
    (work / "data" / "stage0" / json.loads((work / "data" / "stage0" / "test.jsonl").read_text().splitlines()[0])["binary_path"]).unlink()
    again = {c.name: c.passed for c in check_outputs(result, paths, sizes, work / "data" / "stage0", work / "bin" / "stage0")}
    assert again["evaluate test report"] is False
    assert again["infer stage0_val_model.jsonl"] is False
    assert again["build test binaries"] is False
    assert again["evaluate val report"] is True and again["build val binaries"] is True


def test_acceptance_never_deletes_a_foreign_folder(tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious\n")
    with pytest.raises(UserError, match="not an earlier acceptance run"):
        run_acceptance(work=keep)
    assert (keep / "notes.txt").read_text() == "precious\n"


def test_a_config_for_another_stage_is_refused_before_any_work(tmp_path):
    from exe_coder.stages import run_stage

    with pytest.raises(UserError, match="trains on stage0's data, not stage1's"):
        run_stage("stage1", config=CONFIGS_DIR / "sft_stage0_overfit.toml")
    with pytest.raises(UserError, match="config file not found"):
        run_stage("stage0", config=tmp_path / "none.toml")


def test_outputs_are_keyed_by_stage_and_run_name(tmp_path):
    from exe_coder.stages import StagePaths

    a, b = (StagePaths(spec=tmp_path, config=tmp_path, predictions_dir=tmp_path / "p", reports_dir=tmp_path / "r", run=run)
            for run in ("sft_a", "sft_b"))
    assert a.report("stage1", "test") == tmp_path / "r" / "stage1" / "sft_a" / "stage1_test.json"
    assert a.predictions("stage1", "val", "model") == tmp_path / "p" / "stage1" / "sft_a" / "stage1_val_model.jsonl"
    assert a.report("stage1", "test") != b.report("stage1", "test")  # two configs, two reports
    assert a.predictions("stage1", "test", "model") != b.predictions("stage1", "test", "model")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "back\\slash", " padded"])
def test_a_run_name_that_is_no_folder_name_is_refused_before_any_work(tmp_path, name):
    from exe_coder.stages import run_stage
    from exe_coder.train.config import dump_toml

    raw = load_config(CONFIGS_DIR / "sft_stage0_overfit.toml").model_dump(mode="json", exclude_none=True)
    raw["run"]["name"] = name
    config = tmp_path / "c.toml"
    config.write_text(dump_toml(raw))
    with pytest.raises(UserError, match="cannot name an output folder") as err:
        run_stage("stage0", config=config)
    assert str(config) in str(err.value) and "\n" not in str(err.value)
