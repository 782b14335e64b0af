"""Prompt -> patch text -> executable -> verdict, for a whole split: what ``exe-coder infer`` runs.

A *predictor* turns a batch of examples into texts of a track's output language. Three exist:

- ``sft_patch_model``: the trained model, decoded under the track's constraint (``generate``);
- ``oracle``: the track's gold target -- a check of everything after the model;
- ``regex_baseline``: the first two integers in the prompt (``regex_baseline.extract_operands``),
  a Track A patch.

``run_inference`` treats them alike: the track realizes each text as an executable (for Track A:
parse the patch, patch the example's program template, finalize), the verifier judges it against
the example's expected stdout, and it becomes one ``Prediction``. Training's periodic evaluation
calls the same path through ``make_eval_hook``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from exe_coder import files
from exe_coder.codegen.emit import write_executable
from exe_coder.dataset.records import Example, load_examples, patch_text
from exe_coder.decode.generate import GREEDY, CausalLM, PromptTooLong, Sampling, fits, generate
from exe_coder.decode.grammar import DecodeGrammar
from exe_coder.decode.prediction import Latency, Prediction
from exe_coder.decode.prompt_check import prompt_warnings
from exe_coder.decode.reconstruct import Reconstruction
from exe_coder.decode.track import TRACKS, PatchTrack, Track, program_of, track_for
from exe_coder.errors import UserError
from exe_coder.model.checkpoint import load_checkpoint
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.runtime.verify import verify

MODES = ("sft_patch_model", "oracle", "regex_baseline")
TOO_LONG = "prompt too long for the model's context (seq_len)"  # the detail of a prompt scored unread
T = TypeVar("T")


class Predictor(Protocol):
    mode: str

    def predict(self, examples: Sequence[Example]) -> list[str]:
        """One decode-language text per example (``""`` when there is nothing to say)."""
        ...

    def fits(self, prompt: str) -> bool:
        """Whether the predictor can read ``prompt`` at all (a model's context is finite)."""
        ...


@dataclass
class OraclePredictor:
    """The track's gold target: scores 1.0 on every metric unless something after the model is broken."""

    track: Track
    mode: str = "oracle"

    def predict(self, examples: Sequence[Example]) -> list[str]:
        return [self.track.target(e) for e in examples]

    def fits(self, prompt: str) -> bool:
        return True


@dataclass
class RegexBaselinePredictor:
    """The first two signed integers written in digits in the prompt."""

    mode: str = "regex_baseline"

    def predict(self, examples: Sequence[Example]) -> list[str]:
        return self.predict_prompts([e.prompt for e in examples])

    def fits(self, prompt: str) -> bool:
        return True

    def predict_prompts(self, prompts: Sequence[str]) -> list[str]:
        from exe_coder.decode.regex_baseline import extract_operands

        texts = []
        for prompt in prompts:
            ops = extract_operands(prompt)
            texts.append("" if ops is None else patch_text(*ops))
        return texts


@dataclass
class ModelPredictor:
    """A causal LM decoded under its track's constraint (token masks)."""

    model: CausalLM
    track: Track
    sampling: Sampling = GREEDY
    mode: str = "sft_patch_model"

    def predict(self, examples: Sequence[Example]) -> list[str]:
        try:
            return self.predict_prompts([e.prompt for e in examples])
        except PromptTooLong as err:
            raise UserError(f"example {examples[err.row].id}: {err}") from None

    def fits(self, prompt: str) -> bool:
        return fits(self.model, prompt, self.track.constraint, self.track.max_tokens)

    def predict_prompts(self, prompts: Sequence[str]) -> list[str]:
        """One text a prompt; ``PromptTooLong`` names the row that does not fit."""
        gen = generate(self.model, list(prompts), self.track.constraint, sampling=self.sampling, max_tokens=self.track.max_tokens)
        return [self.track.decode_tokens(ids) for ids in gen.tokens]  # the track spells its tokens


def operand_warnings(prompt: str, operands: tuple[int, int] | None, track: Track) -> list[str]:
    """``prompt_warnings`` within the track's decode bounds: Track A's grammar holds them; Track B
    writes no operands and has none, so it gets no warning."""
    grammar = track.constraint
    if not isinstance(grammar, DecodeGrammar):
        return []
    return prompt_warnings(prompt, operands, grammar.min_int, grammar.max_int)


def verify_reconstruction(rec: Reconstruction, expect_stdout: str) -> Outcome:
    """The verifier's verdict on a reconstruction; ``parse_error`` when it made no binary."""
    if rec.image is None:
        return Outcome(kind=OutcomeKind.PARSE_ERROR, detail=rec.error)
    return verify(rec.image, expect_stdout=expect_stdout)


def predict_one(
    example: Example, text: str, track: Track, mode: str, generate_ms: float = 0.0, save_dir: Path | None = None
) -> Prediction:
    """Realize ``text`` as the example's program and verify it; the verdict as a ``Prediction``.
    With ``save_dir``, the executable (when one was made) is kept as ``save_dir/<example id>``."""
    t0 = time.perf_counter()
    rec = track.realize(text, example.program)
    t1 = time.perf_counter()
    if save_dir is not None and rec.image is not None:
        save_binary(save_dir, example.id, rec.image)
    outcome = verify_reconstruction(rec, example.expected_stdout)
    sha = None if rec.image is None else hashlib.sha256(rec.image).hexdigest()
    t2 = time.perf_counter()
    a, b = rec.operands if rec.operands is not None else (None, None)
    return Prediction(
        example=example,
        mode=mode,
        text=text,
        parsed=rec.parsed,
        a=a,
        b=b,
        binary_sha256=sha,
        exact_byte_match=sha is not None and sha == example.binary_sha256,
        outcome=outcome,
        track=track.name,
        latency=Latency(generate_ms=generate_ms, reconstruct_ms=(t1 - t0) * 1e3, verify_ms=(t2 - t1) * 1e3),
    )


def run_inference(
    examples: Sequence[Example],
    predictor: Predictor,
    track: Track,
    *,
    batch_size: int = 32,
    progress: bool = False,
    save_dir: Path | None = None,
    too_long_wrong: bool = False,
) -> list[Prediction]:
    """Every example through predict -> realize -> verify, in order.

    A prompt the predictor cannot read (longer than a model's context) stops the run with a
    ``UserError`` naming it; with ``too_long_wrong`` it is scored as no answer instead
    (``too_long_prediction``), as a model that cannot read a prompt gets it wrong.

    ``latency.generate_ms`` is the batch's generation time divided by its rows (the amortised
    cost a prompt pays in a batch of ``batch_size``); use ``batch_size=1`` for single-prompt latency.
    """
    out: list[Prediction] = []
    for batch in in_batches(examples, batch_size, f"infer {predictor.mode}", progress):
        t0 = time.perf_counter()
        texts = predict_readable(predictor.predict, batch, predictor, too_long_wrong)
        per_row_ms = (time.perf_counter() - t0) * 1e3 / max(sum(t is not None for t in texts), 1)
        for example, text in zip(batch, texts, strict=True):
            if text is None:
                out.append(too_long_prediction(example, track, predictor.mode))
            else:
                out.append(predict_one(example, text, track, predictor.mode, per_row_ms, save_dir))
    return out


class _HasPrompt(Protocol):  # an Example or a probe's prompt
    @property
    def prompt(self) -> str: ...


P = TypeVar("P", bound=_HasPrompt)


def predict_readable(
    predict: Callable[[list[P]], list[str]], items: Sequence[P], predictor: Predictor, too_long_wrong: bool
) -> list[str | None]:
    """``predict`` over the items, one text an item; with ``too_long_wrong``, ``None`` in place of
    a prompt the predictor cannot read, and the others decoded as they would be without it."""
    readable = [i for i, item in enumerate(items) if not too_long_wrong or predictor.fits(item.prompt)]
    texts: list[str | None] = [None] * len(items)
    for i, text in zip(readable, predict([items[i] for i in readable]) if readable else [], strict=True):
        texts[i] = text
    return texts


def too_long_prediction(example: Example, track: Track, mode: str) -> Prediction:
    """A prompt longer than the model's context: no text, so no answer (``parse_error``)."""
    outcome = Outcome(kind=OutcomeKind.PARSE_ERROR, detail=TOO_LONG)
    return Prediction(example=example, mode=mode, text="", parsed=False, outcome=outcome, track=track.name)


def in_batches(items: Sequence[T], batch_size: int, description: str, progress: bool) -> Iterator[Sequence[T]]:
    """``items`` in order, ``batch_size`` at a time, under a progress bar that counts them."""
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=len(items))
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            yield batch
            bar.advance(task, len(batch))


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def save_binary(folder: Path, example_id: str, image: bytes) -> Path:
    """One executable a prediction, named by its example id (mode 0755), for other tools to run."""
    if not example_id or "/" in example_id or example_id.startswith("."):
        raise UserError(f"example id {example_id!r} cannot name a file")
    return files.write_bytes(Path(folder) / example_id, image, executable=True)


def write_predictions(predictions: Sequence[Prediction], out: str | Path) -> Path:
    """One JSON line a prediction, whole or not at all (``files.write_text``, mode 0644)."""
    return files.write_text(out, "".join(p.model_dump_json() + "\n" for p in predictions))


def summarize(predictions: Sequence[Prediction]) -> dict[str, float]:
    """The headline rates (the full report is ``exe-coder evaluate``'s job), with the same
    per-prediction definitions (``Prediction.answer_correct``, ``Outcome.exec_ok``)."""
    n = max(len(predictions), 1)
    return {
        "n": float(len(predictions)),
        "answer_accuracy": sum(p.answer_correct for p in predictions) / n,
        "parse_success_rate": sum(p.parsed for p in predictions) / n,
        "exec_success_rate": sum(p.outcome.exec_ok for p in predictions) / n,
        "patch_exact_match_rate": sum(p.patch_exact for p in predictions) / n,
        "exact_byte_match_rate": sum(p.exact_byte_match for p in predictions) / n,
    }


def make_eval_hook(
    examples: Sequence[Example],
    track: Track,
    *,
    limit: int | None = 64,
    batch_size: int = 32,
) -> Callable[[CausalLM, int], dict[str, float]]:
    """``eval_hook(model, step) -> dict`` for the train loop: greedy constrained decoding of the
    first ``limit`` examples, reconstructed and verified; the model is put in eval mode meanwhile."""
    subset = list(examples[:limit] if limit is not None else examples)

    def eval_hook(model: CausalLM, step: int) -> dict[str, float]:
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()
        try:
            preds = run_inference(subset, ModelPredictor(model, track), track, batch_size=batch_size)
        finally:
            if was_training and hasattr(model, "train"):
                model.train()
        summary = summarize(preds)
        summary["eval_examples"] = summary.pop("n")
        return summary

    return eval_hook


def eval_hook_for(config) -> Callable[[CausalLM, int], dict[str, float]]:
    """The hook a training run gets (``exe-coder train`` and ``run-stage`` alike): the first
    ``[train].eval_max_samples`` validation examples, decoded under the run's track and bounds."""
    d = config.data
    examples = load_examples(d.val_jsonl)
    program = program_of(examples, d.val_jsonl)  # Track B sizes its generation by it
    return make_eval_hook(
        examples,
        track_for(d.track, min_int=d.decode_min_int, max_int=d.decode_max_int, program=program),
        limit=config.train.eval_max_samples,
    )


def load_trained(
    weights: str | Path, *, min_int: int | None = None, max_int: int | None = None, track: str | None = None
) -> tuple[CausalLM, Track, str]:
    """A trained model, the track it decodes under and the program template it realizes, all
    read from the weights file (its ``decoding`` record); ``min_int``/``max_int`` override the
    bounds, ``track`` the track (one with the same target language: an ablation's decoding)."""
    ckpt = load_checkpoint(weights)
    d = ckpt.decoding
    if d is None:
        raise UserError("these weights carry no decoding record (track, bounds, program); retrain them", ckpt.path)
    decoder = track_for(
        d["track"] if track is None else track,
        min_int=d["min_int"] if min_int is None else min_int,
        max_int=d["max_int"] if max_int is None else max_int,
        program=d["program"],
    )
    trained = TRACKS[d["track"]].language
    if decoder.language != trained:
        same = [name for name, t in TRACKS.items() if t.language == trained]
        raise UserError(
            f"these weights write {trained} targets ({d['track']}); track {track} decodes "
            f"{decoder.language} targets: choose one of {', '.join(same)}",
            ckpt.path,
        )
    return ckpt.model, decoder, d["program"]


def make_predictor(
    mode: str,
    weights: str | Path | None = None,
    *,
    sampling: Sampling = GREEDY,
    min_int: int | None = None,
    max_int: int | None = None,
    track: str | None = None,
) -> tuple[Predictor, Track]:
    """The predictor for ``mode`` and the track its texts are realized and scored with.

    The model mode takes its track and bounds from the weights; the oracle and the baseline are
    Track A within the template's signed 32-bit operand range. ``min_int``/``max_int`` override
    the bounds of either; ``track`` the model's track (``load_trained``).
    """
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "sft_patch_model":
        if weights is None:
            raise UserError("--mode sft_patch_model needs --weights")
        model, decoder, _ = load_trained(weights, min_int=min_int, max_int=max_int, track=track)
        return ModelPredictor(model, decoder, sampling), decoder
    if track is not None:
        raise UserError(f"--track is for --mode sft_patch_model; {mode} writes Track A patches")
    track = track_for(PatchTrack.name, min_int=min_int, max_int=max_int)
    return (OraclePredictor(track) if mode == "oracle" else RegexBaselinePredictor()), track


@dataclass(frozen=True)
class GeneratedExecutable:
    """What ``exe-coder generate`` made of one prompt."""

    text: str  # the decoded patch, verbatim
    operands: tuple[int, int] | None  # what the model read from the prompt
    path: Path | None  # where the executable was written (None when nothing was)
    sha256: str | None
    outcome: Outcome  # the verifier's verdict, expecting the sum of the *decoded* operands
    generate_ms: float
    warnings: tuple[str, ...] = ()  # reasons to doubt the operands, though the binary is sound


def generate_executable(
    prompt: str,
    weights: str | Path,
    out: str | Path,
    *,
    sampling: Sampling = GREEDY,
) -> GeneratedExecutable:
    """Decode one prompt with a trained model, realize it as the program the model was trained
    for, verify, and write the executable (atomically, mode 0755). Nothing is written when the
    text does not parse.

    The verifier can only check the binary against the operands the model wrote; whether they
    came from the prompt is the user's to judge, so ``warnings`` says when they cannot have."""
    if not prompt.strip():
        raise UserError('the prompt is empty; ask a question such as "What is 17 plus -4?"')
    model, track, program = load_trained(weights)
    t0 = time.perf_counter()
    try:
        ids = generate(model, [prompt], track.constraint, sampling=sampling, max_tokens=track.max_tokens).tokens[0]
    except PromptTooLong as err:
        raise UserError(str(err)) from None
    generate_ms = (time.perf_counter() - t0) * 1e3
    text = track.decode_tokens(ids)
    rec = track.realize(text, program)
    warnings = tuple(operand_warnings(prompt, rec.operands, track))
    if rec.image is None:
        outcome = verify_reconstruction(rec, "")
        return GeneratedExecutable(text, rec.operands, None, None, outcome, generate_ms, warnings)
    # Track B writes no operands: its binary is run and its stdout reported, not checked
    expect = None if rec.operands is None else f"{rec.operands[0] + rec.operands[1]}\n"
    outcome = verify(rec.image, expect_stdout=expect)
    written = write_executable(rec.image, out)
    return GeneratedExecutable(text, rec.operands, written.path, written.sha256, outcome, generate_ms, warnings)
