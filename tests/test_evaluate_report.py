"""Report files: the JSON schema, the Markdown's content, PNGs, atomic writes, the CLI errors."""

from __future__ import annotations

import json
import os
import stat

import pytest
from _evaluate_factories import example, failed, oracle, unparsed, wrong_patch
from typer.testing import CliRunner

from exe_coder.cli import app
from exe_coder.errors import UserError
from exe_coder.evaluate import report as report_mod
from exe_coder.evaluate.report import EvalReport, evaluate_files, render_markdown
from exe_coder.runtime.outcome import OutcomeKind

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _examples(n: int, split: str = "val") -> list:
    return [example(a=i * 7 - 20, b=13 - i * 3, i=i, split=split, template_id=f"t{i % 3}") for i in range(n)]


def _model_preds(exs) -> list:
    m = "sft_patch_model"
    return ([oracle(e, mode=m) for e in exs[:-3]]
            + [unparsed(exs[-3], mode=m), wrong_patch(exs[-2], 1, 2, mode=m), failed(exs[-1], OutcomeKind.CRASH, mode=m)])


def _write(path, preds):
    path.write_text("".join(p.model_dump_json() + "\n" for p in preds))
    return path


@pytest.fixture
def run_dir(tmp_path):
    """A predictions file, a baseline file and a run dir with a training log."""
    exs = _examples(12)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "train_loss": 3.0 / s}) + "\n" for s in range(1, 40))
        + json.dumps({"step": 39, "val_loss": 0.2}) + "\n"
    )
    _write(tmp_path / "model.jsonl", _model_preds(exs))
    _write(tmp_path / "base.jsonl", [oracle(e, mode="regex_baseline") for e in exs])
    return tmp_path


def test_report_files_written(run_dir):
    out = run_dir / "reports" / "stage0_val.json"
    report, written = evaluate_files(run_dir / "model.jsonl", out, split="val", ckpt=run_dir / "ckpt",
                                     baseline=run_dir / "base.jsonl")
    names = sorted(p.name for p in written)
    assert names == ["stage0_val.json", "stage0_val.md", "stage0_val_slices.png", "stage0_val_training.png"]
    assert sorted(p.name for p in out.parent.iterdir()) == names  # no temporary files left

    data = json.loads(out.read_text())
    parsed = EvalReport.model_validate(data)  # the JSON is the report's schema, exactly
    assert parsed.schema_version == "exe-coder.eval-report/1"
    assert set(data) >= {"metrics", "training", "latency_ms", "error_taxonomy", "slices", "milestone_gates",
                         "baseline", "plots"}
    assert set(data["milestone_gates"]) == {"g0_loop_sanity", "g1_pilot_success", "g2_rl_ready"}
    assert data["metrics"]["answer_accuracy"] == 0.75
    assert data["baseline"]["metrics"]["answer_accuracy"] == 1.0
    assert data["training"]["train_loss_start"] == 3.0 and data["training"]["val_loss"] == 0.2
    assert data["error_taxonomy"] == {"ok": 9, "crash": 1, "parse_error": 1, "wrong_output": 1}
    assert data["plots"] == ["stage0_val_training.png", "stage0_val_slices.png"]
    assert report.metrics == parsed.metrics

    md = (out.parent / "stage0_val.md").read_text()
    for heading in ("## Headline", "## Milestone gates", "## Slices", "### template", "### magnitude_pair",
                    "### sign_pattern", "## Error taxonomy", "## Latency per prompt (ms)", "## Plots"):
        assert heading in md
    assert "| answer_accuracy | 0.750 | 1.000 | -0.250 |" in md  # model beside the baseline
    assert "**g0_loop_sanity**: FAIL" in md and "answer_accuracy = 0.75 not >= 0.9" in md
    assert "![stage0_val_slices.png](stage0_val_slices.png)" in md

    for png in ("stage0_val_slices.png", "stage0_val_training.png"):
        blob = (out.parent / png).read_bytes()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 1000


def test_report_files_are_readable_by_everyone(run_dir):
    """Reports are for sharing: 0644 like any file a tool writes, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        _, written = evaluate_files(run_dir / "model.jsonl", run_dir / "m" / "r.json", ckpt=run_dir / "ckpt")
    finally:
        os.umask(old)
    assert len(written) == 4
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_folder_as_report_out_is_a_one_line_error(run_dir):
    folder = run_dir / "reports_dir"
    folder.mkdir()
    res = CliRunner().invoke(app, ["evaluate", "--predictions", str(run_dir / "model.jsonl"), "--out", str(folder)])
    assert res.exit_code != 0 and isinstance(res.exception, UserError)
    assert "is a folder" in str(res.exception) and "\n" not in str(res.exception)
    assert list(folder.iterdir()) == [] and sorted(p.name for p in run_dir.iterdir() if p.suffix == ".png") == []


def test_report_is_deterministic(run_dir):
    a, b = run_dir / "a" / "r.json", run_dir / "b" / "r.json"
    for out in (a, b):
        evaluate_files(run_dir / "model.jsonl", out, split="val", ckpt=run_dir / "ckpt")
    for name in ("r.json", "r.md", "r_training.png", "r_slices.png"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name


def test_no_training_log_no_training_plot(run_dir):
    report, written = evaluate_files(run_dir / "model.jsonl", run_dir / "o" / "r.json")
    assert report.training is None and report.split is None
    assert sorted(p.name for p in written) == ["r.json", "r.md", "r_slices.png"]
    g0 = report.milestone_gates["g0_loop_sanity"]
    assert not g0.passed and "could not be measured" in g0.conditions[0].reason


def test_failed_report_leaves_nothing(run_dir, monkeypatch):
    out = run_dir / "o" / "r.json"
    out.parent.mkdir()
    out.write_text("previous report\n")

    def broken(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report_mod, "slice_accuracy_png", broken)
    with pytest.raises(RuntimeError):
        evaluate_files(run_dir / "model.jsonl", out, ckpt=run_dir / "ckpt")
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]
    assert out.read_text() == "previous report\n"


def test_input_errors(run_dir):
    out = run_dir / "o" / "r.json"
    with pytest.raises(UserError, match="predictions file not found"):
        evaluate_files(run_dir / "nope.jsonl", out)
    with pytest.raises(UserError, match="checkpoint directory not found"):
        evaluate_files(run_dir / "model.jsonl", out, ckpt=run_dir / "no_ckpt")
    with pytest.raises(UserError, match="expected split test"):
        evaluate_files(run_dir / "model.jsonl", out, split="test")
    _write(run_dir / "short.jsonl", [oracle(e, mode="regex_baseline") for e in _examples(5)])
    with pytest.raises(UserError, match="baseline covers other examples"):
        evaluate_files(run_dir / "model.jsonl", out, baseline=run_dir / "short.jsonl")
    exs = _examples(2)
    _write(run_dir / "mixed.jsonl", [oracle(exs[0]), oracle(exs[1], mode="sft_patch_model")])
    with pytest.raises(UserError, match="mix modes"):
        evaluate_files(run_dir / "mixed.jsonl", out)
    (run_dir / "empty.jsonl").write_text("")
    with pytest.raises(UserError, match="no predictions"):
        evaluate_files(run_dir / "empty.jsonl", out)
    assert not out.parent.exists()  # nothing written by any failed call


def test_cli_evaluate(run_dir):
    runner = CliRunner()
    out = run_dir / "cli" / "r.json"
    res = runner.invoke(app, ["evaluate", "--ckpt", str(run_dir / "ckpt"), "--split", "val",
                              "--predictions", str(run_dir / "model.jsonl"), "--out", str(out),
                              "--baseline", str(run_dir / "base.jsonl")])
    assert res.exit_code == 0, res.output
    assert "answer_accuracy" in res.output and "regex_baseline" in res.output
    assert "g1_pilot_success: PASS" in res.output
    assert out.is_file() and (out.parent / "r.md").is_file()


def test_cli_evaluate_missing_file_is_one_line_error(run_dir):
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", "from exe_coder.cli import main; main()", "evaluate",
         "--predictions", str(run_dir / "missing.jsonl"), "--out", str(run_dir / "r.json")],
        capture_output=True, text=True,
    )
    assert res.returncode == 2
    assert res.stderr == f"error: {run_dir / 'missing.jsonl'}: predictions file not found\n"
    assert not (run_dir / "r.json").exists()


def test_markdown_snapshot(snapshot):
    exs = _examples(9)
    md = render_markdown(
        report_mod.build_report(_model_preds(exs), split="val", predictions_path="p.jsonl",
                                baseline=[oracle(e, mode="regex_baseline") for e in exs],
                                baseline_path="b.jsonl"),
        title="snapshot",
    )
    assert md == snapshot


def test_reward_beta_from_the_runs_config(run_dir):
    out = run_dir / "o" / "r.json"
    report, _ = evaluate_files(run_dir / "model.jsonl", out, ckpt=run_dir / "ckpt")
    assert report.reward_beta == 0.0  # no config.toml: SFT, beta 0
    (run_dir / "ckpt" / "config.toml").write_text("[rl]\nbeta = 0.05\n")
    report, _ = evaluate_files(run_dir / "model.jsonl", out, ckpt=run_dir / "ckpt")
    assert report.reward_beta == 0.05
    assert report.metrics.avg_reward == evaluate_files(run_dir / "model.jsonl", out)[0].metrics.avg_reward
    report, _ = evaluate_files(run_dir / "model.jsonl", out, ckpt=run_dir / "ckpt", beta=0.5)
    assert report.reward_beta == 0.5
