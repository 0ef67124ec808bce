"""The continuous-density transforms shared by data, models and evaluators, and the bits/dim conversion.

Each transform (dequantize, rescale, logit) returns the
log-determinant of their Jacobian per example, so a density over the
transformed values converts back to the density of the dequantized pixels:
``log p(x~) = log p(y) + log|dy/dx~|`` (see docs/design.md, "Data spaces").
"""

from __future__ import annotations

import math

import torch


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + u with u ~ U[0, 1)^D: integer pixels become a point in [0, levels)^D (log-det 0).

    ``u`` comes from ``generator`` (torch's global RNG if None): evaluations pass a
    seeded one, so scoring the same model twice gives the same number.
    """
    return x.float() + torch.rand(x.shape, generator=generator, dtype=torch.float32, device=x.device)


def rescale(x: torch.Tensor, scale: float, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = scale * x + shift, with log|dy/dx| = D log|scale| per example."""
    y = x * scale + shift
    d = x[0].numel()
    return y, torch.full((x.shape[0],), d * math.log(abs(scale)), dtype=x.dtype, device=x.device)


def logit_transform(x: torch.Tensor, alpha: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1], with its per-example log-det.

    dy/dx = (1 - 2 alpha) / (p (1 - p)) where p = alpha + (1 - 2 alpha) x.
    """
    p = alpha + (1 - 2 * alpha) * x
    y = torch.log(p) - torch.log1p(-p)
    logdet = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    return y, logdet


def inverse_logit_transform(y: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    return (torch.sigmoid(y) - alpha) / (1 - 2 * alpha)


def nll_in_pixel_units(nll_scaled: torch.Tensor | float, dim: int, scale: float):
    """NLL of the dequantized pixels x~ from the NLL of x' = scale * x~ + shift.

    p(x~) = p(x') * scale^D, so NLL(x~) = NLL(x') - D log(scale). With
    scale = 1/256 ([0,1] data) this adds D ln 256; with 2/256 ([-1,1]) D ln 128.
    """
    return nll_scaled - dim * math.log(scale)


def bits_per_dim(nll_nats, dim: int):
    """bits/dim = NLL / (D ln 2); the NLL must already be in the data space's own units."""
    return nll_nats / (dim * math.log(2))
