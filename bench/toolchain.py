"""Binaries per second on one core: build (render -> signed), patch, verify, and zig for the same program.

    uv run python bench/toolchain.py [--n 3000] [--zig-n 10] [--seed 0]

Prints one table: rate and time per binary for each path, the per-stage split of a build, and
the ratios (build / zig, patch / zig, patch / build). The process (and zig, its child) is pinned
to one CPU where the OS allows it (Linux), so the figures are single-core figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from exe_coder.codegen.assembler import assemble
from exe_coder.codegen.finalize import finalize
from exe_coder.codegen.macho import link
from exe_coder.codegen.program import OPERAND_MAX, OPERAND_MIN, ProgramTemplate
from exe_coder.runtime.verify import verify


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity on this OS)"


def rate(fn, items, progress: Progress, label: str) -> float:
    """Seconds per item for ``fn`` over ``items`` (one warm-up call first)."""
    fn(*items[0])
    task = progress.add_task(label, total=len(items))
    start = time.perf_counter()
    for i, item in enumerate(items):
        fn(*item)
        if i % 200 == 0:
            progress.update(task, completed=i)
    elapsed = time.perf_counter() - start
    progress.update(task, completed=len(items))
    return elapsed / len(items)


def zig_build(source: str, workdir: Path) -> bytes:
    (workdir / "prog.s").write_text(source)
    subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", "-g0", "-target", "aarch64-macos.11.0", "-nostdlib", "prog.s", "-o", "prog"],
        check=True, capture_output=True, cwd=workdir,
    )  # fmt: skip
    return (workdir / "prog").read_bytes()


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
        stage_items = pairs[:1000]
        t_render = rate(lambda a, b: add.render(a=a, b=b), stage_items, progress, "render")
        t_assemble = rate(lambda a, b: assemble(add.render(a=a, b=b)), stage_items, progress, "assemble") - t_render
        t_link = rate(lambda: link(assembly), [()] * 1000, progress, "link")
        t_finalize = rate(lambda: finalize(linked.image), [()] * 1000, progress, "finalize")
        with tempfile.TemporaryDirectory() as tmp:
            zig_pairs = pairs[: args.zig_n]
            t_zig = rate(lambda a, b: zig_build(add.render(a=a, b=b), Path(tmp)), zig_pairs, progress, "zig")

    ok = sum(verify(image, exp).stdout_correct for image, exp in zip(images[:50], expected[:50]))
    console = Console()
    console.print(f"host: {platform.system()} {platform.machine()}, python {platform.python_version()}, {pinned}")
    console.print(f"verify ran {'natively' if verify(images[0], expected[0]).native else 'under the emulator'}; "
                  f"{ok}/50 sampled binaries verified ok")  # fmt: skip
    table = Table(title="exe-coder toolchain, one core")
    table.add_column("path")
    table.add_column("binaries/s", justify="right")
    table.add_column("us/binary", justify="right")
    table.add_column("aim", justify="right")
    for name, t, aim in (
        ("build (render->assemble->link->finalize)", t_build, ">= 5,000/s"),
        ("patch (re-encode operands + finalize)", t_patch, "> build"),
        ("verify (validate + signature + run)", t_verify, ">= 2,000/s"),
        ("zig cc (same source)", t_zig, ""),
    ):
        table.add_row(name, f"{1 / t:,.0f}", f"{t * 1e6:,.0f}", aim)
    console.print(table)
    console.print(f"build stages (us): render {t_render * 1e6:.0f}, assemble {t_assemble * 1e6:.0f}, "
                  f"link {t_link * 1e6:.0f}, finalize {t_finalize * 1e6:.0f}")  # fmt: skip
    console.print(f"ratios: build/zig {t_zig / t_build:,.0f}x (aim >= 300x), patch/zig {t_zig / t_patch:,.0f}x, "
                  f"patch/build {t_build / t_patch:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
