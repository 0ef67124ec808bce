"""Test-set likelihood in nats and bits/dim, with the best estimator a model offers.

Order of preference (:data:`ESTIMATORS`): ``log_prob`` (exact) → an energy
model's own ``free_energy`` with log Z by its own enumeration when small, else by
AIS (an estimate, optimistic in expectation; RAISE's NLL beside it on request,
conservative only for data drawn from the model, so labelled an estimate; both
only for a Bernoulli–Bernoulli RBM's free energy) → ``log_prob_bound(x, k)`` (a
stochastic lower bound on log p, hence an upper bound on the NLL in expectation:
−L_k with k = ``bound_k``, Burda et al.'s L_5000 when it is 5,000; the ELBO, k = 1,
beside it as ``nll_elbo``; importance samples from a private stream seeded by
``seed``). Every record names the estimator it used. The pass over the test set
shows its progress (:mod:`genbench.core.progress`). Models with ``posterior_mean``
also get their active units (:func:`active_units`).

Data spaces (docs/design.md, "Data spaces"): on binary data the NLL is a pmf's, and bits/dim =
NLL / (D ln 2). On discrete (8-bit) data a continuous density is scored on the
dequantized x + u, u ~ U[0,1)^D (from the settings' ``seed``, so that the same
model always scores the same noise), in pixel units on [0, levels)^D (the model
converts its own rescaling/logit with their log-dets), which upper-bounds the
discrete NLL; a model with ``discrete_log_prob = True`` is scored on the
integers directly. On continuous data only nats are reported, beside the true
mixture's entropy when the data module knows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..core.bernoulli import bernoulli
from ..core.devices import full_precision, module_device
from ..core.errors import GenbenchError
from ..core.progress import Progress
from ..core.transforms import bits_per_dim, dequantize
from ..data.base import DataInfo
from ..models.contract import offers
from ..nn.rbm import free_energy as rbm_free_energy
from ..nn.rbm import noisy_parameters
from .ais import ais_log_z, base_rate_biases, raise_log_prob, schedule, sm_schedule
from .records import Result, mean_and_std_error

DEQUANTIZATION_SEED = 0
"""Seed of the dequantization noise when ``seed`` is null: a re-evaluation scores the same noise."""


def scores_per_example(fn: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, batch_size: int,
                 label: str) -> torch.Tensor:
    """``fn`` on batches of ``data``, as one float64 [N] on the CPU; progress shown per example (a bound with
    k = 5,000 importance samples takes minutes)."""
    out = []
    with torch.no_grad(), Progress(f"{label} on {len(data)} examples", len(data)) as progress:
        for i in range(0, len(data), batch_size):
            out.append(fn(data[i : i + batch_size].float()).detach().double().cpu())
            progress.update(len(out[-1]))
    return torch.cat(out)


@dataclass
class Companion:
    """Another per-example log-probability scored in the same pass, on the same (dequantized) examples, and
    recorded as an NLL under its own metric (e.g. the ELBO beside L_k)."""

    metric: str
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    kind: str
    settings: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """What an estimator needs per batch, once its expensive part (e.g. log Z) is done."""

    log_prob: Callable[[torch.Tensor], torch.Tensor]
    kind: str  # the NLL's estimator kind
    settings: dict = field(default_factory=dict)
    records: list[Result] = field(default_factory=list)  # extra records (log Z, RAISE, AIS validation)
    interval_shift: tuple[float, float] | None = None  # NLL interval = mean NLL + shift (AIS's ±3σ on log Z)
    shared_se: float = 0.0  # s.e. of a term every example shares (AIS's log Z): not removed by pairing examples
    companions: list[Companion] = field(default_factory=list)


def _exact(model, data, info, settings) -> Prepared:
    return Prepared(model.log_prob, "exact")


class SeededStream:
    """A private stream of torch's random numbers: the draws of every :meth:`run` continue one stream seeded once,
    so a re-evaluation draws the same importance samples, and the caller's global stream is left as it was."""

    def __init__(self, seed: int):
        self.seed, self.states = seed, None

    def run(self, fn: Callable, x: torch.Tensor, *args):
        cuda = x.is_cuda
        with torch.random.fork_rng(devices=[x.device] if cuda else []):
            if self.states is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self.states[0])
                if cuda:
                    torch.cuda.set_rng_state(self.states[1], x.device)
            out = fn(x, *args)
            self.states = (torch.get_rng_state(), torch.cuda.get_rng_state(x.device) if cuda else None)
        return out


def _seed(settings: dict) -> int:
    return DEQUANTIZATION_SEED if settings.get("seed") is None else int(settings["seed"])


def _bound(model, data, info, settings) -> Prepared:
    """−L_k (``bound_k`` samples) and, beside it, the ELBO (k = 1), on importance samples of one seeded stream."""
    k = int(settings.get("bound_k", 1000))
    stream = SeededStream(_seed(settings))
    elbo = Companion("nll_elbo", lambda x: stream.run(model.log_prob_bound, x, 1), "upper bound",
                     {"k": 1, "bound": "-ELBO, the k = 1 bound with one sample per example: an upper bound on the "
                                       "NLL in expectation"})
    return Prepared(lambda x: stream.run(model.log_prob_bound, x, k), "upper bound",
                    {"k": k, "bound": "-L_k (Burda et al. 2016): an upper bound on the NLL in expectation, "
                                      "tighter as k grows"}, companions=[elbo])


def _energy_draws(model, settings) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The RBM's parameters, or ``draws`` noisy copies of them ("expected AIS", Dumoulin §3.4)."""
    W, b, c = (t.detach() for t in (model.W, model.b, model.c))
    noise = settings.get("parameter_noise") or {}
    sw, sb = float(noise.get("sigma_w", 0.0)), float(noise.get("sigma_b", 0.0))
    if sw == 0 and sb == 0:
        return [(W, b, c)]
    gen = torch.Generator(device=W.device).manual_seed(int(noise.get("seed", 0)))
    return [noisy_parameters(W, b, c, sw, sb, gen, mask=getattr(model, "mask", None))
            for _ in range(int(noise.get("draws", 5)))]


def _schedule(betas) -> torch.Tensor:
    """``sm2008`` (S&M's 14,503 temperatures) or a count of temperatures with the same three-segment shape."""
    return sm_schedule() if betas == "sm2008" else schedule(int(betas))


def _require_rbm_free_energy(model, data: torch.Tensor, params: tuple[torch.Tensor, ...]) -> None:
    """Refuse AIS and RAISE for an energy model whose own free energy is not the Bernoulli–Bernoulli RBM's.

    Both anneal to the RBM (W, b, c), so for any other energy they would estimate
    another model's log Z, silently. Checked on the first 100 test examples and 100
    uniformly random binary vectors (fixed seed): a changed energy (an extra term,
    other units) shows there before minutes of annealing.
    """
    W = params[0]
    x = data[:100].flatten(1).to(W)
    coins = bernoulli(torch.full((100, x.shape[1]), 0.5, dtype=W.dtype), generator=torch.Generator().manual_seed(0))
    x = torch.cat([x, coins.to(W)])
    own, rbm = model.free_energy(x, params), rbm_free_energy(x, *params)
    gap = (own - rbm).abs().max().item()
    if not gap <= 1e-6 * (1 + rbm.abs().max().item()):
        raise GenbenchError(
            f"AIS and RAISE anneal to the Bernoulli–Bernoulli RBM of {type(model).__name__}'s W, b, c, but its free_energy "
            f"differs from that RBM's (by up to {gap:.3g} nats), so they would estimate another model's log Z. Give it an "
            f"exact log Z (exact_partition_feasible and log_partition_exact(params)) or a likelihood of its own (log_prob).")


def _energy(model, data, info, settings) -> Prepared:
    """Energy models: log p = −F(v) − log Z with the model's own ``free_energy`` (under each parameter draw).

    log Z is the model's own ``log_partition_exact(params)`` when it is feasible,
    else AIS (optionally RAISE beside), which need the Bernoulli–Bernoulli RBM's
    free energy (:func:`_require_rbm_free_energy`). Scores are computed in float64.
    """
    draws = _energy_draws(model, settings)
    draws64 = [tuple(t.double() for t in p) for p in draws]
    exact = bool(getattr(model, "exact_partition_feasible", False))
    ais = settings.get("ais") or {}
    betas, runs = _schedule(ais.get("betas", "sm2008")), int(ais.get("runs", 100))
    raise_cfg = settings.get("raise") or {}
    validate = bool(settings.get("validate_ais")) and exact and len(draws) == 1
    raise_runs = int(raise_cfg.get("runs", 0)) if len(draws) == 1 else 0
    if not exact or validate or raise_runs:
        _require_rbm_free_energy(model, data, draws64[0])
    base_b = base_rate_biases(info.train_mean.flatten().to(draws[0][0])) if info.train_mean is not None else None
    gen = torch.Generator(device=draws[0][0].device).manual_seed(int(ais.get("seed", 0)))
    ais_name = str(ais.get("betas", "sm2008"))
    ais_used = {"log_z": f"AIS ({ais_name} schedule, {len(betas)} betas, {runs} runs, base-rate model)"}
    log_zs, ais_results = [], []
    for i, (params, params64) in enumerate(zip(draws, draws64)):
        if exact:
            log_zs.append(model.log_partition_exact(params64))
        else:
            label = "AIS log Z" + (f", noise draw {i + 1}/{len(draws)}" if len(draws) > 1 else "")
            res = ais_log_z(*params, base_b, betas, n_runs=runs, generator=gen, label=label)
            ais_results.append(res)
            log_zs.append(res.log_z)

    def log_prob(x):
        return torch.stack([-model.free_energy(x, p) - lz for p, lz in zip(draws64, log_zs)]).mean(0)

    kind = "exact" if exact and len(draws) == 1 else "estimate"
    used = {"log_z": "exact enumeration"} if exact else ais_used
    if len(draws) > 1:
        used = {**used, "parameter_noise": {**settings["parameter_noise"], "draws": len(draws),
                                            "average": "NLL averaged over noise draws"}}
    shared_se = math.sqrt(sum(r.std_error ** 2 for r in ais_results)) / len(draws) if ais_results else 0.0
    prepared = Prepared(log_prob, kind, used, shared_se=shared_se)
    lz_mean = sum(log_zs) / len(log_zs)
    if ais_results and len(draws) == 1:
        res = ais_results[0]
        prepared.interval_shift = (res.log_z_low - res.log_z, res.log_z_high - res.log_z)
        prepared.records.append(Result("log_z", res.log_z, "nats", "estimate", std_error=res.std_error,
                                       interval=(res.log_z_low, res.log_z_high), n=runs, settings={**used, "interval": "±3σ (S&M 2008)"}))
    else:
        prepared.records.append(Result("log_z", lz_mean, "nats", kind, n=len(draws), settings=used))
    if validate:
        res = ais_log_z(*draws[0], base_b, betas, n_runs=runs, generator=gen, label="AIS log Z (validation)")
        err = res.log_z - log_zs[0]
        prepared.records += [
            Result("log_z_ais", res.log_z, "nats", "estimate", std_error=res.std_error, interval=(res.log_z_low, res.log_z_high),
                   n=runs, settings=ais_used),
            Result("log_z_ais_error", err, "nats", "estimate", interval=(res.log_z_low - log_zs[0], res.log_z_high - log_zs[0]),
                   n=runs, settings={**ais_used, "what": "AIS log Z minus exact log Z; the interval is AIS's ±3σ",
                                     "within_interval": bool(res.log_z_low <= log_zs[0] <= res.log_z_high)}),
        ]
    if raise_runs:
        W, b, c = draws[0]
        n = int(raise_cfg.get("examples", 1000))
        r_name = raise_cfg.get("betas")  # None: the schedule of the AIS it is paired with
        r_betas, r_name = (betas, ais_name) if r_name is None else (_schedule(r_name), str(r_name))
        subset = data[:n].flatten(1).to(W)
        logp, _ = raise_log_prob(subset, W, b, c, base_b, r_betas, n_runs=raise_runs, generator=gen)
        same = log_prob(subset).cpu()  # the main estimator on the same examples, for a paired sandwich
        raise_settings = {"estimator": "RAISE (Burda, Grosse & Salakhutdinov 2015): a stochastic upper bound on the NLL of "
                                       "the annealing model p_fwd, conservative for the RBM only for data drawn from it "
                                       "(ais-validation measured it 1.0 nat below the exact NLL on real MNIST)",
                          "schedule": r_name, "n_betas": len(r_betas), "n_runs": raise_runs, "test_examples": len(logp)}
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
    "exact": (lambda m: offers(m, "log_prob"), _exact),
    "energy": (lambda m: offers(m, "free_energy"), _energy),
    "importance-weighted bound": (lambda m: offers(m, "log_prob_bound"), _bound),
}
"""name → (applies to model?, prepare(model, data, info, settings) -> Prepared), in order of preference."""


def choose_estimator(model) -> str | None:
    """The likelihood estimator this evaluator will use for ``model`` (None: no likelihood)."""
    return next((name for name, (applies, _) in ESTIMATORS.items() if applies(model)), None)


def likelihood_records(model, data: torch.Tensor, info: DataInfo, split: str = "test", settings: dict | None = None,
                       batch_size: int = 1000) -> list[Result]:
    """NLL (and bits/dim where meaningful) of ``model`` on ``data`` with standard errors over examples.

    ``data`` may live on the CPU: each batch is dequantized where it lives (the same noise on any device) and then
    moved to the model's device. Runs in float32 or float64 only (:func:`~genbench.core.devices.full_precision`)."""
    settings = dict(settings or {})
    name = choose_estimator(model)
    if name is not None or offers(model, "posterior_mean"):
        full_precision(model, "the likelihood evaluator")
    device = module_device(model)
    units = active_units(model, data, info, split, settings) if offers(model, "posterior_mean") else []
    if name is None:
        return units
    space = info.space
    dequantized = space.kind == "discrete" and not getattr(model, "discrete_log_prob", False)
    seed = DEQUANTIZATION_SEED if settings.get("seed") is None else int(settings["seed"])
    noise = torch.Generator(device=data.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prepared = ESTIMATORS[name][1](model, data, info, settings)
        k = prepared.settings.get("k")
        label = f"NLL ({name}{f', k={k}' if k else ''})"
        scorers = [prepared.log_prob, *(c.log_prob for c in prepared.companions)]

        def nlls(x):
            x = (dequantize(x, noise) if dequantized else x).to(device)
            return torch.stack([-fn(x) for fn in scorers], 1)

        values, *others = scores_per_example(nlls, data, batch_size, label).unbind(1)
    finally:
        model.train(was_training)
    kind = prepared.kind
    if dequantized and kind == "exact":
        kind = "upper bound"  # E_u[-log p(x+u)] bounds the discrete NLL from above; one draw per example
    common = dict(estimator=kind, n=len(values), split=split, data=info.variant,
                  settings={"estimator": name, **prepared.settings,
                            **({"dequantization": f"uniform, 1 draw, seed {seed}"} if dequantized else {})})
    finite = torch.isfinite(values)
    if not finite.all():
        common["settings"]["non_finite"] = int((~finite).sum())
    mean, se = mean_and_std_error(values)
    interval = None if prepared.interval_shift is None else (mean + prepared.interval_shift[0], mean + prepared.interval_shift[1])
    records = [Result("nll", mean, "nats", std_error=se, interval=interval, scores=values,
                      shared_se=prepared.shared_se, **common)]
    if space.kind in ("binary", "discrete"):
        to_bits = lambda v: None if v is None else bits_per_dim(v, space.dim)  # noqa: E731
        records.append(Result("bits_per_dim", to_bits(mean), "bits/dim", std_error=to_bits(se),
                              interval=None if interval is None else tuple(map(to_bits, interval)),
                              scores=to_bits(values), shared_se=to_bits(prepared.shared_se), **common))
    for companion, v in zip(prepared.companions, others):
        c_mean, c_se = mean_and_std_error(v)
        records.append(Result(companion.metric, c_mean, "nats", std_error=c_se, scores=v, **{
            **common, "estimator": companion.kind, "settings": {**common["settings"], **companion.settings}}))
    for r in prepared.records:
        r.split, r.data = split, info.variant
    records += prepared.records + units
    if info.mixture is not None:
        h, h_se = mixture_entropy(info.mixture)
        records.append(Result("mixture_entropy", h, "nats", "estimate", std_error=h_se, n=ENTROPY_SAMPLES,
                              data=info.variant, settings={"what": "entropy of the true mixture: the floor of any model's NLL",
                                                           "method": "Monte Carlo"}))
    return records


ACTIVE_UNITS_EXAMPLES = 500
ACTIVE_UNITS_THRESHOLD = 1e-2


def active_units(model, data: torch.Tensor, info: DataInfo, split: str = "test", settings: dict | None = None,
                 examples: int = ACTIVE_UNITS_EXAMPLES, threshold: float = ACTIVE_UNITS_THRESHOLD) -> list[Result]:
    """Burda et al.'s active units: latent dimensions u with A_u = Cov_x(E_q[u | x]) > 1e-2, the population variance
    of ``model.posterior_mean`` over the first 500 examples of ``data``. (The IWAE code's ``get_units_variances``
    takes the first 500 training examples; the evaluator sees the evaluated split only.) A model with more than
    one entry in ``latent_sizes`` also gets the count per layer; a random ``posterior_mean`` (a deeper layer given a
    draw of the one below) draws from a stream seeded by ``seed``."""
    settings = settings or {}
    x = data[:examples].float().to(module_device(model))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            means = SeededStream(_seed(settings)).run(model.posterior_mean, x).double().cpu()
    finally:
        model.train(was_training)
    active = means.var(0, unbiased=False) > threshold
    sizes = list(getattr(model, "latent_sizes", ()))
    per_layer = {"per_layer": [int(a.sum()) for a in active.split(sizes)]} if len(sizes) > 1 else {}
    return [Result("active_units", int(active.sum()), "units", "estimate", n=len(x), split=split, data=info.variant,
                   settings={"definition": f"latent dimensions u with Cov_x(E_q[u|x]) > {threshold:g} "
                                           f"(Burda et al. 2016, population variance)",
                             "examples": f"the first {len(x)} of the {split} split", "latent_dims": int(active.numel()),
                             **per_layer})]


ENTROPY_SAMPLES = 200_000
_ENTROPY_CACHE: dict[bytes, tuple[float, float]] = {}


def mixture_entropy(mixture) -> tuple[float, float]:
    """Monte-Carlo entropy of a mixture (nats, with s.e.), computed once per mixture."""
    key = b"".join(t.numpy().tobytes() for t in (mixture.means, mixture.covariances, mixture.weights))
    if key not in _ENTROPY_CACHE:
        _ENTROPY_CACHE[key] = mixture.entropy(ENTROPY_SAMPLES, seed=12345)
    return _ENTROPY_CACHE[key]
