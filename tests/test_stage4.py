"""stage4, "read, don't extract": its phrasebooks, held-out isolation, subtraction, and a
regex baseline that fails it."""

from __future__ import annotations

import re
import shutil

import pytest

from exe_coder.dataset.build import build_stage
from exe_coder.dataset.records import load_examples
from exe_coder.dataset.sample import sample_stage
from exe_coder.decode.infer import RegexBaselinePredictor, run_inference, summarize
from exe_coder.decode.track import PatchTrack
from exe_coder.errors import UserError
from exe_coder.paths import CONFIGS_DIR, REPO_ROOT, SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec.phrasing import cased_phrasings
from exe_coder.train.config import load_config
from tests._spec_text import SPEC as SPEC_TEXT
from tests._spec_text import split_wordings, wordings, write_spec

SPEC = SPECS_DIR / "stage4.spec"
PROMPT_FILES = ("stage4-train.prompts", "stage4-heldout.prompts")


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC)


# docs/probes/stage4_fresh{,2,3,4,5}.spec: frames written apart from stage4's (sessions 15, 34, 35
# and 36; the last three by helpers who had read no phrasebook, the fifth sealed), for a one-off check
# of reading beyond both phrasebooks; each loads only while its wording stays out of training.
# Name -> (frames, frames with a wording stage3 trains on).
PROBES = {
    "stage4_fresh": (15, {"f02", "f03"}),
    "stage4_fresh2": (16, set()),
    "stage4_fresh3": (20, set()),
    "stage4_fresh4": (20, set()),
    "stage4_fresh5": (20, set()),
}


@pytest.fixture(scope="module", params=sorted(PROBES))
def probe_name(request):
    return request.param


@pytest.fixture(scope="module")
def probe(probe_name):
    spec = load_spec(REPO_ROOT / "docs" / "probes" / f"{probe_name}.spec")
    assert len(spec.templates_for("test")) == PROBES[probe_name][0]
    return spec


@pytest.fixture(scope="module")
def stage4_wordings(spec):
    """Every phrasing stage4 trains or tests on, up to case and punctuation (once for all probes)."""
    return split_wordings(spec, "train") | split_wordings(spec, "test")


@pytest.fixture(scope="module")
def stage3_train_wordings():
    return split_wordings(load_spec(SPECS_DIR / "stage3.spec"), "train")


@pytest.fixture(scope="module")
def draws(spec):
    return sample_stage(spec, {"train": 3000, "val": 300, "test": 1000})


def _copy(tmp_path):
    (tmp_path / "prompts").mkdir()
    for name in PROMPT_FILES:
        shutil.copy(SPECS_DIR / "prompts" / name, tmp_path / "prompts" / name)
    shutil.copy(SPEC, tmp_path / "stage4.spec")
    return tmp_path / "stage4.spec"


def _phrasings(spec, split):
    out = set()
    for t in spec.templates_for(split):
        out |= cased_phrasings(spec.book_of(t.id), t)
    return out


def test_stage4_loads_with_held_out_families_only_in_val_and_test(spec):
    assert {s.name: s.size for s in spec.splits} == {"train": 20000, "val": 2000, "test": 2000}
    assert (spec.operands.lo, spec.operands.hi) == (-5000, 5000)
    assert [(r.lo, r.hi) for r in spec.magnitudes.heldout] == [(4000, 5000)]
    train = set(spec.train_template_ids)
    for split in ("val", "test"):
        ids = {t.id for t in spec.templates_for(split)}
        assert ids and not ids & train and ids <= set(spec.heldout_template_ids)
    ops = {t.op for t in spec.templates_for("train")} | {t.op for t in spec.templates_for("test")}
    assert ops == {"add", "sub"}
    # the stage trains on its own data: stage4 -> sft_stage4_read
    config = load_config(CONFIGS_DIR / "sft_stage4_read.toml")
    assert config.data.test_jsonl.endswith("processed/stage4/test.jsonl")


def test_thousands_of_distinct_phrasings_and_none_held_out_in_train(spec):
    train, heldout = _phrasings(spec, "train"), _phrasings(spec, "test")
    assert len(train) >= 2000 and len(heldout) >= 2000
    # isolation in wording, not only in ids: no held-out phrasing, whatever its case and
    # punctuation, is a training phrasing
    assert not split_wordings(spec, "train") & split_wordings(spec, "test")


def test_fresh_probe_shares_no_wording_with_either_stage4_phrasebook(spec, probe, stage4_wordings):
    fresh = {t.id for t in probe.templates_for("test")}
    stage4_ids = set(spec.train_template_ids) | set(spec.heldout_template_ids)
    assert not fresh & (stage4_ids | set(probe.train_template_ids))
    assert not split_wordings(probe, "test") & stage4_wordings


def test_stage3s_training_wording_reaches_only_h01_of_stage4s_held_out_frames(
    spec, probe, probe_name, stage3_train_wordings
):
    """sft_stage4_from_stage3 starts from a model trained on stage3's phrasings, so a held-out
    stage4 frame with a wording stage3 trains on is not held out from it: today h01 ("find / give
    me the total of {a} and {b}", stage3's t27) and the first fresh probe's f02 and f03, which the
    README's figures leave out where they say so; none of the second probe's. A phrasebook edit
    that leaks another frame fails here."""
    for split_spec, expected in ((spec, {"h01"}), (probe, PROBES[probe_name][1])):
        leaked = {t.id for t in split_spec.templates_for("test") if wordings(split_spec, [t]) & stage3_train_wordings}
        assert leaked == expected


def test_a_held_out_family_leaking_into_train_fails_to_load(tmp_path):
    path = _copy(tmp_path)
    train = tmp_path / "prompts" / "stage4-train.prompts"
    # one phrasing of held-out frame h07 ("{pre}{kindly}deduct {b} from {a}{end}"), in train
    text = train.read_text().rstrip()
    assert text.endswith("}")
    train.write_text(text[:-1] + '    frame r99 sub "Deduct {b} from {a}!"\n}\n')
    with pytest.raises(UserError, match="held-out frame h07 leaks into train") as err:
        load_spec(path)
    line = next(n for n, t in enumerate((tmp_path / "prompts" / PROMPT_FILES[1]).read_text().splitlines(), 1) if "frame h07" in t)
    assert err.value.path.endswith("stage4-heldout.prompts") and err.value.line == line
    assert "\n" not in str(err.value)


def test_same_seed_same_prompts_other_seed_others(tmp_path, spec, draws):
    assert sample_stage(spec, {"train": 3000, "val": 300, "test": 1000}) == draws
    path = _copy(tmp_path)
    path.write_text(path.read_text().replace("seed 1337", "seed 1338"))
    assert [d.prompt for d in sample_stage(load_spec(path), {"train": 50, "val": 5, "test": 5})["train"]] != [
        d.prompt for d in draws["train"][:50]
    ]


def test_prompts_vary_as_the_stage_promises(draws):
    prompts = [d.prompt for split in draws.values() for d in split]
    assert len(set(prompts)) == len(prompts)
    has = lambda f: sum(map(f, prompts)) / len(prompts)  # noqa: E731
    assert has(lambda p: "\u2212" in p) > 0.02  # Unicode minus
    assert has(lambda p: re.search(r"\d,\d{3}", p) is not None) > 0.05  # "1,250"
    assert has(lambda p: " thousand" in p.lower() or " hundred" in p.lower()) > 0.2  # words, mixed
    assert has(lambda p: p.isupper()) > 0.03 and has(lambda p: p[:1].islower()) > 0.1  # any case
    assert has(lambda p: any(w in p.lower() for w in ("64-bit", "arm64", "mach-o", "step ", "apples", "part "))) > 0.1
    assert has(lambda p: any(w in p.lower() for w in ("subtract", "away from", "minus", "deduct", "reduce"))) > 0.2
    assert max(len(p.encode()) for p in prompts) + 24 <= load_config(CONFIGS_DIR / "sft_stage4_read.toml").model.seq_len


SUB_PROMPTS = """\
phrasebook train {
    slot end = "" | "."
    frame s1 sub "take {b} away from {a}{end}"
    frame s2 "add {a} and {b}{end}"
}
phrasebook heldout {
    frame s3 sub "subtract {b} from {a}"
}
"""


@pytest.mark.parametrize("seed", [7, 8])
def test_subtraction_examples_are_consistent(tmp_path, seed):
    """A sub frame writes -b: "take 4 away from 17" is a=17, b=-4, and a + b is 17 - 4."""
    spec = load_spec(write_spec(tmp_path, SPEC_TEXT.replace("seed 7", f"seed {seed}"), SUB_PROMPTS))
    draws = sample_stage(spec)
    seen = set()
    for d in (d for split in draws.values() for d in split):
        m = re.fullmatch(r"(take|subtract|add) (-?\d+) (away from|from|and) (-?\d+)\.?", d.prompt)
        assert m, d.prompt
        x, y = int(m[2]), int(m[4])
        if m[1] == "add":
            assert (d.a, d.b) == (x, y)
        else:
            minuend, subtrahend = y, x
            assert (d.a, d.b) == (minuend, -subtrahend) and d.a + d.b == minuend - subtrahend
        seen.add(m[1])
    assert seen == {"take", "subtract", "add"}


def test_subtrahend_weights_set_the_written_sign_of_sub_frames_only(tmp_path):
    """`subtrahend { positive 1  negative 0 }` on train: every sub frame there writes a subtrahend
    >= 0 (so the patch's b <= 0), add frames keep both signs of b, and test (no table) keeps both
    written signs; the split still covers every sign pattern, and the build's quality report
    says b's sign is skewed on purpose, and passes."""
    text = SPEC_TEXT.replace("split train 40 { prompts train pairs core/core }",
                             "split train 400 { prompts train pairs core/core subtrahend { positive 1  negative 0 } }")
    spec = load_spec(write_spec(tmp_path, text, SUB_PROMPTS))
    assert spec.split("train").subtrahend.weights() == (1, 0) and spec.split("test").subtrahend is None
    draws = sample_stage(spec)
    written = lambda d: int(re.search(r"-?\d+", d.prompt[4:] if d.prompt.startswith("take") else d.prompt)[0])  # noqa: E731
    sub_train = [d for d in draws["train"] if d.template_id == "s1"]
    add_train = [d for d in draws["train"] if d.template_id == "s2"]
    assert sub_train and all(d.b <= 0 and written(d) == -d.b for d in sub_train)
    assert {d.b < 0 for d in add_train} == {True, False}
    assert {d.b < 0 for d in draws["test"]} == {True, False}  # s3, no table: both written signs
    assert {d.sign_pattern for d in draws["train"]} == {"++", "+-", "-+", "--"}
    report = build_stage(spec.path, tmp_path / "data", tmp_path / "bin", jobs=1, progress=False).quality
    assert report.ok
    names = {c.name for c in report.checks}
    assert "train: sign patterns ++ +- -+ -- all present and b's sign skewed by subtrahend weights" in names
    assert "test: sign patterns ++ +- -+ -- all present and balanced" in names
    card = (tmp_path / "data" / "README.md").read_text()
    assert "In train, sub frames write the subtrahend positive 1 : negative 0" in card


def test_stage4_trains_on_mostly_positive_subtrahends_and_tests_on_balanced_ones(spec, draws):
    """The training split writes subtrahends positive 3 times in 4, so the sign of the patch's b
    is not the written sign XOR the operation alone; val and test (no table) stay balanced."""
    sub_ids = {t.id for split in ("train", "test") for t in spec.templates_for(split) if t.op == "sub"}
    share = lambda rows: sum(d.b < 0 for d in rows) / len(rows)  # noqa: E731  b < 0: written positive
    assert 0.70 < share([d for d in draws["train"] if d.template_id in sub_ids]) < 0.80
    assert 0.45 < share([d for d in draws["train"] if d.template_id not in sub_ids]) < 0.55
    assert 0.44 < share([d for d in draws["test"] if d.template_id in sub_ids]) < 0.56


def test_stage4_sub_frames_are_marked(spec):
    sub = {t.text for t in spec.templates_for("train") + spec.templates_for("test") if t.op == "sub"}
    assert any("take {b} away from {a}" in t for t in sub) and any("subtract {b} from {a}" in t for t in sub)
    assert not any("add {b} to {a}" in t for t in sub)


def test_regex_baseline_fails_a_built_stage4_test_split(tmp_path):
    """The regex takes the first two integers: distractors, subtraction, words, "1,250" and
    "4 thousand" defeat it. It would pass an easy stage (stage0: 1.0)."""
    build_stage(SPEC, tmp_path / "data", tmp_path / "bin", sizes={"train": 8, "val": 8, "test": 200}, jobs=1, progress=False)
    test = load_examples(tmp_path / "data" / "test.jsonl")
    assert len(test) == 200
    for e in test:
        assert e.expected_stdout == f"{e.a + e.b}\n" and e.target == f"A={e.a};B={e.b}\n"
    predictions = run_inference(test, RegexBaselinePredictor(), PatchTrack())
    accuracy = summarize(predictions)["answer_accuracy"]
    assert accuracy < 0.30, accuracy


# docs/variants/stage4_shapes.spec (session 30): stage4 with one more training phrasebook of
# sentence shapes, each in both operations; an experiment, not shipped (docs/experiments.md).
VARIANT = REPO_ROOT / "docs" / "variants" / "stage4_shapes.spec"


@pytest.fixture(scope="module")
def shapes_variant():
    return load_spec(VARIANT)


def test_stage4_shapes_variant_adds_training_shapes_in_both_operations(spec, shapes_variant, probe):
    shapes = shapes_variant.prompt_set("shapes4").templates
    assert [t.id for t in shapes_variant.templates_for("train")] == list(spec.train_template_ids) + [t.id for t in shapes]
    # frames come in pairs, a sum then a difference, so no shape tells the operation
    assert len(shapes) >= 20 and [t.op for t in shapes] == ["add", "sub"] * (len(shapes) // 2)
    # thousands of phrasings, none of them a held-out or fresh-probe phrasing (stage4's own
    # training frames are checked above)
    ours = wordings(shapes_variant, shapes)
    assert len(ours) >= 10_000
    assert not ours & split_wordings(shapes_variant, "test") and not ours & split_wordings(probe, "test")


# docs/variants/stage4_replay.spec (session 33): stage4 whose training split also replays stages
# 1-3's compositional sums, from a copy of compose.prompts whose c09 cannot say "the total of"
# (a phrasing of stage4's held-out h01); an experiment (docs/experiments.md).
REPLAY = REPO_ROOT / "docs" / "variants" / "stage4_replay.spec"


@pytest.fixture(scope="module")
def replay_variant():
    return load_spec(REPLAY)


def test_stage4_replay_variant_trains_on_stage4s_frames_and_compose_without_h01s_wording(spec, replay_variant):
    compose = load_spec(SPECS_DIR / "stage3.spec")
    theirs = {t.id: t for t in compose.prompt_set("compose").templates}
    ours = replay_variant.prompt_set("compose_replay").templates
    assert [t.id for t in replay_variant.templates_for("train")] == list(spec.train_template_ids) + [t.id for t in ours]
    # the same 30 families, all but c09 word for word
    assert [t.id for t in ours] == list(theirs) and len(ours) == 30
    changed = {t.id for t in ours if wordings(replay_variant, [t]) != wordings(compose, [theirs[t.id]])}
    assert changed == {"c09"}
    c09 = wordings(replay_variant, [next(t for t in ours if t.id == "c09")])
    assert c09 < wordings(compose, [theirs["c09"]])
    # compose itself would leak h01 into stage4's training split; the copy does not
    h01 = wordings(spec, [t for t in spec.templates_for("test") if t.id == "h01"])
    assert wordings(compose, [theirs["c09"]]) & h01 and not c09 & h01


# docs/variants/stage4_stories.spec (session 35): stage4 whose training split also holds stories
# in which a verb or a situation tells the operation; an experiment (docs/experiments.md).
STORIES = REPO_ROOT / "docs" / "variants" / "stage4_stories.spec"


@pytest.fixture(scope="module")
def stories_variant():
    return load_spec(STORIES)


@pytest.fixture(scope="module")
def story_wordings(stories_variant):
    return wordings(stories_variant, stories_variant.prompt_set("stories").templates)


def test_stage4_stories_variant_adds_stories_in_both_operations(spec, stories_variant, story_wordings):
    stories = stories_variant.prompt_set("stories").templates
    assert [t.id for t in stories_variant.templates_for("train")] == list(spec.train_template_ids) + [t.id for t in stories]
    assert len(stories) == 28 and sum(t.op == "sub" for t in stories) == 14
    assert len(story_wordings) >= 100_000
    assert not story_wordings & split_wordings(stories_variant, "test")


def test_no_story_is_a_probe_phrasing(story_wordings, probe):
    # the probes include stage4's training phrasebook only, so their loader cannot see this one
    assert not story_wordings & split_wordings(probe, "test")


# docs/variants/stage4_stories_shared.spec (session 38): the stories variant with the phrasebook
# taking three turns for each story's one.
SHARED = REPO_ROOT / "docs" / "variants" / "stage4_stories_shared.spec"


@pytest.fixture(scope="module")
def shared_variant():
    return load_spec(SHARED)


def test_stage4_shared_variant_trains_on_the_stories_a_fifth_of_the_time(stories_variant, shared_variant):
    train = shared_variant.split("train")
    assert train.prompt_sets == ["read", "stories"] and train.prompt_shares == [3, 1]
    assert shared_variant.templates_for("train") == stories_variant.templates_for("train")
    stories = {t.id for t in shared_variant.prompt_set("stories").templates}
    draws = sample_stage(shared_variant, {"train": 2840, "val": 20, "test": 20})["train"]
    # 38 frames x 3 turns and 28 x 1 a round: 20 rounds of 142
    assert sum(d.template_id in stories for d in draws) == 20 * 28


@pytest.mark.parametrize("name", ["shapes_variant", "replay_variant", "stories_variant", "shared_variant"])
def test_stage4_variants_keep_stage4s_val_and_test(request, spec, name):
    """A variant's figures compare with stage4's because its val and test splits are stage4's own."""
    other = request.getfixturevalue(name)
    assert [t.id for t in other.templates_for("test")] == [t.id for t in spec.templates_for("test")]
    sizes = {"train": 200, "val": 300, "test": 300}
    ours, theirs = sample_stage(other, sizes), sample_stage(spec, sizes)
    assert ours["train"] != theirs["train"]
    assert ours["val"] == theirs["val"] and ours["test"] == theirs["test"]
