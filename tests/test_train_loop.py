"""The SFT loop: masked loss, schedule, falling loss, determinism, resume == uninterrupted."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _train_fixtures import curve, tiny_config, weights
from exe_coder.dataset.records import load_examples
from exe_coder.errors import UserError
from exe_coder.train import run_dir as ckpt
from exe_coder.model.tokenizer import Tokenizer
from exe_coder.train.data import Batcher, make_batch, tokenize
from exe_coder.train.loop import evaluate, train
from exe_coder.train.runcard import read_run_card
from exe_coder.train.schedule import warmup_cosine


@pytest.fixture(scope="module")
def full_run(data_dir: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    result = train(tiny_config(data_dir, out), show_progress=False)
    return out, result


# --- data and loss masking ---------------------------------------------------------------


def test_batch_mask_marks_exactly_the_target_tokens(data_dir: Path):
    examples = load_examples(data_dir / "train.jsonl")
    split = tokenize(examples, Tokenizer(), 64, target=lambda e: e.target)
    batch = make_batch(split, np.arange(8))
    tok = Tokenizer()
    for i, ex in enumerate(examples[:8]):
        predicted = batch.targets[i][batch.target_mask[i] == 1].tolist()
        assert predicted == tok.encode_target(ex.target)  # the target bytes and EOS, nothing else
        prompt_part = batch.targets[i][batch.prompt_mask[i] == 1].tolist()
        assert prompt_part == [*ex.prompt.encode(), tok.sep_id]
    assert not np.any((batch.target_mask == 1) & (batch.prompt_mask == 1))


def test_prompt_tokens_do_not_enter_the_loss(data_dir: Path):
    """Corrupting every prompt-position target leaves the loss unchanged; a target token does not."""
    from exe_coder.model.transformer import Transformer

    split = tokenize(load_examples(data_dir / "train.jsonl"), Tokenizer(), 64, target=lambda e: e.target)
    batch = make_batch(split, np.arange(4))
    mx.random.seed(0)
    model = Transformer(layers=2, hidden_size=32, heads=2, seq_len=64)

    def loss(targets):
        from exe_coder.train.loop import sequence_losses

        ce, _ = sequence_losses(model, mx.array(batch.inputs), mx.array(targets))
        m = mx.array(batch.target_mask)
        return ((ce * m).sum() / m.sum()).item()

    base = loss(batch.targets)
    corrupted = batch.targets.copy()
    corrupted[batch.target_mask == 0] = 7
    assert loss(corrupted) == base
    one_target = batch.targets.copy()
    row, col = np.argwhere(batch.target_mask == 1)[0]
    one_target[row, col] = (one_target[row, col] + 1) % 256
    assert loss(one_target) != base


def test_batches_are_deterministic_and_cover_an_epoch(data_dir: Path):
    split = tokenize(load_examples(data_dir / "train.jsonl"), Tokenizer(), 64, target=lambda e: e.target)
    a, b = Batcher(split, 8, seed=3), Batcher(split, 8, seed=3)
    seen = []
    for step in range(a.steps_per_epoch):
        x, y = a.batch_at(step), b.batch_at(step)
        assert np.array_equal(x.inputs, y.inputs)
        seen.extend(map(tuple, x.inputs[:, :10].tolist()))
    assert len(seen) == len(split)  # one epoch = every example once (64 = 8 x 8)
    assert not np.array_equal(Batcher(split, 8, seed=4).batch_at(0).inputs, a.batch_at(0).inputs)


def test_missing_data_file_tells_how_to_build_it(tmp_path: Path):
    with pytest.raises(UserError, match=r"exe-coder build stage9`"):
        load_examples(tmp_path / "stage9" / "train.jsonl")


def test_bad_record_names_file_and_line(tmp_path: Path, data_dir: Path):
    bad = tmp_path / "train.jsonl"
    lines = (data_dir / "train.jsonl").read_text().splitlines()
    bad.write_text("\n".join([lines[0], '{"id": "x"}', *lines[1:3]]) + "\n")
    with pytest.raises(UserError) as info:
        load_examples(bad)
    assert info.value.line == 2 and info.value.path == str(bad)


# --- schedule ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(1e-5, 1e-1),
    warmup=st.integers(0, 50),
    extra=st.integers(2, 500),
    ratio=st.floats(0.0, 1.0),
)
def test_schedule_values(lr: float, warmup: int, extra: int, ratio: float):
    total = warmup + extra
    f = warmup_cosine(lr, warmup, total, ratio)
    values = [f(s).item() for s in range(total)]
    if warmup:
        assert values[0] == pytest.approx(lr / warmup, rel=1e-5)
        assert values[warmup - 1] == pytest.approx(lr, rel=1e-5)
        assert all(x <= y + 1e-12 for x, y in zip(values[:warmup], values[1:warmup]))  # rising
    assert values[warmup] == pytest.approx(lr, rel=1e-5)  # the cosine starts at the peak
    assert values[-1] == pytest.approx(lr * ratio, rel=1e-4, abs=1e-12)  # and ends at min_lr_ratio * lr
    decay = values[warmup:]
    assert all(y <= x + 1e-9 for x, y in zip(decay, decay[1:]))  # falling
    mid = warmup + (total - 1 - warmup) / 2
    if mid == int(mid):
        assert values[int(mid)] == pytest.approx(lr * ratio + 0.5 * (lr - lr * ratio), rel=1e-4)
    assert not any(math.isnan(v) for v in values)


# --- whole runs --------------------------------------------------------------------------


def test_tiny_run_loss_falls_and_writes_checkpoints(full_run):
    out, result = full_run
    rows = curve(out)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < 0.6 * losses[0]
    assert result.steps == 24 and result.train_loss_end < result.train_loss_start
    evals = [r for r in rows if "val_exact_match" in r]
    assert [r["step"] for r in evals] == [8, 16, 24]
    for name in ("config.toml", "latest_weights.safetensors", "best_weights.safetensors",
                 "training_state.safetensors", "run.json", "0000008_weights.safetensors", "0000024_weights.safetensors"):
        assert (out / name).is_file(), name
    state = json.loads((out / "run.json").read_text())
    assert state["step"] == 24 and state["manifest_sha256"] is not None
    assert not list(out.glob(".*tmp*"))  # no temporaries left behind


def test_best_checkpoint_is_the_best_eval(full_run):
    out, result = full_run
    evals = [r for r in curve(out) if "val_exact_match" in r]
    best = max(evals, key=lambda r: (r["val_exact_match"], -r["val_loss"]))
    assert result.best_step == best["step"]
    assert weights(out / "best_weights.safetensors").keys() == weights(out / ckpt.step_weights_name(best["step"])).keys()
    for k, v in weights(out / "best_weights.safetensors").items():
        assert np.array_equal(v, weights(out / ckpt.step_weights_name(best["step"]))[k])


def test_same_config_samecurve(full_run, data_dir: Path, tmp_path: Path):
    out, _ = full_run
    train(tiny_config(data_dir, tmp_path), show_progress=False)
    assert curve(tmp_path) == curve(out)
    a, b = weights(out / "latest_weights.safetensors"), weights(tmp_path / "latest_weights.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_reaches_the_same_weights(full_run, data_dir: Path, tmp_path: Path):
    out, _ = full_run
    cfg = tiny_config(data_dir, tmp_path)
    first = train(cfg, stop_after=10, show_progress=False)  # "killed" after step 10
    assert first.steps == 10
    # what a kill after step 10 leaves: the last save, at step 8 (save_interval), and metrics to 10
    assert json.loads((tmp_path / "run.json").read_text())["step"] == 8
    resumed = train(cfg, resume=True, show_progress=False)
    assert resumed.steps == 24
    a, b = weights(out / "latest_weights.safetensors"), weights(tmp_path / "latest_weights.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert curve(tmp_path) == curve(out)


def test_resume_with_another_config_is_refused(full_run, data_dir: Path, tmp_path: Path):
    cfg = tiny_config(data_dir, tmp_path)
    train(cfg, stop_after=8, show_progress=False)
    with pytest.raises(UserError, match=r"--resume cannot change train\.label_smoothing"):
        train(tiny_config(data_dir, tmp_path, label_smoothing=0.1), resume=True, show_progress=False)


def test_resume_may_run_longer(data_dir: Path, tmp_path: Path):
    """max_steps is one of the keys a resume may change: the run continues to the new length."""
    train(tiny_config(data_dir, tmp_path), stop_after=8, show_progress=False)
    first = train(tiny_config(data_dir, tmp_path, max_steps=16), resume=True, show_progress=False)
    first_s = read_run_card(tmp_path).phases_s["train"]
    result = train(tiny_config(data_dir, tmp_path, max_steps=32), resume=True, show_progress=False)
    assert first.steps == 16 and result.steps == 32
    # the card's training time adds the segment after the finished one: more than either alone
    assert read_run_card(tmp_path).phases_s["train"] == pytest.approx(first_s + result.wall_s, abs=1e-2)
    with pytest.raises(UserError, match="past the new length"):
        train(tiny_config(data_dir, tmp_path, max_steps=24), resume=True, show_progress=False)


def test_load_model_reproduces_the_trained_model(full_run, data_dir: Path):
    out, result = full_run
    model, config = ckpt.load_model(out)  # the run dir: best weights
    alone, _ = ckpt.load_model(out / "best_weights.safetensors")  # a lone file carries its config
    assert config.run.name == "tiny" and config.model.hidden_size == 32
    split = tokenize(load_examples(data_dir / "val.jsonl"), Tokenizer(), 64, target=lambda e: e.target)
    metrics = evaluate(model, split, 8, 16)
    assert metrics["val_loss"] == pytest.approx(result.best_val_loss, rel=1e-5)
    assert metrics["val_exact_match"] == result.best_val_exact_match
    x = mx.array(split.tokens[:2])
    assert np.array_equal(np.array(model(x)), np.array(alone(x)))


def test_eval_hook_metrics_are_logged(data_dir: Path, tmp_path: Path):
    calls = []

    def hook(model, step):
        calls.append((step, model.training))
        return {"answer_accuracy": 0.5}

    train(tiny_config(data_dir, tmp_path, max_steps=16, full_eval_every=2), eval_hook=hook, show_progress=False)
    assert calls == [(16, False)]  # every 2nd eval (step 16), with the model in eval mode
    logged = [r for r in curve(tmp_path) if "answer_accuracy" in r]
    assert [(r["step"], r["answer_accuracy"]) for r in logged] == [(16, 0.5)]


def test_warmstart_textmix_starts_from_the_checkpoint(full_run, data_dir: Path, tmp_path: Path):
    out, _ = full_run
    base = tiny_config(data_dir, tmp_path, max_steps=8).model_dump(mode="json", exclude_none=True)
    base["init"] = {"mode": "warmstart_textmix", "warmstart_ckpt": str(out), "textmix_ratio": 0.5}
    from exe_coder.train.config import TrainConfig

    cfg = TrainConfig.model_validate(base)
    result = train(cfg, show_progress=False)
    first_loss = curve(tmp_path)[0]["loss"]
    scratch_first = curve(out)[0]["loss"]
    assert first_loss < scratch_first  # it began from trained weights, not from scratch
    assert result.steps == 8


def test_warmstart_may_change_dropout_and_rope_seq_len_but_not_the_model(full_run, data_dir: Path, tmp_path: Path):
    from exe_coder.train.config import TrainConfig

    out, _ = full_run  # position "rope": no weight depends on seq_len
    base = tiny_config(data_dir, tmp_path, max_steps=2).model_dump(mode="json", exclude_none=True)
    base["init"] = {"mode": "warmstart", "warmstart_ckpt": str(out)}
    base["model"]["dropout"] = 0.3
    base["model"]["seq_len"] *= 2
    assert train(TrainConfig.model_validate(base), show_progress=False).steps == 2
    wider = copy.deepcopy(base)
    wider["model"]["hidden_size"] *= 2
    wider["run"]["output_dir"] = str(tmp_path / "wider")
    with pytest.raises(UserError, match="beyond dropout, output_ordinals, signed_numbers, seq_len, a larger max_number_ordinal$"):
        train(TrainConfig.model_validate(wider), show_progress=False)
    learned = copy.deepcopy(base)  # a learned position table has seq_len rows: it must match
    learned["model"]["position"] = "learned"
    learned["run"]["output_dir"] = str(tmp_path / "learned")
    with pytest.raises(UserError, match="beyond dropout, output_ordinals, signed_numbers, a larger max_number_ordinal$"):
        train(TrainConfig.model_validate(learned), show_progress=False)


def test_warmstart_grows_the_number_ordinal_table_and_keeps_the_source_rows(data_dir: Path, tmp_path: Path):
    """Track B starts from Track A with a larger ordinal table (and its output counted apart):
    the source's rows come first, the new rows are this run's fresh ones; a smaller table is refused."""
    from exe_coder.model.checkpoint import load_checkpoint
    from exe_coder.model.transformer import Transformer
    from exe_coder.train.config import TrainConfig
    from exe_coder.train.loop import _init_model

    source = tiny_config(data_dir, tmp_path / "source", max_steps=2).model_dump(mode="json", exclude_none=True)
    source["model"].update(digit_positions=True, number_positions=True)
    train(TrainConfig.model_validate(source), show_progress=False)
    grown = copy.deepcopy(source)
    grown["run"]["output_dir"] = str(tmp_path / "grown")
    grown["init"] = {"mode": "warmstart", "warmstart_ckpt": str(tmp_path / "source")}
    grown["model"].update(max_number_ordinal=12, output_ordinals="restart")
    config = TrainConfig.model_validate(grown)
    model = _init_model(config)
    rows = load_checkpoint(str(tmp_path / "source")).model.number_embed.weight
    assert model.number_embed.weight.shape == (13, 32)
    assert mx.array_equal(model.number_embed.weight[:9], rows)
    mx.random.seed(config.run.seed)
    fresh = Transformer.from_config(config.model).number_embed.weight
    assert mx.array_equal(model.number_embed.weight[9:], fresh[9:])
    assert not mx.array_equal(model.number_embed.weight[:9], fresh[:9])
    smaller = copy.deepcopy(grown)
    smaller["model"]["max_number_ordinal"] = 4
    with pytest.raises(UserError, match="beyond dropout, output_ordinals, signed_numbers, seq_len$"):
        _init_model(TrainConfig.model_validate(smaller))


def test_ordinal_settings_need_number_positions():
    from exe_coder.model.config import ModelConfig

    with pytest.raises(ValueError, match="set number_positions = true"):
        ModelConfig(layers=1, hidden_size=8, heads=1, seq_len=8, output_ordinals="restart")
    assert ModelConfig(layers=1, hidden_size=8, heads=1, seq_len=8, number_positions=True, max_number_ordinal=16).max_number_ordinal == 16


def test_warmstart_from_a_missing_run_says_to_train_it_first(data_dir: Path, tmp_path: Path):
    from exe_coder.train.config import TrainConfig

    base = tiny_config(data_dir, tmp_path / "run", max_steps=2).model_dump(mode="json", exclude_none=True)
    base["init"] = {"mode": "warmstart", "warmstart_ckpt": str(tmp_path / "never_trained")}
    with pytest.raises(UserError, match=r"warmstart_ckpt: .*never_trained: checkpoint not found \(train the run"):
        train(TrainConfig.model_validate(base), show_progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


# feature -> (its textmix mask, the bytes whose next byte the feature may tell)
_LOOKAHEAD = {"digit_ends": ("lm_mask_causal_for_digit_ends", b"0123456789"), "signed_numbers": ("lm_mask_causal_for_signs", b"-\x92")}


@pytest.mark.parametrize("feature", list(_LOOKAHEAD))
@settings(max_examples=15, deadline=None)
@given(prompt=st.text(alphabet="0123456789 ab-−,", min_size=2, max_size=24))
def test_textmix_never_predicts_a_byte_the_features_already_tell(feature: str, prompt: str):
    """Where the masked LM loss predicts a prompt byte, the logits are those of the prefix alone:
    the digit ends (and signs) of the full prompt tell that position nothing about what follows."""
    from exe_coder.model.transformer import Transformer
    from exe_coder.train import data

    mask_name, lookahead = _LOOKAHEAD[feature]
    split = tokenize([_example(prompt)], Tokenizer(), 64, target=lambda e: e.target)
    batch = make_batch(split, np.arange(1))
    kept = getattr(data, mask_name)(batch).prompt_mask[0]
    mx.random.seed(0)
    model = Transformer(layers=1, hidden_size=32, heads=2, seq_len=64, digit_positions=True,
                        number_positions=True, **{feature: True})
    full = model(mx.array(batch.inputs))[0]
    for t in np.flatnonzero(batch.prompt_mask[0]):
        alone = model(mx.array(batch.inputs[:, : t + 1]))[0, t]
        same = bool(mx.allclose(full[t], alone, atol=1e-5))
        if kept[t]:
            assert same, t
        elif not same:  # what the mask is for: this position reads the future
            assert batch.inputs[0, t] in lookahead


def test_the_sft_loop_refuses_an_rl_config(data_dir: Path, tmp_path: Path):
    from exe_coder.paths import CONFIGS_DIR
    from exe_coder.train.config import load_config

    with pytest.raises(UserError, match="this is not an SFT config"):
        train(load_config(CONFIGS_DIR / "rl_mainline.toml"), show_progress=False)


@settings(max_examples=20, deadline=None)
@given(step=st.integers(0, 50), rate=st.floats(0.05, 0.9))
def test_prompt_noise_spares_digits_signs_and_targets(step: int, rate: float):
    split = _noise_split()
    clean = Batcher(split, 8, seed=5).batch_at(step)
    noisy = Batcher(split, 8, seed=5, prompt_noise=rate).batch_at(step)
    again = Batcher(split, 8, seed=5, prompt_noise=rate).batch_at(step)
    assert np.array_equal(noisy.inputs, again.inputs)  # a function of (seed, step)
    assert np.array_equal(noisy.targets, clean.targets) and np.array_equal(noisy.target_mask, clean.target_mask)
    changed = noisy.inputs != clean.inputs
    keep = np.isin(clean.inputs, [ord(c) for c in "0123456789-"]) | (clean.inputs >= 256)
    assert not np.any(changed & keep)
    is_prompt_input = np.zeros_like(changed)
    is_prompt_input[:, 1:] = clean.prompt_mask[:, :-1] == 1
    assert not np.any(changed & ~is_prompt_input)  # the target side of the input is never touched
    noisable = is_prompt_input & ~keep
    if rate >= 0.5:  # with ~100 noisable bytes a batch, some surely change
        assert changed.sum() > 0.25 * noisable.sum()


_NOISE_SPLIT = []


def _example(prompt: str):
    from _train_fixtures import make_examples

    return make_examples(1, "train", 0)[0].model_copy(update={"prompt": prompt})


def _noise_split():
    if not _NOISE_SPLIT:
        from _train_fixtures import make_examples

        _NOISE_SPLIT.append(tokenize(make_examples(64, "train", 9), Tokenizer(), 64, target=lambda e: e.target))
    return _NOISE_SPLIT[0]


# --- issue 8: an earlier run is replaced only with force; divergence stops the run ----------


def _with(cfg, **optimizer):
    raw = cfg.model_dump(mode="json", exclude_none=True)
    raw["optimizer"].update(optimizer)
    from exe_coder.train.config import TrainConfig

    return TrainConfig.model_validate(raw)


def test_fresh_run_into_an_earlier_run_needs_force_and_then_starts_clean(data_dir: Path, tmp_path: Path):
    train(tiny_config(data_dir, tmp_path, max_steps=16), show_progress=False)
    assert (tmp_path / "0000016_weights.safetensors").is_file()
    shorter = tiny_config(data_dir, tmp_path, max_steps=8)
    with pytest.raises(UserError, match=r"holds an earlier run; continue it with --resume or replace it with --force"):
        train(shorter, show_progress=False)
    assert (tmp_path / "0000016_weights.safetensors").is_file()  # refused before touching anything
    train(shorter, force=True, show_progress=False)
    # the earlier run's numbered checkpoints are gone, not left beside the new ones
    assert sorted(p.name for p in tmp_path.glob("*_weights.safetensors") if p.name[0].isdigit()) == [
        "0000008_weights.safetensors"
    ]
    assert [r["step"] for r in curve(tmp_path) if "loss" in r] == [4, 8]
    assert json.loads((tmp_path / "run.json").read_text())["step"] == 8


def test_resume_and_force_together_are_refused(data_dir: Path, tmp_path: Path):
    with pytest.raises(UserError, match="give one of them"):
        train(tiny_config(data_dir, tmp_path), resume=True, force=True, show_progress=False)


def test_output_dir_that_is_a_file_is_one_error(data_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    out.write_text("a file")
    for kwargs in ({}, {"force": True}, {"resume": True}):
        with pytest.raises(UserError, match="the output folder is a file"):
            train(tiny_config(data_dir, out), show_progress=False, **kwargs)
    assert out.read_text() == "a file"


def _refuse(token: str):
    raise AssertionError(f"bare {token} in JSON")


def _strict_lines(path: Path) -> list[dict]:
    return [json.loads(line, parse_constant=_refuse) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "every,cause",
    [
        # saving every step: the weights an update made non-finite are caught before their save
        (1, r"weight [\w.]+ is not finite"),
        # saving rarely: the next step's loss is the first sign
        (8, r"the loss is nan"),
    ],
    ids=["weights-before-save", "loss"],
)
def test_a_diverging_run_stops_with_the_step_and_saves_nothing_non_finite(
    data_dir: Path, tmp_path: Path, every: int, cause: str
):
    cfg = _with(tiny_config(data_dir, tmp_path, save_interval=every, eval_interval=every, log_interval=1), lr_adamw=1e30)
    with pytest.raises(UserError, match=rf"training diverged at step (\d+): {cause}; stopped without saving") as info:
        train(cfg, show_progress=False)
    diverged_at = int(info.value.message.split("step ")[1].split(":")[0])
    assert str(info.value).startswith(f"{tmp_path}: ") and "lr_adamw (now 1e+30)" in str(info.value)
    rows = _strict_lines(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, diverged_at))  # never the diverged step
    saved = sorted(int(p.name[:7]) for p in tmp_path.glob("[0-9]*_weights.safetensors"))
    assert saved == [s for s in range(1, diverged_at) if s % every == 0]
    for path in tmp_path.glob("*.safetensors"):
        assert all(np.isfinite(v).all() for v in weights(path).values()), path.name
    assert (tmp_path / "run.json").is_file() == bool(saved)
    if saved:
        assert json.loads((tmp_path / "run.json").read_text(), parse_constant=_refuse)["step"] == saved[-1]


def test_train_cannot_be_handed_an_infinite_learning_rate(data_dir: Path, tmp_path: Path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="finite"):
        _with(tiny_config(data_dir, tmp_path), lr_adamw=math.inf)


def test_run_stage_training_resumes_the_same_config_and_force_retrains(data_dir: Path, tmp_path: Path):
    from rich.console import Console

    from exe_coder.stages import _train

    console = Console(stderr=True, quiet=True)
    cfg = tiny_config(data_dir, tmp_path / "run", max_steps=8, full_eval_every=100)
    run = _train(cfg, False, console)
    first = (run / "metrics.jsonl").read_text()
    stamp = (run / "0000008_weights.safetensors").stat().st_mtime_ns
    trained_s = read_run_card(run).phases_s["train"]
    _train(cfg, False, console)  # the same config, finished: resumes as a no-op
    assert (run / "metrics.jsonl").read_text() == first
    assert (run / "0000008_weights.safetensors").stat().st_mtime_ns == stamp
    assert read_run_card(run).phases_s["train"] == trained_s  # its own training time is kept
    other = tiny_config(data_dir, tmp_path / "run", max_steps=4, save_interval=4, full_eval_every=100)
    with pytest.raises(UserError, match="another config; run-stage --force replaces it"):
        _train(other, False, console)
    _train(other, True, console)  # force: the earlier run is cleared, then the new one trains
    assert sorted(p.name for p in run.glob("[0-9]*_weights.safetensors")) == ["0000004_weights.safetensors"]


def test_log_lines_carry_wall_time_and_the_pre_clip_gradient_norm(data_dir: Path, tmp_path: Path):
    """Issue 9: wall_s grows with the steps; grad_norm is measured before clipping (so it can
    exceed a tiny clip norm), averaged over the window like the loss."""
    train(tiny_config(data_dir, tmp_path, max_steps=8, grad_clip_norm=1e-3), show_progress=False)
    logs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "loss" in line]
    assert [r["step"] for r in logs] == [4, 8]
    assert 0 < logs[0]["wall_s"] < logs[1]["wall_s"]
    assert all(math.isfinite(r["grad_norm"]) and r["grad_norm"] > 1e-2 for r in logs)


def test_the_place_shift_is_drawn_from_seed_and_step_within_its_bound(data_dir: Path):
    split = tokenize(load_examples(data_dir / "train.jsonl"), Tokenizer(), 64, target=lambda e: e.target)
    off = Batcher(split, 8, seed=3)
    assert off.place_shift_at(0) is None
    on = Batcher(split, 8, seed=3, digit_place_shift=4)
    draws = np.stack([on.place_shift_at(s) for s in range(50)])
    assert draws.shape == (50, 8) and draws.min() == 0 and draws.max() == 4
    assert np.array_equal(draws[7], Batcher(split, 8, seed=3, digit_place_shift=4).place_shift_at(7))
    assert not np.array_equal(draws, np.stack([Batcher(split, 8, seed=4, digit_place_shift=4).place_shift_at(s) for s in range(50)]))


def test_the_ordinal_shift_is_a_stream_of_its_own_within_its_bound(data_dir: Path):
    """Drawn from (seed, step) like the place shift but apart from it: turning it on leaves the
    place shifts (and so a run without it) as they were."""
    split = tokenize(load_examples(data_dir / "train.jsonl"), Tokenizer(), 64, target=lambda e: e.target)
    assert Batcher(split, 8, seed=3, digit_place_shift=4).ordinal_shift_at(0) is None
    both = Batcher(split, 8, seed=3, digit_place_shift=4, number_ordinal_shift=3)
    places = Batcher(split, 8, seed=3, digit_place_shift=4)
    draws = np.stack([both.ordinal_shift_at(s) for s in range(50)])
    assert draws.shape == (50, 8) and draws.min() == 0 and draws.max() == 3
    assert all(np.array_equal(both.place_shift_at(s), places.place_shift_at(s)) for s in range(50))
    assert not np.array_equal(draws, np.stack([both.place_shift_at(s) for s in range(50)]))
    assert np.array_equal(draws[7], Batcher(split, 8, seed=3, number_ordinal_shift=3).ordinal_shift_at(7))


def test_renaming_zero_without_digit_permutation_is_refused(data_dir: Path, tmp_path: Path):
    cfg = tiny_config(data_dir, tmp_path / "run", digit_permutation_zero=True)
    with pytest.raises(UserError, match=r"\[train\].digit_permutation_zero widens digit_permutation, which is 0"):
        train(cfg, show_progress=False)
    assert not (tmp_path / "run").exists()


def test_an_ordinal_shift_without_number_ordinals_is_refused(data_dir: Path, tmp_path: Path):
    cfg = tiny_config(data_dir, tmp_path / "run", number_ordinal_shift=2)  # the tiny model has no number ordinals
    with pytest.raises(UserError, match=r"\[train\].number_ordinal_shift offsets the number ordinals"):
        train(cfg, show_progress=False)
    assert not (tmp_path / "run").exists()


def test_a_place_shift_without_digit_features_is_refused(data_dir: Path, tmp_path: Path):
    cfg = tiny_config(data_dir, tmp_path / "run", digit_place_shift=2)  # the tiny model has no digit features
    with pytest.raises(UserError, match=r"\[train\].digit_place_shift offsets the digit features"):
        train(cfg, show_progress=False)
    assert not (tmp_path / "run").exists()
