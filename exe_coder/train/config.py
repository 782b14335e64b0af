"""The training config: the seed's TOML schema as pydantic models.

Every table forbids unknown keys, so a typo such as ``lr_adam = 3e-4`` is an error that names
the key (and the closest valid one), the file and the line instead of a silently ignored
setting; values keep their TOML types and floats are finite (``model.config.ConfigTable``).
``load_config`` is the one way in; it raises ``UserError`` for every bad file, and
``apply_overrides`` validates command-line ``--set TABLE.KEY=VALUE`` changes the same way. A config that
validates may still hold settings no trainer reads yet (Track B, ``[rl]`` in an SFT config);
``train`` refuses those (``train.loop.check_supported``).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from exe_coder.errors import UserError
from exe_coder.model.config import ConfigTable, ModelConfig


class RunConfig(ConfigTable):
    phase: Literal["sft", "rl"]
    name: str = Field(min_length=1)
    seed: int = 1337
    output_dir: str = Field(min_length=1)


class DataConfig(ConfigTable):
    train_jsonl: str
    val_jsonl: str
    test_jsonl: str | None = None  # optional; used for test-on-best evaluation
    tokenization_mode: Literal["byte"] = "byte"  # prompt bytes + specials; see model/tokenizer.py
    track: Literal["template_delta_operand_patch", "strict_one_shot"] = "template_delta_operand_patch"
    target_mode: Literal["patch_text", "full_hex"] = "patch_text"
    decode_min_int: int
    decode_max_int: int
    # "as_given" writes A=a;B=b (Track B: the image of a then b); "prompt" writes the operands in
    # the order the prompt does (a sum is the same either way), so a phrasing never decides which
    # comes first.
    target_order: Literal["as_given", "prompt"] = "as_given"
    later_keys = ("target_order",)

    @model_validator(mode="after")
    def _bounds(self) -> DataConfig:
        if self.decode_min_int > self.decode_max_int:
            raise ValueError("decode_min_int must not exceed decode_max_int")
        return self


class OptimizerConfig(ConfigTable):
    scheme: Literal["adamw"] = "adamw"
    lr_adamw: float = Field(gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0.0)

    @field_validator("betas", mode="before")
    @classmethod
    def _betas_list(cls, value: object) -> object:
        # TOML has arrays, not tuples; strict mode would refuse the list itself
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _betas(self) -> OptimizerConfig:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError("betas must lie in [0, 1)")
        return self


SEED_PLACEHOLDER = "{seed}"


def _check_seed_placeholder(field: str, path: str) -> None:
    """A start path may hold {seed} and no other placeholder."""
    if re.search(r"[{}]", path.replace(SEED_PLACEHOLDER, "")):
        raise ValueError(f"{field} {path!r}: the one placeholder it may hold is {SEED_PLACEHOLDER}")


def _fill_seed(path: str, seed: int) -> str:
    return path.replace(SEED_PLACEHOLDER, str(seed))


class InitConfig(ConfigTable):
    mode: Literal["scratch", "warmstart", "warmstart_textmix"] = "scratch"
    # the run dir or weights file to start from; "{seed}" in it is replaced by run.seed, so seed N
    # of a chain starts from seed N of the run before (`run-stage --seeds` names it <output_dir>_seedN)
    warmstart_ckpt: str = ""
    # warmstart_textmix: weight of the language-modelling loss on prompt tokens (see train/loop.py)
    textmix_ratio: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _warmstart(self) -> InitConfig:
        if self.mode != "scratch" and not self.warmstart_ckpt:
            raise ValueError(f"mode = {self.mode!r} needs warmstart_ckpt")
        _check_seed_placeholder("warmstart_ckpt", self.warmstart_ckpt)
        if self.mode == "warmstart_textmix" and self.textmix_ratio <= 0.0:
            raise ValueError("mode = 'warmstart_textmix' needs textmix_ratio > 0")
        if self.mode != "warmstart_textmix" and self.textmix_ratio != 0.0:
            raise ValueError("textmix_ratio is only used with mode = 'warmstart_textmix'")
        return self

    def start_checkpoint(self, seed: int) -> str:
        """warmstart_ckpt with its {seed} placeholder filled: the run a run of this seed starts from."""
        return _fill_seed(self.warmstart_ckpt, seed)


class RLConfig(ConfigTable):
    """Group-relative policy gradient from the verifier (``train/rl.py`` documents the algorithm)."""

    beta: float = Field(default=0.01, ge=0.0)  # weight of kl_to_sft in the reward contract
    rollout_samples: int = Field(default=32, ge=2)  # samples a prompt: the group advantages are relative to
    mode: Literal["mainline", "scratch_exploratory"] = "mainline"
    # mainline: the SFT run dir or weights file RL starts from and holds to (KL); "{seed}" in it is
    # replaced by run.seed, so one config starts each seed from that seed's SFT run and the seeds
    # of it share one config hash (`run-stage --seeds` names SFT seed N's folder <output_dir>_seedN)
    init_ckpt: str = ""
    prompts_per_step: int = Field(default=8, ge=1)  # groups a step
    temperature: float = Field(default=1.0, gt=0.0)  # sampling temperature of the rollouts
    advantage: Literal["dr_grpo", "grpo", "rloo"] = "dr_grpo"  # r - mean; (r - mean)/std; leave-one-out
    kl_estimator: Literal["k3", "k2"] = "k3"  # per-token estimate of KL(policy || sft) in the loss
    clip_eps: float = Field(default=0.2, gt=0.0, lt=1.0)  # PPO ratio clip (active when updates_per_rollout > 1)
    updates_per_rollout: int = Field(default=1, ge=1)  # optimizer steps on one step's rollouts
    uncertainty_sampling: bool = True  # draw prompts with probability ~ p(1-p) + uncertainty_eps
    uncertainty_eps: float = Field(default=0.05, gt=0.0)
    pass_rate_ema: float = Field(default=0.5, gt=0.0, le=1.0)  # weight of a prompt's newest group pass rate

    @model_validator(mode="after")
    def _mode(self) -> RLConfig:
        _check_seed_placeholder("init_ckpt", self.init_ckpt)
        if self.mode == "scratch_exploratory" and self.init_ckpt:
            raise ValueError("mode = 'scratch_exploratory' starts from random weights; remove init_ckpt")
        if self.mode == "scratch_exploratory" and self.beta != 0.0:
            raise ValueError("mode = 'scratch_exploratory' has no SFT model to hold to; set beta = 0")
        return self

    def start_checkpoint(self, seed: int) -> str:
        """init_ckpt with its {seed} placeholder filled: the SFT run a run of this seed starts from."""
        return _fill_seed(self.init_ckpt, seed)


class TrainSection(ConfigTable):
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    max_steps: int = Field(ge=1)  # training stops at whichever of max_steps and epochs ends first
    log_interval: int = Field(default=10, ge=1)
    eval_interval: int = Field(default=100, ge=1)
    full_eval_every: int = Field(default=5, ge=1)  # every Nth eval also runs the eval hook
    save_interval: int = Field(default=100, ge=1)
    eval_max_samples: int = Field(default=256, ge=1)
    # Not read: decoding stops at the decode grammar's longest patch (set by [data].decode_min_int
    # and decode_max_int). Kept so older configs still validate; `train` refuses a set value.
    max_gen_tokens: int | None = Field(default=None, ge=1)
    grad_clip_norm: float = Field(default=1.0, gt=0.0)
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    # additive: chance that a prompt byte other than a digit or '-' is replaced by a random one
    prompt_noise: float = Field(default=0.0, ge=0.0, lt=1.0)
    # additive: chance that a training example's digits 1-9 are renamed by a random permutation,
    # in prompt and target alike (only where the target's numbers are digit copies; Track A)
    digit_permutation: float = Field(default=0.0, ge=0.0, le=1.0)
    # additive: that permutation renames 0 too, never into a leading zero (or "-0"), so lone
    # 0 operands appear in training (digit copies only; operands in words keep their zeros)
    digit_permutation_zero: bool = False
    # additive: in training only, each row's digit places and digit ends (the model's digit
    # features) start at 1 + k instead of 1, k uniform in 0..N, so a number longer than any in
    # training still meets trained embeddings (Abacus; see model/transformer.py)
    digit_place_shift: int = Field(default=0, ge=0, le=8)
    # additive: the same for number ordinals (the model's number_positions): in training only,
    # each row's numbers are counted from 1 + k, k uniform in 0..N, so the answer's numbers copy
    # from prompt numbers by their relative ordinal, past a two-number prompt's too
    number_ordinal_shift: int = Field(default=0, ge=0, le=8)
    # additive: evaluate and keep an exponential moving average of the weights with this decay
    # (0: off; 0.999 averages ~the last 1,000 steps); see train/averaging.py. SFT only
    weight_ema: float = Field(default=0.0, ge=0.0, lt=1.0)


class TrainConfig(ConfigTable):
    run: RunConfig
    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    init: InitConfig = InitConfig()
    rl: RLConfig | None = None
    train: TrainSection

    @model_validator(mode="after")
    def _phase(self) -> TrainConfig:
        if self.run.phase == "rl" and self.rl is None:
            raise ValueError("phase = 'rl' needs an [rl] table")
        return self

    def to_toml(self) -> str:
        """The config as TOML text (what a run directory keeps beside its weights)."""
        return dump_toml(self.model_dump(mode="json", exclude_none=True))

    def sha256(self) -> str:
        return hashlib.sha256(self.to_toml().encode()).hexdigest()


def parse_config(text: str, path: str | Path = "<config>") -> TrainConfig:
    """Validate TOML text; every problem becomes one ``UserError`` naming key, file and line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(err))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
        raise UserError(
            f"invalid TOML: {msg}",
            path,
            int(m.group(1)) if m else None,
            int(m.group(2)) if m else None,
        ) from None
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        what, loc = _describe(err)
        raise UserError(what, path, _line_of(text, loc)) from None


def _describe(err: ValidationError) -> tuple[str, list[str]]:
    """The first problem of a failed validation, as a phrase, and the key path it concerns."""
    errors = err.errors()
    # a mistyped key also makes its correct spelling "missing": name the cause, not the symptom
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
    key = ".".join(loc) or "<top level>"
    if first["type"] == "extra_forbidden":
        what = f"unknown key '{key}'"
        close = difflib.get_close_matches(loc[-1], _keys_of(loc[:-1]), n=1)
        if close:
            what += f" (did you mean '{close[0]}'?)"
    elif first["type"] == "missing":
        what = f"missing key '{key}'"
    else:
        what = f"bad value for '{key}': {first['msg']}"
    return what, loc


_OVERRIDE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", re.DOTALL)


def _override_value(text: str) -> object:
    """A TOML value (``3000``, ``1e-4``, ``true``, ``[0.9, 0.99]``, ``"x"``); anything that is
    not one is taken as a bare string, as ``--set run.name=big`` means."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def apply_overrides(config: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """``config`` with each ``TABLE.KEY=VALUE`` set in order (a later one wins), validated as the
    file is: strict types, unknown keys refused. A bad override is a ``UserError`` naming it.
    Validation runs once all are set, so keys that depend on each other may come in any order
    (``init.mode=warmstart`` before ``init.warmstart_ckpt=...``)."""
    if not overrides:
        return config
    raw = config.model_dump(mode="python", exclude_none=True)
    applied: list[tuple[str, str, str]] = []  # (item, table, key)
    for item in overrides:
        m = _OVERRIDE.match(item)
        if m is None:
            raise UserError(f"--set {item!r}: expected TABLE.KEY=VALUE, e.g. train.max_steps=3000")
        table, key, value = m.group(1), m.group(2), _override_value(m.group(3))
        if table not in TrainConfig.model_fields:
            close = difflib.get_close_matches(table, list(TrainConfig.model_fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"--set {item!r}: unknown table '{table}'{hint}")
        raw.setdefault(table, {})[key] = value
        applied.append((item, table, key))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        what, loc = _describe(err)
        # the culprit: the last override of the key at fault, else of its table (a rule across keys)
        culprit = next((i for i, t, k in reversed(applied) if [t, k] == loc[:2]), None)
        culprit = culprit or next((i for i, t, _ in reversed(applied) if loc[:1] == [t]), applied[-1][0])
        raise UserError(f"--set {culprit!r}: {what}") from None


# Keys ``--resume`` lets change: how long the run goes on and how often it logs, evaluates and
# saves, and where its folder now lies. Every other key changes what the steps compute (the
# data, the model, the optimizer, the seed), so a run resumed with it would be neither run.
# A new length re-spans the learning-rate schedule from the resumed step (train.schedule).
RESUMABLE_KEYS: tuple[str, ...] = (
    "train.max_steps", "train.epochs", "train.log_interval", "train.eval_interval",
    "train.save_interval", "train.full_eval_every", "train.eval_max_samples", "run.output_dir",
)


def _flat(config: TrainConfig) -> dict[str, object]:
    dumped = config.model_dump(mode="json")
    return {
        f"{table}.{key}" if isinstance(values, dict) else table: value
        for table, values in dumped.items()
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)])
    }


def resumable_differences(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """The keys (``table.key``) in which ``new`` differs from the config a run started with,
    other than ``RESUMABLE_KEYS``: empty when ``--resume`` may continue the run with ``new``."""
    a, b = _flat(saved), _flat(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS)


def _keys_of(loc: list[str]) -> list[str]:
    """The valid keys of the table at ``loc`` (the top level when empty)."""
    table: type[BaseModel] = TrainConfig
    for part in loc:
        annotation = table.model_fields[part].annotation
        # ``RLConfig | None`` and the like: the model class among the union's members
        table = next(a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel))
    return list(table.model_fields)


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("config file not found", path) from None
    except UnicodeDecodeError:
        raise UserError("config file is not UTF-8 text", path) from None
    except OSError as err:  # a folder, a file we may not read
        raise UserError(f"cannot read the config file: {err.strerror or err}", path) from None
    return parse_config(text, path)


def _line_of(text: str, loc: list[str]) -> int | None:
    """The line of ``[table]`` ``key = ...`` in the TOML text (tomllib keeps no positions)."""
    if not loc:
        return None
    table, key = loc[0], (loc[1] if len(loc) > 1 else None)
    in_table = False
    table_line = None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([A-Za-z0-9_.\-]+)\s*\]", stripped)
        if header:
            in_table = header.group(1) == table
            if in_table:
                table_line = n
            continue
        if key is None and re.match(rf"^{re.escape(table)}\s*=", stripped) and table_line is None:
            return n  # a top-level key
        if in_table and key is not None and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return n
    return table_line


def dump_toml(data: dict) -> str:
    """A small TOML writer for this schema's value types (tables of scalars and lists)."""

    def scalar(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'

    lines: list[str] = []
    for table, values in data.items():
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {scalar(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)
