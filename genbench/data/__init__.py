"""Shared data modules; see :mod:`genbench.data.base` for what each declares."""

from __future__ import annotations

from typing import Any

from ..core.registry import DATA_MODULES, resolve
from .base import DataInfo, DataSpace, TensorDataModule


def build_datamodule(cfg: dict[str, Any]) -> TensorDataModule:
    """A data module from its config: ``name`` plus the class's keyword arguments."""
    cfg = dict(cfg)
    cls = resolve("data module", DATA_MODULES, cfg.pop("name"))
    return cls(**cfg)


__all__ = ["DATA_MODULES", "DataInfo", "DataSpace", "TensorDataModule", "build_datamodule"]
