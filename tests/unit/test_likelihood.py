"""The likelihood evaluator and the data-space conversions against ground truth."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.core.errors import GenbenchError
from genbench.core.transforms import bits_per_dim, dequantize, logit_transform, nll_in_pixel_units, rescale
from genbench.data.base import DataInfo, DataSpace
from genbench.data.gmm2d import grid25, ring8
from genbench.evaluation.ais import ais_log_z, base_rate_biases, raise_log_prob, sm_schedule
from genbench.evaluation.likelihood import likelihood_records as likelihood
from genbench.nn.rbm import exact_log_prob, exact_log_z, free_energy, noisy_parameters

# Dinh 2018, Table 5.1: mean log-likelihood (nats, of data rescaled with noise U(0, δ)) → bits/dim.
TABLE_5_1 = [  # (dataset, log-likelihood, D, δ, published bits/dim)
    ("MNIST", 1980.50, 784, 1 / 256, 4.36),
    ("TFD", 5514.71, 2304, 1 / 256, 4.55),
    ("SVHN", 11496.55, 3072, 1 / 256, 2.60),
    ("CIFAR-10", 5371.78, 3072, 2 / 256, 4.48),
]


@pytest.mark.parametrize("name, ll, dim, delta, published", TABLE_5_1)
def test_bits_per_dim_reproduces_dinh_table_5_1(name, ll, dim, delta, published):
    nll_pixels = nll_in_pixel_units(-ll, dim, scale=delta)
    assert round(bits_per_dim(nll_pixels, dim), 2) == published


def test_logit_transform_log_det_matches_autograd():
    x = torch.rand(3, 5, dtype=torch.float64)
    _, logdet = logit_transform(x, alpha=0.05)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: logit_transform(v[None], 0.05)[0][0], x[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac).logabsdet)


def test_rescale_log_det():
    x = torch.rand(4, 2, 3)
    y, logdet = rescale(x, 1 / 256)
    assert torch.allclose(y, x / 256) and torch.allclose(logdet, torch.full((4,), 6 * math.log(1 / 256)))


class UniformPixels(torch.nn.Module):
    """The uniform density on [0, 256)^D: its NLL is exactly D ln 256, i.e. 8 bits/dim."""

    def log_prob(self, x):
        inside = ((x >= 0) & (x < 256)).flatten(1).all(1)
        return torch.where(inside, -x[0].numel() * math.log(256.0), -math.inf)


class Bernoulli(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def log_prob(self, x):
        x = x.flatten(1)
        return (x * math.log(self.p) + (1 - x) * math.log(1 - self.p)).sum(1)


class Bounded(Bernoulli):
    """A model offering only a lower bound on log p (here: the exact value minus k-dependent slack)."""

    def log_prob_bound(self, x, k):
        return Bernoulli.log_prob(self, x) - 1.0 / k

    log_prob = None


def info(kind, shape, levels=None, mixture=None):
    return DataInfo("test", f"test/{kind}", DataSpace(kind, shape, levels), {}, "x", mixture=mixture)


def by_metric(records):
    return {r.metric: r for r in records}


def test_dequantized_8bit_nll_is_in_pixel_units_and_labelled_an_upper_bound():
    x = torch.randint(0, 256, (50, 1, 4, 4)).float()
    r = by_metric(likelihood(UniformPixels(), x, info("discrete", (1, 4, 4), 256)))
    assert r["nll"].value == pytest.approx(16 * math.log(256))
    assert r["bits_per_dim"].value == pytest.approx(8.0)
    assert r["nll"].estimator == "upper bound" and "dequantization" in r["nll"].settings


def test_binary_nll_is_exact_with_its_standard_error():
    x = torch.bernoulli(torch.full((400, 10), 0.3))
    r = by_metric(likelihood(Bernoulli(0.3), x, info("binary", (10,))))
    per_example = -(x * math.log(0.3) + (1 - x) * math.log(0.7)).sum(1)
    assert r["nll"].value == pytest.approx(per_example.mean().item())
    assert r["nll"].std_error == pytest.approx(per_example.std().item() / 20, rel=1e-6)
    assert r["bits_per_dim"].value == pytest.approx(per_example.mean().item() / (10 * math.log(2)))
    assert r["nll"].estimator == "exact"


def test_a_bound_is_never_reported_as_exact():
    x = torch.bernoulli(torch.full((100, 10), 0.3))
    r = by_metric(likelihood(Bounded(0.3), x, info("binary", (10,)), settings={"bound_k": 10}))
    assert r["nll"].estimator == "upper bound" and r["nll"].settings["k"] == 10
    exact = by_metric(likelihood(Bernoulli(0.3), x, info("binary", (10,))))["nll"].value
    assert r["nll"].value == pytest.approx(exact + 0.1)


@pytest.mark.parametrize("make", [grid25, ring8])
def test_true_mixture_nll_matches_its_monte_carlo_entropy(make):
    mixture = make()
    x = mixture.sample(20_000, torch.Generator().manual_seed(5))

    class TrueModel(torch.nn.Module):
        def log_prob(self, v):
            return mixture.log_prob(v)

    r = by_metric(likelihood(TrueModel(), x, info("continuous", (2,), mixture=mixture)))
    assert "bits_per_dim" not in r
    nll, h = r["nll"], r["mixture_entropy"]
    assert abs(nll.value - h.value) < 3 * math.hypot(nll.std_error, h.std_error)
    # and the entropy against its closed form for well-separated equal-weight isotropic components
    std = mixture.covariances[0, 0, 0].sqrt().item()
    closed = math.log(mixture.n_components) + math.log(2 * math.pi * math.e * std**2)
    assert h.value == pytest.approx(closed, abs=4 * h.std_error)


def test_dequantize_adds_uniform_noise_below_one():
    x = torch.randint(0, 256, (1000, 3)).float()
    u = dequantize(x) - x
    assert (u >= 0).all() and (u < 1).all() and abs(u.mean().item() - 0.5) < 0.03


class Tilted(torch.nn.Module):
    """A density on [0, 256)^D that depends on where in its pixel a point falls: the NLL sees the noise."""

    def log_prob(self, x):
        return -0.01 * x.flatten(1).sum(1)


def test_dequantization_noise_is_seeded_by_the_evaluation_settings():
    """Scoring the same model twice gives the same number, from the noise of ``seed`` (null: 0), not torch's RNG."""
    x = torch.randint(0, 256, (50, 1, 4, 4)).float()
    data = info("discrete", (1, 4, 4), 256)
    state = torch.get_rng_state()
    first, again = (by_metric(likelihood(Tilted(), x, data))["nll"] for _ in range(2))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert first.value == again.value and "seed 0" in first.settings["dequantization"]
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(7))
    seeded = by_metric(likelihood(Tilted(), x, data, settings={"seed": 7}))["nll"]
    assert seeded.value == pytest.approx(Tilted().log_prob(x + u).double().neg().mean().item(), rel=1e-12)
    assert seeded.value != first.value


class SmallRBM(torch.nn.Module):
    """What the evaluator needs of an energy model; exact log Z switched off to force AIS."""

    exact_partition_feasible = False

    def __init__(self, seed=0, hidden=12, visible=30):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(hidden, visible, generator=g) * 0.5
        self.b = torch.randn(visible, generator=g) * 0.5 - 0.5
        self.c = torch.randn(hidden, generator=g) * 0.5

    def free_energy(self, v, params=None):
        return free_energy(v, *(params or (self.W, self.b, self.c)))

    def log_partition_exact(self, params=None):
        return exact_log_z(*(params or (self.W, self.b, self.c)))


class CoupledRBM(SmallRBM):
    """An RBM plus a visible–visible coupling: F(v) = F_RBM(v) − (a/V)·(Σ_i v_i − V/2)², not a Bernoulli–Bernoulli RBM."""

    def __init__(self, a=2.0, **kw):
        super().__init__(**kw)
        self.a = a

    def extra(self, v):
        v = v.flatten(1).double()
        return self.a / v.shape[1] * (v.sum(1) - v.shape[1] / 2) ** 2

    def free_energy(self, v, params=None):
        return super().free_energy(v, params) - self.extra(v)

    def log_partition_exact(self, params=None):  # its own enumeration: every visible state
        return torch.logsumexp(-self.free_energy(all_binary(self.W.shape[1]), params), 0).item()


def all_binary(n):
    return ((torch.arange(1 << n)[:, None] >> torch.arange(n)) & 1).double()


def brute_force_nll(model, x, W, b, c):
    """Mean −log p(x) of a CoupledRBM from its joint over every (v, h): −E(v, h) = bᵀv + cᵀh + hᵀWv + extra(v)."""
    W, b, c = W.double(), b.double(), c.double()
    vs, hs = all_binary(W.shape[1]), all_binary(W.shape[0])
    log_z = torch.logsumexp(((vs @ b + model.extra(vs))[:, None] + hs @ c + vs @ W.T @ hs.T).flatten(), 0)
    x = x.double()
    return -(torch.logsumexp((x @ b + model.extra(x))[:, None] + hs @ c + x @ W.T @ hs.T, 1) - log_z).mean().item()


def test_an_energy_model_is_scored_with_its_own_free_energy_and_log_z():
    """A model whose free energy is not the RBM's (W, b, c) one is scored by its own, also under noise draws."""
    model = CoupledRBM(hidden=6, visible=10)
    model.exact_partition_feasible = True
    x = torch.bernoulli(torch.full((300, 10), 0.4), generator=torch.Generator().manual_seed(3))
    r = by_metric(likelihood(model, x, info("binary", (10,))))["nll"]
    truth = brute_force_nll(model, x, model.W, model.b, model.c)
    assert r.estimator == "exact" and r.value == pytest.approx(truth, rel=1e-10)
    assert abs(truth + exact_log_prob(x, model.W, model.b, model.c).mean().item()) > 0.2  # the RBM alone: 0.27 off
    noise = {"sigma_w": 0.5, "sigma_b": 0.2, "draws": 3, "seed": 4}
    noisy = by_metric(likelihood(model, x, info("binary", (10,)), settings={"parameter_noise": noise}))["nll"]
    gen = torch.Generator().manual_seed(4)
    draws = [noisy_parameters(model.W, model.b, model.c, 0.5, 0.2, gen) for _ in range(3)]
    assert noisy.value == pytest.approx(sum(brute_force_nll(model, x, *d) for d in draws) / 3, rel=1e-10)


@pytest.mark.parametrize("settings", [{}, {"validate_ais": True}, {"raise": {"runs": 2, "examples": 5}}],
                         ids=["ais", "validate_ais", "raise"])
def test_ais_and_raise_refuse_an_energy_model_that_is_not_the_rbm(settings):
    """They anneal to the RBM (W, b, c): for another free energy they would estimate another log Z, silently."""
    model = CoupledRBM(hidden=6, visible=10)
    model.exact_partition_feasible = not (settings == {})
    x = torch.bernoulli(torch.full((20, 10), 0.4), generator=torch.Generator().manual_seed(3))
    with pytest.raises(GenbenchError, match="free_energy differs"):
        likelihood(model, x, info("binary", (10,)), settings={"ais": {"betas": 10, "runs": 2}, **settings})
    model.a = 0.0  # the same class with the coupling off is the RBM: accepted
    assert by_metric(likelihood(model, x, info("binary", (10,)), settings={"ais": {"betas": 10, "runs": 2}, **settings}))


def test_raise_runs_on_the_ais_schedule_by_default():
    """With ``raise.betas`` unset RAISE anneals along the very schedule of the AIS it is paired with (here S&M's
    14,503 temperatures, repeats included), reproduced by calling AIS then RAISE on the same generator."""
    rbm = SmallRBM(hidden=4, visible=8)
    x = torch.bernoulli(torch.full((30, 8), 0.4), generator=torch.Generator().manual_seed(1))
    data = DataInfo("test", "test/binary", DataSpace("binary", (8,)), {}, "x", train_mean=x.mean(0))
    settings = {"ais": {"betas": "sm2008", "runs": 2, "seed": 3}, "raise": {"runs": 2, "examples": 3}}
    r = by_metric(likelihood(rbm, x, data, settings=settings))["nll_raise"]
    assert r.settings["schedule"] == "sm2008" and r.settings["n_betas"] == 14503
    gen = torch.Generator().manual_seed(3)
    base_b = base_rate_biases(x.mean(0))
    ais_log_z(rbm.W, rbm.b, rbm.c, base_b, sm_schedule(), n_runs=2, generator=gen)
    logp, _ = raise_log_prob(x[:3], rbm.W, rbm.b, rbm.c, base_b, sm_schedule(), n_runs=2, generator=gen)
    assert r.value == pytest.approx(-logp.mean().item(), rel=1e-12)


def test_energy_models_get_ais_with_its_interval_and_raise_beside():
    rbm = SmallRBM()
    x = torch.bernoulli(torch.full((200, 30), 0.4), generator=torch.Generator().manual_seed(1))
    settings = {"ais": {"betas": 2000, "runs": 100}, "raise": {"runs": 5, "examples": 50, "betas": 1000}}
    r = by_metric(likelihood(rbm, x, info("binary", (30,)), settings=settings))
    exact = -exact_log_prob(x, rbm.W, rbm.b, rbm.c).mean().item()
    assert r["nll"].estimator == "estimate" and "AIS" in r["nll"].settings["log_z"]
    assert r["nll"].interval[0] <= exact <= r["nll"].interval[1] and abs(r["nll"].value - exact) < 0.2
    assert r["log_z"].interval[0] <= r["log_z"].value <= r["log_z"].interval[1]
    assert r["nll_raise"].estimator == "estimate"  # conservative only for data drawn from the model
    assert r["nll_raise_subset"].n == r["nll_raise"].n == 50
    assert r["nll_raise_gap"].value == pytest.approx(r["nll_raise"].value - r["nll_raise_subset"].value, abs=1e-9)


def test_expected_ais_averages_over_noise_draws_and_is_worse_than_clean():
    rbm = SmallRBM(hidden=10)
    rbm.exact_partition_feasible = True  # exact log Z per draw: the only randomness is the noise
    x = torch.bernoulli(torch.full((300, 30), 0.4), generator=torch.Generator().manual_seed(2))
    clean = by_metric(likelihood(rbm, x, info("binary", (30,))))["nll"]
    noisy = by_metric(likelihood(rbm, x, info("binary", (30,)),
                                 settings={"parameter_noise": {"sigma_w": 0.5, "sigma_b": 0.0, "draws": 4}}))["nll"]
    assert clean.estimator == "exact" and noisy.estimator == "estimate"
    assert noisy.settings["parameter_noise"]["draws"] == 4
    # ground truth: the mean over the same four noisy RBMs of their exact NLLs
    gen = torch.Generator().manual_seed(0)
    draws = [noisy_parameters(rbm.W, rbm.b, rbm.c, 0.5, 0.0, gen) for _ in range(4)]
    expected = sum(-exact_log_prob(x, *d).mean().item() for d in draws) / 4
    assert noisy.value == pytest.approx(expected, rel=1e-9)
    assert noisy.value != pytest.approx(clean.value, abs=0.01)
