"""The spec grammar: syntax errors point at file:line:column and say what was expected;
shipped specs parse into the models their snapshots record."""

from __future__ import annotations

import pytest

from exe_coder.errors import UserError
from exe_coder.paths import SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec.parser import parse_text
from tests._spec_text import PROMPTS, SPEC, write_spec

SHIPPED = ["stage0", "stage1", "stage1a", "stage1b", "stage2", "stage3"]


@pytest.mark.parametrize(
    "spec, line, column, found, expected",
    [
        (SPEC.replace("seed 7", "seed x7"), 4, 6, "'x7'", "an integer"),
        (SPEC.replace("operands -50..50", "operands -50...50"), 5, 15, "character '.'", "an integer"),
        (SPEC.replace("signs ++ +- -+ --", "signs ++ +* -+ --"), 10, 10, "character '+'", "a sign pattern"),
        (SPEC.replace("split val 16", "split valid 16"), 13, 7, None, 'unknown split \'valid\'; expected one of "train", "val", "test"'),
        (SPEC.replace("    heldout 40..50\n", "    heldout 40..50\n    kept 1..2\n"), 9, 5, None, "unknown magnitude bucket 'kept'"),
        (SPEC.replace("max 50 }", "max 50"), 16, 1, "end of file", '"}"'),
        (SPEC.replace("max 50 }", "max 50").rstrip("\n"), 15, 47, "end of file", '"}"'),
        (SPEC.replace("seed 7", "sede 7"), 4, 1, "'sede'", '"seed"'),
        (SPEC.replace("stage tiny", "stagex tiny"), 1, 1, "'stagex'", '"stage"'),
        (SPEC.replace("pairs core/core }", "pairs core/cor }", 1), 12, 38, "'core'", "a magnitude pair"),
    ],
)
def test_syntax_error_position_and_expectation(tmp_path, spec, line, column, found, expected):
    path = write_spec(tmp_path, spec)
    with pytest.raises(UserError) as err:
        load_spec(path)
    e = err.value
    assert (e.path, e.line, e.column) == (str(path), line, column)
    assert "expected" in e.message
    if found is not None:
        assert e.message.startswith(f"unexpected {found}")
    assert expected in e.message
    assert str(e).startswith(f"{path}:{line}:{column}: ")


def test_syntax_error_in_an_included_file_names_that_file(tmp_path):
    path = write_spec(tmp_path, prompts=PROMPTS.replace('t3 "{a} + {b}"', 't3 {a} + {b}'))
    with pytest.raises(UserError) as err:
        load_spec(path)
    assert err.value.path.endswith("tiny.prompts") and (err.value.line, err.value.column) == (4, 8)


def test_an_included_file_holds_only_prompt_sets(tmp_path):
    path = write_spec(tmp_path, prompts=PROMPTS + "seed 3\n")
    with pytest.raises(UserError, match="unexpected 'seed'") as err:
        load_spec(path)
    assert err.value.path.endswith("tiny.prompts") and err.value.line == 10


def test_comments_and_layout_do_not_change_the_spec(tmp_path):
    plain = load_spec(write_spec(tmp_path, name="a.spec"))
    noisy_text = "# a comment\n" + SPEC.replace("\n", "   # trailing comment\n").replace(" { ", " {\n  ")
    noisy = load_spec(write_spec(tmp_path, noisy_text, name="b.spec"))
    assert noisy.model_dump() == plain.model_dump()
    assert noisy.sha256() == plain.sha256()


def test_any_change_of_meaning_changes_the_hash(tmp_path):
    base = load_spec(write_spec(tmp_path, name="a.spec")).sha256()
    assert load_spec(write_spec(tmp_path, SPEC.replace("seed 7", "seed 8"), name="b.spec")).sha256() != base
    changed_prompt = PROMPTS.replace("Tally", "Total up")
    assert load_spec(write_spec(tmp_path, prompts=changed_prompt, name="c.spec")).sha256() != base


def test_string_escapes():
    decls = parse_text('prompts p { t1 "say \\"{a}\\" and {b}\\n" }', "x.prompts", start="prompt_file")
    (name, templates) = decls[0].value
    assert templates[0].text == 'say "{a}" and {b}\n'


@pytest.mark.parametrize("stage", SHIPPED)
def test_shipped_spec_model(stage, snapshot):
    spec = load_spec(SPECS_DIR / f"{stage}.spec")
    assert spec.stage == stage
    assert spec.model_dump() == snapshot
