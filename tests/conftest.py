"""Shared fixtures: every test writes its artefacts under a temporary GENBENCH_HOME."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import REPO


@pytest.fixture(autouse=True)
def genbench_home(tmp_path, monkeypatch):
    """Results, models and logs of a test go to its own folder, which reads no reference results (a test that
    needs them sets GENBENCH_REFERENCE); W&B never goes online."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GENBENCH_HOME", str(home))
    monkeypatch.setenv("GENBENCH_REFERENCE", "none")
    monkeypatch.delenv("GENBENCH_RESULTS", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return home


@pytest.fixture
def configs_copy(tmp_path, monkeypatch):
    """A private copy of configs/ (tests add their own tables to it)."""
    dst = tmp_path / "configs"
    shutil.copytree(REPO / "configs", dst)
    monkeypatch.setenv("GENBENCH_CONFIGS", str(dst))
    return dst


def real_mnist_root() -> Path | None:
    """A data root holding the real MNIST archives (the project's data root or ../shared/data), else None."""
    candidates = [Path(os.environ["GENBENCH_DATA"])] if os.environ.get("GENBENCH_DATA") else []
    candidates += [REPO / "datasets", REPO.parent / "shared" / "data"]
    for root in candidates:
        if (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists() or (root / "mnist" / "train-images-idx3-ubyte.gz").exists():
            return root
    return None


@pytest.fixture
def mnist_root(monkeypatch):
    root = real_mnist_root()
    if root is None:
        pytest.skip("real MNIST not found (put it in datasets/ with `make data-link`, or set GENBENCH_DATA)")
    monkeypatch.setenv("GENBENCH_DATA", str(root))
    return root
