"""A run's folder: a fresh run never lands on an earlier one unless forced, and then it starts
clean; the bookkeeping files are strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from exe_coder.errors import UserError
from exe_coder.train import run_dir
from exe_coder.train.loop import metrics_line

RUN_FILES = [
    "config.toml", "metrics.jsonl", "run.json", "training_state.safetensors", "latest_weights.safetensors",
    "best_weights.safetensors", "0000100_weights.safetensors", "0000200_weights.safetensors",
    ".latest_weights.k3j2.tmp.safetensors",
]


def _folder(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text("x")
    return root


def _strict(text: str):
    def refuse(token: str):
        raise AssertionError(f"bare {token} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_new_or_empty_or_foreign_folder_needs_nothing_cleared(tmp_path: Path):
    assert run_dir.files_to_replace(tmp_path / "new", force=False) == []
    assert run_dir.files_to_replace(_folder(tmp_path / "empty", []), force=False) == []
    assert run_dir.files_to_replace(_folder(tmp_path / "foreign", ["notes.txt"]), force=False) == []


def test_an_earlier_run_is_refused_without_force(tmp_path: Path):
    out = _folder(tmp_path / "run", RUN_FILES)
    with pytest.raises(UserError) as info:
        run_dir.files_to_replace(out, force=False)
    assert str(info.value) == f"{out}: holds an earlier run; continue it with --resume or replace it with --force"
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)  # nothing touched


def test_force_clears_exactly_the_run_files(tmp_path: Path):
    out = _folder(tmp_path / "run", RUN_FILES)
    doomed = run_dir.files_to_replace(out, force=True)
    assert sorted(p.name for p in doomed) == sorted(RUN_FILES)
    run_dir.remove_files(doomed)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "names",
    [
        ["config.toml", "metrics.jsonl", "thesis.tex"],  # a run's files beside someone's
        ["config.toml"],  # e.g. a site's config: a run writes metrics.jsonl at once too
        ["metrics.jsonl", "0000100_weights.safetensors"],  # no config.toml
    ],
    ids=["mixed", "config-only", "no-config"],
)
def test_a_folder_that_is_not_a_run_folder_is_never_cleared(tmp_path: Path, names: list[str]):
    out = _folder(tmp_path / "d", names)
    for force in (False, True):
        with pytest.raises(UserError, match="does not look like a run folder"):
            run_dir.files_to_replace(out, force=force)
    assert {p.name for p in out.iterdir() if p.is_file()} == set(names)


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path: Path):
    out = tmp_path / "run"
    out.write_text("not a folder")
    for force in (False, True):
        with pytest.raises(UserError) as info:
            run_dir.files_to_replace(out, force=force)
        assert str(info.value) == f"{out}: the output folder is a file; give a folder for the run"


def test_training_state_json_is_strict_before_any_eval():
    state = run_dir.TrainingState(step=4)  # best_val_loss is inf until the first eval
    data = _strict(state.to_json())
    assert data["best_val_loss"] is None
    assert run_dir.TrainingState.from_json(state.to_json()) == state


def test_metrics_lines_are_strict_json():
    line = metrics_line({"step": 3, "loss": math.nan, "val_loss": math.inf, "lr": -math.inf, "ok": 0.5})
    assert line.endswith("\n") and line.count("\n") == 1
    assert _strict(line) == {"step": 3, "loss": None, "val_loss": None, "lr": None, "ok": 0.5}
