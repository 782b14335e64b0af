"""Where the declared inputs live: the repository's own folders, found from this file."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO_ROOT / "templates"
GRAMMAR_DIR = REPO_ROOT / "grammar"
SPECS_DIR = REPO_ROOT / "specs"
CONFIGS_DIR = REPO_ROOT / "configs"
