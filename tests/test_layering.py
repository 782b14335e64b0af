"""The house's one structural rule: a stage imports only the stages before it (cli sees all)."""

from __future__ import annotations

import ast
from pathlib import Path

import exe_coder

PACKAGE = Path(exe_coder.__file__).parent
# The pipeline's order. Shared leaves (errors, files, paths) may be imported by anyone; the
# orchestrators at the end (stages, acceptance, cli) by no one but each other.
ORDER = ["spec", "codegen", "runtime", "dataset", "model", "decode", "train", "evaluate", "stages", "acceptance", "cli"]
LEAVES = {"errors", "files", "paths", "__init__", "__version__"}


def _stage(module: str) -> str | None:
    """``exe_coder.decode.track`` -> ``decode``; None for a shared leaf."""
    part = module.split(".")[1] if module.count(".") else ""
    return None if part in LEAVES or part == "" else part


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):  # lazy imports inside functions count too
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("exe_coder"):
            names = [node.module] if node.module != "exe_coder" else [f"exe_coder.{a.name}" for a in node.names]
            out += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("exe_coder")]
    return out


def test_every_stage_imports_only_earlier_stages():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        own = _stage("exe_coder." + ".".join(rel.parts))
        if own is None:
            continue
        assert own in ORDER, f"{rel}: stage {own!r} is missing from ORDER"
        for line, module in _imports(path):
            other = _stage(module)
            if other is not None and other != own and ORDER.index(other) > ORDER.index(own):
                bad.append(f"{rel}.py:{line} ({own}) imports {module} ({other})")
    assert bad == []


def test_the_leaves_import_no_stage():
    for name in ("errors", "files", "paths"):
        stages = [m for _, m in _imports(PACKAGE / f"{name}.py") if _stage(m) is not None]
        assert stages == [], name
