"""The training config schema: every shipped config validates; every bad file is one clear error."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from exe_coder.decode.track import track_for
from exe_coder.errors import UserError
from exe_coder.paths import CONFIGS_DIR, SPECS_DIR
from exe_coder.spec import load_spec
from exe_coder.train.config import (
    RESUMABLE_KEYS, TrainConfig, apply_overrides, dump_toml, load_config, parse_config, resumable_differences,
)

SHIPPED = sorted(CONFIGS_DIR.glob("*.toml"))
REQUIRED = {
    "sft_stage0_overfit", "sft_stage1_pilot", "sft_stage1a_template_shift", "sft_stage1b_magnitude_shift",
    "sft_stage2_scale", "sft_scratch", "sft_warmstart", "sft_warmstart_textmix", "rl_mainline",
    "rl_stage4", "rl_scratch_exploratory",
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
        # the decode bounds are the stage's operand range: every gold target is decodable
        spec = (CONFIGS_DIR.parent / "specs" / f"{stage}.spec").read_text()
        m = re.search(r"^operands\s+(-?\d+)\.\.(-?\d+)", spec, re.MULTILINE)
        assert m, f"no operands in {stage}.spec"
        assert (cfg.data.decode_min_int, cfg.data.decode_max_int) == (int(m.group(1)), int(m.group(2)))
    else:
        assert cfg.rl is not None


RL_MAINLINE = [p for p in SHIPPED if (c := load_config(p)).run.phase == "rl" and c.rl.mode == "mainline"]


@pytest.mark.parametrize("path", RL_MAINLINE, ids=lambda p: p.stem)
def test_shipped_rl_mainline_has_the_model_and_data_of_the_sft_run_it_starts_from(path: Path):
    """[rl].init_ckpt names a shipped SFT run; RL loads its weights into its own [model], so the
    two tables must agree (a change to one alone would only fail when RL starts), and RL samples
    the prompts that run trained on, in the same decode range."""
    rl = load_config(path)
    sft = _shipped_runs_writing(rl.rl.init_ckpt)
    assert len(sft) == 1, f"no shipped SFT config writes {rl.rl.init_ckpt}"
    assert sft[0].model == rl.model
    keys = ("train_jsonl", "val_jsonl", "test_jsonl", "decode_min_int", "decode_max_int", "track", "target_mode")
    assert {k: getattr(rl.data, k) for k in keys} == {k: getattr(sft[0].data, k) for k in keys}


@pytest.mark.parametrize("path", RL_MAINLINE, ids=lambda p: p.stem)
def test_shipped_rl_mainline_chooses_its_step_on_the_whole_val_split(path: Path):
    """RL keeps the step its val hook reads best; on the first 256 rows that choice followed the
    sample (docs/experiments.md, session 28), so a mainline config decodes every val row its
    stage's spec declares."""
    cfg = load_config(path)
    spec = load_spec(SPECS_DIR / f"{Path(cfg.data.val_jsonl).parent.name}.spec")
    assert cfg.train.eval_max_samples >= spec.split("val").size


def test_rl_stage4_is_rl_mainline_on_stage4():
    """The README calls rl_stage4 stage3's RL recipe on stage4's data: every setting but where it
    reads, where it writes and the model it starts from must stay rl_mainline's."""
    stage3, stage4 = load_config(CONFIGS_DIR / "rl_mainline.toml"), load_config(CONFIGS_DIR / "rl_stage4.toml")
    own = {"run": stage4.run, "data": stage4.data, "rl": stage3.rl.model_copy(update={"init_ckpt": stage4.rl.init_ckpt})}
    assert stage3.model_copy(update=own) == stage4
    assert Path(stage4.data.train_jsonl).parent.name == "stage4"


def _shipped_runs_writing(output_dir: str) -> list[TrainConfig]:
    """The shipped configs whose run writes ``output_dir`` (a warmstart's source)."""
    return [c for c in map(load_config, SHIPPED) if c.run.output_dir == output_dir]


@pytest.mark.parametrize("name", ["sft_scratch", "sft_warmstart", "sft_warmstart_textmix"])
def test_warmstart_matrix_differs_from_its_stage_run_only_in_init(name):
    """The seed's matrix asks what warmstart and textmix add: each arm must be the stage's own
    config but for its [init] (and where it writes), or the comparison measures something else."""
    arm, stage = load_config(CONFIGS_DIR / f"{name}.toml"), load_config(CONFIGS_DIR / "sft_stage1_pilot.toml")
    assert arm.run.name == name
    assert arm.model_copy(update={"run": stage.run, "init": stage.init}) == stage
    if arm.init.mode != "scratch":  # warmstart loads the stage0 run's weights into this [model]
        start = _shipped_runs_writing(arm.init.warmstart_ckpt)
        free = {"dropout": arm.model.dropout, "signed_numbers": arm.model.signed_numbers}  # no weights
        assert len(start) == 1 and start[0].model.model_copy(update=free) == arm.model


def test_stage4_from_stage3_is_stage4s_run_started_from_stage3s_model():
    """The curriculum arm must be sft_stage4_read but for its start, its length and where it writes,
    or the comparison with stage4 from scratch measures something else; and it starts each seed from
    the folder `run-stage stage3 --seeds` writes that seed's stage3 model to, whose weights load."""
    from exe_coder.stages import _seed_dir

    arm, stage4 = load_config(CONFIGS_DIR / "sft_stage4_from_stage3.toml"), load_config(CONFIGS_DIR / "sft_stage4_read.toml")
    assert arm.init.mode == "warmstart" and arm.train.max_steps < stage4.train.max_steps
    assert arm.train.model_copy(update={"max_steps": stage4.train.max_steps}) == stage4.train
    assert arm.model_copy(update={"run": stage4.run, "init": stage4.init, "train": stage4.train}) == stage4
    stage3 = load_config(CONFIGS_DIR / "sft_stage3_words.toml")
    assert arm.init.start_checkpoint(2) == str(_seed_dir(Path(stage3.run.output_dir), 2))
    assert stage3.model == arm.model


@pytest.mark.parametrize("name", ["sft_stage1_trackb", "sft_stage1b_trackb", "sft_stage1_text_trackb", "sft_stage1b_text_trackb"])
def test_track_b_starts_from_the_track_a_run_on_the_same_prompts(name):
    """Track B warm-starts from Track A's shipped run of the same stage (add_text's specs draw the
    prompts of add's), whose weights must load into its [model]: equal but for seq_len, dropout, how
    output numbers are counted and a number-ordinal table that may grow."""
    tb = load_config(CONFIGS_DIR / f"{name}.toml")
    start = _shipped_runs_writing(tb.init.warmstart_ckpt)
    assert tb.init.mode == "warmstart" and len(start) == 1
    (ta,) = start
    assert ta.data.track == "template_delta_operand_patch" and tb.data.track == "strict_one_shot"
    assert ta.data.train_jsonl == tb.data.train_jsonl.replace("_text/", "/")
    free = ("dropout", "seq_len", "output_ordinals", "max_number_ordinal", "signed_numbers")
    assert ta.model.model_copy(update={k: getattr(tb.model, k) for k in free}) == tb.model
    assert tb.model.max_number_ordinal >= ta.model.max_number_ordinal


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


# --- issue 8: a mistyped key is named first; types are strict; floats are finite -----------


def test_mistyped_key_is_named_unknown_with_the_closest_key():
    text = GOOD.replace("lr_adamw = 1e-3", "lr_adamww = 1e-3")
    err = _error(text)
    # not "missing key 'optimizer.lr_adamw'": the typo is the cause
    assert err.message == "unknown key 'optimizer.lr_adamww' (did you mean 'lr_adamw'?)"
    assert err.line == text.splitlines().index("lr_adamww = 1e-3") + 1


def test_mistyped_table_suggests_the_table():
    assert "(did you mean 'train'?)" in str(_error(GOOD + "\n[trian]\nbatch_size = 3\n"))


def test_unknown_key_with_nothing_close_has_no_suggestion():
    assert str(_error(GOOD.replace("[model]\n", "[model]\nzzzzqqq = 1\n"))).endswith("unknown key 'model.zzzzqqq'")


@pytest.mark.parametrize(
    "old,new,key",
    [
        ("layers = 2", "layers = true", "model.layers"),  # was a 1-layer model
        ("batch_size = 8", 'batch_size = "32"', "train.batch_size"),  # was 32
        ("seed = 3", "seed = 3.0", "run.seed"),
        ("lr_adamw = 1e-3", "lr_adamw = true", "optimizer.lr_adamw"),
        ("lr_adamw = 1e-3", 'lr_adamw = "1e-3"', "optimizer.lr_adamw"),
        ("betas = [0.9, 0.95]", 'betas = [0.9, "0.95"]', "optimizer.betas"),
        ('name = "x"', "name = 3", "run.name"),
        ("seq_len = 128", "seq_len = 128\ntie_embeddings = 1", "model.tie_embeddings"),
    ],
)
def test_values_are_not_converted(old: str, new: str, key: str):
    assert old in GOOD
    err = _error(GOOD.replace(old, new))
    assert f"bad value for '{key}'" in str(err)


def test_a_float_key_takes_a_toml_integer():
    """Decided: an integer is an exact float (``lr_adamw = 1``), so it is accepted as one."""
    cfg = parse_config(GOOD.replace("lr_adamw = 1e-3", "lr_adamw = 1").replace("betas = [0.9, 0.95]", "betas = [0, 0]"))
    assert cfg.optimizer.lr_adamw == 1.0 and isinstance(cfg.optimizer.lr_adamw, float)
    assert cfg.optimizer.betas == (0.0, 0.0) and all(isinstance(b, float) for b in cfg.optimizer.betas)


def _table(table: str):
    """The model class of a table (``RLConfig | None`` -> ``RLConfig``)."""
    annotation = TrainConfig.model_fields[table].annotation
    return next(a for a in (annotation, *get_args(annotation)) if isinstance(a, type))


def _float_keys() -> list[tuple[str, str]]:
    """Every (table, key) of the schema whose value is a float or holds floats."""
    out = []
    for table in TrainConfig.model_fields:
        for key, field in _table(table).model_fields.items():
            if field.annotation is float or float in get_args(field.annotation):
                out.append((table, key))
    return out


def test_the_schema_has_float_keys_in_every_numeric_table():
    assert {t for t, _ in _float_keys()} == {"model", "optimizer", "init", "rl", "train"}


@pytest.mark.parametrize("table,key", _float_keys(), ids=lambda x: x)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_key_refuses_non_finite_values(table: str, key: str, value: float):
    raw = tomllib.loads(GOOD)
    is_pair = _table(table).model_fields[key].annotation is not float  # betas
    raw.setdefault(table, {})[key] = [0.9, value] if is_pair else value
    err = _error(dump_toml(raw))
    assert f"bad value for '{table}.{key}'" in str(err) and "finite" in str(err)


def test_lr_adamw_inf_is_refused_by_the_config():
    err = _error(GOOD.replace("lr_adamw = 1e-3", "lr_adamw = inf"))
    assert "bad value for 'optimizer.lr_adamw': Input should be a finite number" in str(err)
    assert err.line == GOOD.splitlines().index("lr_adamw = 1e-3") + 1


# --- issue 8: settings no trainer reads validate, and `train` refuses them ------------------


def _refusal(text: str) -> str:
    from exe_coder.train.loop import check_supported

    cfg = parse_config(text, "cfg.toml")  # validates
    with pytest.raises(UserError) as info:
        check_supported(cfg)
    return str(info.value)


def test_rl_table_in_an_sft_config_is_refused_naming_its_keys():
    msg = _refusal(GOOD + "\n[rl]\nbeta = 0.02\nrollout_samples = 8\n")
    assert "[rl] beta, rollout_samples would be ignored" in msg and "remove the table" in msg


def test_rl_phase_refuses_the_sft_settings_rl_does_not_read():
    rl = GOOD.replace('phase = "sft"', 'phase = "rl"') + '\n[rl]\nbeta = 0.02\ninit_ckpt = "sft_run"\n'
    assert "prompt_noise = 0.2 is not read by RL" in _refusal(rl.replace("[train]\n", "[train]\nprompt_noise = 0.2\n"))


def test_digit_permutation_is_refused_by_track_b_and_by_rl():
    track_b = GOOD.replace("[data]\n", '[data]\ntrack = "strict_one_shot"\ntarget_mode = "full_hex"\n')
    assert "[train].digit_permutation renames digits in a patch's operands" in _refusal(track_b + "digit_permutation = 0.5\n")
    rl = GOOD.replace('phase = "sft"', 'phase = "rl"') + 'digit_permutation = 0.5\n\n[rl]\nbeta = 0.02\ninit_ckpt = "sft_run"\n'
    assert "digit_permutation = 0.5 is not read by RL" in _refusal(rl)


def test_max_gen_tokens_validates_but_train_refuses_it():
    msg = _refusal(GOOD + "max_gen_tokens = 16\n")
    assert "[train].max_gen_tokens = 16 would be ignored" in msg and "decode_min_int" in msg


@pytest.mark.parametrize(
    "line", ['track = "strict_one_shot"', 'target_mode = "full_hex"'], ids=["track", "target_mode"]
)
def test_a_track_with_the_other_tracks_target_mode_is_refused(line: str):
    msg = _refusal(GOOD.replace("[data]\n", f"[data]\n{line}\n"))
    assert "writes target_mode" in msg and ("'full_hex'" in msg)


def test_shipped_sft_configs_hold_nothing_train_would_ignore():
    from exe_coder.train.loop import check_supported

    checked = []
    for path in SHIPPED:
        cfg = load_config(path)
        if cfg.run.phase == "sft":
            check_supported(cfg)  # raises for a setting train would not read
            checked.append(path.stem)
    assert len(checked) >= 9


# --- command-line overrides (--set TABLE.KEY=VALUE) and what --resume may change ---------------


def test_overrides_set_typed_values_in_order():
    cfg = apply_overrides(parse_config(GOOD), [
        "train.max_steps=3000", "run.seed=7", "run.name=big", "optimizer.betas=[0.9, 0.99]",
        "optimizer.lr_adamw=1e-4", "model.tie_embeddings=false", "data.test_jsonl=data/x/test.jsonl",
        "run.seed=8",  # a later override wins
    ])
    assert (cfg.train.max_steps, cfg.run.seed, cfg.run.name) == (3000, 8, "big")
    assert cfg.optimizer.betas == (0.9, 0.99) and cfg.optimizer.lr_adamw == 1e-4
    assert cfg.model.tie_embeddings is False and cfg.data.test_jsonl == "data/x/test.jsonl"
    assert cfg.to_toml() == parse_config(cfg.to_toml()).to_toml()  # still a config the file form accepts


def test_no_overrides_is_the_same_config():
    cfg = parse_config(GOOD)
    assert apply_overrides(cfg, []) is cfg


@pytest.mark.parametrize(
    "item,words",
    [
        ("train.max_step=3", "unknown key 'train.max_step' (did you mean 'max_steps'?)"),
        ("train.max_steps=abc", "bad value for 'train.max_steps': Input should be a valid integer"),
        ("train.max_steps=0", "bad value for 'train.max_steps'"),
        ("model.layers=2.5", "bad value for 'model.layers'"),
        ("model.layers=\"2\"", "bad value for 'model.layers'"),  # not converted, as in the file
        ("optimizer.lr_adamw=inf", "bad value for 'optimizer.lr_adamw'"),
        ("trian.max_steps=3", "unknown table 'trian' (did you mean 'train'?)"),
        ("max_steps=3", "expected TABLE.KEY=VALUE"),
        ("train.max_steps", "expected TABLE.KEY=VALUE"),
        ("data.decode_min_int=500", "decode_min_int must not exceed decode_max_int"),
    ],
)
def test_a_bad_override_is_one_line_naming_it(item: str, words: str):
    with pytest.raises(UserError) as err:
        apply_overrides(parse_config(GOOD), ["run.seed=1", item, "run.seed=2"])
    message = str(err.value)
    assert message.startswith(f"--set {item!r}: ") and words in message and "\n" not in message


def test_overrides_that_depend_on_each_other_may_come_in_any_order():
    ckpt = 'init.warmstart_ckpt="outputs/checkpoints/x"'
    for order in (['init.mode="warmstart"', ckpt], [ckpt, 'init.mode="warmstart"']):
        cfg = apply_overrides(parse_config(GOOD), order)
        assert (cfg.init.mode, cfg.init.warmstart_ckpt) == ("warmstart", "outputs/checkpoints/x")
    with pytest.raises(UserError, match=r"^--set 'init.mode=\"warmstart\"': .*needs warmstart_ckpt"):
        apply_overrides(parse_config(GOOD), ['init.mode="warmstart"', "run.seed=3"])


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(min_value=1, max_value=10**9), seed=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integer_overrides_round_trip(steps: int, seed: int):
    cfg = apply_overrides(parse_config(GOOD), [f"train.max_steps={steps}", f"run.seed={seed}"])
    assert (cfg.train.max_steps, cfg.run.seed) == (steps, seed)


def test_resume_may_change_only_the_allow_listed_keys():
    saved = parse_config(GOOD)
    longer = apply_overrides(saved, ["train.max_steps=3000", "train.eval_interval=7", "run.output_dir=elsewhere"])
    assert resumable_differences(saved, longer) == []
    changed = apply_overrides(longer, ["run.seed=9", "optimizer.lr_adamw=0.5", "model.dropout=0.1"])
    assert resumable_differences(saved, changed) == ["model.dropout", "optimizer.lr_adamw", "run.seed"]
    with_rl = parse_config(GOOD + "\n[rl]\nbeta = 0.5\n")
    assert "rl.beta" in resumable_differences(saved, with_rl)


@pytest.mark.parametrize("key", RESUMABLE_KEYS)
def test_every_resumable_key_is_a_real_key(key: str):
    table, name = key.split(".")
    assert name in TrainConfig.model_fields[table].annotation.model_fields


def test_later_model_keys_are_dumped_only_when_used():
    """A config that leaves the session-8 [model] keys at their defaults dumps (and hashes) as it
    did before they existed, so its finished runs resume and its seeds group in compare; a config
    that sets them keeps them through a dump and parse."""
    from exe_coder.model.config import LATER_KEYS

    plain = load_config(CONFIGS_DIR / "sft_stage1a_template_shift.toml")
    assert not any(key in plain.to_toml() for key in LATER_KEYS)
    assert parse_config(plain.to_toml()) == plain
    used = load_config(CONFIGS_DIR / "sft_stage1b_text_trackb.toml")
    assert "max_number_ordinal = 16" in used.to_toml() and 'output_ordinals = "restart"' in used.to_toml()
    assert parse_config(used.to_toml()) == used
    signed = plain.model_copy(update={"model": plain.model.model_copy(update={"signed_numbers": True})})
    assert "signed_numbers = true" in signed.to_toml() and parse_config(signed.to_toml()) == signed


def test_target_order_is_dumped_only_when_set():
    plain = parse_config(GOOD)
    assert "target_order" not in plain.to_toml() and plain.data.target_order == "as_given"
    ordered = parse_config(GOOD.replace("decode_max_int = 200", 'decode_max_int = 200\ntarget_order = "prompt"'))
    assert 'target_order = "prompt"' in ordered.to_toml() and parse_config(ordered.to_toml()) == ordered
    assert ordered.sha256() != plain.sha256()
    text = GOOD.replace("decode_max_int = 200", 'decode_max_int = 200\ntarget_order = "sorted"')
    err = _error(text)
    assert "target_order" in str(err) and err.line is not None


def test_a_seeded_chain_starts_each_seed_from_its_own_start_and_is_one_family():
    """``{seed}`` in warmstart_ckpt names seed N's start; the start's own seed suffix is a label in
    the family hash, so seeds 1 and 2 (from <start>_seed1, _seed2) group with the seed whose start
    has no suffix, and a start of another seed does not."""
    from exe_coder.train.runcard import config_hashes

    base = load_config(CONFIGS_DIR / "sft_stage1b_text_trackb.toml")
    start = base.init.warmstart_ckpt

    def family(seed: int, ckpt: str) -> str:
        return config_hashes(apply_overrides(base, [f"run.seed={seed}", f'init.warmstart_ckpt="{ckpt}"']))[1]

    seeded = apply_overrides(base, ["run.seed=2", f'init.warmstart_ckpt="{start}_seed{{seed}}"'])
    assert seeded.init.start_checkpoint(seeded.run.seed) == f"{start}_seed2"
    assert family(base.run.seed, start) == family(1, f"{start}_seed1") == family(2, f"{start}_seed{{seed}}")
    assert family(1, f"{start}_seed2") != family(base.run.seed, start)
    with pytest.raises(UserError, match=r"the one placeholder it may hold is \{seed\}"):
        apply_overrides(base, [f'init.warmstart_ckpt="{start}_{{name}}"'])


def test_rl_seeds_started_from_their_sft_seeds_by_name_or_placeholder_are_one_family():
    """RL seed N starts from SFT seed N, written as "<sft>_seed{seed}" or, as sessions 29-33 ran
    it, the path itself: both are one recipe, so compare groups them; another seed's start is not."""
    from exe_coder.train.runcard import config_hashes

    base = load_config(CONFIGS_DIR / "rl_mainline.toml")
    start = base.rl.init_ckpt

    def family(seed: int, ckpt: str) -> str:
        return config_hashes(apply_overrides(base, [f"run.seed={seed}", f'rl.init_ckpt="{ckpt}"']))[1]

    assert family(base.run.seed, start) == family(1, f"{start}_seed1") == family(2, f"{start}_seed{{seed}}")
    assert family(1, f"{start}_seed2") != family(1, f"{start}_seed1")
    assert family(1, "outputs/checkpoints/other_seed1") != family(1, f"{start}_seed1")
