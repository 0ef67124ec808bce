"""zuko's flows as genbench models: any builder of ``zuko.flows`` (NSF, MAF, RealNVP, NAF, ...) becomes a
:class:`~genbench.models.flows.FlowModel`, so it trains, scores and samples as NICE and Real NVP do.

The pattern for bringing in another library's density model: the library supplies the bijection and the base
distribution; genbench's :class:`FlowModel` supplies everything the benchmark's rules depend on, so they are not
written twice: the data-space transform with its log-det (8-bit pixels → logit(α + (1 − 2α) x/L)), dequantization
of each training batch, the optimizer (Adam, optional cosine schedule, weight decay), the learning curve,
``log_prob`` in the data's own units (bits/dim means what it means for NICE), ``sample`` floored to the integers,
``encode``/``decode`` for the data → latent figures. Two small wrappers make zuko's lazy modules fit:

* :class:`ZukoBijection`: zuko's lazy transform (built anew on every call, as zuko does) as a genbench flow
  layer, ``forward(y) -> (z, log|det ∂z/∂y|)`` and ``inverse(z)``;
* :class:`ZukoPrior`: zuko's lazy base distribution as a genbench prior, ``log_prob(z)`` and
  ``sample(shape, device, generator)`` (zuko draws from torch's global stream; a given generator seeds a
  private fork of it, so figures drawn with a generator repeat exactly and leave the run's stream untouched).

A zuko distribution that is not a flow (``GMM``) is the prior of an identity bijection: exact ``log_prob`` and
``sample`` still hold, and its "latent" is the modelled space itself. ``initialize`` runs zuko's data-driven
initialization where the distribution has one (``GMM.initialize``: with one component and ``random``, the
sample mean and covariance, i.e. the maximum-likelihood Gaussian of MAF's Table 2) on the transformed,
dequantized training split before the first step.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import zuko.flows
from torch import nn
from zuko.lazy import Flow, LazyDistribution

from ..core.errors import ConfigError
from ..core.registry import import_object
from ..core.transforms import dequantize
from ..data.base import DataInfo
from ..nn.flows import BatchNormFlow, FlowSequence
from .flows import FlowModel, logit_space

NOT_BUILDERS = ("Flow", "LazyDistribution", "UnconditionalDistribution")
"""Classes exported by ``zuko.flows`` that are not ready-made density models."""


def zuko_builders() -> dict[str, type]:
    """name → class of every lazy distribution ``zuko.flows`` exports (NSF, MAF, RealNVP, NAF, GMM, ...)."""
    return {name: obj for name, obj in vars(zuko.flows).items()
            if isinstance(obj, type) and issubclass(obj, LazyDistribution) and name not in NOT_BUILDERS}


def _sum_per_example(v: torch.Tensor, batch: int) -> torch.Tensor:
    """An element-wise log-det or log-density (zuko keeps one per feature for element-wise maps) → [B]."""
    return v.reshape(batch, -1).sum(1) if v.dim() > 1 else v


class ZukoBijection(nn.Module):
    """A zuko lazy transform as a genbench flow layer on [B, D]: forward y → z with its log-det, and inverse."""

    def __init__(self, transform: nn.Module):
        super().__init__()
        self.transform = transform

    def forward(self, y):
        z, ladj = self.transform().call_and_ladj(y)
        return z, _sum_per_example(ladj, len(y))

    def inverse(self, z):
        return self.transform().inv(z)


class ZukoPrior(nn.Module):
    """A zuko lazy distribution as a genbench prior over [B, D]."""

    def __init__(self, distribution: nn.Module):
        super().__init__()
        self.distribution = distribution

    def log_prob(self, z):
        return _sum_per_example(self.distribution().log_prob(z), len(z))

    def sample(self, shape, device=None, generator=None):
        n = shape[0]
        if generator is None:
            return self.distribution().sample((n,))
        device = torch.device(device) if device is not None else torch.device("cpu")
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return self.distribution().sample((n,))


class ZukoFlow(FlowModel):
    """A ``zuko.flows`` builder trained and scored by genbench: ``flow`` names it (NSF, MAF, RealNVP, NAF, ...;
    :func:`zuko_builders` lists them, or ``module:callable`` for a builder of your own with zuko's signature), and
    ``flow_kwargs`` are its keyword arguments (``transforms``, ``hidden_features``, ``bins``, ...); ``features`` is
    the data's flat dimension and flows are unconditional (no ``context``).

    On discrete data the flow models logit(α + (1 − 2α) x/L) of the dequantized pixels (``alpha``: Real NVP's
    0.05, MAF's 1e-6); ``log_prob`` adds the transform's log-det, so it is the density of the pixels.
    ``batch_norm`` puts genbench's batch-norm flow layer after each of the flow's transforms (MAF's and its Real
    NVP's architecture; zuko has none). Training: :class:`FlowModel`'s loop, Adam (``lr``, ``beta1``, ``beta2``,
    ``eps``, ``weight_decay``) with a constant or cosine ``lr_schedule``.
    """

    def __init__(self, info: DataInfo, flow: str = "NSF", flow_kwargs: dict[str, Any] | None = None,
                 alpha: float = 0.05, batch_norm: bool = False, initialize: str | None = None, lr: float = 1e-3,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                 lr_schedule: str = "constant"):
        super().__init__(info, lr, beta1, beta2, eps, l2=0.0, lr_schedule=lr_schedule, weight_decay=weight_decay)
        self.flat, self.flow_name, self.initialize = True, flow, initialize
        self.transform = logit_space(self.levels, alpha)
        lazy = build_zuko(flow, self.dim, dict(flow_kwargs or {}))

        if isinstance(lazy, Flow):
            steps = list(getattr(lazy.transform, "transforms", [lazy.transform])) if batch_norm else [lazy.transform]
            layers = [ZukoBijection(t) for t in steps]
            if batch_norm:
                layers = [m for layer in layers for m in (layer, BatchNormFlow(self.dim))]
            self.flow, self.prior = FlowSequence(*layers), ZukoPrior(lazy.base)
        else:
            if batch_norm:
                raise ConfigError(f"batch_norm needs a flow; zuko's {flow} is a distribution without transforms")
            self.flow, self.prior = FlowSequence(), ZukoPrior(lazy)
        if initialize is not None and not callable(getattr(lazy, "initialize", None)):
            raise ConfigError(f"initialize={initialize!r}: zuko's {flow} has no data-driven initialization "
                              f"(GMM has one); set initialize: null")
        self.register_buffer("initialized", torch.tensor(initialize is None))

    def on_fit_start(self):
        """zuko's ``initialize`` on the modelled values of the dequantized training split, once (the flag is
        saved, so a resumed training does not redo it)."""
        super().on_fit_start()
        dm = getattr(self.trainer, "datamodule", None)
        if bool(self.initialized) or dm is None:
            return
        x = dm.split("train").float().flatten(1).to(self.device)
        with torch.no_grad():
            y = self.transform(dequantize(x) if self.levels is not None else x)[0]
            self.prior.distribution.initialize(y, self.initialize)
        self.initialized.fill_(True)


def build_zuko(flow: str, features: int, kwargs: dict[str, Any]) -> nn.Module:
    """``zuko.flows.<flow>(features, **kwargs)`` (or a ``module:callable``), with config errors that name the
    valid builders or the builder's own arguments."""
    builders = zuko_builders()
    if flow in builders:
        builder = builders[flow]
    elif ":" in flow:
        builder = import_object(flow)
    else:
        raise ConfigError(f"unknown zuko flow {flow!r}; valid: {', '.join(sorted(builders))} "
                          f"(or a 'module:callable' building a zuko lazy distribution)")
    fixed = sorted({"features", "context"} & set(kwargs))
    if fixed:
        raise ConfigError(f"flow_kwargs may not set {', '.join(fixed)}: features is the data's dimension and "
                          f"genbench's flows are unconditional")
    try:
        lazy = builder(features=features, **kwargs)
    except TypeError as e:
        raise ConfigError(f"zuko flow {flow}: {e}; its arguments: {inspect.signature(builder)} "
                          f"(and those of the transforms it passes **kwargs to)") from e

    if not isinstance(lazy, LazyDistribution):
        raise ConfigError(f"{flow} built a {type(lazy).__name__}, not a zuko lazy distribution")
    return lazy
