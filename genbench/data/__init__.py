"""Shared data modules; see :mod:`genbench.data.base` for what each declares."""

from __future__ import annotations

from typing import Any

from ..registry import resolve
from .base import DataInfo, DataSpace, TensorDataModule

DATA_MODULES = {
    "gmm2d": "genbench.data.gmm2d:GMM2DDataModule",
    "two_moons": "genbench.data.toy2d:TwoMoonsDataModule",
    "digits": "genbench.data.digits:DigitsDataModule",
    "mnist": "genbench.data.mnist:MNISTDataModule",
    "cifar10": "genbench.data.images:CIFAR10DataModule",
    "svhn": "genbench.data.images:SVHNDataModule",
}


def build_datamodule(cfg: dict[str, Any]) -> TensorDataModule:
    """A data module from its config: ``name`` plus the class's keyword arguments."""
    cfg = dict(cfg)
    cls = resolve("data module", DATA_MODULES, cfg.pop("name"))
    return cls(**cfg)


__all__ = ["DATA_MODULES", "DataInfo", "DataSpace", "TensorDataModule", "build_datamodule"]
