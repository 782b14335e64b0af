"""Constrained decoding, measured: grammar compile time, mask overhead a token, prompts per second.

    uv run python bench/decode.py [--config configs/sft_stage1.toml] [--prompts 256] [--batch-size 32]

On Linux it re-executes itself once with OpenBLAS preloaded, as ``exe-coder train`` and ``infer``
do (``exe_coder/train/blas.py``; the mlx[cpu] wheel links a reference BLAS, 4.3x slower for Track
B decoding here). ``EXE_CODER_NO_BLAS_PRELOAD=1`` measures without it. The mask overhead does not
depend on it.

What is printed:

1. Grammar compile time (no cache) for the stages' bounds, and the automaton's size.
2. Mask overhead, timing the per-step selection function alone (compiled, evaluated each call,
   as in the decode loop) with and without the grammar mask, on the same logits:
   overhead = constrained - unconstrained step time, median and p99 over interleaved calls;
   per token = per step / batch rows.
3. End to end: a model of the config's size (random init) decodes the same prompts constrained
   and unconstrained for the same number of steps; prompts/s for each and the difference a token.
4. Track B (``--track-b``, or ``--track-b-only``): a randomly initialised model of the Track B
   config decodes a batch unconstrained for a golden image's length (KV cache): tokens/s and
   images/s. Throughput only -- a random model writes no image.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exe_coder.decode import grammar as grammar_mod  # noqa: E402
from exe_coder.decode.generate import _step_fn, generate  # noqa: E402
from exe_coder.model.tokenizer import VOCAB_SIZE  # noqa: E402
from exe_coder.model.transformer import Transformer, count_parameters  # noqa: E402
from exe_coder.paths import CONFIGS_DIR  # noqa: E402
from exe_coder.train.blas import ensure_optimized_blas  # noqa: E402

BOUNDS = {"stage0/1 [-1000, 1000]": (-1000, 1000), "stage2 [-5000, 5000]": (-5000, 5000), "int32": (-(2**31), 2**31 - 1)}
SEED_MODEL = {"layers": 6, "hidden_size": 512, "heads": 8, "seq_len": 128}  # the seed README's [model]
PHRASES = ["What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}", "sum of {a} and {b}", "{a} plus {b} equals?"]


def pct(xs, q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def bench_compile(repeats: int) -> None:
    print("grammar compile (no cache), median of", repeats)
    for name, (lo, hi) in BOUNDS.items():
        times = []
        for _ in range(repeats):
            grammar_mod._CACHE.clear()
            t0 = time.perf_counter()
            g = grammar_mod.compile_grammar(lo, hi)
            times.append((time.perf_counter() - t0) * 1e3)
        print(f"  {name:24s} {statistics.median(times):8.2f} ms   {g.num_states} states x {VOCAB_SIZE} tokens, "
              f"longest output {g.max_tokens} tokens")


def bench_mask(batch_sizes: list[int], calls: int) -> None:
    g = grammar_mod.compile_grammar(-1000, 1000)
    bias, next_flat = g.mask_bias_mx, g.next_state_mx.reshape(-1)
    constrained = _step_fn(True, 0.0, 0, VOCAB_SIZE)
    free = _step_fn(False, 0.0, 0, 0)
    key = mx.random.key(0)
    print(f"mask overhead: the per-step selection alone (greedy), {calls} interleaved calls each")
    print(f"  {'rows':>5} {'free med':>9} {'masked med':>11} {'overhead med':>13} {'p99':>8} {'med/token':>10} {'p99/token':>10}  (us)")
    for B in batch_sizes:
        rng = np.random.default_rng(B)
        logits = mx.array(rng.normal(size=(B, VOCAB_SIZE)).astype(np.float32))
        # states spread over the automaton, so the gathers read different rows
        state = mx.array(rng.integers(0, g.done_state, size=B).astype(np.int32))
        done = mx.zeros((B,), dtype=mx.bool_)
        mx.eval(logits, state, done, bias, next_flat, key)

        def one(fn) -> float:
            t0 = time.perf_counter_ns()
            mx.eval(fn(logits, state, done, key, bias, next_flat))
            return (time.perf_counter_ns() - t0) / 1e3

        for _ in range(200):  # compile and warm up
            one(constrained), one(free)
        order = [True] * calls + [False] * calls
        random.Random(B).shuffle(order)
        times = {True: [], False: []}
        for c in order:
            times[c].append(one(constrained if c else free))
        med = statistics.median(times[True]) - statistics.median(times[False])
        p99 = pct(times[True], 99) - pct(times[False], 99)
        print(f"  {B:5d} {statistics.median(times[False]):9.2f} {statistics.median(times[True]):11.2f} "
              f"{med:13.2f} {p99:8.2f} {med / B:10.3f} {p99 / B:10.3f}")


def model_size(config: Path | None) -> tuple[dict, tuple[int, int], str]:
    """The ``[model]`` size and decode bounds of ``config`` (default: the first stage1 config)."""
    if config is None:
        found = sorted(CONFIGS_DIR.glob("*stage1*.toml")) if CONFIGS_DIR.is_dir() else []
        config = found[0] if found else None
    if config is None:
        return SEED_MODEL, (-1000, 1000), "the seed README's [model] (no stage1 config found)"
    from exe_coder.train.config import load_config

    cfg = load_config(config)
    m = cfg.model
    size = {"layers": m.layers, "hidden_size": m.hidden_size, "heads": m.heads, "seq_len": m.seq_len,
            "mlp_ratio": m.mlp_ratio, "position": m.position, "tie_embeddings": m.tie_embeddings}
    return size, (cfg.data.decode_min_int, cfg.data.decode_max_int), str(config)


def bench_end_to_end(config: Path | None, n_prompts: int, batch_size: int, repeats: int) -> None:
    size, (lo, hi), source = model_size(config)
    mx.random.seed(0)
    model = Transformer(**size)
    model.eval()
    mx.eval(model.parameters())
    g = grammar_mod.compile_grammar(lo, hi)
    rng = random.Random(0)
    prompts = [rng.choice(PHRASES).format(a=rng.randint(-1000, 1000), b=rng.randint(-1000, 1000)) for _ in range(n_prompts)]
    batches = [prompts[i : i + batch_size] for i in range(0, n_prompts, batch_size)]
    print(f"end to end: {count_parameters(model):,}-parameter model ({source}), random init, "
          f"bounds [{lo}, {hi}], {n_prompts} prompts in batches of {batch_size}, greedy, {repeats} runs")

    steps = [max(len(t) for t in generate(model, b, g).tokens) for b in batches]  # warm-up, and the step counts
    generate(model, batches[0], None, max_tokens=steps[0])

    # Every batch decoded both ways, in shuffled order, `repeats` times: a shared machine's load
    # then falls on both alike. Per-batch times; a run's time is the sum over batches.
    times: dict[bool, list[list[float]]] = {True: [], False: []}
    order = random.Random(1)
    for _ in range(repeats):
        run = {True: [], False: []}
        for batch, n in zip(batches, steps):
            for constrained in order.sample([True, False], 2):
                t0 = time.perf_counter()
                generate(model, batch, g if constrained else None, max_tokens=n)
                run[constrained].append(time.perf_counter() - t0)
        for c in (True, False):
            times[c].append(run[c])
    tokens = sum(n * len(b) for b, n in zip(batches, steps))
    total = {c: [sum(r) for r in times[c]] for c in times}
    for c, name in ((False, "unconstrained"), (True, "constrained")):
        med, best = statistics.median(total[c]), min(total[c])
        print(f"  {name:14s} {n_prompts / med:9.1f} prompts/s median ({n_prompts / best:.1f} best)   "
              f"{med / sum(steps) * 1e3:7.2f} ms/step")
    diff = [(tc - tu) / tokens * 1e6 for tc, tu in zip(total[True], total[False])]
    print(f"  constrained / unconstrained time (median runs): {statistics.median(total[True]) / statistics.median(total[False]):.3f}x; "
          f"difference a token: median {statistics.median(diff):.2f} us over {repeats} paired runs "
          f"({tokens} tokens, {sum(steps)} steps a run)")


TRACK_B_CONFIG = CONFIGS_DIR / "sft_stage1_trackb.toml"


def bench_track_b(config: Path, batch_size: int, repeats: int) -> None:
    """Unconstrained KV-cached decoding of a Track B image's length, at ``batch_size`` rows."""
    from exe_coder.dataset.golden import golden_image
    from exe_coder.codegen.finalize import unsigned_image
    from exe_coder.decode.image_text import encode_image
    from exe_coder.train.config import load_config

    cfg = load_config(config)
    mx.random.seed(0)
    model = Transformer.from_config(cfg.model)
    model.eval()
    mx.eval(model.parameters())
    image_tokens = len(encode_image(unsigned_image(golden_image("add", 17, -4)))) + 1  # + EOS
    rng = random.Random(0)
    prompts = [rng.choice(PHRASES).format(a=rng.randint(-1000, 1000), b=rng.randint(-1000, 1000)) for _ in range(batch_size)]
    print(f"Track B: {count_parameters(model):,}-parameter model ({config}), random init (throughput only), "
          f"batch {batch_size}, {image_tokens} tokens an image, greedy, unconstrained, KV cache, {repeats} runs")
    # a random row may write EOS early; the batch decodes until every row has, and the steps run are counted
    generate(model, prompts, None, max_tokens=8)  # compile and warm up
    times, steps = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gen = generate(model, prompts, None, max_tokens=image_tokens)
        times.append(time.perf_counter() - t0)
        steps.append(max(len(t) for t in gen.tokens))
    med = statistics.median(times)
    n = statistics.median(steps)
    print(f"  {batch_size * n / med:9.1f} tokens/s   {batch_size * n / image_tokens / med:7.2f} images/s   "
          f"{med / n * 1e3:7.2f} ms/step   ({n:.0f} steps a run, median of {repeats}; best {batch_size * n / image_tokens / min(times):.2f} images/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=None, help="training config whose [model] size to use")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mask-calls", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--track-b", action="store_true", help="also measure Track B throughput")
    ap.add_argument("--track-b-only", action="store_true", help="measure Track B throughput only")
    ap.add_argument("--track-b-config", type=Path, default=TRACK_B_CONFIG)
    args = ap.parse_args()
    ensure_optimized_blas()
    print(f"mlx {mx.__version__}, device {mx.default_device()}, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '') or '(none)'}")
    if args.track_b_only:
        bench_track_b(args.track_b_config, args.batch_size, args.repeats)
        return
    bench_compile(repeats=10)
    bench_mask([1, 32, 128], args.mask_calls)
    bench_end_to_end(args.config, args.prompts, args.batch_size, args.repeats)
    if args.track_b:
        bench_track_b(args.track_b_config, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
