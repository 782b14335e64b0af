"""The spec grammar: syntax errors point at file:line:column and say what was expected;
shipped specs parse into the models their snapshots record."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exe_coder.errors import UserError
from exe_coder.paths import SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.spec import parser as parser_module
from exe_coder.spec.parser import parse_text
from tests._spec_text import PROMPTS, SPEC, write_spec

SHIPPED = ["stage0", "stage1", "stage1a", "stage1b", "stage2", "stage3", "stage4"]


@pytest.mark.parametrize(
    "spec, line, column, found, expected",
    [
        (SPEC.replace("seed 7", "seed x7"), 4, 6, "'x7'", "an integer"),
        (SPEC.replace("operands -50..50", "operands -50...50"), 5, 15, "character '.'", "an integer"),
        (SPEC.replace("signs ++ +- -+ --", "signs ++ +* -+ --"), 10, 10, "character '+'", "a sign pattern"),
        (SPEC.replace("split val 16", "split valid 16"), 13, 7, None, 'unknown split \'valid\'; expected one of "train", "val", "test"'),
        (SPEC.replace("    heldout 40..50\n", "    heldout 40..50\n    kept 1..2\n"), 9, 5, None, "unknown magnitude bucket 'kept'"),
        (SPEC.removesuffix(" }\n") + "\n", 15, 1, "end of file", '"}"'),
        (SPEC.removesuffix(" }\n"), 14, 90, "end of file", '"}"'),
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


def test_a_phrasebook_syntax_error_names_its_place(tmp_path):
    book = 'phrasebook more {\n    slot verb "add" | "sum"\n    frame m1 "{verb} {a} {b}"\n}\n'
    path = write_spec(tmp_path, prompts=PROMPTS + book)
    with pytest.raises(UserError, match='expected "="') as err:
        load_spec(path)
    assert err.value.path.endswith("tiny.prompts") and (err.value.line, err.value.column) == (11, 15)


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


def test_the_decode_block_is_gone_from_the_language(tmp_path):
    # decode bounds are a run's ([data].decode_min_int/max_int), the decode grammar a track's
    path = write_spec(tmp_path, SPEC + 'decode { grammar "track_a.lark" min -50 max 50 }\n')
    with pytest.raises(UserError, match="unexpected 'decode'") as err:
        load_spec(path)
    assert (err.value.line, err.value.column) == (15, 1)


BIG = "x" * 5_000_000  # one token of 5 MB
LONG = "x" * 100_000  # long enough to show a message quoting it whole; quick to lex as a string


@pytest.mark.parametrize(
    "spec, line, column",
    [
        (BIG, 1, 1),  # a one-token spec: the syntax error quotes an excerpt of it
        ('"' + LONG + '"', 1, 1),
        (SPEC.replace("seed 7", "seed 7" + LONG), 4, 7),
        (SPEC.replace("split val 16", f"split {LONG} 16"), 13, 7),
        (SPEC.replace("target macos-arm64", f"target {LONG}"), 2, 1),
        (SPEC.replace("program add", f"program {LONG}"), 3, 1),  # was an OSError: name too long
        (SPEC.replace('include "tiny.prompts"', f'include "{LONG}"'), 11, 1),  # likewise
        (SPEC + f'prompts more {{ m1 "\\q{LONG}" }}\n', 15, 19),  # a bad escape in a long string
    ],
    ids=["one token", "one string", "after seed", "split name", "target", "program", "include", "escape"],
)
def test_a_huge_token_gives_a_short_error_that_names_its_place(tmp_path, spec, line, column):
    path = write_spec(tmp_path, spec)
    with pytest.raises(UserError) as err:
        load_spec(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}:{column}: ")
    assert len(text) < len(str(path)) + 300
    assert "characters)" in text  # the excerpt says how long the whole token was


@pytest.mark.parametrize("special", ["/dev/zero", "folder", "fifo"])
def test_a_spec_that_is_not_a_regular_file_is_refused(tmp_path, special):
    path = Path(special) if special == "/dev/zero" else tmp_path / "x.spec"
    if special == "folder":
        path.mkdir()
    elif special == "fifo":
        os.mkfifo(path)  # no writer: reading it would wait forever
    expected = "is a folder" if special == "folder" else "is not a regular file"
    with pytest.raises(UserError, match=expected) as err:
        load_spec(path)
    assert err.value.path == str(path)


def test_a_spec_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    path = write_spec(tmp_path)
    monkeypatch.setattr(parser_module, "MAX_SPEC_BYTES", 100)
    with pytest.raises(UserError, match=r"over the 100-byte limit") as err:
        load_spec(path)
    assert err.value.path == str(path)


def test_a_spec_that_is_not_utf8_names_the_line(tmp_path):
    path = write_spec(tmp_path)
    path.write_bytes(SPEC.encode().replace(b"seed 7", b"seed \xff7"))
    with pytest.raises(UserError, match="not UTF-8") as err:
        load_spec(path)
    assert (err.value.path, err.value.line) == (str(path), 4)
