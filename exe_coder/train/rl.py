"""RL from the verifier: a group-relative policy gradient (Dr. GRPO by default) in MLX.

A step, for ``[rl].prompts_per_step`` train prompts drawn as below:

1. Rollouts: ``rollout_samples`` samples a prompt, drawn by ``decode.generate`` at
   ``[rl].temperature`` (top-k off) under the track's constraint -- the sampler evaluation uses.
   A step's groups are cut into chunks of whole groups (at most ``GEN_ROWS`` rows, or one group);
   chunk c is one generate call seeded by ``step_seed(seed, step, c + 1)``.
   Each text is realized through the track (``track.realize``: Track A reconstructs, Track B
   finalizes) and judged by the verifier (``decode.infer.predict_one``, evaluation's path).
2. Reward: the contract of ``runtime/reward.py``,
   ``1*is_valid_macho + 1*exec_ok + 2*stdout_correct - 1*timeout_or_crash - beta*kl_to_sft``,
   where ``kl_to_sft`` of a sample is the sum over its tokens of the k3 estimate
   ``exp(q - p) - (q - p) - 1`` (p, q: the token's log-prob under the policy and under the frozen
   SFT model) -- non-negative, unbiased for KL(policy || sft), exactly 0 against itself.
3. Advantages, per group of one prompt's samples, from the verifier's part of the reward:
   ``dr_grpo`` r - mean (Dr. GRPO: no division by the group's std), ``grpo`` (r - mean)/(std + 1e-4),
   ``rloo`` r - mean of the others. A group of equal rewards has advantage 0: no signal.
   The KL part of the reward is optimised through its own loss term (its per-token gradient, as
   GRPO does) rather than through the advantages, so it adds no noise to them.
4. Loss, summed over the sampled tokens (EOS included) and divided by the number of samples
   (a constant, as Dr. GRPO does, so long and short outputs weigh per token alike):
   ``-min(ratio*A, clip(ratio, 1-eps, 1+eps)*A) + beta*kl_tok`` with ``ratio = exp(p - p_rollout)``
   and ``kl_tok`` the ``[rl].kl_estimator`` (k3 above, or k2 = (p - q)^2 / 2). With the default
   one update a rollout the ratio is 1 and this is the plain policy gradient.

Log-probs with gradients come from one teacher-forced forward over ``BOS prompt SEP completion``,
left-padded exactly as generation pads. Constrained samples are scored under the distribution
they were drawn from: the logits masked by the grammar state each token was chosen in
(``Generation.states``) and divided by the temperature, renormalised over the allowed tokens. The
reference (SFT) model is scored the same way. Dropout is off throughout (eval mode), so the
forward that is differentiated is the policy that sampled.

Prompts: a running pass rate p per train prompt (starts at 0.5; after each of its groups
``p <- (1 - pass_rate_ema)*p + pass_rate_ema*group pass rate``). With ``uncertainty_sampling`` a
step draws its prompts without replacement with probability ~ ``p(1-p) + uncertainty_eps``, so
prompts the model always or never solves -- groups without signal -- come up less often.

Determinism: the prompts of step s and the sampling keys are functions of (seed, s) and the pass
rates, which the training state carries; so ``--resume`` continues the uninterrupted run.

Ranks (``train/distributed.py``): every rank draws the same prompts (the sampler's state is the
same everywhere) and rolls out, verifies and scores a run of whole chunks (``rank_groups``), so
a group never spans ranks, its advantages stay local, and the samples do not depend on the
number of ranks. Each rank's loss is its sum divided by the step's global
sample count and the gradients are summed across ranks: the update is the one-rank update up to
float reduction order (the teacher-forced forwards pad per rank, so log-probs, KL and entropy
agree to float rounding). The rows and per-sample figures are gathered to every rank, which
computes the step's summary and the pass-rate update from all of them, in the one-rank order.
Rank 0 alone writes files and progress and runs the eval hook (the others wait for it in the
next step's gather); a resumed state is read by rank 0 and broadcast.

Files, beside ``train/run_dir.py``'s: ``metrics.jsonl`` gets one line a step (reward and its
parts, pass rate, KL, entropy, share of groups with signal, loss, grad norm, lr) and the eval
hook's val figures (greedy, constrained) every ``eval_interval`` steps and at step 0; best
weights are those of the best val answer accuracy. ``rollouts.jsonl`` gets every sample (prompt,
text, outcome label, reward parts, advantage, step): kept and rejected samples of one prompt for
preference pairs later.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from exe_coder.dataset.records import Example, load_examples
from exe_coder.decode.generate import Generation, PromptTooLong, Sampling, generate, left_pad
from exe_coder.decode.grammar import DecodeGrammar
from exe_coder.decode.infer import make_eval_hook, predict_one
from exe_coder.decode.track import program_of, track_for
from exe_coder.errors import UserError
from exe_coder.model.checkpoint import load_checkpoint
from exe_coder.model.tokenizer import EOS
from exe_coder.model.transformer import Transformer, count_parameters
from exe_coder.runtime.reward import reward_parts
from exe_coder.train import run_dir
from exe_coder.train.config import TrainConfig
from exe_coder.train.data import manifest_sha256
from exe_coder.train.distributed import World, device_line, world
from exe_coder.train.loop import (
    _check_weights, _prepare_out_dir, _truncate_metrics, due_at, make_optimizer, metrics_line, share_resumed_state, step_seed,
)
from exe_coder.train.runcard import make_run_card, now_iso, write_run_card

ROLLOUTS = "rollouts.jsonl"
GEN_ROWS = 32  # rows a generate call (a chunk): bounds its KV cache; small enough to share out
_MASKED = -1e30  # a disallowed token's logit: exp() is 0, and its gradient stays finite (not -inf)
PART_KEYS = ("is_valid_macho", "exec_ok", "stdout_correct", "timeout_or_crash")


@dataclass(frozen=True)
class RLResult:
    out_dir: Path
    steps: int
    best_step: int | None
    best_val_answer_accuracy: float | None
    start_val_answer_accuracy: float | None
    reward_start: float | None
    reward_end: float | None
    wall_s: float


def check_rl_supported(config: TrainConfig) -> None:
    """RL settings that validate but that this loop would not read, or cannot start from."""
    if config.rl is not None and config.rl.mode == "mainline" and not config.rl.init_ckpt:
        raise UserError("[rl].mode = 'mainline' needs [rl].init_ckpt: the SFT run dir or weights file RL starts from")
    if config.init.mode != "scratch":
        raise UserError(
            f"[init].mode = {config.init.mode!r} is not read by RL: it starts from [rl].init_ckpt "
            "(mainline) or random weights (scratch_exploratory); set [init].mode = 'scratch'"
        )
    for key in ("label_smoothing", "prompt_noise", "digit_permutation", "digit_place_shift", "weight_ema"):  # SFT's only
        if getattr(config.train, key, 0.0) != 0.0:
            raise UserError(f"[train].{key} = {getattr(config.train, key):g} is not read by RL; set it to 0")


def rollout_chunks(rl) -> tuple[int, int]:
    """(groups a chunk, chunks a step): a chunk is whole groups, at most GEN_ROWS rows or one group."""
    per = max(1, GEN_ROWS // rl.rollout_samples)
    return per, -(-rl.prompts_per_step // per)


def rank_groups(rl, rank: int, size: int) -> range:
    """The groups of a step rank ``rank`` of ``size`` rolls out: a run of whole chunks, in order."""
    per, chunks = rollout_chunks(rl)
    mine = np.array_split(np.arange(chunks), size)[rank]
    if len(mine) == 0:
        return range(0)
    return range(int(mine[0]) * per, min((int(mine[-1]) + 1) * per, rl.prompts_per_step))


# --- the pieces: advantages, KL, masked log-probs --------------------------------------------


def group_advantages(rewards: np.ndarray, kind: str = "dr_grpo") -> np.ndarray:
    """Advantages of ``rewards[groups, samples]``, each relative to its own group (row)."""
    r = np.asarray(rewards, dtype=np.float64)
    mean = r.mean(axis=1, keepdims=True)
    if kind == "dr_grpo":
        adv = r - mean
    elif kind == "grpo":
        adv = (r - mean) / (r.std(axis=1, keepdims=True) + 1e-4)
    elif kind == "rloo":
        g = r.shape[1]
        adv = (r - mean) * g / (g - 1)  # r - mean of the other g-1 samples
    else:
        raise ValueError(f"unknown advantage {kind!r}")
    flat = np.ptp(r, axis=1, keepdims=True) == 0
    return np.where(flat, 0.0, adv)  # exactly zero, not rounding noise, for a group without signal


def kl_k3(logp: mx.array, ref_logp: mx.array) -> mx.array:
    """Per-token k3 estimate of KL(policy || ref) at tokens drawn from the policy."""
    d = ref_logp - logp
    return mx.exp(d) - d - 1.0


def kl_k2(logp: mx.array, ref_logp: mx.array) -> mx.array:
    return 0.5 * (logp - ref_logp) ** 2


@dataclass(frozen=True)
class Completions:
    """Prompt + sampled completion rows, ready for a teacher-forced forward."""

    tokens: mx.array  # [B, W + L]: left-padded ``BOS prompt SEP``, then the completion (EOS-padded)
    pad_left: mx.array  # [B]
    width: int  # W
    completion: mx.array  # [B, L] the sampled ids
    mask: mx.array  # [B, L] float: 1 on sampled tokens up to and including EOS
    states: mx.array  # [B, L] grammar state each token was drawn in


def completions(prompts: list[str], gen: Generation, grammar: DecodeGrammar | None) -> Completions:
    prompt_tokens, pad_left = left_pad(prompts)
    length = max(len(t) for t in gen.tokens)
    done = grammar.done_state if grammar is not None else 0
    comp = np.full((len(prompts), length), EOS, dtype=np.int32)
    states = np.full((len(prompts), length), done, dtype=np.int32)
    mask = np.zeros((len(prompts), length), dtype=np.float32)
    for i, (tok, st) in enumerate(zip(gen.tokens, gen.states)):
        comp[i, : len(tok)] = tok
        states[i, : len(st)] = st
        mask[i, : len(tok)] = 1.0
    completion = mx.array(comp)
    return Completions(
        tokens=mx.concatenate([prompt_tokens, completion], axis=1),
        pad_left=pad_left,
        width=prompt_tokens.shape[1],
        completion=completion,
        mask=mx.array(mask),
        states=mx.array(states),
    )


def token_logprobs(
    model: nn.Module, c: Completions, grammar: DecodeGrammar | None, temperature: float = 1.0
) -> tuple[mx.array, mx.array]:
    """Log-prob [B, L] of each sampled token and the entropy [B, L] of the distribution it was
    drawn from: the logits masked by the grammar state, over the temperature, renormalised."""
    logits = model(c.tokens, pad_left=c.pad_left)[:, c.width - 1 : c.width - 1 + c.completion.shape[1]]
    logits = logits.astype(mx.float32) / temperature
    if grammar is not None:
        logits = mx.where(grammar.allowed_mx[c.states], logits, _MASKED)
    logp_all = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    logp = mx.take_along_axis(logp_all, c.completion[..., None], axis=-1)[..., 0]
    entropy = -(mx.exp(logp_all) * logp_all).sum(axis=-1)
    return logp, entropy


# --- prompt sampling ----------------------------------------------------------------------------


class PromptSampler:
    """A running pass rate a train prompt, and draws weighted by its uncertainty p(1-p)."""

    def __init__(self, n: int, uncertainty: bool, eps: float, ema: float, pass_rate: list[float] | None = None):
        self.pass_rate = np.full(n, 0.5) if pass_rate is None else np.asarray(pass_rate, dtype=np.float64)
        if len(self.pass_rate) != n:
            raise UserError(f"the saved pass rates cover {len(self.pass_rate)} prompts, the train split has {n}")
        self.uncertainty, self.eps, self.ema = uncertainty, eps, ema

    def weights(self) -> np.ndarray:
        if not self.uncertainty:
            return np.full(len(self.pass_rate), 1.0 / len(self.pass_rate))
        w = self.pass_rate * (1.0 - self.pass_rate) + self.eps
        return w / w.sum()

    def draw(self, seed: int, step: int, k: int) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, 1]))
        n = len(self.pass_rate)
        return rng.choice(n, size=k, replace=k > n, p=self.weights())

    def update(self, index: np.ndarray, group_pass: np.ndarray) -> None:
        for i, p in zip(index.tolist(), group_pass.tolist()):  # a prompt drawn twice updates twice
            self.pass_rate[i] = (1.0 - self.ema) * self.pass_rate[i] + self.ema * p


# --- the loop -----------------------------------------------------------------------------------


def _models(config: TrainConfig) -> tuple[Transformer, Transformer | None]:
    """The policy and the frozen SFT reference (None from scratch)."""
    rl = config.rl
    assert rl is not None
    if rl.mode == "scratch_exploratory":
        mx.random.seed(config.run.seed)
        model = Transformer.from_config(config.model)
        mx.eval(model.parameters())
        return model, None
    start = rl.start_checkpoint(config.run.seed)
    source = load_checkpoint(start)
    if source.model_config != config.model:
        raise UserError("[rl].init_ckpt's [model] differs from this config's [model]; copy the SFT run's [model] table", start)
    if source.decoding is not None and source.decoding["track"] != config.data.track:
        raise UserError(f"[rl].init_ckpt was trained for track {source.decoding['track']!r}, this config is {config.data.track!r}", start)
    reference = load_checkpoint(start).model  # a second copy: never updated
    reference.freeze()
    return source.model, reference


def train_rl(
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    out_dir: str | Path | None = None,
    eval_hook: bool = True,
    stop_after: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> RLResult:
    """Run RL as ``config`` says (``[run].phase = 'rl'``) as this process's rank; the folder rules are SFT's."""
    from exe_coder.train.loop import check_supported

    check_supported(config)
    rl = config.rl
    if config.run.phase != "rl" or rl is None:
        raise UserError("not an RL config: [run].phase must be 'rl' with an [rl] table")
    if resume and force:
        raise UserError("--resume continues the earlier run and --force replaces it; give one of them")
    group = world()
    main = group.is_main  # only rank 0 writes files, metrics and progress
    _, chunks = rollout_chunks(rl)
    if group.size > chunks:
        raise UserError(f"{group.size} ranks exceed the {chunks} rollout chunks of an RL step: every rank needs a chunk")
    console = (console or Console(stderr=True)) if main else Console(quiet=True)
    show_progress = show_progress and main
    t_start, started = time.perf_counter(), now_iso()
    out = Path(out_dir or config.run.output_dir)
    earlier = [] if resume or not main else run_dir.files_to_replace(out, force=force)

    model, reference = _models(config)  # a missing SFT start fails before the data is read
    model.eval()  # dropout off: the differentiated forward is the policy that sampled
    d = config.data
    train_examples = load_examples(d.train_jsonl)
    program = program_of(train_examples, d.train_jsonl)
    track = track_for(d.track, min_int=d.decode_min_int, max_int=d.decode_max_int, program=program)
    grammar = track.constraint
    val_examples = load_examples(d.val_jsonl)
    hook = make_eval_hook(val_examples, track, limit=config.train.eval_max_samples) if eval_hook and main else None
    manifest = manifest_sha256(d.train_jsonl)
    tc = config.train
    total_steps = tc.max_steps

    optimizer = make_optimizer(config, model, total_steps)
    state = run_dir.TrainingState(manifest_sha256=manifest, config_sha256=config.sha256())
    if main:
        state = _prepare_out_dir(out, config, model, optimizer, state, resume, earlier, total_steps, console)
        if resume:
            _truncate_metrics(out / ROLLOUTS, state.step)
    if resume:
        share_resumed_state(group, model, optimizer, state)
    sampler = PromptSampler(
        len(train_examples), rl.uncertainty_sampling, rl.uncertainty_eps, rl.pass_rate_ema, state.extra.get("pass_rate")
    )
    mine = rank_groups(rl, group.rank, group.size)
    n_samples = float(rl.prompts_per_step * rl.rollout_samples)  # the step's, not this rank's

    def loss_fn(model, c: Completions, old_logp, ref_logp, adv, n_samples):
        logp, entropy = token_logprobs(model, c, grammar, rl.temperature)
        ratio = mx.exp(logp - old_logp)
        a = adv[:, None]
        pg = -mx.minimum(ratio * a, mx.clip(ratio, 1.0 - rl.clip_eps, 1.0 + rl.clip_eps) * a)
        per_token = pg
        if ref_logp is not None and rl.beta > 0:
            kl_tok = kl_k3(logp, ref_logp) if rl.kl_estimator == "k3" else kl_k2(logp, ref_logp)
            per_token = per_token + rl.beta * kl_tok
        # this rank's sum over the global count: summed over the ranks, the whole step's loss
        return (per_token * c.mask).sum() / n_samples, entropy

    loss_and_grad = nn.value_and_grad(model, loss_fn)

    console.print(
        f"RL {config.run.name} ({rl.mode}, {rl.advantage}): {count_parameters(model):,} parameters, "
        f"{len(train_examples)} train prompts, {rl.prompts_per_step} x {rl.rollout_samples} rollouts a step at "
        f"temperature {rl.temperature:g}, beta {rl.beta:g}, {total_steps} steps, from "
        f"{rl.start_checkpoint(config.run.seed) or 'random weights'} -> {out}"
    )
    console.print(f"device: {device_line(group.size)}")
    best_acc = state.extra.get("best_val_answer_accuracy")
    start_acc = state.extra.get("start_val_answer_accuracy")
    reward_start, reward_end = None, None
    end_step = total_steps if stop_after is None else min(stop_after, total_steps)

    def run_eval(step: int) -> dict:
        nonlocal best_acc
        if hook is None:
            return {}
        record = hook(model, step)
        model.eval()
        acc = record["answer_accuracy"]
        if best_acc is None or acc > best_acc:
            best_acc, state.best_step = acc, step
            state.extra["best_val_answer_accuracy"] = acc
            run_dir.save_weights(out / run_dir.BEST, model, config, step, program)
        return record

    metrics_file = (out / run_dir.METRICS).open("a", encoding="utf-8") if main else None
    rollouts_file = (out / ROLLOUTS).open("a", encoding="utf-8") if main else None
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not show_progress,
    )
    try:
        with progress:
            task = progress.add_task("rl", total=total_steps, completed=state.step, info="")
            if state.step == 0 and hook is not None:  # where RL starts, for the curve
                record = {"step": 0, **run_eval(0)}
                start_acc = state.extra["start_val_answer_accuracy"] = record["answer_accuracy"]
                metrics_file.write(metrics_line(record))
                progress.console.print(_format(record))
            while state.step < end_step:
                step = state.step
                mx.random.seed(step_seed(config.run.seed, step))
                index = sampler.draw(config.run.seed, step, rl.prompts_per_step)  # the same on every rank
                roll = _rollouts(
                    model, reference, [train_examples[i] for i in index[mine.start : mine.stop]], mine.start,
                    rl, track, grammar, config.run.seed, step,
                )
                samples = _gather(group, roll["samples"])  # the whole step's, in the one-rank order
                summary, group_pass = _summary(samples, rl.rollout_samples)
                sampler.update(index, group_pass)
                state.extra["pass_rate"] = sampler.pass_rate.tolist()
                loss = grad_norm = 0.0
                for _ in range(rl.updates_per_rollout):
                    (loss_a, _), grads = loss_and_grad(
                        model, roll["batch"], roll["old_logp"], roll["ref_logp"], roll["adv"], n_samples
                    )
                    grads, norm = optim.clip_grad_norm(group.sum_tree(grads), tc.grad_clip_norm)
                    optimizer.update(model, grads)
                    loss_a = group.all_sum(loss_a)
                    mx.eval(model.parameters(), optimizer.state, loss_a, norm)
                    loss, grad_norm = loss_a.item(), norm.item()
                state.step = step + 1
                if not math.isfinite(loss):
                    raise UserError(f"RL diverged at step {state.step}: the loss is {loss}; lower [optimizer].lr_adamw", out)
                if main:
                    for row in samples["rows"]:
                        rollouts_file.write(json.dumps({"step": state.step, **row}, sort_keys=True) + "\n")
                    rollouts_file.flush()
                record = {
                    "step": state.step, **summary, "pg_loss": loss, "grad_norm": grad_norm,
                    "lr": float(optimizer.learning_rate.item()), "wall_s": round(time.perf_counter() - t_start, 3),
                }
                reward_start = record["reward"] if reward_start is None else reward_start
                reward_end = record["reward"]
                saving, evaluating = due_at(state.step, tc, total_steps)
                if saving or evaluating:
                    _check_weights(model, state.step, config, out)
                if evaluating:
                    record.update(run_eval(state.step))
                if main:
                    metrics_file.write(metrics_line(record))
                    metrics_file.flush()
                progress.update(task, completed=state.step, info=(
                    f"reward {record['reward']:.3f} pass {record['pass_rate']:.2f} kl {record['kl']:.3g} "
                    f"signal {record['signal_groups']:.2f}"
                ))
                if state.step % tc.log_interval == 0 or evaluating:
                    progress.console.print(_format(record))
                if saving and main:
                    run_dir.save_checkpoint(out, model, optimizer, config, state, program)
        group.barrier()  # the others wait for rank 0's last eval and save, then all exit together
    finally:
        for f in (metrics_file, rollouts_file):
            if f is not None:
                f.close()

    wall = time.perf_counter() - t_start
    if main:
        card = make_run_card(config, written_by="train", started=started, phases_s={"train": round(wall, 3)}, manifest_sha256=manifest)
        write_run_card(out, card)
    console.print(f"done at step {state.step}: best val answer accuracy {best_acc} (step {state.best_step}), {wall:.1f} s")
    return RLResult(out, state.step, state.best_step, best_acc, start_acc, reward_start, reward_end, wall)


def _rollouts(model, reference, examples: list[Example], first_group: int, rl, track, grammar, seed: int, step: int) -> dict:
    """Sample, realize, verify and score this rank's groups of a step (``first_group`` on, whole
    chunks); everything its part of the update needs, and its samples for the step's summary."""
    g = rl.rollout_samples
    per, _ = rollout_chunks(rl)
    prompts = [e.prompt for e in examples for _ in range(g)]
    gens: list[Generation] = []
    for start in range(0, len(examples), per):  # group offsets of this rank's chunks
        chunk = (first_group + start) // per  # seeded by its index in the step: any rank draws the same
        sampling = Sampling(temperature=rl.temperature, top_k=0, seed=step_seed(seed, step, chunk + 1))
        try:
            gens.append(generate(model, prompts[start * g : (start + per) * g], grammar, sampling=sampling, max_tokens=track.max_tokens))
        except PromptTooLong as err:
            raise UserError(f"example {examples[start + err.row // g].id}: {err}") from None
    gen = Generation(*(sum((getattr(x, f) for x in gens), []) for f in ("tokens", "texts", "logprobs", "states", "finished")))
    batch = completions(prompts, gen, grammar)
    old_logp, entropy = token_logprobs(model, batch, grammar, rl.temperature)
    ref_logp = token_logprobs(reference, batch, grammar, rl.temperature)[0] if reference is not None else None
    kl_seq = (kl_k3(old_logp, ref_logp) * batch.mask).sum(axis=1) if ref_logp is not None else mx.zeros(len(prompts))
    entropy_seq, tokens = (entropy * batch.mask).sum(axis=1), batch.mask.sum(axis=1)
    mx.eval(old_logp, entropy_seq, tokens, kl_seq, *([ref_logp] if ref_logp is not None else []))
    kls = kl_seq.tolist()

    parts, rows = [], []
    for i, (ids, kl) in enumerate(zip(gen.tokens, kls)):
        example = examples[i // g]
        text = track.decode_tokens(ids)  # the track spells its tokens (Track B: image bytes)
        pred = predict_one(example, text, track, "rl")
        p = reward_parts(pred.outcome, example.expected_stdout, rl.beta, kl)
        parts.append(p)
        rows.append({"example_id": example.id, "prompt": example.prompt, "sample": i % g, "text": text,
                     "finished": gen.finished[i], "outcome": pred.outcome.label, **p.to_dict()})
    verifier = np.array([p.verifier for p in parts]).reshape(len(examples), g)
    adv = group_advantages(verifier, rl.advantage)  # a group is on one rank: its advantages are local
    for row, a in zip(rows, adv.reshape(-1).tolist()):
        row["advantage"] = a
    return {
        "batch": batch, "old_logp": old_logp, "ref_logp": ref_logp, "adv": mx.array(adv.reshape(-1), dtype=mx.float32),
        "samples": {"rows": rows, "entropy": entropy_seq.tolist(), "tokens": tokens.tolist()},
    }


def _gather(group: World, samples: dict) -> dict:
    """Every rank's samples, in rank order -- the step's order, ranks holding runs of chunks in
    turn -- on every rank. JSON keeps floats exact, so rows read as one rank wrote them."""
    if group.size == 1:
        return samples
    parts = [json.loads(b) for b in group.all_gather_bytes(json.dumps(samples).encode())]
    return {key: sum((p[key] for p in parts), []) for key in samples}


def _summary(samples: dict, g: int) -> tuple[dict, np.ndarray]:
    """The step's figures over all its samples, and each group's pass rate (for the sampler)."""
    rows = samples["rows"]
    verifier = np.array([r["verifier"] for r in rows]).reshape(-1, g)
    passed = np.array([r["stdout_correct"] for r in rows], dtype=np.float64).reshape(-1, g)
    tokens = float(np.sum(samples["tokens"]))
    summary = {
        "reward": float(np.mean([r["reward"] for r in rows])),
        "verifier_reward": float(verifier.mean()),
        **{k: float(np.mean([r[k] for r in rows])) for k in PART_KEYS},
        "pass_rate": float(passed.mean()),
        "kl": float(np.mean([r["kl_to_sft"] for r in rows])),
        "entropy": float(np.sum(samples["entropy"]) / tokens),
        "signal_groups": float(np.mean(np.ptp(verifier, axis=1) > 0)),
        "completion_tokens": tokens / len(rows),
    }
    return summary, passed.mean(axis=1)


def _format(record: dict) -> str:
    parts = [f"step {record['step']}"]
    for key, value in record.items():
        if key != "step":
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)
