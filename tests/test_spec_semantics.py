"""Every semantic error of a spec is one UserError naming the problem, the file and the line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exe_coder.errors import UserError
from exe_coder.spec import load_spec, phrasing
from tests._spec_text import PROMPTS, SPEC, write_spec


def _swap(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# (case, spec edit, prompts edit, message fragment, file the error names, line)
CASES = [
    ("missing include", ('"tiny.prompts"', '"nope.prompts"'), None, "not found", "tiny.spec", 11),
    ("unknown program", ("program add", "program sub"), None, "unknown program template 'sub'", "tiny.spec", 3),
    ("unknown target", ("target macos-arm64", "target linux-x86"), None, "unknown target", "tiny.spec", 2),
    ("template without {b}", None, ('"add {b} to {a}"', '"add 2 to {a}"'), "{b} exactly once", "tiny.prompts", 3),
    ("template without {a}", None, ('"{a} + {b}"', '"1 + {b}"'), "{a} exactly once", "tiny.prompts", 4),
    ("placeholder twice", None, ('"{a} + {b}"', '"{a} + {b} + {a}"'), "{a} exactly once", "tiny.prompts", 4),
    ("unknown placeholder", None, ('"{a} + {b}"', '"{a} + {b} + {c}"'), "unknown placeholder {c}", "tiny.prompts", 4),
    ("stray brace", None, ('"{a} + {b}"', '"{a} + {b} }"'), "stray brace", "tiny.prompts", 4),
    ("overlapping buckets", ("heldout 40..50", "heldout 39..50"), None, "overlap", "tiny.spec", 8),
    ("bucket out of range", ("heldout 40..50", "heldout 40..60"), None, "out of range", "tiny.spec", 8),
    ("bucket gap", ("heldout 40..50", "heldout 42..50"), None, "40..41", "tiny.spec", 6),
    ("empty bucket range", ("heldout 40..50", "heldout 50..40"), None, "is empty", "tiny.spec", 8),
    ("duplicate template id", None, ("h1 ", "t1 "), "duplicate template id 't1'", "tiny.prompts", 7),
    ("duplicate template text", None, ('h2 "Tally {a} with {b}"', 'h2 "add {b} to {a}"'), "repeats the text", "tiny.prompts", 8),
    ("impossible split size", ("split train 40", "split train 100000"), None, "allow only", "tiny.spec", 12),
    ("unknown prompt set", ("{ prompts heldout pairs core/core core/heldout", "{ prompts others pairs core/core core/heldout"), None, "unknown prompt set 'others'", "tiny.spec", 13),
    ("held-out magnitudes in train", ("{ prompts train pairs core/core }", "{ prompts train pairs heldout/core }"), None, "may not be trained on", "tiny.spec", 12),
    ("held-out template differing only in punctuation", None, ('"Tally {a} with {b}"', '"WHAT IS {a} PLUS {b}"'), "only in case or punctuation", "tiny.prompts", 8),
    ("declared twice", ("seed 7\n", "seed 7\nseed 8\n"), None, "declared twice", "tiny.spec", 5),
    ("impossible sign pattern", ("operands -50..50", "operands 0..50"), None, "sign pattern +- is impossible", "tiny.spec", 10),
    ("split without pairs", ("{ prompts train pairs core/core }", "{ prompts train }"), None, "declares no `pairs`", "tiny.spec", 12),
    ("empty operand range", ("operands -50..50", "operands 50..-50"), None, "is empty", "tiny.spec", 5),
    ("negative magnitude", ("core 0..39", "core -1..39"), None, "negative", "tiny.spec", 7),
    ("unknown subtrahend sign", ("{ prompts train pairs core/core }", "{ prompts train pairs core/core subtrahend { zero 1 } }"), None, "unknown subtrahend sign 'zero'", "tiny.spec", 12),
    ("subtrahend given twice", ("{ prompts train pairs core/core }", "{ prompts train pairs core/core subtrahend { positive 1 } subtrahend { negative 1 } }"), None,
     "`subtrahend` given twice", "tiny.spec", 12),
    ("subtrahend sign weighted twice", ("{ prompts train pairs core/core }", "{ prompts train pairs core/core subtrahend { positive 1  positive 2 } }"), None,
     "subtrahend sign 'positive' weighted twice", "tiny.spec", 12),
    ("prompt set share of zero", ("{ prompts train pairs core/core }", "{ prompts train 0 pairs core/core }"), None,
     "prompt set 'train': a share must be a positive integer", "tiny.spec", 12),
    ("negative prompt set share", ("{ prompts train pairs core/core }", "{ prompts train -2 pairs core/core }"), None,
     "a share must be a positive integer", "tiny.spec", 12),
    ("prompt set listed twice", ("{ prompts train pairs core/core }", "{ prompts train, train 2 pairs core/core }"), None,
     "split train: prompt set 'train' listed twice", "tiny.spec", 12),
    ("no subtrahend sign weighted", ("{ prompts train pairs core/core }", "{ prompts train pairs core/core subtrahend { negative 0 } }"), None, "at least one subtrahend sign", "tiny.spec", 12),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_semantic_error_names_problem_file_and_line(tmp_path, case):
    _, spec_edit, prompts_edit, fragment, file, line = case
    spec = _swap(SPEC, *spec_edit) if spec_edit else SPEC
    prompts = _swap(PROMPTS, *prompts_edit) if prompts_edit else PROMPTS
    path = write_spec(tmp_path, spec, prompts)
    with pytest.raises(UserError) as err:
        load_spec(path)
    assert fragment in err.value.message
    assert err.value.path is not None and err.value.path.endswith(file)
    assert err.value.line == line
    assert "\n" not in str(err.value)


def test_the_unbroken_spec_loads(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert spec.stage == "tiny"
    assert spec.train_template_ids == ["t1", "t2", "t3"]
    assert spec.heldout_template_ids == ["h1", "h2"]


def test_splits_together_larger_than_the_space(tmp_path):
    # each split alone fits in 4 x 4 operand pairs x 3 templates = 48 prompts; together they do not
    spec = (
        SPEC.replace("operands -50..50", "operands 0..3")
        .replace("core 0..39\n    heldout 40..50", "core 0..3")
        .replace("signs ++ +- -+ --", "signs ++")
        .replace("prompts heldout pairs core/core core/heldout heldout/core heldout/heldout", "prompts train pairs core/core")
        .replace("split val 16", "split val 30")
    )
    with pytest.raises(UserError, match="splits together ask for"):
        load_spec(write_spec(tmp_path, spec))


def test_missing_required_statement_names_the_file(tmp_path):
    path = write_spec(tmp_path, SPEC.replace("seed 7\n", ""))
    with pytest.raises(UserError, match="declares no `seed`") as err:
        load_spec(path)
    assert err.value.path == str(path)


def test_include_cycle(tmp_path):
    path = write_spec(tmp_path, prompts='include "tiny.prompts"\n' + PROMPTS)
    with pytest.raises(UserError, match="include cycle") as err:
        load_spec(path)
    assert err.value.path.endswith("tiny.prompts") and err.value.line == 1


def test_include_path_is_relative_to_the_including_file(tmp_path):
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "more.prompts").write_text('prompts more { m1 "Figure {a} and {b} summed" }\n')
    prompts = PROMPTS + 'include "sets/more.prompts"\n'
    spec = SPEC.replace("prompts heldout pairs", "prompts heldout, more pairs")
    loaded = load_spec(write_spec(tmp_path, spec, prompts))
    assert [t.id for t in loaded.templates_for("val")] == ["h1", "h2", "m1"]


def test_cli_exits_2_and_writes_nothing(tmp_path):
    path = write_spec(tmp_path, SPEC.replace("heldout 40..50", "heldout 30..50"))
    out, bins = tmp_path / "out", tmp_path / "bin"
    proc = subprocess.run(
        [sys.executable, "-m", "exe_coder.cli", "build", str(path), "--out", str(out), "--binaries-dir", str(bins)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}:8:")
    assert "overlap" in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists() and not bins.exists()
    assert list(tmp_path.iterdir()) == sorted(tmp_path.iterdir()) and {p.name for p in tmp_path.iterdir()} == {
        "tiny.spec",
        "tiny.prompts",
    }


# A phrasebook (lines 10-17 of tiny.prompts) that val and test use beside `heldout`.
BOOK = PROMPTS + """\
phrasebook more {
    slot verb = "combine" | "merge"
    slot end = "" | "."
    slot n = 1..9
    slot pre = "" | "Step {n}: "
    frame m1 "{pre}{verb} {a} with {b}{end}"
    frame m2 sub "{pre}remove {b} from {a}{end}"
}
"""
BOOK_SPEC = SPEC.replace("prompts heldout pairs", "prompts heldout, more pairs")

BOOK_CASES = [
    ("unknown slot in a frame", ("{verb} {a} with", "{verbs} {a} with"), "unknown placeholder {verbs}", 15),
    ("unknown slot in a slot", ('"Step {n}: "', '"Step {k}: "'), "unknown slot {k}", 14),
    ("slot cycle", ('"Step {n}: "', '"Step {n}: {pre}"'), "cycle: pre -> pre", 14),
    ("operand in a slot", ('"merge"', '"merge {a}"'), "belongs in a frame", 11),
    ("slot declared twice", ('slot end = "" | "."', 'slot verb = "" | "."'), "slot 'verb' declared twice", 12),
    ("unused slot", ('slot n = 1..9', 'slot n = 1..9\n    slot spare = "x"'), "slot spare is used by no frame", 14),
    ("frame without {b}", ('remove {b} from', 'remove 4 from'), "{b} exactly once", 16),
    ("empty number range", ("slot n = 1..9", "slot n = 9..1"), "number range 9..1 is empty", 13),
    ("unknown operation", ("frame m2 sub", "frame m2 mul"), "unknown operation 'mul'", 16),
    ("unknown letter case", ("slot n = 1..9", "slot n = 1..9\n    case { shout 1 }"), "unknown letter case 'shout'", 14),
    ("no letter case weighted", ("slot n = 1..9", "slot n = 1..9\n    case { upper 0 }"), "at least one letter case", 14),
    ("held-out phrasing in train", ('t3 "{a} + {b}"', 't3 "MERGE {a} with {b}!"'), "held-out frame m1 leaks into train", 15),
]


@pytest.mark.parametrize("case", BOOK_CASES, ids=[c[0] for c in BOOK_CASES])
def test_phrasebook_error_names_problem_file_and_line(tmp_path, case):
    _, edit, fragment, line = case
    path = write_spec(tmp_path, BOOK_SPEC, _swap(BOOK, *edit))
    with pytest.raises(UserError) as err:
        load_spec(path)
    assert fragment in err.value.message
    assert err.value.path is not None and err.value.path.endswith("tiny.prompts")
    assert err.value.line == line
    assert "\n" not in str(err.value)


def test_the_unbroken_phrasebook_loads_as_held_out_families(tmp_path):
    spec = load_spec(write_spec(tmp_path, BOOK_SPEC, BOOK))
    assert spec.heldout_template_ids == ["h1", "h2", "m1", "m2"]
    assert [t.op for t in spec.prompt_set("more").templates] == ["add", "sub"]
    assert spec.book_of("m2").slot("n").numbers.hi == 9 and spec.book_of("t1") is None


def test_a_frame_over_the_phrasing_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(phrasing, "MAX_PHRASINGS", 7)  # m1 has 2 x 2 x 2 = 8
    with pytest.raises(UserError, match="frame m1 expands to 8 phrasings") as err:
        load_spec(write_spec(tmp_path, BOOK_SPEC, BOOK))
    assert err.value.line == 15
