"""Slices and milestone gates: every threshold on both sides, and the slice-collapse rule."""

from __future__ import annotations

import pytest
from _evaluate_factories import example, oracle, unparsed, wrong_patch

from exe_coder.evaluate.gates import GATES, milestone_gates
from exe_coder.evaluate.metrics import Metrics, TrainingLosses, compute_metrics
from exe_coder.evaluate.slices import MAGNITUDE_PAIRS, SIGN_PATTERNS, collapsed_slices, compute_slices


def _preds(n_right: int, n_wrong: int, *, offset: int = 0, **kw) -> list:
    """``n_right`` oracle predictions then ``n_wrong`` ones with a wrong sum, all in one slice."""
    out = []
    for i in range(n_right + n_wrong):
        ex = example(a=i + 1, b=2 * i + 1, i=i + offset, **kw)
        out.append(oracle(ex) if i < n_right else wrong_patch(ex, ex.a, ex.b + 1))
    return out


# --- slices --------------------------------------------------------------------------------


def test_slices_group_by_each_axis():
    preds = (
        _preds(3, 1, template_id="t_b", magnitude_pair="core/core")
        + [oracle(example(a=-5, b=7, i=50, template_id="t_a", magnitude_pair="heldout/core", numerals="words/digits"))]
        + [unparsed(example(a=-5, b=-7, i=51, template_id="t_a", magnitude_pair="heldout/heldout"))]
    )
    s = compute_slices(preds)
    assert list(s) == ["template", "magnitude_pair", "sign_pattern", "numerals"]
    assert list(s["template"]) == ["t_a", "t_b"]
    assert s["template"]["t_b"].n == 4 and s["template"]["t_b"].answer_accuracy == 0.75
    assert s["template"]["t_a"].n == 2 and s["template"]["t_a"].parse_success_rate == 0.5
    assert s["magnitude_pair"]["heldout/heldout"].n == 1
    assert s["magnitude_pair"]["heldout/heldout"].answer_accuracy == 0.0
    assert s["sign_pattern"]["++"].n == 4
    assert s["sign_pattern"]["-+"].n == 1 and s["sign_pattern"]["--"].n == 1
    assert list(s["numerals"]) == ["digits/digits", "words/digits"]  # the pairs that occur, sorted
    assert s["numerals"]["words/digits"].n == 1 and s["numerals"]["words/digits"].answer_accuracy == 1.0
    # every slice metric equals the metric over exactly that slice's predictions
    for axis, key in (("template", "template_id"), ("magnitude_pair", "magnitude_pair"),
                      ("sign_pattern", "sign_pattern"), ("numerals", "numerals")):
        for value, m in s[axis].items():
            assert m == compute_metrics([p for p in preds if getattr(p.example, key) == value])
    assert sum(m.n for m in s["sign_pattern"].values()) == len(preds)


def test_closed_axes_report_empty_slices():
    s = compute_slices(_preds(2, 0))
    assert list(s["magnitude_pair"]) == list(MAGNITUDE_PAIRS)
    assert list(s["sign_pattern"]) == list(SIGN_PATTERNS)
    empty = s["magnitude_pair"]["heldout/heldout"]
    assert empty.n == 0 and empty.answer_accuracy is None and empty.operand_mae is None
    s0 = compute_slices([])
    assert s0["template"] == {} and all(m.n == 0 for m in s0["sign_pattern"].values())


def test_collapse_rule_needs_twenty_examples_below_a_quarter():
    # 20 examples at 4/20 = 0.20 accuracy: a collapse
    assert collapsed_slices(compute_slices(_preds(4, 16, template_id="t_x"))) == [
        "template=t_x", "magnitude_pair=core/core", "sign_pattern=++", "numerals=digits/digits"
    ]
    # 20 examples at exactly 0.25: not below the floor
    assert collapsed_slices(compute_slices(_preds(5, 15))) == []
    # 19 examples at 0.0: too small a slice to count
    assert collapsed_slices(compute_slices(_preds(0, 19))) == []


# --- gates ---------------------------------------------------------------------------------

FALLING = TrainingLosses(train_loss_start=3.0, train_loss_end=0.5, curve=[(1, 3.0), (2, 0.5)])
FLAT = TrainingLosses(train_loss_start=1.0, train_loss_end=1.0, curve=[(1, 1.0), (2, 1.0)])


def _metrics(**kw) -> Metrics:
    base = dict(n=100, parse_success_rate=1.0, patch_exact_match_rate=1.0, operand_mae=0.0,
                macho_valid_rate=1.0, exec_success_rate=1.0, answer_accuracy=1.0,
                exact_byte_match_rate=1.0, avg_reward=4.0)
    return Metrics(**{**base, **kw})


def _slices_with_heldout(acc: float | None):
    s = compute_slices([])
    hh = s["magnitude_pair"]["heldout/heldout"]
    s["magnitude_pair"]["heldout/heldout"] = hh.model_copy(
        update={"n": 0 if acc is None else 10, "answer_accuracy": acc}
    )
    return s


def _condition(gates, gate: str, name: str):
    return next(c for c in gates[gate].conditions if c.name.startswith(name))


def test_gate_table_is_the_documented_one():
    assert list(GATES) == ["g0_loop_sanity", "g1_pilot_success", "g2_rl_ready"]
    assert [(c.op, c.threshold) for c in GATES["g0_loop_sanity"]] == [(">", 0.0), (">=", 0.95), (">=", 0.90)]
    assert [(c.op, c.threshold) for c in GATES["g1_pilot_success"]] == [(">=", 0.50), (">=", 0.70), ("==", 0.0)]
    assert [(c.op, c.threshold) for c in GATES["g2_rl_ready"]] == [(">=", 0.75), (">=", 0.95), (">=", 0.55)]


def test_all_gates_pass_on_perfect_results():
    gates = milestone_gates(_metrics(), FALLING, _slices_with_heldout(1.0))
    assert all(g.passed for g in gates.values())
    assert all(c.passed for g in gates.values() for c in g.conditions)


@pytest.mark.parametrize(
    ("gate", "metric", "threshold"),
    [
        ("g0_loop_sanity", "parse_success_rate", 0.95),
        ("g0_loop_sanity", "answer_accuracy", 0.90),
        ("g1_pilot_success", "answer_accuracy", 0.50),
        ("g1_pilot_success", "exec_success_rate", 0.70),
        ("g2_rl_ready", "answer_accuracy", 0.75),
        ("g2_rl_ready", "parse_success_rate", 0.95),
    ],
)
def test_metric_thresholds_on_both_sides(gate, metric, threshold):
    slices = _slices_with_heldout(1.0)
    at = milestone_gates(_metrics(**{metric: threshold}), FALLING, slices)
    assert at[gate].passed
    assert _condition(at, gate, metric).passed
    below = milestone_gates(_metrics(**{metric: threshold - 0.001}), FALLING, slices)
    assert not below[gate].passed
    cond = _condition(below, gate, metric)
    assert not cond.passed and cond.value == pytest.approx(threshold - 0.001)
    assert f"{metric} = " in cond.reason and "not >=" in cond.reason


def test_g0_needs_falling_training_loss():
    m, s = _metrics(), _slices_with_heldout(1.0)
    assert milestone_gates(m, FALLING, s)["g0_loop_sanity"].passed
    flat = milestone_gates(m, FLAT, s)["g0_loop_sanity"]
    assert not flat.passed and "not >" in flat.conditions[0].reason
    missing = milestone_gates(m, None, s)["g0_loop_sanity"]
    assert not missing.passed and "could not be measured" in missing.conditions[0].reason
    one_point = TrainingLosses(train_loss_start=1.0, train_loss_end=1.0, curve=[(1, 1.0)])
    assert not milestone_gates(m, one_point, s)["g0_loop_sanity"].passed


def test_g2_heldout_heldout_threshold_and_missing_slice():
    m = _metrics()
    assert milestone_gates(m, FALLING, _slices_with_heldout(0.55))["g2_rl_ready"].passed
    low = milestone_gates(m, FALLING, _slices_with_heldout(0.549))["g2_rl_ready"]
    assert not low.passed
    empty = milestone_gates(m, FALLING, _slices_with_heldout(None))["g2_rl_ready"]
    assert not empty.passed  # no held-out magnitudes measured is no evidence of readiness
    assert "could not be measured" in empty.conditions[2].reason


def test_g1_fails_on_slice_collapse_and_names_it():
    # 40 good examples in t_good and 20 collapsed ones in t_bad: overall 0.70 accuracy
    preds = _preds(40, 0, template_id="t_good") + _preds(2, 18, template_id="t_bad", offset=100)
    m = compute_metrics(preds)
    assert m.answer_accuracy == pytest.approx(42 / 60)
    gates = milestone_gates(m, FALLING, compute_slices(preds))
    g1 = gates["g1_pilot_success"]
    assert not g1.passed
    collapse = g1.conditions[2]
    assert collapse.value == 1.0 and "template=t_bad" in collapse.reason
    # the same accuracy spread over slices of 19 is no collapse
    preds = _preds(40, 0, template_id="t_good") + _preds(2, 17, template_id="t_bad", offset=100)
    gates = milestone_gates(compute_metrics(preds), FALLING, compute_slices(preds))
    assert gates["g1_pilot_success"].conditions[2].passed
