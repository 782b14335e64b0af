"""Hand-made Example and Prediction records for the evaluation tests."""

from __future__ import annotations

import hashlib

from exe_coder.dataset.records import Example, patch_text
from exe_coder.decode.prediction import Latency, Prediction
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.spec.model import sign_pattern


def example(
    a: int = 17,
    b: int = -4,
    *,
    i: int = 0,
    split: str = "val",
    template_id: str = "t_what_is",
    magnitude_pair: str = "core/core",
    numerals: str = "digits/digits",
    prompt: str | None = None,
) -> Example:
    return Example(
        id=f"{split}-{i:05d}",
        split=split,
        prompt=prompt if prompt is not None else f"What is {a} plus {b}?",
        template_id=template_id,
        program="add",
        a=a,
        b=b,
        expected_stdout=f"{a + b}\n",
        target=patch_text(a, b),
        sign_pattern=sign_pattern(a, b),
        magnitude_pair=magnitude_pair,
        numerals=numerals,
        binary_path="",
        binary_sha256=hashlib.sha256(f"{a},{b}".encode()).hexdigest(),
    )


def oracle(ex: Example, *, mode: str = "oracle", ms: float = 1.0) -> Prediction:
    """What a perfect model produces: the gold patch, the golden bytes, the right stdout."""
    return Prediction(
        example=ex, mode=mode, text=ex.target, parsed=True, a=ex.a, b=ex.b,
        binary_sha256=ex.binary_sha256, exact_byte_match=True,
        outcome=Outcome(kind=OutcomeKind.OK, stdout=ex.expected_stdout.encode(), exit_code=0),
        latency=Latency(generate_ms=ms, reconstruct_ms=ms / 10, verify_ms=ms / 2),
    )


def wrong_patch(ex: Example, a: int, b: int, *, mode: str = "oracle") -> Prediction:
    """A parsed patch with other operands: a valid binary that prints the wrong sum (or,
    when a+b happens to equal the gold sum, the right one: 'ok' as the verifier would say)."""
    right = a + b == ex.a + ex.b
    return Prediction(
        example=ex, mode=mode, text=patch_text(a, b), parsed=True, a=a, b=b,
        binary_sha256="0" * 64, exact_byte_match=(a, b) == (ex.a, ex.b),
        outcome=Outcome(kind=OutcomeKind.OK if right else OutcomeKind.WRONG_OUTPUT, stdout=f"{a + b}\n".encode(), exit_code=0),
    )


def unparsed(ex: Example, *, mode: str = "oracle", text: str = "A=1;B") -> Prediction:
    return Prediction(example=ex, mode=mode, text=text, parsed=False, outcome=Outcome(kind=OutcomeKind.PARSE_ERROR))


def failed(ex: Example, kind: OutcomeKind, *, rule: str | None = None, mode: str = "oracle") -> Prediction:
    """A parsed, correct patch whose binary the verifier rejected as ``kind`` (``rule``)."""
    return Prediction(
        example=ex, mode=mode, text=ex.target, parsed=True, a=ex.a, b=ex.b, outcome=Outcome(kind=kind, rule=rule),
    )
