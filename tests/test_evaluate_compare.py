"""``exe-coder compare``: one table across runs and seeds, as rich text, Markdown and CSV."""

from __future__ import annotations

import csv
import io
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st
from _evaluate_factories import example, oracle, wrong_patch
from typer.testing import CliRunner

from exe_coder import files
from exe_coder.cli import app
from exe_coder.errors import UserError
from exe_coder.evaluate.compare import compare, csv_text, group_name, markdown, seed_clashes
from exe_coder.evaluate.report import build_report
from exe_coder.train.runcard import RunCard


def _card(name: str, seed: int, family: str, train_s: float, manifest: str | None = None) -> RunCard:
    return RunCard(written_by="run-stage", run_name=name, dataset="data/processed/stage1", exe_coder_version="0",
                   python="3", platform="p", machine="m", blas="b", seed=seed, config_sha256=f"{family}-{seed}",
                   config_sha256_except_seed=family, manifest_sha256=manifest, phases_s={"build": 1.0, "train": train_s})


def _report(path, *, right: int, n: int = 10, split: str = "test", card: RunCard | None = None):
    exs = [example(a=i, b=2, i=i, split=split) for i in range(n)]
    preds = [oracle(e, mode="sft_patch_model") for e in exs[:right]]
    preds += [wrong_patch(e, e.a + 1, 9, mode="sft_patch_model") for e in exs[right:]]
    report = build_report(preds, split=split, predictions_path="p.jsonl", run_card=card)
    files.write_text(path, report.model_dump_json(indent=2))
    return path


@pytest.fixture
def reports(tmp_path):
    root = tmp_path / "reports"
    _report(root / "stage1" / "a-s1" / "stage1_test.json", right=8, card=_card("a-s1", 1, "A", 100.0))
    _report(root / "stage1" / "a-s2" / "stage1_test.json", right=6, card=_card("a-s2", 2, "A", 120.0))
    _report(root / "stage1" / "b" / "stage1_test.json", right=9, card=_card("b", 1, "B", 50.0))
    _report(root / "stage1" / "b" / "stage1_val.json", right=10, split="val", card=_card("b", 1, "B", 50.0))
    files.write_text(root / "stage1" / "b" / "run_card.json", _card("b", 1, "B", 50.0).model_dump_json())  # not a report
    return root


def test_rows_per_run_and_mean_sd_per_config_across_seeds(reports):
    rows, groups, skipped = compare([reports])
    assert [r.run for r in rows] == ["a-s1", "a-s2", "b"] and skipped == 1  # the val report
    assert rows[0].values["answer_accuracy"][0] == 0.8 and rows[0].values["answer_accuracy"][1] < 0.8
    assert rows[2].train_s == 50.0 and rows[2].gates["g1_pilot_success"] is True
    (group,) = groups  # B has one seed: no group
    assert group.seeds == [1, 2] and group.run == "a-s{1,2}"
    mean, sd = group.mean_sd["answer_accuracy"]
    assert mean == pytest.approx(0.7) and sd == pytest.approx(statistics.stdev([0.8, 0.6]))
    assert group.train_s == 110.0


def test_one_config_on_two_builds_of_a_stage_is_two_runs(tmp_path):
    """A variant spec built under a stage's name trains with the stage's config: its seeds group
    with each other by their data's manifest, never with the stage's own seeds."""
    root = tmp_path / "reports"
    for name, seed, manifest, right in [("stage_s1", 1, "M1", 9), ("stage_s2", 2, "M1", 8),
                                        ("variant_s1", 1, "M2", 5), ("variant_s2", 2, "M2", 4)]:
        _report(root / name / "stage1_test.json", right=right, card=_card(name, seed, "A", 10.0, manifest))
    rows, groups, _ = compare([root])
    assert seed_clashes(rows) == []  # the variant's seed 1 is not "seed 1 of A again"
    assert sorted((g.run, g.mean_sd["answer_accuracy"][0]) for g in groups) == [
        ("stage_s{1,2}", pytest.approx(0.85)), ("variant_s{1,2}", pytest.approx(0.45))]


def test_a_seed_seen_twice_with_other_figures_is_named_not_averaged(reports, tmp_path):
    # an older run of config A, seed 1 (its data since changed): same hash, other figures
    old = _report(tmp_path / "old" / "a-s1" / "stage1_test.json", right=2, card=_card("a-s1", 1, "A", 90.0))
    rows, groups, _ = compare([reports, old.parent.parent])
    ((kept, other),) = seed_clashes(rows)
    assert kept.source.startswith(str(reports)) and other.source == str(old)
    (group,) = groups
    assert group.seeds == [1, 2] and group.mean_sd["answer_accuracy"][0] == pytest.approx(0.7)
    # one report read twice (its folder and itself) is no clash
    again = reports / "stage1" / "a-s1" / "stage1_test.json"
    assert seed_clashes(compare([reports, again])[0]) == []
    res = CliRunner().invoke(app, ["compare", str(reports), str(old)])
    assert res.exit_code == 0 and f"warning: {old} is seed 1 of a-s1's config again" in res.stderr
    # config B has one seed, so no mean: another B seed-1 report is only another row
    other_b = _report(tmp_path / "old" / "b" / "stage1_test.json", right=3, card=_card("b", 1, "B", 50.0))
    assert seed_clashes(compare([reports, other_b])[0]) == []


def test_markdown_and_csv(reports):
    rows, groups, _ = compare([reports])
    md = markdown(rows, groups)
    assert "| a-s1 | stage1 | test | 1 | 10 | 0.800 [0.490, 0.943] |" in md
    assert "| a-s{1,2} (mean ± sd) | stage1 | test | 2 seeds | 10 | 0.700 ± 0.141 |" in md
    table = list(csv.DictReader(io.StringIO(csv_text(rows, groups))))
    assert [t["kind"] for t in table] == ["run", "run", "run", "seed_mean"]
    assert float(table[1]["answer_accuracy"]) == 0.6 and float(table[1]["train_s"]) == 120.0
    assert float(table[3]["answer_accuracy_sd"]) == pytest.approx(0.1414, abs=1e-4) and table[3]["seeds"] == "2"


def test_split_all_and_explicit_files(reports):
    rows, _, skipped = compare([reports], split="all")
    assert len(rows) == 4 and skipped == 0
    rows, groups, _ = compare([reports / "stage1" / "b" / "stage1_val.json"], split="val")
    assert [r.split for r in rows] == ["val"] and groups == []


def test_bad_inputs_are_one_line_errors(reports, tmp_path):
    with pytest.raises(UserError, match="no such report"):
        compare([tmp_path / "missing"])
    with pytest.raises(UserError, match="not an exe-coder evaluation report"):
        compare([reports / "stage1" / "b" / "run_card.json"])
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(UserError, match="not a JSON report"):
        compare([tmp_path / "bad.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no evaluation reports found"):
        compare([tmp_path / "empty"])
    with pytest.raises(UserError, match="none of the 1 reports is of split test"):
        compare([reports / "stage1" / "b" / "stage1_val.json"])


def test_cli_compare_prints_and_writes(reports, tmp_path):
    res = CliRunner().invoke(app, ["compare", str(reports), "-o", str(tmp_path / "out" / "results")])
    assert res.exit_code == 0, res.output
    assert "a-s{1,2} (mean ± sd)" in res.output and "0.800 [0.490, 0.943]" in res.output  # brackets are not markup
    assert "1 reports of another split left out" in res.output
    assert (tmp_path / "out" / "results.md").read_text() == markdown(*compare([reports])[:2])
    assert (tmp_path / "out" / "results.csv").read_text().startswith("kind,run,data,split")
    res = CliRunner().invoke(app, ["compare", str(reports), "--split", "nope"])
    assert res.exit_code == 2


def test_rows_carry_the_baseline_and_the_heldout_slice(tmp_path):
    """The README's results table puts the model beside the regex baseline and shows the
    held-out-magnitude slice; a split without that slice shows none, never a made-up value."""
    exs = [example(a=i, b=2, i=i, magnitude_pair="heldout/heldout" if i < 4 else "core/core") for i in range(10)]
    preds = [oracle(e, mode="sft_patch_model") for e in exs[:7]] + [wrong_patch(e, e.a + 1, 9, mode="sft_patch_model") for e in exs[7:]]
    base = [oracle(e, mode="regex_baseline") for e in exs[:5]] + [wrong_patch(e, 0, 0, mode="regex_baseline") for e in exs[5:]]
    path = tmp_path / "r" / "stage1_test.json"
    files.write_text(path, build_report(preds, split="test", predictions_path="p", baseline=base, baseline_path="b").model_dump_json())
    (row,) = compare([path])[0]
    assert row.values["baseline_answer_accuracy"][0] == 0.5
    assert row.values["heldout_heldout_answer_accuracy"][0] == 1.0  # the 4 held-out rows were right
    plain = tmp_path / "s" / "stage0_test.json"
    files.write_text(plain, build_report(preds[4:], split="test", predictions_path="p").model_dump_json())
    (row,) = compare([plain])[0]
    assert row.values["heldout_heldout_answer_accuracy"] == (None, None, None)
    assert row.values["baseline_answer_accuracy"] == (None, None, None)


def test_seeds_group_by_their_config_as_read_now_where_the_run_folders_are_here(tmp_path):
    """A run whose config predates a key (at its default) and one whose config names it train
    alike: with their run folders here they group, though their cards' hashes differ; a run of
    another config does not."""
    from exe_coder.paths import CONFIGS_DIR
    from exe_coder.train.config import load_config

    base = load_config(CONFIGS_DIR / "sft_stage2_scale.toml")
    base = base.model_copy(update={"train": base.train.model_copy(update={"digit_place_shift": 0})})
    texts = {}
    for seed in (1, 2, 3):
        run = base.model_copy(update={"run": base.run.model_copy(update={"seed": seed})})
        texts[seed] = run.to_toml()
    texts[1] = texts[1].replace("digit_place_shift = 0\n", "")  # written before the key existed
    texts[3] = texts[3].replace("digit_permutation = 0.75", "digit_permutation = 0.5")  # another config
    assert "digit_place_shift" not in texts[1] and "digit_place_shift = 0" in texts[2]
    for seed, text in texts.items():
        ckpt = tmp_path / "ckpt" / f"s{seed}"
        files.write_text(ckpt / "config.toml", text)
        path = _report(tmp_path / "reports" / f"s{seed}" / "stage2_test.json", right=5 + seed,
                       card=_card(f"s{seed}", seed, f"card-{seed}", 10.0))
        data = path.read_text().replace('"ckpt": null', f'"ckpt": "{ckpt}"')
        assert data != path.read_text()
        path.write_text(data)
    rows, groups, _ = compare([tmp_path / "reports"])
    (group,) = groups
    assert group.seeds == [1, 2] and len(rows) == 3


def _brace_expand(label: str) -> list[str]:
    head, rest = label.split("{", 1)
    middles, foot = rest.rsplit("}", 1)
    return [head + m + foot for m in middles.split(",")]


@given(st.lists(st.text("ab_-12", max_size=8), min_size=2, max_size=5, unique=True))
def test_a_seed_groups_name_expands_to_its_runs_names(names):
    """Every run a mean averages is named in its row, and one run's name is not the
    group's: "sft_stage4_read (mean ± sd)" read as that one run's figure."""
    label = group_name(names)
    assert _brace_expand(label) == sorted(names)
    assert label not in names


def test_seed_group_names_read_as_in_the_readme():
    assert group_name(["sft_stage4_read_seed1", "sft_stage4_read"]) == "sft_stage4_read{,_seed1}"
    assert group_name(["run_seed1", "run_seed2", "run_seed1337"]) == "run_seed{1,1337,2}"
    assert group_name(["same", "same"]) == "same"
