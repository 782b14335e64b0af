"""The evaluation reports kept in ``docs/results`` (the runs behind the README's results table)
and ``docs/variants/results`` (runs of unshipped stage variants) still load as reports, so
``exe-coder compare`` rebuilds their tables on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from exe_coder.evaluate.compare import compare, load_reports

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("folder", ["results", "variants/results"])
def test_every_kept_report_loads_and_carries_its_run_card(folder):
    files = sorted((DOCS / folder).rglob("*.json"))
    loaded = load_reports(files)  # a JSON that is not a valid report is an error, named
    assert len(loaded) == len(files) >= 2
    for path, report in loaded:
        assert report.run_card is not None and report.run_card.run_name, path
        stage = path.parent.parent.name
        assert path.name == f"{stage}_{report.split}.json", path  # as run-stage names them
    rows, _, _ = compare([DOCS / folder], "all")
    assert len(rows) == len(files)


@pytest.mark.parametrize(
    "stage,config,start,runs",
    [("stage3", "rl_mainline", "sft_stage3_shapes", "rl_stage3_from_shapes"),
     ("stage4", "rl_stage4", "sft_stage4_from_stage3", "rl_stage4_from_stage3")],
)
def test_the_shipped_rl_runs_are_their_configs_and_group_as_one(stage, config, start, runs):
    """The RL rows behind the README's stage3 and stage4 figures ran the shipped RL config with
    each seed's SFT run as a literal init_ckpt (docs/results/README.md). Rebuilt from that
    command, the config hashes to what each card recorded, and its hash without the seed is the
    one the cards carry, so compare gives the three seeds one mean ± sd row."""
    from exe_coder.paths import CONFIGS_DIR
    from exe_coder.train.config import apply_overrides, load_config
    from exe_coder.train.runcard import config_hashes

    base = load_config(CONFIGS_DIR / f"{config}.toml")
    for seed in (1, 2, 1337):
        folder = DOCS / "results" / stage / f"{runs}_seed{seed}"
        rebuilt = apply_overrides(base, [
            f"run.seed={seed}", f'run.name="{runs}_seed{seed}"', f'run.output_dir="outputs/checkpoints/{runs}_seed{seed}"',
            f'rl.init_ckpt="outputs/checkpoints/{start}_seed{seed}"'])
        for _, report in load_reports(sorted(folder.glob("*.json"))):
            card = report.run_card
            assert (card.config_sha256, card.config_sha256_except_seed) == config_hashes(rebuilt)
    _, groups, _ = compare([DOCS / "results" / stage], "test")
    (group,) = [g for g in groups if g.run == f"{runs}_seed{{1,1337,2}}"]
    assert group.seeds == [1, 2, 1337]


def test_every_kept_probe_read_loads_and_names_its_probe():
    """The blind-probe reads behind docs/experiments.md's figures (``docs/probes/results/<probe>/
    <model>/report.{json,md}``, from ``infer`` then ``evaluate`` as each probe spec's header gives
    them) load as reports of a shipped probe's whole test split."""
    files = sorted((DOCS / "probes" / "results").rglob("*.json"))
    loaded = load_reports(files)
    assert len(loaded) == len(files) >= 2
    probes = {p.stem for p in (DOCS / "probes").glob("*.spec")}
    for path, report in loaded:
        assert path.name == "report.json" and path.with_suffix(".md").is_file(), path
        assert path.parent.parent.name in probes, path
        assert report.split == "test" and report.metrics.n == 2000, path
        assert report.reading_errors, path  # read since the report counts them
