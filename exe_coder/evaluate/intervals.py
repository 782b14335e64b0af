"""95% intervals for the report's numbers, so a reader can tell a difference from noise.

Rates (k of n) get the Wilson score interval: unlike the normal approximation it stays inside
[0, 1] and is not zero-width at 0/n or n/n, which is where a small slice lands. Means and
quantiles of per-example values (operand_mae, avg_reward, latencies) get a percentile bootstrap
with a fixed seed, so the same predictions always give the same report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Z95 = 1.959963984540054  # the two-sided 95% point of the standard normal
MIN_JUDGE_N = 20  # fewer examples than this: the interval is too wide to judge a slice by
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
_CHUNK = 250  # resamples drawn at once: bounded memory on a large split


class Interval(BaseModel):
    """A 95% interval around a number measured on ``n`` examples (``k`` of them for a rate)."""

    model_config = ConfigDict(extra="forbid")

    n: int
    k: int | None = None  # successes, for a rate
    lo: float
    hi: float
    method: Literal["wilson", "bootstrap"]


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (n > 0)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # the exact ends are 0 and 1 at k = 0 and k = n; rounding must not push them past
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def rate_interval(flags: Sequence[bool]) -> Interval | None:
    if not flags:
        return None
    k, n = int(sum(flags)), len(flags)
    lo, hi = wilson(k, n)
    return Interval(n=n, k=k, lo=lo, hi=hi, method="wilson")


def bootstrap(
    values: Sequence[float], statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
) -> Interval | None:
    """Percentile bootstrap of ``statistic`` (row-wise over a [resamples, n] array; default the
    mean); ``None`` for no values. Deterministic: the seed is fixed."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    stat = statistic or (lambda a: a.mean(axis=1))
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, _CHUNK):
        idx = rng.integers(0, x.size, size=(min(_CHUNK, resamples - start), x.size))
        out.append(stat(x[idx]))
    lo, hi = np.percentile(np.concatenate(out), [2.5, 97.5])
    return Interval(n=int(x.size), lo=float(lo), hi=float(hi), method="bootstrap")


def quantile_interval(values: Sequence[float], q: float) -> Interval | None:
    """Bootstrap interval of the ``q``-th percentile (the median at 50)."""
    return bootstrap(values, lambda a: np.percentile(a, q, axis=1))


def too_small(n: int) -> bool:
    return n < MIN_JUDGE_N
