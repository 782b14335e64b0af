"""One command a stage: build -> train -> infer (model and regex baseline) -> evaluate.

This is the seed's ``run_track_a_stage.py``. It is orchestration only: every step is another
module's library function, called in order, and every step's outputs are files in the usual
places, so a stage can be re-run, resumed or inspected one step at a time:

    data/processed/<stage>/{train,val,test}.jsonl, manifest.json   exe-coder build
    outputs/checkpoints/<run>/                                     exe-coder train
    outputs/predictions/<stage>/<run>/<stage>_<split>_{model,regex_baseline}.jsonl   exe-coder infer
    outputs/reports/<stage>/<run>/<stage>_<split>.{json,md} + _training/_slices.png  exe-coder evaluate
    outputs/reports/<stage>/<run>/<stage>_run.json, run_card.json  wall time of each step, gates, run card
    outputs/reports/<stage>/<run>_seeds.{md,csv}                    run-stage --seeds: mean and sd across seeds

<run> is the config's ``run.name``, so two configs of one stage keep their own outputs. Test is
the headline split; val chose the checkpoint, and its report says so.

``acceptance.py`` runs the same steps on a tiny stage0-shaped build with a tiny model.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from exe_coder import files
from exe_coder.errors import UserError
from exe_coder.paths import CONFIGS_DIR, SPECS_DIR

# stage -> the training config that trains it (configs/<name>.toml)
STAGE_CONFIGS: dict[str, str] = {
    "stage0": "sft_stage0_overfit",
    "stage1": "sft_stage1_pilot",
    "stage1a": "sft_stage1a_template_shift",
    "stage1b": "sft_stage1b_magnitude_shift",
    # stage1 and stage1b on the add_text program: operands as decimal text in the binary
    "stage1_text": "sft_stage1_text_pilot",
    "stage1b_text": "sft_stage1b_text_magnitude_shift",
    "stage2": "sft_stage2_scale",
    "stage3": "sft_stage3_words",
    "stage4": "sft_stage4_read",
}
# stage -> its Track B config (run-stage --track b): the model writes the whole image
TRACK_B_CONFIGS: dict[str, str] = {
    "stage1": "sft_stage1_trackb",
    "stage1b": "sft_stage1b_trackb",
    "stage1_text": "sft_stage1_text_trackb",
    "stage1b_text": "sft_stage1b_text_trackb",
}
EVAL_SPLITS = ("test", "val")  # the headline first
OUTPUTS_DIR = Path("outputs")  # relative to the working dir, like the configs' paths
INFER_BATCH = 64


@dataclass
class StagePaths:
    """Where one stage run reads and writes."""

    spec: Path
    config: Path
    predictions_dir: Path
    reports_dir: Path
    run: str | None = None  # the config's run.name; run_stage fills it in

    def _keyed(self, root: Path, stage: str) -> Path:
        if self.run is None:
            raise ValueError("StagePaths.run is not set")
        return root / stage / self.run

    def predictions(self, stage: str, split: str, kind: str) -> Path:
        return self._keyed(self.predictions_dir, stage) / f"{stage}_{split}_{kind}.jsonl"

    def report(self, stage: str, split: str) -> Path:
        return self._keyed(self.reports_dir, stage) / f"{stage}_{split}.json"

    def run_reports(self, stage: str) -> Path:
        """The folder of one run's reports, run summary and run card."""
        return self._keyed(self.reports_dir, stage)


def check_run_name(name: str, config: Path) -> str:
    """A run name becomes a folder name under outputs/: one plain path component."""
    if name in (".", "..") or name.startswith(".") or any(c in name for c in '/\\\0') or name != name.strip():
        raise UserError(f"run.name {name!r} cannot name an output folder; use letters, digits, '-' and '_'", config)
    return name


@dataclass
class StageResult:
    stage: str
    dataset_dir: Path
    run_dir: Path
    reports: dict = field(default_factory=dict)  # split -> EvalReport
    report_files: dict = field(default_factory=dict)  # split -> [Path]
    prediction_files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall seconds
    run_card: object = None  # runcard.RunCard, with every phase's seconds


def default_paths(stage: str, config: str | Path | None = None, track: str = "a") -> StagePaths:
    if config is None and track == "b":
        if stage not in TRACK_B_CONFIGS:
            raise UserError(f"no Track B config for stage {stage!r}; Track B stages: {', '.join(TRACK_B_CONFIGS)} (or pass --config)")
        config = CONFIGS_DIR / f"{TRACK_B_CONFIGS[stage]}.toml"
    if config is None:
        if stage not in STAGE_CONFIGS:
            raise UserError(f"unknown stage {stage!r}; known stages: {', '.join(STAGE_CONFIGS)} (or pass --config)")
        config = CONFIGS_DIR / f"{STAGE_CONFIGS[stage]}.toml"
    spec = SPECS_DIR / f"{stage}.spec"
    if not spec.is_file():
        raise UserError(f"no spec for stage {stage!r}", spec)
    return StagePaths(
        spec=spec,
        config=Path(config),
        predictions_dir=OUTPUTS_DIR / "predictions",
        reports_dir=OUTPUTS_DIR / "reports",
    )


class _Clock:
    """Wall seconds per step, announced as each step starts."""

    def __init__(self, console: Console, stage: str) -> None:
        self.console, self.stage, self.seconds = console, stage, {}

    def run(self, step: str, fn: Callable, *args, **kwargs):
        self.console.rule(f"[bold]{self.stage}: {step}")
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[step] = round(time.perf_counter() - t0, 3)
        return out


def _train(config, force: bool, console: Console, ranks: int | None = 1) -> Path:
    """Train as ``exe-coder train`` does (with its grammar-constrained eval hook); continue an
    unfinished run of the same config, so an interrupted stage picks up where it stopped. With
    ``force`` the folder's run is replaced; a run of another config there is refused without it."""
    from exe_coder.train import run_dir as runs
    from exe_coder.train.distributed import train_on_ranks

    run_dir = Path(config.run.output_dir)
    config_file = run_dir / runs.CONFIG_FILE
    same_config = config_file.is_file() and config_file.read_text(encoding="utf-8") == config.to_toml()
    resume = same_config and (run_dir / runs.STATE).is_file() and not force  # a finished run: a no-op
    if resume:
        console.print(f"continuing the run in {run_dir} (--force trains from scratch)")
    elif not force and not same_config:
        runs.files_to_replace(run_dir, force=False, hint="it was trained with another config; run-stage --force replaces it")
    # this config's run that never saved has nothing to continue: it starts again
    replace = not resume and (force or same_config)
    train_on_ranks(config, ranks, resume=resume, force=replace, eval_hook=True, console=console)
    return run_dir


def _infer(config, run_dir: Path, stage: str, split: str, paths: StagePaths) -> tuple[Path, Path]:
    """The trained model and the regex baseline on one split, realized and scored by the model's track."""
    from exe_coder.dataset.records import load_examples
    from exe_coder.decode.infer import make_predictor, run_inference, write_predictions

    jsonl = getattr(config.data, f"{split}_jsonl", None) or str(Path(config.data.val_jsonl).parent / f"{split}.jsonl")
    examples = load_examples(jsonl)
    model, track = make_predictor("sft_patch_model", run_dir)
    baseline, base_track = make_predictor(  # a Track A patch, realized as one whatever the model's track
        "regex_baseline", min_int=config.data.decode_min_int, max_int=config.data.decode_max_int
    )
    model_out = write_predictions(
        run_inference(examples, model, track, batch_size=INFER_BATCH, progress=True),
        paths.predictions(stage, split, "model"),
    )
    base_out = write_predictions(
        run_inference(examples, baseline, base_track, batch_size=INFER_BATCH, progress=True),
        paths.predictions(stage, split, "regex_baseline"),
    )
    return model_out, base_out


def _reward_beta(config) -> float:
    return config.rl.beta if getattr(config, "rl", None) is not None else 0.0


def run_stage(
    stage: str,
    *,
    config: str | Path | None = None,
    force: bool = False,
    paths: StagePaths | None = None,
    sizes: dict[str, int] | None = None,
    data_dir: Path | None = None,  # default: the folder of the config's train_jsonl
    binaries_dir: Path | None = None,  # default: outputs/bin/<stage>
    console: Console | None = None,
    ranks: int | None = 1,  # training processes (train/distributed.py); None: one a core
    overrides: list[str] | tuple[str, ...] = (),  # --set TABLE.KEY=VALUE on the stage's config
    track: str = "a",  # without a config: the stage's Track A config, or its Track B one ("b")
    rebuild: bool | None = None,  # --force for the build alone (default: ``force``); run_stage_seeds builds once
) -> StageResult:
    """Build, train, infer on val and test, evaluate; write the reports. See the module doc."""
    console = console or Console(stderr=True)
    paths = paths or default_paths(stage, config, track)
    from exe_coder.train.config import apply_overrides, load_config

    from exe_coder.train.runcard import make_run_card, now_iso, read_run_card, write_run_card

    started = now_iso()
    cfg = apply_overrides(load_config(paths.config), overrides)  # a bad config fails now, not after a long build
    paths = replace(paths, run=check_run_name(cfg.run.name, paths.config))
    data_folder = Path(cfg.data.train_jsonl).parent.name
    if data_folder in STAGE_CONFIGS and data_folder != stage:
        raise UserError(f"this config trains on {data_folder}'s data, not {stage}'s", paths.config)
    clock = _Clock(console, stage)
    # build where the config's training reads, so the two can never disagree
    dataset_dir = clock.run(
        "build", build_dataset, paths.spec, force=force if rebuild is None else rebuild, sizes=sizes,
        out_dir=data_dir or Path(cfg.data.train_jsonl).parent, binaries_dir=binaries_dir, console=console,
    )
    run_dir = clock.run("train", _train, cfg, force, console, ranks)
    trained = read_run_card(run_dir)  # the run's own training time: a finished run resumed is a no-op
    if trained is not None and "train" in trained.phases_s:
        clock.seconds["train"] = trained.phases_s["train"]
    result = StageResult(stage=stage, dataset_dir=dataset_dir, run_dir=run_dir)

    from exe_coder.evaluate.report import SPLIT_TAGS, evaluate_files, headline_lines

    # after the build, so the manifest hash is of the data this run trained on
    card = make_run_card(cfg, written_by="run-stage", started=started, phases_s=clock.seconds)
    for split in EVAL_SPLITS:
        model_pred, base_pred = clock.run(f"infer {split}", _infer, cfg, run_dir, stage, split, paths)
        result.prediction_files += [model_pred, base_pred]
        report, written = clock.run(
            f"evaluate {split}",
            evaluate_files,
            model_pred,
            paths.report(stage, split),
            split=split,
            ckpt=run_dir,
            baseline=base_pred,
            beta=_reward_beta(cfg),
            title=f"{stage} {split} ({SPLIT_TAGS[split]}): {cfg.run.name}",
            run_card=card.model_copy(update={"phases_s": dict(clock.seconds)}),
        )
        result.reports[split], result.report_files[split] = report, written
        console.print(f"[bold]{stage} {split}[/bold]")
        for line in headline_lines(report):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    result.seconds = clock.seconds
    result.run_card = card.model_copy(update={"phases_s": dict(clock.seconds)})
    write_run_card(paths.run_reports(stage), result.run_card)
    _write_run_summary(result, paths)
    return result


_SEED_ITEM = re.compile(r"[+-]?[0-9]+")


def parse_seeds(text: str) -> list[int]:
    """``--seeds 1,2,3``: distinct integers, in the order given; one is a seed of a group compare
    completes later (``--seeds 1`` today, ``--seeds 2,3`` tomorrow)."""
    seeds = []
    for item in text.split(","):
        if not _SEED_ITEM.fullmatch(item.strip()):
            raise UserError(f"--seeds {text!r}: {item.strip()!r} is not an integer; give distinct integers, e.g. 1,2,3")
        seeds.append(int(item))
    twice = [s for i, s in enumerate(seeds) if s in seeds[:i]]
    if twice:
        raise UserError(f"--seeds {text!r}: seed {twice[0]} is given twice; each seed runs once")
    return seeds


@dataclass
class SeedsResult:
    stage: str
    name: str  # the config's run.name; seed N runs as <name>_seed<N>
    results: dict[int, StageResult]  # seed -> its run
    rows: list  # compare.Row: one a seed and split, test first
    groups: list  # compare.SeedGroup: mean and sd across the seeds, one a split
    table: str  # the Markdown table, as written
    table_files: list[Path] = field(default_factory=list)


def _seed_dir(out_dir: Path, seed: int) -> Path:
    return out_dir.with_name(f"{out_dir.name}_seed{seed}") if out_dir.name else out_dir / f"seed{seed}"


def run_stage_seeds(
    stage: str,
    seeds: list[int],
    *,
    config: str | Path | None = None,
    force: bool = False,
    paths: StagePaths | None = None,
    sizes: dict[str, int] | None = None,
    data_dir: Path | None = None,
    binaries_dir: Path | None = None,
    console: Console | None = None,
    ranks: int | None = 1,
    overrides: list[str] | tuple[str, ...] = (),
    track: str = "a",
) -> SeedsResult:
    """``run_stage`` once a seed, then the compare table across them (``run-stage --seeds``).

    Seed N runs as ``<name>_seed<N>`` with its checkpoints in ``<output_dir>_seed<N>``, so no seed
    overwrites another, and all train on one build: the data's seed is the spec's, not the run's,
    so only the first run may rebuild (``--force``). The table (mean ± sd a metric, test and val,
    where two or more seeds ran) is written to ``<reports>/<stage>/<name>_seeds.{md,csv}``. One
    seed runs so too, named as its group's seeds are, so a chain of stages (``{seed}`` in the
    next config's start) can go one seed at a time.
    """
    from exe_coder.evaluate.compare import csv_text, markdown, row_of, seed_groups
    from exe_coder.train.config import apply_overrides, load_config

    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"seeds {seeds}: give one or more distinct seeds")
    console = console or Console(stderr=True)
    paths = paths or default_paths(stage, config, track)
    loaded = load_config(paths.config)
    base = apply_overrides(loaded, overrides)
    name, out_dir = check_run_name(base.run.name, paths.config), Path(base.run.output_dir)
    per_seed: dict[int, list[str]] = {}
    for seed in seeds:  # every seed's config is checked before the first build
        per_seed[seed] = [
            *overrides, f"run.seed={seed}", f"run.name={json.dumps(f'{name}_seed{seed}')}",
            f"run.output_dir={json.dumps(str(_seed_dir(out_dir, seed)))}",
        ]
        check_run_name(apply_overrides(loaded, per_seed[seed]).run.name, paths.config)
    results: dict[int, StageResult] = {}
    for i, seed in enumerate(seeds):
        console.rule(f"[bold]{stage}: seed {seed} ({i + 1} of {len(seeds)})")
        results[seed] = run_stage(
            stage, force=force, paths=paths, sizes=sizes, data_dir=data_dir, binaries_dir=binaries_dir,
            console=console, ranks=ranks, overrides=per_seed[seed], rebuild=force and i == 0,
        )
    rows = [
        row_of(replace(paths, run=f"{name}_seed{seed}").report(stage, split), results[seed].reports[split])
        for split in EVAL_SPLITS for seed in seeds
    ]
    groups = seed_groups(rows)
    table = f"# {stage}: {name}, seeds {', '.join(map(str, seeds))}\n\n" + markdown(rows, groups)
    folder = paths.reports_dir / stage  # beside the seeds' report folders
    written = [files.write_text(folder / f"{name}_seeds.md", table),
               files.write_text(folder / f"{name}_seeds.csv", csv_text(rows, groups))]
    return SeedsResult(stage=stage, name=name, results=results, rows=rows, groups=groups, table=table, table_files=written)


def _write_run_summary(result: StageResult, paths: StagePaths) -> Path:
    summary = {
        "stage": result.stage,
        "dataset_dir": str(result.dataset_dir),
        "run_dir": str(result.run_dir),
        "seconds": result.seconds,
        "headline_split": "test",  # val chose the checkpoint
        "run_card": result.run_card.model_dump(mode="json") if result.run_card is not None else None,
        "splits": {
            split: {
                "role": r.split_role,
                "answer_accuracy": r.metrics.answer_accuracy,
                "answer_accuracy_interval": _pair(r.metrics.intervals.get("answer_accuracy")),
                "baseline_answer_accuracy": r.baseline.metrics.answer_accuracy if r.baseline else None,
                # the held-out magnitude slices, the numbers a stage note quotes
                "answer_accuracy_by_magnitude_pair": {
                    pair: m.answer_accuracy for pair, m in r.slices["magnitude_pair"].items() if m.n
                },
                "gates": {g: res.passed for g, res in r.milestone_gates.items()},
            }
            for split, r in result.reports.items()
        },
    }
    out = paths.run_reports(result.stage) / f"{result.stage}_run.json"
    return files.write_text(out, json.dumps(summary, indent=2) + "\n")


def _pair(iv) -> list[float] | None:
    return None if iv is None else [iv.lo, iv.hi]


def build_dataset(
    spec: Path,
    *,
    force: bool = False,
    sizes: dict[str, int] | None = None,
    out_dir: Path | None = None,
    binaries_dir: Path | None = None,
    console: Console | None = None,
) -> Path:
    """``exe-coder build`` for ``spec``, skipped when the build there is of this very spec and
    sizes (its manifest says so); a stale build is replaced. Returns the data folder."""
    from exe_coder.dataset.build import MANIFEST, build_stage, default_out_dir
    from exe_coder.spec import load_spec

    loaded = load_spec(spec)
    target = Path(out_dir) if out_dir is not None else default_out_dir(loaded.stage)
    want = {s.name: (sizes or {}).get(s.name, s.size) for s in loaded.splits}
    manifest = target / MANIFEST
    if manifest.is_file() and not force:
        try:
            m = json.loads(manifest.read_text())
            current = m["spec"]["sha256"] == loaded.sha256() and m["sizes"] == want and m["quality_ok"]
        except (json.JSONDecodeError, KeyError, TypeError):
            current = False
        if current:
            if console:
                console.print(f"{target} is up to date with {spec} (--force rebuilds it)")
            return target
        if console:
            console.print(f"{target} was built from another spec or sizes: rebuilding")
    result = build_stage(loaded, target, binaries_dir, force=True, sizes=sizes)
    return Path(result.out_dir)
