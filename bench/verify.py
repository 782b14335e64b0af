"""Verifier throughput on one core: each stage of verify() and whole runs on varied binaries.

    uv run python bench/verify.py [--n 3000] [--seed 0]

Prints one table: microseconds and binaries per second (wall and CPU) for validate (parse +
structural rules), the signature check, the emulator alone and the whole ``verify`` on
patched golden binaries with random operands (each one different, as in an evaluation); then
whole verifies of programs that end badly (a crash, a 100k-instruction timeout) and the ratio
of the golden figure to the 2,000 binaries/s aim. Pinned to one CPU where the OS allows it.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from _common import pin_one_core
from rich.console import Console
from rich.table import Table

from exe_coder.codegen.program import OPERAND_MAX, OPERAND_MIN, ProgramTemplate
from exe_coder.runtime.emulate import emulate
from exe_coder.runtime.signature import check_signature
from exe_coder.runtime.validate import RULES, validate
from exe_coder.runtime.verify import DEFAULT_MAX_INSTRUCTIONS, verify

AIM_PER_S = 2000


def measure(fn, items) -> tuple[float, float]:
    """(wall, CPU) seconds per item, after one warm-up call."""
    fn(items[0])
    start, start_cpu = time.perf_counter(), time.process_time()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items), (time.process_time() - start_cpu) / len(items)


def patched_with_code(template: ProgramTemplate, word: int) -> bytes:
    """The golden binary with its first instruction replaced and the signature redone."""
    from exe_coder.codegen.finalize import finalize

    image = bytearray(template.patch(a=1, b=2))
    image[template.text_offset : template.text_offset + 4] = word.to_bytes(4, "little")
    return finalize(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="binaries per measured row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pinned = pin_one_core()
    rng = random.Random(args.seed)
    add = ProgramTemplate.load("add")
    pairs = [(rng.randint(OPERAND_MIN, OPERAND_MAX), rng.randint(OPERAND_MIN, OPERAND_MAX)) for _ in range(args.n)]
    images = [add.patch(a=a, b=b) for a, b in pairs]
    cases = list(zip(images, [f"{a + b}\n" for a, b in pairs]))
    parsed = [validate(image)[0] for image in images]
    assert all(verify(i, e, native=False).stdout_correct for i, e in cases[:50]), "golden binaries must verify"

    crash = patched_with_code(add, 0x00000000)  # udf #0 as the first instruction
    loop = patched_with_code(add, 0x14000000)  # b . (branch to itself)
    few = max(args.n // 30, 10)

    rows = [
        (f"validate (parse + {len(RULES)} rules)", measure(validate, images)),
        ("signature (page hashes)", measure(check_signature, parsed)),
        ("emulate", measure(emulate, parsed)),
        ("verify golden a+b (whole)", measure(lambda c: verify(c[0], c[1], native=False), cases)),
        ("verify crash (udf)", measure(lambda i: verify(i, native=False), [crash] * args.n)),
        (f"verify timeout ({DEFAULT_MAX_INSTRUCTIONS} instr.)", measure(lambda i: verify(i, native=False), [loop] * few)),
    ]
    table = Table(title=f"verify on one core ({pinned}, load average {os.getloadavg()[0]:.1f})")
    for column in ("path", "us / binary (wall)", "binaries/s (wall)", "binaries/s (CPU)"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, (wall, cpu) in rows:
        table.add_row(name, f"{wall * 1e6:,.0f}", f"{1 / wall:,.0f}", f"{1 / cpu:,.0f}")
    console = Console()
    console.print(table)
    wall, cpu = rows[3][1]
    console.print(
        f"verify golden: {1 / wall:,.0f}/s wall, {1 / cpu:,.0f}/s CPU -- "
        f"{1 / wall / AIM_PER_S:.2f}x / {1 / cpu / AIM_PER_S:.2f}x the {AIM_PER_S:,}/s aim"
    )


if __name__ == "__main__":
    main()
