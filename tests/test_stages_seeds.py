"""run-stage --seeds: one run a seed on one build, outputs kept apart, the mean ± sd table."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from exe_coder.acceptance import acceptance_config
from exe_coder.cli import app
from exe_coder.errors import UserError
from exe_coder.paths import CONFIGS_DIR, SPECS_DIR
from exe_coder.stages import STAGE_CONFIGS, StagePaths, parse_seeds, run_stage_seeds

runner = CliRunner()


@given(st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=6, unique=True), st.sampled_from(["", " "]))
def test_a_list_of_distinct_integers_is_read_in_order(seeds, pad):
    assert parse_seeds(",".join(f"{pad}{s}{pad}" for s in seeds)) == seeds


@pytest.mark.parametrize(
    "text,why",
    [("1,2,1", "seed 1 is given twice"), ("3,03", "seed 3 is given twice"), ("1,x", "'x' is not an integer"),
     ("1,,2", "'' is not an integer"), ("1.5,2", "'1.5' is not an integer"), ("1_0,2", "'1_0' is not an integer"),
     ("", "'' is not an integer"), ("1,\n2x", "'2x' is not an integer")],
)
def test_a_bad_seed_list_is_a_one_line_error(text, why):
    with pytest.raises(UserError, match=why) as err:
        parse_seeds(text)
    assert "\n" not in str(err.value)


def test_the_cli_refuses_seed_with_seeds_and_a_bad_list_before_any_work(monkeypatch):
    import exe_coder.stages as stages
    import exe_coder.train.blas as blas

    calls = []
    monkeypatch.setattr(stages, "run_stage_seeds", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(stages, "run_stage", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(blas, "ensure_optimized_blas", lambda echo: None)
    both = runner.invoke(app, ["run-stage", "stage0", "--seed", "1", "--seeds", "1,2"])
    assert isinstance(both.exception, UserError) and "give one of them" in str(both.exception)
    bad = runner.invoke(app, ["run-stage", "stage0", "--seeds", "1,1"])
    assert isinstance(bad.exception, UserError) and "given twice" in str(bad.exception)
    assert calls == []


def test_the_cli_hands_the_seeds_and_overrides_to_run_stage_seeds(monkeypatch, tmp_path):
    import exe_coder.stages as stages
    import exe_coder.train.blas as blas

    seen = {}

    class Many:
        table = "| the table |\n"
        table_files = [tmp_path / "x_seeds.md"]

    def fake(stage, seeds, **kwargs):
        seen.update(stage=stage, seeds=seeds, **kwargs)
        return Many()

    monkeypatch.setattr(stages, "run_stage_seeds", fake)
    monkeypatch.setattr(blas, "ensure_optimized_blas", lambda echo: None)
    result = runner.invoke(app, ["run-stage", "stage0", "--seeds", "3, 1,2", "--set", "train.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert seen["stage"] == "stage0" and seen["seeds"] == [3, 1, 2]
    assert seen["overrides"] == ["train.max_steps=3"]  # no run.seed: each seed sets its own
    assert "| the table |" in result.output and "x_seeds.md" in result.output


def _stage0_in(tmp_path, steps: int):
    """(work folder, data folder, StagePaths) of a short stage0 run that writes only under tmp_path."""
    work = tmp_path / "w"
    data_dir = work / "data" / "stage0"
    config = acceptance_config(CONFIGS_DIR / f"{STAGE_CONFIGS['stage0']}.toml", work, data_dir, steps=steps)
    paths = StagePaths(spec=SPECS_DIR / "stage0.spec", config=config,
                       predictions_dir=work / "predictions", reports_dir=work / "reports")
    return work, data_dir, paths


def test_one_seed_runs_named_as_a_groups_seed_with_no_mean(tmp_path):
    """--seeds 7 names the run <name>_seed7 in <output_dir>_seed7, where the next stage's
    "{seed}" start finds it; one seed has no spread, so its table has no mean ± sd row."""
    work, data_dir, paths = _stage0_in(tmp_path, steps=4)
    one = run_stage_seeds("stage0", [7], paths=paths, force=True, sizes={"train": 8, "val": 4, "test": 4},
                          data_dir=data_dir, binaries_dir=work / "bin" / "stage0")
    assert one.results[7].run_dir == work / "checkpoints_seed7"
    card = json.loads((work / "reports" / "stage0" / "acceptance_seed7" / "run_card.json").read_text())
    assert card["seed"] == 7 and card["run_name"] == "acceptance_seed7"
    assert one.groups == [] and "mean ± sd)" not in one.table
    assert [(r.run, r.split) for r in one.rows] == [("acceptance_seed7", "test"), ("acceptance_seed7", "val")]


def test_two_seeds_share_one_build_keep_their_own_outputs_and_get_a_mean_and_sd(tmp_path, monkeypatch):
    import exe_coder.dataset.build as build

    builds = []
    real_build = build.build_stage
    monkeypatch.setattr(build, "build_stage", lambda *a, **k: builds.append(a) or real_build(*a, **k))
    work, data_dir, paths = _stage0_in(tmp_path, steps=10)
    many = run_stage_seeds(
        "stage0", [5, 6], paths=paths, force=True, sizes={"train": 12, "val": 6, "test": 6},
        data_dir=data_dir, binaries_dir=work / "bin" / "stage0", overrides=["train.eval_interval=10"],
    )
    # the data's seed is the spec's: --force rebuilds once, not once a seed
    assert len(builds) == 1
    # each seed its own checkpoints, predictions and reports, trained with its own seed
    runs = {seed: r.run_dir for seed, r in many.results.items()}
    assert runs == {5: work / "checkpoints_seed5", 6: work / "checkpoints_seed6"}
    for seed in (5, 6):
        assert (runs[seed] / "best_weights.safetensors").is_file()
        assert "eval_interval = 10" in (runs[seed] / "config.toml").read_text()  # the --set reached each seed
        card = json.loads((work / "reports" / "stage0" / f"acceptance_seed{seed}" / "run_card.json").read_text())
        assert card["seed"] == seed and card["run_name"] == f"acceptance_seed{seed}"
        assert (work / "predictions" / "stage0" / f"acceptance_seed{seed}" / "stage0_test_model.jsonl").is_file()
    cards = [json.loads((work / "reports" / "stage0" / f"acceptance_seed{s}" / "run_card.json").read_text()) for s in (5, 6)]
    assert cards[0]["config_sha256"] != cards[1]["config_sha256"]
    assert cards[0]["config_sha256_except_seed"] == cards[1]["config_sha256_except_seed"]

    # one mean ± sd row a split, test first, from the seeds' own reports
    assert [(g.split, g.seeds) for g in many.groups] == [("test", [5, 6]), ("val", [5, 6])]
    for group in many.groups:
        accs = [many.results[s].reports[group.split].metrics.answer_accuracy for s in (5, 6)]
        assert group.mean_sd["answer_accuracy"] == pytest.approx((statistics.fmean(accs), statistics.stdev(accs)))
    md, csv_file = many.table_files
    assert md == work / "reports" / "stage0" / "acceptance_seeds.md" and csv_file.suffix == ".csv"
    assert md.read_text() == many.table
    assert "2 seeds" in many.table and "acceptance_seed{5,6} (mean ± sd)" in many.table
    lines = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    assert [(r["kind"], r["split"], r["seed"]) for r in lines] == [
        ("run", "test", "5"), ("run", "test", "6"), ("run", "val", "5"), ("run", "val", "6"),
        ("seed_mean", "test", ""), ("seed_mean", "val", ""),
    ]
