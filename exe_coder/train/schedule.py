"""The learning-rate schedule: linear warmup, then cosine decay to ``min_lr_ratio * lr``.

Step ``s`` counts optimizer updates from 0. Warmup reaches the peak at the last warmup step
(``lr * (s + 1) / warmup_steps``, so the first update is never wasted on a zero rate); the
cosine then runs from the peak at ``s = warmup_steps`` to exactly ``min_lr_ratio * lr`` at the
last step ``s = total_steps - 1``. Written with mx ops so it runs inside the compiled step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx


def warmup_cosine(lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> Callable:
    floor = lr * min_lr_ratio
    decay_steps = max(total_steps - 1 - warmup_steps, 1)

    def schedule(step):
        s = mx.array(step, dtype=mx.float32)
        warm = lr * (s + 1) / max(warmup_steps, 1)
        t = mx.clip((s - warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = floor + 0.5 * (lr - floor) * (1.0 + mx.cos(math.pi * t))
        return mx.where(s < warmup_steps, warm, cosine)

    return schedule
