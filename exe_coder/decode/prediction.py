"""One inference result as written by ``exe-coder infer`` and read by ``exe-coder evaluate``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from exe_coder.dataset.records import Example


class Latency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generate_ms: float = 0.0
    reconstruct_ms: float = 0.0
    verify_ms: float = 0.0


class Prediction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    example: Example  # the gold record, copied whole so a report needs no other file
    mode: str  # sft_patch_model | oracle | regex_baseline | ...
    text: str  # what the model (or baseline) produced, verbatim
    parsed: bool  # text is a sentence of the decode grammar
    a: int | None = None  # predicted operands when parsed
    b: int | None = None
    binary_sha256: str | None = None  # of the reconstructed binary, when one was made
    exact_byte_match: bool = False  # reconstructed bytes == golden bytes
    outcome: str  # Outcome.label: ok, parse_error, invalid_macho:<rule>, bad_signature, ...
    stdout: str = ""
    exit_code: int | None = None
    latency: Latency = Latency()
