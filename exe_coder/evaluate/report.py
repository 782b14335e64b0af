"""An evaluation report: JSON (the record), Markdown (for a reader) and PNG plots beside it.

Every rate carries its count and 95% interval (``intervals.py``); the report names its split's
role (test is the headline, val chose the checkpoint), lists the wrong examples up to a limit and
carries the run card (``exe_coder/runcard.py``) of the run it scores.

``evaluate_files`` is what ``exe-coder evaluate`` calls: predictions (and optionally the run's
training log and a baseline's predictions) in, ``R.json``, ``R.md``, ``R_training.png`` and
``R_slices.png`` out, together through ``files.write_files``: every file is staged before any is
renamed into place, so a failed evaluation leaves no half-written report.
"""

from __future__ import annotations

import json
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
    operand_errors,
    read_predictions,
    read_training_log,
    reading_errors,
)
from exe_coder.evaluate.intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, MIN_JUDGE_N, Interval
from exe_coder.evaluate.plots import slice_accuracy_png, training_curves_png
from exe_coder.evaluate.regions import IMAGE_TRACKS, ImageReport, image_report
from exe_coder.evaluate.regions import markdown_lines as image_markdown_lines
from exe_coder.evaluate.slices import Slices, compute_slices
from exe_coder.train.runcard import RunCard, make_run_card, read_run_card, run_card_lines

REPORT_SCHEMA = "exe-coder.eval-report/2"
FAILURE_LIMIT = 25  # wrong examples listed in a report by default
# what each split is for: test is the headline; val chose the checkpoint, so it leans optimistic
SPLIT_ROLES = {
    "test": "headline split: held out from training and from checkpoint selection",
    "val": "checkpoint-selection split: the best weights were chosen on it, so its figures lean optimistic; "
           "test is the headline",
    "train": "training split: the model was fitted to it",
}
SPLIT_TAGS = {"test": "headline", "val": "checkpoint selection", "train": "training data"}
INTERVALS_NOTE = (
    f"Intervals are 95%: Wilson score for rates, percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples, "
    f"seed {BOOTSTRAP_SEED}) for operand_mae, avg_reward and latencies. Slices under {MIN_JUDGE_N} "
    "examples are too small to judge."
)
HEADLINE = (
    "parse_success_rate",
    "patch_exact_match_rate",
    "operands_match_rate",
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


class Failure(BaseModel):
    """One example the model got wrong (wrong answer, or right answer from a wrong patch)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: str
    gold: str  # the gold patch
    expected_stdout: str
    predicted: str  # the model's text, verbatim
    printed: str  # what the binary wrote to stdout (latin-1), empty when it did not run
    outcome: str  # the verifier's label
    detail: str
    answer_correct: bool


class EvalReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = REPORT_SCHEMA
    split: str | None
    split_role: str | None = None  # SPLIT_ROLES[split]
    mode: str
    track: str | None = None  # the track(s) the predictions were decoded and realized under
    predictions: str
    ckpt: str | None
    reward_beta: float
    metrics: Metrics
    training: TrainingLosses | None
    latency_ms: dict[str, LatencyStats]
    error_taxonomy: dict[str, int]
    operand_errors: dict[str, int] = {}  # Track A: wrong operands of wrong answers, by kind (metrics.operand_errors)
    reading_errors: dict[str, int] = {}  # Track A: each wrong answer's misreading (metrics.reading_errors)
    slices: Slices
    milestone_gates: dict[str, GateResult]
    baseline: BaselineSummary | None = None
    failures: list[Failure] = []  # the first failure_limit of failures_total, in file order
    failures_total: int = 0
    failure_limit: int = FAILURE_LIMIT
    run_card: RunCard | None = None
    image: ImageReport | None = None  # Track B: the model's image before finalize, byte errors by region
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
    failure_limit: int = FAILURE_LIMIT,
    run_card: RunCard | None = None,
) -> EvalReport:
    """Metrics, slices, gates, taxonomy, latencies and failures for one set of predictions."""
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
    # Track B writes no patch: a right answer from other bytes than the golden ones is still listed,
    # after every wrong answer (a prompt-order run writes b first wherever the prompt does)
    wrong = [p for p in predictions if not p.answer_correct]
    wrong += [p for p in predictions if p.answer_correct and not (p.exact_byte_match if p.track in IMAGE_TRACKS else p.patch_exact)]
    return EvalReport(
        split=split,
        split_role=SPLIT_ROLES.get(split or ""),
        mode=_mode_of(predictions, predictions_path),
        track=", ".join(sorted({p.track for p in predictions})) or None,
        predictions=predictions_path,
        ckpt=ckpt,
        reward_beta=beta,
        metrics=metrics,
        training=training,
        latency_ms=latency_stats(predictions),
        error_taxonomy=error_taxonomy(predictions),
        operand_errors=operand_errors(predictions),
        reading_errors=reading_errors(predictions),
        slices=slices,
        milestone_gates=milestone_gates(metrics, training, slices),
        baseline=summary,
        failures=[_failure(p) for p in wrong[:failure_limit]],
        failures_total=len(wrong),
        failure_limit=failure_limit,
        run_card=run_card,
        image=image_report(predictions),
    )


def _failure(p: Prediction) -> Failure:
    e, o = p.example, p.outcome
    return Failure(
        id=e.id, prompt=e.prompt, gold=e.target, expected_stdout=e.expected_stdout, predicted=p.text,
        printed=o.stdout.decode("latin-1"), outcome=o.label, detail=o.detail or (f"rule {o.rule}" if o.rule else ""), answer_correct=p.answer_correct,
    )


# --- Markdown ------------------------------------------------------------------------------


def _cell(x: float | int | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def interval_text(iv: Interval | None, digits: int = 3) -> str:
    return "–" if iv is None else f"[{iv.lo:.{digits}f}, {iv.hi:.{digits}f}]"


def count_text(iv: Interval | None) -> str:
    if iv is None:
        return "–"
    return f"{iv.k}/{iv.n}" if iv.k is not None else f"n={iv.n}"


def judge_text(n: int) -> str:
    return "empty" if n == 0 else ("too small to judge" if n < MIN_JUDGE_N else "")


def _text_cell(text: str, limit: int = 60) -> str:
    """Model output is arbitrary text: keep a table row one row (no pipes, newlines, backticks)."""
    one = " ".join(repr(text)[1:-1].split()).replace("|", "\\|").replace("`", "'")
    return one if len(one) <= limit else one[: limit - 1] + "…"


def split_heading(split: str | None) -> str:
    return f"{split} ({SPLIT_TAGS[split]})" if split in SPLIT_TAGS else str(split)


def render_markdown(report: EvalReport, title: str = "Evaluation report") -> str:
    r = report
    lines = [f"# {title}", ""]
    if r.split_role:
        lines += [f"**{r.split}: {r.split_role}.**", ""]
    lines += [
        f"- split: `{r.split}`  mode: `{r.mode}`" + (f"  track: `{r.track}`" if r.track else "") + f"  examples: {r.metrics.n}"
        + (" (too small to judge)" if r.metrics.too_small_to_judge else ""),
        f"- predictions: `{r.predictions}`" + (f"  checkpoint: `{r.ckpt}`" if r.ckpt else ""),
        f"- reward beta: {r.reward_beta:g} (kl_to_sft = 0 for SFT predictions)",
        "",
        "## Headline",
        "",
        INTERVALS_NOTE,
        "",
    ]
    base = r.baseline
    header = f"| metric | {r.mode} | 95% interval | count |" + (
        f" {base.mode} (baseline) | model − baseline |" if base else "")
    lines += [header, "|---|---:|---:|---:|" + ("---:|---:|" if base else "")]
    for name in HEADLINE:
        v = getattr(r.metrics, name)
        iv = r.metrics.intervals.get(name)
        row = f"| {name} | {_cell(v)} | {interval_text(iv)} | {count_text(iv)} |"
        if base:
            b = getattr(base.metrics, name)
            diff = None if v is None or b is None else v - b
            row += f" {_cell(b)} | {'–' if diff is None else f'{diff:+.3f}'} |"
        lines.append(row)
    if r.training:
        t = r.training
        for name in ("train_loss_start", "train_loss_end", "train_loss", "val_loss", "best_val_loss"):
            lines.append(f"| {name} | {_cell(getattr(t, name), 4)} | | |" + (" | |" if base else ""))
    lines += ["", "## Milestone gates", ""]
    for gate, res in r.milestone_gates.items():
        lines.append(f"- **{gate}**: {'PASS' if res.passed else 'FAIL'}")
        for c in res.conditions:
            lines.append(f"  - {'ok' if c.passed else 'FAIL'}: {c.reason}")
    lines += ["", "## Slices", ""]
    for axis, by_value in r.slices.items():
        lines += [f"### {axis}", "", "| slice | n | parse | patch exact | exec | answer accuracy | 95% interval |"
                  + (" baseline accuracy |" if base else "") + " note |",
                  "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if base else "") + "---|"]
        for value, m in by_value.items():
            row = (f"| {value} | {m.n} | {_cell(m.parse_success_rate)} | {_cell(m.patch_exact_match_rate)} | "
                   f"{_cell(m.exec_success_rate)} | {_cell(m.answer_accuracy)} | "
                   f"{interval_text(m.intervals.get('answer_accuracy'))} |")
            if base:
                bm = base.slices.get(axis, {}).get(value)
                row += f" {_cell(bm.answer_accuracy if bm else None)} |"
            lines.append(row + f" {judge_text(m.n)} |")
        lines.append("")
    lines += ["## Error taxonomy", "", "| outcome | count |", "|---|---:|"]
    lines += [f"| {label} | {count} |" for label, count in r.error_taxonomy.items()]
    if base:
        lines += ["", f"Baseline ({base.mode}): " + ", ".join(f"{k} {v}" for k, v in base.error_taxonomy.items())]
    if r.operand_errors:
        wrong = r.metrics.n - round((r.metrics.answer_accuracy or 0.0) * r.metrics.n)
        lines += ["", "## Wrong operands", "",
                  f"In the {wrong} wrong answers, each wrong operand by kind: a flipped sign, the right number of digits "
                  "with other digits, another number of digits (an operand can be wrong in one way only; "
                  "a patch with the operands the other way round is compared that way round).", "",
                  "| kind | count |", "|---|---:|"]
        lines += [f"| {kind} | {count} |" for kind, count in r.operand_errors.items()]
    if r.reading_errors:
        lines += ["", "## Wrong answers by reading", "",
                  "Each wrong answer once, the first kind that fits: the right magnitudes read as the other operation "
                  "(or b's written sign missed), as the difference reversed (b - a), or with a's sign flipped; a field "
                  "holding another number the prompt writes in digits (distractor); digits the prompt does not give "
                  "(one field or both).", "",
                  "| kind | count |", "|---|---:|"]
        lines += [f"| {kind} | {count} |" for kind, count in r.reading_errors.items()]
    lines += ["", "## Wrong examples", ""]
    if not r.failures_total:
        lines.append("None: every answer right from the right patch.")
    else:
        shown = len(r.failures)
        lines += [
            f"{r.failures_total} of {r.metrics.n} examples wrong (wrong answer, or the right answer from a wrong "
            f"patch); {'all' if shown == r.failures_total else f'the first {shown}'}, wrong answers first, "
            "each kind in file order:",
            "",
            "| id | prompt | gold patch | predicted | expected | printed | outcome | detail |",
            "|---|---|---|---|---:|---:|---|---|",
        ]
        for f in r.failures:
            outcome = f.outcome + ("" if not f.answer_correct else " (right answer)")
            # one trailing newline ends every patch and answer; the JSON keeps the text verbatim
            lines.append(
                f"| {f.id} | {_text_cell(f.prompt)} | `{_text_cell(f.gold.removesuffix(chr(10)))}` | "
                f"`{_text_cell(f.predicted.removesuffix(chr(10)))}` | {_text_cell(f.expected_stdout.removesuffix(chr(10)))} | "
                f"{_text_cell(f.printed.removesuffix(chr(10))) or '–'} | {outcome} | {_text_cell(f.detail)} |"
            )
    if r.image:
        lines += ["", *image_markdown_lines(r.image)]
    lines += ["", "## Latency per prompt (ms)", "",
              "| stage | median | 95% interval | p95 | 95% interval |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {stage} | {_cell(s.median_ms)} | {interval_text(s.median_interval)} | {_cell(s.p95_ms)} | "
              f"{interval_text(s.p95_interval)} |" for stage, s in r.latency_ms.items()]
    if r.run_card:
        lines += ["", "## Run card", "", *run_card_lines(r.run_card)]
    if r.plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in r.plots]
    return "\n".join(lines) + "\n"


def headline_lines(report: EvalReport) -> list[str]:
    """A short console summary: headline metrics with intervals (beside the baseline's) and the gates."""
    base = report.baseline
    role = SPLIT_TAGS.get(report.split or "")
    lines = [f"{report.split} ({role})"] if role else []
    lines.append(f"{'metric':<24}{report.mode:>16}{'95% interval':>18}{'count':>12}" + (f"{base.mode:>16}" if base else ""))
    for name in HEADLINE:
        iv = report.metrics.intervals.get(name)
        row = f"{name:<24}{_cell(getattr(report.metrics, name)):>16}{interval_text(iv):>18}{count_text(iv):>12}"
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
    md = render_markdown(report, title=title or f"Evaluation: {stem.name}, {split_heading(report.split)}")
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


def run_card_of(run_dir: Path | None) -> RunCard:
    """The training run's own card when its folder has one; else a card made now from what the
    folder tells (its config.toml, run.json's manifest hash) and this machine."""
    if run_dir is None:
        return make_run_card(written_by="evaluate")
    card = read_run_card(run_dir)
    if card is not None:
        return card
    from exe_coder.train.config import parse_config

    config, manifest = None, None
    try:
        config = parse_config((run_dir / "config.toml").read_text(encoding="utf-8"), run_dir / "config.toml")
    except (OSError, UnicodeDecodeError, UserError):
        pass  # not a complete run folder: the card says what it can
    try:
        manifest = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("manifest_sha256")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        pass
    return make_run_card(config, written_by="evaluate", manifest_sha256=manifest)


def evaluate_files(
    predictions: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    ckpt: str | Path | None = None,
    baseline: str | Path | None = None,
    beta: float | None = None,
    title: str | None = None,
    failure_limit: int = FAILURE_LIMIT,
    run_card: RunCard | None = None,
) -> tuple[EvalReport, list[Path]]:
    """Read the inputs, build the report and write it; every missing input is a ``UserError``.

    ``beta`` (the reward's KL weight) defaults to the run's ``[rl] beta`` when its
    ``config.toml`` has one, else 0; it only matters for predictions with a KL to the SFT model.
    """
    preds = read_predictions(predictions, split=split)
    if not preds:
        raise UserError("no predictions to evaluate", predictions)
    if failure_limit < 0:
        raise UserError(f"the failure limit must be 0 or more, not {failure_limit}")
    training = None
    run_dir = None
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
        failure_limit=failure_limit,
        run_card=run_card or run_card_of(run_dir),
    )
    written = write_report(report, out, title=title)
    return report.model_copy(update={"plots": [p.name for p in written if p.suffix == ".png"]}), written
