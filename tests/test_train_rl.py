"""RL from the verifier (issue 13): the reward contract, group advantages, the KL term, masked
log-probs, prompt sampling, a tiny run that raises the reward, and resume == uninterrupted."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from _train_fixtures import make_examples, rl_config as _rl_config, rl_toy
from exe_coder.dataset.records import load_examples
from exe_coder.decode.generate import Sampling, generate
from exe_coder.decode.infer import load_trained, predict_one
from exe_coder.decode.track import track_for
from exe_coder.errors import UserError
from exe_coder.evaluate import metrics
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.runtime.reward import reward, reward_parts
from exe_coder.train.config import dump_toml, parse_config
from exe_coder.train.loop import check_supported, train
from exe_coder.train.rl import (
    PromptSampler, _models, completions, group_advantages, kl_k2, kl_k3, token_logprobs, train_rl,
)

QUIET = Console(quiet=True)
TIMING = {"wall_s"}


# --- the reward contract ------------------------------------------------------------------------

# kind -> 1*valid + 1*exec_ok + 2*stdout_correct - 1*timeout_or_crash, with stdout "7\n" expected
CONTRACT = {
    OutcomeKind.OK: 4.0,
    OutcomeKind.WRONG_OUTPUT: 2.0,
    OutcomeKind.NONZERO_EXIT: 1.0,
    OutcomeKind.CRASH: 0.0,
    OutcomeKind.TIMEOUT: 0.0,
    OutcomeKind.BAD_SYSCALL: 0.0,
    OutcomeKind.INVALID_MACHO: 0.0,
    OutcomeKind.BAD_SIGNATURE: 0.0,
    OutcomeKind.PARSE_ERROR: 0.0,
}


@pytest.mark.parametrize("kind", list(OutcomeKind), ids=lambda k: k.value)
def test_reward_of_hand_made_outcomes_equals_the_contract(kind: OutcomeKind):
    stdout = b"7\n" if kind is OutcomeKind.OK else b"8\n"
    assert reward(Outcome(kind=kind, stdout=stdout), "7\n") == CONTRACT[kind]


def test_ok_with_another_answer_than_the_gold_one_is_not_stdout_correct():
    """``ok`` against the operands the model wrote, but not the prompt's answer: 2, not 4."""
    assert reward(Outcome(kind=OutcomeKind.OK, stdout=b"9\n"), "7\n") == 2.0


@settings(max_examples=50, deadline=None)
@given(beta=st.floats(0, 10), kl=st.floats(0, 100), kind=st.sampled_from(list(OutcomeKind)))
def test_the_kl_term_and_evaluation_use_the_one_contract(beta: float, kl: float, kind: OutcomeKind):
    outcome = Outcome(kind=kind, stdout=b"7\n")
    parts = reward_parts(outcome, "7\n", beta, kl)
    assert parts.total == pytest.approx(CONTRACT[kind] - beta * kl)
    assert parts.to_dict()["reward"] == parts.total and parts.verifier == CONTRACT[kind]
    example = make_examples(1, "test", 0)[0].model_copy(update={"expected_stdout": "7\n"})
    from exe_coder.decode.prediction import Prediction

    pred = Prediction(example=example, mode="x", text="", parsed=False, outcome=outcome)
    assert metrics.reward(pred, beta, kl) == parts.total  # evaluate's avg_reward is this function


# --- advantages, KL --------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.lists(st.sampled_from([0.0, 1.0, 2.0, 4.0, -1.0]), min_size=4, max_size=4), min_size=1, max_size=5),
    shift=st.floats(-5, 5),
    kind=st.sampled_from(["dr_grpo", "grpo", "rloo"]),
)
def test_advantages_are_relative_to_the_group(rows, shift, kind):
    r = np.array(rows)
    adv = group_advantages(r, kind)
    np.testing.assert_allclose(adv, group_advantages(r + shift, kind), atol=1e-9)  # only differences count
    np.testing.assert_allclose(adv.sum(axis=1), 0.0, atol=1e-9)
    for row, a in zip(r, adv):
        if np.ptp(row) == 0:
            assert np.all(a == 0.0)  # a group of equal rewards: no signal
        else:
            assert np.all(np.sign(a) == np.sign(row - row.mean()))  # better than the group: pushed up


def test_advantage_variants():
    r = np.array([[4.0, 2.0, 2.0, 0.0]])
    np.testing.assert_allclose(group_advantages(r, "dr_grpo"), [[2.0, 0.0, 0.0, -2.0]])
    np.testing.assert_allclose(group_advantages(r, "rloo"), [[4 - 4 / 3, 2 - 2, 2 - 2, 0 - 8 / 3]])
    np.testing.assert_allclose(group_advantages(r, "grpo"), [[2.0, 0.0, 0.0, -2.0]] / (np.sqrt(2.0) + 1e-4))


def _tiny_model(seed: int = 0):
    from exe_coder.model.transformer import Transformer

    mx.random.seed(seed)
    return Transformer(layers=1, hidden_size=32, heads=2, seq_len=64, digit_positions=True, number_positions=True)


def test_kl_is_zero_against_itself_and_positive_against_another_model():
    track = track_for("template_delta_operand_patch", min_int=-20, max_int=20)
    prompts = ["add 3 and 4", "what is -7 plus 12"] * 3
    model = _tiny_model(0)
    gen = generate(model, prompts, track.constraint, sampling=Sampling(1.0, 0, 5))
    batch = completions(prompts, gen, track.constraint)
    logp, _ = token_logprobs(model, batch, track.constraint)
    assert float((kl_k3(logp, logp) * batch.mask).sum()) == 0.0
    assert float((kl_k2(logp, logp) * batch.mask).sum()) == 0.0
    other, _ = token_logprobs(_tiny_model(1), batch, track.constraint)
    k3 = kl_k3(logp, other) * batch.mask
    assert float(k3.min()) >= 0.0 and float(k3.sum()) > 0.0


def test_teacher_forced_logprobs_are_the_samplers_masked_logprobs():
    """The loss scores a constrained sample under the distribution it was drawn from: the
    grammar-masked softmax, renormalised (generate records it at temperature 1)."""
    track = track_for("template_delta_operand_patch", min_int=-20, max_int=20)
    prompts = ["add 3 and 4", "sum -11 9", "what is 1 plus 2"] * 2
    model = _tiny_model(3)
    gen = generate(model, prompts, track.constraint, sampling=Sampling(1.0, 0, 11))
    batch = completions(prompts, gen, track.constraint)
    logp, entropy = token_logprobs(model, batch, track.constraint)
    for i, lps in enumerate(gen.logprobs):
        np.testing.assert_allclose(np.array(logp[i, : len(lps)]), lps, atol=2e-4)
    unmasked, _ = token_logprobs(model, batch, None)
    assert float(((logp - unmasked) * batch.mask).sum()) > 0.1  # the mask matters: renormalised, not raw
    assert float(entropy.min()) >= 0.0


# --- prompt sampling ---------------------------------------------------------------------------


def test_uncertain_prompts_are_drawn_more_often_and_draws_are_a_function_of_seed_and_step():
    s = PromptSampler(3, uncertainty=True, eps=0.01, ema=1.0, pass_rate=[0.0, 0.5, 1.0])
    counts = np.bincount(np.concatenate([s.draw(7, step, 1) for step in range(300)]), minlength=3)
    assert counts[1] > 0.8 * 300  # always-solved and never-solved prompts carry no signal
    np.testing.assert_array_equal(s.draw(7, 5, 2), s.draw(7, 5, 2))
    s.update(np.array([0, 2]), np.array([0.5, 0.25]))
    assert s.pass_rate.tolist() == [0.5, 0.5, 0.25]
    uniform = PromptSampler(3, uncertainty=False, eps=0.01, ema=1.0, pass_rate=[0.0, 0.5, 1.0])
    assert uniform.weights().tolist() == [1 / 3] * 3


# --- config and refusals ---------------------------------------------------------------------------


def test_rl_config_refusals(tmp_path: Path):
    with pytest.raises(UserError, match="mainline' needs \\[rl\\].init_ckpt"):
        check_supported(_rl_config(tmp_path, tmp_path / "o", None, mode="mainline"))
    with pytest.raises(UserError, match="set beta = 0"):
        _rl_config(tmp_path, tmp_path / "o", None, beta=0.1)
    raw = _rl_config(tmp_path, tmp_path / "o", None).model_dump(mode="json", exclude_none=True)
    raw["train"]["prompt_noise"] = 0.1
    with pytest.raises(UserError, match=r"\[train\].prompt_noise = 0.1 is not read by RL"):
        check_supported(parse_config(dump_toml(raw)))
    with pytest.raises(UserError, match="not an SFT config"):
        train(_rl_config(tmp_path, tmp_path / "o", None), show_progress=False, console=QUIET)
    with pytest.raises(UserError, match=r"the one placeholder it may hold is \{seed\}"):
        _rl_config(tmp_path, tmp_path / "o", tmp_path / "sft_{name}")


# --- tiny runs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    return rl_toy(tmp_path_factory.mktemp("toy"))


def _mean_reward(weights: Path, data: Path) -> float:
    """Mean contract reward over 16 samples of every train prompt at temperature 1, seed fixed."""
    model, track, _ = load_trained(weights)
    examples = load_examples(data / "train.jsonl")
    prompts = [e.prompt for e in examples for _ in range(16)]
    gen = generate(model, prompts, track.constraint, sampling=Sampling(1.0, 0, 1234))
    rewards = [
        reward(predict_one(examples[i // 16], track.decode_tokens(ids), track, "x").outcome, examples[i // 16].expected_stdout)
        for i, ids in enumerate(gen.tokens)
    ]
    return float(np.mean(rewards))


def test_a_tiny_rl_run_raises_the_reward(toy, tmp_path: Path):
    data, sft = toy
    out = tmp_path / "rl"
    config = _rl_config(data, out, sft, beta=0.01)
    raw = config.model_dump(mode="json", exclude_none=True)
    raw["train"].update(max_steps=15, eval_interval=15, save_interval=15)
    result = train_rl(parse_config(dump_toml(raw)), show_progress=False, console=QUIET)
    before = _mean_reward(sft / "latest_weights.safetensors", data)
    after = _mean_reward(out / "latest_weights.safetensors", data)
    assert after > before + 0.05, (before, after)
    assert result.steps == 15 and result.start_val_answer_accuracy is not None

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 0 and "answer_accuracy" in lines[0]  # where RL started
    steps = [r for r in lines if r["step"] > 0]
    assert [r["step"] for r in steps] == list(range(1, 16))
    for key in ("reward", "is_valid_macho", "exec_ok", "stdout_correct", "timeout_or_crash", "pass_rate", "kl", "entropy", "signal_groups"):
        assert all(isinstance(r[key], float) for r in steps), key
    assert steps[0]["kl"] == 0.0  # the first rollouts come from the SFT model itself

    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 15 * 8 * 8
    first = [r for r in rollouts if r["step"] == 1]
    for key in ("prompt", "text", "outcome", "reward", "advantage", "stdout_correct", "kl_to_sft", "example_id"):
        assert key in first[0]
    groups: dict = {}
    for r in first:
        groups.setdefault((r["example_id"], r["prompt"]), []).append(r)
    for rows in groups.values():  # kept and rejected samples of one prompt, advantages relative to them
        assert sum(r["advantage"] for r in rows) == pytest.approx(0.0, abs=1e-9)

    from exe_coder.evaluate.metrics import read_training_log
    from exe_coder.evaluate.plots import training_curves_png

    log = read_training_log(out)
    assert log.series["signal_groups"] and log.series["kl"]
    assert training_curves_png(log).startswith(b"\x89PNG")


def test_seed_placeholder_starts_each_seed_from_its_own_sft_run(toy, tmp_path: Path):
    """rl.init_ckpt = ".../sft_seed{seed}": seed 7 loads sft_seed7 (the toy SFT run), seed 8 would
    load sft_seed8 (absent here, so it says so), and both seeds share one config hash."""
    import shutil

    from exe_coder.model.checkpoint import load_checkpoint
    from exe_coder.train.runcard import config_hashes

    data, sft = toy
    shutil.copytree(sft, tmp_path / "sft_seed7")
    seven = _rl_config(data, tmp_path / "rl", tmp_path / "sft_seed{seed}")
    assert seven.run.seed == 7
    policy, reference = _models(seven)
    want = dict(tree_flatten(load_checkpoint(sft).model.parameters()))
    got = dict(tree_flatten(policy.parameters()))
    assert reference is not None and want.keys() == got.keys()
    assert all(mx.array_equal(want[k], got[k]).item() for k in want)

    raw = seven.model_dump(mode="json", exclude_none=True)
    raw["run"]["seed"] = 8
    eight = parse_config(dump_toml(raw))
    with pytest.raises(UserError, match="sft_seed8"):
        _models(eight)
    assert config_hashes(seven)[1] == config_hashes(eight)[1]


def _curve(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_equals_uninterrupted(toy, tmp_path: Path):
    data, sft = toy
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_rl(_rl_config(data, full, sft), show_progress=False, console=QUIET)
    train_rl(_rl_config(data, cut, sft), show_progress=False, console=QUIET, stop_after=4)  # killed after a save at 3
    train_rl(_rl_config(data, cut, sft), resume=True, show_progress=False, console=QUIET)
    assert _curve(cut) == _curve(full)
    assert (cut / "rollouts.jsonl").read_text() == (full / "rollouts.jsonl").read_text()
    a = mx.load(str(full / "latest_weights.safetensors"))
    b = mx.load(str(cut / "latest_weights.safetensors"))
    assert all(np.array_equal(np.array(a[k]), np.array(b[k])) for k in a)
