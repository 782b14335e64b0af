"""`exe-coder train` from the outside, and the optimised-BLAS re-exec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _train_fixtures import tiny_config, write_dataset
from exe_coder.paths import CONFIGS_DIR, REPO_ROOT
from exe_coder.train import blas


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "exe_coder.cli", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_missing_data_is_one_line_naming_the_build_command(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    text = (CONFIGS_DIR / "sft_stage0_overfit.toml").read_text()
    cfg.write_text(text.replace('"data/processed/stage0/', f'"{tmp_path}/nowhere/stage0/'))
    proc = _cli("train", "--config", str(cfg), "-o", str(tmp_path / "run"), "--no-eval-hook",
                env_extra={"EXE_CODER_NO_BLAS_PRELOAD": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {tmp_path}/nowhere/stage0/train.jsonl: ")
    assert "exe-coder build stage0" in lines[0]
    assert not (tmp_path / "run").exists()


def test_unknown_key_exits_2_with_file_and_line(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    text = (CONFIGS_DIR / "sft_stage0_overfit.toml").read_text().replace("[train]\n", "[train]\nbatchsize = 3\n")
    cfg.write_text(text)
    proc = _cli("train", "--config", str(cfg), env_extra={"EXE_CODER_NO_BLAS_PRELOAD": "1"})
    line_no = text.splitlines().index("batchsize = 3") + 1
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {cfg}:{line_no}: unknown key 'train.batchsize' (did you mean 'batch_size'?)"


def test_rl_config_trains_rl_and_a_missing_sft_start_is_one_line(tmp_path: Path):
    missing = tmp_path / "no_sft_run"
    proc = _cli("train", "--config", str(CONFIGS_DIR / "rl_mainline.toml"), "--set", f'rl.init_ckpt="{missing}"',
                "-o", str(tmp_path / "run"), env_extra={"EXE_CODER_NO_BLAS_PRELOAD": "1"})
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {missing}: checkpoint not found"


def test_rl_refuses_more_ranks_than_rollout_chunks(tmp_path: Path):
    """rl_mainline: 16 prompts x 8 samples a step, 4 groups a chunk -- 4 ranks at most."""
    proc = _cli("train", "--config", str(CONFIGS_DIR / "rl_mainline.toml"), "--ranks", "5",
                "-o", str(tmp_path / "run"), env_extra={"EXE_CODER_NO_BLAS_PRELOAD": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --ranks 5 exceeds the 4 rollout chunks of an RL step "
                                   "([rl].prompts_per_step = 16 groups, 4 a chunk): every rank needs a chunk")
    assert not (tmp_path / "run").exists()


def test_train_command_runs_with_overrides(tmp_path: Path):
    data = write_dataset(tmp_path)
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(tiny_config(data, tmp_path / "ignored").to_toml())
    out = tmp_path / "run"
    proc = _cli("train", "--config", str(cfg_path), "--set", "train.max_steps=9", "--max-steps", "6",
                "--set", "run.seed=3", "--seed", "5", "--set", "train.log_interval=2", "-o", str(out), "--no-eval-hook")
    assert proc.returncode == 0, proc.stderr
    assert "6 steps" in proc.stdout  # a shorthand wins over a --set of its key
    assert (out / "best_weights.safetensors").is_file() and not (tmp_path / "ignored").exists()
    saved = (out / "config.toml").read_text()
    assert "max_steps = 6" in saved and "seed = 5" in saved and "log_interval = 2" in saved
    # again into the same folder (the old --out-dir spelling still works): refused, then replaced with --force
    again = ("train", "--config", str(cfg_path), "--max-steps", "4", "--out-dir", str(out), "--no-eval-hook")
    proc = _cli(*again)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "warning: --out-dir is deprecated; use -o/--out",
        f"error: {out}: holds an earlier run; continue it with --resume or replace it with --force",
    ]
    assert (out / "0000006_weights.safetensors").is_file()
    proc = _cli(*again, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "4 steps" in proc.stdout and not (out / "0000006_weights.safetensors").exists()


def test_output_dir_that_is_a_file_is_one_line(tmp_path: Path):
    data = write_dataset(tmp_path)
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(tiny_config(data, tmp_path / "run").to_toml())
    (tmp_path / "run").write_text("a file")
    proc = _cli("train", "--config", str(cfg_path), "--no-eval-hook", env_extra={"EXE_CODER_NO_BLAS_PRELOAD": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'run'}: the output folder is a file; give a folder for the run"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is a Linux mechanism")
class TestBlasReexec:
    def _capture(self, monkeypatch):
        calls = []
        monkeypatch.setattr(blas.os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
        return calls

    def test_reexecs_once_with_openblas_preloaded(self, monkeypatch, tmp_path: Path):
        lib = tmp_path / "libopenblas.so.0"
        lib.write_bytes(b"")
        monkeypatch.setattr(blas, "find_openblas", lambda: lib)
        for var in ("LD_PRELOAD", blas.OPT_OUT, blas._REEXECED):
            monkeypatch.delenv(var, raising=False)
        calls = self._capture(monkeypatch)
        blas.ensure_optimized_blas()
        assert len(calls) == 1
        exe, argv, env = calls[0]
        assert exe == sys.executable and argv[1:] == sys.orig_argv[1:]
        assert env["LD_PRELOAD"] == str(lib) and env[blas._REEXECED] == "1"

    def test_opt_out_and_already_preloaded_do_nothing(self, monkeypatch, tmp_path: Path):
        monkeypatch.setattr(blas, "find_openblas", lambda: tmp_path / "libopenblas.so.0")
        calls = self._capture(monkeypatch)
        monkeypatch.setenv(blas.OPT_OUT, "1")
        blas.ensure_optimized_blas()
        monkeypatch.delenv(blas.OPT_OUT)
        monkeypatch.setenv("LD_PRELOAD", "/x/libopenblas.so.0")
        blas.ensure_optimized_blas()
        assert calls == []

    def test_says_once_which_package_to_install(self, monkeypatch):
        monkeypatch.setattr(blas, "find_openblas", lambda: None)
        for var in ("LD_PRELOAD", blas.OPT_OUT, blas._REEXECED):
            monkeypatch.delenv(var, raising=False)
        calls = self._capture(monkeypatch)
        lines = []
        blas.ensure_optimized_blas(lines.append)
        assert calls == [] and len(lines) == 1 and "libopenblas0-pthread" in lines[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "train.max_step=3"], "error: --set 'train.max_step=3': unknown key 'train.max_step' (did you mean 'max_steps'?)"),
        (["--set", "run.seed=x7"], "error: --set 'run.seed=x7': bad value for 'run.seed': Input should be a valid integer"),
        (["-o", "a", "--out-dir", "b"], "error: --out-dir is the old spelling of -o/--out; give one of them"),
    ],
)
def test_a_bad_override_is_one_line_and_nothing_is_written(tmp_path: Path, args: list[str], message: str):
    data = write_dataset(tmp_path)
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(tiny_config(data, tmp_path / "run").to_toml())
    proc = _cli("train", "--config", str(cfg_path), *args, "--no-eval-hook", env_extra={"EXE_CODER_NO_BLAS_PRELOAD": "1"})
    assert proc.returncode == 2 and proc.stderr.strip() == message
    assert not (tmp_path / "run").exists()
