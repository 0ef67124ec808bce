"""Partition function and likelihood of Bernoulli–Bernoulli RBMs by AIS and RAISE.

Pure functions of the parameters ``(W, b, c)``; the free energy and the exact
log Z they are tested against live in :mod:`genbench.nn.rbm`, with the
conventions (docs/design.md, "Estimators"): ``E(v, h) = −bᵀv − cᵀh − hᵀWv``,
``W`` [H, V], ``p(h=1|v) = σ(Wv + c)``, ``p(v=1|h) = σ(Wᵀh + b)``. Every
annealing run reports its progress (:mod:`genbench.core.progress`).

Annealing path (shared by AIS and RAISE). The base model A is an RBM with
``W_A = 0``, ``c_A = 0`` and visible biases ``b_A`` (the base-rate model of
Salakhutdinov & Murray 2008, or 0 for the uniform one). Its hidden units are
kept, so that every intermediate distribution is one RBM with the hidden units
summed out:

    f_β(v) = exp((1−β) b_Aᵀv + β bᵀv) · Π_j (1 + exp(β (W_j·v + c_j)))

``f_0(v) = 2^H exp(b_Aᵀv)``, hence ``log Z_A = Σ_i softplus(b_A,i) + H log 2``
(:func:`base_log_z`), and ``f_1 = exp(−F)``, the target. No extra
``2^{H(1−β)}`` factor: it would change ``f_0`` and so ``log Z_A``; this is the
convention of S&M's ``RBM_AIS.m`` and the AIS-vs-exact tests pin it down. The
transition ``T_β`` is one block-Gibbs sweep of the joint at inverse temperature
β: ``h ~ σ(β(Wv + c))``, then ``v ~ σ(β(Wᵀh + b) + (1−β) b_A)``; it leaves
``f_β`` invariant and is reversible (the v→h→v kernel is symmetric under
``f_β``), which RAISE relies on.

Weight increments ``log f_k(v) − log f_{k−1}(v) = Δβ_k (b − b_A)ᵀv +
Σ_j [softplus(β_k x_j) − softplus(β_{k−1} x_j)]`` with ``x = Wv + c``. With
14,500 temperatures the increments are ~1e-4 nats, so the difference of two
softplus sums (each ~1e3) would lose most float32 digits; it is evaluated as
``log1p(σ(β_t x)·expm1((β_o − β_t) x))`` (exact algebra, no cancellation), which
also reuses ``σ(β_t x)``, the hidden units' firing probability of the transition
at the same state. Per-chain sums accumulate in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.bernoulli import base_rates, bernoulli
from ..core.errors import ConfigError
from ..core.progress import Progress
from ..core.uniforms import Uniforms
from ..nn.rbm import free_energy, softplus

__all__ = [
    "AISResult", "base_rate_biases", "base_log_z", "sm_schedule", "linear_schedule", "schedule",
    "ais_log_z", "ais_log_prob", "raise_log_prob",
]

SM_SEGMENTS = ((0.0, 1 / 1000, 0.5), (0.5, 1 / 10000, 0.9), (0.9, 1 / 100000, 1.0))
"""S&M 2008 (``demo_rbm.m``): ``beta = [0:1/1000:0.5 0.5:1/10000:0.9 0.9:1/100000:1.0]``."""


def _as_float(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(device=like.device, dtype=like.dtype)


# --------------------------------------------------------------------------- base model and schedules


def base_rate_biases(train_mean: torch.Tensor, eps: float = 0.05) -> torch.Tensor:
    """Visible biases of AIS's base-rate RBM, ``b_A,i = logit(p_i)`` (S&M's ``base_rate.m``).

    ``base_rate.m`` adds ``lp = 5`` "on" pseudo-counts per batch of 100 training
    cases: ``p = (count + 5·nb) / (N + 5·nb)`` = ``(mean + eps) / (1 + eps)`` with
    ``eps = 0.05``. That keeps never-on pixels finite (p ≥ eps/(1+eps)); an
    always-on pixel would get p = 1, so p is also clipped to ``1 − 1e-6`` (a bias
    of ~13.8) rather than +inf. This is the published AIS protocol, not the clamp
    of training starts (both are :func:`genbench.core.bernoulli.base_rates`).
    ``train_mean`` is the per-pixel mean [V]; a 2-D tensor of training data [N, V]
    is averaged first.
    """
    m = torch.as_tensor(train_mean, dtype=torch.float64)
    if m.ndim == 2:
        m = m.mean(0)
    p = base_rates(m, eps=1e-6, pseudo_count=eps)
    out_dtype = train_mean.dtype if torch.is_tensor(train_mean) and train_mean.is_floating_point() else torch.float32
    return torch.logit(p).to(out_dtype)


def base_log_z(base_b: torch.Tensor, n_hidden: int) -> float:
    """``log Z_A = Σ_i softplus(b_A,i) + H log 2``: the base RBM keeps its H (free) hidden units."""
    return softplus(base_b.double()).sum().item() + n_hidden * math.log(2.0)


def _matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """``a:d:b`` as MATLAB computes it: n = number of steps, the first half ``a + k·d``, the
    second half ``b − k·d``, the middle ``(a + b)/2`` (Moler's ``colonop``), so both ends are exact."""
    tol = 2.0 * np.finfo(float).eps * max(abs(a), abs(b))
    n = int(round((b - a) / d))
    if a + n * d - b > tol:
        n -= 1
    k = np.arange(n // 2 + 1)
    v = np.empty(n + 1)
    v[k] = a + k * d
    v[n - k] = b - k * d
    if n % 2 == 0:
        v[n // 2] = (a + b) / 2
    return v


def sm_schedule() -> torch.Tensor:
    """Salakhutdinov & Murray's 14,503 inverse temperatures (float64), as MATLAB builds them.

    501 + 4,001 + 10,001 values: the concatenation repeats 0.5 and 0.9. Kept as is
    (a repeated β adds a zero weight increment and one more transition at that β,
    which is still valid AIS), so runs are comparable with the published code.
    """
    return torch.from_numpy(np.concatenate([_matlab_colon(*seg) for seg in SM_SEGMENTS]))


def linear_schedule(n: int) -> torch.Tensor:
    """``n`` evenly spaced inverse temperatures from 0 to 1 (float64)."""
    if n < 2:
        raise ConfigError("a schedule needs at least 2 inverse temperatures (0 and 1)")
    return torch.linspace(0, 1, n, dtype=torch.float64)


def schedule(n_points: int) -> torch.Tensor:
    """``n_points`` inverse temperatures with S&M's three-segment shape, for smoke scales.

    The 500 : 4,000 : 10,000 intervals of [0, .5], [.5, .9], [.9, 1] are scaled to
    ``n_points − 1`` intervals (each segment at least one), without repeated β.
    ``schedule(14501)`` has S&M's spacing minus the two repeats.
    """
    if n_points < 4:
        raise ConfigError("schedule(n_points) needs n_points >= 4 (three segments)")
    n = n_points - 1
    n1 = max(1, round(n * 500 / 14500))
    n2 = max(1, round(n * 4000 / 14500))
    n3 = n - n1 - n2
    if n3 < 1:
        n2 -= 1 - n3
        n3 = 1
    segs = [np.linspace(0.0, 0.5, n1 + 1), np.linspace(0.5, 0.9, n2 + 1)[1:], np.linspace(0.9, 1.0, n3 + 1)[1:]]
    return torch.from_numpy(np.concatenate(segs))


def _check_betas(betas) -> list[float]:
    bk = torch.as_tensor(betas, dtype=torch.float64).flatten().tolist()
    if len(bk) < 2 or bk[0] != 0.0 or bk[-1] != 1.0 or any(y < x for x, y in zip(bk, bk[1:])):
        raise ConfigError("betas must be non-decreasing from exactly 0 to exactly 1")
    return bk


# --------------------------------------------------------------------------- the annealing loop


def _anneal(v: torch.Tensor, W, b, c, base_b, bk: list[float], generator, reverse: bool, progress: Progress,
            wrong_beta: bool = False) -> torch.Tensor:
    """Run ``N`` chains (rows of ``v``) along the path; return ``Σ_k log f_k(y_k)/f_{k−1}(y_k)``, float64 [N].

    Forward (AIS): ``y_1 = v ~ p_A``; at k = 1..K add the increment at ``y_k``, then
    ``y_{k+1} ~ T_{β_k}(y_k)`` (no transition after k = K). Reverse (RAISE):
    ``y_K = v``; at k = K..1 add the increment at ``y_k``, then ``y_{k−1} ~ T_{β_{k−1}}(y_k)``.
    Either way the transition at the current state uses ``σ(β_t x)`` with t = k
    (forward) or k−1 (reverse), which the increment reuses. ``progress`` advances one
    step per temperature. ``wrong_beta`` samples
    every transition with the target's parameters (β = 1): the bug of DsysDML/rbms
    issue #6, kept only so the tests can show they catch it.

    Per temperature: two matmuls ([N,V]·[V,H+1], the extra column giving (b − b_A)ᵀv,
    and [N,H]·[H,V]), ~10 in-place elementwise ops and one uniform fill, all into
    buffers allocated once.
    """
    N, V = v.shape
    H = W.shape[0]
    dt, dev = W.dtype, W.device
    b, c, base_b = (_as_float(t, W) for t in (b, c, base_b))
    Wc, db = W.contiguous(), b - base_b
    # one matmul gives both x = Wv + c (columns :H) and s = (b − b_A)ᵀv (column H)
    WT_aug = torch.cat([W.t(), db[:, None]], 1).contiguous()
    c_aug = torch.cat([c, c.new_zeros(1)])
    v = _as_float(v, W).clone()
    # bound on |x| = |Wv + c| over all binary v: decides when the log1p form is accurate
    xmax = (c.abs() + W.abs().sum(1)).max().item() if H else 0.0
    xs = torch.empty(N, H + 1, dtype=dt, device=dev)
    x, s = xs[:, :H], xs[:, H]
    p, e, h = (torch.empty(N, H, dtype=dt, device=dev) for _ in range(3))
    y, bias = torch.empty(N, V, dtype=dt, device=dev), torch.empty(V, dtype=dt, device=dev)
    u = torch.empty(N, H + V, dtype=dt, device=dev)  # one uniform fill per step for h and v
    uh, uv = u[:, :H], u[:, H:]
    logw = torch.zeros(N, dtype=torch.float64, device=dev)
    uniforms = Uniforms(generator, dt, torch.device(dev))
    K = len(bk) - 1
    for k in (range(K, 0, -1) if reverse else range(1, K + 1)):
        t, o = (k - 1, k) if reverse else (k, k - 1)  # transition index, other end of the increment
        bt, delta, dbeta = bk[t], bk[o] - bk[t], bk[k] - bk[k - 1]
        torch.addmm(c_aug, v, WT_aug, out=xs)  # x = Wv + c, shared by increment and hidden sampling
        if dbeta != 0.0:
            logw.add_(s, alpha=dbeta)
        torch.mul(x, bt, out=p).sigmoid_()  # p = σ(β_t x)
        if delta != 0.0:
            if abs(delta) * xmax <= 4.0:
                # softplus(β_o x) − softplus(β_t x) = log1p(σ(β_t x)·expm1((β_o − β_t)x))
                torch.mul(x, delta, out=e).expm1_().mul_(p).log1p_()
                logw.add_(e.sum(1), alpha=math.copysign(1.0, delta))
            else:  # coarse steps: the plain difference is accurate and cannot hit log1p(−1)
                logw.add_(F.softplus(bk[k] * x).sum(1) - F.softplus(bk[k - 1] * x).sum(1))
        progress.update()
        if k == (1 if reverse else K):
            break
        bs = 1.0 if wrong_beta else bt
        ph = torch.sigmoid(x) if wrong_beta else p
        uniforms.fill(u)
        bernoulli(ph, uh, out=h)
        torch.add(base_b, db, alpha=bs, out=bias)  # (1−β) b_A + β b
        torch.addmm(bias, h, Wc, alpha=bs, out=y).sigmoid_()  # σ(β(Wᵀh + b) + (1−β) b_A)
        bernoulli(y, uv, out=v)
    return logw


def log_mean_exp(logw: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """``log mean(w)`` and ``log(std(w)/√M)`` (unbiased std, as MATLAB's ``std``) along ``dim``, in log space."""
    M = logw.shape[dim]
    m = logw.amax(dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = torch.exp(logw - m)
    log_mean = (torch.log(w.mean(dim, keepdim=True)) + m).squeeze(dim)
    std = w.std(dim, keepdim=True) if M > 1 else torch.zeros_like(m)
    log_se = (torch.log(std) + m).squeeze(dim) - 0.5 * math.log(M)
    return log_mean, log_se


# --------------------------------------------------------------------------- AIS


@dataclass
class AISResult:
    """An AIS estimate of log Z with S&M's ±3σ interval.

    ``log_z = log Z_A + log mean(w)``; ``log_z_high/low = log Z_A + log(mean(w) ± 3·std(w)/√M)``
    (``RBM_AIS.m``: ``logZZ_est_up/down``, std with M−1 normalisation), i.e. three
    standard errors of the mean importance weight, mapped to log space. When
    ``mean(w) − 3·se ≤ 0`` the lower end is ``-inf`` (MATLAB's ``logdiff`` turns
    complex there). ``log_weights`` are the per-run ``log w_m`` (estimates of
    ``log Z − log Z_A``), float64 [n_runs]. ``std_error`` is the delta-method
    standard error of ``log_z`` (``se(w)/mean(w)``).
    """

    log_z: float
    log_z_low: float
    log_z_high: float
    log_weights: torch.Tensor
    log_z_base: float
    std_error: float
    settings: dict[str, Any] = field(default_factory=dict)


def ais_log_z(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, base_b: torch.Tensor | None = None,
              betas: Sequence[float] | torch.Tensor | None = None, n_runs: int = 100,
              generator: torch.Generator | None = None, label: str = "AIS log Z",
              _debug_wrong_beta: bool = False) -> AISResult:
    """Estimate log Z of the RBM ``(W, b, c)`` by AIS from the base RBM with visible biases ``base_b``.

    ``base_b`` defaults to 0 (uniform base), ``betas`` to :func:`sm_schedule`. All
    ``n_runs`` chains advance as one [n_runs, V] batch; the only Python loop is
    over temperatures. E[w] = Z/Z_A exactly, so by Jensen log Ẑ is stochastically
    an *under*-estimate of log Z and the resulting test log-probabilities are
    optimistic (RAISE gives the conservative side). ``label`` names the run in the
    progress display. ``_debug_wrong_beta`` is a test hook that reproduces a known
    bug (transitions at β = 1); never use it.
    """
    H, V = W.shape
    base_b = torch.zeros(V, dtype=W.dtype, device=W.device) if base_b is None else _as_float(base_b, W)
    bk = _check_betas(sm_schedule() if betas is None else betas)
    v0 = bernoulli(torch.sigmoid(base_b).expand(n_runs, V), generator=generator)  # exact draws of the base model
    with torch.no_grad(), Progress(f"{label} ({len(bk)} temperatures, {n_runs} runs)", len(bk) - 1) as progress:
        logw = _anneal(v0, W, b, c, base_b, bk, generator, reverse=False, progress=progress,
                       wrong_beta=_debug_wrong_beta)
    lz_a = base_log_z(base_b, H)
    log_mean, log_se = log_mean_exp(logw)
    lm, ls = log_mean.item(), log_se.item()
    up = np.logaddexp(lm, math.log(3.0) + ls)
    down = lm + math.log1p(-math.exp(math.log(3.0) + ls - lm)) if math.log(3.0) + ls < lm else -math.inf
    settings = {"n_betas": len(bk), "n_runs": n_runs, "log_z_base": lz_a,
                "interval": "log Z_A + log(mean(w) ± 3 std(w)/sqrt(n_runs)) (S&M RBM_AIS.m)"}
    return AISResult(log_z=lz_a + lm, log_z_low=lz_a + down, log_z_high=lz_a + float(up), log_weights=logw.cpu(),
                     log_z_base=lz_a, std_error=math.exp(ls - lm), settings=settings)


def ais_log_prob(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                 ais: AISResult) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Per-example ``log p̂(v) = −F(v) − log Ẑ`` (float64 [B]) and its (low, high) from the ±3σ log Z interval.

    Optimistic in the stochastic sense (log Ẑ tends to be low, so log p̂ tends to be high).
    """
    neg_f = -free_energy(v, W.double(), b.double(), c.double())
    return neg_f - ais.log_z, (neg_f - ais.log_z_high, neg_f - ais.log_z_low)


# --------------------------------------------------------------------------- RAISE


def raise_log_prob(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                   base_b: torch.Tensor | None = None, betas: Sequence[float] | torch.Tensor | None = None,
                   n_runs: int = 10, generator: torch.Generator | None = None,
                   max_chains: int = 10_000, label: str = "RAISE") -> tuple[torch.Tensor, torch.Tensor]:
    """RAISE (Burda, Grosse & Salakhutdinov 2015): a conservative estimate of log p(v) per test example.

    The annealing path defines a tractable *generative* model ``p_fwd``: draw
    ``y_1 ~ p_A``, apply ``T_{β_1}, …, T_{β_{K−1}}`` (the AIS forward chain) and
    emit the last state. Its marginal ``p_fwd(v)`` is estimated by importance
    sampling with the reverse chain as proposal: start at ``y_K = v`` and apply
    the same (reversible) transitions backwards, ``T_{β_{K−1}}, …, T_{β_1}``. The
    ratio of the forward joint to the reverse chain's joint collapses (detailed
    balance) to

        log ŵ = −F(v) − log Z_A − Σ_{k=1}^{K} [log f_k(y_k) − log f_{k−1}(y_k)],

    and ``E[ŵ] = p_fwd(v)`` exactly. The log of the mean of each example's
    ``n_runs`` weights (computed in log space) is ``log p̂(v)``, with
    ``E[log p̂(v)] ≤ log p_fwd(v)`` (Jensen). For test data drawn from the RBM
    itself, ``E[log p_fwd(v)] ≤ E[log p(v)]`` (Gibbs' inequality), so on average
    RAISE underestimates log p (overestimates the NLL): a stochastic lower bound
    on log p that sandwiches the truth with AIS's optimistic estimate. For data
    not from the model it bounds the log-likelihood of ``p_fwd``, which can exceed
    the RBM's: on real MNIST, a 20-hidden CD-25 RBM's RAISE NLL came out 1.0 nat
    *below* its exact NLL (table ais-validation, paper scale), so records label it
    an estimate, not a bound.

    Hidden units are summed out analytically in ``f_k`` (as in S&M's AIS; the
    derivation holds for any transitions reversible w.r.t. ``f_k``). Returns
    ``(log p̂ [B], std error [B])``, float64, the std error by the delta method
    (``se(ŵ)/mean(ŵ)``). The B × n_runs chains run as one batch, in groups of at
    most ``max_chains`` chains (whole examples) to bound memory; ``label`` names
    the run in the progress display.
    """
    H, V = W.shape
    base_b = torch.zeros(V, dtype=W.dtype, device=W.device) if base_b is None else _as_float(base_b, W)
    bk = _check_betas(sm_schedule() if betas is None else betas)
    v = _as_float(v, W)
    B = v.shape[0]
    lz_a = base_log_z(base_b, H)
    per_group = max(1, max_chains // n_runs)
    means, ses = [], []
    steps = -(-B // per_group) * (len(bk) - 1)
    with torch.no_grad(), Progress(f"{label} ({B} examples × {n_runs} runs, {len(bk)} temperatures)", steps,
                                   dims=2) as progress:
        for i in range(0, B, per_group):  # memory-bounded groups of whole examples, each one batch
            vg = v[i : i + per_group]
            chains = vg.repeat_interleave(n_runs, 0)
            rev = _anneal(chains, W, b, c, base_b, bk, generator, reverse=True, progress=progress).view(-1, n_runs)
            neg_f = -free_energy(vg, W.double(), b.double(), c.double())
            log_w = neg_f[:, None] - lz_a - rev
            lm, ls = log_mean_exp(log_w, dim=1)
            means.append(lm)
            ses.append(torch.exp(ls - lm))
    return torch.cat(means).cpu(), torch.cat(ses).cpu()
