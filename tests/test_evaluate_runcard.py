"""The run card (where a number came from) and a checkpoint's model card."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

from _train_fixtures import tiny_config, write_dataset

import exe_coder
from exe_coder.train import runcard
from exe_coder.train.runcard import (
    config_hashes, git_state, make_run_card, model_card_markdown, read_run_card, write_model_card, write_run_card,
)


def test_git_state_of_this_checkout_and_of_no_checkout(tmp_path):
    pkg = Path(exe_coder.__file__).resolve().parent
    commit, dirty = git_state(pkg)
    top = subprocess.run(["git", "-C", str(pkg.parent), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()) == pkg.parent:  # the tests run from a checkout
        assert re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(dirty, bool)
    assert git_state(tmp_path / "site-packages" / "exe_coder") == (None, None)


def test_git_state_ignores_a_repository_the_package_merely_sits_in(tmp_path):
    """An installed copy inside someone's project (a venv in their repo) is not our checkout."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    pkg = tmp_path / ".venv" / "lib" / "site-packages" / "exe_coder"
    pkg.mkdir(parents=True)
    assert git_state(pkg) == (None, None)


def test_config_hash_except_seed_groups_seeds_of_one_config(tmp_path):
    data = write_dataset(tmp_path)
    a = tiny_config(data, tmp_path / "a")
    b = a.model_copy(update={"run": a.run.model_copy(update={"seed": 8, "name": "tiny-s8", "output_dir": "x"})})
    c = a.model_copy(update={"optimizer": a.optimizer.model_copy(update={"lr_adamw": 1e-3})})
    (fa, ra), (fb, rb), (fc, rc) = config_hashes(a), config_hashes(b), config_hashes(c)
    assert fa == a.sha256() and fa != fb and ra == rb
    assert rc != ra  # another learning rate is another config


def test_run_card_for_a_config(tmp_path):
    data = write_dataset(tmp_path)
    cfg = tiny_config(data, tmp_path / "run")
    card = make_run_card(cfg, written_by="train", started="2025-01-01T00:00:00+00:00", phases_s={"train": 3.0})
    assert (card.run_name, card.seed, card.dataset) == ("tiny", 7, str(data))
    assert card.manifest_sha256 == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    assert card.config_sha256 == cfg.sha256() and card.config_sha256_except_seed == config_hashes(cfg)[1]
    assert card.python == ".".join(map(str, sys.version_info[:3])) and card.mlx
    path = write_run_card(tmp_path / "run", card)
    assert path.name == "run_card.json" and read_run_card(tmp_path / "run") == card
    assert read_run_card(tmp_path / "nothing") is None


def test_run_card_names_the_blas_in_use(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    if sys.platform == "darwin":  # MLX runs on Accelerate there; LD_PRELOAD plays no part
        assert make_run_card(written_by="evaluate").blas == "Accelerate (macOS)"
        return
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0")
    card = make_run_card(written_by="evaluate")
    assert card.blas == "OpenBLAS (preloaded /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0)"
    assert card.threads == {"OMP_NUM_THREADS": "2"}
    monkeypatch.delenv("LD_PRELOAD")
    assert runcard.blas_in_use().startswith("reference BLAS")


def test_model_card_says_what_the_checkpoint_is(tmp_path):
    data = write_dataset(tmp_path)
    cfg = tiny_config(data, tmp_path / "run")
    card = make_run_card(cfg, written_by="train", phases_s={"train": 42.0})
    text = model_card_markdown(cfg, card, steps=24, best_step=16, best_val_exact_match=0.8125, best_val_loss=0.1234)
    assert text.startswith("# tiny\n")
    assert f"trained on `{data / 'train.jsonl'}`" in text and "step 16, val exact match 0.8125, val loss 0.1234" in text
    assert "2 layers, hidden 32, 2 heads" in text and "judge the model on test" in text
    assert "wall time: train 42.0 s" in text
    none = model_card_markdown(cfg, card, steps=0, best_step=None, best_val_exact_match=-1.0, best_val_loss=float("inf"))
    assert "step –, val exact match –, val loss –" in none  # no eval yet: no made-up figures
    path = write_model_card(tmp_path / "run", text)
    assert path.name == "README.md" and path.read_text() == text and (path.stat().st_mode & 0o777) == 0o644
