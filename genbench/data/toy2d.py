"""Two moons (scikit-learn ``make_moons``), a continuous 2D toy without a closed-form density."""

from __future__ import annotations

import torch
from sklearn.datasets import make_moons

from .base import DataSpace, TensorDataModule
from .gmm2d import SPLIT_SEEDS


class TwoMoonsDataModule(TensorDataModule):
    """Two interleaving half circles with Gaussian noise; splits drawn with fixed, distinct seeds."""

    name = "two_moons"

    def __init__(self, noise: float = 0.05, train_size: int = 100_000, val_size: int = 10_000,
                 test_size: int = 10_000, **kw):
        super().__init__(**kw)
        self.noise = noise
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    @property
    def variant(self) -> str:
        return f"two_moons/noise{self.noise:g}"

    def space(self) -> DataSpace:
        return DataSpace("continuous", (2,))

    def load(self):
        return {k: torch.as_tensor(make_moons(n, noise=self.noise, random_state=SPLIT_SEEDS[k])[0], dtype=torch.float32)
                for k, n in self.sizes.items() if n > 0}
