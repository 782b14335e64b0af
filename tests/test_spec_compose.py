"""The compose phrasebook: stages 1-3 train on it, it yields thousands of phrasings, none of
them held-out wording, and its fillers hold no number a model could read as an operand.
Stage3's shapes phrasebook is held to the same rules."""

from __future__ import annotations

import random
import re
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exe_coder.decode.prompt_check import NUMBER_WORDS
from exe_coder.decode.regex_baseline import extract_operands
from exe_coder.errors import UserError
from exe_coder.paths import REPO_ROOT, SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec.load import normalized_wording
from exe_coder.spec.model import PLACEHOLDER
from exe_coder.spec.phrasing import apply_case, cased_phrasings, fill, phrasings
from tests._spec_text import split_wordings

COMPOSED = ["stage1", "stage1a", "stage1b", "stage2", "stage3"]
# the distinctive words of heldout.prompts: a compose phrasing may share none of them
HELDOUT_WORDS = re.compile(
    r"\b(combine\w*|addition|tally|determine|come to|increased|yields?|emit|figure out|work out|report"
    r"|added with|add up to|sum up|produce|terminal|makes|gives|their sum|given|i need|for me|would"
    r"|writes|displays?|printing)\b"
)


@pytest.fixture(scope="module")
def stage1():
    return load_spec(SPECS_DIR / "stage1.spec")


# compose.prompts, and stage3's shapes.prompts (session 29), held to the same rules
BOOKS = {"compose": SPECS_DIR / "stage1.spec", "shapes": SPECS_DIR / "stage3.spec"}


@pytest.fixture(scope="module", params=sorted(BOOKS))
def book(request):
    return load_spec(BOOKS[request.param]).prompt_set(request.param)


@pytest.fixture(scope="module")
def wordings(book):
    """Every compose phrasing, by frame, as normalized wording."""
    return {f.id: {normalized_wording(p) for p in phrasings(book, f)} for f in book.frames}


@pytest.mark.parametrize("stage", ["stage0", *COMPOSED, "stage4"])
def test_every_stage_spec_loads_and_only_stages_1_to_3_compose(stage):
    spec = load_spec(SPECS_DIR / f"{stage}.spec")
    train = spec.split("train").prompt_sets
    if stage in COMPOSED:
        assert train == (["train", "compose", "shapes"] if stage == "stage3" else ["train", "compose"])
        # the fixed templates keep their ids, beside the phrasebook's families
        assert {f"t{i:02d}" for i in range(1, 49)} <= set(spec.train_template_ids)
    else:
        assert "compose" not in {p.name for p in spec.prompt_sets}
    if stage == "stage1b":  # training phrasings, held-out magnitudes
        assert spec.split("val").prompt_sets == spec.split("test").prompt_sets == ["train", "compose"]
    elif stage in COMPOSED:
        assert spec.split("val").prompt_sets == spec.split("test").prompt_sets == ["heldout"]


def test_thousands_of_distinct_phrasings(book, wordings):
    assert len({p for f in book.frames for p in phrasings(book, f)}) >= 5000
    assert len(set().union(*wordings.values())) >= 5000  # distinct in words, not only punctuation
    assert len({p for f in book.frames for p in cased_phrasings(book, f)}) >= 20000
    assert all(f.op == "add" for f in book.frames)


def test_no_compose_phrasing_is_or_holds_a_held_out_wording(stage1, wordings):
    heldout = {t.id: normalized_wording(t.text) for t in stage1.prompt_set("heldout").templates}
    assert len(heldout) == 20
    every = set().union(*wordings.values())
    assert not every & set(heldout.values())
    # nor contains one inside it ("hey, sum up {a} and {b}" would teach h07 all the same)
    for tid, h in heldout.items():
        assert not any(f" {h} " in f" {w} " for w in every), tid
    leaks = sorted(w for w in every if HELDOUT_WORDS.search(w))
    assert not leaks, leaks[:5]


def test_no_filler_holds_a_number(book):
    """Any digit or number word outside {a} and {b} would be one more number in the prompt."""
    texts = [w for s in book.slots for w in s.words] + [f.text for f in book.frames]
    assert all(s.numbers is None for s in book.slots)  # no distractor slots in stages 1-3
    for text in texts:
        literal = PLACEHOLDER.sub(" ", text)
        assert not re.search(r"\d", literal), text
        words = set(re.findall(r"[a-z]+", literal.lower()))
        assert not words & (NUMBER_WORDS | {"minus", "negative"}), text


def test_a_hyphen_never_stands_before_an_operand(book):
    for f in book.frames:
        for p in phrasings(book, f):
            assert not re.search(r"-\s*\{[ab]\}", p), p
            assert not re.search(r"\w-\W|\W-\w", p.replace("->", "")), p  # hyphens join letters only


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(-5000, 5000), st.integers(-5000, 5000), st.integers(0, 2**32))
def test_a_sampled_prompt_holds_exactly_its_operands(book, data, a, b, seed):
    """Filled, cased and rendered with digits, a compose prompt holds the two operands and no
    other number: a "Mach-O" hyphen is not a minus sign, and "b first" frames put b first."""
    frame = data.draw(st.sampled_from(book.frames))
    rng = random.Random(seed)
    text = fill(book, frame.text, rng).replace("{a}", str(a)).replace("{b}", str(b))
    prompt = apply_case(text, data.draw(st.sampled_from(["asis", "lower", "upper", "title", "sentence"])))
    b_first = frame.text.index("{b}") < frame.text.index("{a}")
    assert extract_operands(prompt) == ((b, a) if b_first else (a, b)), prompt
    assert len(re.findall(r"\d+", prompt)) == 2, prompt


def test_a_compose_phrasing_with_held_out_wording_fails_to_load(tmp_path):
    """The split names two sets (train, compose); a phrasebook phrasing that is a held-out
    template in other case and punctuation is caught and named at the held-out line."""
    (tmp_path / "prompts").mkdir()
    for name in ("train.prompts", "compose.prompts", "heldout.prompts"):
        shutil.copy(SPECS_DIR / "prompts" / name, tmp_path / "prompts" / name)
    shutil.copy(SPECS_DIR / "stage1.spec", tmp_path / "stage1.spec")
    compose = tmp_path / "prompts" / "compose.prompts"
    text = compose.read_text().rstrip()
    assert text.endswith("}")
    compose.write_text(text[:-1] + '    frame c99 "{open}SUM UP {a} AND {b}{end}"\n}\n')
    leak = r"held-out template h07 leaks into train: .* phrasing of train frame c99"
    with pytest.raises(UserError, match=leak) as err:
        load_spec(tmp_path / "stage1.spec")
    heldout = (tmp_path / "prompts" / "heldout.prompts").read_text().splitlines()
    assert err.value.path.endswith("heldout.prompts")
    assert err.value.line == next(n for n, t in enumerate(heldout, 1) if t.strip().startswith("h07"))


@pytest.mark.parametrize("name,frames", [("stage3_fresh", 15), ("stage3_fresh2", 12)])
def test_stage3_fresh_probe_shares_no_wording_with_stage3s_phrasebooks(name, frames):
    """docs/probes/stage3_fresh{,2}.spec: frames written apart from stage3's (sessions 29 and 34),
    for a one-off check of reading beyond its phrasebooks; each is only a check while no phrasing
    stage3 trains or tests on is one of its phrasings, nor holds one."""
    probe = load_spec(REPO_ROOT / "docs" / "probes" / f"{name}.spec")
    stage3 = load_spec(SPECS_DIR / "stage3.spec")

    fresh = {t.id for t in probe.templates_for("test")}
    assert len(fresh) == frames and not fresh & (set(stage3.train_template_ids) | set(stage3.heldout_template_ids))
    probed, trained = split_wordings(probe, "test"), split_wordings(stage3, "train") | split_wordings(stage3, "test")
    assert not probed & trained
    assert not any(f" {p} " in f" {w} " for p in probed for w in trained)


@pytest.fixture(scope="module")
def digit_probe():
    # docs/probes/stage{1,2}_fresh.spec: one phrasebook of sums in digits, two number ranges
    probes = [load_spec(REPO_ROOT / "docs" / "probes" / f"{name}_fresh.spec") for name in ("stage1", "stage2")]
    assert [t.id for t in probes[0].templates_for("test")] == [t.id for t in probes[1].templates_for("test")]
    return probes[1]


@pytest.mark.parametrize("stage", ["stage1", "stage1a", "stage1b", "stage2", "stage3", "stage4"])
def test_digit_fresh_probe_shares_no_wording_with_any_stages_phrasebooks(digit_probe, stage):
    """The fresh digit probe (session 32) reads every model that reads digits, so none of its
    20 frames may be, or sit inside, a phrasing any stage trains or tests on."""
    other = load_spec(SPECS_DIR / f"{stage}.spec")
    frames = digit_probe.templates_for("test")
    assert len(frames) == 20 and not {t.id for t in frames} & set(other.train_template_ids)
    probed = split_wordings(digit_probe, "test")
    seen = split_wordings(other, "train") | split_wordings(other, "test")
    assert not probed & seen
    assert not any(f" {p} " in f" {w} " for p in probed for w in seen)
