"""Your own prompts through a trained model: what ``exe-coder probe`` runs.

Someone measuring exe-coder on prompts written apart from its phrasebooks has prompts and their
answers, not dataset records (no operands, no template id, no golden binary). A probe file is
JSONL, one object a line::

    {"prompt": "What is 17 plus -4?", "answer": 13}

``answer`` is optional. Each prompt is decoded as ``exe-coder infer`` decodes it, realized as the
program the model was trained for, and run by the verifier, which compares what the binary prints
with the answer: a right answer is the right number printed, whatever patch wrote it (as
``answer_accuracy`` counts it). Without an answer the binary is checked against the sum of the
operands the model read, and the row says what it printed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from exe_coder import files
from exe_coder.decode.generate import PromptTooLong
from exe_coder.decode.infer import (
    TOO_LONG,
    in_batches,
    operand_warnings,
    predict_readable,
    save_binary,
    verify_reconstruction,
)
from exe_coder.decode.track import Track
from exe_coder.errors import UserError, excerpt
from exe_coder.evaluate.intervals import wilson
from exe_coder.runtime.verify import verify


@dataclass(frozen=True)
class ProbePrompt:
    line: int  # in the probe file, from 1
    prompt: str
    answer: int | None


class ProbeRow(BaseModel):
    """One prompt's result, a line of the probe's output JSONL."""

    model_config = ConfigDict(extra="forbid")

    line: int
    prompt: str
    answer: int | None  # the file's; None where it gave none
    text: str  # what the model (or baseline) wrote, verbatim
    a: int | None = None  # the operands it read, when the text parsed as a patch
    b: int | None = None
    verdict: str  # the verifier's label: ok, wrong_output, parse_error, crash, ...
    printed: str | None = None  # the binary's stdout, when it ran
    correct: bool | None = None  # printed the answer; None without an answer
    binary_sha256: str | None = None
    # reasons to doubt the operands came from the prompt (as `generate` warns): no number in it,
    # a number beyond the model's decode bounds, an operand on a bound
    warnings: list[str] = []


def load_probe(path: str | Path) -> list[ProbePrompt]:
    """The prompts of a probe file; a bad line stops with its file and line named."""
    path = Path(path)
    if not path.is_file():
        raise UserError("no such probe file (JSONL: one {\"prompt\": ..., \"answer\": ...} a line)", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"not UTF-8 text (byte {err.start}): a probe file is JSONL", path) from None
    prompts = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            raise UserError(f"not JSON ({err.msg}): {excerpt(raw)}", path, n) from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise UserError(f'want an object with a non-empty "prompt" string, got {excerpt(raw)}', path, n)
        unknown = sorted(set(row) - {"prompt", "answer"})
        if unknown:
            raise UserError(f"unknown key {unknown[0]!r}; a line holds \"prompt\" and, optionally, \"answer\"", path, n)
        answer = row.get("answer")
        if answer is not None and (isinstance(answer, bool) or not isinstance(answer, int)):
            raise UserError(f'"answer" must be an integer, got {excerpt(json.dumps(answer))}', path, n)
        prompts.append(ProbePrompt(n, row["prompt"], answer))
    if not prompts:
        raise UserError("the probe file holds no prompt", path)
    return prompts


def probe_one(item: ProbePrompt, text: str, track: Track, program: str, save_dir: Path | None = None) -> ProbeRow:
    """Realize ``text`` as ``program``, run it, and judge it against the item's answer."""
    rec = track.realize(text, program)
    a, b = rec.operands if rec.operands is not None else (None, None)
    warnings = operand_warnings(item.prompt, rec.operands, track)
    if rec.image is None:
        return ProbeRow(line=item.line, prompt=item.prompt, answer=item.answer, text=text, a=a, b=b,
                        verdict=verify_reconstruction(rec, "").label, correct=None if item.answer is None else False,
                        warnings=warnings)
    if item.answer is not None:
        expect = f"{item.answer}\n"
    else:  # no answer: the binary is checked against what the model read (Track B: only run)
        expect = None if rec.operands is None else f"{a + b}\n"
    outcome = verify(rec.image, expect_stdout=expect)
    if save_dir is not None:
        save_binary(save_dir, f"line{item.line:05d}", rec.image)
    return ProbeRow(
        line=item.line, prompt=item.prompt, answer=item.answer, text=text, a=a, b=b, verdict=outcome.label,
        printed=outcome.stdout.decode("latin-1") if outcome.exec_ok else None,
        correct=None if item.answer is None else outcome.answers(expect),
        binary_sha256=hashlib.sha256(rec.image).hexdigest(), warnings=warnings,
    )


def run_probe(
    items: Sequence[ProbePrompt],
    predictor,
    track: Track,
    program: str,
    *,
    batch_size: int = 32,
    progress: bool = False,
    save_dir: Path | None = None,
    source: str | Path | None = None,
    too_long_wrong: bool = False,
) -> list[ProbeRow]:
    """Every prompt through the predictor (``infer``'s model or regex baseline), then realize and
    verify, in file order. A prompt longer than the model's context stops the probe, naming
    ``source``, the probe file, and its line; with ``too_long_wrong`` it is a row with no answer."""
    rows: list[ProbeRow] = []
    for batch in in_batches(items, batch_size, f"probe {predictor.mode}", progress):
        try:
            texts = predict_readable(lambda chosen: predictor.predict_prompts([p.prompt for p in chosen]), batch,
                                     predictor, too_long_wrong)
        except PromptTooLong as err:  # only without too_long_wrong, so its row is the batch's
            raise UserError(str(err), source, batch[err.row].line) from None
        rows.extend(too_long_row(item) if text is None else probe_one(item, text, track, program, save_dir)
                    for item, text in zip(batch, texts, strict=True))
    return rows


def too_long_row(item: ProbePrompt) -> ProbeRow:
    """A prompt longer than the model's context: nothing decoded, so no answer."""
    return ProbeRow(line=item.line, prompt=item.prompt, answer=item.answer, text="", verdict="parse_error",
                    correct=None if item.answer is None else False, warnings=[TOO_LONG])


def summary_lines(rows: Sequence[ProbeRow]) -> list[str]:
    """What the probe prints: answer accuracy with its 95% Wilson interval over the prompts that
    give an answer, and how many texts parsed and binaries ran."""
    n = len(rows)
    parsed = sum(r.verdict != "parse_error" for r in rows)
    ran = sum(r.printed is not None for r in rows)
    lines = [f"{n} prompts: {parsed} parsed, {ran} binaries ran"]
    judged = [r for r in rows if r.correct is not None]
    if judged:
        k = sum(bool(r.correct) for r in judged)
        lo, hi = wilson(k, len(judged))
        lines.append(f"answer_accuracy {k / len(judged):.4f} [{lo:.3f}, {hi:.3f}] ({k}/{len(judged)} with an answer)")
    else:
        lines.append("no prompt gives an answer: nothing to score (each row says what its binary printed)")
    warned = [r for r in rows if r.warnings]
    if warned:
        lines.append(f"{len(warned)} with a warning, first line {warned[0].line}: {warned[0].warnings[0]}")
    return lines


def write_rows(rows: Sequence[ProbeRow], out: str | Path) -> Path:
    """One JSON line a prompt, whole or not at all."""
    return files.write_text(out, "".join(r.model_dump_json() + "\n" for r in rows))
