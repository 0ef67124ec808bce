"""Shared data modules; see :mod:`genbench.data.base` for what each declares."""

from __future__ import annotations

from typing import Any

from ..core.registry import DATA_MODULES, resolve
from .base import DataInfo, DataSpace, TensorDataModule


def build_datamodule(cfg: dict[str, Any], seed: int | None = None) -> TensorDataModule:
    """A data module from its config: ``name`` plus the class's keyword arguments. A semi-supervised run's labelled
    subset is drawn with the run's ``seed`` unless the config fixes ``labels_seed``: every model given a seed sees
    the same labels."""
    cfg = dict(cfg)
    if cfg.get("labels_per_class") is not None and cfg.get("labels_seed") is None:
        cfg["labels_seed"] = seed
    cls = resolve("data module", DATA_MODULES, cfg.pop("name"))
    return cls(**cfg)


__all__ = ["DATA_MODULES", "DataInfo", "DataSpace", "TensorDataModule", "build_datamodule"]
