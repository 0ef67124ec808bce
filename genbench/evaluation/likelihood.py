"""Test-set likelihood in nats and bits/dim, with the best estimator a model offers.

Order of preference: ``log_prob`` (exact) → ``log_prob_bound(x, k)`` (a
stochastic lower bound on log p, hence an upper bound on the NLL). Families
with other estimators (AIS for RBMs) add theirs to :data:`ESTIMATORS`.

Data spaces (DESIGN.md): on binary data the NLL is a pmf's, and bits/dim =
NLL / (D ln 2). On discrete (8-bit) data a continuous density is scored on the
dequantized x + u, u ~ U[0,1)^D, in pixel units on [0, levels)^D (the model
converts its own rescaling/logit with their log-dets), which upper-bounds the
discrete NLL; a model with ``discrete_log_prob = True`` is scored on the
integers directly. On continuous data only nats are reported, beside the true
mixture's entropy when the data module knows it.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..data.base import DataInfo
from ..data.transforms import bits_per_dim, dequantize
from .records import Result, mean_and_std_error


def _per_example(fn: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(data[i : i + batch_size].float()).detach().double().cpu() for i in range(0, len(data), batch_size)])


def choose_estimator(model) -> str | None:
    """The likelihood estimator this evaluator will use for ``model`` (None: no likelihood)."""
    for name, (applies, _) in ESTIMATORS.items():
        if applies(model):
            return name
    return None


def _exact(model, x, settings):
    return model.log_prob(x), "exact", {}


def _bound(model, x, settings):
    k = int(settings.get("bound_k", 1000))
    return model.log_prob_bound(x, k), "upper bound", {"k": k}


ESTIMATORS: dict[str, tuple[Callable, Callable]] = {
    "exact": (lambda m: callable(getattr(m, "log_prob", None)), _exact),
    "importance-weighted bound": (lambda m: callable(getattr(m, "log_prob_bound", None)), _bound),
}
"""name → (applies to model?, fn(model, x_batch, settings) -> (log p per example, NLL estimator kind, settings))."""


def likelihood_records(model, data: torch.Tensor, info: DataInfo, split: str = "test", settings: dict | None = None,
                    batch_size: int = 1000) -> list[Result]:
    """NLL (and bits/dim where meaningful) of ``model`` on ``data`` with standard errors over examples."""
    settings = dict(settings or {})
    name = choose_estimator(model)
    if name is None:
        return []
    _, fn = ESTIMATORS[name]
    space = info.space
    dequantized = space.kind == "discrete" and not getattr(model, "discrete_log_prob", False)
    kind_box, used = {}, {}

    def nll(x):
        if dequantized:
            x = dequantize(x)
        logp, kind, extra = fn(model, x, settings)
        kind_box["kind"] = kind
        used.update(extra)
        return -logp

    was_training = model.training
    model.eval()
    try:
        values = _per_example(nll, data, batch_size)
    finally:
        model.train(was_training)
    kind = kind_box["kind"]
    if dequantized and kind == "exact":
        kind = "upper bound"  # E_u[-log p(x+u)] bounds the discrete NLL from above; one draw per example
    common = dict(estimator=kind, n=len(values), split=split, data=info.variant,
                  settings={"estimator": name, **used, **({"dequantization": "uniform, 1 draw"} if dequantized else {})})
    finite = torch.isfinite(values)
    if not finite.all():
        common["settings"]["non_finite"] = int((~finite).sum())
    mean, se = mean_and_std_error(values)
    records = [Result("nll", mean, "nats", std_error=se, **common)]
    if space.kind in ("binary", "discrete"):
        records.append(Result("bits_per_dim", bits_per_dim(mean, space.dim), "bits/dim",
                              std_error=bits_per_dim(se, space.dim), **common))
    if info.mixture is not None:
        h, h_se = mixture_entropy(info.mixture)
        records.append(Result("mixture_entropy", h, "nats", "estimate", std_error=h_se, n=ENTROPY_SAMPLES,
                              data=info.variant, settings={"what": "entropy of the true mixture: the floor of any model's NLL",
                                                           "method": "Monte Carlo"}))
    return records


ENTROPY_SAMPLES = 200_000
_ENTROPY_CACHE: dict[bytes, tuple[float, float]] = {}


def mixture_entropy(mixture) -> tuple[float, float]:
    """Monte-Carlo entropy of a mixture (nats, with s.e.), computed once per mixture."""
    key = b"".join(t.numpy().tobytes() for t in (mixture.means, mixture.covariances, mixture.weights))
    if key not in _ENTROPY_CACHE:
        _ENTROPY_CACHE[key] = mixture.entropy(ENTROPY_SAMPLES, seed=12345)
    return _ENTROPY_CACHE[key]
