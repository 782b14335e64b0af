"""The headline numbers of ``evaluation.md``, computed from a list of ``Prediction`` records.

Everything here is a pure function of the predictions (and, for the training losses, of the
run's ``metrics.jsonl``), so the same files always give the same report. What a binary did
(valid Mach-O, ran, printed the answer) is asked of the prediction's ``Outcome``, whose
properties are the only definitions of those facts.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exe_coder.decode.prediction import Prediction
from exe_coder.errors import UserError
from exe_coder.evaluate.intervals import Interval, bootstrap, quantile_interval, rate_interval, too_small
from exe_coder.evaluate.regions import IMAGE_TRACKS
from exe_coder.runtime import reward as contract
from exe_coder.runtime.reward import REWARD_WEIGHTS  # noqa: F401  (the contract's weights, re-exported)
LATENCY_STAGES = ("generate", "reconstruct", "verify")


class Metrics(BaseModel):
    """The per-split (or per-slice) metrics. Rates are in [0, 1]; ``None`` where undefined."""

    model_config = ConfigDict(extra="forbid")

    n: int
    parse_success_rate: float | None
    patch_exact_match_rate: float | None
    # the operands in either order; absent (None) in reports written before it existed
    operands_match_rate: float | None = None
    operand_mae: float | None  # over parsed predictions only; None when nothing parsed
    macho_valid_rate: float | None
    exec_success_rate: float | None
    answer_accuracy: float | None
    exact_byte_match_rate: float | None
    avg_reward: float | None
    # metric -> its count and 95% interval (Wilson for rates, bootstrap for operand_mae and
    # avg_reward); absent where the metric is undefined
    intervals: dict[str, Interval] = {}
    too_small_to_judge: bool = False  # n < intervals.MIN_JUDGE_N: read its numbers as anecdotes


class LatencyStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    median_ms: float | None
    p95_ms: float | None
    median_interval: Interval | None = None  # bootstrap
    p95_interval: Interval | None = None


class TrainingLosses(BaseModel):
    """Read from the run's ``metrics.jsonl``; ``None`` where the log has no such value."""

    model_config = ConfigDict(extra="forbid")

    train_loss: float | None = None  # the last logged training loss
    val_loss: float | None = None  # the last logged validation loss
    best_val_loss: float | None = None
    best_val_exact_match: float | None = None  # the checkpoint-selection score on val
    train_loss_start: float | None = None  # the first logged training loss
    train_loss_end: float | None = None  # the last logged training loss
    steps: int | None = None  # the last logged step
    # the curves feed the plot; the JSON report keeps only the numbers above
    curve: list[tuple[int, float]] = Field(default=[], exclude=True)  # (step, train_loss)
    val_curve: list[tuple[int, float]] = Field(default=[], exclude=True)  # (step, val_loss)
    # any other logged series the plots show (lr, val_exact_match, answer_accuracy, grad_norm)
    series: dict[str, list[tuple[int, float]]] = Field(default={}, exclude=True)


def reward(p: Prediction, beta: float = 0.0, kl_to_sft: float = 0.0) -> float:
    """The RL reward contract (``runtime/reward.py``, the one RL trains on) for one prediction.
    SFT predictions have ``kl_to_sft = 0``."""
    return contract.reward(p.outcome, p.example.expected_stdout, beta, kl_to_sft)


def _rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def compute_metrics(
    predictions: Sequence[Prediction], *, beta: float = 0.0, kl_to_sft: Sequence[float] | None = None
) -> Metrics:
    """Every per-prediction metric of ``evaluation.md`` over ``predictions`` (may be empty)."""
    if kl_to_sft is not None and len(kl_to_sft) != len(predictions):
        raise ValueError("kl_to_sft needs one value per prediction")
    outcomes = [p.outcome for p in predictions]
    parsed = [p for p in predictions if p.parsed and p.a is not None and p.b is not None]
    # per parsed prediction, the mean error of its two operands; operand_mae is their mean
    abs_errors = [(abs(p.a - p.example.a) + abs(p.b - p.example.b)) / 2 for p in parsed]  # type: ignore[operator]
    kls = kl_to_sft if kl_to_sft is not None else [0.0] * len(predictions)
    rewards = [reward(p, beta, kl) for p, kl in zip(predictions, kls)]
    # Track B writes no patch: the patch metrics are undefined there (its image metrics are in the
    # report's image section)
    patches = [p for p in predictions if p.track not in IMAGE_TRACKS]
    flags = {
        "parse_success_rate": [p.parsed for p in predictions],
        "patch_exact_match_rate": [p.patch_exact for p in patches],
        "operands_match_rate": [p.operands_match for p in patches],
        "macho_valid_rate": [o.is_valid_macho for o in outcomes],
        "exec_success_rate": [o.exec_ok for o in outcomes],
        "answer_accuracy": [p.answer_correct for p in predictions],
        "exact_byte_match_rate": [p.exact_byte_match for p in predictions],
    }
    intervals = {name: rate_interval(f) for name, f in flags.items()}
    intervals["operand_mae"] = bootstrap(abs_errors)
    intervals["avg_reward"] = bootstrap(rewards)
    return Metrics(
        n=len(predictions),
        **{name: _rate(f) for name, f in flags.items()},
        operand_mae=sum(abs_errors) / len(abs_errors) if abs_errors else None,
        avg_reward=sum(rewards) / len(rewards) if rewards else None,
        intervals={name: iv for name, iv in intervals.items() if iv is not None},
        too_small_to_judge=too_small(len(predictions)),
    )


def error_taxonomy(predictions: Sequence[Prediction]) -> dict[str, int]:
    """Counts per Outcome label, most frequent first (ties by label, for a stable order)."""
    counts = Counter(p.outcome.label for p in predictions)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


OPERAND_ERROR_KINDS = ("no patch", "a sign", "a digits", "a places", "b sign", "b digits", "b places")


def operand_errors(predictions: Sequence[Prediction]) -> dict[str, int]:
    """What is wrong in the patches of wrong answers: per operand, a flipped sign (-x for x), the
    right number of digits with other digits, or another number of digits; and wrong answers
    with no patch. A patch whose operands are the gold ones the other way round (a prompt-order
    run on a b-first phrasing) is compared that way round. Empty for Track B, which writes no
    operands (its image report breaks bytes down by region instead)."""
    track_a = [p for p in predictions if p.track not in IMAGE_TRACKS]
    if not track_a:
        return {}
    counts = dict.fromkeys(OPERAND_ERROR_KINDS, 0)
    for p in (p for p in track_a if not p.answer_correct):
        if not p.parsed or p.a is None or p.b is None:
            counts["no patch"] += 1
            continue
        gold, pred = (p.example.a, p.example.b), (p.a, p.b)
        if _same_magnitudes(gold, pred[::-1]) > _same_magnitudes(gold, pred):
            pred = pred[::-1]
        for name, g, x in zip("ab", gold, pred):
            if x == g:
                continue
            kind = "sign" if x == -g else "places" if len(str(abs(x))) != len(str(abs(g))) else "digits"
            counts[f"{name} {kind}"] += 1
    return counts


def _same_magnitudes(gold: tuple[int, int], pred: tuple[int, int]) -> int:
    return sum(abs(g) == abs(x) for g, x in zip(gold, pred))


READING_ERROR_KINDS = (
    "no patch", "other operation", "reversed", "a's sign", "distractor", "one misread", "both misread",
    "right sum, no answer",
)

# a number written in digits, thousands groups and all ("1,250"); read only to name an error kind
_DIGIT_NUMBER = re.compile(r"\d+(?:,\d{3})*")


def reading_errors(predictions: Sequence[Prediction]) -> dict[str, int]:
    """How each wrong answer misread its prompt, one kind an answer. With the gold patch (a, b)
    (a difference's b already negated) and the model's (x, y), in either order:

    - the right magnitudes: x + y = a - b is the other operation (a sum read as a difference or
      the reverse, or b's written sign missed); -(a + b) the difference reversed (b - a, "order");
      b - a a's sign flipped;
    - a field holding another number the prompt writes in digits (a year, a count): a distractor;
    - otherwise one or both fields hold digits the prompt does not give them: misread.

    A pure function of the predictions, order-blind like the answer itself. Empty for Track B,
    which writes no operands."""
    track_a = [p for p in predictions if p.track not in IMAGE_TRACKS]
    if not track_a:
        return {}
    counts = dict.fromkeys(READING_ERROR_KINDS, 0)
    for p in (p for p in track_a if not p.answer_correct):
        counts[_reading_error(p)] += 1
    return counts


def _reading_error(p: Prediction) -> str:
    if not p.parsed or p.a is None or p.b is None:
        return "no patch"
    a, b, x, y = p.example.a, p.example.b, p.a, p.b
    if x + y == a + b:
        return "right sum, no answer"  # the binary did not print it
    gold = {abs(a), abs(b)}
    if sorted((abs(x), abs(y))) == sorted((abs(a), abs(b))):
        if x + y == a - b:
            return "other operation"
        return "reversed" if x + y == -(a + b) else "a's sign"  # the fourth sum, b - a
    written = {int(s.replace(",", "")) for s in _DIGIT_NUMBER.findall(p.example.prompt)} - gold
    strays = [v for v in (abs(x), abs(y)) if v not in gold]
    if any(v in written for v in strays):
        return "distractor"
    return "both misread" if len(strays) == 2 else "one misread"  # none: one operand written twice


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def latency_stats(predictions: Sequence[Prediction]) -> dict[str, LatencyStats]:
    """Median and p95 per stage, per prompt; ``total`` is the sum of the three stages."""
    per_stage = {
        "generate": [p.latency.generate_ms for p in predictions],
        "reconstruct": [p.latency.reconstruct_ms for p in predictions],
        "verify": [p.latency.verify_ms for p in predictions],
    }
    per_stage["total"] = [sum(vals) for vals in zip(*per_stage.values())]
    return {
        stage: LatencyStats(
            median_ms=_percentile(vals, 50), p95_ms=_percentile(vals, 95),
            median_interval=quantile_interval(vals, 50), p95_interval=quantile_interval(vals, 95),
        )
        for stage, vals in per_stage.items()
    }


def read_predictions(path: str | Path, *, split: str | None = None) -> list[Prediction]:
    """Load a predictions JSONL file; a bad line (or one of another split) is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError("predictions file not found", path)
    predictions = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"not UTF-8 text (byte {err.start + 1} of the line)", path, lineno) from None
            if not line.strip():
                continue
            try:
                p = Prediction.model_validate_json(line)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(x) for x in first["loc"]) or "record"
                raise UserError(f"not a prediction record: {where}: {first['msg']}", path, lineno) from None
            if split is not None and p.example.split != split:
                raise UserError(f"prediction for a {p.example.split} example, expected split {split}", path, lineno)
            predictions.append(p)
    return predictions


# Keys read from a training log line (JSON object): "step"; "train_loss" (or "loss") on
# training lines; "val_loss" on evaluation lines. Lines without them are ignored, so the
# train loop may log anything else beside them (lr, tokens/s, exact match, memory).
TRAIN_LOSS_KEYS = ("train_loss", "loss")
VAL_LOSS_KEY = "val_loss"
# further series kept for the plots when logged: the learning rate, the eval's exact match and
# the eval hook's answer accuracy, and the loop's gradient norm and wall time
SERIES_KEYS = ("lr", "val_exact_match", "answer_accuracy", "grad_norm", "wall_s")
# an RL run's per-step series (train/rl.py): the reward, its parts, pass rate, KL, entropy and
# the share of groups whose samples scored differently (the ones that carry a gradient)
RL_SERIES_KEYS = (
    "reward", "verifier_reward", "is_valid_macho", "exec_ok", "stdout_correct", "timeout_or_crash",
    "pass_rate", "kl", "entropy", "signal_groups",
)


def _finite(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def read_training_log(path: str | Path) -> TrainingLosses:
    """Training and validation losses from a ``metrics.jsonl`` (a file, or the run's dir)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise UserError("training log metrics.jsonl not found", path)
    curve: list[tuple[int, float]] = []
    val_curve: list[tuple[int, float]] = []
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"not a JSON line: {err.msg}", path, lineno, err.colno) from None
            if not isinstance(rec, dict):
                raise UserError("a training log line must be a JSON object", path, lineno)
            step = rec.get("step")
            step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else lineno
            train = next((v for k in TRAIN_LOSS_KEYS if (v := _finite(rec.get(k))) is not None), None)
            if train is not None:
                curve.append((step, train))
            val = _finite(rec.get(VAL_LOSS_KEY))
            if val is not None:
                val_curve.append((step, val))
            for key in SERIES_KEYS + RL_SERIES_KEYS:
                if (v := _finite(rec.get(key))) is not None:
                    series.setdefault(key, []).append((step, v))
    steps = max([s for s, _ in curve] + [s for s, _ in val_curve], default=None)
    return TrainingLosses(
        train_loss=curve[-1][1] if curve else None,
        val_loss=val_curve[-1][1] if val_curve else None,
        best_val_loss=min(v for _, v in val_curve) if val_curve else None,
        best_val_exact_match=max((v for _, v in series.get("val_exact_match", [])), default=None),
        train_loss_start=curve[0][1] if curve else None,
        train_loss_end=curve[-1][1] if curve else None,
        steps=steps,
        curve=curve,
        val_curve=val_curve,
        series=series,
    )
