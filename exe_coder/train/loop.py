"""The SFT loop: config in, checkpoints and ``metrics.jsonl`` out.

Read top to bottom: load data, build the model (scratch or warmstart), build the optimizer and
schedule, optionally restore a run, then step. The step is compiled with ``mx.compile`` over
``[model.state, optimizer.state, mx.random.state]`` as in mlx-lm.

Length of a run: ``total_steps = min(max_steps, epochs * steps_per_epoch)`` -- whichever ends
first. An epoch is ``len(train) // batch_size`` steps (the last partial batch is dropped; the
next epoch reshuffles, so every example is still seen). The schedule decays over total_steps.

Objective: mean cross-entropy over target tokens (``A=..;B=..\\n`` and EOS); prompt tokens never
enter it. With ``[init].mode = "warmstart_textmix"`` the objective adds ``textmix_ratio`` times
the mean next-byte cross-entropy over the prompt's own tokens (prompt bytes and SEP, predicted
from their prefix): a plain language-modelling loss on the prompt text, in the same batch.
``[train].prompt_noise`` replaces that fraction of the prompt's non-digit, non-'-' bytes by random
printable bytes in the model's input (an augmentation against memorising template wording).
``[train].digit_place_shift`` = N counts each training row's digit places and ends from 1 + k,
k uniform in 0..N (``Batcher.place_shift_at``), so numbers longer than any in training meet
trained embeddings; ``[train].number_ordinal_shift`` does the same for number ordinals
(``Batcher.ordinal_shift_at``). Evaluation and decoding count both from 1.
``[train].weight_ema`` evaluates and keeps an exponential moving average of the weights instead
of the weights themselves (``train/averaging.py``).

Determinism: parameters are initialised after ``mx.random.seed(seed)``; the batch at step s is a
function of (seed, s) (``data.Batcher``); before step s the RNG is re-seeded from (seed, s), so
dropout masks are too. Hence ``--resume`` from a checkpoint at step k continues bit for bit the
run that was never interrupted, and the same config gives the same training curve.

Ranks (``train/distributed.py``): with N ranks every rank builds the same global batch and
trains on rows ``rank::N`` of it; each rank's loss is its sum over target tokens divided by the
global batch's target-token count, and the gradients are summed across ranks, so the update is
the single-process update of the whole batch up to float reduction order. Dropout masks are
drawn per rank (rank 0 keeps the 1-rank seed), so only with dropout = 0 are curves for
different rank counts equal (to float rounding); with dropout they are alike in distribution.
Rank 0 alone writes the run folder, metrics and progress; a resumed state is read by rank 0 and
broadcast. The validation loss / exact match is sharded over the ranks; the eval hook (decode +
verify) runs on rank 0 while the others wait in the next step's all-reduce.

Divergence: the loss is read every step, and the run stops with an error naming the step at the
first non-finite one; weights are checked before every save, so a NaN model is never kept as
"best", and ``metrics.jsonl`` is strict JSON (a non-finite value is written as null).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from exe_coder.dataset.records import load_examples
from exe_coder.errors import UserError
from exe_coder.files import write_text
from exe_coder.model.checkpoint import load_checkpoint, non_finite_parameter
from exe_coder.model.tokenizer import Tokenizer
from exe_coder.model.transformer import Transformer, count_parameters
from exe_coder.train import run_dir
from exe_coder.decode.track import PatchTrack, program_of, track_for
from exe_coder.train.averaging import WeightAverage, averaged
from exe_coder.train.config import RESUMABLE_KEYS, TrainConfig, load_config, resumable_differences
from exe_coder.train.runcard import (
    make_run_card, model_card_markdown, now_iso, read_run_card, write_model_card, write_run_card,
)
from exe_coder.train.data import (
    Batch, Batcher, TokenizedSplit, lm_mask_causal_for_digit_ends, lm_mask_causal_for_signs, make_batch, manifest_sha256,
    shard, tokenize,
)
from exe_coder.train.distributed import World, device_line, world
from exe_coder.train.schedule import warmup_cosine

EvalHook = Callable[[nn.Module, int], dict]
METRICS = run_dir.METRICS


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    steps: int
    best_step: int | None
    best_val_exact_match: float
    best_val_loss: float
    train_loss_start: float | None
    train_loss_end: float | None
    wall_s: float


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The RNG seed before step ``step`` (dropout): a pure function, so resume restores it."""
    entropy = [seed, step] if rank == 0 else [seed, step, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def sequence_losses(
    model: nn.Module, batch_inputs: mx.array, targets: mx.array, label_smoothing: float = 0.0, place_shift=None,
    ordinal_shift=None,
):
    """Per-token cross-entropy [B, T] and the logits it came from."""
    logits = model(batch_inputs, place_shift=place_shift, ordinal_shift=ordinal_shift)
    return nn.losses.cross_entropy(logits, targets, label_smoothing=label_smoothing), logits


def evaluate(
    model: nn.Module, split: TokenizedSplit, batch_size: int, limit: int | None = None, group: World | None = None
) -> dict:
    """Validation loss (target tokens) and greedy exact match on the first ``limit`` rows.

    Exact match is read off one teacher-forced forward pass: greedy decoding reproduces the gold
    target (with EOS) if and only if the argmax at every target position equals the gold token --
    by induction, each greedy step then sees exactly the teacher-forced prefix. So this equals
    unconstrained greedy decoding exactly, at the cost of one forward pass. (Grammar-constrained
    greedy can only agree with it or do better; the decode helper's eval hook measures that.)

    With a ``group`` of N ranks each rank scores rows ``rank::N`` and the sums are all-reduced
    (every rank of the group must call this at the same point).
    """
    group = group or World(None)
    was_training = model.training
    model.eval()
    n = len(split) if limit is None else min(limit, len(split))
    mine = np.arange(n)[group.rank :: group.size]
    totals = mx.zeros(4)  # loss sum, target tokens, rows right, rows
    for start in range(0, len(mine), batch_size):
        batch = make_batch(split, mine[start : start + batch_size])
        ce, logits = sequence_losses(model, mx.array(batch.inputs), mx.array(batch.targets))
        mask = mx.array(batch.target_mask)
        hit = (mx.argmax(logits, axis=-1) == mx.array(batch.targets)) | (mask == 0)
        row_ok = mx.all(hit, axis=1)
        totals = totals + mx.stack([(ce * mask).sum(), mask.sum(), row_ok.sum(), mx.array(float(len(hit)))])
        mx.eval(totals)
    loss_sum, tok_sum, correct, rows = group.all_sum(totals).tolist()
    model.train(was_training)
    return {"val_loss": loss_sum / max(tok_sum, 1.0), "val_exact_match": correct / max(rows, 1.0)}


def _init_model(config: TrainConfig) -> Transformer:
    mx.random.seed(config.run.seed)
    model = Transformer.from_config(config.model)
    if config.init.mode != "scratch":
        try:
            source = load_checkpoint(config.init.start_checkpoint(config.run.seed))
        except UserError as err:  # most often: the run it starts from was not trained yet
            raise UserError(f"[init].warmstart_ckpt: {err} (train the run it names first)") from None
        # dropout is how a run trains, not what the weights are; seq_len is no weight either unless
        # positions are a learned table (RoPE and NoPE have none): a Track B run (896 tokens) may
        # start from a Track A model trained at 256. A larger number-ordinal table keeps the
        # source's rows (its extra rows start fresh); how ordinals are counted (output_ordinals,
        # signed_numbers) is no weight.
        free = {
            "dropout": config.model.dropout,
            "output_ordinals": config.model.output_ordinals,
            "signed_numbers": config.model.signed_numbers,
        }
        if "learned" not in (source.model_config.position, config.model.position):
            free["seq_len"] = config.model.seq_len
        if source.model_config.max_number_ordinal <= config.model.max_number_ordinal:
            free["max_number_ordinal"] = config.model.max_number_ordinal
        if source.model_config.model_copy(update=free) != config.model:
            names = ["a larger " + k if k == "max_number_ordinal" else k for k in free]
            raise UserError(
                f"warmstart checkpoint's [model] differs from this config's [model] beyond {', '.join(names)}",
                config.init.start_checkpoint(config.run.seed),
            )
        weights = dict(tree_flatten(source.model.parameters()))
        if "number_embed.weight" in weights:  # grow the table: the source's rows first
            grown = model.number_embed.weight
            rows = weights["number_embed.weight"]
            weights["number_embed.weight"] = mx.concatenate([rows, grown[rows.shape[0] :]], axis=0)
        model.update(tree_unflatten(list(weights.items())))
    mx.eval(model.parameters())
    model.train()
    return model


def check_supported(config: TrainConfig) -> None:
    """Refuse a config that validates but holds settings this trainer would not read."""
    rl_keys = ", ".join(sorted(config.rl.model_fields_set)) if config.rl is not None else ""
    if config.run.phase == "rl":
        from exe_coder.train.rl import check_rl_supported  # RL's own unread settings

        check_rl_supported(config)
    elif config.rl is not None:
        raise UserError(
            f"[rl] {rl_keys or '(empty)'} would be ignored: only RL training ([run].phase = 'rl') reads "
            "the [rl] table; remove the table from this SFT config"
        )
    if config.train.max_gen_tokens is not None:
        raise UserError(
            f"[train].max_gen_tokens = {config.train.max_gen_tokens} would be ignored: decoding stops at "
            "the longest patch the decode grammar allows ([data].decode_min_int/decode_max_int); remove the key"
        )
    pairs = {"template_delta_operand_patch": "patch_text", "strict_one_shot": "full_hex"}  # track -> its target
    if pairs.get(config.data.track) != config.data.target_mode:
        raise UserError(
            f"[data].track = {config.data.track!r} writes target_mode = {pairs.get(config.data.track)!r}, "
            f"not {config.data.target_mode!r}"
        )
    if config.train.digit_place_shift and not (config.model.digit_positions or config.model.digit_ends):
        raise UserError(
            "[train].digit_place_shift offsets the digit features; set [model].digit_positions or "
            "digit_ends, or set it to 0"
        )
    if config.train.number_ordinal_shift and not config.model.number_positions:
        raise UserError(
            "[train].number_ordinal_shift offsets the number ordinals; set [model].number_positions, or set it to 0"
        )
    if config.train.digit_permutation_zero and config.train.digit_permutation == 0:
        raise UserError("[train].digit_permutation_zero widens digit_permutation, which is 0: set both, or neither")
    if config.train.digit_permutation > 0 and config.data.track != PatchTrack.name:
        raise UserError(
            f"[train].digit_permutation renames digits in a patch's operands; track {config.data.track!r} "
            "writes no patch: set it to 0"
        )


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    out_dir: str | Path | None = None,
    eval_hook: EvalHook | None = None,
    stop_after: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Run SFT as the config says. An output folder holding an earlier run is continued with
    ``resume`` or replaced with ``force`` (its run files are deleted first), else refused.
    ``stop_after`` ends the run after that step without a final save, as a kill would (the
    schedule still spans the full run) -- what a resume test needs."""
    check_supported(config)
    if config.run.phase != "sft":  # RL has its own loop (train/rl.py); `exe-coder train` dispatches to it
        raise UserError(f"[run].phase = {config.run.phase!r}: this is not an SFT config; train it with exe-coder train")
    if resume and force:
        raise UserError("--resume continues the earlier run and --force replaces it; give one of them")
    group = world()
    main = group.is_main  # only rank 0 writes files, metrics and progress
    if group.size > config.train.batch_size:
        raise UserError(f"{group.size} ranks exceed [train].batch_size = {config.train.batch_size}: every rank needs a row of each batch")
    console = (console or Console(stderr=True)) if main else Console(quiet=True)
    show_progress = show_progress and main
    t_start, started = time.perf_counter(), now_iso()
    out = Path(out_dir or config.run.output_dir)
    earlier = [] if resume or not main else run_dir.files_to_replace(out, force=force)  # fail before the slow part
    tokenizer = Tokenizer()

    d = config.data
    track = track_for(d.track, min_int=d.decode_min_int, max_int=d.decode_max_int, target_order=d.target_order)
    train_examples = load_examples(d.train_jsonl)
    program = program_of(train_examples, d.train_jsonl)  # saved with the weights: decode rebuilds this shape
    train_split = tokenize(train_examples, tokenizer, config.model.seq_len, d.train_jsonl, target=track.target_tokens)
    val_split = tokenize(load_examples(d.val_jsonl), tokenizer, config.model.seq_len, d.val_jsonl, target=track.target_tokens)
    manifest = manifest_sha256(d.train_jsonl)

    tc = config.train
    batcher = Batcher(
        train_split, tc.batch_size, config.run.seed, tc.prompt_noise,
        digit_permutation=tc.digit_permutation, digit_place_shift=tc.digit_place_shift,
        number_ordinal_shift=tc.number_ordinal_shift, digit_permutation_zero=tc.digit_permutation_zero,
    )
    total_steps = min(tc.max_steps, tc.epochs * batcher.steps_per_epoch)

    model = _init_model(config)
    optimizer = make_optimizer(config, model, total_steps)
    average = WeightAverage(model, tc.weight_ema) if tc.weight_ema else None

    state = run_dir.TrainingState(manifest_sha256=manifest, config_sha256=config.sha256())
    if main:
        state = _prepare_out_dir(out, config, model, optimizer, state, resume, earlier, total_steps, console, average)
    if resume:
        share_resumed_state(group, model, optimizer, state, average)

    textmix = config.init.textmix_ratio if config.init.mode == "warmstart_textmix" else 0.0
    smoothing = tc.label_smoothing

    def loss_fn(model, inputs, targets, target_mask, prompt_mask, n_target, n_prompt, place_shift, ordinal_shift):
        # sums over this rank's rows, divided by the global batch's counts: summed over the
        # ranks, these are exactly the whole batch's means (and so are their gradients)
        ce, _ = sequence_losses(
            model, inputs, targets, smoothing,
            place_shift if tc.digit_place_shift else None, ordinal_shift if tc.number_ordinal_shift else None,
        )
        target_loss = (ce * target_mask).sum() / n_target
        objective = target_loss
        if textmix > 0.0:
            objective = objective + textmix * (ce * prompt_mask).sum() / mx.maximum(n_prompt, 1.0)
        return objective, target_loss

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    compiled_state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=compiled_state, outputs=compiled_state)
    def train_step(inputs, targets, target_mask, prompt_mask, n_target, n_prompt, place_shift, ordinal_shift):
        (_, target_loss), grads = loss_and_grad(
            model, inputs, targets, target_mask, prompt_mask, n_target, n_prompt, place_shift, ordinal_shift
        )
        grads = group.sum_tree(grads)
        grads, grad_norm = optim.clip_grad_norm(grads, tc.grad_clip_norm)
        optimizer.update(model, grads)
        return group.all_sum(target_loss), grad_norm

    def run_eval(step: int) -> dict:
        record = evaluate(model, val_split, max(tc.batch_size, 32), tc.eval_max_samples, group)
        n_eval = step // tc.eval_interval
        if main and eval_hook is not None and (n_eval % tc.full_eval_every == 0 or step == total_steps):
            model.eval()
            record.update(eval_hook(model, step))
            model.train()
        return record

    console.print(
        f"training {config.run.name}: {count_parameters(model):,} parameters, {len(train_split)} train / "
        f"{len(val_split)} val examples, batch {batcher.batch_size}, {total_steps} steps "
        f"({batcher.steps_per_epoch} a epoch) -> {out}"
    )
    console.print(f"device: {device_line(group.size)}")
    metrics_file = (out / METRICS).open("a", encoding="utf-8") if main else None
    loss_start: float | None = None
    loss_end: float | None = None
    window_losses: list[float] = []
    window_norms: list[mx.array] = []
    window_tokens = 0
    window_t0 = time.perf_counter()
    end_step = total_steps if stop_after is None else min(stop_after, total_steps)
    first_step = state.step

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
    )
    try:
        with progress:
            task = progress.add_task("train", total=total_steps, completed=state.step, info="")
            while state.step < end_step:
                step = state.step
                batch: Batch = batcher.batch_at(step)  # the global batch, the same on every rank
                if textmix > 0.0 and config.model.digit_ends:
                    batch = lm_mask_causal_for_digit_ends(batch)
                if textmix > 0.0 and config.model.signed_numbers:
                    batch = lm_mask_causal_for_signs(batch)
                mine = shard(batch, group.rank, group.size)
                # each row's offsets, drawn for the global batch like the batch itself
                shifts = [batcher.place_shift_at(step), batcher.ordinal_shift_at(step)]
                shifts = [np.zeros(len(batch.inputs), np.int32) if s is None else s for s in shifts]
                mx.random.seed(step_seed(config.run.seed, step, group.rank))
                target_loss, grad_norm = train_step(
                    mx.array(mine.inputs),
                    mx.array(mine.targets),
                    mx.array(mine.target_mask),
                    mx.array(mine.prompt_mask),
                    mx.array(batch.target_mask.sum(), dtype=mx.float32),
                    mx.array(batch.prompt_mask.sum(), dtype=mx.float32),
                    *(mx.array(s[group.rank :: group.size]) for s in shifts),
                )
                mx.eval(compiled_state, target_loss, grad_norm)
                state.step = step + 1
                if average is not None:
                    average.update(model, state.step)
                    mx.eval(average.params)
                loss = target_loss.item()
                if not math.isfinite(loss):
                    raise UserError(
                        f"training diverged at step {state.step}: the loss is {loss}; stopped without saving "
                        f"that step -- lower [optimizer].lr_adamw (now {config.optimizer.lr_adamw:g}) or add warmup_steps",
                        out,
                    )
                loss_start = loss if loss_start is None else loss_start
                loss_end = loss
                window_losses.append(loss)
                window_norms.append(grad_norm)
                window_tokens += int((batch.inputs != tokenizer.pad_id).sum())
                progress.update(task, completed=state.step, info=f"loss {loss:.4f}")

                record: dict = {}
                if state.step % tc.log_interval == 0 or state.step == total_steps:
                    elapsed = time.perf_counter() - window_t0
                    record.update(
                        loss=float(np.mean(window_losses)),
                        grad_norm=float(np.mean([g.item() for g in window_norms])),  # before clipping
                        wall_s=round(time.perf_counter() - t_start, 3),
                        lr=float(optimizer.learning_rate.item()),
                        tokens_per_sec=window_tokens / max(elapsed, 1e-9),
                        peak_memory_gb=mx.get_peak_memory() / 1e9,
                    )
                    window_losses, window_norms, window_tokens = [], [], 0
                saving, evaluating = due_at(state.step, tc, total_steps)
                if saving or evaluating:  # the only steps that read the weights: swap the average in for them
                    with averaged(model, average):  # a run evaluates and keeps its weight average, if any
                        _check_weights(model, state.step, config, out)
                        if evaluating:
                            record.update(run_eval(state.step))
                            if main and (record["val_exact_match"], -record["val_loss"]) > (state.best_exact_match, -state.best_val_loss):
                                state.best_step = state.step
                                state.best_exact_match = record["val_exact_match"]
                                state.best_val_loss = record["val_loss"]
                                run_dir.save_weights(out / run_dir.BEST, model, config, state.step, program)
                if record and main:
                    record = {"step": state.step, "epoch": step // batcher.steps_per_epoch, **record}
                    metrics_file.write(metrics_line(record))
                    metrics_file.flush()
                    progress.console.print(_format_record(record))
                    window_t0 = time.perf_counter() if "loss" in record else window_t0
                if saving and main:
                    run_dir.save_checkpoint(out, model, optimizer, config, state, program, average)
        group.barrier()  # the others wait for rank 0's last eval and save, then all exit together
    finally:
        if metrics_file is not None:
            metrics_file.close()

    wall = time.perf_counter() - t_start
    if main:
        # a resumed run's training time counts the segments before it that finished with a card;
        # a finished run resumed (no step left) keeps its own
        earlier_card = read_run_card(out) if resume else None
        train_s = (wall if state.step > first_step else 0.0) + (earlier_card.phases_s.get("train", 0.0) if earlier_card else 0.0)
        card = make_run_card(config, written_by="train", started=started, phases_s={"train": round(train_s, 3)}, manifest_sha256=manifest)
        write_run_card(out, card)
        write_model_card(out, model_card_markdown(
            config, card, steps=state.step, best_step=state.best_step,
            best_val_exact_match=state.best_exact_match, best_val_loss=state.best_val_loss,
        ))
    console.print(
        f"done at step {state.step}: best val exact match {max(state.best_exact_match, 0.0):.4f} "
        f"(step {state.best_step}), {wall:.1f} s"
    )
    return TrainResult(
        out_dir=out,
        steps=state.step,
        best_step=state.best_step,
        best_val_exact_match=state.best_exact_match,
        best_val_loss=state.best_val_loss,
        train_loss_start=loss_start,
        train_loss_end=loss_end,
        wall_s=wall,
    )


def share_resumed_state(
    group, model: nn.Module, optimizer: optim.Optimizer, state: run_dir.TrainingState, average: WeightAverage | None = None,
) -> None:
    """Rank 0 read the resumed run; every other rank takes its weights, optimizer state, weight
    average, step and ``extra`` (e.g. RL's pass rates, exactly: JSON keeps float64) from there
    (SFT and RL)."""
    if group.size == 1:
        return
    model.update(group.broadcast_tree(model.parameters()))
    optimizer.state = group.broadcast_tree(optimizer.state)
    if average is not None:
        average.params = group.broadcast_tree(average.params)
        mx.eval(average.params)
    saved = group.broadcast_json({"step": state.step, "extra": state.extra})
    state.step, state.extra = saved["step"], saved["extra"]
    mx.eval(model.parameters(), optimizer.state)


def due_at(step: int, tc, total_steps: int) -> tuple[bool, bool]:
    """(save, evaluate) after ``step``: every ``save_interval`` / ``eval_interval`` steps, and at the end."""
    last = step == total_steps
    return step % tc.save_interval == 0 or last, step % tc.eval_interval == 0 or last


def make_optimizer(config: TrainConfig, model: nn.Module, total_steps: int) -> optim.AdamW:
    """AdamW as ``[optimizer]`` says, on warmup + cosine decay over ``total_steps`` (SFT and RL)."""
    o, tc = config.optimizer, config.train
    optimizer = optim.AdamW(
        learning_rate=warmup_cosine(o.lr_adamw, tc.warmup_steps, total_steps, tc.min_lr_ratio),
        betas=list(o.betas),
        eps=o.eps,
        weight_decay=o.weight_decay,
    )
    optimizer.init(model.trainable_parameters())
    return optimizer


def _prepare_out_dir(out, config, model, optimizer, state, resume, earlier, total_steps, console, average=None):
    """Rank 0: make the run folder, and restore (resume) or clear (force) the earlier run."""
    if resume and out.exists() and not out.is_dir():
        raise UserError("the output folder is a file; give a folder for the run", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a parent is a file, no permission
        raise UserError(f"cannot make the output folder: {err.strerror or err}", out) from None
    if resume:
        manifest = state.manifest_sha256
        state = run_dir.load_training_state(out, model, optimizer, average)
        differ = resumable_differences(load_config(out / run_dir.CONFIG_FILE), config)
        if differ:
            raise UserError(
                f"--resume cannot change {', '.join(differ)} (only {', '.join(RESUMABLE_KEYS)} may change)",
                out / run_dir.CONFIG_FILE,
            )
        if state.step > total_steps:
            raise UserError(f"the run is at step {state.step}, past the new length {total_steps}", out / run_dir.CONFIG_FILE)
        state.config_sha256 = config.sha256()
        if state.manifest_sha256 != manifest:
            raise UserError("dataset manifest changed since the run started; rebuild the same data or start fresh", config.data.train_jsonl)
        _truncate_metrics(out / METRICS, state.step)
        console.print(f"resuming {out} at step {state.step}/{total_steps}")
    elif earlier:
        console.print(f"replacing the earlier run in {out} (--force)")
        run_dir.remove_files(earlier)
    run_dir.write_config(out, config)
    return state


def _check_weights(model: nn.Module, step: int, config: TrainConfig, out: Path) -> None:
    """The loss of step s is read before its update, so the update itself may be what diverged."""
    bad = non_finite_parameter(dict(tree_flatten(model.parameters())))
    if bad is not None:
        raise UserError(
            f"training diverged at step {step}: weight {bad} is not finite; stopped without saving "
            f"that step -- lower [optimizer].lr_adamw (now {config.optimizer.lr_adamw:g}) or add warmup_steps",
            out,
        )


def metrics_line(record: dict) -> str:
    """One strict-JSON line: a NaN or infinity would make the file unreadable to JSON tools."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean, sort_keys=True, allow_nan=False) + "\n"


def _format_record(record: dict) -> str:
    parts = [f"step {record['step']}"]
    for key, value in record.items():
        if key in ("step", "epoch"):
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}" if key != "tokens_per_sec" else f"{key} {value:,.0f}")
        else:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past the resumed step, so the file reads as one uninterrupted run."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_text(path, "".join(line + "\n" for line in kept))
