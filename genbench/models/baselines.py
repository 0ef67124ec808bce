"""Baselines with closed-form or EM training: the floor and the simplest rungs of every table.

* :class:`TrueMixture`: the data's own 2D mixture (exact density and sampler):
  no model can beat its test NLL, the mixture's entropy.
* :class:`MixtureOfBernoullis` trained by EM, one EM iteration per epoch:
  the E-step accumulates sufficient statistics over the epoch's batches and
  the M-step runs at the epoch's end, so on fixed data this is exact batch EM
  (monotone in the penalized likelihood). On dynamically binarized data every
  epoch sees a fresh sample, which makes it a stochastic EM.
* :class:`IndependentBernoulli`: the K = 1 mixture (its EM converges in one epoch).
"""

from __future__ import annotations

import math

import lightning as L
import torch

from ..core.bernoulli import bernoulli
from ..core.errors import ConfigError
from ..data.base import DataInfo
from ..data.gmm2d import GaussianMixture


class TrueMixture(L.LightningModule):
    """The true 2D Gaussian mixture of a ``gmm2d`` data module, its tensors as buffers (``.to(device)`` moves them)."""

    needs_training = False
    supported_spaces = ("continuous",)

    def __init__(self, info: DataInfo):
        super().__init__()
        if info.mixture is None:
            raise ConfigError(f"true_mixture needs a data module with a known mixture (data=gmm2d), not {info.variant}")
        for name in ("means", "covariances", "weights"):
            self.register_buffer(name, getattr(info.mixture, name).clone(), persistent=False)  # derived from the data

    @property
    def mixture(self) -> GaussianMixture:
        return GaussianMixture(self.means, self.covariances, self.weights)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixture.log_prob(x).float()

    def sample(self, n: int) -> torch.Tensor:
        return self.mixture.sample(n)


class MixtureOfBernoullis(L.LightningModule):
    """p(x) = Σ_k π_k Π_d μ_kd^x_d (1 − μ_kd)^(1−x_d), fitted by (MAP) EM.

    ``pseudocount`` a adds a Beta(1+a, 1+a) prior on every μ_kd (a = 0 is plain
    maximum likelihood) so that a pixel never seen on keeps a non-zero
    probability on the test set. Means start at μ = ½ m + ½ U(¼, ¾) around the
    training means m, with ``init_seed`` fixed so restarts are comparable.
    """

    supported_spaces = ("binary",)
    single_device = ("the mixture of Bernoullis trains by EM in closed form (no gradients for DDP to average, and DDP "
                     "refuses a model without them): train it on one device (trainer.devices=1), where an epoch over "
                     "MNIST takes seconds")

    def __init__(self, info: DataInfo, components: int = 10, pseudocount: float = 1e-2, init_seed: int = 0):
        super().__init__()
        self.automatic_optimization = False
        self.shape, self.pseudocount = info.shape, pseudocount
        d = info.dim
        gen = torch.Generator().manual_seed(init_seed)
        mean = info.train_mean.flatten() if info.train_mean is not None else torch.full((d,), 0.5)
        mu = 0.5 * mean + 0.5 * (0.25 + 0.5 * torch.rand(components, d, generator=gen))
        self.register_buffer("mu", mu)
        self.register_buffer("log_weights", torch.full((components,), -math.log(components)))

    # -- the model ---------------------------------------------------------------
    def _joint(self, x: torch.Tensor) -> torch.Tensor:
        """[B, K] log π_k + log p(x | k)."""
        x = x.flatten(1).to(self.mu.dtype)
        log_mu, log_1m = torch.log(self.mu), torch.log1p(-self.mu)
        return self.log_weights + x @ (log_mu - log_1m).T + log_1m.sum(1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self._joint(x), dim=1)

    def sample(self, n: int) -> torch.Tensor:
        k = torch.multinomial(self.log_weights.exp(), n, replacement=True)
        return bernoulli(self.mu[k]).reshape(n, *self.shape)

    def log_prior(self) -> torch.Tensor:
        """log Beta(1+a, 1+a) density of the means, up to a constant (the MAP term EM increases)."""
        a = self.pseudocount
        return a * (torch.log(self.mu) + torch.log1p(-self.mu)).sum()

    # -- EM as an epoch loop ---------------------------------------------------------
    def on_train_epoch_start(self):
        k, d = self.mu.shape
        self._counts = torch.zeros(k, dtype=torch.float64, device=self.mu.device)
        self._sums = torch.zeros(k, d, dtype=torch.float64, device=self.mu.device)
        self._loglik, self._n = 0.0, 0

    def training_step(self, batch, batch_idx):
        joint = self._joint(batch)
        resp = torch.softmax(joint, dim=1)
        self._counts += resp.sum(0).double()
        self._sums += (resp.T @ batch.flatten(1).to(resp.dtype)).double()
        ll = torch.logsumexp(joint, dim=1)
        self._loglik += ll.sum().item()
        self._n += batch.shape[0]
        self.log("train/log_likelihood", ll.mean(), prog_bar=True)

    def on_train_epoch_end(self):
        a, n = self.pseudocount, self._counts.sum()
        mu = (self._sums + a) / (self._counts[:, None] + 2 * a)
        mu = mu.clamp(1e-12, 1 - 1e-12)  # a = 0 with an empty pixel column
        self.mu.copy_(mu.to(self.mu.dtype))
        self.log_weights.copy_(torch.log(self._counts.clamp_min(1e-12) / n).to(self.log_weights.dtype))
        self.log("train/epoch_log_likelihood", self._loglik / max(self._n, 1))

    def configure_optimizers(self):
        return None


class IndependentBernoulli(MixtureOfBernoullis):
    """p(x) = Π_d μ_d^x_d (1 − μ_d)^(1−x_d): the K = 1 mixture."""

    frozen_parameters = {"log_weights": "K = 1: the one component's weight is 1 (log 0) whatever the data"}

    def __init__(self, info: DataInfo, pseudocount: float = 1e-2):
        super().__init__(info, components=1, pseudocount=pseudocount)
