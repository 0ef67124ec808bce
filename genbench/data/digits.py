"""scikit-learn's bundled 8x8 digits: the embedded default data (no download).

1,797 images with 17 grey levels (0..16). Fixed split from a permutation with
seed 0: 1,257 train, 180 validation, 360 test. Variants: the binary ones of
:data:`~genbench.data.binarize.BINARIZATIONS` on intensities x/16, and
``integer`` (the 17-level images as a discrete data space).
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from ..core.errors import ConfigError
from .binarize import BINARIZATIONS, binarize_splits
from .base import DataSpace, TensorDataModule, seeded_split

SPLIT_SIZES = {"train": 1257, "val": 180, "test": 360}
VARIANTS = (*BINARIZATIONS, "integer")


class DigitsDataModule(TensorDataModule):
    name = "digits"

    def __init__(self, variant: str = "dynamic", binarize_seed: int = 0, **kw):
        super().__init__(**kw)
        if variant not in VARIANTS:
            raise ConfigError(f"unknown digits variant {variant!r}; valid: {', '.join(VARIANTS)}")
        self._variant, self.binarize_seed = variant, binarize_seed

    @property
    def variant(self) -> str:
        return f"digits/{self._variant}"

    def space(self) -> DataSpace:
        if self._variant == "integer":
            return DataSpace("discrete", (1, 8, 8), levels=17)
        return DataSpace("binary", (1, 8, 8))

    def load(self):
        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).reshape(-1, 1, 8, 8)
        labels = torch.as_tensor(bunch.target)
        index = seeded_split(len(images), SPLIT_SIZES, seed=0)
        self.split_labels = {k: labels[i] for k, i in index.items()}
        if self._variant == "integer":
            return {k: images[i] for k, i in index.items()}
        splits, self.train_transform = binarize_splits({k: images[i] / 16 for k, i in index.items()},
                                                       self._variant, self.binarize_seed)
        return splits
