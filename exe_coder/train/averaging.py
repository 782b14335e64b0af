"""An exponential moving average of the weights (Polyak averaging), for SFT's ``[train].weight_ema``.

Why: late in a run at a still-high learning rate the model flips between readings of some rows
from one checkpoint to the next (stage3's eval hook swings 3-8 points between evals), so which
step the hook lands on decides a few points. The average over the last ~1/(1 - decay) steps is
what a run evaluates and saves instead: after every update ``avg <- d*avg + (1 - d)*weights``
with ``d = min(decay, (1 + step)/(10 + step))`` (the ramp of TensorFlow's
ExponentialMovingAverage, so the first steps' random weights fade fast). ``d`` is a function of
the step alone, so a resumed run continues the same average. The raw weights keep training; the
average never feeds back into them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map, tree_unflatten


def decay_at(decay: float, step: int) -> float:
    """The weight of the old average in the update after optimizer step ``step`` (1-based)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        # trainable weights only: a frozen array's average could differ from it by float rounding
        self.params = tree_map(lambda p: p, model.trainable_parameters())  # arrays are immutable: sharing is a copy

    def update(self, model: nn.Module, step: int) -> None:
        d = decay_at(self.decay, step)
        self.params = tree_map(lambda avg, p: d * avg + (1.0 - d) * p, self.params, model.trainable_parameters())

    def arrays(self) -> list[tuple[str, mx.array]]:
        return tree_flatten(self.params)

    def load(self, arrays: list[tuple[str, mx.array]]) -> None:
        self.params = tree_unflatten(arrays)


@contextmanager
def averaged(model: nn.Module, average: WeightAverage | None) -> Iterator[None]:
    """The model holds the averaged weights inside the block and its own ones after it (a no-op
    without an average)."""
    if average is None:
        yield
        return
    own = model.trainable_parameters()
    model.update(average.params)
    try:
        yield
    finally:
        model.update(own)
