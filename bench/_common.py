"""What every benchmark shares (run as ``python bench/<name>.py``, so this folder is on sys.path)."""

from __future__ import annotations

import os


def pin_one_core() -> str:
    """Pin this process (and its children) to one CPU, so figures are single-core figures."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity on this OS)"
