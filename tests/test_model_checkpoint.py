"""Weights on disk: the model layer saves and loads them with its own config, and never NaN."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from exe_coder.errors import UserError
from exe_coder.model import checkpoint as ckpt
from exe_coder.model.config import ModelConfig
from exe_coder.model.transformer import Transformer
from exe_coder.paths import REPO_ROOT

DECODING = {"track": "template_delta_operand_patch", "min_int": -9, "max_int": 9, "program": "add"}
CONFIG_TEXT = """\
[run]
name = "opaque to the model layer"

[model]
layers = 1
hidden_size = 16
heads = 2
seq_len = 32
"""


@pytest.fixture()
def model() -> Transformer:
    mx.random.seed(0)
    return Transformer.from_config(ModelConfig(layers=1, hidden_size=16, heads=2, seq_len=32))


def test_the_model_layer_imports_nothing_from_train():
    code = (
        "import sys, exe_coder.model.checkpoint, exe_coder.model.config; "
        "print(sorted(m for m in sys.modules if m.startswith('exe_coder.train')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_lone_weights_file_rebuilds_its_model(model: Transformer, tmp_path: Path):
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(path, model, CONFIG_TEXT, step=3, decoding=DECODING)
    loaded = ckpt.load_checkpoint(path)
    assert loaded.model_config == ModelConfig(layers=1, hidden_size=16, heads=2, seq_len=32)
    assert loaded.config_text == CONFIG_TEXT  # kept verbatim for the layer that parses it
    assert loaded.decoding == DECODING  # how its outputs become executables travels with the weights
    x = mx.array([[1, 2, 3, 4]])
    assert np.array_equal(np.array(model(x)), np.array(loaded.model(x)))
    assert path.stat().st_mode & 0o777 == 0o644  # written by exe_coder.files
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_never_saved(model: Transformer, tmp_path: Path, bad: float):
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(path, model, CONFIG_TEXT, step=1, decoding=DECODING)
    before = path.read_bytes()
    weight = model.norm.weight
    model.norm.weight = mx.concatenate([mx.array([bad]), weight[1:]])
    with pytest.raises(UserError, match=r"refusing to save non-finite weights \(NaN or infinity in norm\.weight\)"):
        ckpt.save_weights(path, model, CONFIG_TEXT, step=2, decoding=DECODING)
    assert path.read_bytes() == before  # the earlier file stands
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left


def test_non_finite_parameter_names_the_array():
    assert ckpt.non_finite_parameter({"a": mx.ones(3), "b": mx.array([1.0, math.nan])}) == "b"
    assert ckpt.non_finite_parameter({"a": mx.ones(3)}) is None
    assert ckpt.non_finite_parameter({}) is None


def test_bad_model_table_in_the_embedded_config_is_one_error(model: Transformer, tmp_path: Path):
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(path, model, CONFIG_TEXT.replace("layers = 1", "layers = true"), step=1, decoding=DECODING)
    with pytest.raises(UserError, match=r"bad \[model\] table \('model.layers'"):
        ckpt.load_checkpoint(path)
