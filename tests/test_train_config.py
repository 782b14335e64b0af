"""The training config schema: every shipped config validates; every bad file is one clear error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from exe_coder.errors import UserError
from exe_coder.paths import CONFIGS_DIR
from exe_coder.train.config import TrainConfig, load_config, parse_config

SHIPPED = sorted(CONFIGS_DIR.glob("*.toml"))
REQUIRED = {
    "sft_stage0_overfit", "sft_stage1_pilot", "sft_stage1a_template_shift", "sft_stage1b_magnitude_shift",
    "sft_stage2_scale", "sft_scratch", "sft_warmstart", "sft_warmstart_textmix", "rl_mainline",
    "rl_scratch_exploratory",
}

GOOD = """\
[run]
phase = "sft"
name = "x"
seed = 3
output_dir = "outputs/checkpoints/x"

[data]
train_jsonl = "data/processed/stage0/train.jsonl"
val_jsonl = "data/processed/stage0/val.jsonl"
decode_min_int = -200
decode_max_int = 200

[model]
layers = 2
hidden_size = 64
heads = 4
seq_len = 128

[optimizer]
lr_adamw = 1e-3
betas = [0.9, 0.95]

[train]
batch_size = 8
epochs = 2
max_steps = 10
"""


def test_every_required_config_is_shipped():
    assert REQUIRED <= {p.stem for p in SHIPPED}
    assert any(p.stem.startswith("sft_stage3") for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_validates(path: Path):
    cfg = load_config(path)
    assert cfg.run.name == path.stem
    assert cfg.run.output_dir == f"outputs/checkpoints/{path.stem}"
    if cfg.run.phase == "sft":
        stage = Path(cfg.data.train_jsonl).parent.name
        assert cfg.data.train_jsonl == f"data/processed/{stage}/train.jsonl"
        assert cfg.data.val_jsonl == f"data/processed/{stage}/val.jsonl"
        # the stage's spec declares the same decode bounds
        spec = (CONFIGS_DIR.parent / "specs" / f"{stage}.spec").read_text()
        m = re.search(r"decode\s*\{[^}]*min\s+(-?\d+)\s+max\s+(-?\d+)", spec)
        assert m, f"no decode bounds in {stage}.spec"
        assert (cfg.data.decode_min_int, cfg.data.decode_max_int) == (int(m.group(1)), int(m.group(2)))
    else:
        assert cfg.rl is not None


def test_good_config_parses_with_defaults():
    cfg = parse_config(GOOD, "good.toml")
    assert cfg.model.position == "rope" and cfg.init.mode == "scratch" and cfg.optimizer.eps == 1e-8
    # the normalized dump parses back to the same config
    assert parse_config(cfg.to_toml()) == cfg


def _error(text: str) -> UserError:
    with pytest.raises(UserError) as info:
        parse_config(text, "cfg.toml")
    return info.value


def test_unknown_key_names_key_file_and_line():
    text = GOOD.replace("lr_adamw = 1e-3", "lr_adamw = 1e-3\nlr_adam = 3e-4")
    err = _error(text)
    assert "unknown key 'optimizer.lr_adam'" in str(err)
    assert err.path == "cfg.toml"
    assert err.line == text.splitlines().index("lr_adam = 3e-4") + 1
    assert str(err).startswith(f"cfg.toml:{err.line}: ")


def test_unknown_table_is_an_error():
    err = _error(GOOD + "\n[trian]\nbatch_size = 3\n")
    assert "unknown key 'trian'" in str(err)
    assert err.line == (GOOD + "\n[trian]\n").count("\n")


def test_wrong_type_names_key_and_line():
    text = GOOD.replace("batch_size = 8", 'batch_size = "eight"')
    err = _error(text)
    assert "'train.batch_size'" in str(err) and "bad value" in str(err)
    assert err.line == text.splitlines().index('batch_size = "eight"') + 1


def test_missing_key_is_named():
    err = _error(GOOD.replace('name = "x"\n', ""))
    assert "missing key 'run.name'" in str(err)


@pytest.mark.parametrize(
    "old,new,words",
    [
        ("heads = 4", "heads = 5", "not divisible"),
        ("decode_min_int = -200", "decode_min_int = 500", "decode_min_int"),
        ("betas = [0.9, 0.95]", "betas = [0.9, 1.5]", "betas"),
        ('phase = "sft"', 'phase = "dpo"', "run.phase"),
        ("layers = 2", "layers = 0", "model.layers"),
    ],
)
def test_bad_values(old: str, new: str, words: str):
    assert old in GOOD
    assert words in str(_error(GOOD.replace(old, new)))


def test_warmstart_needs_a_checkpoint():
    err = _error(GOOD + '\n[init]\nmode = "warmstart"\n')
    assert "warmstart_ckpt" in str(err) and err.line is not None


def test_toml_syntax_error_has_line_and_column():
    err = _error(GOOD.replace("layers = 2", "layers = = 2"))
    assert err.line == GOOD.splitlines().index("layers = 2") + 1
    assert err.column is not None and "invalid TOML" in str(err)


def test_missing_file(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.toml")


@settings(max_examples=30, deadline=None)
@given(key=st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True), table=st.sampled_from(["run", "data", "model", "optimizer", "train"]))
def test_any_unknown_key_is_rejected(key: str, table: str):
    fields = getattr(TrainConfig.model_fields[table].annotation, "model_fields")
    assume(key not in fields)
    text = GOOD.replace(f"[{table}]\n", f"[{table}]\n{key} = 1\n")
    err = _error(text)
    assert f"'{table}.{key}'" in str(err)
    assert err.line == text.splitlines().index(f"{key} = 1") + 1
