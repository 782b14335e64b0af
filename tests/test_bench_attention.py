"""bench/attention.py still runs against today's model and training step (a bench no test
imports breaks silently when they change)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from exe_coder.model import transformer
from exe_coder.paths import CONFIGS_DIR
from exe_coder.train.config import load_config

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def test_the_attention_bench_times_a_blocked_and_an_unblocked_step(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH_DIR))  # as when run as `python bench/attention.py`
    monkeypatch.setattr(transformer, "ATTENTION_BLOCK", transformer.ATTENTION_BLOCK)  # the bench sets it
    spec = importlib.util.spec_from_file_location("bench_attention", BENCH_DIR / "attention.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = load_config(CONFIGS_DIR / "sft_stage1b_text_trackb.toml").model
    tiny = model.model_copy(update={"layers": 1, "hidden_size": 32, "heads": 2})
    for block in (bench.UNBLOCKED, 16):
        seconds = bench.step_seconds(tiny, rows=2, tokens=40, block=block, steps=1)
        assert math.isfinite(seconds) and seconds > 0
