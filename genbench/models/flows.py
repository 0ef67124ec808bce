"""NICE and Real NVP (Dinh 2018, ch. 5): exact log-likelihood by the change of variables.

Both models own their data transform, so ``log_prob`` receives data in the data space's own units and returns
the log density there (docs/design.md, "Data spaces"):

* discrete data (8-bit images, 17-level digits): the evaluator hands in dequantized pixels x + u on
  [0, L)^D; the model rescales them to [0, 1)^D (NICE on CIFAR-10: [−1, 1)^D) and Real NVP applies
  logit(α + (1 − 2α)x), α = 0.05. Every step adds its log-det, so ``log_prob`` is the density of the pixels
  and bits/dim = −log p / (D ln 2) is the thesis' formula (an upper bound on the discrete NLL). Training
  dequantizes each batch afresh. ``sample`` floors and clamps the inverse transform to the integers [0, L).
* continuous data (2D toys): no transform; ``log_prob`` is the density of the points.

Layers score and sample with batch norm on its running averages (:func:`~genbench.nn.flows.evaluating`),
whatever the module's mode; training uses batch statistics, as the thesis does.

Training (§5.2, §5.4.1): Adam (lr 1e-3, β = (0.9, 0.999), ε = 1e-8) at a constant step size (``lr_schedule:
cosine`` anneals it to 0 over the run, our option for the 2D toys); the loss is the batch-mean NLL in nats
per dimension (our choice of normalization; it only sets the weight of the L2 term) plus Real NVP's L2 penalty
on the weight-norm magnitudes and coupling scales. The epoch means of the training NLL (nats, and bits/dim on
discrete data) are logged as ``train/nll`` and ``train/bits_per_dim``: the learning curve.
"""

from __future__ import annotations

import lightning as L
import torch

from ..core.errors import ConfigError
from ..core.transforms import bits_per_dim, dequantize
from ..data.base import DataInfo
from ..nn.flows import (ZCA, DiagonalScaling, FlowSequence, Logit, MultiScaleFlow, Rescale, build_prior, coupling_stack,
                        evaluating, weight_scales)
from .epoch_means import EpochMeans

DATA_RANGES = ("unit", "symmetric")
ARCHITECTURES = ("auto", "mlp", "multiscale")
LR_SCHEDULES = ("constant", "cosine")


class FlowModel(EpochMeans, L.LightningModule):
    """What NICE and Real NVP share: data transform, prior, scoring, sampling and the training loop.

    Subclasses set ``self.transform`` (data → modelled space), ``self.flow`` (→ latent [B, D]), ``self.prior``
    and ``self.flat`` (whether the flow takes flattened vectors). ``weight_decay`` is Adam's L2 term on every
    parameter (0 for NICE and Real NVP; MAF's code uses 1e-6).
    """

    supported_spaces = ("discrete", "continuous")

    def __init__(self, info: DataInfo, lr: float, beta1: float, beta2: float, eps: float, l2: float,
                 lr_schedule: str = "constant", weight_decay: float = 0.0):
        super().__init__()
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        self.shape, self.dim = tuple(info.shape), info.dim
        self.levels = info.space.levels if info.space.kind == "discrete" else None
        self.lr, self.betas, self.eps, self.l2, self.lr_schedule = lr, (beta1, beta2), eps, l2, lr_schedule
        self.weight_decay = weight_decay

    # -- the model ------------------------------------------------------------------------------------------------
    def _in(self, x):
        return x.flatten(1) if self.flat else x

    def forward(self, x):
        """The whole bijection data → latent, data transform included: (z [B, D], log|det ∂z/∂x| [B]),
        in the current mode (training: batch statistics)."""
        y, ld_data = self.transform(self._in(x))
        z, ld_flow = self.flow(y)
        return z, ld_flow + ld_data

    def inverse(self, z):
        """latent → data in its continuous units (pixels before flooring), shaped like the data."""
        return self.transform.inverse(self.flow.inverse(z)).reshape(z.shape[0], *self.shape)

    def _log_prob(self, x):
        z, logdet = self(x)
        return self.prior.log_prob(z) + logdet

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density in nats, [B] (discrete data: of the dequantized pixels, in pixel units)."""
        with evaluating(self):
            return _in_chunks(self._log_prob, x)

    def log_prob_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(y), log|det ∂y/∂x|), [B] each, for y = transform(x) the modelled values: ``log_prob`` is their
        sum. log p(y) is what a paper that models a transformed space prints (MAF's Table 2: logit space); the
        log-det depends on the data alone, not on the model."""
        with evaluating(self):
            y, ld_data = self.transform(self._in(x))
            z, ld_flow = self.flow(y)
            return self.prior.log_prob(z) + ld_flow, ld_data

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent z = f(x), [B, D] (x in the data's continuous units: dequantized pixels or points)."""
        with evaluating(self):
            return self(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x = f⁻¹(z) in the data's continuous units (pixels before flooring), shaped like the data."""
        with evaluating(self):
            return _in_chunks(self.inverse, z)

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous values → the data space: floor and clamp to {0, …, L−1} on discrete data (NICE's "clip")."""
        if self.levels is None:
            return x
        return torch.nan_to_num(x, nan=0.0).floor().clamp(0, self.levels - 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = self.prior.sample((n, self.dim), device=self.device, generator=generator)
        return self.to_data_space(self.decode(z))

    # -- training ---------------------------------------------------------------------------------------------------
    def on_fit_start(self):
        zca = getattr(self, "zca", None)
        dm = getattr(self.trainer, "datamodule", None)
        if zca is not None and not bool(zca.fitted) and dm is not None:
            scale = self.transform.layers[0]
            zca.fit(dm.split("train"), lambda x: scale(dequantize(x.flatten(1)).to(self.device))[0])

    def training_step(self, batch, batch_idx):
        loss, nll = self.training_loss(batch)
        self.epoch_mean("train/nll", nll, prog_bar=True)
        if self.levels is not None:
            self.epoch_mean("train/bits_per_dim", bits_per_dim(nll, self.dim))
        return loss

    def training_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to minimize: NLL per dimension plus the L2 penalty, the batch's NLLs in nats)."""
        x = dequantize(batch) if self.levels is not None else batch
        nll = -self._log_prob(x)
        loss = nll.mean() / self.dim
        if self.l2:
            loss = loss + self.l2 * self.l2_penalty()
        return loss, nll

    def l2_penalty(self) -> torch.Tensor:
        """Σ p² over :func:`~genbench.nn.flows.weight_scales` (the parameter list found once: a module walk costs
        more than a small flow's coupling), as one concatenation, square and sum."""
        if "_scales" not in self.__dict__:
            self.__dict__["_scales"] = weight_scales(self)
        scales = self.__dict__["_scales"]
        return torch.cat([p.flatten() for p in scales]).pow(2).sum() if scales else torch.zeros((), device=self.device)

    def configure_optimizers(self):
        # fused: one kernel for every parameter (2.4 → 1.0 ms per step of the 2D flows on a CPU)
        opt = torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas, eps=self.eps,
                               weight_decay=self.weight_decay, fused=True)
        if self.lr_schedule == "constant":
            return opt
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


EVAL_ROWS = 16_384
"""Rows per pass when scoring or sampling without gradients. A pass over 100,000 2D points allocates 25 MB
intermediates, which the C allocator maps from the kernel afresh each time (page faults): twice as slow as passes
of 16,384 rows, whose intermediates are reused."""


def _in_chunks(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` (row-wise) on chunks of :data:`EVAL_ROWS` rows when no gradient is taken; else on x at once."""
    if torch.is_grad_enabled() or len(x) <= EVAL_ROWS:
        return fn(x)
    return torch.cat([fn(chunk) for chunk in x.split(EVAL_ROWS)])


def logit_space(levels: int | None, alpha: float) -> FlowSequence:
    """Pixel units [0, L) → logit(α + (1 − 2α) x/L), each step with its log-det; the identity on continuous data
    (``levels`` None). Real NVP's α is 0.05, MAF's 1e-6."""
    return FlowSequence(Rescale(1.0 / levels), Logit(alpha)) if levels is not None else FlowSequence()


def _to_unit(levels: int, data_range: str) -> Rescale:
    """Pixel units [0, L) → [0, 1) (``unit``) or [−1, 1) (``symmetric``, NICE on CIFAR-10)."""
    if data_range not in DATA_RANGES:
        raise ConfigError(f"unknown data_range {data_range!r}; valid: {', '.join(DATA_RANGES)}")
    return Rescale(1.0 / levels) if data_range == "unit" else Rescale(2.0 / levels, -1.0)


class NICE(FlowModel):
    """NICE (Dinh et al. 2014; thesis §5.2): additive couplings with ReLU MLPs, then y ⊙ exp(γ), on flat data.

    ``couplings`` additive coupling layers (4 in the thesis) alternate which parity of the components
    (odd/even flat indices) they transform; each t network has ``layers`` hidden layers of ``hidden`` ReLU units
    and a linear output (Table 5.1: MNIST 5 × 1000, SVHN/CIFAR-10 4 × 2000, TFD 4 × 5000). ``prior``:
    ``logistic`` (MNIST, SVHN, CIFAR-10) or ``gaussian`` (TFD). Discrete data are rescaled to [0, 1)
    (``data_range: unit``) or [−1, 1) (``symmetric``, CIFAR-10) and, with ``zca``, ZCA-whitened (fitted on the
    dequantized training split at the start of training); ``zca_logdet: false`` leaves the whitening's Jacobian
    out as Table 5.1 does, which makes the score a density of the whitened data, not of the pixels.

    ``output_init``: null or ``zero`` starts every t network's output layer at zero (the flow starts as the
    scaling alone). On data whose conditionals are symmetric about 0 (x₂ | x₁ and x₁ | x₂, as on ring8 and
    grid25) that is a stationary point: the prior's score is odd, so the expected gradient of every t vanishes and
    training leaves the couplings near zero (ring8: the same NLL to 1e-5 for three seeds, 6.5 nats above the
    entropy). ``pytorch`` keeps PyTorch's default init of that layer, which breaks the symmetry.
    """

    def __init__(self, info: DataInfo, couplings: int = 4, hidden: int = 1000, layers: int = 5,
                 prior: str = "logistic", data_range: str = "unit", zca: bool = False, zca_logdet: bool = True,
                 zca_bias: float = 0.1, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, lr_schedule: str = "constant", output_init: str | None = None):
        super().__init__(info, lr, beta1, beta2, eps, l2=0.0, lr_schedule=lr_schedule)
        if output_init not in (None, "zero", "pytorch"):
            raise ConfigError(f"model.output_init {output_init!r} is not null (zero), zero or pytorch (PyTorch's "
                              "default init of the t networks' output layers)")
        self.flat = True
        steps = []
        if self.levels is not None:
            steps.append(_to_unit(self.levels, data_range))
            if zca:
                self.zca = ZCA(self.dim, bias=zca_bias, include_logdet=zca_logdet)
                steps.append(self.zca)
        elif zca:
            raise ConfigError("zca whitening is for image data (a discrete data space)")
        self.transform = FlowSequence(*steps)
        self.flow = FlowSequence(*coupling_stack(self.dim, couplings, hidden, layers, additive=True,
                                                 zero_output=output_init != "pytorch"), DiagonalScaling(self.dim))
        self.prior = build_prior(prior)


class RealNVP(FlowModel):
    """Real NVP (Dinh, Sohl-Dickstein & Bengio 2017; thesis §5.3–5.4): affine couplings, s = λ·tanh(ŝ).

    ``architecture``: ``multiscale`` (images: :class:`~genbench.nn.flows.MultiScaleFlow` with ``scales``,
    ``blocks`` residual blocks of ``features`` maps, weight-normalized, batch norm after every coupling);
    ``mlp`` (vectors and flattened images: ``couplings`` affine couplings with MLP s/t networks of ``layers``
    hidden layers of ``hidden`` units, ``activation``, optional ``separate_st`` networks, optional
    ``batch_norm``); ``auto`` picks multiscale for images and mlp for vectors. Discrete data are modelled as
    logit(α + (1 − 2α) x/L); ``prior`` is N(0, I). ``l2`` penalizes the squared weight-norm magnitudes and
    coupling scales (5e-5 in the thesis); ``weight_decay`` is Adam's L2 on every parameter (MAF's code: 1e-6).
    """

    def __init__(self, info: DataInfo, architecture: str = "auto", scales: int = 2, blocks: int = 2,
                 features: int = 16, couplings: int = 8, hidden: int = 64, layers: int = 2, activation: str = "relu",
                 separate_st: bool = False, batch_norm: bool = True, weight_norm: bool = True,
                 prior: str = "gaussian", alpha: float = 0.05, lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, l2: float = 5e-5, lr_schedule: str = "constant",
                 weight_decay: float = 0.0):
        super().__init__(info, lr, beta1, beta2, eps, l2, lr_schedule, weight_decay)
        if architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        if architecture == "auto":
            architecture = "multiscale" if len(self.shape) == 3 else "mlp"
        if architecture == "multiscale" and len(self.shape) != 3:
            raise ConfigError(f"the multiscale architecture needs images [C, H, W]; {info.variant} is {info.space}")
        self.architecture, self.flat = architecture, architecture == "mlp"
        self.transform = logit_space(self.levels, alpha)
        if architecture == "multiscale":
            self.flow = MultiScaleFlow(self.shape, scales, blocks, features, batch_norm, weight_norm)
        else:
            self.flow = FlowSequence(*coupling_stack(self.dim, couplings, hidden, layers, additive=False,
                                                     activation=activation, weight_norm=weight_norm,
                                                     batch_norm=batch_norm, separate_st=separate_st))
        self.prior = build_prior(prior)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

