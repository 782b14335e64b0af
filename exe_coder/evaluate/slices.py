"""The metrics per slice: prompt template, magnitude pair, sign pattern and numerals.

Magnitude pairs and sign patterns are closed sets, so every one is reported, with ``n = 0``
and undefined metrics where a split has none (stage0 has no held-out magnitudes): a reader
sees that a slice is empty rather than wondering whether it was forgotten. Templates and
numeral pairs ("words/digits": a in words, b in digits) are open sets, the ones that occur,
sorted: a stage uses a few of the 25 numeral pairs, and digit-only stages one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import get_args

from exe_coder.dataset.records import Example
from exe_coder.decode.prediction import Prediction
from exe_coder.evaluate.metrics import Metrics, compute_metrics
from exe_coder.spec.model import MagnitudePair, SignPattern

MAGNITUDE_PAIRS: tuple[str, ...] = get_args(MagnitudePair)
SIGN_PATTERNS: tuple[str, ...] = get_args(SignPattern)

# axis name -> (the example's key on that axis, the values always reported)
SLICE_AXES: dict[str, tuple[Callable[[Example], str], tuple[str, ...]]] = {
    "template": (lambda e: e.template_id, ()),
    "magnitude_pair": (lambda e: e.magnitude_pair, MAGNITUDE_PAIRS),
    "sign_pattern": (lambda e: e.sign_pattern, SIGN_PATTERNS),
    "numerals": (lambda e: e.numerals, ()),
}

Slices = dict[str, dict[str, Metrics]]


def compute_slices(predictions: Sequence[Prediction], *, beta: float = 0.0) -> Slices:
    """``{axis: {slice value: Metrics}}`` for every axis in ``SLICE_AXES``."""
    out: Slices = {}
    for axis, (key, declared) in SLICE_AXES.items():
        groups: dict[str, list[Prediction]] = {v: [] for v in declared}
        for p in predictions:
            groups.setdefault(key(p.example), []).append(p)
        order = list(declared) + sorted(v for v in groups if v not in declared)
        out[axis] = {v: compute_metrics(groups[v], beta=beta) for v in order}
    return out


def collapsed_slices(slices: Slices, *, min_n: int = 20, floor: float = 0.25) -> list[str]:
    """``axis=value`` of every slice with at least ``min_n`` examples and accuracy below ``floor``."""
    return [
        f"{axis}={value}"
        for axis, by_value in slices.items()
        for value, m in by_value.items()
        if m.n >= min_n and m.answer_accuracy is not None and m.answer_accuracy < floor
    ]
