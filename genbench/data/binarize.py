"""Binarization: intensities in [0, 1] become {0, 1} data, by one of the protocols the papers use."""

from __future__ import annotations

import torch

from ..core.errors import ConfigError
from .base import dynamic_binarize

BINARIZATIONS = ("dynamic", "fixed", "threshold")


def binarize_splits(
    splits: dict[str, torch.Tensor], variant: str, seed: int
) -> tuple[dict[str, torch.Tensor], object]:
    """Binarize intensity splits (values in [0, 1]) by one of BINARIZATIONS.

    Returns the stored splits and the training transform:

    * ``dynamic`` (Salakhutdinov & Murray 2008; IWAE): the training split keeps
      its intensities and is resampled as Bernoulli(x) each time an example is
      seen; validation and test are one seeded Bernoulli sample, so that all
      models are scored on the same binary test set.
    * ``fixed``: every split is one seeded Bernoulli sample.
    * ``threshold``: x >= 0.5.
    """
    if variant not in BINARIZATIONS:
        raise ConfigError(f"unknown binarization {variant!r}; valid: {', '.join(BINARIZATIONS)}")
    if variant == "threshold":
        return {k: (v >= 0.5).float() for k, v in splits.items()}, None
    gen = torch.Generator().manual_seed(seed)
    sampled = {k: torch.bernoulli(v.float(), generator=gen) for k, v in splits.items()}
    if variant == "fixed":
        return sampled, None
    sampled["train"] = splits["train"].float()
    return sampled, dynamic_binarize
