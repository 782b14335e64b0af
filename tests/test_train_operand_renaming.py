"""Operand renaming at the string level: rows whose operands are words, "1,250", "−42" or
"4 thousand 2 hundred" get the digit permutation too, re-rendered in their own form and case."""

from __future__ import annotations

import random
import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.dataset import operand_spans
from exe_coder.dataset.numwords import WordStyle, from_words, to_grouped, to_mixed, to_words
from exe_coder.dataset.records import Example, patch_text
from exe_coder.dataset.sample import sample_stage
from exe_coder.decode.track import PatchTrack
from exe_coder.model.tokenizer import Tokenizer
from exe_coder.paths import SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec.model import CASE_STYLES, sign_pattern
from exe_coder.spec.phrasing import apply_case
from exe_coder.train import renaming
from exe_coder.train.data import LENGTH_BUCKET, Batcher, make_batch, permute_digits, tokenize
from tests._spec_text import write_spec
from _train_fixtures import make_examples

TRACK = PatchTrack(-99999, 99999)
STYLES = [WordStyle(neg, u, c) for neg in ("minus", "negative") for u in (True, False) for c in (True, False)]
# every numeral form the sampler writes (sample._Renderer.number)
FORMS = (
    [("digits", str), ("grouped", to_grouped), ("unicode", lambda x: str(x).replace("-", "\u2212"))]
    + [(f"words{i}", lambda x, s=s: to_words(x, s)) for i, s in enumerate(STYLES)]
    + [(f"mixed{i}", lambda x, s=s: to_mixed(x, s)) for i, s in enumerate(STYLES)]
)
# (template, is a sub frame: the prompt writes -b)
TEMPLATES = [("What is {a} plus {b}?", False), ("take {b} away from {a}", True), ("{a} + {b} =", False), ("someone adds {a} to {b}", False)]


def _example(prompt: str, a: int, b: int, i: int = 0) -> Example:
    return Example(
        id=f"train-{i}", split="train", prompt=prompt, template_id="t", program="add", a=a, b=b,
        expected_stdout=f"{a + b}\n", target=patch_text(a, b), sign_pattern=sign_pattern(a, b),
        magnitude_pair="core/core", numerals="digits/digits", binary_path="", binary_sha256="0" * 64,
    )


def _write(template: str, sub: bool, a: int, b: int, form_a, form_b, case: str) -> str:
    raw = template.replace("{a}", form_a(a)).replace("{b}", form_b(-b if sub else b))
    return apply_case(raw, case)


def _texts(batch, row: int) -> tuple[str, str]:
    ids = [int(t) for t in np.concatenate([batch.inputs[row, :1], batch.targets[row]])]
    tok = Tokenizer()
    sep = ids.index(tok.sep_id)
    return bytes(ids[1:sep]).decode(), bytes(ids[sep + 1 : ids.index(tok.eos_id)]).decode()


def _source(prompt: str, target: str, examples: list[Example]) -> Example | None:
    """The example ``prompt`` was renamed from: one whose operands map to the target's digit by
    digit (one permutation) and whose renaming writes exactly ``prompt``."""
    a, b = (int(x) for x in re.fullmatch(r"A=(-?\d+);B=(-?\d+)\n", target).groups())
    for ex in examples:
        old, new = f"{abs(ex.a)}|{abs(ex.b)}", f"{abs(a)}|{abs(b)}"
        if old.index("|") != new.index("|") or len(old) != len(new) or (ex.a < 0, ex.b < 0) != (a < 0, b < 0):
            continue
        pairs = {(o, n) for o, n in zip(old, new) if o != "|"}
        if len({o for o, _ in pairs}) != len(pairs) or len({n for _, n in pairs}) != len(pairs):
            continue
        perm = list(range(10))
        for o, n in pairs:
            perm[int(o)] = int(n)
        spans = operand_spans.plan(ex.prompt, ex.a, ex.b)
        if spans and renaming.rename(ex.prompt, ex.a, ex.b, spans, perm) == (prompt, a, b):
            return ex
    return None


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(-99999, 99999), b=st.integers(-99999, 99999),
    fa=st.sampled_from(FORMS), fb=st.sampled_from(FORMS), case=st.sampled_from(CASE_STYLES),
    template=st.sampled_from(TEMPLATES), seed=st.integers(0, 2**32 - 1),
)
def test_a_renamed_prompt_is_what_the_renderer_writes_for_the_renamed_operands(a, b, fa, fb, case, template, seed):
    text, sub = template
    prompt = _write(text, sub, a, b, fa[1], fb[1], case)
    spans = operand_spans.plan(prompt, a, b)
    if abs(a) == abs(b):
        assert spans is None  # one number written twice: which one is which is unclear
        return
    assert spans is not None, prompt
    perm = [0, *(1 + np.random.default_rng(seed).permutation(9))]
    renamed, na, nb = renaming.rename(prompt, a, b, spans, perm)
    assert (na, nb) == (renaming.rename_int(a, perm), renaming.rename_int(b, perm))
    assert (na < 0, nb < 0, len(str(na)), len(str(nb))) == (a < 0, b < 0, len(str(a)), len(str(b)))
    # a prompt may read as more than one case style ("Five + 7 =": title or sentence): any of them
    cases = [c for c in CASE_STYLES if _write(text, sub, a, b, fa[1], fb[1], c) == prompt]
    assert renamed in {_write(text, sub, na, nb, fa[1], fb[1], c) for c in cases}


def test_ambiguous_or_partial_renderings_are_not_eligible():
    assert operand_spans.plan("add five hundred and seven", 500, 7) is None  # or 507?
    assert operand_spans.plan("add one thousand and five", 1000, 5) is None
    assert operand_spans.plan("I have 3 apples. What is 3 plus five?", 3, 5) is None
    assert operand_spans.plan("what is 17 plus seventeen", 17, -17) is None
    assert operand_spans.plan("what is forty-two plus 7", 40, 7) is None  # "forty" only inside "forty-two"
    assert operand_spans.plan("what is 1,250 plus 7", 250, 7) is None
    assert operand_spans.plan("On my 64-bit Mac, what is 5 plus 9", 64, 9) is None


def test_whole_matches_only_and_sign_words_stay():
    prompt = "Someone adds MINUS FORTY-TWO to forty on arm64 (4 thousand 2 hundred)"
    spans = operand_spans.plan(prompt, -42, 40)
    assert [prompt[s.start : s.end] for s in spans] == ["FORTY-TWO", "forty"]
    assert [(s.form, s.case) for s in spans] == [("words", "upper"), ("words", "lower")]
    perm = [0, 9, 8, 7, 6, 5, 4, 3, 2, 1]  # 4 -> 6, 2 -> 8
    assert renaming.rename(prompt, -42, 40, spans, perm) == (
        "Someone adds MINUS SIXTY-EIGHT to sixty on arm64 (4 thousand 2 hundred)", -68, 60,
    )


def test_a_renamed_batch_row_carries_its_renamed_target():
    rng = random.Random(0)
    examples = []
    for i in range(48):
        a, b = rng.randint(-3999, 3999), rng.randint(-3999, 3999)
        form_a, form_b = rng.choice(FORMS)[1], rng.choice(FORMS[3:])[1]  # b never in digits: not token-path rows
        text, sub = rng.choice(TEMPLATES)
        examples.append(_example(_write(text, sub, a, b, form_a, form_b, rng.choice(CASE_STYLES)), a, b, i))
    split = tokenize(examples, Tokenizer(), 192, target=TRACK.target_tokens)
    assert not split.digit_copies.any() and len(split.words.plans) >= 44
    batcher = Batcher(split, 16, seed=3, digit_permutation=1.0)
    renamed = 0
    for step in range(6):
        batch = batcher.batch_at(step)
        lengths = (batch.targets != Tokenizer().pad_id).sum(1) + 1  # BOS too
        width = batch.inputs.shape[1] + 1
        assert lengths.max() <= width < lengths.max() + LENGTH_BUCKET
        assert width % LENGTH_BUCKET == 0 or width in (split.tokens.shape[1], 192)
        assert list(lengths) == sorted(lengths, reverse=True)  # longest row first, as batch_at orders them
        for row in range(len(batch.inputs)):
            prompt, target = _texts(batch, row)
            assert (batch.target_mask[row] > 0).sum() == len(target) + 1  # target bytes and EOS
            assert _source(prompt, target, examples) is not None, (prompt, target)
            renamed += prompt not in {e.prompt for e in examples}
    assert renamed >= 6 * 16 * 0.7  # identity permutations and rows without a plan stay


PROMPT_ORDER = PatchTrack(-99999, 99999, target_order="prompt")


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(-99999, 99999), b=st.integers(-99999, 99999),
    fa=st.sampled_from(FORMS), fb=st.sampled_from(FORMS), case=st.sampled_from(CASE_STYLES),
    template=st.sampled_from(TEMPLATES),
)
def test_a_prompt_order_target_writes_the_operands_as_the_prompt_does(a, b, fa, fb, case, template):
    text, sub = template
    example = _example(_write(text, sub, a, b, fa[1], fb[1], case), a, b)
    assert TRACK.target(example) == example.target  # as given: A=a;B=b, whatever the prompt
    b_first = text.index("{b}") < text.index("{a}") and abs(a) != abs(b)  # one magnitude twice: as given
    assert PROMPT_ORDER.target(example) == (patch_text(b, a) if b_first else patch_text(a, b))


def test_a_prompt_order_target_falls_back_to_the_given_order_where_the_prompt_cannot_tell():
    unclear = _example("I have 3 apples. Add 5 to 3.", 3, 5)  # 3 written twice
    assert operand_spans.plan(unclear.prompt, 3, 5) is None and PROMPT_ORDER.target(unclear) == "A=3;B=5\n"
    assert PROMPT_ORDER.target(_example("Add 5 to 3 (I have 4 apples).", 3, 5)) == "A=5;B=3\n"
    assert PROMPT_ORDER.target(_example("subtract four from seventeen", 17, -4)) == "A=-4;B=17\n"


def test_prompt_order_rows_are_renamed_and_keep_the_prompt_order():
    rng = random.Random(1)
    examples = []
    for i in range(32):
        a, b = rng.randint(-3999, 3999), rng.randint(-3999, 3999)
        examples.append(_example(_write("add {b} to {a}", False, a, b, rng.choice(FORMS)[1], rng.choice(FORMS[3:])[1], "lower"), a, b, i))
    split = tokenize(examples, Tokenizer(), 192, target=PROMPT_ORDER.target_tokens)
    assert len(split.words.plans) >= 30
    batch = Batcher(split, 16, seed=3, digit_permutation=1.0).batch_at(0)
    renamed = 0
    for row in range(16):
        prompt, target = _texts(batch, row)
        a, b = (int(x) for x in re.fullmatch(r"A=(-?\d+);B=(-?\d+)\n", target).groups())
        assert _source(prompt, patch_text(b, a), examples) is not None, (prompt, target)  # b first, as the prompt
        renamed += prompt not in {e.prompt for e in examples}
    assert renamed >= 10


def test_digit_rows_and_digit_only_configs_are_bit_identical():
    digit_rows = make_examples(48, "train", 5)
    words = [_example(f"add {to_words(e.a)} and {to_words(e.b)}", e.a, e.b, 100 + i) for i, e in enumerate(make_examples(16, "train", 6))]
    plain = tokenize(digit_rows, Tokenizer(), 64, target=TRACK.target_tokens)
    mixed = tokenize(digit_rows + words, Tokenizer(), 64, target=TRACK.target_tokens)
    assert plain.words is None and mixed.words is not None
    for split in (plain, mixed):
        batcher = Batcher(split, 16, seed=11, digit_permutation=0.5)
        for step in range(8):
            epoch, i = divmod(step, batcher.steps_per_epoch)
            idx = np.sort(batcher._order(epoch)[i * 16 : (i + 1) * 16])
            rows = idx[np.argsort(-split.lengths[idx], kind="stable")]
            want = permute_digits(make_batch(split, rows), split.digit_copies[rows], 0.5, np.random.default_rng([11, step, 2]))
            got = batcher.batch_at(step)
            if split is plain:
                for name in ("inputs", "targets", "target_mask", "prompt_mask"):
                    assert np.array_equal(getattr(got, name), getattr(want, name))
            else:  # every digit row of the batch is there, renamed as permute_digits renames it
                have = {_texts(got, r) for r in range(16)}
                assert {_texts(want, r) for r in range(16) if split.digit_copies[rows[r]]} <= have


def test_the_batch_at_a_step_is_a_function_of_seed_and_step():
    words = [_example(f"what is {to_words(e.a)} plus {to_mixed(e.b)}", e.a, e.b, i) for i, e in enumerate(make_examples(32, "train", 9, -999, 999))]
    split = tokenize(words, Tokenizer(), 128, target=TRACK.target_tokens)
    one, two = (Batcher(split, 8, seed=4, digit_permutation=0.5) for _ in range(2))
    for step in (0, 3, 9):
        b1, b2 = one.batch_at(step), two.batch_at(step)
        assert all(np.array_equal(getattr(b1, n), getattr(b2, n)) for n in ("inputs", "targets", "target_mask", "prompt_mask"))
    other = Batcher(split, 8, seed=5, digit_permutation=0.5)
    assert any(not np.array_equal(one.batch_at(s).inputs, other.batch_at(s).inputs) for s in range(4))


def test_track_b_targets_are_never_renamed():
    words = [_example(f"add {to_words(e.a)} and {to_words(e.b)}", e.a, e.b, i) for i, e in enumerate(make_examples(8, "train", 1))]
    split = tokenize(words, Tokenizer(), 64, target=lambda e: [0, 1, 2, 3])  # image bytes, not the example's text
    assert split.words is None


def _sampled(spec_path, n: int) -> list[Example]:
    draws = sample_stage(load_spec(spec_path), {"train": n, "val": 16, "test": 16})["train"]
    return [_example(d.prompt, d.a, d.b, i) for i, d in enumerate(draws)]


STAGE3_LIKE = """\
stage tiny
target macos-arm64
program add
seed 7
operands -5000..5000
magnitudes {
    core 0..3999
    heldout 4000..5000
}
signs ++ +- -+ --
numerals { digits 1  words 2 }
include "tiny.prompts"
split train 200 { prompts train pairs core/core }
split val 16 { prompts heldout pairs core/core core/heldout heldout/core heldout/heldout }
split test 16 { prompts heldout pairs core/core core/heldout heldout/core heldout/heldout }
"""


def test_training_rows_show_heldout_magnitudes_in_words(tmp_path):
    examples = _sampled(write_spec(tmp_path, STAGE3_LIKE), 200)
    assert not any("four thousand" in e.prompt.lower() for e in examples)  # train is core only
    split = tokenize(examples, Tokenizer(), 192, target=TRACK.target_tokens)
    assert len(split.words.plans) >= 0.6 * len(examples)
    batcher = Batcher(split, 20, seed=1, digit_permutation=1.0)
    heldout = []
    for step in range(batcher.steps_per_epoch):
        batch = batcher.batch_at(step)
        for row in range(len(batch.inputs)):
            prompt, target = _texts(batch, row)
            if "four thousand" in prompt.lower():
                heldout.append(target)
    assert len(heldout) >= 10
    assert all(re.search(r"=-?4\d\d\d;", t) or re.search(r"=-?4\d\d\d\n", t) for t in heldout)


def test_sampled_stage4_rows_round_trip():
    """Rows drawn by the real sampler (phrasebooks, distractors, every numeral form and case):
    most are eligible, and each renamed prompt writes the renamed operands where the old ones were."""
    examples = _sampled(SPECS_DIR / "stage4.spec", 300)
    split = tokenize(examples, Tokenizer(), 256, target=TRACK.target_tokens)
    words = [i for i in range(len(examples)) if not split.digit_copies[i]]
    assert len(split.words.plans) >= 0.95 * len(words)
    rng = np.random.default_rng(0)
    for ex, spans in split.words.plans.values():
        perm = [0, *(1 + rng.permutation(9))]
        prompt, a, b = renaming.rename(ex.prompt, ex.a, ex.b, spans, perm)
        old_rest, new_rest, at, new_at = [], [], 0, 0
        for span in sorted(spans, key=lambda s: s.start):
            value = abs((a, b)[span.operand])
            start = new_at + span.start - at  # the text between spans keeps its length
            new = prompt[start : start + len(operand_spans.render(value, span))]
            parsed = int(new.replace(",", "")) if span.form in ("digits", "grouped") else from_words(new)
            assert parsed == value, (ex.prompt, prompt)
            old_rest.append(ex.prompt[at : span.start])
            new_rest.append(prompt[new_at:start])
            at, new_at = span.end, start + len(new)
        # outside the operands (sign words, distractors, fillers) nothing changed
        assert old_rest + [ex.prompt[at:]] == new_rest + [prompt[new_at:]]
