"""The reference toolchain: zig's clang assembler and linker, for differential tests and benches.

``python -m ziglang cc`` (PyPI ``ziglang``, a dev dependency) assembles the same source and links
a signed arm64 Mach-O. At tens of milliseconds a binary it is a yardstick, never on a hot path.
zig names its code signature after the output file, so callers choose that name deliberately.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ZIG_CC = [sys.executable, "-m", "ziglang", "cc", "-g0", "-target", "aarch64-macos.11.0", "-nostdlib"]


def zig_link(source: Path, out: Path) -> bytes:
    """Assemble and link ``source`` (entry ``_main``) into ``out``; return the file's bytes."""
    subprocess.run([*ZIG_CC, str(source), "-o", str(out)], check=True, capture_output=True, cwd=out.parent)
    return out.read_bytes()


def zig_build(source_text: str, workdir: Path, name: str = "prog") -> bytes:
    """Write ``source_text`` to ``workdir/<name>.s`` and link it as ``workdir/<name>``."""
    source = workdir / f"{name}.s"
    source.write_text(source_text)
    return zig_link(source, workdir / name)
