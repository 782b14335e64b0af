"""Checkpoints: what a training run leaves in ``[run].output_dir``, and how to load a model back.

    config.toml                      the run's config (normalized), so the directory is self-contained
    0000200_weights.safetensors      weights every save_interval steps (named by step, as mlx-lm does)
    latest_weights.safetensors       the newest weights
    best_weights.safetensors         the weights with the best validation exact match, then loss
    training_state.safetensors       everything --resume needs: weights, optimizer state, RNG key,
                                     step, best score, the dataset manifest's hash
    run.json                         the same bookkeeping as JSON, for people
    metrics.jsonl                    one line per log or eval event (written by the loop)

Every file is written to a temporary name and renamed into place, so an interrupted save never
leaves a half-written file; ``training_state`` carries its own copy of the weights so a resume
never mixes files of different steps. Weight files carry the config in their metadata, so
``load_model`` works on a lone ``.safetensors`` file too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from exe_coder.errors import UserError
from exe_coder.model.transformer import Transformer
from exe_coder.train.config import TrainConfig, parse_config

CONFIG_FILE = "config.toml"
LATEST = "latest_weights.safetensors"
BEST = "best_weights.safetensors"
STATE = "training_state.safetensors"
RUN_JSON = "run.json"


def step_weights_name(step: int) -> str:
    return f"{step:07d}_weights.safetensors"


def _atomic_safetensors(path: Path, arrays: dict[str, mx.array], metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.safetensors")
    mx.save_safetensors(str(tmp), arrays, metadata=metadata)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_weights(path: Path, model: nn.Module, config: TrainConfig, step: int) -> None:
    weights = dict(tree_flatten(model.parameters()))
    _atomic_safetensors(path, weights, {"config": config.to_toml(), "step": str(step)})


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
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


def save_training_state(
    out_dir: Path,
    model: nn.Module,
    optimizer,
    config: TrainConfig,
    state: TrainingState,
) -> None:
    arrays = {f"model.{k}": v for k, v in tree_flatten(model.parameters())}
    arrays.update({f"optimizer.{k}": v for k, v in tree_flatten(optimizer.state)})
    arrays["rng.key"] = mx.random.state[0]
    metadata = {"config": config.to_toml(), "state": state.to_json()}
    _atomic_safetensors(out_dir / STATE, arrays, metadata)
    atomic_write_text(out_dir / RUN_JSON, state.to_json() + "\n")


def load_training_state(out_dir: Path, model: nn.Module, optimizer) -> TrainingState:
    """Restore weights and optimizer state in place; return the bookkeeping."""
    path = out_dir / STATE
    if not path.is_file():
        raise UserError("nothing to resume: no training_state.safetensors in the run directory", out_dir)
    arrays, metadata = mx.load(str(path), return_metadata=True)
    model.load_weights([(k[len("model.") :], v) for k, v in arrays.items() if k.startswith("model.")])
    optimizer.state = tree_unflatten(
        [(k[len("optimizer.") :], v) for k, v in arrays.items() if k.startswith("optimizer.")]
    )
    return TrainingState(**json.loads(metadata["state"]))


def write_config(out_dir: Path, config: TrainConfig) -> None:
    atomic_write_text(out_dir / CONFIG_FILE, config.to_toml())


def load_model(path: str | Path) -> tuple[Transformer, TrainConfig]:
    """A trained model and its config, from a run directory or one ``.safetensors`` file.

    A run directory loads ``best_weights`` (else ``latest_weights``).
    """
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LATEST):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise UserError(f"no {BEST} or {LATEST} in the run directory", path)
    if not path.is_file():
        raise UserError("checkpoint not found", path)
    try:
        arrays, metadata = mx.load(str(path), return_metadata=True)
    except Exception as err:  # mlx raises a bare RuntimeError/ValueError on a bad file
        raise UserError(f"not a readable safetensors file ({err})", path) from None
    if "config" in metadata:
        config = parse_config(metadata["config"], f"{path} (embedded config)")
    elif (path.parent / CONFIG_FILE).is_file():
        config = parse_config((path.parent / CONFIG_FILE).read_text(), path.parent / CONFIG_FILE)
    else:
        raise UserError("weights carry no config and no config.toml lies beside them", path)
    model = Transformer.from_config(config.model)
    prefix = "model." if any(k.startswith("model.") for k in arrays) else ""
    weights = [(k[len(prefix) :], v) for k, v in arrays.items() if k.startswith(prefix)]
    try:
        model.load_weights(weights, strict=True)
    except ValueError as err:
        raise UserError(f"weights do not fit the config's [model] ({err})", path) from None
    mx.eval(model.parameters())
    model.eval()
    return model, config
