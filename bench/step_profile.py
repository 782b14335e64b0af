"""Where a training step of the stage1 model spends its time: forward, forward+backward, AdamW update.

    uv run python bench/step_profile.py      (on Linux it preloads OpenBLAS as `exe-coder train` does)

Uncompiled MLX ops on one process, random tokens of batch 32 x 64 (bench/train.py's shape).
"""
import time
import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
from exe_coder.model.transformer import Transformer
from exe_coder.train.blas import ensure_optimized_blas
from exe_coder.train.config import load_config
ensure_optimized_blas()
cfg = load_config("configs/sft_stage1_pilot.toml")
mx.random.seed(0)
m = Transformer.from_config(cfg.model); m.train()
opt = optim.AdamW(learning_rate=1e-3); opt.init(m.trainable_parameters())
B, T = 32, 64
x = mx.random.randint(0, 256, (B, T)); y = mx.random.randint(0, 256, (B, T))
lg = nn.value_and_grad(m, lambda mm, a, b: nn.losses.cross_entropy(mm(a), b).mean())
def timeit(fn, n=20):
    for _ in range(3): fn()
    t = time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter() - t) / n * 1e3
def fwd(): mx.eval(m(x))
def fb():
    l, g = lg(m, x, y); mx.eval(l, g)
l, g = lg(m, x, y); mx.eval(g)
def upd():
    opt.update(m, g); mx.eval(m.parameters(), opt.state)
print(f"forward {timeit(fwd):.1f} ms | forward+backward {timeit(fb):.1f} ms | AdamW update {timeit(upd):.1f} ms")
