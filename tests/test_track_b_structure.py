"""Track B's structural-constraint ablation: masks that hold every non-operand byte of the image
fixed, leaving the operand fields and zero-run lengths to the model."""

from __future__ import annotations

import json
from dataclasses import replace

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from exe_coder.cli import app
from exe_coder.codegen.finalize import finalize_unsigned, unsigned_image
from exe_coder.codegen.program import ProgramTemplate
from exe_coder.dataset.golden import golden_image
from exe_coder.decode.image_structure import structure_masks
from exe_coder.decode.image_text import encode_image, expand
from exe_coder.decode.track import TRACKS, FullImageTrack, StructuredImageTrack, track_for
from exe_coder.evaluate.compare import compare, seed_groups
from exe_coder.evaluate.regions import DECODING_ABLATIONS, IMAGE_TRACKS, structural_ok
from exe_coder.model.tokenizer import EOS
from exe_coder.model.transformer import Transformer
from exe_coder.train.config import TrainConfig
from exe_coder.train.run_dir import save_weights
from tests.test_track_b import example

PROGRAMS = ("add", "add_text")
INT32 = st.integers(-(2**31), 2**31 - 1)


def golden_tokens(program: str, a: int, b: int) -> list[int]:
    return list(encode_image(unsigned_image(golden_image(program, a, b))))


@pytest.mark.parametrize("program", PROGRAMS)
@settings(max_examples=40, deadline=None)
@given(a=INT32, b=INT32)
def test_every_golden_image_is_a_sentence(program, a, b):
    masks = structure_masks(program)
    tokens = golden_tokens(program, a, b)
    assert masks.walk(tokens + [EOS]) == masks.done_state
    assert len(tokens) + 1 <= masks.max_tokens


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_wrong_structural_byte_or_run_length_is_refused(program):
    masks = structure_masks(program)
    tokens = golden_tokens(program, 17, -4)
    assert masks.walk(tokens[:-1] + [EOS]) == masks.dead_state  # the image ends early
    assert masks.walk([0xCE] + tokens[1:]) == masks.dead_state  # the Mach-O magic's first byte
    run = next(i for i, t in enumerate(tokens) if t == 0 and tokens[i + 1] > 1)  # a zero run of 3+ bytes
    for length in (tokens[run + 1] - 1, tokens[run + 1] + 1):  # one zero too few, one too many
        assert masks.walk(tokens[: run + 1] + [length] + tokens[run + 2 :]) == masks.dead_state
    assert not masks.allowed[masks.walk(tokens[:5]), EOS]


@pytest.mark.parametrize("program", PROGRAMS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_walk_under_the_masks_is_an_image_of_the_programs_structure(program, data):
    """Choosing any allowed token at every step ends within max_tokens in an image of the
    golden length, equal to the golden image in every bit no operand decides, that finalizes."""
    masks, template = structure_masks(program), ProgramTemplate.load(program)
    gold = unsigned_image(golden_image(program, 0, 0))
    state, tokens = masks.start_state, []
    for _ in range(masks.max_tokens):
        choices = [int(t) for t in masks.allowed[state].nonzero()[0]]
        assert choices, "a reachable state with nothing allowed"
        tok = data.draw(st.sampled_from(choices))
        state = int(masks.next_state[state, tok])
        if tok == EOS:
            break
        tokens.append(tok)
    assert state == masks.done_state
    image = expand(bytes(tokens))
    assert len(image) == len(gold)
    free = template.operand_bits()
    assert all(image[i] & ~free.get(i, 0) == gold[i] & ~free.get(i, 0) for i in range(len(gold)))
    assert structural_ok(image)
    assert len(finalize_unsigned(image)) == len(golden_image(program, 0, 0))


def test_the_structured_track_is_track_b_decoded_under_the_masks():
    track = track_for("strict_one_shot_structured", program="add_text", target_order="prompt")
    assert isinstance(track, StructuredImageTrack) and isinstance(track, FullImageTrack)
    assert track.constraint is structure_masks("add_text")
    assert track.max_tokens == structure_masks("add_text").max_tokens
    ex = example(-941, 937, program="add_text")
    assert track.target(ex) == FullImageTrack(target_order="prompt").target(ex)  # the same target
    with pytest.raises(Exception, match="needs the program"):
        StructuredImageTrack()


def test_evaluation_names_the_same_image_tracks_as_the_decoder():
    assert IMAGE_TRACKS == {name for name, t in TRACKS.items() if t.language == "image"}
    assert DECODING_ABLATIONS == IMAGE_TRACKS - {FullImageTrack.name}


# --- through the commands: infer --track, evaluate, compare ---------------------------------


def _track_b_weights(tmp_path):
    mx.random.seed(5)
    model = Transformer(layers=1, hidden_size=32, heads=2, seq_len=704)
    model.eval()
    config = TrainConfig.model_validate({
        "run": {"phase": "sft", "name": "tiny_b", "output_dir": str(tmp_path / "run")},
        "data": {"train_jsonl": "unused.jsonl", "val_jsonl": "unused.jsonl", "track": "strict_one_shot", "target_mode": "full_hex",
                 "decode_min_int": -1000, "decode_max_int": 1000},
        "model": {"layers": 1, "hidden_size": 32, "heads": 2, "seq_len": 704},
        "optimizer": {"lr_adamw": 1e-3},
        "train": {"batch_size": 2, "epochs": 1, "max_steps": 1},
    })
    path = tmp_path / "w.safetensors"
    save_weights(path, model, config, step=1, program="add")
    return path


def test_infer_track_decodes_track_b_weights_under_the_ablation(tmp_path):
    """An untrained model writes no image unconstrained; under the masks every row is a signed,
    running executable of add's structure (the operand bits are its own), reported as the ablation."""
    weights = _track_b_weights(tmp_path)
    rows = [example(a, b, i).model_copy(update={"split": "test"}) for i, (a, b) in enumerate([(17, -4), (5, 6), (-3, 9)])]
    data = tmp_path / "test.jsonl"
    data.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    runner = CliRunner()
    outputs = {}
    for name in ("strict_one_shot", "strict_one_shot_structured"):
        preds = tmp_path / f"{name}.jsonl"
        args = ["infer", "--weights", str(weights), "--input", str(data), "-o", str(preds)]
        r = runner.invoke(app, args + ([] if name == "strict_one_shot" else ["--track", name]))
        assert r.exit_code == 0, r.output
        outputs[name] = [json.loads(line) for line in preds.read_text().splitlines()]
        assert {p["track"] for p in outputs[name]} == {name}
        report = tmp_path / "reports" / name / "test.json"
        r = runner.invoke(app, ["evaluate", "--predictions", str(preds), "-o", str(report), "--split", "test"])
        assert r.exit_code == 0, r.output
    assert not all(p["parsed"] for p in outputs["strict_one_shot"])  # untrained: unconstrained bytes are no image
    assert all(p["parsed"] and p["outcome"]["kind"] in ("ok", "wrong_output") for p in outputs["strict_one_shot_structured"])
    rows_, _, _ = compare([tmp_path / "reports"])
    assert sorted(r.track for r in rows_) == ["strict_one_shot", "strict_one_shot_structured"]  # two rows, not one seed twice
    assert any(r.run.endswith("(strict_one_shot_structured)") for r in rows_)
    assert all(r.values["patch_exact_match_rate"][0] is None for r in rows_)  # no patch in either
    # seeds group by config; an ablation's decoding of a seed is never another seed of it
    plain, ablation = (replace(next(r for r in rows_ if r.track == t), family="f") for t in sorted(IMAGE_TRACKS))
    older = replace(plain, seed=(plain.seed or 0) + 1, track=None)  # a report from before reports named their track
    plain = replace(plain, seed=plain.seed or 0)
    groups = seed_groups([plain, older, replace(ablation, seed=plain.seed)])
    assert len(groups) == 1 and {m.track for m in groups[0].rows} == {"strict_one_shot", None}


def test_infer_track_refuses_a_track_of_another_target(tmp_path):
    weights = _track_b_weights(tmp_path)
    data = tmp_path / "test.jsonl"
    data.write_text(example(1, 2).model_dump_json() + "\n")
    r = CliRunner().invoke(app, ["infer", "--weights", str(weights), "--input", str(data), "-o", str(tmp_path / "p.jsonl"),
                                 "--track", "template_delta_operand_patch"])
    assert r.exit_code != 0 and "write image targets" in str(r.exception)
    r = CliRunner().invoke(app, ["infer", "--mode", "oracle", "--input", str(data), "-o", str(tmp_path / "p.jsonl"),
                                 "--track", "strict_one_shot_structured"])
    assert r.exit_code != 0 and "--track is for --mode sft_patch_model" in str(r.exception)
