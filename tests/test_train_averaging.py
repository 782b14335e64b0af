"""[train].weight_ema: the average's arithmetic, what a run evaluates and keeps, resume, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx.utils import tree_flatten

from _train_fixtures import curve, rl_config, tiny_config, weights
from exe_coder.dataset.records import load_examples
from exe_coder.decode.track import track_for
from exe_coder.errors import UserError
from exe_coder.model.tokenizer import Tokenizer
from exe_coder.train import run_dir
from exe_coder.train.averaging import WeightAverage, averaged, decay_at
from exe_coder.train.config import dump_toml, parse_config
from exe_coder.train.data import tokenize
from exe_coder.train.distributed import train_on_ranks
from exe_coder.train.loop import evaluate, train
from exe_coder.train.rl import check_rl_supported


@pytest.fixture(scope="module")
def ema_run(data_dir: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("ema")
    return out, train(tiny_config(data_dir, out, weight_ema=0.9), show_progress=False)


def _state(out: Path) -> dict[str, np.ndarray]:
    return weights(out / run_dir.STATE)


# --- the arithmetic ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    decay=st.floats(0.0, 0.999),
    values=st.lists(st.floats(-10.0, 10.0, allow_nan=False), min_size=1, max_size=12),
)
def test_the_average_follows_its_recurrence(decay: float, values: list[float]):
    """A one-weight model set to v_1..v_n after steps 1..n: the average is the recurrence's value,
    computed here in float64 from the initial weight."""
    model = nn.Linear(1, 1, bias=False)
    model.weight = mx.array([[0.5]])
    average = WeightAverage(model, decay)
    expected = 0.5
    for step, v in enumerate(values, start=1):
        model.weight = mx.array([[v]])
        average.update(model, step)
        d = min(decay, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * v
    assert float(average.params["weight"][0, 0]) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_the_decay_ramps_up_to_its_setting():
    assert decay_at(0.999, 1) == pytest.approx(2 / 11)  # the first steps' weights fade fast
    assert decay_at(0.999, 10) == pytest.approx(11 / 20)
    assert decay_at(0.999, 10**6) == 0.999
    assert all(decay_at(0.99, s) <= decay_at(0.99, s + 1) for s in range(1, 2000))


def test_averaged_swaps_the_average_in_and_its_own_weights_back_even_on_error():
    model = nn.Linear(2, 2)
    own = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    average = WeightAverage(model, 0.5)
    average.params = {k: v + 1.0 for k, v in model.trainable_parameters().items()}
    with pytest.raises(RuntimeError):
        with averaged(model, average):
            assert np.array_equal(np.array(model.weight), own["weight"] + 1.0)
            raise RuntimeError
    assert all(np.array_equal(np.array(v), own[k]) for k, v in tree_flatten(model.parameters()))
    with averaged(model, None):  # no average: the model's own weights
        assert np.array_equal(np.array(model.weight), own["weight"])


# --- a run with it -----------------------------------------------------------------------------


def test_a_run_keeps_the_average_and_trains_its_own_weights(ema_run):
    out, result = ema_run
    state, latest = _state(out), weights(out / run_dir.LATEST)
    own = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    avg = {k[len(run_dir.AVERAGE) + 1 :]: v for k, v in state.items() if k.startswith(f"{run_dir.AVERAGE}.")}
    assert avg.keys() == own.keys() == latest.keys()
    assert all(np.array_equal(latest[k], avg[k]) for k in avg)  # the weights files hold the average
    assert any(not np.allclose(own[k], avg[k]) for k in avg)  # which is not the trained weights
    assert result.steps == 24


def test_the_run_evaluates_the_average(ema_run, data_dir: Path):
    """The logged val loss at the last step is the average's, not the trained weights'."""
    out, _ = ema_run
    model, config = run_dir.load_model(out / run_dir.LATEST)
    d = config.data
    track = track_for(d.track, min_int=d.decode_min_int, max_int=d.decode_max_int, target_order=d.target_order)
    val = tokenize(load_examples(d.val_jsonl), Tokenizer(), config.model.seq_len, d.val_jsonl, target=track.target_tokens)
    logged = [r for r in curve(out) if r["step"] == 24 and "val_loss" in r][0]
    assert evaluate(model, val, 32, config.train.eval_max_samples)["val_loss"] == pytest.approx(logged["val_loss"], rel=1e-5)
    own = {k[len("model.") :]: mx.array(v) for k, v in _state(out).items() if k.startswith("model.")}
    model.load_weights(list(own.items()))
    assert evaluate(model, val, 32, config.train.eval_max_samples)["val_loss"] != pytest.approx(logged["val_loss"], rel=1e-5)


def test_the_average_changes_neither_the_training_curve_nor_the_trained_weights(ema_run, data_dir: Path, tmp_path: Path):
    out, _ = ema_run
    train(tiny_config(data_dir, tmp_path), show_progress=False)
    plain, ema = curve(tmp_path), curve(out)
    assert [r.get("loss") for r in plain] == [r.get("loss") for r in ema]  # the same updates
    state = _state(out)
    for k, v in weights(tmp_path / run_dir.LATEST).items():
        assert np.array_equal(v, state[f"model.{k}"])


def test_resume_continues_the_same_average(ema_run, data_dir: Path, tmp_path: Path):
    out, _ = ema_run
    cfg = tiny_config(data_dir, tmp_path, weight_ema=0.9)
    train(cfg, stop_after=12, show_progress=False)  # last save at step 8
    assert json.loads((tmp_path / "run.json").read_text())["step"] == 8
    train(cfg, resume=True, show_progress=False)
    assert curve(tmp_path) == curve(out)
    a, b = _state(out), _state(tmp_path)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a if not k.startswith("rng"))


def test_two_ranks_keep_the_same_average_as_one(ema_run, data_dir: Path, tmp_path: Path):
    def config(out: Path):
        cfg = tiny_config(data_dir, out, weight_ema=0.9)
        return cfg.model_copy(update={"model": cfg.model.model_copy(update={"dropout": 0.0})})

    train(config(tmp_path / "one"), show_progress=False)
    train_on_ranks(config(tmp_path / "two"), 2, eval_hook=False)
    a, b = weights(tmp_path / "one" / run_dir.LATEST), weights(tmp_path / "two" / run_dir.LATEST)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_resume_cannot_switch_the_average_on_or_off(data_dir: Path, tmp_path: Path):
    train(tiny_config(data_dir, tmp_path / "plain"), stop_after=8, show_progress=False)
    with pytest.raises(UserError, match="kept no weight average"):
        train(tiny_config(data_dir, tmp_path / "plain", weight_ema=0.9), resume=True, show_progress=False)
    train(tiny_config(data_dir, tmp_path / "ema", weight_ema=0.9), stop_after=8, show_progress=False)
    with pytest.raises(UserError, match=r"--resume cannot change train\.weight_ema"):
        train(tiny_config(data_dir, tmp_path / "ema", weight_ema=0.5), resume=True, show_progress=False)


def test_weight_ema_is_refused_by_rl_and_out_of_range(data_dir: Path, tmp_path: Path):
    raw = rl_config(data_dir, tmp_path / "rl", tmp_path / "sft").model_dump(mode="json", exclude_none=True)
    raw["train"]["weight_ema"] = 0.99
    with pytest.raises(UserError, match=r"\[train\].weight_ema = 0.99 is not read by RL"):
        check_rl_supported(parse_config(dump_toml(raw)))
    with pytest.raises(UserError, match="weight_ema"):
        tiny_config(data_dir, tmp_path, weight_ema=1.0)


def test_a_two_rank_resume_hands_every_rank_the_saved_average(data_dir: Path, tmp_path: Path):
    full = tiny_config(data_dir, tmp_path / "full", weight_ema=0.9)
    cut = tiny_config(data_dir, tmp_path / "cut", weight_ema=0.9)
    train_on_ranks(full, 2, eval_hook=False)
    train_on_ranks(cut, 2, eval_hook=False, stop_after=12)  # last save: step 8
    train_on_ranks(cut, 2, eval_hook=False, resume=True)
    assert curve(tmp_path / "cut") == curve(tmp_path / "full")  # val loss is sharded: both ranks' averages count
    a, b = weights(tmp_path / "full" / run_dir.LATEST), weights(tmp_path / "cut" / run_dir.LATEST)
    assert all(np.array_equal(a[k], b[k]) for k in a)
