"""Independent Bernoulli units: the one way genbench draws them, and the base-rate model.

The base-rate model is independent Bernoullis at the training data's per-unit
means. It starts an RBM (visible biases ``b = logit p``, Hinton's recipe, and the
first state of its chains), initialises the output bias of the ALI code's
decoders, and is AIS's base distribution (Salakhutdinov & Murray 2008). Each use
needs ``p`` strictly inside (0, 1) so that its logit is finite; :func:`base_rates`
does that one way, with two knobs whose settings are the callers' own:

* training starts (RBM, GAN/ALI decoders): the means clamped to [1e-3, 1 − 1e-3];
* AIS's base model: S&M's ``base_rate.m`` smoothing by pseudo-counts, which gives
  different numbers (``genbench.evaluation.ais.base_rate_biases``).
"""

from __future__ import annotations

import torch

CLAMP = 1e-3
"""Training starts keep base rates in [CLAMP, 1 − CLAMP]: a pixel never on still gets a finite bias (−6.9)."""


def bernoulli(p: torch.Tensor, u: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """{0, 1} draws with probabilities ``p``, in p's dtype: ``u < p`` for U[0, 1) numbers ``u``.

    ``u`` defaults to ``torch.rand`` numbers from ``generator`` (torch's global RNG
    if None); hot loops pass buffers filled by :class:`~genbench.core.uniforms.Uniforms`.
    The result is written into ``out``, else into u's buffer: no allocation beyond
    the uniforms, about 4× faster than ``torch.bernoulli`` on CPU.
    """
    if u is None:
        u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return torch.lt(u, p, out=u if out is None else out)


def base_rates(mean: torch.Tensor, eps: float = CLAMP, pseudo_count: float = 0.0) -> torch.Tensor:
    """On-probabilities of the base-rate model: ``(mean + a) / (1 + a)`` clamped to [eps, 1 − eps].

    ``pseudo_count`` a adds a "on" pseudo-cases per training case (S&M's
    ``base_rate.m``: a = 0.05); 0 leaves the means as they are. Computed in mean's dtype.
    """
    p = (mean + pseudo_count) / (1 + pseudo_count) if pseudo_count else mean
    return p.clamp(eps, 1 - eps)
