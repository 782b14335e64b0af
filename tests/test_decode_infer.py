"""Reconstruction, the inference pipeline (oracle, baseline, model) and the infer/generate commands."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from exe_coder.cli import app
from exe_coder.codegen.program import ProgramTemplate
from exe_coder.dataset.build import build_stage
from exe_coder.dataset.records import Example, patch_text
from exe_coder.decode.grammar import compile_grammar
from exe_coder.decode.infer import (
    TOO_LONG,
    ModelPredictor,
    OraclePredictor,
    RegexBaselinePredictor,
    make_eval_hook,
    run_inference,
    summarize,
    write_predictions,
)
from exe_coder.decode.prediction import Prediction
from exe_coder.decode.reconstruct import reconstruct, reconstruct_operands
from exe_coder.decode.track import PatchTrack
from exe_coder.errors import UserError
from exe_coder.train.run_dir import save_weights
from exe_coder.model.transformer import Transformer
from exe_coder.paths import SPECS_DIR
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.spec.model import sign_pattern
from exe_coder.train.config import TrainConfig

INT32 = st.integers(-(2**31), 2**31 - 1)
WIDE = compile_grammar(-(2**31), 2**31 - 1)
TRACK_A = PatchTrack()  # Track A within the template's int32 range


def golden(a: int, b: int) -> bytes:
    """The slow path (render, assemble, link, finalize): independent of the patch sites."""
    return ProgramTemplate.load("add").build(a=a, b=b)


def example(a: int, b: int, i: int = 0, prompt: str | None = None) -> Example:
    return Example(
        id=f"val-{i:05d}",
        split="val",
        prompt=prompt or f"What is {a} plus {b}?",
        template_id="t_what_is",
        program="add",
        a=a,
        b=b,
        expected_stdout=f"{a + b}\n",
        target=patch_text(a, b),
        sign_pattern=sign_pattern(a, b),
        magnitude_pair="core/core",
        numerals="digits/digits",
        binary_path="",
        binary_sha256=hashlib.sha256(golden(a, b)).hexdigest(),
    )


@pytest.fixture(scope="module")
def stage0_val(tmp_path_factory) -> list[Example]:
    """Real records from the stage0 spec (a small build)."""
    out = tmp_path_factory.mktemp("stage0")
    build_stage(SPECS_DIR / "stage0.spec", out / "data", out / "bin", sizes={"train": 4, "val": 12, "test": 4}, jobs=1, progress=False)
    lines = (out / "data" / "val.jsonl").read_text().splitlines()
    return [Example.model_validate_json(line) for line in lines]


@settings(max_examples=25, deadline=None)
@given(INT32, INT32)
def test_reconstructing_the_gold_patch_gives_the_golden_binary(a, b):
    rec = reconstruct(patch_text(a, b), WIDE, "add")
    assert rec.operands == (a, b) and rec.error == ""
    assert rec.image == golden(a, b)


def test_unparsable_or_out_of_bounds_text_gives_no_image():
    g = compile_grammar(-1000, 1000)
    for text in ("", "A=1;B=2", "A=1001;B=0\n", "A=-0;B=0\n", "hello"):
        rec = reconstruct(text, g, "add")
        assert rec.image is None and rec.operands is None and "decode grammar" in rec.error
    wide = compile_grammar(-(2**40), 2**40)  # bounds wider than the template can encode
    rec = reconstruct("A=4294967296;B=0\n", wide, "add")
    assert rec.operands == (2**32, 0) and rec.image is None and rec.error
    assert reconstruct_operands(2**31, 0, "add").image is None


def test_oracle_scores_every_stage0_example_ok_with_exact_bytes(stage0_val):
    preds = run_inference(stage0_val, OraclePredictor(TRACK_A), TRACK_A, batch_size=5)
    assert [p.example for p in preds] == stage0_val
    for p in preds:
        assert p.outcome.kind is OutcomeKind.OK and p.parsed and p.exact_byte_match and p.answer_correct
        assert (p.a, p.b) == (p.example.a, p.example.b)
        assert p.outcome.stdout == p.example.expected_stdout.encode() and p.outcome.exit_code == 0
        assert p.latency.verify_ms > 0
    assert all(v == 1.0 for k, v in summarize(preds).items() if k != "n")


class ShiftedPredictor:
    """A deliberately wrong patch: A is off by one, so the sum is too."""

    mode = "shifted"

    def predict(self, examples):
        return [patch_text(e.a + 1, e.b) for e in examples]


class GarblePredictor:
    mode = "garble"

    def predict(self, examples):
        return ["A=1;B=" for _ in examples]


def test_a_wrong_patch_is_counted_wrong(stage0_val):
    preds = run_inference(stage0_val, ShiftedPredictor(), TRACK_A)
    for p in preds:
        assert p.outcome.kind is OutcomeKind.WRONG_OUTPUT and p.parsed and not p.exact_byte_match
        assert p.outcome.stdout == f"{p.example.a + 1 + p.example.b}\n".encode()
        assert p.binary_sha256 is not None and p.binary_sha256 != p.example.binary_sha256
    s = summarize(preds)
    assert s["answer_accuracy"] == 0.0 and s["exec_success_rate"] == 1.0 and s["patch_exact_match_rate"] == 0.0


def test_an_unparsable_text_is_a_parse_error(stage0_val):
    preds = run_inference(stage0_val[:3], GarblePredictor(), TRACK_A)
    assert all(p.outcome.kind is OutcomeKind.PARSE_ERROR and not p.parsed and p.binary_sha256 is None for p in preds)
    assert all("decode grammar" in p.outcome.detail for p in preds)  # the reason travels with the verdict
    assert summarize(preds)["parse_success_rate"] == 0.0


def test_regex_baseline_reads_digit_operands():
    examples = [example(17, -4, 0), example(3, 5, 1, prompt="Add 3 and 5."), example(2, 9, 2, prompt="two plus nine")]
    preds = run_inference(examples, RegexBaselinePredictor(), TRACK_A)
    assert [p.outcome.label for p in preds] == ["ok", "ok", "parse_error"]
    assert preds[0].text == "A=17;B=-4\n" and preds[2].text == ""


@pytest.fixture(scope="module")
def tiny_model() -> Transformer:
    mx.random.seed(3)
    model = Transformer(layers=1, hidden_size=32, heads=2, seq_len=96)
    model.eval()
    return model


def test_a_constrained_model_always_parses_and_runs(stage0_val, tiny_model):
    g = compile_grammar(-1000, 1000)
    preds = run_inference(stage0_val, ModelPredictor(tiny_model, PatchTrack(g.min_int, g.max_int)), PatchTrack(g.min_int, g.max_int), batch_size=4)
    assert all(p.parsed for p in preds)
    assert all(p.outcome.exec_ok for p in preds)
    assert all(p.latency.generate_ms > 0 for p in preds)
    for p in preds:
        assert p.outcome.stdout_correct == (p.a + p.b == p.example.a + p.example.b) == p.answer_correct


def test_eval_hook_reports_rates_and_restores_training_mode(stage0_val, tiny_model):
    hook = make_eval_hook(stage0_val, PatchTrack(-1000, 1000), limit=5)
    tiny_model.train()
    try:
        result = hook(tiny_model, 10)
        assert tiny_model.training
    finally:
        tiny_model.eval()
    assert result["eval_examples"] == 5
    assert result["parse_success_rate"] == 1.0
    assert 0.0 <= result["answer_accuracy"] <= result["exec_success_rate"] == 1.0


def test_write_predictions_round_trips_and_leaves_no_temp_files(tmp_path, stage0_val):
    preds = run_inference(stage0_val[:3], OraclePredictor(TRACK_A), TRACK_A)
    out = write_predictions(preds, tmp_path / "sub" / "p.jsonl")
    back = [Prediction.model_validate_json(line) for line in out.read_text().splitlines()]
    assert back == preds
    assert os.listdir(out.parent) == ["p.jsonl"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # shared output, not mkstemp's 0600


def test_summarize_uses_the_gold_answer_not_the_verdict_alone(stage0_val):
    """A binary verified against another expectation is 'ok' but does not answer the prompt:
    summarize (the train loop's numbers) and evaluate agree on that."""
    from exe_coder.evaluate.metrics import compute_metrics

    preds = run_inference(stage0_val[:2], OraclePredictor(TRACK_A), TRACK_A)
    other = preds[1].outcome.model_copy(update={"stdout": b"999999\n"})
    preds[1] = preds[1].model_copy(update={"outcome": other})
    assert summarize(preds)["answer_accuracy"] == 0.5 == compute_metrics(preds).answer_accuracy
    assert summarize(preds)["exec_success_rate"] == 1.0 == compute_metrics(preds).exec_success_rate


# --- the commands --------------------------------------------------------------------------


def _config(tmp_path) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "run": {"phase": "sft", "name": "tiny", "output_dir": str(tmp_path / "run")},
            "data": {
                "train_jsonl": "unused.jsonl",
                "val_jsonl": "unused.jsonl",
                "decode_min_int": -50,
                "decode_max_int": 50,
            },
            "model": {"layers": 1, "hidden_size": 32, "heads": 2, "seq_len": 96},
            "optimizer": {"lr_adamw": 1e-3},
            "train": {"batch_size": 2, "epochs": 1, "max_steps": 1},
        }
    )


@pytest.fixture()
def weights(tmp_path, tiny_model):
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny_model, _config(tmp_path), step=1, program="add")
    return path


def _write_jsonl(path, examples):
    path.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    return path


def test_infer_command_oracle_and_model(tmp_path, stage0_val, weights):
    val = _write_jsonl(tmp_path / "val.jsonl", stage0_val)
    runner = CliRunner()
    r = runner.invoke(app, ["infer", "--mode", "oracle", "--input", str(val), "--out", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 0, r.output
    assert "answer_accuracy 1.0000" in r.output
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == len(stage0_val)

    out = tmp_path / "m.jsonl"
    args = ["infer", "--mode", "sft_patch_model", "--weights", str(weights), "--input", str(val), "--out", str(out)]
    r = runner.invoke(app, args + ["--limit", "3", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert "bounds [-50, 50]" in r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(row["parsed"] and -50 <= row["a"] <= 50 for row in rows)
    assert runner.invoke(app, args + ["--limit", "3", "--batch-size", "3"]).exit_code == 0
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == [row["text"] for row in rows]
    sampled = runner.invoke(app, args + ["--limit", "3", "--temperature", "1", "--top-k", "5", "--seed", "4"])
    assert sampled.exit_code == 0, sampled.output
    assert all(json.loads(line)["parsed"] for line in out.read_text().splitlines())


def test_infer_command_bad_input_is_one_line_error(tmp_path, stage0_val):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(stage0_val[0].model_dump_json() + "\n{not json}\n")
    out = tmp_path / "never.jsonl"
    r = CliRunner().invoke(app, ["infer", "--mode", "oracle", "--input", str(bad), "--out", str(out)])
    assert r.exit_code != 0 and not out.exists()
    assert f"{bad}:2" in str(r.exception)
    r = CliRunner().invoke(app, ["infer", "--mode", "sft_patch_model", "--input", str(bad), "--out", str(out)])
    assert r.exit_code != 0 and "needs --weights" in str(r.exception)


def test_generate_command_writes_a_verified_executable(tmp_path, weights):
    exe = tmp_path / "add"
    r = CliRunner().invoke(app, ["generate", "What is 17 plus -4?", "--weights", str(weights), "-o", str(exe)])
    assert r.exit_code == 0, r.output
    image = exe.read_bytes()
    assert os.stat(exe).st_mode & stat.S_IXUSR
    assert hashlib.sha256(image).hexdigest() in r.output
    text = r.output.split("patch: ")[1].split(" (")[0].strip("'").encode().decode("unicode_escape")
    a, b = compile_grammar(-50, 50).parse(text)
    assert image == golden(a, b)
    assert f"ok, stdout '{a + b}\\n'" in r.output


def test_a_prompt_too_long_names_the_example(tiny_model):
    g = compile_grammar(-1000, 1000)
    long_example = example(1, 2, 7, prompt="What is 1 plus 2? " + "z" * tiny_model.seq_len)
    with pytest.raises(UserError, match="example val-00007: prompt is"):
        run_inference([example(1, 2, 0), long_example], ModelPredictor(tiny_model, PatchTrack(g.min_int, g.max_int)), PatchTrack(g.min_int, g.max_int))


def test_a_prompt_too_long_can_be_scored_as_no_answer(tiny_model):
    g = compile_grammar(-1000, 1000)
    predictor, track = ModelPredictor(tiny_model, PatchTrack(g.min_int, g.max_int)), PatchTrack(g.min_int, g.max_int)
    fitting = "x" * (tiny_model.seq_len - 2 - g.max_tokens)  # BOS + prompt + SEP + output == seq_len
    examples = [example(1, 2, 0), example(1, 2, 1, prompt=fitting + "y"), example(3, 4, 2, prompt=fitting)]
    assert [predictor.fits(e.prompt) for e in examples] == [True, False, True]
    preds = run_inference(examples, predictor, track, batch_size=2, too_long_wrong=True)
    assert [p.example.id for p in preds] == [e.id for e in examples]  # every row, in order
    assert [p.outcome.detail == TOO_LONG for p in preds] == [False, True, False]
    assert preds[1].outcome.label == "parse_error" and not preds[1].answer_correct and preds[1].text == ""
    alone = run_inference([examples[0], examples[2]], predictor, track, batch_size=2)  # the same decoding
    assert [p.text for p in preds[::2]] == [p.text for p in alone]
    assert run_inference(examples[1:2], predictor, track, too_long_wrong=True)[0].outcome.detail == TOO_LONG


def test_infer_too_long_wrong_writes_every_row_and_says_how_many(tmp_path, stage0_val, tiny_model, weights):
    long = stage0_val[1].model_copy(update={"prompt": "What is 1 plus 2? " + "z" * tiny_model.seq_len})
    val = _write_jsonl(tmp_path / "val.jsonl", [stage0_val[0], long])
    args = ["infer", "--weights", str(weights), "--input", str(val), "--out", str(tmp_path / "p.jsonl")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "prompt is" in str(refused.exception) and not (tmp_path / "p.jsonl").exists()
    r = CliRunner().invoke(app, [*args, "--too-long-wrong"])
    assert r.exit_code == 0, r.output
    assert "1 prompt(s) longer than the model's context" in r.output
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [row["outcome"]["detail"] == TOO_LONG for row in rows] == [False, True]


def test_infer_out_a_folder_is_a_one_line_error(tmp_path, stage0_val):
    val = _write_jsonl(tmp_path / "val.jsonl", stage0_val[:2])
    folder = tmp_path / "preds"
    folder.mkdir()
    r = CliRunner().invoke(app, ["infer", "--mode", "oracle", "--input", str(val), "--out", str(folder)])
    assert r.exit_code != 0 and isinstance(r.exception, UserError)
    assert str(r.exception) == f"{folder}: is a folder; give a file name to write"
    assert list(folder.iterdir()) == []


def test_generate_out_a_folder_is_a_one_line_error(tmp_path, weights):
    folder = tmp_path / "bin"
    folder.mkdir()
    r = CliRunner().invoke(app, ["generate", "What is 1 plus 2?", "--weights", str(weights), "-o", str(folder)])
    assert r.exit_code != 0 and isinstance(r.exception, UserError)
    assert str(r.exception).startswith(f"{folder}: ") and "\n" not in str(r.exception)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_generate_an_empty_prompt_is_a_user_error(tmp_path, weights, prompt):
    r = CliRunner().invoke(app, ["generate", prompt, "--weights", str(weights), "-o", str(tmp_path / "x")])
    assert isinstance(r.exception, UserError) and "the prompt is empty" in str(r.exception)
    assert not (tmp_path / "x").exists()


def test_generate_says_what_the_model_read_and_warns_on_a_prompt_without_numbers(tmp_path, weights):
    exe = tmp_path / "add"
    r = CliRunner().invoke(app, ["generate", "Tell me a joke.", "--weights", str(weights), "-o", str(exe)])
    assert r.exit_code == 0, r.output  # the binary is sound; the doubt is about its operands
    text = r.stdout.split("patch: ")[1].split(" (")[0].strip("'").encode().decode("unicode_escape")
    a, b = compile_grammar(-50, 50).parse(text)
    assert f"model read: a={a}, b={b}" in r.stdout
    assert f"warning: the prompt holds no number (no digits, no number word); a={a} and b={b} did not come from it" in r.stderr
    assert "warning" not in r.stdout and exe.is_file()


def _decodes_to(monkeypatch, text: str) -> None:
    """Make the model 'write' ``text``, whatever the prompt."""
    from exe_coder.decode import infer
    from exe_coder.decode.generate import Generation

    ids = [*text.encode(), 259]  # the track decodes the token ids (EOS = 259)
    monkeypatch.setattr(infer, "generate", lambda model, prompts, grammar, sampling, max_tokens=None: Generation(
        tokens=[ids], texts=[text], logprobs=[[]], states=[[]], finished=[True]))


def test_generate_warns_when_an_operand_sits_on_a_decode_bound(tmp_path, weights, monkeypatch):
    _decodes_to(monkeypatch, "A=50;B=-3\n")  # bounds [-50, 50]: what a clamped 5000 looks like
    exe = tmp_path / "add"
    r = CliRunner().invoke(app, ["generate", "What is 5000 plus -3?", "--weights", str(weights), "-o", str(exe)])
    assert r.exit_code == 0, r.output
    assert "model read: a=50, b=-3" in r.stdout
    assert "the prompt's number 5000 is outside the model's decode bounds [-50, 50]" in r.stderr
    assert "operand a=50 sits on a decode bound of [-50, 50]" in r.stderr
    assert "b=-3 sits" not in r.stderr
    assert exe.read_bytes() == golden(50, -3)


def test_generate_in_range_prompt_has_no_warning(tmp_path, weights, monkeypatch):
    _decodes_to(monkeypatch, "A=17;B=-4\n")
    r = CliRunner().invoke(app, ["generate", "What is 17 plus -4?", "--weights", str(weights), "-o", str(tmp_path / "a")])
    assert r.exit_code == 0 and r.stderr == "", r.output


def test_generate_exits_1_when_the_verifier_refuses_the_binary(tmp_path, weights, monkeypatch):
    from exe_coder.decode import infer

    _decodes_to(monkeypatch, "A=17;B=-4\n")
    monkeypatch.setattr(infer, "verify", lambda image, expect_stdout: Outcome(kind=OutcomeKind.CRASH, detail="fault"))
    r = CliRunner().invoke(app, ["generate", "What is 17 plus -4?", "--weights", str(weights), "-o", str(tmp_path / "a")])
    assert r.exit_code == 1 and "verifier ran it in the emulator: crash" in r.stdout


def test_infer_save_binaries_keeps_every_executable(tmp_path, stage0_val):
    """--save-binaries: one file an example, named by its id, mode 0755, the very bytes whose
    sha256 the prediction records (the golden bytes, for the oracle)."""
    val = _write_jsonl(tmp_path / "val.jsonl", stage0_val[:4])
    kept = tmp_path / "bins"
    r = CliRunner().invoke(app, ["infer", "--mode", "oracle", "--input", str(val), "-o", str(tmp_path / "o.jsonl"),
                                 "--save-binaries", str(kept)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in kept.iterdir()) == sorted(row["example"]["id"] for row in rows)
    for row in rows:
        path = kept / row["example"]["id"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["binary_sha256"] == row["example"]["binary_sha256"]
    (tmp_path / "afile").write_text("x")
    bad = CliRunner().invoke(app, ["infer", "--mode", "oracle", "--input", str(val), "-o", str(tmp_path / "p.jsonl"),
                                   "--save-binaries", str(tmp_path / "afile")])
    assert bad.exit_code != 0 and isinstance(bad.exception, UserError)


# --- probe: your own prompts with their answers -----------------------------------------------


def _probe_file(tmp_path, *rows: str):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(r + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json}", "not JSON"),
        ('{"answer": 3}', 'non-empty "prompt"'),
        ('{"prompt": "  "}', 'non-empty "prompt"'),
        ('["What is 1 plus 2?"]', 'non-empty "prompt"'),
        ('{"prompt": "What is 1 plus 2?", "answer": "3"}', '"answer" must be an integer'),
        ('{"prompt": "What is 1 plus 2?", "answer": 3.0}', '"answer" must be an integer'),
        ('{"prompt": "What is 1 plus 2?", "answer": true}', '"answer" must be an integer'),
        ('{"prompt": "What is 1 plus 2?", "expected": 3}', "unknown key 'expected'"),
    ],
)
def test_a_bad_probe_line_is_a_one_line_error_naming_file_and_line(tmp_path, line, message):
    path = _probe_file(tmp_path, '{"prompt": "What is 17 plus -4?", "answer": 13}', "", line)
    out = tmp_path / "never.jsonl"
    r = CliRunner().invoke(app, ["probe", str(path), "--mode", "regex_baseline", "-o", str(out)])
    assert r.exit_code != 0 and isinstance(r.exception, UserError)
    assert str(r.exception).startswith(f"{path}:3: ") and message in str(r.exception) and "\n" not in str(r.exception)
    assert not out.exists()


def test_an_empty_missing_or_binary_probe_file_is_a_user_error(tmp_path):
    empty = _probe_file(tmp_path, "", "  ")
    binary = tmp_path / "add"
    binary.write_bytes(golden(1, 2))
    cases = ((empty, "holds no prompt"), (tmp_path / "absent.jsonl", "no such probe file"), (binary, "not UTF-8 text"))
    for path, message in cases:
        r = CliRunner().invoke(app, ["probe", str(path), "--mode", "regex_baseline"])
        assert isinstance(r.exception, UserError) and message in str(r.exception)


def test_probe_scores_the_printed_answer_and_keeps_every_row(tmp_path):
    """The regex baseline on four prompts: right, wrong (the answer differs from the sum it
    builds), nothing to read (no binary), and no answer given (only what it printed)."""
    path = _probe_file(
        tmp_path,
        '{"prompt": "What is 17 plus -4?", "answer": 13}',
        '{"prompt": "What is 2 plus 2?", "answer": 5}',
        '{"prompt": "seventeen plus four", "answer": 21}',
        '{"prompt": "What is 1 plus 1?"}',
    )
    out, kept = tmp_path / "rows.jsonl", tmp_path / "bins"
    r = CliRunner().invoke(app, ["probe", str(path), "--mode", "regex_baseline", "-o", str(out), "--save-binaries", str(kept)])
    assert r.exit_code == 0, r.output
    assert "regex_baseline: 4 prompts: 3 parsed, 3 binaries ran" in r.output
    assert "answer_accuracy 0.3333 [" in r.output and "(1/3 with an answer)" in r.output
    assert "wrong, line 2: 'What is 2 plus 2?': read a=2, b=2, printed '4', want 5 (wrong_output)" in r.output
    assert "wrong, line 3: 'seventeen plus four': read nothing, printed nothing, want 21 (parse_error)" in r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["line"], row["correct"], row["verdict"], row["printed"]) for row in rows] == [
        (1, True, "ok", "13\n"), (2, False, "wrong_output", "4\n"), (3, False, "parse_error", None), (4, None, "ok", "2\n"),
    ]
    assert sorted(p.name for p in kept.iterdir()) == ["line00001", "line00002", "line00004"]
    assert (kept / "line00001").read_bytes() == golden(17, -4)
    assert hashlib.sha256((kept / "line00004").read_bytes()).hexdigest() == rows[3]["binary_sha256"]


@settings(max_examples=15, deadline=None)
@given(st.integers(-5000, 5000), st.integers(-5000, 5000), st.integers(-3, 3))
def test_a_probe_answer_counts_the_sum_printed_not_the_patch(a, b, off):
    """Any patch whose binary prints the answer is right: the model 'writes' (a, b) and the
    file's answer is a + b + off."""
    from exe_coder.evaluate.probe import ProbePrompt, probe_one

    row = probe_one(ProbePrompt(1, "anything", a + b + off), patch_text(a, b), TRACK_A, "add")
    assert row.correct is (off == 0) and row.printed == f"{a + b}\n" and (row.a, row.b) == (a, b)


def test_probe_with_a_model_needs_weights_and_names_a_too_long_prompt(tmp_path, weights):
    path = _probe_file(tmp_path, '{"prompt": "What is 1 plus 2?", "answer": 3}', json.dumps({"prompt": "z" * 200, "answer": 1}))
    r = CliRunner().invoke(app, ["probe", str(path)])
    assert isinstance(r.exception, UserError) and "needs --weights" in str(r.exception)
    r = CliRunner().invoke(app, ["probe", str(path), "--weights", str(weights), "--batch-size", "1"])
    assert isinstance(r.exception, UserError) and str(r.exception).startswith(f"{path}:2: prompt is")


def test_probe_too_long_wrong_scores_a_long_prompt_as_no_answer(tmp_path, weights):
    path = _probe_file(tmp_path, json.dumps({"prompt": "z" * 200, "answer": 1}), '{"prompt": "What is 1 plus 2?", "answer": 3}',
                       json.dumps({"prompt": "y" * 200}))
    out = tmp_path / "rows.jsonl"
    r = CliRunner().invoke(app, ["probe", str(path), "--weights", str(weights), "--too-long-wrong", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3]
    assert [row["warnings"] == [TOO_LONG] for row in rows] == [True, False, True]
    assert (rows[0]["correct"], rows[2]["correct"], rows[0]["verdict"]) == (False, None, "parse_error")
    assert rows[1]["verdict"] != "parse_error"  # the short prompt is decoded as without the flag
    assert "2 with a warning, first line 1: prompt too long" in r.output


def test_probe_with_a_model_decodes_each_prompt(tmp_path, weights, monkeypatch):
    _decodes_to(monkeypatch, "A=10;B=3\n")  # whatever the prompt
    path = _probe_file(tmp_path, '{"prompt": "What is 6 plus 7?", "answer": 13}', '{"prompt": "What is 6 plus 6?", "answer": 12}')
    r = CliRunner().invoke(app, ["probe", str(path), "--weights", str(weights), "--batch-size", "1"])
    assert r.exit_code == 0, r.output
    assert "answer_accuracy 0.5000" in r.output and "wrong, line 2: 'What is 6 plus 6?': read a=10, b=3, printed '13', want 12" in r.output


def test_probe_warns_when_a_prompts_number_lies_beyond_the_models_bounds(tmp_path, weights, monkeypatch):
    _decodes_to(monkeypatch, "A=50;B=-3\n")  # bounds [-50, 50]: what a clamped 5000 looks like
    path = _probe_file(tmp_path, '{"prompt": "What is 5000 plus -3?", "answer": 4997}')
    out = tmp_path / "rows.jsonl"
    r = CliRunner().invoke(app, ["probe", str(path), "--weights", str(weights), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 with a warning, first line 1: the prompt's number 5000 is outside the model's decode bounds [-50, 50]" in r.output
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["correct"] is False and any("a=50 sits on a decode bound" in w for w in row["warnings"])
