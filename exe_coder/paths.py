"""Where the declared inputs live (grammars, templates, specs, configs), and how a shipped one is
named on the command line.

From a checkout (an editable install included) they are the repository's own top-level
folders. From an installed wheel they are the copies pyproject's force-include packs under
``exe_coder/_resources``, found through importlib.resources. A normal unpacked install gives a
real folder there; a zipped import would need ``importlib.resources.as_file``, which no
supported install layout uses, so the folders are kept as plain Paths.

Outputs (``data/``, ``outputs/``) are never written here: they go under the working folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from exe_coder.errors import UserError

_CHECKOUT = Path(__file__).resolve().parent.parent


def _resources_root() -> Path:
    # a checkout is recognised by its own files, so an installed copy never reads a stray folder
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "grammar" / "spec.lark").is_file():
        return _CHECKOUT
    return Path(str(resources.files("exe_coder") / "_resources"))


RESOURCES_ROOT = _resources_root()  # holds grammar/ templates/ specs/ configs/
REPO_ROOT = RESOURCES_ROOT  # the checkout when run from one (the tests are)
TEMPLATES_DIR = RESOURCES_ROOT / "templates"
GRAMMAR_DIR = RESOURCES_ROOT / "grammar"
SPECS_DIR = RESOURCES_ROOT / "specs"
CONFIGS_DIR = RESOURCES_ROOT / "configs"

SPEC_SUFFIX, CONFIG_SUFFIX, TEMPLATE_SUFFIX = ".spec", ".toml", ".s.j2"


def shipped(folder: Path, suffix: str) -> list[str]:
    """The names of the shipped files in ``folder`` (``stage0`` for ``specs/stage0.spec``)."""
    return sorted(p.name.removesuffix(suffix) for p in folder.glob(f"*{suffix}") if p.is_file())


def _exists(path: Path, is_file: bool = False) -> bool:
    # a name the OS cannot even look up (too long, a NUL byte) is simply not there
    try:
        return path.is_file() if is_file else path.exists()
    except (OSError, ValueError):
        return False


def _resolve(value: str | Path, folder: Path, suffix: str, kind: str, named: str) -> Path:
    """A path that exists as given (the loader reports what is wrong with it), else a shipped
    name; neither is a one-line UserError that lists the shipped names."""
    path = Path(value)
    if _exists(path):
        return path
    text = str(value)
    if text and "/" not in text and "\\" not in text:
        candidate = folder / f"{text.removesuffix(suffix)}{suffix}"
        if _exists(candidate, is_file=True):
            return candidate
    names = ", ".join(shipped(folder, suffix))
    raise UserError(f"no such {kind} file, and no shipped {named} of that name (shipped: {names})", path=value)


def resolve_spec(value: str | Path) -> Path:
    """``specs/stage1.spec`` or any spec file by path, or a shipped stage by name (``stage1``)."""
    return _resolve(value, SPECS_DIR, SPEC_SUFFIX, "spec", "stage")


def resolve_config(value: str | Path) -> Path:
    """A config file by path, or a shipped config by name (``sft_stage0_overfit``)."""
    return _resolve(value, CONFIGS_DIR, CONFIG_SUFFIX, "config", "config")


def resolve_template(value: str | Path) -> Path:
    """A template file by path, or a shipped template by name (``add``)."""
    return _resolve(value, TEMPLATES_DIR, TEMPLATE_SUFFIX, "template", "template")
