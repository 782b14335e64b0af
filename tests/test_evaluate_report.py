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
    assert parsed.schema_version == "exe-coder.eval-report/2"
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
    assert "| answer_accuracy | 0.750 | [0.468, 0.911] | 9/12 | 1.000 | -0.250 |" in md  # model beside the baseline
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


# --- issue 9: split roles, wrong examples, run card, training plot --------------------------


def test_report_lists_wrong_examples_up_to_the_limit(run_dir):
    out = run_dir / "w" / "r.json"
    report, _ = evaluate_files(run_dir / "model.jsonl", out, split="val", failure_limit=2)
    assert report.failures_total == 3 and [f.id for f in report.failures] == ["val-00009", "val-00010"]
    first, second = report.failures
    assert (first.outcome, first.predicted, first.gold) == ("parse_error", "A=1;B", "A=43;B=-14\n")
    assert (second.outcome, second.printed, second.expected_stdout) == ("wrong_output", "3\n", "33\n")
    data = json.loads(out.read_text())
    assert data["failures_total"] == 3 and len(data["failures"]) == 2 and data["failure_limit"] == 2
    md = (out.parent / "r.md").read_text()
    assert "3 of 12 examples wrong" in md and "the first 2, wrong answers first, each kind in file order" in md
    assert "| val-00010 | What is 50 plus -17? | `A=50;B=-17` | `A=1;B=2` | 33 | 3 | wrong_output |" in md
    with pytest.raises(UserError, match="failure limit"):
        evaluate_files(run_dir / "model.jsonl", out, failure_limit=-1)


def test_right_answer_from_a_wrong_patch_is_listed_and_pipes_stay_in_their_cell():
    ex = example(a=3, b=4, prompt="What is 3 | 4?")
    swapped = wrong_patch(ex, 4, 3, mode="sft_patch_model")
    report = report_mod.build_report([swapped], split="test", predictions_path="p.jsonl")
    assert report.failures[0].answer_correct is True and report.metrics.answer_accuracy == 1.0
    md = render_markdown(report)
    assert "| What is 3 \\| 4? |" in md and "ok (right answer)" in md


def test_wrong_answers_are_listed_before_right_answers_from_another_patch():
    exs = [example(a=3, b=4, i=i) for i in range(3)]
    preds = [wrong_patch(exs[0], 4, 3, mode="sft_patch_model"), wrong_patch(exs[1], 5, 3, mode="sft_patch_model"),
             oracle(exs[2], mode="sft_patch_model")]
    report = report_mod.build_report(preds, split="test", predictions_path="p.jsonl", failure_limit=1)
    assert report.failures_total == 2 and [f.answer_correct for f in report.failures] == [False]


def test_test_is_the_headline_and_val_the_checkpoint_selection_split(run_dir):
    exs_test = _examples(4, split="test")
    _write(run_dir / "test.jsonl", [oracle(e, mode="sft_patch_model") for e in exs_test])
    test, _ = evaluate_files(run_dir / "test.jsonl", run_dir / "t" / "test.json", split="test")
    val, _ = evaluate_files(run_dir / "model.jsonl", run_dir / "t" / "val.json", split="val")
    assert test.split_role.startswith("headline split")
    assert val.split_role.startswith("checkpoint-selection split")
    assert json.loads((run_dir / "t" / "val.json").read_text())["split_role"] == val.split_role
    assert (run_dir / "t" / "test.md").read_text().startswith("# Evaluation: test, test (headline)\n")
    val_md = (run_dir / "t" / "val.md").read_text()
    assert val_md.startswith("# Evaluation: val, val (checkpoint selection)\n")
    assert "so its figures lean optimistic; test is the headline" in val_md
    assert report_mod.headline_lines(val)[0] == "val (checkpoint selection)"


def test_report_carries_the_runs_card_or_makes_one(run_dir):
    from exe_coder.train.runcard import make_run_card, write_run_card

    out = run_dir / "c" / "r.json"
    report, _ = evaluate_files(run_dir / "model.jsonl", out, ckpt=run_dir / "ckpt")
    card = report.run_card
    assert card.written_by == "evaluate" and card.seed is None  # the fixture's run has no config.toml
    assert card.python and card.platform and card.blas and card.exe_coder_version
    assert "## Run card" in (run_dir / "c" / "r.md").read_text()
    trained = make_run_card(written_by="train", started="2025-01-02T03:04:05+00:00", phases_s={"train": 12.5})
    write_run_card(run_dir / "ckpt", trained)
    report, _ = evaluate_files(run_dir / "model.jsonl", out, ckpt=run_dir / "ckpt")
    assert report.run_card == trained
    assert json.loads(out.read_text())["run_card"]["phases_s"] == {"train": 12.5}
    assert "wall time: train 12.5 s" in (run_dir / "c" / "r.md").read_text()


def test_a_damaged_run_card_is_a_one_line_error(run_dir):
    (run_dir / "ckpt" / "run_card.json").write_text('{"written_by": 3}\n')
    with pytest.raises(UserError, match="not a run card") as err:
        evaluate_files(run_dir / "model.jsonl", run_dir / "d" / "r.json", ckpt=run_dir / "ckpt")
    assert "\n" not in str(err.value) and "run_card.json" in str(err.value)


def _png_height(blob: bytes) -> int:
    return int.from_bytes(blob[20:24], "big")  # IHDR: width at 16, height at 20


def test_training_plot_shows_accuracy_lr_and_grad_norm_panels(run_dir):
    from exe_coder.evaluate.metrics import read_training_log
    from exe_coder.evaluate.plots import training_curves_png

    log = run_dir / "ckpt" / "metrics.jsonl"
    base = read_training_log(log)
    assert base.series == {}
    three = _png_height(training_curves_png(base))
    lines = [json.dumps({"step": s, "loss": 3.0 / s, "lr": 1e-3 * s, "grad_norm": 1.0 / s}) for s in range(1, 20)]
    lines += [json.dumps({"step": 10, "val_loss": 0.5, "val_exact_match": 0.25, "answer_accuracy": 0.5}),
              json.dumps({"step": 19, "val_loss": 0.4, "val_exact_match": None, "answer_accuracy": 0.75})]
    log.write_text("\n".join(lines) + "\n")
    full = read_training_log(log)
    assert full.series["val_exact_match"] == [(10, 0.25)]  # null is not a point
    assert full.series["answer_accuracy"] == [(10, 0.5), (19, 0.75)] and len(full.series["lr"]) == 19
    assert full.best_val_exact_match == 0.25
    four = _png_height(training_curves_png(full))
    assert three == 720 and four == 960  # loss, accuracy, lr; then the gradient norm too
