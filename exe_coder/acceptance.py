"""The acceptance smoke run: the whole pipeline on a tiny stage0-shaped build with a tiny model.

``run_acceptance`` is ``run-stage stage0`` (``stages.run_stage``) with small sizes and a
few-steps config, all under one work folder, followed by one check per output a stage run must
leave and an oracle run that must score 1.0: the quick test that every step still fits the next.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from exe_coder import files
from exe_coder.errors import UserError
from exe_coder.paths import CONFIGS_DIR, SPECS_DIR
from exe_coder.stages import EVAL_SPLITS, OUTPUTS_DIR, STAGE_CONFIGS, StagePaths, StageResult, run_stage

ACCEPTANCE_DIR = OUTPUTS_DIR / "acceptance"
# a model small enough to train in seconds on 2 cores; the run checks the plumbing, not the model
TINY_MODEL = {"layers": 2, "hidden_size": 64, "heads": 4, "seq_len": 160}


@dataclass
class AcceptanceCheck:
    name: str
    passed: bool
    detail: str


def acceptance_config(base: Path, work: Path, data_dir: Path, steps: int) -> Path:
    """A tiny-model, few-steps copy of the stage0 config that reads and writes under ``work``."""
    from exe_coder.train.config import dump_toml, load_config, parse_config

    raw = load_config(base).model_dump(mode="json", exclude_none=True)
    raw["run"].update(name="acceptance", output_dir=str(work / "checkpoints"))
    raw["data"].update(
        train_jsonl=str(data_dir / "train.jsonl"),
        val_jsonl=str(data_dir / "val.jsonl"),
        test_jsonl=str(data_dir / "test.jsonl"),
    )
    raw["model"].update(TINY_MODEL)
    raw["train"].update(
        batch_size=8, epochs=10_000, max_steps=steps, log_interval=5, eval_interval=max(steps // 2, 1),
        save_interval=steps, warmup_steps=min(5, steps), eval_max_samples=8, full_eval_every=1,
    )
    raw["init"] = {"mode": "scratch"}
    raw.pop("rl", None)
    text = dump_toml(raw)
    path = work / "acceptance.toml"
    parse_config(text, path)  # still a valid config
    return files.write_text(path, text)


def run_acceptance(
    *, train_n: int = 16, val_n: int = 8, test_n: int = 8, steps: int = 40, work: Path | None = None,
    console: Console | None = None,
) -> tuple[list[AcceptanceCheck], StageResult]:
    """The whole pipeline on a tiny stage0-shaped build; one check per expected output."""
    console = console or Console(stderr=True)
    work = Path(work or ACCEPTANCE_DIR)
    if work.exists():
        # replace only an earlier acceptance run (it has the marker), never a folder of the user's
        if not work.is_dir() or (any(work.iterdir()) and not (work / "acceptance.toml").is_file()):
            raise UserError("not an earlier acceptance run's folder; choose a new or empty one", work)
        shutil.rmtree(work)
    data_dir, bin_dir = work / "data" / "stage0", work / "bin" / "stage0"
    config = acceptance_config(CONFIGS_DIR / f"{STAGE_CONFIGS['stage0']}.toml", work, data_dir, steps)
    paths = StagePaths(
        spec=SPECS_DIR / "stage0.spec", config=config,
        predictions_dir=work / "predictions", reports_dir=work / "reports",
    )
    result = run_stage(
        "stage0", paths=paths, force=True, sizes={"train": train_n, "val": val_n, "test": test_n},
        data_dir=data_dir, binaries_dir=bin_dir, console=console,
    )
    checks = check_outputs(result, paths, {"train": train_n, "val": val_n, "test": test_n}, data_dir, bin_dir)
    checks.append(_oracle_check(data_dir / "val.jsonl"))
    return checks, result


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else -1


def check_outputs(
    result: StageResult, paths: StagePaths, sizes: dict[str, int], data_dir: Path, bin_dir: Path | None = None
) -> list[AcceptanceCheck]:
    """One check per output a stage run must leave; each says what it found."""
    checks = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append(AcceptanceCheck(name, bool(passed), detail))

    for split, n in sizes.items():
        got = _lines(data_dir / f"{split}.jsonl")
        check(f"build {split}.jsonl", got == n, f"{got} examples, expected {n}")
    check("build manifest.json", (data_dir / "manifest.json").is_file(), str(data_dir / "manifest.json"))
    if bin_dir is not None:
        for split in EVAL_SPLITS:
            jsonl = data_dir / f"{split}.jsonl"
            named = [json.loads(line).get("binary_path") for line in jsonl.read_text().splitlines()] if jsonl.is_file() else []
            present = [p for p in named if p and (data_dir / p).is_file()]  # relative to the JSONL's folder
            check(f"build {split} binaries", named and len(present) == len(named),
                  f"{len(present)} of {len(named)} golden binaries on disk under {bin_dir}")
    for name in ("metrics.jsonl", "best_weights.safetensors", "latest_weights.safetensors", "config.toml"):
        check(f"train {name}", (result.run_dir / name).is_file(), str(result.run_dir / name))
    for path in result.prediction_files:
        split = path.stem.split("_")[1]
        got = _lines(path)
        check(f"infer {path.name}", got == sizes[split], f"{got} predictions, expected {sizes[split]}")
    for split in EVAL_SPLITS:
        files = result.report_files.get(split, [])
        names = sorted(p.name for p in files)
        want = sorted(f"stage0_{split}{s}" for s in (".json", ".md", "_training.png", "_slices.png"))
        ok = names == want and all(p.is_file() and p.stat().st_size > 0 for p in files)
        pngs = all(p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in files if p.suffix == ".png")
        check(f"evaluate {split} report", ok and pngs, ", ".join(names) or "no files")
        report = result.reports.get(split)
        check(f"evaluate {split} gates", report is not None and len(report.milestone_gates) == 3,
              "g0/g1/g2 present" if report else "no report")
    return checks


def _oracle_check(val_jsonl: Path) -> AcceptanceCheck:
    """The gold patches through reconstruct -> verify -> evaluate must score 1.0: the pipeline
    after the model is sound, so a low model score is the model's."""
    from exe_coder.dataset.records import load_examples
    from exe_coder.decode.infer import make_predictor, run_inference
    from exe_coder.evaluate.metrics import compute_metrics

    predictor, track = make_predictor("oracle")
    m = compute_metrics(run_inference(load_examples(val_jsonl), predictor, track))
    rates = {k: v for k, v in m.model_dump().items() if k.endswith("_rate") or k == "answer_accuracy"}
    ok = all(v == 1.0 for v in rates.values()) and m.operand_mae == 0.0
    return AcceptanceCheck("oracle scores 1.0", ok, ", ".join(f"{k} {v}" for k, v in rates.items()))
