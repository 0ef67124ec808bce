"""Exact log Z, AIS and RAISE for Bernoulli–Bernoulli RBMs against ground truth on small models.

Every estimator is checked against an independent oracle: brute force over all
(v, h), scikit-learn's free energy, exact log Z, and — for the unbiasedness of
the AIS and RAISE weights — the exact distribution of the annealing chain,
computed by multiplying its transition matrices over all states.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench.evaluation import ais as A
from genbench.evaluation.ais import (ais_log_prob, ais_log_z, base_rate_biases, linear_schedule, raise_log_prob,
                                     schedule, sm_schedule)
from genbench.nn.rbm import exact_log_prob, exact_log_z, free_energy


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread avoids OpenMP hand-offs (and stalls when other jobs share the 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_rbm(seed, V, H, scale, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(H, V, generator=g, dtype=torch.float64) * scale
    b = torch.randn(V, generator=g, dtype=torch.float64) * 0.5 - 0.5
    c = torch.randn(H, generator=g, dtype=torch.float64) * 0.5 - 0.5
    return W.to(dtype), b.to(dtype), c.to(dtype)


def all_states(n, dtype=torch.float64):
    """All 2^n binary vectors, [2^n, n] (bit i of the row index is unit i)."""
    return ((torch.arange(1 << n)[:, None] >> torch.arange(n)) & 1).to(dtype)


def sample_exact(W, b, c, n, seed):
    """Exact samples of a small RBM: h from its enumerated marginal, then v | h."""
    W, b, c = W.double(), b.double(), c.double()
    g = torch.Generator().manual_seed(seed)
    hs = all_states(W.shape[0])
    log_ph = hs @ c + torch.nn.functional.softplus(hs @ W + b).sum(1)
    i = torch.multinomial(torch.softmax(log_ph, 0), n, replacement=True, generator=g)
    return (torch.rand(n, W.shape[1], generator=g, dtype=torch.float64) < torch.sigmoid(hs[i] @ W + b)).double()


def log_bernoulli(x, logits):
    """log Π Bern(x; σ(logits)) summed over the last axis, for every pair (row of logits, row of x)."""
    return x @ logits.T - torch.nn.functional.softplus(logits).sum(-1)  # [n_x, n_logits]


def forward_chain_marginal(W, b, c, base_b, betas):
    """Exact law of the annealing chain's last state: p_A, then T_{β_1} … T_{β_{K−1}} (block Gibbs)."""
    W, b, c, base_b = (t.double() for t in (W, b, c, base_b))
    vs, hs = all_states(W.shape[1]), all_states(W.shape[0])
    P = torch.softmax(vs @ base_b, 0)
    for beta in list(betas)[1:-1]:
        h_given_v = torch.exp(log_bernoulli(hs, beta * (vs @ W.T + c))).T  # [v, h]
        v_given_h = torch.exp(log_bernoulli(vs, beta * (hs @ W + b) + (1 - beta) * base_b)).T  # [h, v']
        P = P @ h_given_v @ v_given_h
    return vs, P


# --------------------------------------------------------------------------- exact


@pytest.mark.parametrize("H,V", [(6, 5), (5, 6)])
def test_exact_log_z_both_layers_and_brute_force(H, V):
    W, b, c = make_rbm(0, V, H, 1.5, torch.float64)
    vs, hs = all_states(V), all_states(H)
    # −E(v, h) = bᵀv + cᵀh + hᵀWv over all 2^(V+H) pairs
    neg_e = (vs @ b)[:, None] + (hs @ c)[None, :] + vs @ W.T @ hs.T
    brute = torch.logsumexp(neg_e.flatten(), 0).item()
    by_h = exact_log_z(W, b, c, layer="hidden")
    by_v = exact_log_z(W, b, c, layer="visible", chunk=7)  # several chunks
    assert by_h == pytest.approx(brute, abs=1e-10)
    assert by_v == pytest.approx(brute, abs=1e-10)
    assert exact_log_z(W, b, c) == pytest.approx(brute, abs=1e-10)
    assert exact_log_z(W.float(), b.float(), c.float()) == pytest.approx(brute, abs=1e-5)


def test_exact_log_probs_sum_to_one():
    W, b, c = make_rbm(1, 9, 7, 2.0)
    lp = exact_log_prob(all_states(9), W, b, c)
    assert lp.dtype == torch.float64
    assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-9)
    # bool input and an explicit log Z give the same numbers
    v = all_states(9)[:5].bool()
    assert torch.allclose(exact_log_prob(v, W, b, c, exact_log_z(W, b, c)), lp[:5])


def test_free_energy_matches_sklearn():
    """scikit-learn's ``_free_energy`` is −bᵀv − Σ logaddexp(0, Wv + c): the same sign as ours (−log Σ_h e^{−E})."""
    from sklearn.neural_network import BernoulliRBM

    W, b, c = make_rbm(2, 30, 12, 3.0, torch.float64)  # large weights: softplus far beyond 20
    sk = BernoulliRBM(n_components=12)
    sk.components_, sk.intercept_hidden_, sk.intercept_visible_ = W.numpy(), c.numpy(), b.numpy()
    v = (torch.rand(50, 30, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    np.testing.assert_allclose(free_energy(v, W, b, c).numpy(), sk._free_energy(v.numpy()), rtol=1e-12, atol=1e-10)
    f32 = free_energy(v.float(), W.float(), b.float(), c.float())
    np.testing.assert_allclose(f32.numpy(), sk._free_energy(v.numpy()), rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- schedules and base model


def test_sm_schedule_is_matlabs():
    s = sm_schedule()
    assert len(s) == 14503 and s.dtype == torch.float64
    assert s[0].item() == 0.0 and s[-1].item() == 1.0
    assert bool((s.diff() >= 0).all())
    assert int((s == 0.5).sum()) == 2 and int((s == 0.9).sum()) == 2  # the concatenation repeats them
    assert s[1].item() == pytest.approx(1e-3) and s[502].item() == pytest.approx(0.5001)
    assert s[-2].item() == pytest.approx(1 - 1e-5)


@pytest.mark.parametrize("n", [4, 10, 100, 2000])
def test_smoke_schedules(n):
    for s in (schedule(n), linear_schedule(n)):
        assert len(s) == n and s[0].item() == 0.0 and s[-1].item() == 1.0
        assert bool((s.diff() > 0).all())
    s = schedule(n)
    assert 0.5 in s.tolist() and 0.9 in s.tolist()  # the three segments' boundaries
    if n >= 100:  # finest spacing last, as in S&M
        assert s.diff()[-1] < s.diff()[0]


def test_base_rate_biases():
    m = torch.tensor([0.0, 0.2, 0.5, 1.0])
    p = torch.sigmoid(base_rate_biases(m, eps=0.05).double())
    assert torch.allclose(p[:3], (m[:3].double() + 0.05) / 1.05)  # S&M base_rate.m smoothing
    assert torch.isfinite(base_rate_biases(m)).all()
    data = (torch.rand(400, 4, generator=torch.Generator().manual_seed(0)) < m).float()
    assert torch.allclose(base_rate_biases(data), base_rate_biases(data.mean(0)))


# --------------------------------------------------------------------------- AIS


CASES = [  # (seed, V, H, weight scale, base model, dtype)
    (0, 20, 10, 2.0, "base-rate", torch.float32),
    (1, 40, 15, 1.0, "uniform", torch.float32),
    (2, 64, 16, 0.8, "base-rate", torch.float64),
    (3, 30, 12, 1.5, "uniform", torch.float32),
]


def _case(seed, V, H, scale, base, dtype):
    W, b, c = make_rbm(seed, V, H, scale, dtype)
    base_b = None
    if base == "base-rate":
        base_b = base_rate_biases(sample_exact(W, b, c, 1000, seed + 100).mean(0)).to(dtype)
    return W, b, c, base_b


@pytest.mark.parametrize("case", CASES, ids=lambda cs: f"{cs[1]}x{cs[2]}-s{cs[3]}-{cs[4]}-{str(cs[5])[6:]}")
def test_ais_matches_exact_log_z(case):
    W, b, c, base_b = _case(*case)
    exact = exact_log_z(W, b, c)
    res = ais_log_z(W, b, c, base_b, schedule(3000), n_runs=100, generator=torch.Generator().manual_seed(7))
    assert res.log_z_low <= exact <= res.log_z_high
    assert abs(res.log_z - exact) < 0.3  # observed sd 0.01–0.05 over seeds
    assert res.log_z_low < res.log_z < res.log_z_high and res.log_weights.shape == (100,)
    assert res.log_z_base == pytest.approx(A.base_log_z(torch.zeros(case[1]) if base_b is None else base_b, case[2]))
    assert res.std_error > 0 and res.settings["n_betas"] == 3000


@pytest.mark.parametrize("case", [CASES[0], CASES[1]], ids=["base-rate", "uniform"])
def test_ais_check_catches_wrong_transitions(case):
    """DsysDML/rbms issue #6: transitions sampled with the target's parameters instead of the
    intermediate ones. The same check as above must fail for it (the test has teeth)."""
    W, b, c, base_b = _case(*case)
    exact = exact_log_z(W, b, c)
    bad = ais_log_z(W, b, c, base_b, schedule(3000), n_runs=100, generator=torch.Generator().manual_seed(7),
                    _debug_wrong_beta=True)
    assert not (bad.log_z_low <= exact <= bad.log_z_high)
    assert abs(bad.log_z - exact) > 0.3


def test_ais_check_catches_wrong_base_log_z(monkeypatch):
    """The other classic bug: log Z_A without the H log 2 of the base model's hidden units."""
    W, b, c, base_b = _case(*CASES[0])
    exact = exact_log_z(W, b, c)
    monkeypatch.setattr(A, "base_log_z", lambda bb, H: torch.nn.functional.softplus(bb.double()).sum().item())
    bad = ais_log_z(W, b, c, base_b, schedule(3000), n_runs=100, generator=torch.Generator().manual_seed(7))
    assert not (bad.log_z_low <= exact <= bad.log_z_high)


def test_ais_weights_are_unbiased_for_the_ratio_of_partition_functions():
    """E[w] = Z / Z_A exactly, even with 4 temperatures: checked with 200k runs on a 5×3 RBM."""
    W, b, c = make_rbm(4, 5, 3, 2.0, torch.float64)
    base_b = torch.tensor([0.5, -1.0, 0.0, 1.0, -0.5], dtype=torch.float64)
    res = ais_log_z(W, b, c, base_b, [0.0, 0.3, 0.7, 1.0], n_runs=200_000, generator=torch.Generator().manual_seed(3))
    assert abs(res.log_z - exact_log_z(W, b, c)) < 5 * res.std_error + 1e-3
    assert res.std_error < 0.02  # the check is sharp
    # and the base model's normaliser is the one the weights assume (W = 0: AIS is exact, w ≡ Z/Z_A)
    z = ais_log_z(torch.zeros_like(W), base_b, torch.zeros_like(c), base_b, [0.0, 0.5, 1.0], n_runs=10)
    assert z.log_z == pytest.approx(exact_log_z(torch.zeros_like(W), base_b, torch.zeros_like(c)), abs=1e-12)


def test_ais_log_prob_and_interval():
    W, b, c, base_b = _case(*CASES[3])
    res = ais_log_z(W, b, c, base_b, schedule(1000), n_runs=50, generator=torch.Generator().manual_seed(1))
    v = sample_exact(W, b, c, 20, 5).float()
    lp, (lo, hi) = ais_log_prob(v, W, b, c, res)
    assert lp.shape == (20,) and bool((lo <= lp).all()) and bool((lp <= hi).all())
    assert torch.allclose(lp, exact_log_prob(v, W, b, c) + exact_log_z(W, b, c) - res.log_z)


# --------------------------------------------------------------------------- RAISE


def test_raise_weights_are_unbiased_for_the_annealing_model():
    """E[ŵ(v)] = p_fwd(v), the law of the AIS chain's last state, for every v of a 4×3 RBM.

    With 3 temperatures p_fwd is far from the RBM's p, so an estimator of p (or of
    anything else) fails; 20k runs per v make the check sharp.
    """
    W, b, c = make_rbm(5, 4, 3, 2.5, torch.float64)
    base_b = torch.tensor([0.3, -0.7, 1.0, 0.0], dtype=torch.float64)
    betas = [0.0, 0.4, 0.8, 1.0]
    vs, p_fwd = forward_chain_marginal(W, b, c, base_b, betas)
    assert p_fwd.sum().item() == pytest.approx(1.0)
    exact = exact_log_prob(vs, W, b, c)
    assert (p_fwd.log() - exact).abs().max() > 0.2  # p_fwd ≠ p: the test can tell them apart
    lp, se = raise_log_prob(vs, W, b, c, base_b, betas, n_runs=20_000, generator=torch.Generator().manual_seed(0))
    assert lp.shape == se.shape == (16,)
    assert bool(((lp - p_fwd.log()).abs() < 5 * se + 1e-3).all()), (lp - p_fwd.log(), se)
    assert se.max() < 0.05


def test_raise_matches_exact_with_a_fine_schedule():
    W, b, c, base_b = _case(*CASES[3])
    v = sample_exact(W, b, c, 40, 11)
    lp, se = raise_log_prob(v, W, b, c, base_b, schedule(2000), n_runs=10, generator=torch.Generator().manual_seed(2))
    d = lp - exact_log_prob(v, W, b, c)
    assert abs(d.mean().item()) < 0.1 and d.abs().max() < 1.0  # 10 runs: per-example noise ~0.2


def test_raise_split_into_groups_keeps_each_example_with_its_own_chains():
    """``max_chains`` runs the examples in groups (here 6 groups of ≤ 3, the last one short): every example's
    estimate must still be unbiased for its own p_fwd(v), which a group that mixed up examples, chains or free
    energies would miss (p_fwd varies by 3 nats over the 16 states)."""
    W, b, c = make_rbm(6, 4, 3, 2.5, torch.float64)
    base_b = torch.tensor([0.3, -0.7, 1.0, 0.0], dtype=torch.float64)
    betas = [0.0, 0.5, 1.0]
    vs, p_fwd = forward_chain_marginal(W, b, c, base_b, betas)
    assert p_fwd.log().max() - p_fwd.log().min() > 3
    lp, se = raise_log_prob(vs, W, b, c, base_b, betas, n_runs=4000, generator=torch.Generator().manual_seed(1),
                            max_chains=12_000)
    assert bool(((lp - p_fwd.log()).abs() < 5 * se + 1e-3).all()), (lp - p_fwd.log(), se)
    assert se.max() < 0.05


def test_sandwich_raise_below_exact_below_ais():
    """On a hard RBM with a short schedule (30 β), averaged over test data drawn from the model:
    RAISE ≤ exact log p ≤ AIS, each beyond its noise (E log Ẑ ≤ log Z; E log p̂_RAISE ≤ E log p_fwd ≤ E log p)."""
    W, b, c = make_rbm(1, 20, 10, 4.0)
    data = sample_exact(W, b, c, 200, 9)
    exact = exact_log_prob(data, W, b, c)
    base_b = base_rate_biases(data.mean(0)).float()
    betas = schedule(30)
    g = torch.Generator().manual_seed(5)
    lp_r, _ = raise_log_prob(data, W, b, c, base_b, betas, n_runs=10, generator=g)
    d = lp_r - exact
    assert d.mean() + 3 * d.std() / math.sqrt(len(d)) < 0  # conservative, beyond noise
    assert d.mean() > -3  # and not vacuous
    # AIS: 20 independent estimates of log Z with 100 runs each, in one batch of 2000 chains
    res = ais_log_z(W, b, c, base_b, betas, n_runs=2000, generator=g)
    log_z_hat = A.log_mean_exp(res.log_weights.view(20, 100), dim=1)[0] + res.log_z_base
    lz = exact_log_z(W, b, c)
    assert log_z_hat.mean() - 3 * log_z_hat.std() / math.sqrt(20) < lz  # AIS log p is optimistic on average
    lp_ais = -free_energy(data, W.double(), b.double(), c.double()) - log_z_hat.mean()
    assert lp_r.mean() < exact.mean() < lp_ais.mean() + 3 * log_z_hat.std() / math.sqrt(20)


