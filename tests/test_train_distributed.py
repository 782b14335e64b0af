"""Data-parallel training over loopback ring ranks: 1 rank == 2 ranks, summed gradients == the
whole batch's gradient, 2-rank resume == uninterrupted, and a dying rank ends the run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from _train_fixtures import curve, tiny_config, weights
from exe_coder.errors import UserError
from exe_coder.train.distributed import run_ranks, train_on_ranks

RTOL = 1e-4  # 1 vs 2 ranks: the same arithmetic up to float reduction order (seen: ~1e-7)
REPO = Path(__file__).resolve().parent.parent


def _config(data_dir: Path, out: Path, dropout: float = 0.0, **train):
    cfg = tiny_config(data_dir, out, max_steps=16, **train)
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"dropout": dropout})})


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory) -> dict[int, Path]:
    out = {}
    for n in (1, 2):
        out[n] = tmp_path_factory.mktemp(f"ranks{n}")
        result = train_on_ranks(_config(data_dir, out[n]), n, eval_hook=False)
        assert result.steps == 16 and result.out_dir == out[n]
    return out


def test_one_and_two_ranks_give_the_same_curve_and_weights(runs):
    one, two = curve(runs[1]), curve(runs[2])
    assert [r["step"] for r in one] == [r["step"] for r in two] == [4, 8, 12, 16]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=RTOL), (a["step"], key)
    w1, w2 = weights(runs[1] / "latest_weights.safetensors"), weights(runs[2] / "latest_weights.safetensors")
    for k in w1:
        np.testing.assert_allclose(w1[k], w2[k], rtol=RTOL, atol=1e-6, err_msg=k)


def test_only_rank_0_writes_the_run_folder(runs):
    names = sorted(p.name for p in runs[2].iterdir())
    assert names == sorted(p.name for p in runs[1].iterdir())
    assert len((runs[2] / "metrics.jsonl").read_text().splitlines()) == 4  # not one line a rank


def test_resume_with_two_ranks_equals_an_uninterrupted_two_rank_run(data_dir: Path, tmp_path: Path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_on_ranks(_config(data_dir, full, dropout=0.1), 2, eval_hook=False)  # dropout: per-rank RNG restored too
    train_on_ranks(_config(data_dir, cut, dropout=0.1), 2, eval_hook=False, stop_after=12)  # last save: step 8
    assert json.loads((cut / "run.json").read_text())["step"] == 8
    train_on_ranks(_config(data_dir, cut, dropout=0.1), 2, eval_hook=False, resume=True)
    assert curve(cut) == curve(full)
    a, b = weights(full / "latest_weights.safetensors"), weights(cut / "latest_weights.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


_GRAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import mlx.core as mx, mlx.nn as nn, numpy as np
    from mlx.utils import tree_flatten
    from exe_coder.train.distributed import world
    from exe_coder.model.transformer import Transformer
    from exe_coder.model.config import ModelConfig

    g = world()
    mx.random.seed(3)
    model = Transformer.from_config(ModelConfig(layers=2, hidden_size=32, heads=2, seq_len=32, dropout=0.0))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 15)).astype(np.int32)
    y = rng.integers(0, 256, (6, 15)).astype(np.int32)
    mask = (rng.random((6, 15)) < 0.5).astype(np.float32)
    n = float(mask.sum())
    xs, ys, ms = (a[g.rank :: g.size] for a in (x, y, mask))

    def loss(model):
        ce = nn.losses.cross_entropy(model(mx.array(xs)), mx.array(ys))
        return (ce * mx.array(ms)).sum() / n

    grads = g.sum_tree(nn.value_and_grad(model, loss)(model)[1])
    mx.eval(grads)  # every rank takes part in the all-reduce (lazy otherwise)
    if g.rank == 0:
        np.savez(sys.argv[1], **{k: np.array(v) for k, v in tree_flatten(grads)})
    """
)


def test_gradients_summed_over_two_ranks_equal_the_whole_batch_gradient(tmp_path: Path):
    script = tmp_path / "grads.py"
    script.write_text(_GRAD_SCRIPT)
    env = {"PYTHONPATH": str(REPO)}
    assert run_ranks([sys.executable, str(script), str(tmp_path / "two.npz")], 2, env) == (0, None)
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one.npz")], env={**os.environ, **env})
    assert single.returncode == 0
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(one.files) == sorted(two.files) and len(one.files) > 5
    for k in one.files:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-7, err_msg=k)


_DIE_SCRIPT = textwrap.dedent(
    """
    import os
    import mlx.core as mx
    from exe_coder.train.distributed import world
    if os.environ["MLX_RANK"] == "1":
        raise RuntimeError("rank 1 fails")  # before joining: rank 0 would wait for it for ever
    mx.eval(world().all_sum(mx.ones(3)))
    """
)


def test_a_rank_that_dies_ends_the_run_with_its_code_not_a_hang(tmp_path: Path):
    script = tmp_path / "die.py"
    script.write_text(_DIE_SCRIPT)
    t0 = time.monotonic()
    code, rank = run_ranks([sys.executable, str(script)], 2, {"PYTHONPATH": str(REPO)}, logs=tmp_path)
    assert (code, rank) == (1, 1)
    assert time.monotonic() - t0 < 30
    assert "rank 1 fails" in (tmp_path / "rank1.log").read_text()


_LAUNCHER_SCRIPT = textwrap.dedent(
    """
    import sys
    from exe_coder.train.distributed import run_ranks
    sys.exit(run_ranks([sys.executable, "-c", "import os, time; os.write(1, b'%d' % os.getpid() + bytes([10])); time.sleep(600)"], 2)[0])
    """
)


def test_killing_the_launcher_stops_its_ranks(tmp_path: Path):
    """`kill` (SIGTERM) to the launcher must not leave its ranks running, unseen, on every core."""
    script = tmp_path / "launch.py"
    script.write_text(_LAUNCHER_SCRIPT)
    launcher = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    # each rank writes its pid in one write(2) (atomic on a pipe), so the two lines never interleave
    ranks = [int(launcher.stdout.readline()) for _ in range(2)]  # both ranks have started
    launcher.terminate()
    assert launcher.wait(timeout=30) == 128 + 15
    for pid in ranks:
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"rank process {pid} outlived its launcher"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its dead parent's reaper) is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return True  # no /proc (macOS): kill(0) succeeded, so it exists


def test_a_refusing_rank_0_stops_the_run_with_one_error(runs, data_dir: Path, tmp_path: Path):
    """Rank 0 refuses an earlier run (no --force); rank 1 would block on it in the first all-reduce."""
    earlier = tmp_path / "earlier"
    shutil.copytree(runs[1], earlier)
    t0 = time.monotonic()
    with pytest.raises(UserError, match="holds an earlier run; continue it with --resume"):
        train_on_ranks(_config(data_dir, earlier), 2, eval_hook=False)
    assert time.monotonic() - t0 < 60


def test_more_ranks_than_rows_is_one_error(data_dir: Path, tmp_path: Path):
    with pytest.raises(UserError, match="exceeds \\[train\\].batch_size = 8"):
        train_on_ranks(_config(data_dir, tmp_path), 9, eval_hook=False)


def test_mlx_launch_runs_the_train_command_as_two_ranks(data_dir: Path, tmp_path: Path):
    cfg_file = tmp_path / "tiny.toml"
    cfg_file.write_text(_config(data_dir, tmp_path / "run").to_toml())
    launcher = Path(sys.executable).parent / "mlx.launch"
    proc = subprocess.run(
        [str(launcher), "-n", "2", "--backend", "ring", "--", sys.executable, "-m", "exe_coder.cli",
         "train", "--config", str(cfg_file), "--no-eval-hook"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "EXE_CODER_NO_BLAS_PRELOAD": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "device: cpu, 2 ranks" in proc.stderr + proc.stdout
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("key", ["digit_place_shift", "number_ordinal_shift"])
def test_a_place_or_ordinal_shift_trains_the_same_on_one_and_two_ranks(data_dir: Path, tmp_path: Path, key: str):
    """Each rank takes its rows' offsets with its rows of the global batch; a shift changes the
    run (the offsets reach the model), and 1 and 2 ranks still agree."""
    def run(n: int, shift: int) -> Path:
        cfg = _config(data_dir, tmp_path / f"r{n}s{shift}", **{key: shift})
        features = {"digit_positions": True, "digit_ends": True, "number_positions": True}
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update=features)})
        train_on_ranks(cfg, n, eval_hook=False)
        return tmp_path / f"r{n}s{shift}"

    one, two, plain = curve(run(1, 3)), curve(run(2, 3)), curve(run(1, 0))
    for a, b in zip(one, two):
        for key in ("loss", "grad_norm", "val_loss"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=RTOL), (a["step"], key)
    assert [r["loss"] for r in one] != [r["loss"] for r in plain]
