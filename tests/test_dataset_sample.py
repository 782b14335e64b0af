"""Sampling: deterministic, stratified, disjoint across splits, held-out rules kept."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.dataset.build import build_stage
from exe_coder.dataset.numwords import WordStyle, from_words, to_grouped, to_mixed, to_words
from exe_coder.dataset.operand_spans import plan
from exe_coder.dataset.sample import quotas, sample_stage
from exe_coder.errors import UserError
from exe_coder.paths import SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec.model import NUMERAL_STYLES, SPLITS, cells, sign_pattern
from tests._spec_text import PROMPTS, SPEC, write_spec

SIGNS = ["++", "+-", "-+", "--"]
PAIRS = ["core/core", "core/heldout", "heldout/core", "heldout/heldout"]


@pytest.fixture(scope="module")
def stage1():
    spec = load_spec(SPECS_DIR / "stage1.spec")
    return spec, sample_stage(spec)


def test_same_seed_same_draws_new_seed_new_draws(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert sample_stage(spec) == sample_stage(spec)
    other = load_spec(write_spec(tmp_path, SPEC.replace("seed 7", "seed 8"), name="other.spec"))
    assert sample_stage(other)["train"] != sample_stage(spec)["train"]


def test_no_prompt_text_in_two_splits(stage1):
    _, draws = stage1
    texts = [d.prompt for split in draws.values() for d in split]
    assert len(texts) == len(set(texts)) == 12000
    keys = [(d.template_id, d.a, d.b) for split in draws.values() for d in split]
    assert len(keys) == len(set(keys))


def test_heldout_templates_never_in_train_and_only_in_val_test(stage1):
    spec, draws = stage1
    heldout = set(spec.heldout_template_ids)
    assert not {d.template_id for d in draws["train"]} & heldout
    assert {d.template_id for d in draws["val"]} == heldout == {d.template_id for d in draws["test"]}


def test_slices_present_balanced_and_true_to_a_and_b(stage1):
    spec, draws = stage1
    for split, want_pairs in (("train", ["core/core"]), ("val", PAIRS), ("test", PAIRS)):
        ds = draws[split]
        for d in ds:
            assert d.sign_pattern == sign_pattern(d.a, d.b)
            assert d.magnitude_pair == f"{spec.magnitudes.bucket_of(d.a)}/{spec.magnitudes.bucket_of(d.b)}"
            assert spec.operands.lo <= d.a <= spec.operands.hi and spec.operands.lo <= d.b <= spec.operands.hi
        c = Counter((d.sign_pattern, d.magnitude_pair) for d in ds)
        assert set(c) == {(s, p) for s in SIGNS for p in want_pairs}
        assert max(c.values()) - min(c.values()) <= 1
        t = Counter(d.template_id for d in ds)
        assert max(t.values()) - min(t.values()) <= 1


def test_stage1_1a_1b_share_their_train_split(stage1):
    _, draws = stage1
    strip = lambda ds: [(d.prompt, d.template_id, d.a, d.b) for d in ds]  # noqa: E731  (ids name the stage)
    for other in ("stage1a", "stage1b"):
        other_draws = sample_stage(load_spec(SPECS_DIR / f"{other}.spec"), {"val": 4, "test": 4})
        assert strip(other_draws["train"]) == strip(draws["train"])


def test_stage1a_and_1b_differ_only_where_declared():
    a = load_spec(SPECS_DIR / "stage1a.spec")
    b = load_spec(SPECS_DIR / "stage1b.spec")
    da, db = sample_stage(a, {"train": 400}), sample_stage(b, {"train": 400})
    strip = lambda ds: [(d.prompt, d.a, d.b) for d in ds]  # noqa: E731
    assert strip(da["train"]) == strip(db["train"])
    assert {d.magnitude_pair for d in da["val"]} == {"core/core"}
    assert {d.magnitude_pair for d in db["val"]} == set(PAIRS)
    assert not {d.template_id for d in da["val"]} & set(a.train_template_ids)
    assert {d.template_id for d in db["val"]} <= set(b.train_template_ids)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(SIGNS), min_size=1, max_size=4, unique=True),
       st.lists(st.sampled_from(PAIRS), min_size=1, max_size=4, unique=True))
def test_every_prefix_of_the_cell_order_is_balanced(signs, pairs):
    order = cells(signs, pairs)
    assert sorted(order) == sorted((s, p) for s in signs for p in pairs)
    for k in range(1, len(order) + 1):
        cs, cp = Counter(s for s, _ in order[:k]), Counter(p for _, p in order[:k])
        assert max(cs.get(s, 0) for s in signs) - min(cs.get(s, 0) for s in signs) <= 1
        assert max(cp.get(p, 0) for p in pairs) - min(cp.get(p, 0) for p in pairs) <= 1


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40))
def test_limited_sizes_still_cover_signs_and_slices(tmp_path_factory, n_train, n_val):
    spec = load_spec(write_spec(tmp_path_factory.mktemp("s")))
    draws = sample_stage(spec, {"train": n_train, "val": n_val, "test": 4})
    assert [len(draws[s]) for s in ("train", "val", "test")] == [n_train, n_val, 4]
    assert sum(n for _, n in quotas(spec, "val", n_val)) == n_val
    val_signs = {d.sign_pattern for d in draws["val"]}
    val_pairs = {d.magnitude_pair for d in draws["val"]}
    assert len(val_signs) == min(4, n_val) and len(val_pairs) == min(4, n_val)
    assert len({d.sign_pattern for d in draws["train"]}) == min(4, n_train)
    assert {d.sign_pattern for d in draws["test"]} == set(SIGNS)


def _crowded(tmp_path):
    # 4 x 4 operand pairs x 3 templates = 48 prompts in all, and the spec asks for 40
    text = (
        SPEC.replace("operands -50..50", "operands 0..3")
        .replace("core 0..39\n    heldout 40..50", "core 0..3")
        .replace("signs ++ +- -+ --", "signs ++")
        .replace("prompts heldout pairs core/core core/heldout heldout/core heldout/heldout", "prompts train pairs core/core")
        .replace("split val 16", "split val 4")
        .replace("split test 16", "split test 4")
    )
    return load_spec(write_spec(tmp_path, text))


def test_a_crowded_space_is_used_up_exactly(tmp_path):
    spec = _crowded(tmp_path)
    draws = sample_stage(spec, {"train": 40, "val": 4, "test": 4})
    keys = {(d.template_id, d.a, d.b) for s in draws.values() for d in s}
    assert len(keys) == 48


def test_asking_beyond_the_space_is_a_user_error(tmp_path):
    spec = _crowded(tmp_path)
    with pytest.raises(UserError, match="ran out of distinct prompts") as err:
        sample_stage(spec, {"train": 46, "val": 4, "test": 4})
    assert err.value.line == 12  # the split that could not be filled: val (one bucket line fewer)


def test_stage3_writes_numbers_in_words_that_read_back():
    spec = load_spec(SPECS_DIR / "stage3.spec")
    draws = sample_stage(spec, {"train": 600, "val": 200, "test": 200})
    prompts = [d for s in draws.values() for d in s]
    no_digit_for_some_operand = 0
    both_words = 0
    for d in prompts:
        numbers = {int(x) for x in re.findall(r"-?\d+", d.prompt)}
        missing = [x for x in (d.a, d.b) if x not in numbers]
        no_digit_for_some_operand += bool(missing)
        both_words += len(missing) == 2 and d.a != d.b
        if d.template_id == "t13":  # "sum {a} {b}": never both in words (that would be ambiguous)
            assert len(missing) < 2 or d.a == d.b
    assert no_digit_for_some_operand > 0.7 * len(prompts)
    assert both_words > 0.3 * len(prompts)
    # a prompt's words give back the gold operands
    spoken = [d for d in draws["train"] if d.template_id == "t47" and not re.search(r"\d", d.prompt)]
    assert spoken
    for d in spoken:
        left, right = d.prompt.split(" plus ")
        assert (from_words(left), from_words(right)) == (d.a, d.b)


def _written(magnitude: int, style: str) -> set[str]:
    """Every text a numeral style writes for ``magnitude`` (sign aside), lower case."""
    word_styles = [WordStyle(use_and=u, commas=c) for u in (True, False) for c in (True, False)]
    if style in ("digits", "unicode"):
        return {str(magnitude)}
    if style == "grouped":
        return {to_grouped(magnitude)}
    render = to_words if style == "words" else to_mixed
    return {render(magnitude, w) for w in word_styles}


def test_numerals_name_how_each_operand_is_written():
    spec = load_spec(SPECS_DIR / "stage4.spec")  # every numeral style, distractors, any case
    draws = [d for s in sample_stage(spec, {"train": 600, "val": 200, "test": 200}).values() for d in s]
    subtracts = {t.id for split in SPLITS for t in spec.templates_for(split) if getattr(t, "op", None) == "sub"}
    seen: Counter[str] = Counter()
    checked = 0
    for d in draws:
        styles = d.numerals.split("/")
        seen.update(styles)
        spans = plan(d.prompt, d.a, d.b)  # found independently of the sampler, from a and b alone
        if spans is None:
            continue  # an operand written twice or hidden by a distractor: no one span to check
        written = (d.a, -d.b if d.template_id in subtracts else d.b)  # "take 4 away from 17": b = -4
        for span, value, style in zip(spans, written, styles):
            assert d.prompt[span.start : span.end].lower() in _written(abs(value), style), (d.prompt, d.numerals)
            if style == "unicode" and value < 0:
                assert d.prompt[span.start - 1] == "\u2212"
        checked += 1
    assert checked > 0.8 * len(draws)
    assert set(seen) == set(NUMERAL_STYLES)
    only_digits = sample_stage(load_spec(SPECS_DIR / "stage1.spec"), {"train": 50, "val": 20, "test": 20})
    assert {d.numerals for s in only_digits.values() for d in s} == {"digits/digits"}


@settings(max_examples=30, deadline=None)
@given(
    lo=st.integers(-400, -20),
    hi=st.integers(20, 400),
    cut=st.integers(5, 15),
    seed=st.integers(0, 2**31),
    n=st.tuples(st.integers(1, 60), st.integers(1, 40), st.integers(1, 40)),
)
def test_any_feasible_spec_samples_to_a_dataset_that_passes_its_quality_checks(tmp_path_factory, lo, hi, cut, seed, n):
    from exe_coder.dataset.quality import assess
    from exe_coder.dataset.records import Example, patch_text

    top = max(-lo, hi)
    text = (
        SPEC.replace("operands -50..50", f"operands {lo}..{hi}")
        .replace("core 0..39", f"core 0..{cut - 1}")
        .replace("heldout 40..50", f"heldout {cut}..{top}")
        .replace("seed 7", f"seed {seed}")
    )
    spec = load_spec(write_spec(tmp_path_factory.mktemp("p"), text))
    sizes = dict(zip(("train", "val", "test"), n))
    draws = sample_stage(spec, sizes)
    records = {
        split: [
            Example(
                id=d.id, split=d.split, prompt=d.prompt, template_id=d.template_id, program=spec.program, a=d.a, b=d.b,
                expected_stdout=f"{d.a + d.b}\n", target=patch_text(d.a, d.b), sign_pattern=d.sign_pattern,
                magnitude_pair=d.magnitude_pair, numerals=d.numerals, binary_path="", binary_sha256="0" * 64,
            )
            for d in ds
        ]
        for split, ds in draws.items()
    }
    report = assess(spec, records, sizes)
    assert report.ok, report.failures()


# A second training prompt set beside tiny's `train` (t1-t3), for prompt-set shares.
EXTRA_PROMPTS = 'prompts extra {\n    x1 "Combine {a} and {b}"\n    x2 "Sum of {a} with {b}"\n}\n'


def _shared_spec(folder, prompts_field: str, size: int = 400):
    """tiny's spec whose train split reads ``prompts_field`` (e.g. "prompts train 2, extra")."""
    folder.mkdir(exist_ok=True)
    text = SPEC.replace("split train 40 { prompts train pairs core/core }",
                        f"split train {size} {{ {prompts_field} pairs core/core }}")
    return load_spec(write_spec(folder, text, PROMPTS + EXTRA_PROMPTS))


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(100, 600))
def test_prompt_set_shares_set_how_often_each_template_comes_up(tmp_path_factory, share_train, share_extra, size):
    """`prompts train k, extra m`: templates go round in turn, each of `train` k times and each of
    `extra` m times a round, so every template's count is its share times the number of rounds
    (give or take the last, partial one), and the split is still balanced over its cells."""
    spec = _shared_spec(tmp_path_factory.mktemp("shares"), f"prompts train {share_train}, extra {share_extra}", size)
    assert spec.split("train").prompt_shares == [share_train, share_extra]
    draws = sample_stage(spec)["train"]
    counts = Counter(d.template_id for d in draws)
    cells_drawn = Counter((d.sign_pattern, d.magnitude_pair) for d in draws)
    assert len(cells_drawn) == 4 and max(cells_drawn.values()) - min(cells_drawn.values()) <= 1
    turns = 3 * share_train + 2 * share_extra
    rounds_lo, rounds_hi = size // turns, -(-size // turns)
    for template, share in [("t1", share_train), ("t2", share_train), ("t3", share_train),
                            ("x1", share_extra), ("x2", share_extra)]:
        assert share * rounds_lo <= counts[template] <= share * rounds_hi, (template, counts)
    assert sum(counts.values()) == size


def test_shares_of_one_draw_what_no_shares_draw(tmp_path):
    """Shares of 1 are the default: the same draws, so a spec that gains `1`s keeps its data (a
    spec without numbers also leaves them out of its canonical form, so its hash is unchanged)."""
    plain = _shared_spec(tmp_path / "plain", "prompts train, extra")
    ones = _shared_spec(tmp_path / "ones", "prompts train 1, extra 1")
    assert plain.split("train").prompt_shares is None and ones.split("train").prompt_shares == [1, 1]
    assert sample_stage(plain) == sample_stage(ones)
    assert "prompt_shares" not in plain.canonical_json() and "prompt_shares" in ones.canonical_json()
    weighted = _shared_spec(tmp_path / "weighted", "prompts train 3, extra")
    assert sample_stage(weighted)["train"] != sample_stage(plain)["train"]


def test_a_build_with_shares_passes_its_quality_checks_and_its_card_says_so(tmp_path):
    """Unbalanced templates are on purpose here: the build's quality gate still passes (every
    template present, cells balanced) and the dataset card names the shares."""
    spec = _shared_spec(tmp_path / "spec", "prompts train 2, extra 1", size=48)
    result = build_stage(spec, tmp_path / "data", tmp_path / "bin", jobs=1, progress=False)
    assert result.quality.ok
    assert result.quality.splits["train"].templates == {"t1": 12, "t2": 12, "t3": 12, "x1": 6, "x2": 6}
    card = (tmp_path / "data" / "README.md").read_text()
    assert "In train, prompt sets come up train 2 : extra 1" in card
