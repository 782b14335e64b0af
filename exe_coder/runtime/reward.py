"""The reward contract (seed README, "RL Plan"): the one definition RL optimises and evaluation reports.

    reward = 1.0*is_valid_macho + 1.0*exec_ok + 2.0*stdout_correct - 1.0*timeout_or_crash - beta*kl_to_sft

Every flag is asked of the verifier's ``Outcome`` (its properties are the only definitions of
those facts); ``stdout_correct`` is the gold answer check, ``Outcome.answers(expected_stdout)``,
the same one ``answer_accuracy`` uses. It lives here, below decode, so that both ``train/rl.py``
and ``evaluate/metrics.py`` import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from exe_coder.runtime.outcome import Outcome

REWARD_WEIGHTS = {"is_valid_macho": 1.0, "exec_ok": 1.0, "stdout_correct": 2.0, "timeout_or_crash": -1.0}


@dataclass(frozen=True)
class RewardParts:
    """The contract's terms for one binary; ``total`` is the reward."""

    is_valid_macho: bool
    exec_ok: bool
    stdout_correct: bool
    timeout_or_crash: bool
    kl_to_sft: float = 0.0
    beta: float = 0.0

    @property
    def verifier(self) -> float:
        """The verifier's part: the reward without the KL term."""
        return sum(w * getattr(self, k) for k, w in REWARD_WEIGHTS.items())

    @property
    def total(self) -> float:
        return self.verifier - self.beta * self.kl_to_sft

    def to_dict(self) -> dict:
        return {**asdict(self), "verifier": self.verifier, "reward": self.total}


def reward_parts(outcome: Outcome, expected_stdout: str, beta: float = 0.0, kl_to_sft: float = 0.0) -> RewardParts:
    return RewardParts(
        is_valid_macho=outcome.is_valid_macho,
        exec_ok=outcome.exec_ok,
        stdout_correct=outcome.answers(expected_stdout),
        timeout_or_crash=outcome.timeout_or_crash,
        kl_to_sft=kl_to_sft,
        beta=beta,
    )


def reward(outcome: Outcome, expected_stdout: str, beta: float = 0.0, kl_to_sft: float = 0.0) -> float:
    """The contract's reward for one verdict against the gold stdout."""
    return reward_parts(outcome, expected_stdout, beta, kl_to_sft).total
