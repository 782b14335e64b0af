"""Binaries per second on one core: build (render -> signed), patch, verify, and zig for the same program.

    uv run python bench/toolchain.py [--n 3000] [--zig-n 10] [--seed 0]

Prints one table: binaries per wall-clock second and per CPU second for each path, the
per-stage split of a build, and the ratios (build / zig, patch / zig, patch / build). The process
(and zig, its child) is pinned to one CPU where the OS allows it (Linux), so the figures are
single-core figures. On a shared machine the wall figures fall with the load average (printed);
the CPU figures (this process plus the zig children) are the fairer single-core measure.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from _common import pin_one_core
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from exe_coder.codegen.assembler import assemble
from exe_coder.codegen.finalize import finalize
from exe_coder.codegen.macho import link
from exe_coder.codegen.program import OPERAND_MAX, OPERAND_MIN, ProgramTemplate
from exe_coder.codegen.reference import zig_build
from exe_coder.runtime.verify import verify


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (zig): unlike wall time, it does not
    count the time spent waiting for a core that other work on a shared machine holds."""
    children = os.times()  # clock-tick resolution, fine for zig's ~0.1 s runs
    return time.process_time() + children.children_user + children.children_system


def rate(fn, items, progress: Progress, label: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per item for ``fn`` over ``items`` (one warm-up call first)."""
    fn(*items[0])
    task = progress.add_task(label, total=len(items))
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for i, item in enumerate(items):
        fn(*item)
        if i % 200 == 0:
            progress.update(task, completed=i)
    elapsed, elapsed_cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    progress.update(task, completed=len(items))
    return elapsed / len(items), elapsed_cpu / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="binaries per measured path")
    parser.add_argument("--zig-n", type=int, default=10, help="binaries built by zig (slow)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pinned = pin_one_core()
    rng = random.Random(args.seed)
    pairs = [(rng.randint(OPERAND_MIN, OPERAND_MAX), rng.randint(OPERAND_MIN, OPERAND_MAX)) for _ in range(args.n)]
    add = ProgramTemplate.load("add")
    images = [add.patch(a=a, b=b) for a, b in pairs[: max(1, args.n // 3)]]
    expected = [f"{a + b}\n" for a, b in pairs[: len(images)]]
    source = add.render(a=17, b=-4)
    assembly = assemble(source)
    linked = link(assembly)

    with Progress(transient=True) as progress:
        t_build = rate(lambda a, b: add.build(a=a, b=b), pairs, progress, "build")
        t_patch = rate(lambda a, b: add.patch(a=a, b=b), pairs, progress, "patch")
        t_verify = rate(lambda image, exp: verify(image, exp), list(zip(images, expected)), progress, "verify")
        # fresh operands: the assembler memoises lines, and a dataset's operands are new ones
        stage_items = [(rng.randint(OPERAND_MIN, OPERAND_MAX), rng.randint(OPERAND_MIN, OPERAND_MAX)) for _ in range(1000)]
        sources = [(add.render(a=a, b=b),) for a, b in stage_items]
        t_render = rate(lambda a, b: add.render(a=a, b=b), stage_items, progress, "render")
        t_assemble = rate(assemble, sources, progress, "assemble")
        t_link = rate(lambda: link(assembly), [()] * 1000, progress, "link")
        t_finalize = rate(lambda: finalize(linked.image), [()] * 1000, progress, "finalize")
        with tempfile.TemporaryDirectory() as tmp:
            zig_pairs = pairs[: args.zig_n]
            t_zig = rate(lambda a, b: zig_build(add.render(a=a, b=b), Path(tmp)), zig_pairs, progress, "zig")

    ok = sum(verify(image, exp).stdout_correct for image, exp in zip(images[:50], expected[:50]))
    console = Console(width=120)
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus" if hasattr(os, "getloadavg") else ""
    console.print(f"host: {platform.system()} {platform.machine()}, python {platform.python_version()}, {pinned}; {load}")
    console.print(f"verify ran {'natively' if verify(images[0], expected[0]).native else 'under the emulator'}; "
                  f"{ok}/50 sampled binaries verified ok")  # fmt: skip
    table = Table(title="exe-coder toolchain, one core (per wall second and per CPU second)")
    table.add_column("path")
    table.add_column("binaries/s wall", justify="right")
    table.add_column("binaries/s CPU", justify="right")
    table.add_column("us/binary CPU", justify="right")
    table.add_column("aim", justify="right")
    for name, (wall, cpu), aim in (
        ("build (render->assemble->link->finalize)", t_build, ">= 5,000/s"),
        ("patch (re-encode operands + finalize)", t_patch, "> build"),
        ("verify (validate + signature + run)", t_verify, ">= 2,000/s"),
        ("zig cc (same source)", t_zig, ""),
    ):
        table.add_row(name, f"{1 / wall:,.0f}", f"{1 / cpu:,.0f}", f"{cpu * 1e6:,.0f}", aim)
    console.print(table)
    console.print(f"build stages (us CPU): render {t_render[1] * 1e6:.0f}, assemble {t_assemble[1] * 1e6:.0f}, "
                  f"link {t_link[1] * 1e6:.0f}, finalize {t_finalize[1] * 1e6:.0f}")  # fmt: skip
    for kind, i in (("wall", 0), ("CPU", 1)):
        console.print(f"ratios ({kind}): build vs zig {t_zig[i] / t_build[i]:,.0f}x (aim >= 300x), "
                      f"patch vs zig {t_zig[i] / t_patch[i]:,.0f}x, patch vs build {t_build[i] / t_patch[i]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
