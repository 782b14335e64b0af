"""One command a stage: build -> train -> infer (model and regex baseline) -> evaluate.

This is the seed's ``run_track_a_stage.py``. It is orchestration only: every step is another
module's library function, called in order, and every step's outputs are files in the usual
places, so a stage can be re-run, resumed or inspected one step at a time:

    data/processed/<stage>/{train,val,test}.jsonl, manifest.json     exe-coder build
    outputs/checkpoints/<run>/                                       exe-coder train
    outputs/predictions/<stage>_<split>_{model,regex_baseline}.jsonl exe-coder infer
    outputs/reports/<stage>_<split>.{json,md} + _training/_slices.png exe-coder evaluate
    outputs/reports/<stage>_run.json                                 wall time of each step, gates

``acceptance.py`` runs the same steps on a tiny stage0-shaped build with a tiny model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    "stage2": "sft_stage2_scale",
    "stage3": "sft_stage3_words",
}
EVAL_SPLITS = ("val", "test")
OUTPUTS_DIR = Path("outputs")  # relative to the working dir, like the configs' paths
INFER_BATCH = 64


@dataclass
class StagePaths:
    """Where one stage run reads and writes."""

    spec: Path
    config: Path
    predictions_dir: Path
    reports_dir: Path

    def predictions(self, stage: str, split: str, kind: str) -> Path:
        return self.predictions_dir / f"{stage}_{split}_{kind}.jsonl"

    def report(self, stage: str, split: str) -> Path:
        return self.reports_dir / f"{stage}_{split}.json"


@dataclass
class StageResult:
    stage: str
    dataset_dir: Path
    run_dir: Path
    reports: dict = field(default_factory=dict)  # split -> EvalReport
    report_files: dict = field(default_factory=dict)  # split -> [Path]
    prediction_files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall seconds


def default_paths(stage: str, config: str | Path | None = None) -> StagePaths:
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


def _train(config, force: bool, console: Console) -> Path:
    """Train as ``exe-coder train`` does (with its grammar-constrained eval hook); continue an
    unfinished run of the same config, so an interrupted stage picks up where it stopped. With
    ``force`` the folder's run is replaced; a run of another config there is refused without it."""
    from exe_coder.decode.infer import eval_hook_for
    from exe_coder.train import run_dir as runs
    from exe_coder.train.loop import train

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
    train(config, resume=resume, force=replace, eval_hook=eval_hook_for(config), console=console)
    return run_dir


def _infer(config, run_dir: Path, stage: str, split: str, paths: StagePaths) -> tuple[Path, Path]:
    """The trained model and the regex baseline on one split, scored with the same grammar."""
    from exe_coder.dataset.records import load_examples
    from exe_coder.decode.infer import make_predictor, run_inference, write_predictions

    jsonl = getattr(config.data, f"{split}_jsonl", None) or str(Path(config.data.val_jsonl).parent / f"{split}.jsonl")
    examples = load_examples(jsonl)
    model, grammar = make_predictor("sft_patch_model", run_dir)
    baseline, _ = make_predictor(
        "regex_baseline", min_int=config.data.decode_min_int, max_int=config.data.decode_max_int
    )
    model_out = write_predictions(
        run_inference(examples, model, grammar, batch_size=INFER_BATCH, progress=True),
        paths.predictions(stage, split, "model"),
    )
    base_out = write_predictions(
        run_inference(examples, baseline, grammar, batch_size=INFER_BATCH, progress=True),
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
) -> StageResult:
    """Build, train, infer on val and test, evaluate; write the reports. See the module doc."""
    console = console or Console(stderr=True)
    paths = paths or default_paths(stage, config)
    from exe_coder.train.config import load_config

    cfg = load_config(paths.config)  # a bad config fails now, not after a long build
    data_folder = Path(cfg.data.train_jsonl).parent.name
    if data_folder in STAGE_CONFIGS and data_folder != stage:
        raise UserError(f"this config trains on {data_folder}'s data, not {stage}'s", paths.config)
    clock = _Clock(console, stage)
    # build where the config's training reads, so the two can never disagree
    dataset_dir = clock.run(
        "build", build_dataset, paths.spec, force=force, sizes=sizes,
        out_dir=data_dir or Path(cfg.data.train_jsonl).parent, binaries_dir=binaries_dir, console=console,
    )
    run_dir = clock.run("train", _train, cfg, force, console)
    result = StageResult(stage=stage, dataset_dir=dataset_dir, run_dir=run_dir)

    from exe_coder.evaluate.report import evaluate_files, headline_lines

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
            title=f"{stage} {split}: {cfg.run.name}",
        )
        result.reports[split], result.report_files[split] = report, written
        console.print(f"[bold]{stage} {split}[/bold]")
        for line in headline_lines(report):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    result.seconds = clock.seconds
    _write_run_summary(result, paths)
    return result


def _write_run_summary(result: StageResult, paths: StagePaths) -> Path:
    summary = {
        "stage": result.stage,
        "dataset_dir": str(result.dataset_dir),
        "run_dir": str(result.run_dir),
        "seconds": result.seconds,
        "splits": {
            split: {
                "answer_accuracy": r.metrics.answer_accuracy,
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
    out = paths.reports_dir / f"{result.stage}_run.json"
    return files.write_text(out, json.dumps(summary, indent=2) + "\n")


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
