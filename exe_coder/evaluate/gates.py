"""The milestone gates of ``evaluation.md`` as a declarative table.

A gate is a list of conditions; a condition measures one number from the evaluation and
compares it with a threshold. A number that cannot be measured (no training log, an empty
held-out slice) fails its condition, and the reason says so: a gate passes only on evidence.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from exe_coder.evaluate.metrics import Metrics, TrainingLosses
from exe_coder.evaluate.slices import Slices, collapsed_slices

COLLAPSE_MIN_N = 20  # a slice this large...
COLLAPSE_FLOOR = 0.25  # ...with answer_accuracy below this is a catastrophic collapse


@dataclass(frozen=True)
class GateInputs:
    metrics: Metrics
    training: TrainingLosses | None
    slices: Slices


def _metric(name: str) -> Callable[[GateInputs], float | None]:
    return lambda g: getattr(g.metrics, name)


def _loss_drop(g: GateInputs) -> float | None:
    t = g.training
    if t is None or t.train_loss_start is None or t.train_loss_end is None or len(t.curve) < 2:
        return None
    return t.train_loss_start - t.train_loss_end


def _heldout_heldout_accuracy(g: GateInputs) -> float | None:
    return g.slices["magnitude_pair"]["heldout/heldout"].answer_accuracy


def _collapsed_count(g: GateInputs) -> float:
    return float(len(collapsed_slices(g.slices, min_n=COLLAPSE_MIN_N, floor=COLLAPSE_FLOOR)))


OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, ">": operator.gt, "==": operator.eq}


@dataclass(frozen=True)
class Condition:
    name: str  # what is measured, as a reader says it
    measure: Callable[[GateInputs], float | None]
    op: str  # a key of OPS
    threshold: float


GATES: dict[str, tuple[Condition, ...]] = {
    "g0_loop_sanity": (
        Condition("train_loss_start - train_loss_end", _loss_drop, ">", 0.0),
        Condition("parse_success_rate", _metric("parse_success_rate"), ">=", 0.95),
        Condition("answer_accuracy", _metric("answer_accuracy"), ">=", 0.90),
    ),
    "g1_pilot_success": (
        Condition("answer_accuracy", _metric("answer_accuracy"), ">=", 0.50),
        Condition("exec_success_rate", _metric("exec_success_rate"), ">=", 0.70),
        Condition(
            f"slices with n >= {COLLAPSE_MIN_N} and answer_accuracy < {COLLAPSE_FLOOR}",
            _collapsed_count,
            "==",
            0.0,
        ),
    ),
    "g2_rl_ready": (
        Condition("answer_accuracy", _metric("answer_accuracy"), ">=", 0.75),
        Condition("parse_success_rate", _metric("parse_success_rate"), ">=", 0.95),
        Condition("heldout/heldout answer_accuracy", _heldout_heldout_accuracy, ">=", 0.55),
    ),
}


class ConditionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    value: float | None
    op: str
    threshold: float
    passed: bool
    reason: str


class GateResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: bool
    conditions: list[ConditionResult]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def check_condition(c: Condition, inputs: GateInputs) -> ConditionResult:
    value = c.measure(inputs)
    if value is None:
        return ConditionResult(
            name=c.name, value=None, op=c.op, threshold=c.threshold, passed=False,
            reason=f"{c.name} could not be measured (no data), needs {c.op} {_fmt(c.threshold)}",
        )
    passed = OPS[c.op](value, c.threshold)
    reason = f"{c.name} = {_fmt(value)} {'' if passed else 'not '}{c.op} {_fmt(c.threshold)}"
    if c.measure is _collapsed_count and value:
        reason += ": " + ", ".join(collapsed_slices(inputs.slices, min_n=COLLAPSE_MIN_N, floor=COLLAPSE_FLOOR))
    return ConditionResult(name=c.name, value=value, op=c.op, threshold=c.threshold, passed=passed, reason=reason)


def milestone_gates(
    metrics: Metrics, training: TrainingLosses | None, slices: Slices
) -> dict[str, GateResult]:
    """Every gate of ``GATES``: passed when all its conditions pass, with a reason for each."""
    inputs = GateInputs(metrics=metrics, training=training, slices=slices)
    out = {}
    for gate, conditions in GATES.items():
        results = [check_condition(c, inputs) for c in conditions]
        out[gate] = GateResult(passed=all(r.passed for r in results), conditions=results)
    return out
