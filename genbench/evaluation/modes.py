"""Mode coverage of 2D Gaussian mixtures: the two published protocols, and the sample log-density.

The ALI and VEEGAN/PacGAN papers both report "modes covered" on the grid25
and ring8 mixtures, but they count differently, so their numbers are not
comparable and each protocol gets its own metric name:

* :func:`ali_protocol` (Dumoulin 2018 §5.4.5; Dumoulin et al. 2017, ALI, §4.5):
  every sample is assigned to its most probable component, however far away
  it is; a mode is covered when at least one sample is assigned to it.
* :func:`veegan_protocol` (Srivastava et al. 2017, VEEGAN, §5.1; PacGAN's
  code): only *high-quality* samples count, those within ``threshold``
  standard deviations (Mahalanobis distance) of their nearest mean.

Everything is one batched tensor pass over the samples (an [N, K] distance or
log-probability matrix), in float64 like :class:`~genbench.data.gmm2d.GaussianMixture`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from genbench.data.gmm2d import GaussianMixture

from .records import Result, mean_and_std_error

ALI_REF = "Dumoulin 2018 §5.4.5; Dumoulin et al. 2017 (ALI) §4.5"
VEEGAN_REF = "Srivastava et al. 2017 (VEEGAN) §5.1; Lin et al. 2018 (PacGAN) code"


def _as_points(samples: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(samples).detach().to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty [N, d] tensor, got shape {tuple(x.shape)}")
    return x


def ali_protocol(samples: torch.Tensor, mixture: GaussianMixture) -> list[Result]:
    """``modes_ali``: number of components that are the argmax-posterior of at least one sample.

    The argmax of the responsibilities equals the argmax of the joint
    ``log w_k + log N(x; mu_k, Sigma_k)``, which we use directly: it never
    underflows, so a far-away sample is still assigned to some component and
    counts (this protocol does not judge sample quality; see
    :func:`veegan_protocol` for one that does).
    """
    x = _as_points(samples)
    finite = torch.isfinite(x).all(dim=1)  # a NaN sample (a diverged generator) is assigned to nothing
    assigned = mixture.component_log_probs(x[finite]).argmax(dim=1)
    counts = torch.bincount(assigned, minlength=mixture.n_components)
    covered = int((counts > 0).sum())
    return [Result("modes_ali", covered, "modes", "estimate", n=x.shape[0], settings={
        "protocol": "ali", "reference": ALI_REF, "assignment": "argmax posterior",
        "n_components": mixture.n_components, "modes_dropped": mixture.n_components - covered,
        "non_finite_samples": int((~finite).sum())})]


def veegan_protocol(samples: torch.Tensor, mixture: GaussianMixture, threshold: float = 3.0) -> list[Result]:
    """``modes_veegan``, ``high_quality_pct`` and ``reverse_kl`` (VEEGAN §5.1, PacGAN's code).

    A sample is *high quality* when its Mahalanobis distance to its nearest
    mean (nearest by Mahalanobis distance, so the covariance shapes the
    ball) is below ``threshold`` standard deviations. Even for perfect
    samples of a 2D Gaussian the expected fraction is P(chi²_2 < t²) =
    1 − exp(−t²/2) (98.89% at t = 3), not 100%.

    ``modes_veegan`` counts components nearest to at least one high-quality
    sample. ``reverse_kl`` is KL(h ‖ uniform) = Σ_k h_k log(K h_k) for the
    normalized histogram h of high-quality samples over components
    (0·log 0 = 0). PacGAN calls it "reverse KL" because the model's histogram
    comes first; it is 0 for a perfectly balanced histogram and log K when
    every high-quality sample sits in one mode. It is NaN (with a note in
    ``settings``) when there is no high-quality sample.
    """
    x = _as_points(samples)
    n, k = x.shape[0], mixture.n_components
    dist, nearest = mixture.mahalanobis(x).min(dim=1)
    hq = dist < threshold
    counts = torch.bincount(nearest[hq], minlength=k)
    n_hq = int(hq.sum())
    p = n_hq / n
    settings = {"protocol": "veegan", "reference": VEEGAN_REF, "threshold_std": threshold,
                "distance": "mahalanobis to nearest mean", "n_components": k, "n_high_quality": n_hq}
    if n_hq > 0:
        h = counts.double() / n_hq
        kl = torch.where(h > 0, h * torch.log(h * k), torch.zeros_like(h)).sum().item()
        kl_settings = dict(settings)
    else:
        kl = math.nan
        kl_settings = {**settings, "undefined": "no high-quality sample: the histogram h is undefined"}
    return [
        Result("modes_veegan", int((counts > 0).sum()), "modes", "estimate", n=n, settings=settings),
        Result("high_quality_pct", 100 * p, "%", "estimate", std_error=100 * math.sqrt(p * (1 - p) / n),
               n=n, settings={**settings, "std_error": "binomial sqrt(p(1-p)/n)"}),
        Result("reverse_kl", kl, "nats", "estimate", n=n,
               settings={**kl_settings, "definition": "KL(h || uniform), h = model histogram of high-quality samples"}),
    ]


def sample_log_density(samples: torch.Tensor, mixture: GaussianMixture) -> list[Result]:
    """``sample_log_density``: mean log p_true(x) over model samples, in nats, with its standard error.

    The "reverse" direction of the likelihood: it rewards samples that land
    where the true density is high and penalizes samples off the data, but is
    blind to dropped modes (a model on one mode scores well), so it is read
    beside the mode counts, and beside the true entropy (−E_p log p) as scale.
    """
    x = _as_points(samples)
    mean, se = mean_and_std_error(mixture.log_prob(x))
    return [Result("sample_log_density", mean, "nats", "estimate", std_error=se, n=x.shape[0],
                   settings={"protocol": "sample_log_density", "density": "true mixture"})]


def _draw(model_or_sampler, n: int) -> torch.Tensor:
    sample = getattr(model_or_sampler, "sample", model_or_sampler)
    return sample(n).detach().to("cpu", torch.float64)


def mode_coverage(model_or_sampler: object | Callable[[int], torch.Tensor], mixture: GaussianMixture,
                  ali_samples: int = 10_000, veegan_samples: int = 2_500, seed: int = 0,
                  threshold: float = 3.0) -> list[Result]:
    """All mode-coverage records for a model (anything with ``sample(n)``, or a callable ``n -> Tensor``).

    Draws two independent sample sets with the sizes of the two papers
    (ALI: 10,000; VEEGAN/PacGAN: 2,500) and scores :func:`ali_protocol` on the
    first, :func:`veegan_protocol` and :func:`sample_log_density` on the
    second (``settings["sample_set"]`` says which). The draws run under
    ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so they are
    reproducible and leave the caller's global RNG state untouched (CUDA
    generators are forked too once CUDA is initialized). A module in training
    mode samples in eval mode (batch norm with running statistics, no dropout)
    and is put back in training mode afterwards.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    was_training = getattr(model_or_sampler, "training", None)
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        if was_training:
            model_or_sampler.eval()
        try:
            x_ali = _draw(model_or_sampler, ali_samples)
            x_veegan = _draw(model_or_sampler, veegan_samples)
        finally:
            if was_training:
                model_or_sampler.train()
    records = ali_protocol(x_ali, mixture)
    for r in records:
        r.settings.update(sample_set="ali", seed=seed)
    for r in veegan_protocol(x_veegan, mixture, threshold) + sample_log_density(x_veegan, mixture):
        r.settings.update(sample_set="veegan", seed=seed)
        records.append(r)
    return records
