"""bench/train.py's padding measurement runs against today's data pipeline (a bench that no test
imports breaks silently when the pipeline changes, as this one once did)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from exe_coder.paths import CONFIGS_DIR

BENCH = Path(__file__).resolve().parent.parent / "bench" / "train.py"


def test_length_bucketing_cuts_the_padding_share_of_real_batches():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    pad = bench.padding(str(CONFIGS_DIR / "sft_stage0_overfit.toml"))
    assert pad["stage"] == "stage0"
    assert 0.0 <= pad["after"] < pad["before"] < 1.0
