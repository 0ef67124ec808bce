"""Sample figures as PNG: image grids and 2D scatter/density plots against the true mixture.

Figures are built as bare :class:`matplotlib.figure.Figure` objects with an
Agg canvas rather than through ``pyplot``: they never enter pyplot's figure
registry, so calling these functions hundreds of times from a training
callback leaks nothing, and they work on headless machines whatever backend
the user's session has. ``matplotlib.use("Agg")`` is only called when pyplot
has not been imported yet (seaborn imports it), so we never switch the
backend under an interactive session or a notebook.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.devices import module_device
from ..core.optional import require


def new_figure(**kw) -> Figure:
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, bbox_inches="tight")
    fig.clear()  # drop artists now; the figure itself is unreferenced once we return
    return path


def _infer_range(x: torch.Tensor, uint8: bool) -> tuple[float, float]:
    """[0, 255] for uint8 and other 0..255 values, [0, 1] for binary (any dtype) and unit floats, else the data's range."""
    lo, hi = x.min().item(), x.max().item()
    if uint8 or (lo >= 0 and 1 < hi <= 255):
        return 0.0, 255.0
    if lo >= 0 and hi <= 1:
        return 0.0, 1.0
    return lo, hi if hi > lo else lo + 1


def save_image_grid(x: torch.Tensor, path, nrow: int | None = None, title: str | None = None,
                    value_range: tuple[float, float] | None = None, shape: tuple[int, ...] | None = None) -> Path:
    """Save N images as one grid PNG; returns the path.

    ``x`` is [N, C, H, W] (C = 1 grey, C = 3 RGB), [N, H, W], or flat [N, D]
    with ``shape`` = (C, H, W) or (H, W) (default: square grey images).
    ``value_range`` maps to black..white; by default binary and [0, 1] floats
    (any dtype) use [0, 1]; uint8 and other 0..255 values use [0, 255]. ``nrow`` is the
    number of images per row (default: about sqrt(N)).
    """
    x = torch.as_tensor(x).detach().cpu()
    uint8 = x.dtype == torch.uint8
    x = x.double()
    if x.ndim == 2:
        if shape is None:
            side = math.isqrt(x.shape[1])
            if side * side != x.shape[1]:
                raise ValueError(f"flat images of size {x.shape[1]} need an explicit shape")
            shape = (side, side)
        x = x.reshape(x.shape[0], *shape)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected [N, 1|3, H, W] images, got shape {tuple(x.shape)}")
    lo, hi = value_range if value_range is not None else _infer_range(x, uint8)
    x = ((x - lo) / (hi - lo)).clamp(0, 1)

    n, c, h, w = x.shape
    ncol = nrow or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncol)
    pad = 1  # one mid-grey pixel between images: visible against both black and white pixels
    x = torch.nn.functional.pad(x, (0, pad, 0, pad), value=0.5)
    x = torch.cat([x, 0.5 * x.new_ones(nrows * ncol - n, c, h + pad, w + pad)])
    grid = x.reshape(nrows, ncol, c, h + pad, w + pad).permute(0, 3, 1, 4, 2)
    grid = grid.reshape(nrows * (h + pad), ncol * (w + pad), c)[:-pad, :-pad].numpy()

    scale = max(1.0, 256 / max(grid.shape[:2]))  # small 8x8 grids get enlarged pixels
    fig = new_figure(figsize=(grid.shape[1] * scale / 100, grid.shape[0] * scale / 100 + (0.3 if title else 0)), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def _points(x) -> np.ndarray:
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    return x[torch.isfinite(x).all(dim=1)].numpy()


def _grid(extent, resolution: int = 300) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """The axes' values and the resolution² points of a grid over ``extent`` (rows vary in y, columns in x)."""
    xs, ys = (torch.linspace(lo, hi, resolution, dtype=torch.float64) for lo, hi in extent)
    return xs.numpy(), ys.numpy(), torch.cartesian_prod(ys, xs).flip(1)


def _mixture_grid(mixture, extent, resolution: int = 300):
    """log p on a resolution² grid; chunked so the [N, K, d, d] solve stays small."""
    xs, ys, pts = _grid(extent, resolution)
    logp = torch.cat([mixture.log_prob(c) for c in pts.split(8192)]).reshape(resolution, resolution)
    return xs, ys, logp.numpy()


def _model_grid(log_prob, extent, resolution: int = 300):
    """A model's log density on the grid, the points in its parameters' dtype and device (float32 on the CPU for a
    plain callable)."""
    xs, ys, pts = _grid(extent, resolution)
    owner = getattr(log_prob, "__self__", None)
    param = next(owner.parameters(), None) if isinstance(owner, torch.nn.Module) else None
    like = {"dtype": param.dtype if param is not None else torch.float32,
            "device": module_device(owner) if isinstance(owner, torch.nn.Module) else "cpu"}
    with torch.no_grad():
        logp = torch.cat([log_prob(c.to(**like)).detach().cpu().double() for c in pts.split(8192)])
    return xs, ys, logp.reshape(resolution, resolution).numpy()


def _extent(mixture, samples: np.ndarray | None, margin: float | None = None):
    """The means' bounding box ± a margin (3 std of the widest component, at least 10% of the span)."""
    if mixture is None:
        lo, hi = samples.min(0), samples.max(0)
        m = 0.05 * (hi - lo).max() + 1e-6
    else:
        means = mixture.means.numpy()
        lo, hi = means.min(0), means.max(0)
        sd = math.sqrt(torch.linalg.eigvalsh(mixture.covariances).max().item())
        m = margin if margin is not None else max(3 * sd, 0.1 * (hi - lo).max(), 1e-3)
    return (lo[0] - m, hi[0] + m), (lo[1] - m, hi[1] + m)


def save_scatter_2d(samples, path, mixture=None, data=None, title: str | None = None) -> Path:
    """Scatter of model samples over the true mixture's log-density contours and/or data points.

    The axes span the mixture's means ± a margin (the region the protocols
    score), so a diverging model's far-away samples fall outside the frame;
    the count of samples outside is put in the legend rather than zooming out
    until the modes become invisible. Equal aspect so rings look like rings.
    """
    s = _points(samples)
    fig = new_figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    (x0, x1), (y0, y1) = _extent(mixture, s if mixture is None else None)
    if mixture is not None:
        xs, ys, logp = _mixture_grid(mixture, ((x0, x1), (y0, y1)))
        top = logp.max()
        ax.contour(xs, ys, logp, levels=np.linspace(top - 12, top, 7), cmap="Greys", linewidths=0.6)
    if data is not None:
        d = _points(data)
        ax.scatter(d[:, 0], d[:, 1], s=2, c="0.5", alpha=0.2, linewidths=0, label="data")
    outside = int((~((s[:, 0] >= x0) & (s[:, 0] <= x1) & (s[:, 1] >= y0) & (s[:, 1] <= y1))).sum())
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:blue", alpha=0.3, linewidths=0,
               label="samples" + (f" ({outside} outside)" if outside else ""))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, fontsize=7, markerscale=3)  # off the modes
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def save_density_2d(samples, path, mixture=None, title: str | None = None, bins: int = 150,
                    log_prob=None) -> Path:
    """Panels side by side: a seaborn 2D histogram of the samples, the model's density exp(``log_prob``) on a grid
    (a model with an exact likelihood), and the true density (with a mixture).

    The model's density is drawn from its log density, not from its samples: a sharp model (NSF on ring8, modes of
    std 0.01 narrower than a bin) puts its samples in a few bins, and its histogram alone looks empty. A histogram
    rather than a KDE for the samples: a KDE's bandwidth (Scott's rule over the whole 8-unit grid) would smear the
    grid25 modes (std 0.05) into one blob, hiding exactly the mode structure the figure is meant to show.
    """
    sns = require("seaborn", "the 2D density figure")  # seconds to import, used by this figure only

    s = _points(samples)
    extent = _extent(mixture, s if mixture is None else None)
    densities = []
    if log_prob is not None:
        densities.append(("model density", _model_grid(log_prob, extent)))
    if mixture is not None:
        densities.append(("true density", _mixture_grid(mixture, extent)))
    fig = new_figure(figsize=(4.5 * (1 + len(densities)), 4.5), dpi=100)
    axes = fig.subplots(1, 1 + len(densities), squeeze=False)[0]
    sns.histplot(x=s[:, 0], y=s[:, 1], bins=bins, binrange=extent, cmap="viridis", ax=axes[0])
    axes[0].set_title("samples")
    for ax, (name, (xs, ys, logp)) in zip(axes[1:], densities):
        _density_panel(ax, name, xs, ys, logp)
    for ax in axes:
        ax.set_xlim(*extent[0])
        ax.set_ylim(*extent[1])
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _density_panel(ax, name: str, xs, ys, logp: np.ndarray) -> None:
    """exp(log p) from 0 up, on its own colour scale; NaN or +∞ log densities are counted in the title, not hidden."""
    bad = np.isnan(logp) | np.isposinf(logp)
    with np.errstate(over="ignore"):
        density = np.exp(np.where(bad, -np.inf, logp))
    ax.pcolormesh(xs, ys, density, cmap="viridis", shading="auto", vmin=0)
    if bad.any():
        ax.set_title(f"{name} ({bad.sum()} grid points NaN or +inf)", fontsize=8)
    else:
        ax.set_title(name)


LEARNING_CURVE_METRICS = ("nll", "bits_per_dim")


def read_metrics(log_dir):
    """A run's CSV log as one frame: ``metrics.csv`` after the logs of earlier attempts it resumed from
    (``metrics.attempt*.csv``, see :func:`genbench.loggers.build_loggers`); an epoch logged twice (cut short by
    a kill, then redone) keeps its later values."""
    files = sorted(Path(log_dir).glob("metrics.attempt*.csv"), key=lambda f: int(f.stem.split("attempt")[1]))
    files += [f for f in [Path(log_dir) / "metrics.csv"] if f.is_file()]
    if not files:
        return None
    log = pd.read_csv(files[0])
    for f in files[1:]:
        later = pd.read_csv(f)
        if "epoch" in log and "epoch" in later and len(later):
            log = log[log["epoch"] < later["epoch"].min()]
        log = pd.concat([log, later], ignore_index=True)
    return log


def save_learning_curve(log_dir, path) -> Path | None:
    """The run's epoch-level likelihood metrics (train/ and val/ nll or bits/dim) against the epoch, from its CSV log."""
    log = read_metrics(log_dir)
    if log is None or "epoch" not in log:
        return None
    by_epoch = log.groupby("epoch").last()
    panels = [m for m in LEARNING_CURVE_METRICS if any(f"{s}/{m}" in by_epoch for s in ("train", "val"))]
    if not panels:
        return None
    fig = new_figure(figsize=(4.5 * len(panels), 3.4))
    for i, metric in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        for split in ("train", "val"):
            column = by_epoch.get(f"{split}/{metric}")
            if column is not None and column.notna().any():
                ax.plot(column.dropna().index + 1, column.dropna(), marker="o", label=split)
        ax.set(xlabel="epoch", ylabel=metric.replace("_", " "), title=f"learning curve: {metric}")
        ax.legend(fontsize=7)
    return save_figure(fig, path)
