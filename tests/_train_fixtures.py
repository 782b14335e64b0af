"""Small Example JSONL datasets and configs for the model/train tests (tiny on purpose)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import mlx.core as mx
import numpy as np

from exe_coder.dataset.records import Example, patch_text
from exe_coder.spec.model import sign_pattern
from exe_coder.train.config import TrainConfig, dump_toml, parse_config

TIMING_KEYS = {"tokens_per_sec", "peak_memory_gb", "wall_s"}  # what differs between two identical runs


def curve(run_dir: Path) -> list[dict]:
    """A run's metrics.jsonl without its timing fields: what two identical runs must agree on."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def weights(path: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


TEMPLATES = ["add {a} and {b}", "{a} + {b}?", "sum {a} {b}", "what is {a} plus {b}"]


def make_examples(n: int, split: str, seed: int, lo: int = -20, hi: int = 20) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        t = rng.randrange(len(TEMPLATES))
        out.append(
            Example(
                id=f"{split}-{i}", split=split, prompt=TEMPLATES[t].format(a=a, b=b), template_id=f"t{t}", program="add",
                a=a, b=b, expected_stdout=f"{a + b}\n", target=patch_text(a, b),
                sign_pattern=sign_pattern(a, b), magnitude_pair="core/core", numerals="digits/digits", binary_path="",
                binary_sha256="0" * 64,
            )
        )
    return out


def write_dataset(root: Path, n_train: int = 64, n_val: int = 16) -> Path:
    """``root/tiny/{train,val}.jsonl`` and a manifest.json, as a build would write them."""
    d = root / "tiny"
    d.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2)):
        rows = make_examples(n, split, seed)
        (d / f"{split}.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))
    (d / "manifest.json").write_text('{"stage": "tiny"}\n')
    return d


def tiny_config(data_dir: Path, out_dir: Path, **train_overrides) -> TrainConfig:
    raw = {
        "run": {"phase": "sft", "name": "tiny", "seed": 7, "output_dir": str(out_dir)},
        "data": {
            "train_jsonl": str(data_dir / "train.jsonl"),
            "val_jsonl": str(data_dir / "val.jsonl"),
            "decode_min_int": -20,
            "decode_max_int": 20,
        },
        "model": {"layers": 2, "hidden_size": 32, "heads": 2, "seq_len": 64, "dropout": 0.1},
        "optimizer": {"lr_adamw": 3e-3, "weight_decay": 0.01, "betas": [0.9, 0.98], "eps": 1e-8},
        "train": {
            "batch_size": 8, "epochs": 100, "max_steps": 24, "log_interval": 4, "eval_interval": 8,
            "save_interval": 8, "eval_max_samples": 16, "warmup_steps": 4, "min_lr_ratio": 0.1,
            "grad_clip_norm": 1.0, "label_smoothing": 0.0,
        },
    }
    raw["train"].update(train_overrides)
    return parse_config(dump_toml(raw), "<tiny>")


def rl_config(data_dir: Path, out: Path, init: Path | None, **rl) -> TrainConfig:
    """A tiny RL config: 6 steps of 8 prompts x 8 samples (two rollout chunks), evals at 3 and 6;
    from the SFT run ``init`` (mainline) or, with None, random weights."""
    raw = tiny_config(data_dir, out).model_dump(mode="json", exclude_none=True)
    raw["run"]["phase"] = "rl"
    raw["model"]["dropout"] = 0.0
    raw["train"].update(max_steps=6, eval_interval=3, save_interval=3, log_interval=1, warmup_steps=0, eval_max_samples=8)
    raw["optimizer"]["lr_adamw"] = 1e-3
    raw["rl"] = {"beta": 0.02, "rollout_samples": 8, "prompts_per_step": 8, "init_ckpt": str(init or "")}
    if init is None:
        raw["rl"].update(mode="scratch_exploratory", beta=0.0)
    raw["rl"].update(rl)
    return parse_config(dump_toml(raw), "<rl>")


def rl_toy(root: Path) -> tuple[Path, Path]:
    """32 train prompts with operands in [-5, 5], and a tiny model after 100 SFT steps: right
    about two times in three when sampling at temperature 1 -- room for RL to improve on."""
    from rich.console import Console

    from exe_coder.train.loop import train

    data = root / "tiny"
    data.mkdir()
    for split, n, seed in (("train", 32, 1), ("val", 16, 2)):
        rows = make_examples(n, split, seed, -5, 5)
        (data / f"{split}.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))
    (data / "manifest.json").write_text('{"stage": "toy"}\n')
    sft = root / "sft"
    raw = tiny_config(data, sft, max_steps=100, eval_interval=100, save_interval=100).model_dump(mode="json", exclude_none=True)
    raw["model"]["dropout"] = 0.0
    train(parse_config(dump_toml(raw)), show_progress=False, console=Console(quiet=True))
    return data, sft
