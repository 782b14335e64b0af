"""Benchmark `exe-coder build`: a full stage build (default stage2: 60,000 examples, every
golden binary built and verified), its wall time, examples per second and disk footprint.

    uv run python bench/build.py [--stage stage2] [--jobs N] [--keep DIR]

Builds into a temporary folder (or --keep DIR) so it never touches data/processed.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from exe_coder.dataset.build import build_stage
from exe_coder.dataset.golden import golden_image
from exe_coder.dataset.sample import sample_stage
from exe_coder.paths import SPECS_DIR
from exe_coder.runtime.verify import verify
from exe_coder.spec import load_spec

TARGET_SECONDS = 60.0
BUDGET_BYTES = 300e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="stage2")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep the output")
    args = parser.parse_args()

    spec = load_spec(SPECS_DIR / f"{args.stage}.spec")
    total = sum(s.size for s in spec.splits)

    t0 = time.perf_counter()
    sample_stage(spec)
    sample_s = time.perf_counter() - t0

    t0 = time.perf_counter()  # one core's cost per example: patch + verify
    probe = 300
    for i in range(probe):
        image = golden_image(spec.program, i - 150, 7 * i)
        verify(image, f"{i - 150 + 7 * i}\n")
    per_example_ms = (time.perf_counter() - t0) / probe * 1e3

    with tempfile.TemporaryDirectory(prefix="exe-coder-bench-") as tmp:
        root = args.keep or Path(tmp)
        load_before = os.getloadavg()[0]
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        result = build_stage(
            spec, root / "data" / spec.stage, root / "bin" / spec.stage, force=True, jobs=args.jobs, progress=True
        )
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        footprint_disk = result.binary_disk_bytes + result.data_bytes
        footprint_apparent = result.binary_bytes + result.data_bytes

    print(f"stage            {spec.stage}: {total} examples ({', '.join(f'{k} {v}' for k, v in result.counts.items())}), all verified")
    print(f"jobs             {args.jobs} (cpu_count {os.cpu_count()})")
    print(f"sampling         {sample_s:.2f} s")
    print(f"patch+verify     {per_example_ms:.3f} ms per example on one core")
    print(f"build wall time  {wall:.1f} s  ({wall / TARGET_SECONDS:.2f} x the {TARGET_SECONDS:.0f} s aim)")
    print(f"throughput       {total / wall:.0f} examples/s")
    print(f"cpu time         {cpu:.1f} s in all processes; on {args.jobs} idle cores the build would take "
          f"~{cpu / args.jobs:.0f} s (load average before the build: {load_before:.1f}, shared machine)")
    print(f"records          {result.data_bytes / 1e6:.1f} MB (jsonl + manifest + quality report)")
    print(f"binaries         {result.binaries_written} files (val+test), {result.binary_bytes / 1e6:.1f} MB apparent, "
          f"{result.binary_disk_bytes / 1e6:.1f} MB on disk (sparse)")
    print(f"footprint        {footprint_disk / 1e6:.1f} MB on disk, {footprint_apparent / 1e6:.1f} MB apparent "
          f"({footprint_apparent / BUDGET_BYTES:.2f} x the 300 MB budget even without holes)")


def _cpu_seconds() -> float:
    """User + system seconds of this process and of its finished children (the pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
