"""A tiny Track B run: train, infer and generate go through the track seam to exact images."""

from __future__ import annotations

import hashlib

from exe_coder.decode.infer import ModelPredictor, generate_executable, load_trained, run_inference
from exe_coder.decode.track import FullImageTrack
from exe_coder.train.config import dump_toml, parse_config
from exe_coder.train.loop import train
from tests.test_track_b import _forbid_the_reconstructor, example

OPERANDS = [(17, -4), (-300, 1000)]  # two, so the model must read the prompt; both fit a <60 s run


def tiny_track_b_config(tmp_path, steps: int):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val"):
        rows = [example(a, b, i).model_copy(update={"split": split}) for i, (a, b) in enumerate(OPERANDS)]
        (data / f"{split}.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))
    raw = {
        "run": {"phase": "sft", "name": "tiny_b", "seed": 3, "output_dir": str(tmp_path / "run")},
        "data": {
            "train_jsonl": str(data / "train.jsonl"), "val_jsonl": str(data / "val.jsonl"),
            "track": "strict_one_shot", "target_mode": "full_hex", "decode_min_int": -1000, "decode_max_int": 1000,
        },
        "model": {"layers": 2, "hidden_size": 64, "heads": 4, "seq_len": 704, "position": "rope", "activation": "relu2"},
        "optimizer": {"lr_adamw": 6e-3, "weight_decay": 0.0, "betas": [0.9, 0.98], "eps": 1e-8},
        "train": {
            "batch_size": 2, "epochs": 10000, "max_steps": steps, "log_interval": 20, "eval_interval": steps,
            "save_interval": steps, "eval_max_samples": 2, "warmup_steps": 10, "min_lr_ratio": 0.1,
            "grad_clip_norm": 1.0, "label_smoothing": 0.0,
        },
    }
    return parse_config(dump_toml(raw), "<tiny_b>")


def test_a_tiny_track_b_run_overfits_to_exact_images_without_the_reconstructor(tmp_path, monkeypatch):
    config = tiny_track_b_config(tmp_path, steps=80)
    result = train(config, show_progress=False)
    assert result.best_val_exact_match == 1.0  # teacher-forced: every token of every image
    model, track, program = load_trained(result.out_dir)
    assert isinstance(track, FullImageTrack) and program == "add"  # the weights' decoding record names the track

    exs = [example(a, b, i) for i, (a, b) in enumerate(OPERANDS)]
    _forbid_the_reconstructor(monkeypatch)  # from here on, only the model's bytes and finalize
    preds = run_inference(exs, ModelPredictor(model, track), track, batch_size=2)
    assert [p.exact_byte_match for p in preds] == [True, True]
    assert all(p.answer_correct and p.outcome.exec_ok for p in preds)

    made = generate_executable(exs[0].prompt, result.out_dir, tmp_path / "add")
    assert made.operands is None and made.outcome.stdout == b"13\n"
    assert made.sha256 == hashlib.sha256(made.path.read_bytes()).hexdigest() == exs[0].binary_sha256


def test_rl_on_track_b_scores_the_models_own_finalized_bytes(tmp_path, monkeypatch):
    """RL works for Track B through the same seam: rollouts are the model's image tokens,
    finalized and verified, never a reconstruction; each reward is the contract of its outcome."""
    import json

    from rich.console import Console

    from exe_coder.train.rl import ROLLOUTS, train_rl

    raw = tiny_track_b_config(tmp_path, steps=1).model_dump(mode="json", exclude_none=True)
    raw["run"]["phase"] = "rl"
    raw["train"].update(max_steps=1, eval_interval=1, save_interval=1, log_interval=1, warmup_steps=0)
    raw["rl"] = {"mode": "scratch_exploratory", "init_ckpt": "", "beta": 0.0, "rollout_samples": 2, "prompts_per_step": 2}
    config = parse_config(dump_toml(raw), "<tiny_b_rl>")
    _forbid_the_reconstructor(monkeypatch)
    result = train_rl(config, eval_hook=False, show_progress=False, console=Console(quiet=True))
    assert result.steps == 1
    rows = [json.loads(line) for line in (result.out_dir / ROLLOUTS).read_text().splitlines()]
    assert len(rows) == 4 and {r["sample"] for r in rows} == {0, 1}
    for r in rows:
        # random weights write no valid image: no reward for validity, running or the answer
        assert r["outcome"] != "ok"
        assert r["stdout_correct"] == 0
        assert r["reward"] == r["is_valid_macho"] + r["exec_ok"] + 2 * r["stdout_correct"] - r["timeout_or_crash"]
