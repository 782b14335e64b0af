"""Weights on disk: a model's parameters as safetensors, with the config text they were made under.

A weights file carries the whole config it was trained under as metadata (``config``, opaque
text to this layer, plus ``step``), so one file is enough to rebuild its model: the model reads
only the config's ``[model]`` table. A folder of weights loads ``best_weights`` (else
``latest_weights``). What a training run keeps beside its weights (optimizer state, the parsed
training config) belongs to ``train/run_dir.py``.

Every file is written through ``exe_coder.files`` (whole or not at all), and weights that are
not finite are never written: a NaN checkpoint would look like a model until it is used.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from pydantic import ValidationError

from exe_coder.errors import UserError
from exe_coder.files import write_text, write_with
from exe_coder.model.config import ModelConfig
from exe_coder.model.transformer import Transformer

CONFIG_FILE = "config.toml"
LATEST = "latest_weights.safetensors"
BEST = "best_weights.safetensors"
DECODING = "decoding"  # metadata key: track name, decode bounds, program template (JSON)


def step_weights_name(step: int) -> str:
    return f"{step:07d}_weights.safetensors"


def non_finite_parameter(arrays: dict[str, mx.array]) -> str | None:
    """The name of the first array holding a NaN or an infinity, or None when all are finite."""
    names = list(arrays)
    if not names:
        return None
    ok = mx.stack([mx.all(mx.isfinite(arrays[k])) for k in names])
    mx.eval(ok)
    bad = [k for k, fine in zip(names, ok.tolist()) if not fine]
    return bad[0] if bad else None


def save_arrays(path: Path, arrays: dict[str, mx.array], metadata: dict[str, str]) -> None:
    """Write ``arrays`` to one safetensors file; refuse any that is not finite."""
    bad = non_finite_parameter(arrays)
    if bad is not None:
        raise UserError(f"refusing to save non-finite weights (NaN or infinity in {bad})", path)
    write_with(path, lambda tmp: mx.save_safetensors(tmp, arrays, metadata=metadata))


def save_weights(path: Path, model: nn.Module, config_text: str, step: int, decoding: dict) -> None:
    """``decoding`` says how the model's outputs become executables (track, bounds, program),
    so that decoding needs nothing but this file."""
    metadata = {"config": config_text, "step": str(step), DECODING: json.dumps(decoding, sort_keys=True)}
    save_arrays(path, dict(tree_flatten(model.parameters())), metadata)


def write_config_text(folder: Path, config_text: str) -> None:
    """The config beside the weights (``config.toml``), so the folder is self-contained."""
    write_text(folder / CONFIG_FILE, config_text)


@dataclass(frozen=True)
class Checkpoint:
    model: Transformer  # in eval mode, weights loaded
    model_config: ModelConfig
    config_text: str  # the config the weights were made under, verbatim
    config_source: str  # where that text came from, for error messages
    path: Path  # the weights file read
    decoding: dict | None  # how its outputs become executables (None: saved before it was recorded)


def weights_file(path: str | Path) -> Path:
    """``path`` itself, or for a folder its best (else latest) weights."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LATEST):
            if (path / name).is_file():
                return path / name
        raise UserError(f"no {BEST} or {LATEST} in the run directory", path)
    if not path.is_file():
        raise UserError("checkpoint not found", path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A model from a run directory or one ``.safetensors`` file (weights and training state alike)."""
    path = weights_file(path)
    try:
        arrays, metadata = mx.load(str(path), return_metadata=True)
    except Exception as err:  # mlx raises a bare RuntimeError/ValueError on a bad file
        raise UserError(f"not a readable safetensors file ({err})", path) from None
    if "config" in metadata:
        text, source = metadata["config"], f"{path} (embedded config)"
    elif (path.parent / CONFIG_FILE).is_file():
        text, source = (path.parent / CONFIG_FILE).read_text(encoding="utf-8"), str(path.parent / CONFIG_FILE)
    else:
        raise UserError("weights carry no config and no config.toml lies beside them", path)
    model_config = _model_table(text, source)
    model = Transformer.from_config(model_config)
    prefix = "model." if any(k.startswith("model.") for k in arrays) else ""  # a training state file
    weights = [(k[len(prefix) :], v) for k, v in arrays.items() if k.startswith(prefix)]
    try:
        model.load_weights(weights, strict=True)
    except ValueError as err:
        raise UserError(f"weights do not fit the config's [model] ({err})", path) from None
    mx.eval(model.parameters())
    model.eval()
    decoding = json.loads(metadata[DECODING]) if DECODING in metadata else None
    return Checkpoint(model, model_config, text, source, path, decoding)


def _model_table(text: str, source: str) -> ModelConfig:
    try:
        return ModelConfig.model_validate(tomllib.loads(text).get("model"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"invalid TOML ({err})", source) from None
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in ("model", *first["loc"]))
        raise UserError(f"bad [model] table ('{key}': {first['msg']})", source) from None
