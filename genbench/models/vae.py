"""VAE and IWAE (Kingma & Welling 2014; Burda, Grosse & Salakhutdinov 2016) as one model.

Both maximize a k-sample importance-weighted bound with a diagonal-Gaussian q(h | x), reparametrized
(h = μ + σ ε): with log w_i = log p(x, h_i) − log q(h_i | x), h_i ~ q i.i.d.,

* ``objective: iwae``: L_k = log (1/k) Σ_i w_i (Burda's IWAE; its gradient is Σ_i w̃_i ∇ log w_i with the
  normalized weights w̃);
* ``objective: vae``: (1/k) Σ_i log w_i, the average of k one-sample ELBOs (Burda's "VAE" with k samples).

At k = 1 both are the ELBO. The k samples are one batched pass (rows sample-major), never a Python loop.
Stochastic layers ``latent`` (from x upward) with deterministic ``hidden`` layers before each; the decoder
mirrors them (or takes ``decoder_hidden``). Burda's models: ``latent: [50], hidden: [[200, 200]]`` and
``latent: [100, 50], hidden: [[200, 200], [100, 100]]``, tanh, σ = exp(linear) on the standard deviation as
in the IWAE code (the paper says "variances"), Glorot-uniform weights, zero biases, the Bernoulli output bias
at the logit of the clipped training means, Adam (0.9, 0.999, ε = 1e-4); the batch size (20) is the data's.
``lr_schedule: burda`` is their 8 stages of 3^i passes at lr·10^(−i/7) (3,280 passes), stretched or shrunk to
the run's ``trainer.max_epochs`` with the same shape (exactly theirs at 3,280 epochs).

Observation model by data space (:mod:`genbench.nn.vae`): Bernoulli on binary data, Gaussian on continuous
data, the discretized logistic on discrete data (an exact pmf over the integers: ``discrete_log_prob``).
The training loss is −Σ_batch bound, summed over the minibatch as the IWAE code does; ``train/nll`` logs its
per-example mean (nats, the training objective's NLL bound on the training batches).

Choices where the sources are silent or differ from Burda's code: the minibatches are shuffled (their code keeps a
fixed order); standard PyTorch Adam (their code's variant has β1 = 0.99 and v initialised to ones); every layer
drawn from the run's seed (their code reseeds 123 for every layer).
"""

from __future__ import annotations

import math
from typing import Sequence

import lightning as L
import torch
from torch import nn

from ..core.errors import ConfigError, GenbenchError
from ..data.base import DataInfo
from ..nn.flows import evaluating
from ..nn.vae import (Conditional, flushing_denormals, glorot_uniform_, normal_log_prob, observation_model,
                      set_flush_denormals, standard_normal_log_prob)
from .epoch_means import EpochMeans

OBJECTIVES = ("iwae", "vae")
LR_SCHEDULES = ("constant", "burda")
BURDA_STAGES = 8
BURDA_PASSES = (3 ** BURDA_STAGES - 1) // 2  # 1 + 3 + … + 3^7 = 3,280
GAUSSIAN = ("mean", "log_sigma")


def burda_lr_factor(step: int, total_steps: int) -> float:
    """The learning-rate multiplier at ``step`` of ``total_steps``: stage i (0…7) covers 3^i / 3,280 of the run and
    multiplies by 10^(−i/7) (Burda et al. 2016 §5.1; at 3,280 epochs the stages end at their epochs 1, 4, 13, …)."""
    i = next((i for i in range(BURDA_STAGES) if step * BURDA_PASSES < (3 ** (i + 1) - 1) // 2 * total_steps),
             BURDA_STAGES - 1)
    return 10 ** (-i / 7)


class VAE(EpochMeans, L.LightningModule):
    """A VAE / IWAE with ``len(latent)`` stochastic layers; see the module docstring.

    Capabilities: ``log_prob_bound(x, k)`` (L_k in nats, chunked), ``encode`` (a posterior draw of the top layer),
    ``posterior_mean`` (E_q of every layer, for active units), ``decode`` (the observation mean in data units),
    ``sample``, ``sample_means``; for decoder-based AIS: ``latent_dim``, ``prior_log_prob`` (N(0, I)),
    ``observation_log_prob(x, z)`` and ``observation_sample(z)`` (one stochastic layer only).
    """

    supported_spaces = ("binary", "continuous", "discrete")
    discrete_log_prob = True
    eval_rows = 8_192
    """Rows (examples × samples) per network pass when scoring: bounds memory for k = 5,000 (Burda: 100,000). Fewer
    rows are faster on a CPU while the activations stay in cache and the allocator reuses them: measured
    2026-12-01, L_5000 of Burda's 784-200-200-50 model 1.7× faster than with 20,000 rows (32 MB intermediates, mapped
    afresh on every pass), the 2D mode-coverage VAE (4 × 400) 1.2×; the value does not depend on it."""
    noise_limit = 1 << 24
    """Noise numbers drawn at once when scoring: how many examples share one draw (and then one chunking)."""

    def __init__(self, info: DataInfo, objective: str = "iwae", k: int = 1, latent: Sequence[int] = (50,),
                 hidden: Sequence[Sequence[int]] = ((200, 200),), decoder_hidden: Sequence[Sequence[int]] | None = None,
                 activation: str = "tanh", batch_norm: bool = False, lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-4, lr_schedule: str = "constant"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        if int(k) < 1:
            raise ConfigError(f"k (importance samples in training) must be >= 1, got {k}")
        latent = [latent] if isinstance(latent, int) else latent  # model.latent=50: one stochastic layer
        hidden = [[hidden]] if isinstance(hidden, int) else [[h] if isinstance(h, int) else h for h in hidden]
        latent, hidden = [int(d) for d in latent], [[int(u) for u in h] for h in hidden]
        if not latent or len(hidden) != len(latent):
            raise ConfigError(f"hidden needs one list of layer sizes per stochastic layer: latent={latent} has "
                              f"{len(latent)}, hidden={hidden} has {len(hidden)}")
        decoder_hidden = ([h[::-1] for h in hidden] if decoder_hidden is None
                          else [[int(u) for u in h] for h in decoder_hidden])
        if len(decoder_hidden) != len(latent):
            raise ConfigError(f"decoder_hidden needs one list per stochastic layer ({len(latent)}), got {decoder_hidden}")
        self.objective, self.k = objective, int(k)
        self.lr, self.betas, self.eps, self.lr_schedule = lr, (beta1, beta2), eps, lr_schedule
        self.shape, self.dim = tuple(info.shape), info.dim
        self.latent_sizes = tuple(latent)
        self.latent_dim = latent[-1]
        self.obs = observation_model(info.space)
        below = [self.dim, *latent[:-1]]  # the variable each layer conditions on (encoder) or models (decoder)
        self.encoder = nn.ModuleList(Conditional(d_in, h, d, GAUSSIAN, activation, batch_norm)
                                     for d_in, h, d in zip(below, hidden, latent))
        # decoder[l] parametrizes p(h_l | h_{l+1}), h_0 = x: decoder[0] is the observation model's network
        self.decoder = nn.ModuleList(
            Conditional(d, h, d_out, self.obs.heads if l == 0 else GAUSSIAN, activation, batch_norm)
            for l, (d, h, d_out) in enumerate(zip(latent, decoder_hidden, below)))
        glorot_uniform_(self)
        if info.train_mean is not None:
            self.obs.init_bias(self.decoder[0].heads, info.train_mean)

    # -- the bound ----------------------------------------------------------------------------------------------------
    def _noise(self, k: int, b: int) -> list[torch.Tensor]:
        return [torch.randn(k, b, d, device=self.device, dtype=self.dtype) for d in self.latent_sizes]

    def _log_weights(self, x: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        """log w = log p(x, h) − log q(h | x), [B, c], for x [B, D] (data units) and noise [c, B, d_l] per layer."""
        b = x.shape[0]
        rows = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731  [c, B, d] → [c·B, d], sample-major
        split = lambda t: t.view(-1, b, t.shape[-1])  # noqa: E731  [c·B or B, d] → [c or 1, B, d]
        h, log_q, draws = self.obs.to_model(x), 0.0, []
        for enc, eps in zip(self.encoder, noise):
            mean, log_sigma = map(split, enc(h))
            draws.append(mean + log_sigma.exp() * eps)
            log_q = log_q + standard_normal_log_prob(eps) - log_sigma.sum(-1)
            h = rows(draws[-1])
        log_p = standard_normal_log_prob(draws[-1])
        for l in range(len(draws) - 1, 0, -1):
            log_p = log_p + normal_log_prob(draws[l - 1], *map(split, self.decoder[l](rows(draws[l]))))
        log_p = log_p + self.obs.log_prob(x.view(1, b, -1), *map(split, self.decoder[0](rows(draws[0]))))
        return (log_p - log_q).T

    def bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The training objective per example, [B], on one draw of k samples (differentiable)."""
        log_w = self._log_weights(x.flatten(1).to(self.dtype), self._noise(k, x.shape[0]))
        return torch.logsumexp(log_w, 1) - math.log(k) if self.objective == "iwae" else log_w.mean(1)

    def log_prob_bound(self, x: torch.Tensor, k: int, max_rows: int | None = None) -> torch.Tensor:
        """L_k(x) = log (1/k) Σ_i w_i, [B] nats: a stochastic lower bound on log p(x), E[L_k] ≤ E[L_{k+1}] ≤ log p(x)
        (k = 1: the ELBO), in evaluation mode.

        Scored in passes of at most ``max_rows`` (default :attr:`eval_rows`) examples × samples, combined by
        logsumexp. The noise of a group of examples is drawn before it is split, so the value does not depend on
        ``max_rows``.
        """
        x = x.flatten(1).to(self.dtype)
        per_group = max(1, min(len(x), self.noise_limit // (k * sum(self.latent_sizes))))
        out = []
        with evaluating(self), flushing_denormals():
            for xs in x.split(per_group):
                noise = self._noise(k, len(xs))
                step = max(1, (max_rows or self.eval_rows) // len(xs))
                parts = [torch.logsumexp(self._log_weights(xs, [n[s:s + step] for n in noise]), 1)
                         for s in range(0, k, step)]
                out.append(torch.logsumexp(torch.stack(parts, 1), 1) - math.log(k))
        return torch.cat(out)

    # -- inference and generation -----------------------------------------------------------------------------------
    def _posterior(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(E_q of every layer, a draw of the top layer); each layer is conditioned on a draw of the one below."""
        h, means = self.obs.to_model(x.flatten(1).to(self.dtype)), []
        for enc in self.encoder:
            mean, log_sigma = enc(h)
            means.append(mean)
            h = mean + log_sigma.exp() * torch.randn_like(mean)
        return means, h

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A draw of the top stochastic layer from q(h | x), [B, latent_dim]."""
        with evaluating(self):
            return self._posterior(x)[1]

    @torch.no_grad()
    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[h_l | h_{l−1}] of every stochastic layer, concatenated [B, Σ d_l], layer 1 first; a deeper layer's
        mean is conditioned on a draw of the layer below, as the IWAE code's ``get_units_variances``."""
        with evaluating(self):
            return torch.cat(self._posterior(x)[0], 1)

    def _top_down(self, z: torch.Tensor, draw: bool) -> tuple[torch.Tensor, ...]:
        """The observation model's parameters given the top layer z: the layers between are drawn (ancestral
        sampling) or set to their conditional means."""
        h = z
        for l in range(len(self.decoder) - 1, 0, -1):
            mean, log_sigma = self.decoder[l](h)
            h = mean + log_sigma.exp() * torch.randn_like(mean) if draw else mean
        return self.decoder[0](h)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] in data units, shaped like the data (two layers: through the mean of h1 given z)."""
        with evaluating(self):
            return self.obs.mean(*self._top_down(z, draw=False)).reshape(len(z), *self.shape)

    def _prior(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n ancestral draws x ~ p(x | h) p(h), in the data space."""
        with evaluating(self):
            return self.obs.sample(*self._top_down(self._prior(n), draw=True)).reshape(n, *self.shape)

    @torch.no_grad()
    def sample_means(self, n: int) -> torch.Tensor:
        """E[x | h1] of n ancestral latent draws (image figures show these, as Burda's)."""
        with evaluating(self):
            return self.obs.mean(*self._top_down(self._prior(n), draw=True)).reshape(n, *self.shape)

    # -- for decoder-based AIS ----------------------------------------------------------------------------------------
    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = log N(z; 0, I), [B]."""
        return standard_normal_log_prob(z)

    def observation_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z), [B] nats, in the data's units (a pmf on binary and discrete data, a density on continuous
        data), for z [B, latent_dim], differentiable in z; evaluation mode.

        One stochastic layer only: with two, p(x | h2) = ∫ p(x | h1) p(h1 | h2) dh1 is itself a latent-variable
        model without a closed form, so decoder-based AIS over h2 alone does not apply.
        """
        self._one_layer("observation_log_prob")
        with evaluating(self):
            return self.obs.log_prob(x.flatten(1).to(self.dtype), *self.decoder[0](z))

    @torch.no_grad()
    def observation_sample(self, z: torch.Tensor) -> torch.Tensor:
        """x ~ p(x | z) in the data space, shaped like the data (BDMC simulates data with it); one stochastic layer."""
        self._one_layer("observation_sample")
        with evaluating(self):
            return self.obs.sample(*self.decoder[0](z)).reshape(len(z), *self.shape)

    def _one_layer(self, what: str) -> None:
        if len(self.latent_sizes) > 1:
            raise GenbenchError(f"{what} needs one stochastic layer; this VAE has {len(self.latent_sizes)} "
                                f"({list(self.latent_sizes)}), and p(x | top layer) has no closed form")

    # -- training -----------------------------------------------------------------------------------------------------
    def on_train_start(self):
        set_flush_denormals(True)  # genbench.nn.vae.set_flush_denormals: a 3-4x slower epoch without it

    def on_train_end(self):  # (a failed fit leaves it on: it changes only numbers below 1.2e-38)
        set_flush_denormals(False)

    def training_step(self, batch, batch_idx):
        bound = self.bound(batch, self.k)
        self.epoch_mean("train/nll", -bound, prog_bar=True)
        return -bound.sum()

    def configure_optimizers(self):
        # fused: one kernel for all parameters (Burda's model: 1.6 -> 0.7 ms per step on a CPU, half the update)
        opt = torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas, eps=self.eps, fused=True)
        if self.lr_schedule == "constant":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: burda_lr_factor(step, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
