"""Prompt -> patch text -> executable -> verdict, for a whole split: what ``exe-coder infer`` runs.

A *predictor* turns a batch of examples into decode-language texts. Three exist:

- ``sft_patch_model``: the trained model, grammar-constrained (``generate``);
- ``oracle``: the gold patch (``example.target``) -- a check of everything after the model;
- ``regex_baseline``: the first two integers in the prompt (``regex_baseline.extract_operands``).

``run_inference`` treats them alike: each text is parsed, reconstructed and verified against the
example's expected stdout, and becomes one ``Prediction``. Training's periodic evaluation calls
the same path through ``make_eval_hook``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from exe_coder import files
from exe_coder.codegen.emit import write_executable
from exe_coder.dataset.records import Example, load_examples, patch_text
from exe_coder.decode.generate import GREEDY, CausalLM, PromptTooLong, Sampling, generate
from exe_coder.decode.grammar import DecodeGrammar, compile_grammar
from exe_coder.decode.prediction import Latency, Prediction
from exe_coder.decode.prompt_check import prompt_warnings
from exe_coder.decode.reconstruct import DEFAULT_PROGRAM, Reconstruction, reconstruct
from exe_coder.errors import UserError
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.runtime.verify import verify

MODES = ("sft_patch_model", "oracle", "regex_baseline")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # what the template's operand encodings can hold


class Predictor(Protocol):
    mode: str

    def predict(self, examples: Sequence[Example]) -> list[str]:
        """One decode-language text per example (``""`` when there is nothing to say)."""
        ...


@dataclass
class OraclePredictor:
    """The gold patch: scores 1.0 on every metric unless something after the model is broken."""

    mode: str = "oracle"

    def predict(self, examples: Sequence[Example]) -> list[str]:
        return [e.target for e in examples]


@dataclass
class RegexBaselinePredictor:
    """The first two signed integers written in digits in the prompt."""

    mode: str = "regex_baseline"

    def predict(self, examples: Sequence[Example]) -> list[str]:
        from exe_coder.decode.regex_baseline import extract_operands

        texts = []
        for e in examples:
            ops = extract_operands(e.prompt)
            texts.append("" if ops is None else patch_text(*ops))
        return texts


@dataclass
class ModelPredictor:
    """A causal LM decoded under the grammar's token masks."""

    model: CausalLM
    grammar: DecodeGrammar | None
    sampling: Sampling = GREEDY
    mode: str = "sft_patch_model"

    def predict(self, examples: Sequence[Example]) -> list[str]:
        try:
            return generate(self.model, [e.prompt for e in examples], self.grammar, sampling=self.sampling).texts
        except PromptTooLong as err:
            raise UserError(f"example {examples[err.row].id}: {err}") from None


def verify_reconstruction(rec: Reconstruction, expect_stdout: str) -> Outcome:
    """The verifier's verdict on a reconstruction; ``parse_error`` when it made no binary."""
    if rec.image is None:
        return Outcome(kind=OutcomeKind.PARSE_ERROR, detail=rec.error)
    return verify(rec.image, expect_stdout=expect_stdout)


def predict_one(example: Example, text: str, grammar: DecodeGrammar, mode: str, generate_ms: float = 0.0, program: str = DEFAULT_PROGRAM) -> Prediction:
    """Reconstruct and verify one text; the verdict as a ``Prediction``."""
    t0 = time.perf_counter()
    rec = reconstruct(text, grammar, program)
    t1 = time.perf_counter()
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
        latency=Latency(generate_ms=generate_ms, reconstruct_ms=(t1 - t0) * 1e3, verify_ms=(t2 - t1) * 1e3),
    )


def run_inference(
    examples: Sequence[Example],
    predictor: Predictor,
    grammar: DecodeGrammar,
    *,
    batch_size: int = 32,
    program: str = DEFAULT_PROGRAM,
    progress: bool = False,
) -> list[Prediction]:
    """Every example through predict -> reconstruct -> verify, in order.

    ``latency.generate_ms`` is the batch's generation time divided by its rows (the amortised
    cost a prompt pays in a batch of ``batch_size``); use ``batch_size=1`` for single-prompt latency.
    """
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    out: list[Prediction] = []
    with _progress(progress) as bar:
        task = bar.add_task(f"infer {predictor.mode}", total=len(examples))
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            t0 = time.perf_counter()
            texts = predictor.predict(batch)
            per_row_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
            for example, text in zip(batch, texts, strict=True):
                out.append(predict_one(example, text, grammar, predictor.mode, per_row_ms, program))
                bar.advance(task)
    return out


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


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
    grammar: DecodeGrammar,
    *,
    limit: int | None = 64,
    batch_size: int = 32,
    program: str = DEFAULT_PROGRAM,
) -> Callable[[CausalLM, int], dict[str, float]]:
    """``eval_hook(model, step) -> dict`` for the train loop: greedy constrained decoding of the
    first ``limit`` examples, reconstructed and verified; the model is put in eval mode meanwhile."""
    subset = list(examples[:limit] if limit is not None else examples)

    def eval_hook(model: CausalLM, step: int) -> dict[str, float]:
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()
        try:
            preds = run_inference(subset, ModelPredictor(model, grammar), grammar, batch_size=batch_size, program=program)
        finally:
            if was_training and hasattr(model, "train"):
                model.train()
        summary = summarize(preds)
        summary["eval_examples"] = summary.pop("n")
        return summary

    return eval_hook


def eval_hook_for(config) -> Callable[[CausalLM, int], dict[str, float]]:
    """The hook a training run gets (``exe-coder train`` and ``run-stage`` alike): the first
    ``[train].eval_max_samples`` validation examples, decoded under the run's operand bounds."""
    return make_eval_hook(
        load_examples(config.data.val_jsonl),
        compile_grammar(config.data.decode_min_int, config.data.decode_max_int),
        limit=config.train.eval_max_samples,
    )


def make_predictor(
    mode: str,
    weights: str | Path | None = None,
    *,
    sampling: Sampling = GREEDY,
    min_int: int | None = None,
    max_int: int | None = None,
) -> tuple[Predictor, DecodeGrammar]:
    """The predictor for ``mode`` and the grammar it is scored with.

    The model mode takes its bounds from the checkpoint's config (``data.decode_min_int/max_int``);
    the oracle and the baseline default to the template's signed 32-bit operand range. Explicit
    ``min_int``/``max_int`` override either.
    """
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "sft_patch_model":
        if weights is None:
            raise UserError("--mode sft_patch_model needs --weights")
        from exe_coder.train.run_dir import load_model

        model, config = load_model(weights)
        model.eval()
        grammar = compile_grammar(
            config.data.decode_min_int if min_int is None else min_int,
            config.data.decode_max_int if max_int is None else max_int,
        )
        return ModelPredictor(model, grammar, sampling), grammar
    grammar = compile_grammar(INT32_MIN if min_int is None else min_int, INT32_MAX if max_int is None else max_int)
    return (OraclePredictor() if mode == "oracle" else RegexBaselinePredictor()), grammar


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
    program: str = DEFAULT_PROGRAM,
) -> GeneratedExecutable:
    """Decode one prompt with a trained model, reconstruct, verify, and write the executable
    (atomically, mode 0755). Nothing is written when the text does not parse.

    The verifier can only check the binary against the operands the model wrote; whether they
    came from the prompt is the user's to judge, so ``warnings`` says when they cannot have."""
    if not prompt.strip():
        raise UserError('the prompt is empty; ask a question such as "What is 17 plus -4?"')
    predictor, grammar = make_predictor("sft_patch_model", weights, sampling=sampling)
    assert isinstance(predictor, ModelPredictor)
    t0 = time.perf_counter()
    try:
        text = generate(predictor.model, [prompt], grammar, sampling=sampling).texts[0]
    except PromptTooLong as err:
        raise UserError(str(err)) from None
    generate_ms = (time.perf_counter() - t0) * 1e3
    rec = reconstruct(text, grammar, program)
    warnings = tuple(prompt_warnings(prompt, rec.operands, grammar.min_int, grammar.max_int))
    if rec.image is None:
        outcome = verify_reconstruction(rec, "")
        return GeneratedExecutable(text, rec.operands, None, None, outcome, generate_ms, warnings)
    a, b = rec.operands  # type: ignore[misc]
    outcome = verify_reconstruction(rec, f"{a + b}\n")
    written = write_executable(rec.image, out)
    return GeneratedExecutable(text, rec.operands, written.path, written.sha256, outcome, generate_ms, warnings)
