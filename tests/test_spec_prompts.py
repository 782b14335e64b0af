"""The shipped prompt sets: enough templates, varied, and held-out ones differ in wording."""

from __future__ import annotations

import re

import pytest

from exe_coder.paths import SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec.load import normalized_wording

STAGES = ["stage0", "stage1", "stage1a", "stage1b", "stage2", "stage3"]


@pytest.fixture(scope="module")
def stage1():
    return load_spec(SPECS_DIR / "stage1.spec")


def test_enough_templates(stage1):
    assert len(stage1.templates_for("train")) >= 40
    assert len(stage1.heldout_template_ids) >= 15


def test_heldout_templates_differ_in_wording_not_only_punctuation(stage1):
    train = {normalized_wording(t.text) for t in stage1.templates_for("train")}
    heldout = [t for t in stage1.templates_for("val") if t.id in set(stage1.heldout_template_ids)]
    assert heldout
    for t in heldout:
        assert normalized_wording(t.text) not in train, t.id
        # and they bring at least one word no training template uses in that order
        assert normalized_wording(t.text) not in {w.replace(" ", "") for w in train}


def test_normalized_wording_ignores_case_punctuation_and_spacing():
    assert normalized_wording("What is {a} + {b}?") == normalized_wording("what IS  {a}+{b}")
    assert normalized_wording("Add {a} and {b}.") != normalized_wording("Add {a} to {b}.")


def test_templates_vary(stage1):
    texts = [t.text for t in stage1.templates_for("train")]
    assert any(t.endswith("?") for t in texts), "questions"
    assert any(t.lower().startswith(("add", "compute", "print")) for t in texts), "commands"
    assert any("program" in t.lower() for t in texts), "write a program ..."
    assert any(re.fullmatch(r"\{a\}\s*\+\s*\{b\}.*", t) for t in texts), "symbolic"
    assert any(t.index("{b}") < t.index("{a}") for t in texts), "operands in either order"
    assert any(t.replace("{a}", "").replace("{b}", "").isupper() for t in texts), "upper case"
    assert any(t[0].islower() for t in texts), "lower case"
    heldout = [t.text for t in stage1.prompt_set("heldout").templates]
    assert any(t.index("{b}") < t.index("{a}") for t in heldout), "held-out operands in either order too"


@pytest.mark.parametrize("stage", STAGES)
def test_every_shipped_spec_keeps_the_seed_rules(stage):
    spec = load_spec(SPECS_DIR / f"{stage}.spec")
    sizes = {s.name: s.size for s in spec.splits}
    train_ids = set(spec.train_template_ids)
    for split in ("val", "test"):
        ids = {t.id for t in spec.templates_for(split)}
        pairs = set(spec.split(split).pairs)
        if stage in ("stage0", "stage1b"):
            assert ids == train_ids  # train templates on every split
        else:
            assert not ids & train_ids  # held-out templates only
        if stage in ("stage0", "stage1a"):
            assert pairs == {"core/core"}
        else:
            assert pairs == {"core/core", "core/heldout", "heldout/core", "heldout/heldout"}
    assert spec.split("train").pairs == ["core/core"]
    assert set(spec.signs) == {"++", "+-", "-+", "--"}
    expected = {
        "stage0": ({"train": 512, "val": 128, "test": 128}, (-200, 200)),
        "stage1": ({"train": 10000, "val": 1000, "test": 1000}, (-1000, 1000)),
        "stage1a": ({"train": 10000, "val": 1000, "test": 1000}, (-1000, 1000)),
        "stage1b": ({"train": 10000, "val": 1000, "test": 1000}, (-1000, 1000)),
        "stage2": ({"train": 50000, "val": 5000, "test": 5000}, (-5000, 5000)),
        "stage3": ({"train": 20000, "val": 2000, "test": 2000}, (-5000, 5000)),
    }[stage]
    assert (sizes, (spec.operands.lo, spec.operands.hi)) == expected
    assert (spec.numerals.words > 0) == (stage == "stage3")


def test_prompt_sets_are_shared_files_not_copies():
    for stage in STAGES:
        text = (SPECS_DIR / f"{stage}.spec").read_text()
        assert "prompts train {" not in text and 'include "prompts/train.prompts"' in text
