"""Blocked causal attention on a Track B training step: step time by ``ATTENTION_BLOCK``.

    uv run python bench/attention.py [--config configs/sft_stage1b_text_trackb.toml] [--steps 5]

One rank's share of a Track B step (the config's model, batch_size / 2 rows, ``--tokens`` a row:
prompt + image, bucketed) and of a Track A step (the stage1 model, 16 rows of 64 tokens):
forward, backward and AdamW update, compiled as in training, on random tokens. Each block size
gets a freshly built model and compiled step (``mx.compile`` traces the block loop once). Prints
seconds a step, the min over ``--steps`` after a warmup, and the ratio to unblocked attention
(one ``mx.fast.scaled_dot_product_attention`` over all T x T scores). On Linux it preloads
OpenBLAS first, as ``exe-coder train`` does. The machine may be shared: compare ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mlx.core as mx  # noqa: E402

from _common import compiled_sft_step  # noqa: E402
from exe_coder.model import transformer  # noqa: E402
from exe_coder.train.blas import ensure_optimized_blas  # noqa: E402
from exe_coder.train.config import load_config  # noqa: E402

UNBLOCKED = 1 << 30


def step_seconds(model_cfg, rows: int, tokens: int, block: int, steps: int) -> float:
    transformer.ATTENTION_BLOCK = block  # read when the step is traced, below
    step, state = compiled_sft_step(model_cfg)
    x = mx.random.randint(0, 256, (rows, tokens))
    y = mx.random.randint(0, 256, (rows, tokens))
    mx.eval(step(x, y), state)  # trace and warm up
    best = float("inf")
    for _ in range(steps):
        t0 = time.perf_counter()
        mx.eval(step(x, y), state)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs/sft_stage1b_text_trackb.toml")
    ap.add_argument("--track-a-config", type=Path, default=REPO / "configs/sft_stage1_pilot.toml")
    ap.add_argument("--tokens", type=int, default=704, help="tokens a Track B row (stage1b_text: ~640 + bucketing)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--blocks", default="0,256,128,64", help="block sizes to time; 0 = unblocked")
    args = ap.parse_args()
    ensure_optimized_blas()
    blocks = [int(b) or UNBLOCKED for b in args.blocks.split(",")]
    track_b = load_config(args.config)
    track_a = load_config(args.track_a_config)
    shapes = [
        ("Track B", track_b.model, max(1, track_b.train.batch_size // 2), args.tokens),
        ("Track A", track_a.model, max(1, track_a.train.batch_size // 2), 64),
    ]
    print(f"mlx {mx.__version__}, device {mx.default_device()}, shipped ATTENTION_BLOCK {transformer.ATTENTION_BLOCK}")
    print("| step | rows x tokens | attention | s a step | vs unblocked |")
    print("|---|---|---|---|---|")
    for name, model_cfg, rows, tokens in shapes:
        base = None
        for block in blocks:
            s = step_seconds(model_cfg, rows, tokens, block, args.steps)
            base = base or s
            label = "unblocked" if block == UNBLOCKED else f"blocks of {block}"
            print(f"| {name} | {rows} x {tokens} | {label} | {s:.3f} | {base / s:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
