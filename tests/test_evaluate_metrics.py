"""Metrics from hand-made predictions: each definition of evaluation.md, and its edge cases."""

from __future__ import annotations

import json

import pytest
from _evaluate_factories import example, failed, oracle, unparsed, wrong_patch
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.errors import UserError
from exe_coder.evaluate.metrics import (
    compute_metrics,
    error_taxonomy,
    latency_stats,
    operand_errors,
    read_predictions,
    read_training_log,
    reading_errors,
    reward,
)
from exe_coder.runtime.outcome import Outcome, OutcomeKind

RATES = (
    "parse_success_rate",
    "patch_exact_match_rate",
    "operands_match_rate",
    "macho_valid_rate",
    "exec_success_rate",
    "answer_accuracy",
    "exact_byte_match_rate",
)


def _examples(n: int) -> list:
    return [example(a=i * 7 - 20, b=13 - i * 3, i=i) for i in range(n)]


def test_oracle_scores_one_everywhere():
    m = compute_metrics([oracle(e) for e in _examples(10)])
    assert m.n == 10
    for name in RATES:
        assert getattr(m, name) == 1.0, name
    assert m.operand_mae == 0.0
    assert m.avg_reward == 4.0  # 1 valid + 1 exec + 2 correct


def test_empty_list_has_undefined_metrics():
    m = compute_metrics([])
    assert m.n == 0
    assert all(getattr(m, name) is None for name in (*RATES, "operand_mae", "avg_reward"))


def test_nothing_parsed():
    m = compute_metrics([unparsed(e) for e in _examples(4)])
    assert m.parse_success_rate == 0.0
    assert m.operand_mae is None  # defined over parsed predictions only
    assert m.answer_accuracy == 0.0 and m.exec_success_rate == 0.0 and m.macho_valid_rate == 0.0
    assert m.avg_reward == 0.0


def test_wrong_patch_is_counted_wrong():
    ex = example(a=17, b=-4)
    m = compute_metrics([wrong_patch(ex, 17, -5)])
    assert m.parse_success_rate == 1.0
    assert m.patch_exact_match_rate == 0.0
    assert m.answer_accuracy == 0.0
    assert m.exec_success_rate == 1.0 and m.macho_valid_rate == 1.0  # it ran; it printed 12
    assert m.exact_byte_match_rate == 0.0
    assert m.operand_mae == 0.5  # (|17-17| + |-5 - -4|) / 2
    assert m.avg_reward == 2.0


def test_swapped_operands_answer_right_patch_wrong():
    ex = example(a=17, b=-4)
    m = compute_metrics([wrong_patch(ex, -4, 17)])
    assert m.answer_accuracy == 1.0
    assert m.patch_exact_match_rate == 0.0
    assert m.operands_match_rate == 1.0  # the two operands, in the other order
    assert m.operand_mae == 21.0


def test_operands_match_needs_both_numbers():
    """Either order counts, a repeated number does not stand in for the other, and a right sum
    from other numbers is not a match."""
    ex = example(a=17, b=-4)
    assert compute_metrics([wrong_patch(ex, 17, 17)]).operands_match_rate == 0.0
    assert compute_metrics([wrong_patch(ex, 13, 0)]).operands_match_rate == 0.0
    assert compute_metrics([unparsed(ex)]).operands_match_rate == 0.0


def test_ok_label_with_other_stdout_is_not_an_answer():
    """answer_accuracy checks the gold sum, so a verifier run against a wrong expectation
    (here: the stdout recorded is not the gold answer) does not count."""
    p = oracle(example(a=1, b=2))
    p = p.model_copy(update={"outcome": p.outcome.model_copy(update={"stdout": b"4\n"})})
    assert p.outcome.stdout_correct and not p.answer_correct
    assert compute_metrics([p]).answer_accuracy == 0.0


def test_mixed_list_rates_and_mae():
    exs = _examples(4)
    preds = [oracle(exs[0]), wrong_patch(exs[1], exs[1].a + 3, exs[1].b + 1), unparsed(exs[2]),
             failed(exs[3], OutcomeKind.INVALID_MACHO, rule="code_signature_hash")]
    m = compute_metrics(preds)
    assert m.parse_success_rate == 0.75
    assert m.patch_exact_match_rate == 0.5
    assert m.operand_mae == pytest.approx((0 + 4 + 0) / 6)
    assert m.macho_valid_rate == 0.5
    assert m.exec_success_rate == 0.5
    assert m.answer_accuracy == 0.25
    assert m.exact_byte_match_rate == 0.25
    assert m.avg_reward == pytest.approx((4 + 2 + 0 + 0) / 4)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (OutcomeKind.OK, 4.0),
        (OutcomeKind.WRONG_OUTPUT, 2.0),
        (OutcomeKind.NONZERO_EXIT, 1.0),
        (OutcomeKind.CRASH, 0.0),  # valid Mach-O (+1) that crashed (-1)
        (OutcomeKind.TIMEOUT, 0.0),
        (OutcomeKind.BAD_SYSCALL, 0.0),
        (OutcomeKind.BAD_SIGNATURE, 0.0),
        (OutcomeKind.INVALID_MACHO, 0.0),
        (OutcomeKind.PARSE_ERROR, 0.0),
    ],
)
def test_reward_contract_per_outcome(kind, expected):
    ex = example(a=3, b=4)
    p = oracle(ex) if kind is OutcomeKind.OK else failed(ex, kind, rule="lc_main" if kind is OutcomeKind.INVALID_MACHO else None)
    assert reward(p) == expected


def test_reward_kl_term():
    p = oracle(example())
    assert reward(p, beta=0.5, kl_to_sft=2.0) == 3.0
    m = compute_metrics([p, p], beta=0.5, kl_to_sft=[2.0, 0.0])
    assert m.avg_reward == 3.5
    with pytest.raises(ValueError):
        compute_metrics([p], kl_to_sft=[1.0, 2.0])


def test_a_prediction_carries_the_whole_outcome_through_json():
    """kind, rule, detail, native, exit code and any stdout bytes survive write -> read."""
    ex = example()
    outcomes = [
        Outcome(kind=OutcomeKind.INVALID_MACHO, rule="segment_overlap", detail="__TEXT overlaps __LINKEDIT"),
        Outcome(kind=OutcomeKind.WRONG_OUTPUT, stdout=bytes(range(256)), exit_code=0, instructions=812, native=True),
        Outcome(kind=OutcomeKind.NONZERO_EXIT, stdout=b"", exit_code=1, detail="exit 1"),
    ]
    for o in outcomes:
        p = failed(ex, o.kind).model_copy(update={"outcome": o})
        line = p.model_dump_json()
        assert "\n" not in line
        back = type(p).model_validate_json(line)
        assert back.outcome == o and back == p
    assert '"stdout":"13\\n"' in oracle(ex).model_dump_json()  # a digit answer reads as itself


def test_error_taxonomy_counts_most_frequent_first():
    exs = _examples(6)
    preds = [oracle(exs[0]), unparsed(exs[1]), unparsed(exs[2]), failed(exs[3], OutcomeKind.CRASH),
             failed(exs[4], OutcomeKind.BAD_SIGNATURE), failed(exs[5], OutcomeKind.INVALID_MACHO, rule="uuid")]
    assert list(error_taxonomy(preds).items()) == [
        ("parse_error", 2), ("bad_signature", 1), ("crash", 1), ("invalid_macho:uuid", 1), ("ok", 1)
    ]
    assert error_taxonomy([]) == {}


def test_operand_errors_name_what_is_wrong_in_each_wrong_patch():
    ex = example(a=1234, b=-56)
    preds = [
        oracle(ex),
        wrong_patch(ex, -56, 1234),  # the operands the other way round: a right answer, not counted
        wrong_patch(ex, 1234, 56),  # b's sign
        wrong_patch(ex, -1234, 56),  # both signs
        wrong_patch(ex, 1243, -56),  # a: the right number of digits, other digits
        wrong_patch(ex, 1234, -5),  # b: another number of digits
        wrong_patch(ex, 56, 1234),  # the other way round, b's sign flipped: compared that way round
        unparsed(ex),
    ]
    assert operand_errors(preds) == {
        "no patch": 1, "a sign": 1, "a digits": 1, "a places": 0, "b sign": 3, "b digits": 0, "b places": 1,
    }
    assert operand_errors([oracle(ex)]) == dict.fromkeys(operand_errors(preds), 0)
    track_b = oracle(ex).model_copy(update={"track": "strict_one_shot", "parsed": False, "a": None, "b": None})
    assert operand_errors([track_b]) == {}  # Track B writes no operands


@given(st.integers(-5000, 5000), st.integers(-5000, 5000), st.integers(-5000, 5000), st.integers(-5000, 5000))
def test_each_wrong_answer_has_a_wrong_operand_and_each_wrong_operand_one_kind(a, b, pa, pb):
    """A right answer counts nothing; a wrong one has one or two wrong operands, each counted
    under exactly one kind, and a flipped sign only where the magnitudes are right."""
    p = wrong_patch(example(a=a, b=b), pa, pb)
    counts = operand_errors([p])
    total = sum(counts.values())
    assert total == 0 if p.answer_correct else 1 <= total <= 2
    if counts["a sign"] + counts["b sign"]:
        assert {abs(pa), abs(pb)} & {abs(a), abs(b)}



def test_reading_errors_name_how_each_wrong_answer_read_its_prompt():
    # "take 40 away from 1234 (in 2019)": the gold patch is (1234, -40), the answer 1194
    ex = example(a=1234, b=-40, prompt="In 2019, take 40 away from 1234.")
    preds = [
        oracle(ex),
        wrong_patch(ex, -40, 1234),  # the operands the other way round: a right answer, not counted
        wrong_patch(ex, 1234, 40),  # read as a sum: the other operation
        wrong_patch(ex, 40, 1234),  # the same, the other way round
        wrong_patch(ex, 40, -1234),  # 40 - 1234: the difference reversed
        wrong_patch(ex, -1234, -40),  # a's sign flipped
        wrong_patch(ex, 2019, -40),  # the year taken for an operand
        wrong_patch(ex, 1243, -40),  # one field misread
        wrong_patch(ex, 1234, 1234),  # one operand written twice: one field misread
        wrong_patch(ex, 1243, -41),  # both fields misread
        failed(ex, OutcomeKind.CRASH),  # the right patch whose binary crashed
        unparsed(ex),
    ]
    assert reading_errors(preds) == {
        "no patch": 1, "other operation": 2, "reversed": 1, "a's sign": 1, "distractor": 1, "one misread": 2,
        "both misread": 1, "right sum, no answer": 1,
    }
    assert reading_errors([oracle(ex)]) == dict.fromkeys(reading_errors(preds), 0)
    track_b = oracle(ex).model_copy(update={"track": "strict_one_shot", "parsed": False, "a": None, "b": None})
    assert reading_errors([track_b]) == {}  # Track B writes no operands


def test_a_distractor_is_read_in_thousands_groups():
    ex = example(a=5, b=7, prompt="Order 1,250: what is 5 plus 7?")
    assert reading_errors([wrong_patch(ex, 1250, 7)])["distractor"] == 1
    assert reading_errors([wrong_patch(ex, 250, 7)])["one misread"] == 1  # a part of a number is not one


@given(st.integers(-5000, 5000), st.integers(-5000, 5000), st.integers(-5000, 5000), st.integers(-5000, 5000))
def test_each_wrong_answer_has_one_reading_kind_whichever_way_round(a, b, pa, pb):
    """A right answer counts nothing, a wrong one exactly one kind, the same kind with the
    fields swapped (the answer does not see their order), and a kind of the right magnitudes
    only where the magnitudes are right."""
    ex = example(a=a, b=b)
    counts = reading_errors([wrong_patch(ex, pa, pb)])
    assert counts == reading_errors([wrong_patch(ex, pb, pa)])
    assert sum(counts.values()) == (0 if pa + pb == a + b else 1)
    if counts["other operation"] + counts["reversed"] + counts["a's sign"]:
        assert sorted((abs(pa), abs(pb))) == sorted((abs(a), abs(b)))

def test_latency_median_and_p95():
    preds = [oracle(e, ms=float(i + 1)) for i, e in enumerate(_examples(21))]  # 1..21 ms
    lat = latency_stats(preds)
    assert lat["generate"].median_ms == 11.0
    assert lat["generate"].p95_ms == pytest.approx(20.0)
    assert lat["verify"].median_ms == 5.5
    assert lat["total"].median_ms == pytest.approx(11.0 * 1.6)
    assert latency_stats([])["generate"].median_ms is None


kind_st = st.sampled_from(list(OutcomeKind))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(-50, 50), st.booleans(), kind_st), max_size=30))
def test_rates_are_fractions_of_counts(rows):
    preds = []
    for i, (da, db, is_parsed, kind) in enumerate(rows):
        ex = example(a=i, b=-i, i=i)
        if not is_parsed or kind is OutcomeKind.PARSE_ERROR:
            preds.append(unparsed(ex))
        elif kind in (OutcomeKind.OK, OutcomeKind.WRONG_OUTPUT):
            preds.append(wrong_patch(ex, ex.a + da, ex.b + db))
        else:
            preds.append(failed(ex, kind, rule="uuid" if kind is OutcomeKind.INVALID_MACHO else None))
    m = compute_metrics(preds)
    n = len(preds)
    assert m.n == n
    if n == 0:
        return
    for name in RATES:
        assert 0.0 <= getattr(m, name) <= 1.0
    assert m.parse_success_rate == sum(p.parsed for p in preds) / n
    assert m.answer_accuracy == sum(p.outcome.kind is OutcomeKind.OK for p in preds) / n
    assert m.exec_success_rate == sum(p.outcome.exec_ok for p in preds) / n
    assert m.answer_accuracy <= m.exec_success_rate <= m.macho_valid_rate
    assert m.patch_exact_match_rate <= m.operands_match_rate <= m.parse_success_rate
    assert -1.0 <= m.avg_reward <= 4.0


def _write_jsonl(path, preds):
    path.write_text("".join(p.model_dump_json() + "\n" for p in preds))


def test_read_predictions_round_trip_and_errors(tmp_path):
    preds = [oracle(e) for e in _examples(3)]
    f = tmp_path / "p.jsonl"
    _write_jsonl(f, preds)
    assert read_predictions(f, split="val") == preds

    with pytest.raises(UserError, match="not found"):
        read_predictions(tmp_path / "missing.jsonl")

    bad = tmp_path / "bad.jsonl"
    bad.write_text(preds[0].model_dump_json() + "\n" + '{"mode": "oracle"}\n')
    with pytest.raises(UserError) as err:
        read_predictions(bad)
    assert str(err.value).startswith(f"{bad}:2: not a prediction record")
    assert "\n" not in str(err.value)

    odd = tmp_path / "odd.jsonl"
    record = json.loads(preds[0].model_dump_json())
    record["outcome"]["kind"] = "exploded"
    odd.write_text(json.dumps(record) + "\n")
    with pytest.raises(UserError, match=r"odd.jsonl:1: not a prediction record: outcome.kind: Input should be 'ok'"):
        read_predictions(odd)

    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(preds[0].model_dump_json().encode() + b"\n" + b'{"mode": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"latin.jsonl:2: not UTF-8 text"):
        read_predictions(latin)

    with pytest.raises(UserError, match=r"p.jsonl:1: prediction for a val example, expected split test"):
        read_predictions(f, split="test")


def test_read_training_log(tmp_path):
    lines = [
        {"step": 10, "train_loss": 3.0, "lr": 1e-3},
        {"step": 20, "loss": 2.0},  # the other key the loop may use
        {"step": 20, "val_loss": 2.5, "val_exact_match": 0.1},
        {"step": 30, "train_loss": float("nan")},  # not a number: skipped
        {"step": 40, "train_loss": 1.0},
        {"step": 40, "val_loss": 1.5},
        {"event": "done"},
    ]
    f = tmp_path / "metrics.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    t = read_training_log(tmp_path)  # the run dir works as well as the file
    assert t.train_loss_start == 3.0 and t.train_loss_end == 1.0 and t.train_loss == 1.0
    assert t.val_loss == 1.5 and t.best_val_loss == 1.5
    assert t.curve == [(10, 3.0), (20, 2.0), (40, 1.0)]
    assert t.val_curve == [(20, 2.5), (40, 1.5)]
    assert t.steps == 40
    assert "curve" not in t.model_dump_json()  # curves feed the plot, not the JSON report


def test_read_training_log_errors(tmp_path):
    with pytest.raises(UserError, match="metrics.jsonl not found"):
        read_training_log(tmp_path)
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n')
    with pytest.raises(UserError, match=r"metrics.jsonl:2:\d+: not a JSON line"):
        read_training_log(f)
    f.write_text("[1, 2]\n")
    with pytest.raises(UserError, match="must be a JSON object"):
        read_training_log(f)
    f.write_text("")
    t = read_training_log(f)
    assert t.train_loss_start is None and t.val_loss is None and t.steps is None
