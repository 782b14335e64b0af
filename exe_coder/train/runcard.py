"""Where a number came from: the run card (``run_card.json``) and a checkpoint's model card.

A run card names everything that can make two runs of one config differ: the code (version,
git commit and whether the tree was dirty), the software (Python, MLX), the machine (platform,
CPU count, the BLAS in use and thread settings), and the inputs (seed, config and dataset
manifest hashes), with the start date and wall seconds per phase. Training writes one into its
run folder, ``run-stage`` beside its reports, and every evaluation report carries one.

``config_sha256_except_seed`` hashes the config without ``run.seed`` and without the run's
name and folder (labels, not the experiment), so ``exe-coder compare`` can tell seeds of one
config apart from different configs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from exe_coder import files
from exe_coder.errors import UserError

if TYPE_CHECKING:
    from exe_coder.train.config import TrainConfig

RUN_CARD = "run_card.json"
MODEL_CARD = "README.md"
RUN_CARD_SCHEMA = "exe-coder.run-card/1"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_LABEL_KEYS = ("seed", "name", "output_dir")  # [run] keys left out of config_sha256_except_seed


class RunCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = RUN_CARD_SCHEMA
    written_by: str  # train | run-stage | evaluate
    run_name: str | None = None
    dataset: str | None = None  # the folder of the train split
    exe_coder_version: str
    git_commit: str | None = None  # None outside a git checkout
    git_dirty: bool | None = None
    python: str
    mlx: str | None = None
    mlx_device: str | None = None
    platform: str
    machine: str
    cpu_count: int | None = None
    blas: str
    threads: dict[str, str] = {}  # thread-count variables as set
    seed: int | None = None
    config_sha256: str | None = None
    config_sha256_except_seed: str | None = None
    manifest_sha256: str | None = None
    started: str | None = None  # ISO 8601, UTC
    phases_s: dict[str, float] = {}  # wall seconds per phase (build, train, infer val, ...)


def git_state(package_dir: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout this package was imported from; (None, None) when it
    is not a checkout (an installed wheel), even one that sits inside someone's repository."""
    root = (package_dir or Path(__file__).resolve().parents[1]).parent  # exe_coder/ -> the checkout

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None, None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return commit, None if status is None else bool(status)


def blas_in_use() -> str:
    """What MLX's CPU matmuls run on here (see train/blas.py for the preload)."""
    from exe_coder.train.blas import blas_preloaded

    if sys.platform == "darwin":
        return "Accelerate (macOS)"
    if blas_preloaded():
        lib = next(p for p in os.environ.get("LD_PRELOAD", "").split(":") if "openblas" in p.lower())
        return f"OpenBLAS (preloaded {lib})"
    return "reference BLAS of the mlx wheel (no OpenBLAS preloaded)"


def _version_of(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _mlx_device() -> str | None:
    try:
        import mlx.core as mx

        return str(mx.default_device())
    except Exception:  # noqa: BLE001 -- a card reports what it can; no MLX is an answer too
        return None


def config_hashes(config: TrainConfig) -> tuple[str, str]:
    """(sha256 of the config, sha256 of it without run.seed, run.name and run.output_dir, and
    with the seed's own suffix taken off the runs it starts from: the SFT warmstart and RL's
    init_ckpt)."""
    raw = config.model_dump(mode="json", exclude_none=True)
    for key in _LABEL_KEYS:
        raw["run"].pop(key, None)
    # seed N of a chain starts from seed N of the run before (<output_dir>_seedN, by name or by
    # "{seed}"); the seed whose start has no suffix is the same recipe, so one family
    seed = config.run.seed
    raw["init"]["warmstart_ckpt"] = config.init.start_checkpoint(seed).removesuffix(f"_seed{seed}")
    if "rl" in raw:
        raw["rl"]["init_ckpt"] = config.rl.start_checkpoint(seed).removesuffix(f"_seed{seed}")
    rest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    return config.sha256(), rest


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def make_run_card(
    config: TrainConfig | None = None,
    *,
    written_by: str,
    started: str | None = None,
    phases_s: dict[str, float] | None = None,
    manifest_sha256: str | None = None,
) -> RunCard:
    """A card for this machine and checkout, and for ``config`` when there is one. The manifest
    hash defaults to that of the build beside the config's train split."""
    commit, dirty = git_state()
    fields: dict = {}
    if config is not None:
        from exe_coder.train.data import manifest_sha256 as manifest_of

        full, rest = config_hashes(config)
        fields = dict(
            run_name=config.run.name, dataset=str(Path(config.data.train_jsonl).parent), seed=config.run.seed,
            config_sha256=full, config_sha256_except_seed=rest,
            manifest_sha256=manifest_sha256 or manifest_of(config.data.train_jsonl),
        )
    from exe_coder import __version__

    return RunCard(
        written_by=written_by, exe_coder_version=__version__, git_commit=commit, git_dirty=dirty,
        python=platform.python_version(), mlx=_version_of("mlx"), mlx_device=_mlx_device(),
        platform=platform.platform(), machine=platform.machine(), cpu_count=os.cpu_count(),
        blas=blas_in_use(), threads={k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        started=started, phases_s=dict(phases_s or {}), **fields,
    )


def write_run_card(folder: str | Path, card: RunCard) -> Path:
    return files.write_text(Path(folder) / RUN_CARD, card.model_dump_json(indent=2) + "\n")


def read_run_card(folder: str | Path) -> RunCard | None:
    """The card in ``folder``, or ``None`` when it has none; a damaged card is a ``UserError``."""
    path = Path(folder) / RUN_CARD
    if not path.is_file():
        return None
    try:
        return RunCard.model_validate_json(path.read_bytes())
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "card"
        raise UserError(f"not a run card: {where}: {first['msg']}", path) from None


def run_card_lines(card: RunCard) -> list[str]:
    """The card as Markdown bullet lines (for reports and model cards)."""
    commit = "not a git checkout" if card.git_commit is None else (
        f"`{card.git_commit[:12]}`" + (" (dirty)" if card.git_dirty else "")
    )
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in card.phases_s.items()) or "–"
    threads = ", ".join(f"{k}={v}" for k, v in card.threads.items()) or "unset"
    return [
        f"- exe-coder {card.exe_coder_version}, commit {commit}; Python {card.python}, MLX {card.mlx or '–'}"
        f" ({card.mlx_device or '–'})",
        f"- machine: {card.platform} ({card.machine}, {card.cpu_count} CPUs); BLAS: {card.blas}; threads: {threads}",
        f"- run `{card.run_name or '–'}` on `{card.dataset or '–'}`; seed {card.seed if card.seed is not None else '–'};"
        f" started {card.started or '–'}",
        f"- config sha256 `{_short(card.config_sha256)}` (except seed `{_short(card.config_sha256_except_seed)}`);"
        f" dataset manifest sha256 `{_short(card.manifest_sha256)}`",
        f"- wall time: {phases}",
    ]


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "–"


def model_card_markdown(
    config: TrainConfig,
    card: RunCard,
    *,
    steps: int,
    best_step: int | None,
    best_val_exact_match: float | None,
    best_val_loss: float | None,
) -> str:
    """A short README for a checkpoint folder: what it was trained on, how, and how well on val."""
    m, t = config.model, config.train
    em = "–" if best_val_exact_match is None or best_val_exact_match < 0 else f"{best_val_exact_match:.4f}"
    loss = "–" if best_val_loss is None or best_val_loss == float("inf") else f"{best_val_loss:.4f}"
    lines = [
        f"# {config.run.name}",
        "",
        "An exe-coder patch model: it reads a prompt such as \"What is 17 plus -4?\" and emits the",
        "patch `A=17;B=-4` that exe-coder turns into a signed macOS arm64 executable.",
        "",
        f"- trained on `{config.data.train_jsonl}` (manifest sha256 `{_short(card.manifest_sha256)}`),"
        f" selected on `{config.data.val_jsonl}`",
        f"- model: {m.layers} layers, hidden {m.hidden_size}, {m.heads} heads, sequence length {m.seq_len}",
        f"- training: {steps} steps, batch {t.batch_size}, AdamW lr {config.optimizer.lr_adamw:g}, seed {config.run.seed};"
        " config in `config.toml`",
        f"- best weights (`best_weights.safetensors`): step {best_step if best_step is not None else '–'},"
        f" val exact match {em}, val loss {loss}",
        "- val chose the checkpoint, so its figures are optimistic; judge the model on test"
        " (`exe-coder evaluate`)",
        "",
        "## Run card",
        "",
        *run_card_lines(card),
    ]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, text: str) -> Path:
    return files.write_text(Path(folder) / MODEL_CARD, text)
