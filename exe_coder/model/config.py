"""The model's configuration: the ``[model]`` table of a training config.

It lives beside the model (as nanoGPT's ``GPTConfig`` and mlx-lm's ``ModelArgs`` do), so the
model and its checkpoints need nothing from ``train/``. ``ConfigTable`` is the rule every config
table follows; ``train/config.py`` builds the rest of the schema on it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator


class ConfigTable(BaseModel):
    """Unknown keys are errors; values keep their TOML type (``layers = true`` or
    ``batch_size = "32"`` is refused, not converted; a float key takes a TOML integer such as
    ``lr_adamw = 1``, which is exact); floats are finite (TOML's ``inf`` and ``nan`` are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    later_keys: ClassVar[tuple[str, ...]] = ()  # keys added after runs were trained without them

    @model_serializer(mode="wrap")
    def _leave_out_later_keys_at_default(self, handler):
        """Keys added after runs were already trained are dumped only when set otherwise, so a
        config that does not use them keeps its TOML text and hashes: its finished runs still
        resume as the same config, and new seeds group with old ones in ``compare``."""
        data = handler(self)
        for key in self.later_keys:
            if getattr(self, key) == type(self).model_fields[key].default:
                data.pop(key, None)
        return data


# [model] keys of session 8, all refinements of number_positions
LATER_KEYS = ("max_number_ordinal", "output_ordinals", "signed_numbers")


class ModelConfig(ConfigTable):
    later_keys = LATER_KEYS
    layers: int = Field(ge=1, le=64)
    hidden_size: int = Field(ge=8)
    heads: int = Field(ge=1)
    seq_len: int = Field(ge=8)  # longest sequence (prompt + target) the model accepts
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Additive to the seed's schema. Shipped Track A configs use digit_positions + number_positions
    # + relu2 with NoPE (stages 0-2) or partial RoPE (stage3: words need word order), measured
    # best; defaults stay as before so a config without the keys keeps its meaning.
    mlp_ratio: int = Field(default=4, ge=1)
    position: Literal["rope", "learned", "none"] = "rope"
    rope_theta: float = Field(default=10000.0, gt=0.0)
    rope_fraction: float = Field(default=1.0, gt=0.0, le=1.0)  # share of each head's dims RoPE rotates
    tie_embeddings: bool = True
    digit_positions: bool = False  # embed each digit's place in its number (see model/transformer.py)
    number_positions: bool = False  # embed each digit's number's ordinal in the sequence
    max_number_ordinal: int = Field(default=8, ge=1, le=64)  # numbers past this share one embedding
    # "restart": the numbers after SEP (the model's output) are counted from 1 again (Track B)
    output_ordinals: Literal["continue", "restart"] = "continue"
    signed_numbers: bool = False  # a '-' or '−' right before a prompt number carries that number's ordinal
    digit_ends: bool = False  # prompt digits also know their place from the number's end (see transformer.py)
    activation: Literal["gelu", "relu2"] = "gelu"  # relu2 is far cheaper on the CPU (see transformer.py)

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads {self.heads}")
        if self.position == "rope" and (self.hidden_size // self.heads) % 2:
            raise ValueError("rope needs an even head dimension (hidden_size / heads)")
        if not self.number_positions and any(getattr(self, k) != type(self).model_fields[k].default for k in LATER_KEYS):
            raise ValueError(f"{', '.join(LATER_KEYS)} shape number_positions; set number_positions = true")
        return self
