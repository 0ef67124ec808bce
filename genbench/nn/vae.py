"""Networks and observation models of the VAE family (Kingma & Welling 2014; Burda, Grosse & Salakhutdinov 2016).

* :class:`Conditional`: the parameter network of one conditional distribution: a trunk of hidden layers
  (:func:`genbench.nn.blocks.mlp`) and one linear head per parameter. A Gaussian latent layer has heads
  ``mean`` and ``log_sigma``, σ = exp(head), the exponential on the predicted *standard deviation* as in the
  IWAE code (``iwae.py``; the paper's text says "variances").
* Observation models p(x | h) on the data's own values: :class:`BernoulliObservation` (binary data, logits and
  BCE-with-logits), :class:`GaussianObservation` (continuous vectors), :class:`LogisticObservation` (integers
  {0, …, L−1}: the discretized logistic, an exact pmf, :func:`discretized_logistic_log_prob`).
* :func:`glorot_uniform_`: the IWAE code's initialisation (``nnet.py``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.bernoulli import base_rates, bernoulli
from .blocks import mlp

LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag σ²) summed over the last dimension, σ = exp(log_sigma) (shapes broadcast)."""
    return (-0.5 * ((x - mean) * torch.exp(-log_sigma)).pow(2) - log_sigma - 0.5 * LOG_2PI).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(-1)


def log1mexp(u: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(u)) for u < 0, accurate at both ends (Mächler 2012); each branch sees only its own inputs,
    so neither puts a NaN into the other's gradient."""
    small = u > -math.log(2)
    near = torch.log(-torch.expm1(torch.where(small, u, -1.0)))
    far = torch.log1p(-torch.exp(torch.where(small, -1.0, u)))
    return torch.where(small, near, far)


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                  levels: int) -> torch.Tensor:
    """log P(X = x), elementwise, for integers x ∈ {0, …, L−1}: the mass of logistic(mean, s) on [x − ½, x + ½],
    the first bin extended to −∞ and the last to +∞, so the L masses sum to one exactly (PixelCNN++'s pixel
    model in pixel units; ``mean`` and s = exp(log_scale) in the same units as x).

    With a = (x − ½ − mean)/s and b = a + 1/s, σ(b) − σ(a) = σ(b)·σ(−a)·(1 − e^{−1/s}), so every bin is a sum
    of three logs with no difference of nearly equal numbers (no fallback to the density is needed); the
    first bin keeps only log σ(b), the last only log σ(−a).
    """
    inv_s = torch.exp(-log_scale)
    a = (x - 0.5 - mean) * inv_s
    b = (x + 0.5 - mean) * inv_s
    not_first, not_last = (x > 0).to(a.dtype), (x < levels - 1).to(a.dtype)
    return not_last * F.logsigmoid(b) + not_first * F.logsigmoid(-a) + not_first * not_last * log1mexp(-inv_s)


_FLUSHING = [False]  # the state set through this module (torch has no getter; off is its default)


def set_flush_denormals(on: bool) -> bool:
    """Read floats below 1.2e-38 as zero (x86 FTZ/DAZ) or stop doing so; returns the previous state. A VAE trains
    and scores with it on: the logits of pixels that are never on drift towards −∞ for as long as training runs,
    their sigmoids become denormal, and the products of the backward pass ran 3–4× slower on them (measured on
    MNIST, k = 50)."""
    before, _FLUSHING[0] = _FLUSHING[0], bool(on)
    torch.set_flush_denormal(bool(on))
    return before


@contextmanager
def flushing_denormals():
    """:func:`set_flush_denormals` on inside, as it was afterwards (e.g. still on when scored during training)."""
    before = set_flush_denormals(True)
    try:
        yield
    finally:
        set_flush_denormals(before)


@torch.no_grad()
def glorot_uniform_(module: nn.Module) -> nn.Module:
    """Every linear weight ~ U(±√(6 / (fan_in + fan_out))), biases 0 (the IWAE code's ``nnet.py``; batch norm, if
    any, keeps γ = 1, β = 0). The code draws every layer from ``RandomState(123)``; here each layer is drawn from
    the run's seeded stream, so same-shaped layers do not start identical."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                m.bias.zero_()
    return module


class Conditional(nn.Module):
    """Parameters of p(· | h): trunk (hidden layers of ``hidden`` units, ``act``, optional batch norm), then one
    linear head of ``d_out`` units per name in ``heads``. No hidden layers: the heads act on h directly."""

    def __init__(self, d_in: int, hidden: Sequence[int], d_out: int, heads: Sequence[str], act: str = "tanh",
                 batch_norm: bool = False):
        super().__init__()
        hidden = list(hidden)
        self.trunk = mlp([d_in, *hidden, 1], act, batch_norm)[:-2] if hidden else nn.Identity()
        width = hidden[-1] if hidden else d_in
        self.heads = nn.ModuleDict({name: nn.Linear(width, d_out) for name in heads})

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = self.trunk(h)
        return tuple(head(t) for head in self.heads.values())


# -- observation models ------------------------------------------------------------------------------------------------

class BernoulliObservation:
    """p(x | h) = Π Bernoulli(x_d; σ(l_d)) on {0, 1}^D, from logits (no probability is ever rounded to 0 or 1)."""

    heads = ("logits",)

    def log_prob(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Σ_d x_d l_d − softplus(l_d) = −BCE-with-logits summed, written so because it is about 1.6× faster on CPU
        (ATen's BCE goes through a scalar log1p); float32 rounding of the two sums is below 1e-3 nats per image."""
        return (x * logits).sum(-1) - F.softplus(logits).sum(-1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        return bernoulli(torch.sigmoid(logits))

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.no_grad()
    def init_bias(self, heads: nn.ModuleDict, train_mean: torch.Tensor) -> None:
        """The IWAE code's output bias: logit of the training means clipped to [0.001, 0.999] (``datasets.py``)."""
        heads["logits"].bias.copy_(torch.logit(base_rates(train_mean.flatten())))


class GaussianObservation:
    """p(x | h) = N(x; μ, diag σ²) on R^D, σ = exp(head) (as the latent layers); a density in the data's units."""

    heads = ("mean", "log_sigma")

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        return normal_log_prob(x, mean, log_sigma)

    def mean(self, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        return mean

    def sample(self, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        return mean + log_sigma.exp() * torch.randn_like(mean)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.no_grad()
    def init_bias(self, heads: nn.ModuleDict, train_mean: torch.Tensor) -> None:
        heads["mean"].bias.copy_(train_mean.flatten())


class LogisticObservation:
    """p(x | h) = Π discretized logistic(x_d; μ_d, s_d) on {0, …, L−1}^D: an exact pmf over the integers.

    The networks work in unit space (x/(L−1) ∈ [0, 1]); the heads give μ and log s there, converted to pixel units
    for the pmf. log s is kept in [−7, 7] (pixel units), a numerical guard only (PixelCNN++ floors it at −7).
    """

    heads = ("mean", "log_scale")

    def __init__(self, levels: int):
        self.levels, self.span = levels, levels - 1

    def _pixels(self, mean, log_scale):
        return mean * self.span, (log_scale + math.log(self.span)).clamp(-7.0, 7.0)

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        mu, log_s = self._pixels(mean, log_scale)
        return discretized_logistic_log_prob(x, mu, log_s, self.levels).sum(-1)

    def mean(self, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """μ clamped to [0, L−1] (the pmf's mean up to the mass the end bins collect), in pixel units."""
        return (mean * self.span).clamp(0, self.span)

    def sample(self, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """A logistic draw rounded to the nearest level and clamped: exactly the discretized distribution."""
        mu, log_s = self._pixels(mean, log_scale)
        u = torch.rand_like(mu).clamp(1e-7, 1 - 1e-7)
        return (mu + log_s.exp() * torch.logit(u)).round().clamp(0, self.span)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.span

    @torch.no_grad()
    def init_bias(self, heads: nn.ModuleDict, train_mean: torch.Tensor) -> None:
        heads["mean"].bias.copy_(train_mean.flatten() / self.span)


def observation_model(space):
    """The observation model of a data space: Bernoulli (binary), Gaussian (continuous), discretized logistic
    (discrete, L levels)."""
    if space.kind == "binary":
        return BernoulliObservation()
    if space.kind == "continuous":
        return GaussianObservation()
    return LogisticObservation(space.levels)
