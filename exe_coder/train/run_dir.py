"""A training run's folder: what ``train`` leaves in ``[run].output_dir``, and when it may reuse one.

    config.toml                      the run's config (normalized), so the directory is self-contained
    0000200_weights.safetensors      weights every save_interval steps (named by step, as mlx-lm does)
    latest_weights.safetensors       the newest weights
    best_weights.safetensors         the weights with the best validation exact match, then loss
    training_state.safetensors       everything --resume needs: weights, optimizer state, RNG key,
                                     weight average (if any), step, best score, the dataset
                                     manifest's hash
    run.json                         the same bookkeeping as JSON, for people
    metrics.jsonl                    one line per log or eval event (written by the loop)
    rollouts.jsonl                   RL only: every sampled output with its reward parts (train/rl.py)

Weights go through ``model/checkpoint.py`` (atomic, never non-finite); ``training_state`` carries
its own copy of the weights so a resume never mixes files of different steps. A fresh run never
lands on an earlier one: it is refused unless forced, and forcing clears only the files above,
in a folder that holds nothing else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from exe_coder.errors import UserError
from exe_coder.files import write_text
from exe_coder.model import checkpoint as ckpt
from exe_coder.model.transformer import Transformer
from exe_coder.train.averaging import WeightAverage, averaged
from exe_coder.train.config import TrainConfig, parse_config

CONFIG_FILE = ckpt.CONFIG_FILE
LATEST = ckpt.LATEST
BEST = ckpt.BEST
STATE = "training_state.safetensors"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
AVERAGE = "average"  # the weight average's prefix in training_state ([train].weight_ema)
step_weights_name = ckpt.step_weights_name

# the files above, numbered weights, and the temporaries of an interrupted write (exe_coder.files)
_RUN_FILE = re.compile(
    r"(config\.toml|latest_weights\.safetensors|best_weights\.safetensors|training_state\.safetensors"
    r"|run\.json|run_card\.json|README\.md|metrics\.jsonl|rollouts\.jsonl|\d{7,}_weights\.safetensors|\..+\.tmp(\..+)?)"
)


@dataclass
class TrainingState:
    """The bookkeeping a resumed run needs besides the weights and optimizer state."""

    step: int = 0  # optimizer updates done
    best_step: int | None = None
    best_exact_match: float = -1.0
    best_val_loss: float = float("inf")
    manifest_sha256: str | None = None
    config_sha256: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["best_val_loss"] = _finite_or_none(self.best_val_loss)  # no eval yet: null, not Infinity
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        data = json.loads(text)
        if data.get("best_val_loss") is None:
            data["best_val_loss"] = float("inf")
        return cls(**data)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def decoding(config: TrainConfig, program: str) -> dict:
    """What decoding needs to know of a run: its track, decode bounds and program template."""
    d = config.data
    return {"track": d.track, "min_int": d.decode_min_int, "max_int": d.decode_max_int, "program": program}


def save_weights(path: Path, model: nn.Module, config: TrainConfig, step: int, program: str) -> None:
    ckpt.save_weights(path, model, config.to_toml(), step, decoding(config, program))


def save_training_state(
    out_dir: Path, model: nn.Module, optimizer, config: TrainConfig, state: TrainingState, program: str,
    average: WeightAverage | None = None,
) -> None:
    arrays = {f"model.{k}": v for k, v in tree_flatten(model.parameters())}
    arrays.update({f"optimizer.{k}": v for k, v in tree_flatten(optimizer.state)})
    arrays.update({f"{AVERAGE}.{k}": v for k, v in (average.arrays() if average else [])})
    arrays["rng.key"] = mx.random.state[0]
    metadata = {"config": config.to_toml(), "state": state.to_json(), ckpt.DECODING: json.dumps(decoding(config, program), sort_keys=True)}
    ckpt.save_arrays(out_dir / STATE, arrays, metadata)
    write_text(out_dir / RUN_JSON, state.to_json() + "\n")


def save_checkpoint(
    out_dir: Path, model: nn.Module, optimizer, config: TrainConfig, state: TrainingState, program: str,
    average: WeightAverage | None = None,
) -> None:
    """A checkpoint step's files: the step's weights, the latest weights and the state to resume
    from. With a weight average the weights files hold the average (what the run evaluates) and
    the state holds both."""
    with averaged(model, average):
        save_weights(out_dir / step_weights_name(state.step), model, config, state.step, program)
        save_weights(out_dir / LATEST, model, config, state.step, program)
    save_training_state(out_dir, model, optimizer, config, state, program, average)


def load_training_state(out_dir: Path, model: nn.Module, optimizer, average: WeightAverage | None = None) -> TrainingState:
    """Restore weights, optimizer state and weight average in place; return the bookkeeping."""
    path = out_dir / STATE
    if not path.is_file():
        raise UserError("nothing to resume: no training_state.safetensors in the run directory", out_dir)
    arrays, metadata = mx.load(str(path), return_metadata=True)
    model.load_weights([(k[len("model.") :], v) for k, v in arrays.items() if k.startswith("model.")])
    optimizer.state = tree_unflatten(
        [(k[len("optimizer.") :], v) for k, v in arrays.items() if k.startswith("optimizer.")]
    )
    if average is not None:
        saved = [(k[len(AVERAGE) + 1 :], v) for k, v in arrays.items() if k.startswith(f"{AVERAGE}.")]
        if not saved:
            raise UserError("the run to resume kept no weight average; resume it without [train].weight_ema", path)
        average.load(saved)
    return TrainingState.from_json(metadata["state"])


def write_config(out_dir: Path, config: TrainConfig) -> None:
    ckpt.write_config_text(out_dir, config.to_toml())


def load_model(path: str | Path) -> tuple[Transformer, TrainConfig]:
    """A trained model and the training config it was made under, from a run directory (best
    weights, else latest) or one ``.safetensors`` file."""
    loaded = ckpt.load_checkpoint(path)
    return loaded.model, parse_config(loaded.config_text, loaded.config_source)


def files_to_replace(
    out: Path, *, force: bool, hint: str = "continue it with --resume or replace it with --force"
) -> list[Path]:
    """Check ``out`` before a fresh (not resumed) run; return the earlier run's files to delete.

    Nothing is touched here, so a run that fails while loading its data leaves the folder as it
    was. A new folder, or one holding no run files, is fine (the run adds its files). An earlier
    run is replaced only with ``force``; a folder mixing run files with others is never cleared.
    """
    if out.exists() and not out.is_dir():
        raise UserError("the output folder is a file; give a folder for the run", out)
    if not out.is_dir():
        return []
    entries = sorted(out.iterdir())
    ours = [p for p in entries if _RUN_FILE.fullmatch(p.name) and p.is_file()]
    if not ours:
        return []
    others = [p.name for p in entries if p not in ours]
    # a run writes its config.toml and, at once, its metrics.jsonl; anything else is someone's
    if others or not (out / CONFIG_FILE).is_file() or len(ours) < 2:
        if others:
            shown = "also " + ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        else:
            shown = "only " + ", ".join(p.name for p in ours)
        raise UserError(
            f"holds some files a training run writes but does not look like a run folder ({shown}); "
            "choose another output folder or clear this one yourself",
            out,
        )
    if not force:
        raise UserError(f"holds an earlier run; {hint}", out)
    return ours


def remove_files(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
