"""The track seam: Track A through the one interface that train, infer and evaluate call."""

from __future__ import annotations

import hashlib

import pytest

from exe_coder.dataset.build import build_stage
from exe_coder.dataset.records import Example, load_examples
from exe_coder.decode.infer import OraclePredictor, load_trained, run_inference
from exe_coder.decode.track import TRACKS, PatchTrack, Track, program_of, track_for
from exe_coder.errors import UserError
from exe_coder.paths import SPECS_DIR


@pytest.fixture(scope="module")
def stage0(tmp_path_factory) -> list[Example]:
    out = tmp_path_factory.mktemp("stage0")
    build_stage(SPECS_DIR / "stage0.spec", out / "data", out / "bin", sizes={"train": 8, "val": 6, "test": 4}, jobs=1, progress=False)
    return load_examples(out / "data" / "train.jsonl")


def test_track_a_target_realizes_the_golden_binary(stage0):
    track = track_for("template_delta_operand_patch", min_int=-200, max_int=200)
    assert isinstance(track, PatchTrack) and track.constraint.min_int == -200
    for ex in stage0:
        assert track.target(ex) == ex.target  # the dataset's own Track A target
        rec = track.realize(track.target(ex), ex.program)
        assert rec.operands == (ex.a, ex.b)
        assert hashlib.sha256(rec.image).hexdigest() == ex.binary_sha256


def test_a_new_track_is_a_subclass_that_inference_runs_unchanged(stage0):
    """What the seam promises: a track that writes operands in another order, say, plugs into
    the oracle and run_inference without touching them."""

    class Swapped(PatchTrack):
        name = "swapped_for_test"

        def target(self, example: Example) -> str:
            return f"A={example.b};B={example.a}\n"

    preds = run_inference(stage0, OraclePredictor(Swapped()), Swapped())
    assert all(p.outcome.stdout_correct for p in preds)  # a + b == b + a
    assert [(p.a, p.b) for p in preds] == [(e.b, e.a) for e in stage0]
    assert issubclass(Swapped, Track) and "swapped_for_test" not in TRACKS


def test_unknown_track_and_mixed_programs_are_user_errors(stage0):
    with pytest.raises(UserError, match="not implemented"):
        track_for("no_such_track")
    assert program_of(stage0) == "add"
    mixed = [stage0[0], stage0[1].model_copy(update={"program": "mul"})]
    with pytest.raises(UserError, match="2 program templates"):
        program_of(mixed, "train.jsonl")


def test_weights_without_a_decoding_record_are_refused(tmp_path):
    import mlx.core as mx

    (tmp_path / "w.safetensors").write_bytes(b"")
    mx.save_safetensors(str(tmp_path / "w.safetensors"), {"x": mx.zeros((1,))}, metadata={"config": "[model]\nlayers = 1\nhidden_size = 8\nheads = 1\nseq_len = 8\n"})
    with pytest.raises(UserError):
        load_trained(tmp_path / "w.safetensors")
