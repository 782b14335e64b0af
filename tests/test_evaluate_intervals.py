"""95% intervals: Wilson against published values and its properties; the bootstrap; counts
and 'too small to judge' on every Metrics."""

from __future__ import annotations

import pytest
from _evaluate_factories import example, oracle, unparsed, wrong_patch
from hypothesis import given
from hypothesis import strategies as st

from exe_coder.evaluate.intervals import MIN_JUDGE_N, bootstrap, quantile_interval, wilson
from exe_coder.evaluate.metrics import compute_metrics, latency_stats
from exe_coder.evaluate.slices import compute_slices

# Wilson score intervals as published (statsmodels proportion_confint(method="wilson") gives
# the same), to 4 decimals
PUBLISHED = {
    (0, 10): (0.0, 0.2775),
    (5, 10): (0.2366, 0.7634),
    (10, 10): (0.7225, 1.0),
    (81, 100): (0.7222, 0.8749),
}


@pytest.mark.parametrize(("k", "n"), sorted(PUBLISHED))
def test_wilson_matches_published_values(k, n):
    lo, hi = wilson(k, n)
    assert (round(lo, 4), round(hi, 4)) == PUBLISHED[(k, n)]


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_estimate_and_stays_in_unit_interval(kn):
    k, n = kn
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert lo < hi


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_narrows_with_more_examples(kn):
    k, n = kn
    lo1, hi1 = wilson(k, n)
    lo4, hi4 = wilson(4 * k, 4 * n)  # the same rate on four times the examples
    assert hi4 - lo4 < hi1 - lo1


@pytest.mark.parametrize(("k", "n"), [(0, 0), (3, 2), (-1, 5)])
def test_wilson_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError):
        wilson(k, n)


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0, 0, 1, 3, 3, 4, 10, 12, 0, 1] * 3
    a, b = bootstrap(values), bootstrap(values)
    assert a == b and a.method == "bootstrap" and a.n == 30 and a.k is None
    assert a.lo < sum(values) / len(values) < a.hi
    assert bootstrap([]) is None
    assert bootstrap([2.5] * 7).lo == bootstrap([2.5] * 7).hi == 2.5  # no spread, no width
    med = quantile_interval(values, 50)
    assert med.lo <= 2.0 <= med.hi


def _preds(n_right: int, n_wrong: int) -> list:
    exs = [example(a=i, b=1, i=i) for i in range(n_right + n_wrong)]
    return [oracle(e) for e in exs[:n_right]] + [wrong_patch(e, e.a + 5, 0) for e in exs[n_right:]]


def test_every_metric_carries_its_count_and_interval():
    m = compute_metrics(_preds(15, 5) + [unparsed(example(i=99))])
    acc = m.intervals["answer_accuracy"]
    assert (acc.k, acc.n, acc.method) == (15, 21, "wilson")
    assert (acc.lo, acc.hi) == wilson(15, 21)
    assert m.intervals["parse_success_rate"].k == 20
    mae = m.intervals["operand_mae"]
    assert mae.method == "bootstrap" and mae.n == 20  # over the parsed predictions only
    assert mae.lo <= m.operand_mae <= mae.hi
    assert set(m.intervals) == {"parse_success_rate", "patch_exact_match_rate", "operands_match_rate", "operand_mae", "macho_valid_rate",
                                "exec_success_rate", "answer_accuracy", "exact_byte_match_rate", "avg_reward"}
    assert compute_metrics([]).intervals == {}


def test_small_slices_are_marked_too_small_to_judge():
    assert compute_metrics(_preds(MIN_JUDGE_N - 1, 0)).too_small_to_judge is True
    assert compute_metrics(_preds(MIN_JUDGE_N, 0)).too_small_to_judge is False
    preds = _preds(20, 0) + [oracle(example(i=50, template_id="t_rare"))]
    by_template = compute_slices(preds)["template"]
    assert by_template["t_what_is"].too_small_to_judge is False
    assert by_template["t_rare"].too_small_to_judge is True and by_template["t_rare"].intervals["answer_accuracy"].n == 1


def test_latencies_carry_bootstrap_intervals():
    stats = latency_stats([oracle(example(i=i), ms=float(i + 1)) for i in range(30)])
    gen = stats["generate"]
    assert gen.median_interval.method == "bootstrap" and gen.median_interval.n == 30
    assert gen.median_interval.lo <= gen.median_ms <= gen.median_interval.hi
    assert gen.p95_interval.lo <= gen.p95_ms <= gen.p95_interval.hi
