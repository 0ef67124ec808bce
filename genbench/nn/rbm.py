"""Bernoulli–Bernoulli RBM math shared by the RBM model, the likelihood evaluator and AIS.

Pure functions of the parameters ``(W, b, c)``, in a module that imports
neither :mod:`genbench.models` nor :mod:`genbench.evaluation`, so both import it
at top level. Conventions (Dumoulin's Eq. 1.32–1.34):

* energy ``E(v, h) = −bᵀv − cᵀh − hᵀWv``; ``W`` is ``[H, V]`` (hidden × visible,
  like scikit-learn's ``components_``), ``b`` the visible bias ``[V]``, ``c`` the
  hidden bias ``[H]``;
* free energy ``F(v) = −bᵀv − Σ_j softplus(c_j + W_j·v) = −log Σ_h exp(−E(v, h))``,
  so ``log p(v) = −F(v) − log Z``.
"""

from __future__ import annotations

import torch

from ..core.errors import ConfigError


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + eˣ) without overflow and without F.softplus's linear cut-off at x > 20
    (a 2e-9 error per unit that an exact oracle in float64 should not carry)."""
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


def free_energy(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``F(v) = −bᵀv − Σ_j softplus(c_j + W_j·v)`` for a batch ``v`` [B, V] → [B].

    Same sign as scikit-learn's ``BernoulliRBM._free_energy`` (``−log Σ_h e^{−E}``).
    ``v`` may be bool/uint8; it is cast to W's dtype and device.
    """
    v = v.to(device=W.device, dtype=W.dtype)
    return -(v @ b) - softplus(torch.addmm(c, v, W.t())).sum(-1)


def _log_f_enumerated(states: torch.Tensor, W, b, c, layer: str) -> torch.Tensor:
    """Unnormalised log-marginal of every enumerated state of one layer, the other summed out."""
    if layer == "hidden":  # log Σ_v e^{−E(v,h)} = cᵀh + Σ_i softplus(b_i + (Wᵀh)_i)
        return states @ c + softplus(torch.addmm(b, states, W)).sum(-1)
    return -free_energy(states, W, b, c)


def exact_log_z(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, chunk: int | None = None,
                layer: str = "auto", dtype: torch.dtype = torch.float64) -> float:
    """Exact log Z by enumerating the smaller layer (``layer="auto"``) and summing the other out.

    ``2^min(H, V)`` states in chunks of ``chunk`` rows (default: ~4M numbers per
    buffer, so memory stays bounded whatever the size), each chunk reduced by
    logsumexp in ``dtype`` (float64 by default: this is the oracle AIS is tested
    against). Practical up to ~25 units in the smaller layer (2^25 states × the
    other layer: minutes on 2 cores). ``layer="hidden"``/``"visible"`` forces the
    enumerated layer (used by the tests to check the two agree).
    """
    W, b, c = (t.to(dtype) for t in (W, b, c))
    H, V = W.shape
    if layer == "auto":
        layer = "hidden" if H <= V else "visible"
    if layer not in ("hidden", "visible"):
        raise ConfigError(f"layer must be 'auto', 'hidden' or 'visible', not {layer!r}")
    n, other = (H, V) if layer == "hidden" else (V, H)
    if n > 34:
        raise ConfigError(f"exact log Z would enumerate 2^{n} states; use AIS (genbench.evaluation.ais.ais_log_z) instead")
    total = 1 << n
    chunk = chunk or max(1, min(total, (1 << 22) // max(1, other + n)))
    shifts = torch.arange(n, device=W.device)
    parts = []
    for start in range(0, total, chunk):  # a loop over memory-bounded blocks, each fully batched
        idx = torch.arange(start, min(start + chunk, total), device=W.device)
        states = ((idx[:, None] >> shifts) & 1).to(dtype)
        parts.append(torch.logsumexp(_log_f_enumerated(states, W, b, c, layer), 0))
    return torch.logsumexp(torch.stack(parts), 0).item()


def exact_log_prob(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                   log_z: float | None = None) -> torch.Tensor:
    """Exact ``log p(v) = −F(v) − log Z`` in float64 (log Z enumerated unless given)."""
    if log_z is None:
        log_z = exact_log_z(W, b, c)
    W64, b64, c64 = (t.double() for t in (W, b, c))
    return -free_energy(v, W64, b64, c64) - log_z


def noisy_parameters(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, sigma_w: float, sigma_b: float,
                     generator: torch.Generator | None = None, mask: torch.Tensor | None = None,
                     chains: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One draw of a noisy sampler's parameters: (W + σ_w ε_W, b + σ_b ε_b, c + σ_b ε_c).

    For "expected AIS" (Dumoulin §3.4, :mod:`genbench.models.constraints`): draw,
    score the perturbed RBM, average over draws. ``mask`` keeps removed weights at
    zero. With ``chains=n`` the biases get one draw per chain ([n, V], [n, H]; they
    broadcast in ``addmm``), for a batch of chains that each see their own bias noise.
    """
    def randn(shape, like):
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)

    eps = randn(W.shape, W)
    if mask is not None:
        eps = eps * mask
    lead = () if chains is None else (chains,)
    return (W + sigma_w * eps, b + sigma_b * randn((*lead, *b.shape), b), c + sigma_b * randn((*lead, *c.shape), c))
