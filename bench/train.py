"""Training throughput of the stage1 model: MLX 1 rank and N ranks (optimised BLAS) vs PyTorch CPU.

    uv run python bench/train.py [--config configs/sft_stage1_pilot.toml] [--steps 20]

Each measurement runs in its own subprocess (LD_PRELOAD must be set before the process
starts), on random token batches of the config's batch size and a typical Track A sequence
length, timing full training steps (forward, backward, AdamW update) after warmup. Prints
tokens/s for each and the ratios in one run, and the padding share of real stage1 batches before
(plain shuffled batches) and after (length bucketing, train/data.py). MLX with N ranks runs N
processes over the loopback ring (train/distributed.py), each on B/N rows, gradients summed.
PyTorch is a benchmark-only dependency (run with .venv/bin/python or uv run --no-sync, since
uv sync removes it):

    uv pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    (or: uv pip install torch --index-url https://download.pytorch.org/whl/cpu)

The machine may be shared: figures are noisy; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SEQ_LEN = 64  # a typical Track A row: ~45 prompt bytes + ~14 target tokens + BOS/SEP, bucketed


def bench_mlx(config_path: str, steps: int) -> dict:
    import time

    import mlx.core as mx

    from _common import compiled_sft_step
    from exe_coder.train.config import load_config
    from exe_coder.train.distributed import world

    g = world()
    cfg = load_config(config_path)
    B, T = cfg.train.batch_size, SEQ_LEN
    step, state = compiled_sft_step(cfg.model, cfg.optimizer.weight_decay, g.sum_tree)
    x = mx.random.randint(0, 256, (B, T))[g.rank :: g.size]
    y = mx.random.randint(0, 256, (B, T))[g.rank :: g.size]
    for _ in range(3):
        mx.eval(step(x, y), state)
    t0 = time.perf_counter()
    for _ in range(steps):
        mx.eval(step(x, y), state)
    dt = (time.perf_counter() - t0) / steps
    return {"tokens_per_sec": B * T / dt, "ms_per_step": dt * 1000, "ranks": g.size}


def padding(config_path: str) -> dict:
    """Padding share of one epoch of real stage1 batches, plain vs length-bucketed, and the
    host-side cost of building a batch."""
    import time

    import numpy as np

    from exe_coder.dataset.records import patch_text
    from exe_coder.dataset.sample import sample_stage
    from exe_coder.model.tokenizer import PAD, Tokenizer
    from exe_coder.paths import resolve_spec
    from exe_coder.spec import load_spec
    from exe_coder.train.config import load_config
    from exe_coder.train.data import Batcher, TokenizedSplit, padding_share

    cfg = load_config(config_path)
    tok = Tokenizer()
    stage = Path(cfg.data.train_jsonl).parent.name
    rows = [tok.encode_example(d.prompt, patch_text(d.a, d.b)) for d in sample_stage(load_spec(resolve_spec(stage)))["train"]]
    T = max(len(ids) for ids, _ in rows)
    tokens = np.full((len(rows), T), PAD, dtype=np.int32)
    mask = np.zeros((len(rows), T), dtype=bool)
    for i, (ids, m) in enumerate(rows):
        tokens[i, : len(ids)], mask[i, : len(m)] = ids, m
    lengths = np.array([len(ids) for ids, _ in rows], dtype=np.int32)
    split = TokenizedSplit(tokens, mask, ~mask, lengths, digit_copies=np.zeros(len(rows), dtype=bool))
    out = {"stage": stage, "mean_len": float(split.lengths.mean())}
    for name, window in (("before", 1), ("after", None)):
        b = Batcher(split, cfg.train.batch_size, cfg.run.seed, **({} if window is None else {"window_batches": window}))
        t0 = time.perf_counter()
        batches = [b.batch_at(s) for s in range(b.steps_per_epoch)]
        out[name] = padding_share(batches)
        out[f"{name}_ms_per_batch"] = (time.perf_counter() - t0) * 1000 / len(batches)
    return out


def bench_torch(config_path: str, steps: int, threads: int | None) -> dict:
    import time

    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    from exe_coder.train.config import load_config

    cfg = load_config(config_path).model
    B, T = load_config(config_path).train.batch_size, SEQ_LEN
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    hd = cfg.hidden_size // cfg.heads

    def rope(x):  # x [B, H, T, D], rotate-half convention as mx.fast.rope(traditional=False)
        half = hd // 2
        freqs = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float32) / half)
        ang = torch.arange(x.shape[2], dtype=torch.float32)[:, None] * freqs[None]
        cos, sin = ang.cos(), ang.sin()
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            d = cfg.hidden_size
            self.n1, self.n2 = tnn.RMSNorm(d), tnn.RMSNorm(d)
            self.qkv = tnn.Linear(d, 3 * d, bias=False)
            self.out = tnn.Linear(d, d, bias=False)
            self.up = tnn.Linear(d, cfg.mlp_ratio * d, bias=False)
            self.down = tnn.Linear(cfg.mlp_ratio * d, d, bias=False)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.n1(x)).split(d, dim=-1)
            q, k, v = (z.view(b, t, cfg.heads, hd).transpose(1, 2) for z in (q, k, v))
            o = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
            x = x + self.out(o.transpose(1, 2).reshape(b, t, d))
            h = self.up(self.n2(x))
            h = F.relu(h).square() if cfg.activation == "relu2" else F.gelu(h, approximate="tanh")
            return x + self.down(h)

    class Model(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(260, cfg.hidden_size)
            # digit/number-ordinal embeddings: two more lookups added to the input, as in MLX
            self.digit = tnn.Embedding(17, cfg.hidden_size) if cfg.digit_positions else None
            self.number = tnn.Embedding(9, cfg.hidden_size) if cfg.number_positions else None
            self.blocks = tnn.ModuleList([Block() for _ in range(cfg.layers)])
            self.norm = tnn.RMSNorm(cfg.hidden_size)

        def forward(self, x):
            h = self.embed(x)
            if self.digit is not None:
                h = h + self.digit(x % 17)
            if self.number is not None:
                h = h + self.number(x % 9)
            for blk in self.blocks:
                h = blk(h)
            return self.norm(h) @ self.embed.weight.T

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (B, T))
    y = torch.randint(0, 256, (B, T))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, 260), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return {"tokens_per_sec": B * T / dt, "ms_per_step": dt * 1000, "threads": torch.get_num_threads()}


def run_ranks_child(config: str, steps: int, ranks: int, blas, blas_threads: int | None = None) -> dict | None:
    """The MLX child as ``ranks`` ring ranks (ranks = 1 is one plain process); ``blas_threads``
    overrides the BLAS threads a rank gets (default: the cores shared among the ranks)."""
    import tempfile

    from exe_coder.train.distributed import run_ranks

    env = {"EXE_CODER_NO_BLAS_PRELOAD": "1"}
    if blas_threads:
        env.update(OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads))
    if blas is not None:
        env["LD_PRELOAD"] = str(blas)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "r.json"
        cmd = [sys.executable, __file__, "--child", "mlx", "--config", config, "--steps", str(steps), "--result", str(result)]
        code, rank = run_ranks(cmd, ranks, env, logs=Path(tmp))
        if code != 0:
            print(f"  mlx {ranks} ranks: rank {rank} failed (exit {code})")
            return None
        return json.loads(result.read_text())


def run_child(
    kind: str, config: str, steps: int, env_extra: dict[str, str], drop_preload: bool, threads: int | None = None
) -> dict | None:
    env = dict(os.environ)
    env.update(env_extra)
    env["EXE_CODER_NO_BLAS_PRELOAD"] = "1"
    if drop_preload:
        env.pop("LD_PRELOAD", None)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--config", config, "--steps", str(steps)]
        + (["--threads", str(threads)] if threads else []),
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(f"  {kind}: failed\n{proc.stderr.strip()[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "sft_stage1_pilot.toml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--child", choices=["mlx", "torch"])
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=None, help="MLX ranks of the N-rank run (default: one a core)")
    args = parser.parse_args()

    if args.child == "mlx":
        r = bench_mlx(args.config, args.steps)
        if args.result and int(os.environ.get("MLX_RANK", "0")) == 0:
            Path(args.result).write_text(json.dumps(r))
        return
    if args.child == "torch":
        print(json.dumps(bench_torch(args.config, args.steps, args.threads)))
        return

    from exe_coder.model.transformer import Transformer, count_parameters
    from exe_coder.train.blas import find_openblas
    from exe_coder.train.config import load_config

    cfg = load_config(args.config)
    n_params = count_parameters(Transformer.from_config(cfg.model))
    m = cfg.model
    print(
        f"model {Path(args.config).name}: {m.layers} layers x {m.hidden_size} wide, {m.heads} heads, "
        f"{n_params:,} parameters; batch {cfg.train.batch_size} x {SEQ_LEN} tokens; {args.steps} timed steps"
    )
    from exe_coder.train.distributed import cores

    pad = padding(args.config)
    print(
        f"  padding share of {pad['stage']} train batches (mean row {pad['mean_len']:.1f} tokens): "
        f"before {pad['before']:.1%}, after {pad['after']:.1%} (length bucketing); "
        f"real tokens per computed token x{(1 - pad['after']) / (1 - pad['before']):.2f}; "
        f"host batch prep {pad['after_ms_per_batch']:.2f} ms a batch"
    )
    blas = find_openblas()
    if blas is None:
        print("  no OpenBLAS installed (apt install libopenblas0-pthread): MLX uses the reference BLAS")
    n = args.ranks or cores()
    results: dict[str, dict | None] = {}
    results["mlx 1 rank"] = run_ranks_child(args.config, args.steps, 1, blas)
    # One rank already runs its BLAS on every core, so N ranks / 1 rank shows only what the ranks
    # add beyond BLAS threads; against one rank on one core it shows how the ranks scale per core.
    results["mlx 1 rank, 1 core"] = run_ranks_child(args.config, args.steps, 1, blas, blas_threads=1) if n > 1 else None
    results[f"mlx {n} ranks"] = run_ranks_child(args.config, args.steps, n, blas) if n > 1 else None
    try:
        import torch  # noqa: F401

        # PyTorch's OpenMP threads collapse when the cores are oversubscribed (a shared machine),
        # so it is timed with its default threads and with one; the faster counts.
        per_threads = {
            t: run_child("torch", args.config, args.steps, {}, drop_preload=True, threads=t) for t in (None, 1)
        }
        for t, r in per_threads.items():
            if r is not None:
                print(f"  pytorch cpu ({r['threads']} thread{'s' if r['threads'] > 1 else ''}): {r['tokens_per_sec']:,.0f} tokens/s")
        done = [r for r in per_threads.values() if r is not None]
        results["pytorch cpu"] = max(done, key=lambda r: r["tokens_per_sec"]) if done else None
    except ImportError:
        print("  torch is not installed (benchmark-only): uv pip install "
              "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
        results["pytorch cpu"] = None

    for name, r in results.items():
        if r is not None:
            print(f"  {name:20s} {r['tokens_per_sec']:>10,.0f} tokens/s  {r['ms_per_step']:8.1f} ms/step")
    if results["pytorch cpu"] is not None:
        print(f"  (pytorch cpu = the faster of its thread settings: {results['pytorch cpu']['threads']})")
    one, many, pt = results["mlx 1 rank"], results[f"mlx {n} ranks"], results["pytorch cpu"]
    if one and many:
        r = many["tokens_per_sec"] / one["tokens_per_sec"]
        print(f"  MLX {n} ranks / 1 rank: {r:.2f}x  (aim >= 1.7 on 2 cores: {'met' if r >= 1.7 else 'NOT met'})")
    single = results.get("mlx 1 rank, 1 core")
    if single and many:
        r = many["tokens_per_sec"] / single["tokens_per_sec"]
        print(f"  MLX {n} ranks / 1 rank on 1 core (BLAS 1 thread): {r:.2f}x  (per-core scaling; ideal {n}.00x)")
    best = many or one
    if best and pt:
        r = best["tokens_per_sec"] / pt["tokens_per_sec"]
        print(f"  MLX ({best['ranks']} ranks) / PyTorch: {r:.2f}x  (aim >= 1.0: {'met' if r >= 1.0 else 'NOT met'})")
        r_real = r * (1 - pad["after"]) / (1 - pad["before"])
        print(f"  counting real tokens only (bucketed MLX vs unbucketed batches): {r_real:.2f}x")


if __name__ == "__main__":
    main()
