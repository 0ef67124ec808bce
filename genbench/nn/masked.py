"""Masked networks of the autoregressive family and the pixel distributions they output.

* MADE (Germain et al. 2015): :func:`made_degrees` and :func:`made_masks` build one mask set from an input order
  and random hidden degrees, as ``mask_generator.py`` of mgermain/MADE; :class:`MaskedMLP` multiplies its weights
  by the mask set it is given, so one network serves a whole pool of masks.
* PixelCNN (van den Oord et al. 2016): :class:`MaskedConv2d` (type A excludes the centre pixel's own value,
  type B includes it; with several colour channels the features are split in colour groups so that colour c
  sees the colours before it at the same pixel), :class:`ResidualBlock` and :class:`PixelCNNNet`. A plain
  stack of masked convolutions has the blind spot (pixels above-right of a growing wedge are never seen);
  :func:`pixelcnn_receptive_field` computes which pixels it does see.
* Pixel distributions on the data's own values: :class:`BernoulliPixels` (binary), :class:`CategoricalPixels`
  (an L-way softmax over the integers 0…L−1, the 256-way softmax of 8-bit data) and :class:`LogisticMixturePixels`
  (PixelCNN++'s discretized logistic mixture, through :func:`genbench.nn.vae.discretized_logistic_log_prob`). All
  are exact pmfs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.bernoulli import bernoulli
from .blocks import activation
from .vae import discretized_logistic_log_prob

# -- MADE -------------------------------------------------------------------------------------------------------------


def made_degrees(order: torch.Tensor, hidden: Sequence[int], generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Degrees of one MADE mask set: input d has degree 1 + its position in ``order`` (a permutation of 0…D−1);
    a unit of hidden layer l has a degree drawn uniformly from {min degree of layer l−1, …, D−1}, so every unit
    connects to something and none sees every input."""
    d = len(order)
    degrees = [input_degrees(order)]
    for units in hidden:
        degrees.append(torch.randint(int(degrees[-1].min()), d, (units,), generator=generator, device=order.device))
    return degrees


def input_degrees(order: torch.Tensor) -> torch.Tensor:
    """1 + the position of each input in ``order``, on order's device."""
    degrees = torch.empty_like(order)
    degrees[order] = torch.arange(1, len(order) + 1, device=order.device)
    return degrees


def made_masks(degrees: Sequence[torch.Tensor], direct: bool) -> list[torch.Tensor]:
    """The masks ([out, in], {0, 1}) of :class:`MaskedMLP`'s layers: hidden unit k of layer l sees unit k' of layer
    l−1 iff m_l(k) ≥ m_{l−1}(k'); output d sees the last hidden layer's unit k iff m_0(d) > m_L(k); and, with
    ``direct``, input d' iff m_0(d) > m_0(d'). So output d depends only on the inputs before d in the order."""
    masks = [(out[:, None] >= inp[None, :]) for inp, out in zip(degrees[:-1], degrees[1:])]
    masks.append(degrees[0][:, None] > degrees[-1][None, :])
    if direct:
        masks.append(degrees[0][:, None] > degrees[0][None, :])
    return [m.float() for m in masks]


class MaskedMLP(nn.Module):
    """MADE's network: D inputs → ``hidden`` layers (``act``) → D outputs, each weight matrix multiplied by the
    mask given to :meth:`forward`, plus an optional direct input → output layer (no bias)."""

    def __init__(self, d: int, hidden: Sequence[int], direct: bool = True, act: str = "relu"):
        super().__init__()
        sizes = [d, *hidden, d]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.direct = nn.Linear(d, d, bias=False) if direct else None
        self.act = activation(act)

    def forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = F.linear(h, layer.weight * masks[i], layer.bias)
            if i < len(self.layers) - 1:
                h = self.act(h)
        if self.direct is not None:
            h = h + F.linear(x, self.direct.weight * masks[len(self.layers)])
        return h


# -- PixelCNN ---------------------------------------------------------------------------------------------------------


def colour_groups(n: int, colours: int) -> torch.Tensor:
    """The colour group (0…colours−1) of each of n channels: contiguous blocks of n / colours channels, so the
    image's own channels and the output's per-colour parameters fall in the group of their colour."""
    return torch.arange(n) * colours // n


class MaskedConv2d(nn.Conv2d):
    """A same-padded convolution whose kernel sees only the rows above and the pixels to the left on its own
    row; at the centre tap an output of colour group g sees input groups < g (type ``A``) or ≤ g (type ``B``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, mask_type: str, colours: int = 1):
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask type {mask_type!r}; valid: A, B")
        k = kernel // 2
        mask = torch.zeros(c_out, c_in, kernel, kernel)
        mask[:, :, :k] = 1
        mask[:, :, k, :k] = 1
        g_out, g_in = colour_groups(c_out, colours)[:, None], colour_groups(c_in, colours)[None, :]
        mask[:, :, k, k] = (g_in < g_out if mask_type == "A" else g_in <= g_out).float()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    """PixelRNN's residual block for PixelCNN: ReLU → 1×1 (2h → h) → ReLU → k×k mask B (h → h) → ReLU → 1×1
    (h → 2h), added to the input. The 1×1 convolutions are masked too (type B: only the colour groups matter)."""

    def __init__(self, h: int, kernel: int = 3, colours: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), MaskedConv2d(2 * h, h, 1, "B", colours), nn.ReLU(),
                                 MaskedConv2d(h, h, kernel, "B", colours), nn.ReLU(),
                                 MaskedConv2d(h, 2 * h, 1, "B", colours))

    def forward(self, x):
        return x + self.net(x)


class PixelCNNNet(nn.Module):
    """7×7 mask A (C → 2h), ``blocks`` residual blocks, then ReLU → 1×1 mask B (2h → ``head``) → ReLU → 1×1 mask B
    (→ C·P): P parameters of each colour's distribution at every pixel, [B, C, P, H, W]."""

    def __init__(self, colours: int, params: int, h: int = 16, blocks: int = 7, head: int = 32,
                 first_kernel: int = 7, kernel: int = 3):
        super().__init__()
        self.colours, self.params = colours, params
        self.rows_seen = first_kernel // 2 + blocks * (kernel // 2)  # rows above a pixel that reach it
        c = colours
        self.net = nn.Sequential(MaskedConv2d(c, 2 * h, first_kernel, "A", c),
                                 *(ResidualBlock(h, kernel, c) for _ in range(blocks)),
                                 nn.ReLU(), MaskedConv2d(2 * h, head, 1, "B", c), nn.ReLU(),
                                 MaskedConv2d(head, c * params, 1, "B", c))
        self.first_kernel, self.kernel, self.blocks = first_kernel, kernel, blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.view(len(x), self.colours, self.params, *out.shape[2:])


def pixelcnn_receptive_field(first_kernel: int, kernel: int, blocks: int) -> set[tuple[int, int]]:
    """The offsets (Δrow, Δcol) of the input pixels a pixel's output can depend on through :class:`PixelCNNNet`:
    the Minkowski sum of the first layer's mask-A offsets and ``blocks`` mask-B offsets (1×1 layers and the
    residual path add (0, 0), which mask B contains). Computed from the mask shapes alone, independently of the
    convolutions. Every offset is in the past (Δrow < 0, or Δrow = 0 and Δcol < 0), but not every past pixel
    is reached: from one row up, pixels more than ``first_kernel // 2`` + (rows up − 1)·(``kernel`` // 2)
    columns to the right are never seen (the blind spot)."""
    def offsets(k: int, centre: bool) -> set[tuple[int, int]]:
        r = k // 2
        out = {(dr, dc) for dr in range(-r, 0) for dc in range(-r, r + 1)} | {(0, dc) for dc in range(-r, 0)}
        return out | {(0, 0)} if centre else out

    field, step = offsets(first_kernel, False), offsets(kernel, True)
    for _ in range(blocks):
        field = {(a + c, b + d) for a, b in field for c, d in step}
    return field


# -- pixel distributions ----------------------------------------------------------------------------------------------


class BernoulliPixels:
    """Binary pixels from one logit each: log p = x·l − softplus(l)."""

    params = 1

    def log_prob(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Elementwise log p(x), [B, C, H, W], for x [B, C, H, W] and parameters p [B, C, 1, H, W]."""
        logits = p[:, :, 0]
        return x * logits - F.softplus(logits)

    def sample(self, p: torch.Tensor) -> torch.Tensor:
        """One draw per parameter vector, p [..., 1] → [...]."""
        return bernoulli(torch.sigmoid(p[..., 0]))


class CategoricalPixels:
    """Integer pixels 0…L−1 from L logits each (a softmax; L = 256 on 8-bit images)."""

    def __init__(self, levels: int):
        self.params = self.levels = levels

    def log_prob(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(p, 2).gather(2, x.long().unsqueeze(2)).squeeze(2)

    def sample(self, p: torch.Tensor) -> torch.Tensor:
        """Gumbel-max: argmax_v (l_v + Gumbel noise) is a draw from softmax(l)."""
        u = torch.rand_like(p).clamp_(1e-12, 1.0)
        return (p - torch.log(-torch.log(u))).argmax(-1).to(p.dtype)


class LogisticMixturePixels:
    """Integer pixels 0…L−1 from a mixture of K discretized logistics each (PixelCNN++): 3K parameters (mixture
    logits, means, log scales), the means and scales in units of (L−1)/2 around the middle level, as PixelCNN++
    on [−1, 1]; log s is kept ≥ −7 in those units, PixelCNN++'s floor. Colours are independent given the
    network's features (the masks already condition each colour on the ones before it)."""

    def __init__(self, levels: int, components: int = 5):
        self.levels, self.k, self.params = levels, components, 3 * components
        self.half = (levels - 1) / 2

    def _split(self, p: torch.Tensor):
        logit_pi, mean, log_s = p.split(self.k, dim=-1)
        return torch.log_softmax(logit_pi, -1), (mean + 1) * self.half, log_s.clamp(min=-7.0) + math.log(self.half)

    def log_prob(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        log_pi, mean, log_s = self._split(p.movedim(2, -1))  # [B, C, H, W, K]
        return torch.logsumexp(log_pi + discretized_logistic_log_prob(x.unsqueeze(-1), mean, log_s, self.levels), -1)

    def sample(self, p: torch.Tensor) -> torch.Tensor:
        log_pi, mean, log_s = self._split(p)
        u = torch.rand_like(log_pi).clamp_(1e-12, 1.0)
        k = (log_pi - torch.log(-torch.log(u))).argmax(-1, keepdim=True)
        mu, s = mean.gather(-1, k).squeeze(-1), log_s.gather(-1, k).squeeze(-1).exp()
        v = torch.rand_like(mu).clamp_(1e-7, 1 - 1e-7)
        return (mu + s * torch.logit(v)).round().clamp(0, self.levels - 1)
