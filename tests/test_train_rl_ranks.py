"""RL on data-parallel ranks (issue 13): 1 rank == 2 ranks (curve, weights, every rollout),
whole chunks a rank, 2-rank resume == an uninterrupted 2-rank run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _train_fixtures import curve, rl_config, rl_toy, weights
from exe_coder.errors import UserError
from exe_coder.train.distributed import train_on_ranks
from exe_coder.train.rl import RLResult, rank_groups, rollout_chunks

RTOL = 1e-4  # float reduction order and per-rank padding of the teacher-forced forward
# figures counted from the verifier's verdicts: the same samples give exactly the same values
EXACT = {"step", "verifier_reward", "is_valid_macho", "exec_ok", "stdout_correct", "timeout_or_crash",
         "pass_rate", "signal_groups", "completion_tokens", "answer_accuracy"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    return rl_toy(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory) -> dict[int, Path]:
    data, sft = toy
    out = {}
    for n in (1, 2):  # with the eval hook: rank 0 evaluates while rank 1 waits in the next gather
        out[n] = tmp_path_factory.mktemp(f"rl_ranks{n}")
        result = train_on_ranks(rl_config(data, out[n], sft), n)
        assert isinstance(result, RLResult) and result.steps == 6 and result.out_dir == out[n]
        assert result.start_val_answer_accuracy is not None
    return out


def _rollouts(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "rollouts.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("prompts, samples", [(8, 8), (7, 8), (16, 3), (3, 40), (1, 2)])
def test_ranks_share_out_whole_chunks_of_the_step_in_order(prompts: int, samples: int):
    rl = rl_config(Path("d"), Path("o"), None, prompts_per_step=prompts, rollout_samples=samples).rl
    per, chunks = rollout_chunks(rl)
    for size in range(1, chunks + 1):
        shares = [rank_groups(rl, r, size) for r in range(size)]
        assert [g for s in shares for g in s] == list(range(prompts))  # every group once, in order
        assert all(len(s) > 0 and s.start % per == 0 for s in shares)  # whole chunks, none idle


def test_one_and_two_ranks_give_the_same_curve_and_weights(runs):
    one, two = curve(runs[1]), curve(runs[2])
    assert [r["step"] for r in one] == [r["step"] for r in two] == [0, 1, 2, 3, 4, 5, 6]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            if key in EXACT:
                assert a[key] == b[key], (a["step"], key)
            else:
                assert a[key] == pytest.approx(b[key], rel=RTOL, abs=1e-6), (a["step"], key)
    assert one[1]["kl"] == two[1]["kl"] == 0.0  # the first rollouts come from the SFT model itself
    assert len({r["reward"] for r in one[1:]}) > 1  # the policy moved: the comparison is not vacuous
    w1, w2 = weights(runs[1] / "latest_weights.safetensors"), weights(runs[2] / "latest_weights.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        np.testing.assert_allclose(w1[k], w2[k], rtol=RTOL, atol=1e-6, err_msg=k)


def test_two_ranks_write_every_rollout_of_the_step_once(runs):
    one, two = _rollouts(runs[1]), _rollouts(runs[2])
    assert len(one) == len(two) == 6 * 8 * 8
    same = ("step", "example_id", "prompt", "sample", "text", "finished", "outcome", "verifier", "advantage")
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        assert {k: a[k] for k in same} == {k: b[k] for k in same}
        assert a["kl_to_sft"] == pytest.approx(b["kl_to_sft"], rel=RTOL, abs=1e-6)
        assert a["reward"] == pytest.approx(b["reward"], rel=RTOL, abs=1e-6)


def test_only_rank_0_writes_the_run_folder(runs):
    assert sorted(p.name for p in runs[2].iterdir()) == sorted(p.name for p in runs[1].iterdir())
    assert len((runs[2] / "metrics.jsonl").read_text().splitlines()) == 7  # not one line a rank


def test_resume_with_two_ranks_equals_an_uninterrupted_two_rank_run(runs, toy, tmp_path: Path):
    data, sft = toy
    cut = tmp_path / "cut"
    train_on_ranks(rl_config(data, cut, sft), 2, stop_after=4)  # killed after the save at 3
    assert json.loads((cut / "run.json").read_text())["step"] == 3
    train_on_ranks(rl_config(data, cut, sft), 2, resume=True)
    assert curve(cut) == curve(runs[2])
    assert (cut / "rollouts.jsonl").read_text() == (runs[2] / "rollouts.jsonl").read_text()
    a, b = weights(runs[2] / "latest_weights.safetensors"), weights(cut / "latest_weights.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_more_ranks_than_rollout_chunks_is_one_error(toy, tmp_path: Path):
    data, sft = toy
    with pytest.raises(UserError, match=r"--ranks 3 exceeds the 2 rollout chunks of an RL step"):
        train_on_ranks(rl_config(data, tmp_path, sft), 3)
