"""One inference result as written by ``exe-coder infer`` and read by ``exe-coder evaluate``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from exe_coder.dataset.records import Example
from exe_coder.runtime.outcome import Outcome


class Latency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generate_ms: float = 0.0
    reconstruct_ms: float = 0.0
    verify_ms: float = 0.0


class Prediction(BaseModel):
    """The verifier's ``Outcome`` is carried whole (kind, rule, detail, stdout, exit code,
    native), so evaluation asks the Outcome its facts instead of re-deriving them from a label."""

    model_config = ConfigDict(extra="forbid")

    example: Example  # the gold record, copied whole so a report needs no other file
    mode: str  # sft_patch_model | oracle | regex_baseline | ...
    text: str  # what the model (or baseline) produced, verbatim
    parsed: bool  # text is a sentence of the decode grammar
    a: int | None = None  # predicted operands when parsed
    b: int | None = None
    binary_sha256: str | None = None  # of the reconstructed binary, when one was made
    exact_byte_match: bool = False  # reconstructed bytes == golden bytes
    outcome: Outcome  # the verdict; parse_error when no binary was made
    track: str = "template_delta_operand_patch"  # the track that realized ``text`` (Track B: strict_one_shot)
    latency: Latency = Latency()

    @property
    def answer_correct(self) -> bool:
        """The binary printed the gold ``a+b`` of the prompt (not of the predicted operands)."""
        return self.outcome.answers(self.example.expected_stdout)

    @property
    def patch_exact(self) -> bool:
        return self.parsed and self.a == self.example.a and self.b == self.example.b

    @property
    def operands_match(self) -> bool:
        """The two gold operands in either order: a run trained to write them in the prompt's
        order (``target_order = "prompt"``) is not counted wrong on a b-first phrasing."""
        if not self.parsed or self.a is None or self.b is None:
            return False
        return sorted((self.a, self.b)) == sorted((self.example.a, self.example.b))
