"""Table figures of the flow family (Dinh 2018, ch. 5), drawn from trained models with ``encode``/``decode``.

Each function has the table-figure signature ``fn(runs, path) -> path | None``: ``runs`` are the table's
trained rows on one dataset and seed (``.label``, ``.model`` or None, ``.datamodule``); rows without a
usable model are skipped, and nothing is written when none is left.

* :func:`data_and_latent` (Fig. 5.1): test points x and their latents f(x); prior draws z and their images g(z).
* :func:`spherical_interpolation` (Fig. 5.14, §1.15): the latents of four test images z⁽¹⁾…z⁽⁴⁾ combined as
  z = cos φ (cos φ′ z⁽¹⁾ + sin φ′ z⁽²⁾) + sin φ (cos φ′ z⁽³⁾ + sin φ′ z⁽⁴⁾) on a grid of angles in [0, π/2]².
* :func:`langevin_inpainting` (Fig. 5.7): the observed pixels are clamped and the masked ones follow Langevin
  dynamics on log p, for the ten masks of the figure.
* :func:`samples` : model samples beside test images, in the data's own value range.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import torch

from ..core.errors import ConfigError
from .samples import new_figure, save_figure

MASKS = ("top rows", "bottom rows", "odd pixels", "even pixels", "left side", "right side",
         "middle vertically", "middle horizontally", "75% random", "90% random")
"""Fig. 5.7's masks, top to bottom; each marks the pixels to infer (the others are clamped to the data)."""


def _usable(runs, *methods):
    return [r for r in runs if r.model is not None and all(callable(getattr(r.model, m, None)) for m in methods)]


def _as_image(x: torch.Tensor, levels: int | None) -> np.ndarray:
    """[C, H, W] → an array in [0, 1] for imshow (grey [H, W] or RGB [H, W, 3])."""
    x = x.detach().cpu().double()
    x = x / (levels - 1) if levels else (x - x.min()) / (x.max() - x.min() + 1e-12)
    x = x.clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def _mosaic(images: torch.Tensor, levels: int | None, pad: int = 1) -> np.ndarray:
    """[R, K, C, H, W] → one [R(H+pad), K(W+pad)] image, mid-grey between tiles."""
    rows, cols, c, h, w = images.shape
    tiles = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, *(() if c == 1 else (3,))), 0.5)
    for i in range(rows):
        for j in range(cols):
            tiles[i * (h + pad): i * (h + pad) + h, j * (w + pad): j * (w + pad) + w] = _as_image(images[i, j], levels)
    return tiles


def _levels(run) -> int | None:
    space = run.datamodule.info.space
    return space.levels if space.kind == "discrete" else None


def _panels(panels: list[tuple[str, np.ndarray]], path, title: str, width: float = 4.0):
    fig = new_figure(figsize=(width * len(panels), width + 0.6), dpi=110)
    for k, (label, img) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def _test_images(run, n: int, seed: int = 0) -> torch.Tensor:
    """n test images in the data's continuous units, at the centre of their quantization bins (x + ½)."""
    test = run.datamodule.split("test").float()
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    x = test[idx]
    return x + 0.5 if _levels(run) else x


# -- Fig. 5.1: data ↔ latent -----------------------------------------------------------------------------------------

def data_and_latent(runs, path, n: int = 2000, seed: int = 0):
    """Fig. 5.1 for 2D data, one row per model: x ~ data → z = f(x), and z ~ prior → x = g(z).

    Points are coloured by their angle around the origin of the space they are drawn in, so the colours show
    where each region of one space lands in the other.
    """
    runs = [r for r in _usable(runs, "encode", "decode") if r.datamodule.info.dim == 2]
    if not runs:
        return None
    fig = new_figure(figsize=(13, 3.3 * len(runs)), dpi=100)
    gen = torch.Generator().manual_seed(seed)
    for i, run in enumerate(runs):
        m = run.model
        x = _test_images(run, n, seed)
        with torch.no_grad():
            z = m.encode(x)
            z_prior = m.prior.sample((n, 2), generator=gen)
            x_gen = m.decode(z_prior)
        for j, (pts, colour_by, title) in enumerate([(x, x, "data x ~ test set"), (z, x, "latent z = f(x)"),
                                                     (z_prior, z_prior, "latent z ~ prior"), (x_gen, z_prior, "data x = g(z)")]):
            ax = fig.add_subplot(len(runs), 4, 4 * i + j + 1)
            c = torch.atan2(colour_by[:, 1] - colour_by[:, 1].mean(), colour_by[:, 0] - colour_by[:, 0].mean())
            p = pts.detach().cpu().numpy()
            ax.scatter(p[:, 0], p[:, 1], c=c.numpy(), cmap="hsv", s=2, linewidths=0)
            if j in (1, 2):  # latent panels on the prior's scale
                ax.set_xlim(-4, 4)
                ax.set_ylim(-4, 4)
            elif j == 3:
                ax.set_xlim(*ax.figure.axes[4 * i].get_xlim())
                ax.set_ylim(*ax.figure.axes[4 * i].get_ylim())
            ax.set_aspect("equal")
            ax.set_title(title, fontsize=8)
            if j == 0:
                ax.set_ylabel(textwrap.fill(run.label, 28), fontsize=8)
    return save_figure(fig, path)


# -- §1.15: spherical interpolation --------------------------------------------------------------------------------------

def spherical_latents(z: torch.Tensor, steps: int) -> torch.Tensor:
    """[steps, steps, D] latents cos φ (cos φ′ z₁ + sin φ′ z₂) + sin φ (cos φ′ z₃ + sin φ′ z₄), φ, φ′ ∈ [0, π/2]."""
    angles = torch.linspace(0, math.pi / 2, steps, dtype=z.dtype)
    phi, phi2 = angles[:, None, None], angles[None, :, None]
    return (torch.cos(phi) * (torch.cos(phi2) * z[0] + torch.sin(phi2) * z[1])
            + torch.sin(phi) * (torch.cos(phi2) * z[2] + torch.sin(phi2) * z[3]))


def spherical_interpolation(runs, path, steps: int = 8, seed: int = 0):
    """The §1.15 manifold of four test images for each model (corners: the four images' reconstructions)."""
    runs = [r for r in _usable(runs, "encode", "decode") if len(r.datamodule.info.shape) == 3]
    panels = []
    for run in runs:
        with torch.no_grad():
            z = run.model.encode(_test_images(run, 4, seed))
            x = run.model.decode(spherical_latents(z, steps).reshape(steps * steps, -1))
        x = run.model.to_data_space(x) if hasattr(run.model, "to_data_space") else x
        panels.append((run.label, _mosaic(x.reshape(steps, steps, *x.shape[1:]), _levels(run))))
    if not panels:
        return None
    return _panels(panels, path, "spherical interpolation between the latents of four test images (Dinh 2018 §5.4.2)")


# -- Fig. 5.7: Langevin inpainting -------------------------------------------------------------------------------------------

def inpainting_mask(name: str, shape, generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean [C, H, W] mask of the pixels to infer, for one of :data:`MASKS`."""
    c, h, w = shape
    i, j = torch.arange(h)[:, None].expand(h, w), torch.arange(w)[None, :].expand(h, w)
    flat = i * w + j
    masks = {
        "top rows": i < h // 2, "bottom rows": i >= h // 2,
        "odd pixels": flat % 2 == 1, "even pixels": flat % 2 == 0,
        "left side": j < w // 2, "right side": j >= w // 2,
        "middle vertically": (j >= w // 4) & (j < w - w // 4), "middle horizontally": (i >= h // 4) & (i < h - h // 4),
    }
    if name in masks:
        return masks[name].expand(c, h, w).clone()
    if name.endswith("% random"):
        frac = float(name.split("%")[0]) / 100
        return (torch.rand(h, w, generator=generator) < frac).expand(c, h, w).clone()
    raise ConfigError(f"unknown mask {name!r}; valid: {', '.join(MASKS)}")


def langevin_inpaint(model, x: torch.Tensor, mask: torch.Tensor, levels: int, steps: int = 500,
                     step_size: tuple[float, float] = (3e-2, 1e-3), generator: torch.Generator | None = None):
    """Langevin dynamics on the masked pixels, the others clamped: returns (initial state, final state).

    Runs on u = x/levels ∈ [0, 1] (the space NICE models): u ← clip(u + ε²/2 ∇ log p(u) + ε ξ) on the masked
    coordinates, with ε decayed geometrically between ``step_size`` (start, end) and a uniform start. These
    settings are ours: the thesis states none.
    """
    u = x / levels
    init = torch.where(mask, torch.rand(u.shape, generator=generator), u)
    u = init.clone()
    for eps in torch.logspace(math.log10(step_size[0]), math.log10(step_size[1]), steps).tolist():
        u.requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(model.log_prob(u * levels).sum(), u)
        noise = torch.randn(u.shape, generator=generator)
        u = torch.where(mask, (u + 0.5 * eps ** 2 * grad + eps * noise).clamp(0, 1 - 1e-6), u).detach()
    return init * levels, u * levels


def langevin_inpainting(runs, path, examples: int = 4, steps: int = 500, seed: int = 0):
    """Fig. 5.7: for every mask, ``examples`` test images: truth, initial state, Langevin state after ``steps``."""
    runs = [r for r in _usable(runs, "log_prob") if len(r.datamodule.info.shape) == 3 and _levels(r)]
    panels = []
    for run in runs:
        levels, gen = _levels(run), torch.Generator().manual_seed(seed)
        x = _test_images(run, examples, seed)
        masks = torch.stack([inpainting_mask(name, x.shape[1:], gen) for name in MASKS])  # [M, C, H, W]
        xs = x[None].expand(len(MASKS), *x.shape).reshape(-1, *x.shape[1:])
        ms = masks[:, None].expand(len(MASKS), examples, *x.shape[1:]).reshape(xs.shape)
        init, final = langevin_inpaint(run.model, xs, ms, levels, steps, generator=gen)
        grid = torch.stack([xs, init, final], 1).reshape(len(MASKS), 3 * examples, *x.shape[1:])
        panels.append((run.label, _mosaic(grid.floor().clamp(0, levels - 1), levels)))
    if not panels:
        return None
    title = textwrap.fill("Langevin inpainting (Dinh 2018 Fig. 5.7); rows: " + ", ".join(MASKS)
                          + f"; per example: truth, initial state, after {steps} steps", 110)
    return _panels(panels, path, title, width=6.0)


# -- samples --------------------------------------------------------------------------------------------------------------------

def samples(runs, path, n: int = 36, seed: int = 0):
    """Samples of each model beside test images, in the data's value range (integers in [0, L) on discrete data)."""
    runs = [r for r in _usable(runs, "sample") if len(r.datamodule.info.shape) == 3]
    if not runs:
        return None
    side = math.isqrt(n)
    torch.manual_seed(seed)
    first = runs[0]
    test = first.datamodule.split("test")[:side * side].float()
    panels = [("test images", _mosaic(test.reshape(side, side, *test.shape[1:]), _levels(first)))]
    for run in runs:
        with torch.no_grad():
            x = run.model.sample(side * side).float()
        panels.append((run.label, _mosaic(x.reshape(side, side, *x.shape[1:]), _levels(run))))
    return _panels(panels, path, f"samples ({first.datamodule.info.variant})")
