"""Decoder AIS and BDMC against ground truth: probabilistic PCA (log p(x) in closed form), a Bernoulli decoder
with a 1-D latent (log p(x) by quadrature), and Gaussian targets for the HMC transition."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import genbench.tables as tables
from genbench.core.errors import ConfigError, GenbenchError, ModelContractError
from genbench.data import DataSpace, build_datamodule
from genbench.evaluation import decoder_ais as da
from genbench.evaluation import evaluate
from genbench.evaluation.ais import log_mean_exp
from genbench.models import build_model
from genbench.models.contract import offers


class PPCA(torch.nn.Module):
    """p(z) = N(0, I), x = Wz + μ + σε: a linear decoder whose log p(x) = log N(x; μ, WWᵀ + σ²I) is exact."""

    def __init__(self, D=5, d=2, var=0.1, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(1.5 * torch.randn(D, d, generator=g))
        self.mu = torch.nn.Parameter(torch.randn(D, generator=g))
        self.latent_dim, self.var = d, var

    def decode_mean(self, z):
        return z @ self.W.T + self.mu

    def exact_log_prob(self, x):
        cov = (self.W @ self.W.T).double() + self.var * torch.eye(len(self.mu), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.mu.double(), cov).log_prob(x.double()).detach()

    def simulate(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g)
        with torch.no_grad():
            return z, self.decode_mean(z) + math.sqrt(self.var) * torch.randn(n, len(self.mu), generator=g)


class OwnObservationPPCA(PPCA):
    """The same model offering its own p(x | z), as a VAE does; it has no decode_mean."""

    decode_mean = None

    def observation_log_prob(self, x, z):
        return (-(x - PPCA.decode_mean(self, z)).square().sum(1) / (2 * self.var)
                - 0.5 * x.shape[1] * math.log(2 * math.pi * self.var))

    def observation_sample(self, z):
        m = PPCA.decode_mean(self, z)
        return m + math.sqrt(self.var) * torch.randn(m.shape)


def info(kind="continuous", dim=5, levels=None):
    return SimpleNamespace(space=DataSpace(kind, (dim,), levels), dim=dim, mixture=None, variant=f"test/{kind}")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_sigmoid_schedule_runs_from_0_to_1_symmetrically_dense_at_both_ends():
    b = da.sigmoid_schedule(101)
    assert b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    assert torch.allclose(b + b.flip(0), torch.ones_like(b), atol=1e-12)  # symmetric about the middle
    s = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    assert b[25].item() == pytest.approx((s(-2) - s(-4)) / (s(4) - s(-4)), abs=1e-12)  # t = −2 at index 25
    assert b.diff()[0] < b.diff()[50] / 10  # ten times denser at the ends than in the middle


def test_step_size_follows_the_codes_rule():
    """Start 0.01 with the average at the target: the first move shrinks (0.65 is not above 0.65), the average
    then moves 10% toward the observed rate, later moves grow while it stays above, and the step is clipped."""
    s = da.StepSize()
    s.update(1.0)
    assert (s.value, s.avg_accept) == (pytest.approx(0.0098), pytest.approx(0.685))
    s.update(1.0)
    assert s.value == pytest.approx(0.0098 * 1.02)
    for _ in range(1000):
        s.update(1.0)
    assert s.value == 0.5
    for _ in range(2000):
        s.update(0.0)
    assert s.value == 1e-4


def test_hmc_converges_to_and_stays_at_a_gaussian_target():
    """f_β ∝ N(z; 0, I)·exp(β ll(z)) with a Gaussian ll is N(P⁻¹βAm, P⁻¹), P = I + βA. Chains started at the
    prior reach it and keep its mean and covariance. The step (acceptance ≈ 0.7) is large enough that an
    uncorrected leapfrog, a wrong Hamiltonian or a sign error in the gradient fails."""
    A = torch.tensor([[30.0, 8.0], [8.0, 4.0]])
    m, beta = torch.tensor([1.0, -2.0]), 0.7
    ll = lambda z: -0.5 * (((z - m) @ A) * (z - m)).sum(1)  # noqa: E731
    P = torch.eye(2) + beta * A
    cov = torch.linalg.inv(P)
    mean = cov @ (beta * A @ m)
    g = gen(0)
    z = torch.randn(4000, 2, generator=g)
    lz, grad = da._value_and_grad(ll, z)
    rates = []
    for _ in range(40):
        z, lz, grad, acc = da.hmc_move(z, lz, grad, beta, ll, step=0.3, leapfrog_steps=5, generator=g)
        rates.append(acc.float().mean().item())
    assert 0.5 < sum(rates[10:]) / 30 < 0.95
    se = (cov.diagonal() / len(z)).sqrt()
    assert ((z.mean(0) - mean).abs() < 4 * se).all(), (z.mean(0), mean)
    assert torch.allclose(torch.cov(z.T), cov, rtol=0.08, atol=0.004), (torch.cov(z.T), cov)
    assert torch.allclose(lz, ll(z), atol=1e-4)  # the carried log-likelihood is that of the current state


def test_ais_weights_are_unbiased_even_with_five_temperatures():
    """E[w] = p(x) for any schedule: with 5 temperatures and 20,000 chains the log of the mean weight matches the
    exact log p(x) within 4 standard errors per example. A weight taken after the move instead of before, or a
    move at the previous temperature, is off by 0.3–1.3 nats here (30–100 standard errors)."""
    model = PPCA(D=3, d=2, var=0.5)
    with torch.no_grad():
        model.W.mul_(0.5)
    _, x = model.simulate(4, seed=1)
    obs = da.observation_model(model, info(dim=3), variance=model.var)
    logp, logw, _ = da.ais_log_prob(obs.log_prob, x, 2, da.sigmoid_schedule(5), chains=20000, leapfrog_steps=5,
                                    initial_step=0.3, generator=gen(2))
    log_mean, log_se = log_mean_exp(logw, 1)
    se = torch.exp(log_se - log_mean)  # delta method: se(w̄)/w̄
    assert torch.equal(logp, log_mean)
    assert ((logp - model.exact_log_prob(x)).abs() < 4 * se).all(), (logp - model.exact_log_prob(x), se)


def test_ais_recovers_the_exact_log_likelihood_of_ppca():
    """Forward AIS with the paper's transitions on 40 held-out points: the mean error is within three standard
    errors of zero and small, and each example's error is within its own spread over chains."""
    model = PPCA()
    _, x = model.simulate(40, seed=1)
    obs = da.observation_model(model, info(), variance=model.var)
    logp, logw, stats = da.ais_log_prob(obs.log_prob, x, 2, da.sigmoid_schedule(1000), chains=16, generator=gen(2))
    err = logp - model.exact_log_prob(x)
    se = err.std() / math.sqrt(len(err))
    assert abs(err.mean()) < 3 * se and abs(err.mean()) < 0.15, (err.mean(), se)
    spread = logw.std(1) / math.sqrt(16)  # the standard error of one example's log-mean-exp, roughly
    assert (err.abs() < 4 * spread + 0.05).float().mean() >= 0.95
    assert 0.5 < stats.acceptance < 0.95


def test_bdmc_bounds_sandwich_the_exact_value_and_the_gap_shrinks_with_more_temperatures():
    """On data simulated from the model, forward AIS is below and reverse AIS (from the exact z) above the exact
    log p(x) on average, and their gap falls as the schedule lengthens."""
    model = PPCA()
    z, x = model.simulate(40, seed=3)
    exact = model.exact_log_prob(x)
    obs = da.observation_model(model, info(), variance=model.var)
    gaps = []
    for T in (20, 100, 1000):
        betas = da.sigmoid_schedule(T)
        lower = da.ais_log_prob(obs.log_prob, x, 2, betas, chains=16, generator=gen(T))[0]
        upper = da.reverse_ais_log_prob(obs.log_prob, x, z, betas, generator=gen(T + 1))[0]
        for bound, sign in ((lower, 1), (upper, -1)):
            e = sign * (bound - exact)  # ≤ 0 on average for a valid bound
            assert e.mean() < 2 * e.std() / math.sqrt(len(e)), (T, sign, e.mean())
        gaps.append((upper - lower).mean().item())
    assert gaps[0] > 5 and gaps[0] > 3 * gaps[1] and gaps[1] > 2 * gaps[2] and gaps[2] < 0.5, gaps


def test_bernoulli_observation_recovers_log_likelihood_by_quadrature():
    """A sigmoid decoder x_i ~ Bernoulli(σ(w_i z + b_i)) with a 1-D latent: log p(x) by trapezoidal quadrature
    over z on [−10, 10] (float64); AIS on binary data uses the Bernoulli path and recovers it."""
    g = gen(4)
    w, b = 3 * torch.randn(8, generator=g), torch.randn(8, generator=g)

    class Sigmoid(torch.nn.Module):
        latent_dim = 1

        def decode_mean(self, z):
            return torch.sigmoid(z * w + b)

    zs = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    a = zs[:, None] * w.double() + b.double()
    x = torch.bernoulli(torch.sigmoid(torch.randn(30, 1, generator=g) * w + b), generator=g)
    loglik = x.double() @ F.logsigmoid(a).T + (1 - x.double()) @ F.logsigmoid(-a).T  # [30, grid]
    prior = -0.5 * zs**2 - 0.5 * math.log(2 * math.pi)
    exact = torch.logsumexp(loglik + prior + math.log(zs[1] - zs[0]), 1)
    obs = da.observation_model(Sigmoid(), info("binary", 8), variance=None)
    assert obs.kind == "bernoulli"
    logp, logw, _ = da.ais_log_prob(obs.log_prob, x, 1, da.sigmoid_schedule(500), chains=16, generator=gen(5))
    err = logp - exact
    assert abs(err.mean()) < max(3 * err.std() / math.sqrt(len(err)), 0.02) and abs(err.mean()) < 0.1, err.mean()
    simulated = obs.sample(torch.zeros(20000, 1), gen(6))  # draws at z = 0 have the decoder's means there
    assert torch.allclose(simulated.mean(0), torch.sigmoid(b), atol=0.015)


def test_records_name_their_estimators_and_the_observation_model():
    model = PPCA()
    _, x = model.simulate(30, seed=7)
    settings = {"temperatures": 200, "chains": 8, "examples": 20, "bdmc_examples": 20, "observation_variance": 0.1}
    recs = {r.metric: r for r in da.decoder_ais_records(model, x, info(), settings)}
    assert set(recs) == {"nll_ais", "ais_chain_std", "bdmc_nll_forward", "bdmc_nll_reverse", "bdmc_gap"}
    assert all(r.unit == "nats" for r in recs.values())
    assert [recs[m].estimator for m in ("nll_ais", "bdmc_nll_forward", "bdmc_nll_reverse")] == \
        ["upper bound", "upper bound", "lower bound"]
    assert recs["nll_ais"].n == 20 and recs["nll_ais"].std_error > 0
    assert 0 < recs["nll_ais"].value + model.exact_log_prob(x[:20]).mean().item() < 1.5  # above the exact NLL, near it
    assert recs["nll_ais"].settings["observation_variance"] == 0.1
    assert "not of the generator itself" in recs["nll_ais"].settings["observation"]
    assert recs["bdmc_gap"].value == pytest.approx(recs["bdmc_nll_forward"].value - recs["bdmc_nll_reverse"].value)
    # the model's own p(x | z) is preferred (σ² unused): the same numbers as the same Gaussian built here; BDMC
    # simulates with the model's observation_sample (seeded, the global random state left as it was)
    state = torch.random.get_rng_state()
    own = {r.metric: r for r in da.decoder_ais_records(OwnObservationPPCA(), x, info(), {**settings, "observation_variance": None})}
    assert torch.equal(torch.random.get_rng_state(), state)
    assert "own p(x | z)" in own["nll_ais"].settings["observation"]
    for m in ("nll_ais", "ais_chain_std"):
        assert own[m].value == pytest.approx(recs[m].value, abs=1e-3)
    assert 0 < own["bdmc_gap"].value < 1.5 and own["bdmc_gap"].n == 20
    OwnObservationPPCA.observation_sample, sample = None, OwnObservationPPCA.observation_sample
    try:  # without a way to simulate x ~ p(x | z), BDMC says why it is missing
        skipped = da.decoder_ais_records(OwnObservationPPCA(), x, info(), {**settings, "observation_variance": None})[-1]
    finally:
        OwnObservationPPCA.observation_sample = sample
    assert skipped.metric == "bdmc_gap" and math.isnan(skipped.value) and "observation_sample" in skipped.settings["skipped"]
    with pytest.raises(ConfigError, match="observation_variance"):
        da.decoder_ais_records(model, x, info(), {**settings, "observation_variance": None})
    model.prior_log_prob = lambda z: torch.distributions.Normal(0.0, 2.0).log_prob(z).sum(1)
    with pytest.raises(ModelContractError, match="prior"):  # AIS starts at N(0, I) draws: another prior is refused
        da.decoder_ais_records(model, x, info(), settings)
    with pytest.raises(ConfigError, match="valid: temperatures"):
        da.decoder_ais_records(model, x, info(), {"temperature": 10, "observation_variance": 0.1})
    with pytest.raises(GenbenchError, match="binary or continuous"):
        da.observation_model(model, info("discrete", 5, levels=256), 0.1)


def test_evaluate_runs_decoder_ais_on_a_gan_only_when_asked():
    dm = build_datamodule({"name": "gmm2d", "mixture": "grid25", "train_size": 10, "val_size": 0, "test_size": 200})
    gan = build_model({"name": "gan", "decoder_hidden": [32, 32]}, dm.info)
    assert offers(gan, "decoder") and not offers(build_model({"name": "true_mixture"}, dm.info), "decoder")
    tiny = {"temperatures": 10, "chains": 2, "leapfrog_steps": 2, "examples": 5, "bdmc_examples": 5,
            "observation_variance": 0.0025}
    modes = {"ali_samples": 500, "veegan_samples": 500}
    with_ais = {r.metric: r for r in evaluate(gan, dm, {"decoder_ais": tiny, "modes": modes})[0]}
    assert {"nll_ais", "bdmc_gap", "mixture_entropy"} <= set(with_ais)
    assert with_ais["nll_ais"].data == "gmm2d/grid25" and with_ais["nll_ais"].split == "test"
    assert "nll_ais" not in {r.metric for r in evaluate(gan, dm, {"decoder_ais": None, "modes": modes})[0]}


def test_the_tables_runs_compose_with_valid_settings_at_every_scale():
    """Every planned run of configs/table/decoder-ais.yaml composes, names only known decoder_ais keys, and states
    σ² wherever a generator without its own observation model is scored on continuous data."""
    spec = tables.load_table("decoder-ais")
    for scale in spec["scales"]:
        for run in tables.plan(spec, scale):
            cfg = tables.compose(run.overrides)
            settings = da._settings(cfg["evaluation"]["decoder_ais"])
            if cfg["model"]["name"] in ("gan", "ali") and cfg["data"]["name"] == "gmm2d":
                assert settings["observation_variance"] == 0.0025, (scale, run.run_id)
