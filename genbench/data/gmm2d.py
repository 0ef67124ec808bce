"""2D Gaussian mixtures: the true distribution, its exact density and sampler, and the data module.

Presets (means, isotropic standard deviation, equal weights):

* ``grid25``: means {-4,-2,0,2,4}^2, std 0.05 (the ALI and PacGAN grid);
* ``ring8``: 8 means (cos 2πk/8, sin 2πk/8), k = 0..7, on a circle of radius 1,
  std 0.01 (PacGAN/VEEGAN). All 8 are distinct: the Unrolled-GAN demo's
  ``linspace(0, 2π, 8)`` repeats its first mean and has only 7.

Custom mixtures take explicit ``means``, ``std`` (or full ``covariances``) and
``weights``. Splits are drawn from the mixture with fixed, distinct seeds:
100,000 training points, and independent 10,000-point validation and test sets.
"""

from __future__ import annotations

import math

import torch

from ..core.errors import ConfigError
from .base import DataSpace, TensorDataModule, tensor_checksum

SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}


class GaussianMixture:
    """A mixture of K full-covariance Gaussians in R^d (float64 for exact densities), on the device of its means."""

    def __init__(self, means, covariances, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covariances = torch.as_tensor(covariances, dtype=torch.float64)
        k, d = self.means.shape
        if self.covariances.shape != (k, d, d):
            raise ConfigError(f"covariances must have shape {(k, d, d)}, got {tuple(self.covariances.shape)}")
        w = (torch.full((k,), 1.0 / k, dtype=torch.float64, device=self.means.device) if weights is None
             else torch.as_tensor(weights, dtype=torch.float64, device=self.means.device))
        if w.shape != (k,) or (w < 0).any() or not math.isclose(w.sum().item(), 1.0, rel_tol=1e-9):
            raise ConfigError("weights must be K non-negative numbers summing to 1")
        self.weights = w
        self.chol = torch.linalg.cholesky(self.covariances)
        self._log_norm = -0.5 * d * math.log(2 * math.pi) - torch.log(torch.diagonal(self.chol, dim1=-2, dim2=-1)).sum(-1)

    @classmethod
    def isotropic(cls, means, std, weights=None):
        means = torch.as_tensor(means, dtype=torch.float64)
        k, d = means.shape
        cov = (torch.as_tensor(std, dtype=torch.float64) ** 2).reshape(-1, 1, 1) * torch.eye(d, dtype=torch.float64)
        return cls(means, cov.expand(k, d, d).clone(), weights)

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def mahalanobis(self, x: torch.Tensor) -> torch.Tensor:
        """[N, K] Mahalanobis distance of every point to every component."""
        diff = x.to(torch.float64)[:, None, :] - self.means[None]  # N,K,d
        sol = torch.linalg.solve_triangular(self.chol[None].expand(diff.shape[0], -1, -1, -1), diff[..., None], upper=False)
        return sol.squeeze(-1).norm(dim=-1)

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """[N, K] log w_k + log N(x; mu_k, Sigma_k)."""
        return torch.log(self.weights) + self._log_norm - 0.5 * self.mahalanobis(x) ** 2

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density in nats, shape [N]."""
        return torch.logsumexp(self.component_log_probs(x), dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.component_log_probs(x), dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], dtype=torch.float64, generator=generator, device=self.means.device)
        x = self.means[comp] + (self.chol[comp] @ eps[..., None]).squeeze(-1)
        return x.float()

    def entropy(self, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
        """Monte-Carlo differential entropy in nats, with its standard error."""
        x = self.sample(n, torch.Generator().manual_seed(seed))
        nlp = -self.log_prob(x)
        return nlp.mean().item(), (nlp.std() / math.sqrt(n)).item()

    def spec(self) -> dict:
        return {"means": self.means.tolist(), "covariances": self.covariances.tolist(), "weights": self.weights.tolist()}


def grid25() -> GaussianMixture:
    g = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    means = torch.cartesian_prod(g, g)
    return GaussianMixture.isotropic(means, 0.05)


def ring8(radius: float = 1.0, std: float = 0.01) -> GaussianMixture:
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture.isotropic(means, std)


PRESETS = {"grid25": grid25, "ring8": ring8}


class GMM2DDataModule(TensorDataModule):
    """Samples of a 2D Gaussian mixture (continuous data space)."""

    name = "gmm2d"

    def __init__(self, mixture: str = "grid25", means=None, std=None, covariances=None, weights=None,
                 train_size: int = 100_000, val_size: int = 10_000, test_size: int = 10_000, **kw):
        super().__init__(**kw)
        if mixture == "custom":
            if means is None or (std is None) == (covariances is None):
                raise ConfigError("a custom mixture needs `means` and exactly one of `std` or `covariances`")
            self.mixture = (GaussianMixture.isotropic(means, std, weights) if covariances is None
                            else GaussianMixture(means, covariances, weights))
        elif mixture in PRESETS:
            self.mixture = PRESETS[mixture]()
        else:
            raise ConfigError(f"unknown mixture {mixture!r}; valid: {', '.join([*PRESETS, 'custom'])}")
        self.preset = mixture
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    @property
    def variant(self) -> str:
        if self.preset != "custom":
            return f"gmm2d/{self.preset}"
        return f"gmm2d/custom-{tensor_checksum(self.mixture.means, self.mixture.covariances)[:8]}"

    def space(self) -> DataSpace:
        return DataSpace("continuous", (2,))

    def load(self):
        return {k: self.mixture.sample(n, torch.Generator().manual_seed(SPLIT_SEEDS[k]))
                for k, n in self.sizes.items() if n > 0}
