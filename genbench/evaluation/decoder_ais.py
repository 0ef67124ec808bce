"""AIS for decoder-based models (Wu, Burda, Salakhutdinov & Grosse 2017), checked by bidirectional Monte Carlo.

A decoder model has a latent z with prior p(z) = N(0, I) and an observation model p(x | z). Its
log-likelihood log p(x) = log ∫ p(z) p(x | z) dz is estimated by annealing from the prior to the posterior
along f_β(z) = p(z) · p(x | z)^β, β from 0 to 1 (f_0 is the normalized prior, so log Z_0 = 0 and Z_1 = p(x)).
Each chain starts at an exact prior draw; at each new β_k it adds (β_k − β_{k−1}) · log p(x | z) at its current
z to its log-weight, then takes one Hamiltonian Monte Carlo move that leaves f_{β_k} invariant. The estimate
for an example is the log of the mean weight over its chains (log-mean-exp). E[weight] = p(x) exactly, so by
Jensen E[log p̂(x)] ≤ log p(x): the NLL is an **upper bound in expectation** (like the IWAE bound), although a
single estimate can fall below the true NLL.

As the authors' code (``tonywu95/eval_gen``) runs it:

* schedule: the sigmoid schedule β_t = (σ(t) − σ(−4)) / (σ(4) − σ(−4)), t = linspace(−4, 4, T), dense near both
  ends (:func:`sigmoid_schedule`); the paper's T is 10,000;
* HMC: unit mass, one trajectory of L leapfrog steps (paper: 10) per temperature, Metropolis accept on the
  Hamiltonian; one scalar step size shared by every chain of every example in a batch, starting at 0.01 and
  adapted after each move: ×1.02 if the moving average of the acceptance rate (decay 0.9, starting at the
  target) is above 0.65, else ×0.98, clipped to [1e-4, 0.5] (:class:`StepSize`). The adaptation uses the
  chains' past, so the transitions are not fixed in advance as AIS's proof assumes; the authors accept the
  (small) effect and so do we;
* 16 chains per example; the observation model is the model's own ``observation_log_prob(x, z)`` when it has
  one (a VAE), else a spherical Gaussian N(x; decode_mean(z), σ² I) with a stated σ² (GAN and ALI generators:
  the number is then the likelihood of "generator + Gaussian noise of variance σ²", not of the generator,
  which has no density), or on binary data independent Bernoullis with means decode_mean(z).

BDMC (Grosse, Ghahramani & Adams 2015; Wu et al. §2.3): on data simulated from the model itself (z ~ p(z),
x ~ p(x | z)), forward AIS gives a stochastic lower bound on log p(x), and reverse AIS, started at the exact z
(an exact posterior draw) and annealed from β = 1 to 0, a stochastic upper bound (it estimates 1/p(x) without
bias). Their mean difference, the BDMC gap, bounds in expectation the error of forward AIS on such data.

Every chain of every example advances as one batch (rows = examples × chains, example-major); the only
Python loops are over temperatures and leapfrog steps. Examples are processed in groups of at most
``max_chains`` rows (each group adapts its own step size, as the code's batches do). Log-weights accumulate
in float64. Progress shows per temperature (:mod:`genbench.core.progress`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..core.bernoulli import bernoulli
from ..core.devices import forked_rng, full_precision, module_device
from ..core.errors import ConfigError, GenbenchError, ModelContractError
from ..core.progress import Progress
from ..models.contract import offers
from .ais import log_mean_exp
from .likelihood import ENTROPY_SAMPLES, SeededStream, mixture_entropy, scores_per_example
from .records import Result, mean_and_std_error

__all__ = ["DEFAULTS", "StepSize", "sigmoid_schedule", "hmc_move", "anneal", "ais_log_prob", "reverse_ais_log_prob",
           "Observation", "observation_model", "decoder_ais_records"]

DEFAULTS: dict[str, Any] = {
    "temperatures": 10_000,        # T, including β = 0 and β = 1 (Wu et al. §5.3.1)
    "chains": 16,                  # forward chains per example
    "leapfrog_steps": 10,          # L, one trajectory per temperature
    "initial_step": 0.01,          # HMC step size at the start of every run
    "examples": 1000,              # test examples scored (Wu et al.'s Table 2: 1,000)
    "bdmc_examples": 100,          # simulated examples for BDMC (code default 100; paper 1,000); 0: no BDMC
    "observation_variance": None,  # σ² of the Gaussian around decode_mean(z); required when that path is used
    "iwae_k": None,                # k: also the model's log_prob_bound(x, k) on the same examples (paired)
    "seed": 0,
    "max_chains": 16_000,          # rows per batch (examples × chains): bounds memory
}
"""``evaluation.decoder_ais`` keys and their defaults (the paper's protocol); a table gives a dict of overrides."""

BERNOULLI_CLAMP = 1e-6
"""Bernoulli means are clamped to [1e-6, 1 − 1e-6]: a generator's saturated pixel gets a finite log-probability."""


def sigmoid_schedule(n: int, radius: float = 4.0) -> torch.Tensor:
    """``n`` inverse temperatures from exactly 0 to exactly 1, dense near both ends (Wu et al.'s ``sigmoid_schedule``)."""
    if n < 2:
        raise ConfigError(f"decoder AIS needs at least 2 temperatures (0 and 1), got {n}")
    s = torch.sigmoid(torch.linspace(-radius, radius, n, dtype=torch.float64))
    b = (s - s[0]) / (s[-1] - s[0])
    b[0], b[-1] = 0.0, 1.0
    return b


@dataclass
class StepSize:
    """The code's HMC step-size rule: one scalar for all chains, nudged toward an acceptance rate of 0.65.

    After each move the step grows ×1.02 if the moving average of the acceptance rate is above the target, else
    shrinks ×0.98 (clipped to [1e-4, 0.5]); then the average takes the move's acceptance rate with weight 0.1.
    Both updates read the average from before the move, as the code's simultaneous Theano updates do.
    """

    value: float = 0.01
    avg_accept: float = 0.65
    target: float = 0.65
    increase: float = 1.02
    decrease: float = 0.98
    low: float = 1e-4
    high: float = 0.5
    decay: float = 0.9

    def update(self, accept_rate: float) -> None:
        factor = self.increase if self.avg_accept > self.target else self.decrease
        self.value = min(max(self.value * factor, self.low), self.high)
        self.avg_accept = self.decay * self.avg_accept + (1 - self.decay) * accept_rate


LogLik = Callable[[torch.Tensor], torch.Tensor]
"""z [N, d] → log p(x_n | z_n) [N], differentiable in z (x fixed by the caller)."""


def _value_and_grad(log_lik: LogLik, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        ll = log_lik(z)
        if not ll.requires_grad:
            raise ModelContractError("decoder AIS needs log p(x | z) differentiable in z (HMC follows its gradient); "
                                     "the observation model returned a tensor without a graph (under torch.no_grad?)")
        (grad,) = torch.autograd.grad(ll.sum(), z)
    return ll.detach(), grad


def hmc_move(z: torch.Tensor, ll: torch.Tensor, grad: torch.Tensor, beta: float, log_lik: LogLik, step: float,
             leapfrog_steps: int, generator: torch.Generator | None = None):
    """One HMC move per row leaving f_β(z) ∝ N(z; 0, I) · exp(β · ll(z)) invariant.

    ``ll``, ``grad`` are log p(x | z) and its z-gradient at the current ``z`` (carried between moves, so a move
    costs exactly ``leapfrog_steps`` decoder passes). Potential U(z) = ½‖z‖² − β ll(z), unit mass, leapfrog with
    half steps of the momentum at both ends, then Metropolis: accept with probability min(1, exp(H₀ − H₁)); a
    non-finite H₁ is rejected. Returns (z, ll, grad, accepted [N] bool).
    """
    p0 = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    zn, lln, gn = z, ll, grad
    p = p0 - 0.5 * step * (zn - beta * gn)
    for i in range(leapfrog_steps):
        zn = zn + step * p
        lln, gn = _value_and_grad(log_lik, zn)
        p = p - (step if i < leapfrog_steps - 1 else 0.5 * step) * (zn - beta * gn)
    h0 = 0.5 * z.square().sum(1) - beta * ll + 0.5 * p0.square().sum(1)
    h1 = 0.5 * zn.square().sum(1) - beta * lln + 0.5 * p.square().sum(1)
    u = torch.rand(z.shape[0], generator=generator, device=z.device, dtype=z.dtype)
    accept = torch.log(u) < h0 - h1  # False when h1 is NaN or inf
    a = accept[:, None]
    return torch.where(a, zn, z), torch.where(accept, lln, ll), torch.where(a, gn, grad), accept


@dataclass
class AnnealStats:
    acceptance: float  # mean acceptance rate over all moves and chains
    final_step: float  # the adapted step size at the end


def anneal(log_lik: LogLik, z: torch.Tensor, path: torch.Tensor, leapfrog_steps: int = 10, initial_step: float = 0.01,
           generator: torch.Generator | None = None, progress: Progress | None = None) -> tuple[torch.Tensor, AnnealStats]:
    """Anneal the chains ``z`` [N, d] along ``path`` = b_0, …, b_K; return Σ_k (b_k − b_{k−1}) ll(z_k) (float64 [N]).

    At each k the increment is taken at the current state, then (except after the last b) one HMC move at b_k.
    Forward AIS: path 0 → 1 from prior draws, the sum is log p̂(x). Reverse AIS: path 1 → 0 from exact posterior
    draws, the sum estimates log 1/p(x), so its negative is a stochastic upper bound on log p(x).
    """
    path = path.tolist()
    ll, grad = _value_and_grad(log_lik, z)
    logw = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
    step, accepted, moves = StepSize(value=initial_step), 0.0, 0
    for k in range(1, len(path)):
        if path[k] != path[k - 1]:
            logw.add_(ll.double(), alpha=path[k] - path[k - 1])
        if k < len(path) - 1:
            z, ll, grad, acc = hmc_move(z, ll, grad, path[k], log_lik, step.value, leapfrog_steps, generator)
            rate = acc.float().mean().item()
            step.update(rate)
            accepted, moves = accepted + rate, moves + 1
        if progress is not None:
            progress.update()
    return logw, AnnealStats(accepted / max(moves, 1), step.value)


def _groups(n_examples: int, per_example: int, max_chains: int) -> list[slice]:
    size = max(1, max_chains // per_example)
    return [slice(i, min(i + size, n_examples)) for i in range(0, n_examples, size)]


def _combine(stats: list[AnnealStats]) -> AnnealStats:
    return AnnealStats(sum(s.acceptance for s in stats) / len(stats), stats[-1].final_step)


def ais_log_prob(obs_log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, latent_dim: int,
                 betas: torch.Tensor, chains: int = 16, leapfrog_steps: int = 10, initial_step: float = 0.01,
                 generator: torch.Generator | None = None, max_chains: int = 16_000,
                 label: str = "decoder AIS") -> tuple[torch.Tensor, torch.Tensor, AnnealStats]:
    """Forward AIS: per-example log p̂(x) (float64 [B], log-mean-exp over chains), the log-weights [B, chains], stats.

    ``obs_log_prob(x_rows, z)`` → log p(x | z) [N] for matching rows; each example is repeated ``chains`` times.
    """
    B = x.shape[0]
    groups = _groups(B, chains, max_chains)
    logws, stats = [], []
    with Progress(f"{label} ({B} examples × {chains} chains, {len(betas)} temperatures)",
                  len(groups) * (len(betas) - 1), dims=2) as progress:
        for g in groups:
            xg = x[g].repeat_interleave(chains, 0)
            z = torch.randn(xg.shape[0], latent_dim, generator=generator, device=x.device, dtype=x.dtype)
            logw, st = anneal(lambda v: obs_log_prob(xg, v), z, betas, leapfrog_steps, initial_step, generator, progress)
            logws.append(logw.view(-1, chains))
            stats.append(st)
    logw = torch.cat(logws)
    return log_mean_exp(logw, dim=1)[0], logw, _combine(stats)


def reverse_ais_log_prob(obs_log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                         z: torch.Tensor, betas: torch.Tensor, leapfrog_steps: int = 10, initial_step: float = 0.01,
                         generator: torch.Generator | None = None, max_chains: int = 16_000,
                         label: str = "decoder AIS reverse") -> tuple[torch.Tensor, AnnealStats]:
    """Reverse AIS from the exact latents ``z`` of simulated ``x`` (one chain each): a stochastic upper bound on
    log p(x) per example (float64 [B]), and stats."""
    groups = _groups(x.shape[0], 1, max_chains)
    out, stats = [], []
    with Progress(f"{label} ({x.shape[0]} examples, {len(betas)} temperatures)", len(groups) * (len(betas) - 1),
                  dims=2) as progress:
        for g in groups:
            xg = x[g]
            logw, st = anneal(lambda v: obs_log_prob(xg, v), z[g], betas.flip(0), leapfrog_steps, initial_step,
                              generator, progress)
            out.append(-logw)
            stats.append(st)
    return torch.cat(out), _combine(stats)


# --------------------------------------------------------------------------- observation models


@dataclass
class Observation:
    """p(x | z) of a decoder model: ``log_prob(x, z)`` [N] (nats, data units), ``sample(z, generator)`` or None."""

    log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    sample: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    kind: str  # "model" | "gaussian" | "bernoulli"
    description: str


def observation_model(model, info, variance: float | None) -> Observation:
    """The model's own ``observation_log_prob`` if it has one; else Gaussian (variance σ²) or Bernoulli noise
    around ``decode_mean(z)`` on continuous or binary data."""
    name = type(model).__name__
    own = getattr(model, "observation_log_prob", None)
    if callable(own):
        draw = getattr(model, "observation_sample", None)

        def sample(z, g):  # the model draws from torch's global stream: seeded from g, and restored afterwards
            with forked_rng(z.device):
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=g, device=g.device)))
                return draw(z)

        return Observation(own, sample if callable(draw) else None, "model", f"{name}'s own p(x | z) (observation_log_prob)")
    mean = model.decode_mean
    kind = info.space.kind
    if kind == "continuous":
        if variance is None or not float(variance) > 0:
            raise ConfigError(
                f"decoder AIS of {name} needs evaluation.decoder_ais.observation_variance: σ² > 0 of the Gaussian "
                f"noise put around its generator's output, in squared data units (Wu et al. 2017 used 0.005–0.03 on "
                f"MNIST scaled to [0, 1]); the number is the likelihood of 'generator + noise of variance σ²'")
        var = float(variance)
        const = 0.5 * info.dim * math.log(2 * math.pi * var)

        def gaussian(x, z):
            return -(x.flatten(1) - mean(z).flatten(1)).square().sum(1) / (2 * var) - const

        def sample(z, g):
            m = mean(z).detach()
            return m + math.sqrt(var) * torch.randn(m.shape, generator=g, device=m.device, dtype=m.dtype)

        return Observation(gaussian, sample, "gaussian",
                           f"spherical Gaussian N(x; decode_mean(z), σ² I) with σ² = {var:g} (squared data units), a "
                           f"stated choice: the number is the log-likelihood of the model '{name} generator + Gaussian "
                           f"noise of variance σ²', not of the generator itself (a GAN has no density); a smaller σ² "
                           f"rewards samples that land closer to the data and changes the number")
    if kind == "binary":
        def bern(x, z):
            m = mean(z).flatten(1).clamp(BERNOULLI_CLAMP, 1 - BERNOULLI_CLAMP)
            x = x.flatten(1)
            return (x * m.log() + (1 - x) * (-m).log1p()).sum(1)

        def sample(z, g):
            return bernoulli(mean(z).detach().clamp(0, 1), generator=g)

        return Observation(bern, sample, "bernoulli",
                           f"independent Bernoullis with means decode_mean(z) (clamped to [{BERNOULLI_CLAMP:g}, "
                           f"1 − {BERNOULLI_CLAMP:g}]): the likelihood of '{name} generator means + Bernoulli noise'")
    raise GenbenchError(
        f"decoder AIS puts Gaussian (continuous data) or Bernoulli (binary data) noise around {name}.decode_mean; "
        f"{info.variant} is {info.space}. Give the model its own observation_log_prob(x, z), or use a binary or "
        f"continuous data variant")


# --------------------------------------------------------------------------- records


def _settings(settings: dict | None) -> dict[str, Any]:
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown evaluation.decoder_ais key(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **settings}


def decoder_ais_records(model, data: torch.Tensor, info, settings: dict | None, entropy: bool = False) -> list[Result]:
    """NLL by decoder AIS on the first ``examples`` of ``data``, the spread over chains, the BDMC bounds and gap on
    ``bdmc_examples`` simulated examples, the paired IWAE bound if ``iwae_k``, and (``entropy``) the mixture's
    entropy for models the likelihood evaluator does not score (GANs), so that every row shows its floor."""
    cfg = _settings(settings)
    obs = observation_model(model, info, cfg["observation_variance"])
    device = module_device(model)
    full_precision(model, "decoder AIS")
    _check_prior(model, device)
    gen = torch.Generator(device=device).manual_seed(int(cfg["seed"]))
    betas = sigmoid_schedule(int(cfg["temperatures"]))
    d, chains = int(model.latent_dim), int(cfg["chains"])
    run = dict(leapfrog_steps=int(cfg["leapfrog_steps"]), initial_step=float(cfg["initial_step"]), generator=gen,
               max_chains=int(cfg["max_chains"]))
    protocol = {
        "estimator": "AIS from the prior N(0, I) to the posterior, f_β(z) = p(z) p(x|z)^β (Wu et al. 2017); "
                     "log p̂(x) = log-mean-exp of the chains' weights; E[log p̂] ≤ log p (Jensen), so the NLL is an "
                     "upper bound in expectation",
        "observation": obs.description,
        "schedule": f"sigmoid, radius 4, {len(betas)} temperatures",
        "transition": f"HMC, unit mass, {run['leapfrog_steps']} leapfrog steps per temperature; one step size shared by "
                      f"the chains of a batch of ≤ {run['max_chains']} chains, from {run['initial_step']:g}, ×1.02 / "
                      f"×0.98 toward an EMA (0.9) acceptance of 0.65, clipped to [1e-4, 0.5] (the authors' code)",
        "chains": chains, "seed": int(cfg["seed"]),
    }
    if obs.kind == "gaussian":
        protocol["observation_variance"] = float(cfg["observation_variance"])
    was_training = model.training
    model.eval()
    records: list[Result] = []
    try:
        x = data[: int(cfg["examples"])].float().to(device)
        logp, logw, st = ais_log_prob(obs.log_prob, x, d, betas, chains, **run)
        logp = logp.cpu()
        chain_std = logw.std(1).cpu() if chains > 1 else torch.zeros(len(x), dtype=torch.float64)
        mean, se = mean_and_std_error(-logp)
        run_stats = {"acceptance": round(st.acceptance, 4), "final_step": st.final_step, "examples": len(x)}
        records += [
            Result("nll_ais", mean, "nats", "upper bound", std_error=se, n=len(x), settings={**protocol, **run_stats}),
            Result("ais_chain_std", chain_std.mean().item(), "nats", "estimate", n=len(x), settings={
                **protocol, "what": "standard deviation over an example's chains of their log-weights, averaged over "
                                    "examples: the spread over chains (0 when AIS is exact)"}),
        ]
        if not torch.isfinite(logp).all():
            records[0].settings["non_finite"] = int((~torch.isfinite(logp)).sum())
        n_sim = int(cfg["bdmc_examples"] or 0)
        if n_sim:
            records += _bdmc(obs, d, n_sim, betas, chains, run, gen, device, protocol)
        k = cfg["iwae_k"]
        if k and offers(model, "log_prob_bound"):
            stream = SeededStream(int(cfg["seed"]))  # the bound's own samples: the same on every evaluation
            bound = scores_per_example(lambda v: stream.run(model.log_prob_bound, v, int(k)), x, 20,
                                       f"IWAE bound, k={k}")
            what = {"examples": len(x), "k": int(k),
                    "what": "the model's log_prob_bound(x, k) on the AIS examples (paired with nll_ais)"}
            m1, s1 = mean_and_std_error(-bound)
            m2, s2 = mean_and_std_error(logp - bound)
            records += [Result("nll_iwae_subset", m1, "nats", "upper bound", std_error=s1, n=len(x), settings=what),
                        Result("ais_iwae_gap", m2, "nats", "estimate", std_error=s2, n=len(x), settings={
                            **what, "what": "IWAE NLL minus AIS NLL on the same examples (paired): > 0 when AIS is "
                                            "the tighter bound"})]
    finally:
        model.train(was_training)
    if entropy and info.mixture is not None:
        h, h_se = mixture_entropy(info.mixture)
        records.append(Result("mixture_entropy", h, "nats", "estimate", std_error=h_se, n=ENTROPY_SAMPLES,
                              settings={"what": "entropy of the true mixture: the floor of any model's NLL",
                                        "method": "Monte Carlo"}))
    return records


def _check_prior(model, device) -> None:
    """AIS starts at exact N(0, I) draws with log Z_0 = 0: refuse a model whose own ``prior_log_prob`` is another."""
    prior = getattr(model, "prior_log_prob", None)
    if callable(prior):
        z = torch.randn(8, int(model.latent_dim), generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():
            own = prior(z).double().cpu()
        normal = -0.5 * z.double().square().sum(1).cpu() - 0.5 * z.shape[1] * math.log(2 * math.pi)
        if not torch.allclose(own, normal, atol=1e-4):
            raise ModelContractError(f"decoder AIS anneals from the prior N(0, I), but {type(model).__name__}."
                                     f"prior_log_prob is another density (off by up to "
                                     f"{(own - normal).abs().max().item():.3g} nats)")


def _bdmc(obs: Observation, d: int, n: int, betas, chains: int, run: dict, gen, device, protocol) -> list[Result]:
    """Forward and reverse AIS on ``n`` examples simulated from the model; NLL bounds and their gap (nats)."""
    if obs.sample is None:
        return [Result("bdmc_gap", float("nan"), "nats", "estimate", settings={
            "skipped": "the model has its own observation_log_prob but no observation_sample(z) to simulate "
                       "x ~ p(x | z), which BDMC needs"})]
    z = torch.randn(n, d, generator=gen, device=device)
    with torch.no_grad():
        x = obs.sample(z, gen)
    lower, _, st_f = ais_log_prob(obs.log_prob, x, d, betas, chains, label="BDMC forward", **run)
    upper, st_r = reverse_ais_log_prob(obs.log_prob, x, z, betas, label="BDMC reverse", **run)
    lower, upper = lower.cpu(), upper.cpu()
    sim = {**protocol, "simulated_examples": n, "reverse_chains": 1,
           "acceptance": {"forward": round(st_f.acceptance, 4), "reverse": round(st_r.acceptance, 4)}}
    f_mean, f_se = mean_and_std_error(-lower)
    r_mean, r_se = mean_and_std_error(-upper)
    g_mean, g_se = mean_and_std_error(upper - lower)
    return [
        Result("bdmc_nll_forward", f_mean, "nats", "upper bound", std_error=f_se, n=n, settings={
            **sim, "what": "forward AIS NLL of data simulated from the model: an upper bound in expectation"}),
        Result("bdmc_nll_reverse", r_mean, "nats", "lower bound", std_error=r_se, n=n, settings={
            **sim, "what": "reverse AIS (β 1 → 0 from the exact z, 1 chain) NLL of the same data: a lower bound in "
                           "expectation"}),
        Result("bdmc_gap", g_mean, "nats", "estimate", std_error=g_se, n=n, settings={
            **sim, "what": "forward minus reverse NLL on simulated data (paired over examples): in expectation ≥ the "
                           "error of forward AIS on data from the model (Grosse et al. 2015's BDMC gap)"}),
    ]
