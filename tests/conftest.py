"""Shared by every test module."""

from __future__ import annotations

import pytest

from exe_coder.train.blas import OPT_OUT


@pytest.fixture(autouse=True)
def _no_blas_reexec(monkeypatch):
    """Commands that run a model re-execute the process with OpenBLAS preloaded on Linux
    (train/blas.py); under CliRunner that would replace the test process itself. The tests of the
    re-exec (test_train_cli.py) clear this again."""
    monkeypatch.setenv(OPT_OUT, "1")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny Example dataset (``_train_fixtures.write_dataset``), one per test module."""
    from _train_fixtures import write_dataset  # lazily: it loads MLX, which most modules never need

    return write_dataset(tmp_path_factory.mktemp("data"))
