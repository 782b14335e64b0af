"""An evaluation report: JSON (the record), Markdown (for a reader) and PNG plots beside it.

``evaluate_files`` is what ``exe-coder evaluate`` calls: predictions (and optionally the run's
training log and a baseline's predictions) in, ``R.json``, ``R.md``, ``R_training.png`` and
``R_slices.png`` out, together through ``files.write_files``: every file is staged before any is
renamed into place, so a failed evaluation leaves no half-written report.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from exe_coder import files
from exe_coder.decode.prediction import Prediction
from exe_coder.errors import UserError
from exe_coder.evaluate.gates import GateResult, milestone_gates
from exe_coder.evaluate.metrics import (
    LatencyStats,
    Metrics,
    TrainingLosses,
    compute_metrics,
    error_taxonomy,
    latency_stats,
    read_predictions,
    read_training_log,
)
from exe_coder.evaluate.plots import slice_accuracy_png, training_curves_png
from exe_coder.evaluate.slices import Slices, compute_slices

REPORT_SCHEMA = "exe-coder.eval-report/1"
HEADLINE = (
    "parse_success_rate",
    "patch_exact_match_rate",
    "operand_mae",
    "macho_valid_rate",
    "exec_success_rate",
    "answer_accuracy",
    "exact_byte_match_rate",
    "avg_reward",
)


class BaselineSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str
    predictions: str
    metrics: Metrics
    error_taxonomy: dict[str, int]
    slices: Slices


class EvalReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = REPORT_SCHEMA
    split: str | None
    mode: str
    predictions: str
    ckpt: str | None
    reward_beta: float
    metrics: Metrics
    training: TrainingLosses | None
    latency_ms: dict[str, LatencyStats]
    error_taxonomy: dict[str, int]
    slices: Slices
    milestone_gates: dict[str, GateResult]
    baseline: BaselineSummary | None = None
    plots: list[str] = []


def _mode_of(predictions: Sequence[Prediction], source: str) -> str:
    modes = sorted({p.mode for p in predictions})
    if len(modes) > 1:
        raise UserError(f"predictions mix modes {', '.join(modes)}; evaluate one mode at a time", source)
    return modes[0] if modes else "unknown"


def build_report(
    predictions: Sequence[Prediction],
    *,
    split: str | None,
    predictions_path: str,
    ckpt: str | None = None,
    training: TrainingLosses | None = None,
    baseline: Sequence[Prediction] | None = None,
    baseline_path: str = "",
    beta: float = 0.0,
) -> EvalReport:
    """Metrics, slices, gates, taxonomy and latencies for one set of predictions."""
    metrics = compute_metrics(predictions, beta=beta)
    slices = compute_slices(predictions, beta=beta)
    summary = None
    if baseline is not None:
        summary = BaselineSummary(
            mode=_mode_of(baseline, baseline_path),
            predictions=baseline_path,
            metrics=compute_metrics(baseline, beta=beta),
            error_taxonomy=error_taxonomy(baseline),
            slices=compute_slices(baseline, beta=beta),
        )
    return EvalReport(
        split=split,
        mode=_mode_of(predictions, predictions_path),
        predictions=predictions_path,
        ckpt=ckpt,
        reward_beta=beta,
        metrics=metrics,
        training=training,
        latency_ms=latency_stats(predictions),
        error_taxonomy=error_taxonomy(predictions),
        slices=slices,
        milestone_gates=milestone_gates(metrics, training, slices),
        baseline=summary,
    )


# --- Markdown ------------------------------------------------------------------------------


def _cell(x: float | int | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def render_markdown(report: EvalReport, title: str = "Evaluation report") -> str:
    r = report
    lines = [f"# {title}", ""]
    lines += [
        f"- split: `{r.split}`  mode: `{r.mode}`  examples: {r.metrics.n}",
        f"- predictions: `{r.predictions}`" + (f"  checkpoint: `{r.ckpt}`" if r.ckpt else ""),
        f"- reward beta: {r.reward_beta:g} (kl_to_sft = 0 for SFT predictions)",
        "",
        "## Headline",
        "",
    ]
    base = r.baseline
    header = f"| metric | {r.mode} |" + (f" {base.mode} (baseline) | model − baseline |" if base else "")
    lines += [header, "|---|---:|" + ("---:|---:|" if base else "")]
    for name in HEADLINE:
        v = getattr(r.metrics, name)
        row = f"| {name} | {_cell(v)} |"
        if base:
            b = getattr(base.metrics, name)
            diff = None if v is None or b is None else v - b
            row += f" {_cell(b)} | {'–' if diff is None else f'{diff:+.3f}'} |"
        lines.append(row)
    if r.training:
        t = r.training
        for name in ("train_loss_start", "train_loss_end", "train_loss", "val_loss", "best_val_loss"):
            lines.append(f"| {name} | {_cell(getattr(t, name), 4)} |" + (" | |" if base else ""))
    lines += ["", "## Milestone gates", ""]
    for gate, res in r.milestone_gates.items():
        lines.append(f"- **{gate}**: {'PASS' if res.passed else 'FAIL'}")
        for c in res.conditions:
            lines.append(f"  - {'ok' if c.passed else 'FAIL'}: {c.reason}")
    lines += ["", "## Slices", ""]
    for axis, by_value in r.slices.items():
        lines += [f"### {axis}", "", "| slice | n | parse | patch exact | exec | answer accuracy |"
                  + (" baseline accuracy |" if base else ""),
                  "|---|---:|---:|---:|---:|---:|" + ("---:|" if base else "")]
        for value, m in by_value.items():
            row = (f"| {value} | {m.n} | {_cell(m.parse_success_rate)} | {_cell(m.patch_exact_match_rate)} | "
                   f"{_cell(m.exec_success_rate)} | {_cell(m.answer_accuracy)} |")
            if base:
                bm = base.slices.get(axis, {}).get(value)
                row += f" {_cell(bm.answer_accuracy if bm else None)} |"
            lines.append(row)
        lines.append("")
    lines += ["## Error taxonomy", "", "| outcome | count |", "|---|---:|"]
    lines += [f"| {label} | {count} |" for label, count in r.error_taxonomy.items()]
    if base:
        lines += ["", f"Baseline ({base.mode}): " + ", ".join(f"{k} {v}" for k, v in base.error_taxonomy.items())]
    lines += ["", "## Latency per prompt (ms)", "", "| stage | median | p95 |", "|---|---:|---:|"]
    lines += [f"| {stage} | {_cell(s.median_ms)} | {_cell(s.p95_ms)} |" for stage, s in r.latency_ms.items()]
    if r.plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in r.plots]
    return "\n".join(lines) + "\n"


def headline_lines(report: EvalReport) -> list[str]:
    """A short console summary: headline metrics (beside the baseline's) and the gates."""
    base = report.baseline
    lines = [f"{'metric':<24}{report.mode:>16}" + (f"{base.mode:>16}" if base else "")]
    for name in HEADLINE:
        row = f"{name:<24}{_cell(getattr(report.metrics, name)):>16}"
        if base:
            row += f"{_cell(getattr(base.metrics, name)):>16}"
        lines.append(row)
    for gate, res in report.milestone_gates.items():
        failed = [c.reason for c in res.conditions if not c.passed]
        lines.append(f"{gate}: {'PASS' if res.passed else 'FAIL'}" + (f" ({'; '.join(failed)})" if failed else ""))
    return lines


# --- files ---------------------------------------------------------------------------------


def write_report(report: EvalReport, out: str | Path, *, title: str | None = None) -> list[Path]:
    """``out`` (JSON), ``out.md`` and the PNG plots beside it; returns the paths written."""
    out = Path(out)
    stem = out.with_suffix("")
    plots: dict[Path, bytes] = {}
    if report.training is not None:
        plots[Path(f"{stem}_training.png")] = training_curves_png(report.training, title=f"{stem.name}: training")
    base = report.baseline
    plots[Path(f"{stem}_slices.png")] = slice_accuracy_png(
        report.slices,
        title=f"{stem.name}: answer accuracy by slice",
        label=report.mode,
        baseline=None if base is None else base.slices,
        baseline_label="" if base is None else base.mode,
    )
    report = report.model_copy(update={"plots": [p.name for p in plots]})
    md = render_markdown(report, title=title or f"Evaluation: {stem.name}")
    outputs = {out: (report.model_dump_json(indent=2) + "\n").encode(), Path(f"{stem}.md"): md.encode(), **plots}
    return files.write_files(outputs)


def _config_beta(config_toml: Path) -> float | None:
    """``[rl] beta`` from a run's config copy, read defensively (it is optional)."""
    if not config_toml.is_file():
        return None
    try:
        beta = tomllib.loads(config_toml.read_text(encoding="utf-8")).get("rl", {}).get("beta")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return float(beta) if isinstance(beta, (int, float)) and not isinstance(beta, bool) else None


def evaluate_files(
    predictions: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    ckpt: str | Path | None = None,
    baseline: str | Path | None = None,
    beta: float | None = None,
    title: str | None = None,
) -> tuple[EvalReport, list[Path]]:
    """Read the inputs, build the report and write it; every missing input is a ``UserError``.

    ``beta`` (the reward's KL weight) defaults to the run's ``[rl] beta`` when its
    ``config.toml`` has one, else 0; it only matters for predictions with a KL to the SFT model.
    """
    preds = read_predictions(predictions, split=split)
    if not preds:
        raise UserError("no predictions to evaluate", predictions)
    training = None
    if ckpt is not None:
        ckpt = Path(ckpt)
        if not ckpt.exists():
            raise UserError("checkpoint directory not found", ckpt)
        run_dir = ckpt if ckpt.is_dir() else ckpt.parent
        training = read_training_log(run_dir)
        if beta is None:
            beta = _config_beta(run_dir / "config.toml")
    base = None
    if baseline is not None:
        base = read_predictions(baseline, split=split)
        ids, base_ids = {p.example.id for p in preds}, {p.example.id for p in base}
        if ids != base_ids:
            raise UserError(
                f"baseline covers other examples than the predictions ({len(base_ids - ids)} extra, "
                f"{len(ids - base_ids)} missing); run both on the same split",
                baseline,
            )
    report = build_report(
        preds,
        split=split,
        predictions_path=str(predictions),
        ckpt=None if ckpt is None else str(ckpt),
        training=training,
        baseline=base,
        baseline_path="" if baseline is None else str(baseline),
        beta=beta or 0.0,
    )
    written = write_report(report, out, title=title)
    return report.model_copy(update={"plots": [p.name for p in written if p.suffix == ".png"]}), written
