"""Binary restricted Boltzmann machine trained by CD-k or PCD-k (Dumoulin 2018, §1.4 and Ch. 3).

Conventions (those of :mod:`genbench.nn.rbm`, shared with the evaluators):

* E(v, h) = −bᵀv − cᵀh − hᵀWv with ``W`` [H, V], visible bias ``b`` [V],
  hidden bias ``c`` [H] (thesis Eq. 1.32; its Eq. 1.35 swaps the biases, Eq. 1.34 is right);
* p(h=1 | v) = σ(Wv + c), p(v=1 | h) = σ(Wᵀh + b);
* F(v) = −bᵀv − Σ_j softplus(c_j + W_j·v), so p(v) = exp(−F(v)) / Z.

Training. The gradient of log p(v) is computed in closed form (Eq. 1.29):
σ(Wv + c)vᵀ − E_model[hvᵀ] for ``W`` and likewise for the biases. Positive
phase: the mean field σ(Wv + c) (the thesis' "exact mean field"), or a
sampled h when ``mean_field_positive=False``. Negative phase: k block-Gibbs
steps from the batch (CD-k) or from ``n_chains`` persistent fantasy particles
(PCD-k, a.k.a. SML); its statistics use the sampled v and, Rao-Blackwellized,
p(h | v) under the sampler's parameters. The gradient is written into
``.grad`` and applied by a torch SGD (momentum; weight decay on ``W`` only,
as usual for RBMs) under Lightning's manual optimization, so schedules,
checkpoints and step counts behave as for any other model.

Speed (see :mod:`genbench.bench.rbm`). A chain's state between updates is its
hidden sample h (as in Tieleman's PCD and scikit-learn's BernoulliRBM): an
update runs h → v → h k times under the current parameters, and p(h | v) of
the last half-step is both the negative statistic and the distribution of
the next state, so PCD-1 costs five [B×V×H] matrix products (one positive
phase, two Gibbs half-steps, two for the gradient), not six. Bernoulli draws
are :func:`genbench.core.bernoulli.bernoulli` (``uniform < p``, about 4× faster
than ``torch.bernoulli`` on CPU). Nothing per step touches Python beyond a few
tensor calls; metrics are logged every ``trainer.log_every_n_steps`` steps only.

Constraints (noise, clipping, masks) are those of :mod:`.constraints`; the
sampler (negative phase when ``noise.train``, and every sample or Gibbs chain
drawn after training) adds the weight noise cached per update and fresh bias
noise per chain per Gibbs step.

Likelihood. An RBM's log-likelihood needs log Z: :meth:`log_partition_exact`
(enumeration, when min(H, V) ≤ 20) or AIS in :mod:`genbench.evaluation.ais`.
The class deliberately has no ``log_prob``: the likelihood evaluator chooses
the estimator and says which one it used, and scores with :meth:`free_energy`
and :meth:`log_partition_exact` under the parameters it chooses (the clean
ones, or noisy draws for "expected AIS").
"""

from __future__ import annotations

import math
import warnings

import lightning as L
import torch
from torch import nn

from ..core.bernoulli import base_rates, bernoulli
from ..core.distributed import average_across_ranks, own_gradient_sync
from ..core.errors import ConfigError
from ..core.uniforms import Uniforms
from ..data.base import DataInfo
from ..nn import rbm as rbm_math
from .constraints import Constraints, WeightNoise, clip_

LR_SCHEDULES = ("constant", "linear_decay")
VISIBLE_BIAS_INITS = ("train_mean", "zero")
MATMUL_DTYPES = {None: None, "float32": None, "bfloat16": torch.bfloat16}


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (oneDNN's test on CPUs: AVX-512 or AMX).

    Elsewhere bfloat16 products are emulated: 30–50× slower than float32 on an AVX2-only AMD EPYC.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type != "cpu" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _conditional(x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor, sigma_b: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """σ(x·weights + bias [+ σ_b ε]): p(h|v) with (Wᵀ, c) or p(v|h) with (W, b); ε fresh per row (chain).

    The product runs in the weights' dtype (bfloat16 weights: mixed precision), the rest in x's.
    """
    if weights.dtype == x.dtype:
        pre = torch.addmm(bias, x, weights)
    else:
        pre = torch.mm(x.to(weights.dtype), weights).to(x.dtype).add_(bias)
    if sigma_b:
        pre.add_(torch.randn(pre.shape, generator=generator, device=pre.device, dtype=pre.dtype), alpha=sigma_b)
    return pre.sigmoid_()


MOMENTUM_SWITCH_EPOCH = 5
"""First (0-based) epoch trained with ``final_momentum``: Hinton's ``rbm.m`` switches after 5 epochs."""


class RBM(L.LightningModule):
    """A binary RBM with H hidden units over the flattened data (see the module docstring).

    Arguments: ``hidden`` H; ``k`` Gibbs steps per update; ``persistent``
    (PCD-k with ``n_chains`` fantasy particles, else CD-k from the batch);
    ``mean_field_positive``; SGD ``lr``, ``momentum`` (``final_momentum`` from
    epoch 5 on, as Hinton's ``rbm.m``, when set), ``weight_decay`` (on W);
    ``lr_schedule`` ``constant`` or ``linear_decay`` (lr·(1 − step/total) to 0
    at the end of training, per update); ``init_std`` of W ~ N(0, std²);
    ``init_visible_bias`` ``train_mean`` (b = logit of the training base rates,
    Hinton's recipe) or ``zero``; c = 0; ``constraints`` (see
    :mod:`.constraints`); ``sample_steps`` Gibbs steps of :meth:`sample` from a
    base-rate start (the thesis' figures use 100,000).
    """

    supported_spaces = ("binary",)
    max_exact_units = 20
    """log Z by enumeration over the smaller layer when min(H, V) ≤ this (2^20 states)."""

    def __init__(self, info: DataInfo, hidden: int = 500, k: int = 1, persistent: bool = False, n_chains: int = 100,
                 mean_field_positive: bool = True, lr: float = 0.01, lr_schedule: str = "constant",
                 momentum: float = 0.0, final_momentum: float | None = None,
                 weight_decay: float = 0.0, init_std: float = 0.01, init_visible_bias: str = "train_mean",
                 constraints: dict | None = None, sample_steps: int = 1000, matmul_dtype: str | None = None):
        super().__init__()
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        if matmul_dtype not in MATMUL_DTYPES:
            raise ConfigError(f"unknown matmul_dtype {matmul_dtype!r}; valid: null (the parameters' float32), bfloat16")
        if init_visible_bias not in VISIBLE_BIAS_INITS:
            raise ConfigError(f"unknown init_visible_bias {init_visible_bias!r}; valid: {', '.join(VISIBLE_BIAS_INITS)}")
        if hidden < 1 or k < 1 or n_chains < 1 or sample_steps < 1:
            raise ConfigError(f"hidden, k, n_chains and sample_steps must be ≥ 1 (got {hidden}, {k}, {n_chains}, {sample_steps})")
        self.automatic_optimization = False
        self.shape, self.k, self.persistent, self.n_chains = tuple(info.shape), k, persistent, n_chains
        self.mean_field_positive, self.sample_steps = mean_field_positive, sample_steps
        self.lr, self.lr_schedule, self.momentum, self.weight_decay = lr, lr_schedule, momentum, weight_decay
        self.final_momentum, self.matmul_dtype = final_momentum, MATMUL_DTYPES[matmul_dtype]
        self._uniforms: Uniforms | None = None  # training's Bernoulli draws, seeded from torch's RNG at first use
        visible = info.dim

        mean = info.train_mean.flatten().float() if info.train_mean is not None else torch.full((visible,), 0.5)
        self.register_buffer("base_rate", base_rates(mean))
        self.W = nn.Parameter(torch.randn(hidden, visible) * init_std)
        self.b = nn.Parameter(torch.logit(self.base_rate) if init_visible_bias == "train_mean" else torch.zeros(visible))
        self.c = nn.Parameter(torch.zeros(hidden))

        self.constraints = Constraints.from_config(constraints)
        mask = self.constraints.mask.build(hidden, visible) if self.constraints.mask else None
        self.register_buffer("mask", mask)
        self._weight_noise = WeightNoise()
        self._updates = 0
        self._total_steps: float | None = None
        self.apply_constraints(count=False)

        if persistent:  # fantasy particles: v from the base rates, h ~ p(h | v); the state carried is h
            chain_v = bernoulli(self.base_rate.expand(n_chains, visible))
            self.register_buffer("chain_v", chain_v)
            self.register_buffer("chain_h", bernoulli(_conditional(chain_v, self.W.detach().T, self.c.detach())))

    # -- the model ---------------------------------------------------------------------------
    @property
    def hidden(self) -> int:
        return self.W.shape[0]

    @property
    def visible(self) -> int:
        return self.W.shape[1]

    def _flat(self, v: torch.Tensor) -> torch.Tensor:
        return v.reshape(v.shape[0], -1).to(self.W.dtype)

    def free_energy(self, v: torch.Tensor, params: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """F(v) = −bᵀv − Σ_j softplus(c_j + W_j·v), [B], so log p(v) = −F(v) − log Z.

        Under the clean parameters, or under ``params`` = (W, b, c) (in their dtype),
        the evaluator's way to score noisy draws with this model's own free energy.
        """
        W, b, c = (self.W, self.b, self.c) if params is None else params
        return rbm_math.free_energy(v.reshape(v.shape[0], -1), W, b, c)

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h=1 | v) = σ(Wv + c), [B, H] (clean parameters)."""
        return _conditional(self._flat(v), self.W.T, self.c)

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """p(v=1 | h) = σ(Wᵀh + b), [B, V] (clean parameters)."""
        return _conditional(h.to(self.W.dtype), self.W, self.b)

    # -- the (simulated physical) sampler --------------------------------------------------------
    @property
    def noisy(self) -> bool:
        """Whether this RBM's sampler is the noisy simulator (constraints.noise set)."""
        return self.constraints.noise is not None

    def parameters_for_sampling(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W̃, b, c) of the sampler: W̃ = W + ε_W with ε_W drawn once per change of W (no noise: W).

        The biases are returned clean because their noise (σ_b =
        ``constraints.noise.sigma_b``) is redrawn per chain per Gibbs step by
        the sampler itself; an evaluator that wants one noisy RBM per
        Monte-Carlo draw uses :func:`genbench.nn.rbm.noisy_parameters`.
        """
        W, b, c = self.W.detach(), self.b.detach(), self.c.detach()
        noise = self.constraints.noise
        if noise is not None and noise.sigma_w > 0:
            key = (self._updates, self.W._version, self.W.data_ptr())
            W = self._weight_noise(W, noise.sigma_w, key, mask=self.mask)
        return W, b, c

    def _sampler(self, noisy: bool | None):
        """(W, b, c, σ_b) the chains run with; ``noisy=None``: the model's own sampler (noisy if configured)."""
        if noisy is None:
            noisy = self.noisy
        if noisy and self.noisy:
            W, b, c = self.parameters_for_sampling()
            return W, b, c, self.constraints.noise.sigma_b
        return self.W.detach(), self.b.detach(), self.c.detach(), 0.0

    def _run(self, v: torch.Tensor, steps: int, noisy: bool | None, generator=None):
        """``steps`` block-Gibbs steps v → h → v on a batch of chains; returns the final (v, h)."""
        W, b, c, sigma_b = self._sampler(noisy)
        Wt, h = W.T, None
        for _ in range(steps):
            h = bernoulli(_conditional(v, Wt, c, sigma_b, generator), generator=generator)
            v = bernoulli(_conditional(h, W, b, sigma_b, generator), generator=generator)
        return v, h

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, steps: int = 1, noisy: bool | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """``steps`` block-Gibbs steps (v → h → v) from every row of ``v``; same shape back.

        ``noisy=None`` uses the model's sampler (with the configured noise);
        False forces the clean parameters.
        """
        return self._run(self._flat(v), steps, noisy, generator)[0].reshape(v.shape)

    def _start(self, n: int, generator=None) -> torch.Tensor:
        return bernoulli(self.base_rate.expand(n, self.visible), generator=generator)

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n binary draws in the data space [n, *shape]: ``steps`` (default ``sample_steps``) Gibbs steps from base rates."""
        v, _ = self._run(self._start(n, generator), steps or self.sample_steps, None, generator)
        return v.reshape(n, *self.shape)

    @torch.no_grad()
    def sample_means(self, n: int, steps: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """E[v | h] for the last sampled h of n chains, [n, *shape] in [0, 1]: the thesis' sample figures."""
        W, b, _, sigma_b = self._sampler(None)
        _, h = self._run(self._start(n, generator), steps or self.sample_steps, None, generator)
        return _conditional(h, W, b, sigma_b, generator).reshape(n, *self.shape)

    # -- log Z -------------------------------------------------------------------------------
    @property
    def exact_partition_feasible(self) -> bool:
        """Whether :meth:`log_partition_exact` applies (min(H, V) ≤ :attr:`max_exact_units`)."""
        return min(self.hidden, self.visible) <= self.max_exact_units

    @torch.no_grad()
    def log_partition_exact(self, params: tuple[torch.Tensor, ...] | None = None) -> float:
        """log Z of the clean parameters or of ``params`` = (W, b, c), enumerating the smaller layer in float64."""
        if not self.exact_partition_feasible:
            raise ConfigError(f"exact log Z needs min(H, V) ≤ {self.max_exact_units}, this RBM is {self.hidden}×{self.visible}; use AIS")
        W, b, c = (self.W, self.b, self.c) if params is None else params
        return rbm_math.exact_log_z(W.detach(), b.detach(), c.detach())

    # -- training --------------------------------------------------------------------------------
    @property
    def noise_in_training(self) -> bool:
        return self.noisy and self.constraints.noise.train

    @torch.no_grad()
    def compute_gradients(self, batch: torch.Tensor) -> torch.Tensor:
        """Write −∂log p/∂θ (closed form) into ``W.grad``, ``b.grad``, ``c.grad``; advance the chains.

        Returns the negative-phase visibles (for diagnostics).
        """
        v = self._flat(batch)
        if self._uniforms is None:
            self._uniforms = Uniforms(None, v.dtype, v.device)
        u = self._uniforms.like  # the fast uniforms of every draw below
        W, c = self._for_products(self.W.detach()), self.c.detach()
        hp = _conditional(v, W.T, c)  # positive phase, with the clean (digital) parameters
        h_pos = hp if self.mean_field_positive else bernoulli(hp, u(hp))
        if self.persistent:
            h = self.chain_h
        else:
            h = bernoulli(hp, u(hp)) if self.mean_field_positive else h_pos

        if self.noise_in_training:
            Ws, bs, cs, sigma_b = self._sampler(True)
            Ws = self._for_products(Ws)
        else:
            Ws, bs, cs, sigma_b = W, self.b.detach(), c, 0.0
        Wst = Ws.T
        for step in range(self.k):
            pv = _conditional(h, Ws, bs, sigma_b)
            vn = bernoulli(pv, u(pv))
            hn = _conditional(vn, Wst, cs, sigma_b)
            if self.persistent or step < self.k - 1:
                h = bernoulli(hn, u(hn))
        if self.persistent:
            self.chain_h.copy_(h)
            self.chain_v.copy_(vn)

        n_pos, n_neg = v.shape[0], vn.shape[0]
        # both phases in one product: E_model[h vᵀ] − E_data[h vᵀ] = [hn/n_neg; −h_pos/n_pos]ᵀ·[vn; v]
        stats_h = torch.cat([hn.div(n_neg), h_pos.div(-n_pos)]).to(W.dtype)
        stats_v = torch.cat([vn, v]).to(W.dtype)
        if self.W.grad is None:
            self.W.grad = torch.empty_like(self.W)
        if W.dtype == self.W.dtype:
            torch.mm(stats_h.T, stats_v, out=self.W.grad)
        else:
            self.W.grad.copy_(torch.mm(stats_h.T, stats_v))
        if self.mask is not None:
            self.W.grad.mul_(self.mask)
        self.b.grad = vn.mean(0).sub_(v.mean(0))
        self.c.grad = hn.mean(0).sub_(h_pos.mean(0))
        return vn

    def _for_products(self, W: torch.Tensor) -> torch.Tensor:
        """W in the dtype training's matrix products run in (``matmul_dtype``)."""
        return W if self.matmul_dtype is None else W.to(self.matmul_dtype)

    @torch.no_grad()
    def apply_constraints(self, count: bool = True) -> None:
        """After an update: masked weights back to exactly zero, every parameter into [−t, t]."""
        if self.mask is not None:
            self.W.mul_(self.mask)
        if self.constraints.clip is not None:
            clip_((self.W, self.b, self.c), self.constraints.clip)
        if count:
            self._updates += 1  # parameters changed: the sampler's weight noise is redrawn at its next use

    def fit_batch(self, batch: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One update without Lightning (benchmarks, tests): gradients, optimizer step, constraints."""
        vn = self.compute_gradients(batch)
        optimizer.step()
        self.apply_constraints()
        return vn

    def current_lr(self, step: int) -> float:
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * max(0.0, 1.0 - step / self._total_steps)

    def current_momentum(self, epoch: int) -> float:
        if self.final_momentum is None or epoch < MOMENTUM_SWITCH_EPOCH:
            return self.momentum
        return self.final_momentum

    def on_save_checkpoint(self, checkpoint):
        """The training draws' generator state: a resumed training continues the same stream."""
        checkpoint["uniforms"] = self._uniforms.state() if self._uniforms is not None else None

    def on_load_checkpoint(self, checkpoint):
        if checkpoint.get("uniforms"):
            self._uniforms = Uniforms(None, self.W.dtype, self.W.device, state=checkpoint["uniforms"])

    def on_train_start(self):
        own_gradient_sync(self.trainer)
        if self.persistent and self.trainer.world_size > 1 and self.trainer.current_epoch == 0:
            self.chain_v.copy_(bernoulli(self.base_rate.expand(self.n_chains, self.visible)))  # this rank's own chains
            self.chain_h.copy_(bernoulli(_conditional(self.chain_v, self.W.detach().T, self.c.detach())))
        if self.matmul_dtype == torch.bfloat16 and not native_bfloat16(self.device):
            warnings.warn(f"model.matmul_dtype=bfloat16 on {self.device}, which has no native bfloat16 products "
                          "(CPUs need AVX-512 or AMX): they are emulated and training runs many times slower than "
                          "with the default float32 (model.matmul_dtype=null).", stacklevel=1)
        if self.lr_schedule == "linear_decay":
            total = self.trainer.estimated_stepping_batches
            if not math.isfinite(total) or total <= 0:
                raise ConfigError("lr_schedule=linear_decay needs a finite training length (trainer.max_epochs or max_steps)")
            self._total_steps = float(total)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        lr, momentum = self.current_lr(self.trainer.global_step), self.current_momentum(self.current_epoch)
        for group in opt.param_groups:
            group["lr"], group["momentum"] = lr, momentum
        vn = self.compute_gradients(batch)
        average_across_ranks([self.W.grad, self.b.grad, self.c.grad])  # several devices: the mean over the ranks' batches
        opt.step()
        self.apply_constraints()
        every = self.trainer.log_every_n_steps
        if every and batch_idx % every == 0:  # cheap diagnostics, not every step
            with torch.no_grad():
                gap = self.free_energy(batch).mean() - self.free_energy(vn).mean()
            self.log("train/free_energy_gap", gap, on_step=True, on_epoch=False)
            self.log("train/lr", opt.param_groups[0]["lr"], on_step=True, on_epoch=False)

    def configure_optimizers(self):
        return torch.optim.SGD([{"params": [self.W], "weight_decay": self.weight_decay},
                                {"params": [self.b, self.c], "weight_decay": 0.0}],
                               lr=self.lr, momentum=self.momentum, fused=True)  # the same numbers, half the time
