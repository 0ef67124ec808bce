"""Test-set likelihood in nats and bits/dim, with the best estimator a model offers.

Order of preference (:data:`ESTIMATORS`): ``log_prob`` (exact) → an energy
model's ``free_energy`` with log Z exact by enumeration when small, else by AIS
(an estimate, optimistic in expectation; RAISE's NLL beside it on request,
conservative only for data drawn from the model, so labelled an estimate) → ``log_prob_bound(x, k)`` (a stochastic lower bound on log p, hence
an upper bound on the NLL). Every record names the estimator it used.

Data spaces (docs/design.md, "Data spaces"): on binary data the NLL is a pmf's, and bits/dim =
NLL / (D ln 2). On discrete (8-bit) data a continuous density is scored on the
dequantized x + u, u ~ U[0,1)^D, in pixel units on [0, levels)^D (the model
converts its own rescaling/logit with their log-dets), which upper-bounds the
discrete NLL; a model with ``discrete_log_prob = True`` is scored on the
integers directly. On continuous data only nats are reported, beside the true
mixture's entropy when the data module knows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data.base import DataInfo
from ..data.transforms import bits_per_dim, dequantize
from .records import Result, mean_and_std_error


def _per_example(fn: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(data[i : i + batch_size].float()).detach().double().cpu() for i in range(0, len(data), batch_size)])


@dataclass
class Prepared:
    """What an estimator needs per batch, once its expensive part (e.g. log Z) is done."""

    log_prob: Callable[[torch.Tensor], torch.Tensor]
    kind: str  # the NLL's estimator kind
    settings: dict = field(default_factory=dict)
    records: list[Result] = field(default_factory=list)  # extra records (log Z, RAISE, AIS validation)
    interval_shift: tuple[float, float] | None = None  # NLL interval = mean NLL + shift (AIS's ±3σ on log Z)


def _exact(model, data, info, settings) -> Prepared:
    return Prepared(model.log_prob, "exact")


def _bound(model, data, info, settings) -> Prepared:
    k = int(settings.get("bound_k", 1000))
    return Prepared(lambda x: model.log_prob_bound(x, k), "upper bound", {"k": k})


def _is_energy_model(model) -> bool:
    return callable(getattr(model, "free_energy", None)) and all(hasattr(model, a) for a in ("W", "b", "c"))


def _energy_draws(model, settings) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The RBM's parameters, or ``draws`` noisy copies of them ("expected AIS", Dumoulin §3.4)."""
    from ..models.constraints import noisy_parameters

    W, b, c = (t.detach() for t in (model.W, model.b, model.c))
    noise = settings.get("parameter_noise") or {}
    sw, sb = float(noise.get("sigma_w", 0.0)), float(noise.get("sigma_b", 0.0))
    if sw == 0 and sb == 0:
        return [(W, b, c)]
    gen = torch.Generator(device=W.device).manual_seed(int(noise.get("seed", 0)))
    return [noisy_parameters(W, b, c, sw, sb, gen, mask=getattr(model, "mask", None))
            for _ in range(int(noise.get("draws", 5)))]


def _ais_settings(settings) -> tuple[torch.Tensor, int, str]:
    from .ais import schedule, sm_schedule

    ais = settings.get("ais") or {}
    betas = ais.get("betas", "sm2008")
    return (sm_schedule() if betas == "sm2008" else schedule(int(betas))), int(ais.get("runs", 100)), str(betas)


def _energy(model, data, info, settings) -> Prepared:
    """RBMs: log p = −F(v) − log Z, log Z exact by enumeration when small, else by AIS (optionally RAISE beside)."""
    from .ais import ais_log_z, base_rate_biases, exact_log_z, free_energy, raise_log_prob

    draws = _energy_draws(model, settings)
    exact = bool(getattr(model, "exact_partition_feasible", False))
    betas, runs, schedule_name = _ais_settings(settings)
    base_b = base_rate_biases(info.train_mean.flatten().to(draws[0][0])) if info.train_mean is not None else None
    gen = torch.Generator(device=draws[0][0].device).manual_seed(int((settings.get("ais") or {}).get("seed", 0)))
    log_zs, ais_results = [], []
    for W, b, c in draws:
        if exact:
            log_zs.append(exact_log_z(W, b, c))
        else:
            res = ais_log_z(W, b, c, base_b, betas, n_runs=runs, generator=gen)
            ais_results.append(res)
            log_zs.append(res.log_z)

    def log_prob(x):
        x = x.flatten(1).to(draws[0][0])
        return torch.stack([-free_energy(x, W.double(), b.double(), c.double()) - lz
                            for (W, b, c), lz in zip(draws, log_zs)]).mean(0)

    kind = "exact" if exact and len(draws) == 1 else "estimate"
    used = {"log_z": "exact enumeration" if exact else f"AIS ({schedule_name} schedule, {len(betas)} betas, {runs} runs, base-rate model)"}
    if len(draws) > 1:
        used["parameter_noise"] = {**settings["parameter_noise"], "draws": len(draws), "average": "NLL averaged over noise draws"}
    prepared = Prepared(log_prob, kind, used)
    lz_mean = sum(log_zs) / len(log_zs)
    if ais_results and len(draws) == 1:
        res = ais_results[0]
        prepared.interval_shift = (res.log_z_low - res.log_z, res.log_z_high - res.log_z)
        prepared.records.append(Result("log_z", res.log_z, "nats", "estimate", std_error=res.std_error,
                                       interval=(res.log_z_low, res.log_z_high), n=runs, settings={**used, "interval": "±3σ (S&M 2008)"}))
    else:
        prepared.records.append(Result("log_z", lz_mean, "nats", kind, n=len(draws), settings=used))
    if settings.get("validate_ais") and exact and len(draws) == 1:
        W, b, c = draws[0]
        res = ais_log_z(W, b, c, base_b, betas, n_runs=runs, generator=gen)
        ais_used = {"log_z": f"AIS ({schedule_name} schedule, {len(betas)} betas, {runs} runs, base-rate model)"}
        err = res.log_z - log_zs[0]
        prepared.records += [
            Result("log_z_ais", res.log_z, "nats", "estimate", std_error=res.std_error, interval=(res.log_z_low, res.log_z_high),
                   n=runs, settings=ais_used),
            Result("log_z_ais_error", err, "nats", "estimate", interval=(res.log_z_low - log_zs[0], res.log_z_high - log_zs[0]),
                   n=runs, settings={**ais_used, "what": "AIS log Z minus exact log Z; the interval is AIS's ±3σ",
                                     "within_interval": bool(res.log_z_low <= log_zs[0] <= res.log_z_high)}),
        ]
    raise_cfg = settings.get("raise") or {}
    if int(raise_cfg.get("runs", 0)) > 0 and len(draws) == 1:
        W, b, c = draws[0]
        n = int(raise_cfg.get("examples", 1000))
        r_betas = _ais_settings({"ais": {"betas": raise_cfg.get("betas", len(betas))}})[0]
        subset = data[:n].flatten(1).to(W)
        logp, _ = raise_log_prob(subset, W, b, c, base_b, r_betas, n_runs=int(raise_cfg["runs"]), generator=gen)
        same = log_prob(subset).cpu()  # the main estimator on the same examples, for a paired sandwich
        raise_settings = {"estimator": "RAISE (Burda, Grosse & Salakhutdinov 2015): a stochastic upper bound on the NLL of "
                                       "the annealing model p_fwd, conservative for the RBM only for data drawn from it "
                                       "(ais-validation measured it 1.0 nat below the exact NLL on real MNIST)",
                          "n_betas": len(r_betas), "n_runs": int(raise_cfg["runs"]), "test_examples": len(logp)}
        def record(metric, values, estimator, extra):
            mean, se = mean_and_std_error(values)
            return Result(metric, mean, "nats", estimator, std_error=se, n=len(values), settings=extra)

        prepared.records += [
            record("nll_raise", -logp, "estimate", raise_settings),
            record("nll_raise_subset", -same, kind, {**used, "what": "the main NLL estimate on RAISE's test examples"}),
            record("nll_raise_gap", same - logp, "estimate", {
                **raise_settings, "what": "RAISE NLL minus the main NLL on the same examples (paired); "
                                          "≥ 0 when the two sandwich the truth"}),
        ]
    return prepared


ESTIMATORS: dict[str, tuple[Callable, Callable]] = {
    "exact": (lambda m: callable(getattr(m, "log_prob", None)), _exact),
    "energy": (_is_energy_model, _energy),
    "importance-weighted bound": (lambda m: callable(getattr(m, "log_prob_bound", None)), _bound),
}
"""name → (applies to model?, prepare(model, data, info, settings) -> Prepared), in order of preference."""


def choose_estimator(model) -> str | None:
    """The likelihood estimator this evaluator will use for ``model`` (None: no likelihood)."""
    return next((name for name, (applies, _) in ESTIMATORS.items() if applies(model)), None)


def likelihood_records(model, data: torch.Tensor, info: DataInfo, split: str = "test", settings: dict | None = None,
                       batch_size: int = 1000) -> list[Result]:
    """NLL (and bits/dim where meaningful) of ``model`` on ``data`` with standard errors over examples."""
    settings = dict(settings or {})
    name = choose_estimator(model)
    if name is None:
        return []
    space = info.space
    dequantized = space.kind == "discrete" and not getattr(model, "discrete_log_prob", False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prepared = ESTIMATORS[name][1](model, data, info, settings)
        values = _per_example(lambda x: -prepared.log_prob(dequantize(x) if dequantized else x), data, batch_size)
    finally:
        model.train(was_training)
    kind = prepared.kind
    if dequantized and kind == "exact":
        kind = "upper bound"  # E_u[-log p(x+u)] bounds the discrete NLL from above; one draw per example
    common = dict(estimator=kind, n=len(values), split=split, data=info.variant,
                  settings={"estimator": name, **prepared.settings,
                            **({"dequantization": "uniform, 1 draw"} if dequantized else {})})
    finite = torch.isfinite(values)
    if not finite.all():
        common["settings"]["non_finite"] = int((~finite).sum())
    mean, se = mean_and_std_error(values)
    interval = None if prepared.interval_shift is None else (mean + prepared.interval_shift[0], mean + prepared.interval_shift[1])
    records = [Result("nll", mean, "nats", std_error=se, interval=interval, **common)]
    if space.kind in ("binary", "discrete"):
        to_bits = lambda v: None if v is None else bits_per_dim(v, space.dim)  # noqa: E731
        records.append(Result("bits_per_dim", to_bits(mean), "bits/dim", std_error=to_bits(se),
                              interval=None if interval is None else tuple(map(to_bits, interval)), **common))
    for r in prepared.records:
        r.split, r.data = split, info.variant
    records += prepared.records
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
