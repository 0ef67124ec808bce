"""Where genbench reads data and writes artefacts.

Data root: the ``root`` given in config, else ``$GENBENCH_DATA``, else
``datasets/``. Artefacts (``results/``, ``models/``) default to the current
directory and move with ``$GENBENCH_HOME`` (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("GENBENCH_HOME", "."))


def data_root(root: str | os.PathLike | None = None) -> Path:
    if root:
        return Path(root)
    if os.environ.get("GENBENCH_DATA"):
        return Path(os.environ["GENBENCH_DATA"])
    return home() / "datasets"


def results_dir(*parts: str) -> Path:
    return home().joinpath("results", *parts)


def models_dir(*parts: str) -> Path:
    return home().joinpath("models", *parts)


def configs_dir() -> Path:
    """The Hydra config tree shipped beside the package (repository ``configs/``)."""
    env = os.environ.get("GENBENCH_CONFIGS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "configs"
    if here.is_dir():
        return here
    raise FileNotFoundError("genbench's configs/ folder was not found; set GENBENCH_CONFIGS to it")
