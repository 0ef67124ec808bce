"""The physical-sampler constraints of Dumoulin (2018, §3.3–3.8), simulated on a {0,1} RBM.

The thesis simulates a low-precision physical sampler (a D-Wave chip) in
software, with the constraints "enforced on parameters directly, without
converting them to the Ising parametrization first", so everything here acts
on the RBM's own ``W`` [H, V], ``b`` [V], ``c`` [H] (E(v,h) = −bᵀv − cᵀh − hᵀWv).

* **Parameter noise** (§3.3, §3.5). Weight noise ε_W ~ N(0, σ_w²) is "added to
  J once each time the value of J is changed": :class:`WeightNoise` draws it
  lazily at the first use after a change of ``W`` and caches it until the next
  change (in training: one draw per parameter update). Bias noise "should be
  resampled every time a new sample is drawn"; our reading (the thesis leaves
  it open) is the finest one a Gibbs simulator has: a fresh N(0, σ_b²) draw
  per chain per Gibbs step, added to ``c`` for the h-half-step and to ``b``
  for the v-half-step (the RBM's sampler does this). Noise is never added to
  weights a connectivity mask removed (those couplers do not exist).
  :func:`genbench.nn.rbm.noisy_parameters` is the one-draw version for
  evaluators ("expected AIS computed by Monte Carlo": draw, score the
  perturbed RBM, average).
* **Magnitude limits** (§3.6): every parameter is clipped to [−t, t] after
  every update (:func:`clip_`). Noise is added after clipping, so a noisy
  weight may exceed t, as a realised coupler would.
* **Connectivity** (§3.8): a fixed boolean mask (True = connection kept),
  either :func:`random_mask` or the chimera graph of :func:`chimera_mask`.
  The RBM masks both the update and the weights, so removed weights stay
  exactly zero.

The RBM's ``constraints`` config (all keys optional, ``null`` = unconstrained)::

    noise: {sigma_w: 0.1, sigma_b: 0.1, train: true}   # train: the negative phase uses the noisy sampler
    clip: 1.0                                           # |θ| ≤ t after every update
    mask: {kind: random, fraction: 0.5, seed: 0}        # or kind: chimera_pixel_blocks | chimera_extended
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..core.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------

MASK_KINDS = ("random", "chimera_pixel_blocks", "chimera_extended")


def _check_keys(what: str, cfg: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class NoiseSpec:
    """Gaussian parameter noise: ``sigma_w`` on weights, ``sigma_b`` on both biases.

    ``train``: the training negative phase draws its samples with the noisy
    sampler (thesis §3.5, "trained with the simulated physical computer").
    Sampling (``sample``, ``gibbs``) and evaluation always use the noise.
    """

    sigma_w: float = 0.0
    sigma_b: float = 0.0
    train: bool = False

    def __post_init__(self):
        if self.sigma_w < 0 or self.sigma_b < 0:
            raise ConfigError(f"noise standard deviations must be ≥ 0, got sigma_w={self.sigma_w}, sigma_b={self.sigma_b}")


@dataclass(frozen=True)
class MaskSpec:
    """A fixed connectivity mask: ``kind`` in :data:`MASK_KINDS`; ``fraction`` removed and ``seed`` for ``random``."""

    kind: str
    fraction: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.kind not in MASK_KINDS:
            raise ConfigError(f"unknown mask kind {self.kind!r}; valid: {', '.join(MASK_KINDS)}")
        if self.kind == "random" and (self.fraction is None or not 0 <= self.fraction <= 1):
            raise ConfigError(f"a random mask needs fraction in [0, 1] (the share of weights removed), got {self.fraction}")

    def build(self, hidden: int, visible: int) -> torch.Tensor:
        """The BoolTensor [hidden, visible] of kept connections."""
        if self.kind == "random":
            return random_mask(hidden, visible, self.fraction, self.seed)
        if (hidden, visible) != (784, 784):
            raise ConfigError(f"chimera masks are defined for 784 hidden × 784 visible units (28×28 images), "
                             f"not {hidden} × {visible}; set hidden: 784 and use MNIST")
        return chimera_mask("pixel_blocks" if self.kind == "chimera_pixel_blocks" else "extended_pixel_blocks")


@dataclass(frozen=True)
class Constraints:
    """The parsed ``constraints`` config of an RBM (every field None: unconstrained)."""

    noise: NoiseSpec | None = None
    clip: float | None = None
    mask: MaskSpec | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "Constraints":
        if cfg is None:
            return cls()
        _check_keys("constraints", cfg, ("noise", "clip", "mask"))
        noise, mask, clip = cfg.get("noise"), cfg.get("mask"), cfg.get("clip")
        if noise is not None:
            _check_keys("constraints.noise", noise, ("sigma_w", "sigma_b", "train"))
            noise = NoiseSpec(float(noise.get("sigma_w", 0.0)), float(noise.get("sigma_b", 0.0)), bool(noise.get("train", False)))
            if noise.sigma_w == 0 and noise.sigma_b == 0:
                noise = None
        if mask is not None:
            _check_keys("constraints.mask", mask, ("kind", "fraction", "seed"))
            if "kind" not in mask:
                raise ConfigError(f"constraints.mask needs a kind; valid: {', '.join(MASK_KINDS)}")
            fraction = mask.get("fraction")
            mask = MaskSpec(mask["kind"], None if fraction is None else float(fraction), int(mask.get("seed", 0)))
        if clip is not None:
            clip = float(clip)
            if clip <= 0:
                raise ConfigError(f"constraints.clip must be a positive threshold t (|θ| ≤ t), got {clip}")
        return cls(noise, clip, mask)


# ---------------------------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------------------------


class WeightNoise:
    """ε_W ~ N(0, σ²) drawn the first time it is asked for after ``key`` changes, then reused.

    The RBM's key is (its update counter, ``W._version``, ``W.data_ptr()``): the
    version counter moves with every in-place change of ``W`` (optimizer steps,
    clipping, ``load_state_dict``), so the noise is redrawn exactly when the
    weights change, however they changed, and never in between.
    """

    def __init__(self):
        self.key: Any = None
        self.eps: torch.Tensor | None = None
        self.draws = 0  # how many times noise was drawn (tests and diagnostics)

    def __call__(self, W: torch.Tensor, sigma: float, key: Any, mask: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if self.eps is None or key != self.key or self.eps.shape != W.shape or self.eps.device != W.device:
            eps = torch.randn(W.shape, generator=generator, device=W.device, dtype=W.dtype).mul_(sigma)
            self.eps = eps.mul_(mask) if mask is not None else eps
            self.key, self.draws = key, self.draws + 1
        return W + self.eps


# ---------------------------------------------------------------------------------------------
# magnitude limits
# ---------------------------------------------------------------------------------------------


def clip_(tensors, t: float) -> None:
    """Project every tensor elementwise onto [−t, t] in place (thesis §3.6: "clipped to the threshold value")."""
    for x in tensors:
        x.clamp_(-t, t)


# ---------------------------------------------------------------------------------------------
# connectivity
# ---------------------------------------------------------------------------------------------


def random_mask(hidden: int, visible: int, fraction_removed: float, seed: int = 0) -> torch.Tensor:
    """BoolTensor [hidden, visible]: exactly round(f·H·V) weights removed, chosen uniformly with ``seed``.

    An exact count (not an independent coin per weight) so that "50% removed"
    means 50% in every seed, and the mask depends only on (H, V, f, seed).
    """
    if not 0 <= fraction_removed <= 1:
        raise ConfigError(f"fraction_removed must be in [0, 1], got {fraction_removed}")
    n = hidden * visible
    removed = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: round(fraction_removed * n)]
    mask = torch.ones(n, dtype=torch.bool)
    mask[removed] = False
    return mask.reshape(hidden, visible)


CHIMERA_GRID = 14  # 14×14 cells of K_{4,4}: 196·8 = 1,568 units = 784 visible + 784 hidden
IMAGE_SIDE = 2 * CHIMERA_GRID  # each cell's 4 visible units are one 2×2 pixel block of a 28×28 image
CHIMERA_EDGES = {"pixel_blocks": 4592, "extended_pixel_blocks": 12392}
"""Edge counts of :func:`chimera_mask` (of 784·784 = 614,656 possible: 99.25% and 97.98% removed)."""


def chimera_hidden_index(r, col, k):
    """Hidden unit of slot k ∈ {0..3} of cell (r, col): 4·(14·r + col) + k."""
    return 4 * (CHIMERA_GRID * r + col) + k


def chimera_pixel_index(r, col, k):
    """Visible unit (= pixel, row-major in 28×28) of slot k of cell (r, col): pixel (2r + k//2, 2·col + k%2)."""
    return (2 * r + k // 2) * IMAGE_SIDE + 2 * col + k % 2


def chimera_mask(kind: str = "pixel_blocks") -> torch.Tensor:
    """BoolTensor [784 hidden, 784 visible]: the chimera connectivity of thesis §3.8 (our reconstruction).

    The thesis gives only Fig. 3.1's description; this is the construction of
    the reference notes (§1.5 item 7), made exact:

    * **Chimera graph.** A 14×14 grid of K_{4,4} cells. Each cell has two
      sides of 4 units (side 0, side 1), every side-0 unit coupled to every
      side-1 unit of its cell (16 couplers). Inter-cell couplers (D-Wave's
      layout) join side-0 unit k of cell (r, c) to side-0 unit k of cell
      (r+1, c), and side-1 unit k of (r, c) to side-1 unit k of (r, c+1)
      (4 couplers per adjacent pair of cells).
    * **Bipartition.** Colour a unit by (side + r + c) mod 2: every coupler
      joins the two colours, so the graph is bipartite. Colour 0 is visible:
      in cells with r + c even, side 0 is visible and side 1 hidden; in odd
      cells the roles swap (a checkerboard). Inter-cell couplers therefore
      also join a visible unit to a hidden one.
    * **Pixel blocks** (Fig. 3.1b). The visible units of cell (r, c) are the
      2×2 pixel block at rows 2r..2r+1, columns 2c..2c+1 of the 28×28 image
      (slot k = pixel (2r + k//2, 2c + k%2)), so adjacent blocks sit on
      adjacent cells. Hidden unit 4·(14r + c) + k is slot k of the cell's
      hidden side. Edges: 196·16 intra-cell + 2·(13·14·4) inter-cell =
      3,136 + 1,456 = **4,592**.
    * **Extended pixel blocks** (Fig. 3.1c, "makes the pixel blocks overlap";
      the overlap is not stated, so this is our choice): the hidden units of
      cell (r, c) see a 4×4 pixel window with stride 2, rows 2r−1..2r+2 and
      columns 2c−1..2c+2 (clipped at the border): their own block plus a
      1-pixel ring shared with the neighbouring blocks; the inter-cell
      couplers stay. Window edges: 4·(Σ rows)·(Σ cols) = 4·54·54 = 11,664;
      half of the 1,456 couplers reach a pixel outside the window (the far
      row or column of the neighbour's block): +728, **12,392** in all. This
      mask is a superset of the pixel-block mask (it is not a hardware
      chimera any more: a pixel feeds several cells, as an overlap implies).
    """
    if kind not in CHIMERA_EDGES:
        raise ConfigError(f"unknown chimera mask kind {kind!r}; valid: {', '.join(CHIMERA_EDGES)}")
    g, n = CHIMERA_GRID, IMAGE_SIDE * IMAGE_SIDE
    mask = torch.zeros(n, n, dtype=torch.bool)
    r, col, k = (t.flatten() for t in torch.meshgrid(torch.arange(g), torch.arange(g), torch.arange(4), indexing="ij"))

    # intra-cell K_{4,4}: hidden slot k of a cell with every visible slot k2 of the same cell
    k2 = torch.arange(4)
    mask[chimera_hidden_index(r, col, k)[:, None], chimera_pixel_index(r[:, None], col[:, None], k2)] = True

    # inter-cell couplers: (side 0, down) and (side 1, right), same slot k at both ends
    for side, (dr, dc) in ((0, (1, 0)), (1, (0, 1))):
        ok = (r + dr < g) & (col + dc < g)
        r1, c1, kk = r[ok], col[ok], k[ok]
        r2, c2 = r1 + dr, c1 + dc
        first_visible = ((r1 + c1 + side) % 2) == 0  # colour 0 = visible
        h = torch.where(first_visible, chimera_hidden_index(r2, c2, kk), chimera_hidden_index(r1, c1, kk))
        v = torch.where(first_visible, chimera_pixel_index(r1, c1, kk), chimera_pixel_index(r2, c2, kk))
        mask[h, v] = True

    if kind == "extended_pixel_blocks":
        d = torch.arange(-1, 3)  # window offsets around the block's top-left pixel (2r, 2c)
        rows = (2 * r[:, None] + d)[:, :, None].expand(-1, 4, 4)
        cols = (2 * col[:, None] + d)[:, None, :].expand(-1, 4, 4)
        inside = (rows >= 0) & (rows < IMAGE_SIDE) & (cols >= 0) & (cols < IMAGE_SIDE)
        hid = chimera_hidden_index(r, col, k)[:, None, None].expand(-1, 4, 4)
        mask[hid[inside], (rows * IMAGE_SIDE + cols)[inside]] = True
    return mask
