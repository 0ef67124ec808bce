"""Inference quality on 2D mixtures, for models with ``encode`` and ``decode`` (Dumoulin 2018 §5.4.5, Fig. 5.8).

The thesis compares ALI with GAN-inference baselines (and a VAE) by "reconstructing 10,000 held-out
samples" and shows the result only as a figure. The numbers here make that comparison quantitative:

* ``reconstruction_error``: mean ‖x − x̂‖² over held-out x, x̂ = decode(encode(x)) (squared data units);
* ``reconstruction_same_mode_pct``: % of x̂ whose most probable mixture component (the ALI protocol's
  assignment) is the one of its input x;
* ``latent_mmd``: the unbiased MMD² between the encoded q(z) = E_x q(z | x) and the prior N(0, I),
  with a sum of Gaussian kernels of bandwidths 0.5, 1 and 2 (prior units);
* ``latent_ks``: the largest per-dimension Kolmogorov–Smirnov statistic of q(z) against N(0, 1)
  (each dimension's statistic and p-value are in ``settings``).

All are stochastic estimates (the encoder and the prior draws are random), drawn under ``seed`` without
touching the caller's random state. :func:`fig_5_8` draws the thesis' panel from a table's trained runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import torch
from scipy import stats

from ..core.devices import forked_rng, module_device
from ..data.gmm2d import GaussianMixture
from ..models.contract import offers

from .records import Result, mean_and_std_error
from .samples import new_figure

REFERENCE = "Dumoulin 2018 §5.4.5 (Fig. 5.8): reconstructions of 10,000 held-out points"
BANDWIDTHS = (0.5, 1.0, 2.0)


def mmd2_unbiased(a: torch.Tensor, b: torch.Tensor, bandwidths=BANDWIDTHS) -> float:
    """Unbiased MMD² (Gretton et al. 2012) with k(u, v) = Σ_s exp(−‖u − v‖² / (2 s²)); float64, one batched pass."""
    a, b = a.double(), b.double()
    m, n = a.shape[0], b.shape[0]

    def k(u, v):
        d2 = torch.cdist(u, v).pow(2)
        return sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)

    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return ((kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (n * (n - 1))
            - 2 * kab.mean()).item()


def reconstruct(model, x: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(z ~ q(z | x), x̂ = decode(z)) in eval mode under ``seed``, leaving the global random state and the mode as found."""
    was_training, device = model.training, module_device(model)
    with forked_rng(device), torch.no_grad():
        torch.manual_seed(seed)
        model.eval()
        try:
            z = model.encode(x.to(device))
            xr = model.decode(z)
        finally:
            model.train(was_training)
    return z.detach().cpu(), xr.detach().cpu()


def inference_quality(model, data: torch.Tensor, mixture: GaussianMixture, n: int = 10_000, seed: int = 0,
                      mmd_points: int = 2_000) -> list[Result]:
    """The four inference records on the first ``n`` points of ``data`` (MMD on ``mmd_points`` of them)."""
    x = torch.as_tensor(data)[:n].float()
    z, xr = reconstruct(model, x, seed)
    settings = {"reference": REFERENCE, "seed": seed, "reconstruction": "decode(encode(x)), one draw per point"}

    err = (xr.double() - x.double()).pow(2).sum(1)
    mean, se = mean_and_std_error(err)
    same = (mixture.component_log_probs(x).argmax(1) == mixture.component_log_probs(xr).argmax(1)).double()
    p = same.mean().item()
    records = [
        Result("reconstruction_error", mean, "none", "estimate", std_error=se, n=len(x),
               settings={**settings, "definition": "mean squared Euclidean distance ||x - x_hat||^2 (data units^2)"}),
        Result("reconstruction_same_mode_pct", 100 * p, "%", "estimate", n=len(x),
               std_error=100 * math.sqrt(p * (1 - p) / len(x)),
               settings={**settings, "assignment": "argmax posterior (ALI protocol)", "std_error": "binomial"}),
    ]

    m = min(mmd_points, len(z))
    gen = torch.Generator().manual_seed(seed + 1)
    prior = torch.randn(m, z.shape[1], generator=gen, dtype=torch.float64)
    finite = bool(torch.isfinite(z).all())
    mmd = mmd2_unbiased(z[:m], prior) if finite else math.nan
    records.append(Result("latent_mmd", mmd, "none", "estimate", n=m, settings={
        **settings, "kernel": f"sum of Gaussian kernels, bandwidths {list(BANDWIDTHS)}", "estimator": "unbiased MMD^2",
        "against": f"{m} draws of N(0, I)"}))
    ks = [stats.kstest(z[:, d].numpy(), "norm") for d in range(z.shape[1])] if finite else []
    records.append(Result("latent_ks", max((t.statistic for t in ks), default=math.nan), "none", "estimate", n=len(z),
                          settings={**settings, "definition": "max over dimensions of the KS statistic vs N(0, 1)",
                                    "per_dimension": [float(t.statistic) for t in ks],
                                    "p_values": [float(t.pvalue) for t in ks]}))
    return records


# -- Fig. 5.8 ----------------------------------------------------------------------------------------------------------

ROWS = ("test examples", "latent codes q(z)", "reconstructions", "prior samples", "generator samples")
X_LIM, Z_LIM = 6.0, 4.0  # the thesis figure's axes: x in [-6, 6], z in [-4, 4]


def mode_colors(k: int) -> np.ndarray:
    """K distinct colours in a fixed shuffled order, so neighbouring modes differ."""
    order = np.random.default_rng(0).permutation(k)
    return matplotlib.colormaps["hsv"](np.linspace(0, 1, k, endpoint=False))[order]


def panel_columns(model, dm, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The five (points, mode of each point) panels of one model: the rows of :data:`ROWS`."""
    mixture = dm.info.mixture
    mode = lambda v: mixture.component_log_probs(v).argmax(1)  # noqa: E731
    x = dm.split("test")[:n].float()
    z, xr = reconstruct(model, x, seed)
    with forked_rng(module_device(model)), torch.no_grad():
        torch.manual_seed(seed + 1)
        prior = torch.randn(n, z.shape[1])
        model.eval()
        gen = model.decode(prior.to(module_device(model))).cpu()
    mx, mg = mode(x), mode(gen)
    return [(x, mx), (z, mx), (xr, mx), (prior, mg), (gen, mg)]


def fig_5_8(runs, path, n: int = 10_000, seed: int = 0):
    """Fig. 5.8 as a PNG: rows as :data:`ROWS`, one column per run with encode and decode (ALI, the GAN-inference
    baselines and the VAE, the thesis' column d, each as the table orders its rows).

    Points are coloured by the mixture component of the test example they come from (rows 1–3) or of the
    generated sample (rows 4–5), so row 2 shows how each model's q(z) organizes the modes. For the VAE, codes
    are draws from q(z | x) and reconstructions and generator samples are decoder means E[x | z]. Columns of runs
    that did not finish say so.
    """
    runs = [r for r in runs if r.model is None or offers(r.model, "inference")]
    columns = [(r.label, r) for r in runs]
    mixture = next((r.datamodule.info.mixture for r in runs if r.datamodule is not None), None)
    colors = mode_colors(mixture.n_components) if mixture is not None else None
    fig = new_figure(figsize=(2.6 * len(columns), 2.6 * len(ROWS) + 0.4), dpi=90)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.03, top=1 - 0.75 / (2.6 * len(ROWS) + 0.4), wspace=0.3, hspace=0.3)
    axes = fig.subplots(len(ROWS), len(columns), squeeze=False)
    for j, (label, run) in enumerate(columns):
        panels = panel_columns(run.model, run.datamodule, n, seed) if run is not None and run.model is not None else None
        for i, row in enumerate(ROWS):
            ax = axes[i][j]
            lim = Z_LIM if i in (1, 3) else X_LIM
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
            if panels is None:
                ax.text(0, 0, f"run {run.status}", ha="center", va="center", fontsize=7, color="grey")
            else:
                pts, modes = (t.numpy() for t in panels[i])
                ax.scatter(pts[:, 0], pts[:, 1], s=0.5, c=colors[modes], alpha=0.6, linewidths=0,
                           rasterized=True)
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(row, fontsize=8)
    fig.suptitle("Dumoulin 2018, Fig. 5.8: inference on the 25-mode grid (x axes [-6, 6], z axes [-4, 4])", fontsize=9)
    fig.savefig(path, dpi=fig.dpi)  # a fixed layout: tight or constrained layouts cost seconds on 20 panels
    fig.clear()
    return Path(path)
