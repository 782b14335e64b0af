"""Use an optimised BLAS on Linux: the mlx[cpu] wheel links the reference BLAS, which is far
slower for the matmuls of training (see bench/train.py for the measured ratio).

``ensure_optimized_blas()`` re-executes the current command once with ``LD_PRELOAD`` pointing at
an installed OpenBLAS (the dynamic linker must see it before the process starts, so it cannot be
switched on later). Opt out with ``EXE_CODER_NO_BLAS_PRELOAD=1``. On macOS it does nothing: MLX
runs on Metal / Accelerate there.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

OPT_OUT = "EXE_CODER_NO_BLAS_PRELOAD"
_REEXECED = "EXE_CODER_BLAS_REEXECED"  # set in the child, so a failed preload never loops

CANDIDATES = {
    "x86_64": [
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
        "/usr/lib64/libopenblasp.so.0",
    ],
    "aarch64": [
        "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
    ],
}


def find_openblas() -> Path | None:
    """The first installed OpenBLAS among the usual Debian/Fedora paths for this machine."""
    for candidate in CANDIDATES.get(platform.machine(), []):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def blas_preloaded() -> bool:
    return "openblas" in os.environ.get("LD_PRELOAD", "").lower()


def ensure_optimized_blas(echo=print) -> None:
    """On Linux, re-exec this process once with OpenBLAS preloaded (or say why not)."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) or os.environ.get(_REEXECED):
        return
    if blas_preloaded():
        return
    lib = find_openblas()
    if lib is None:
        echo(
            "note: no OpenBLAS found; MLX uses the slow reference BLAS "
            "(install the apt package libopenblas0-pthread for much faster CPU training)"
        )
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (str(lib), env.get("LD_PRELOAD", "")) if p)
    env[_REEXECED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
