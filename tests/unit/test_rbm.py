"""The RBM and its physical-constraint simulator against brute force and their documented behaviour."""

from __future__ import annotations

import inspect
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from scipy.stats import chisquare

import genbench.models.rbm as rbm_module
from genbench.core.bernoulli import bernoulli
from genbench.core.paths import configs_dir
from genbench.data import build_datamodule
from genbench.data.base import DataInfo, DataSpace
from genbench.models import build_model
from genbench.models.constraints import Constraints, chimera_mask, random_mask
from genbench.models.rbm import RBM, _conditional
from genbench.nn.rbm import noisy_parameters

# -- brute-force oracles ------------------------------------------------------------------------


def states(n: int) -> torch.Tensor:
    """Every binary vector of length n, [2^n, n] float64."""
    return ((torch.arange(2**n)[:, None] >> torch.arange(n)) & 1).double()


def energy(v, h, W, b, c):
    """E(v, h) = −bᵀv − cᵀh − hᵀWv for every pair: [len(v), len(h)]."""
    return -(v @ b)[:, None] - (h @ c)[None, :] - v @ W.T @ h.T


def exact_log_z(W, b, c) -> float:
    """log Z by enumerating the hidden layer (the test's own oracle)."""
    W, b, c = (t.detach().double() for t in (W, b, c))
    h = states(W.shape[0])
    return torch.logsumexp(h @ c + F.softplus(h @ W + b).sum(1), 0).item()


def mean_log_likelihood(model: RBM, x: torch.Tensor) -> float:
    W, b, c = (t.detach().double() for t in (model.W, model.b, model.c))
    v = x.reshape(len(x), -1).double()
    neg_f = v @ b + F.softplus(v @ W.T + c).sum(1)
    return (neg_f - exact_log_z(W, b, c)).mean().item()


def tiny_rbm(V: int, H: int, W=None, b=None, c=None, seed: int = 0, **kw) -> RBM:
    info = DataInfo("tiny", "tiny", DataSpace("binary", (V,)), {"train": 1}, "none")
    model = RBM(info, hidden=H, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.W.copy_(torch.randn(H, V, generator=g) if W is None else torch.as_tensor(W))
        model.b.copy_(torch.randn(V, generator=g) if b is None else torch.as_tensor(b))
        model.c.copy_(torch.randn(H, generator=g) if c is None else torch.as_tensor(c))
    return model


def fit(model, dm, epochs):
    L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, datamodule=dm)


@pytest.fixture(scope="module")
def digits():
    return build_datamodule({"name": "digits", "variant": "dynamic"})


# -- the model against brute force ------------------------------------------------------------------


def test_free_energy_and_conditionals_match_brute_force():
    model = tiny_rbm(5, 4, seed=1)
    W, b, c = (t.detach().double() for t in (model.W, model.b, model.c))
    v, h = states(5), states(4)
    joint = -energy(v, h, W, b, c)  # log of the unnormalized p(v, h)
    assert torch.allclose(model.free_energy(v.float()).double(), -torch.logsumexp(joint, 1), atol=1e-5)
    # p(h_j = 1 | v) and p(v_i = 1 | h) from the joint, against σ(Wv + c) and σ(Wᵀh + b)
    p_h = torch.softmax(joint, 1) @ h
    p_v = torch.softmax(joint, 0).T @ v
    assert torch.allclose(model.hidden_probs(v.float()).double(), p_h, atol=1e-5)
    assert torch.allclose(model.visible_probs(h.float()).double(), p_v, atol=1e-5)


def gibbs_chi_square(sampler: RBM, target: RBM, chains=20_000, burn_in=100, seed=0):
    """p-value of the chi-square test: final states of ``sampler``'s chains vs ``target``'s exact p(v)."""
    V = target.visible
    g = torch.Generator().manual_seed(seed)
    v0 = (torch.rand(chains, V, generator=g) < 0.5).float()
    v = sampler.gibbs(v0, steps=burn_in, generator=g)
    counts = torch.bincount((v.long() << torch.arange(V)).sum(1), minlength=2**V).double()
    logp = -target.free_energy(states(V).float()).detach().double()
    expected = torch.softmax(logp, 0) * chains
    return chisquare(counts.numpy(), expected.numpy()).pvalue


def test_gibbs_samples_follow_the_exact_distribution():
    model = tiny_rbm(4, 3, W=[[1.5, -1.0, 0.5, 0.0], [-0.5, 1.0, 1.0, -1.5], [0.8, 0.3, -1.2, 1.0]],
                     b=[1.0, -1.5, 0.5, -0.5], c=[-1.0, 0.5, 1.5])
    assert gibbs_chi_square(model, model) > 1e-3


def test_gibbs_test_rejects_swapped_biases():
    """The chi-square test has power: a sampler with b and c swapped (thesis Eq. 1.35's typo) fails it."""
    W = [[1.5, -1.0, 0.5, 0.0], [-0.5, 1.0, 1.0, -1.5], [0.8, 0.3, -1.2, 1.0], [0.2, -0.7, 0.4, 0.9]]
    b, c = [2.0, -1.5, 1.0, -2.0], [-1.0, 0.5, -2.0, 1.5]  # purposely asymmetric
    right, swapped = tiny_rbm(4, 4, W=W, b=b, c=c), tiny_rbm(4, 4, W=W, b=c, c=b)
    assert gibbs_chi_square(right, right) > 1e-3
    assert gibbs_chi_square(swapped, right) < 1e-6


def test_log_partition_exact_matches_enumeration():
    model = tiny_rbm(6, 9, seed=2)
    assert model.exact_partition_feasible
    assert model.log_partition_exact() == pytest.approx(exact_log_z(model.W, model.b, model.c), abs=1e-6)
    big = tiny_rbm(30, 25)
    assert not big.exact_partition_feasible
    with pytest.raises(ValueError, match="AIS"):
        big.log_partition_exact()


def test_free_energy_and_log_z_under_given_parameters():
    """The evaluator scores noisy draws with the model's own F and log Z under the draw, not the clean parameters."""
    model = tiny_rbm(6, 5, seed=3)
    clean = tuple(t.detach().double() for t in (model.W, model.b, model.c))
    W, b, c = noisy_parameters(*clean, 0.5, 0.5, generator=torch.Generator().manual_seed(1))
    v, h = states(6), states(5)
    neg_e = -energy(v, h, W, b, c)
    assert torch.allclose(model.free_energy(v, (W, b, c)), -torch.logsumexp(neg_e, 1), atol=1e-10)
    assert model.log_partition_exact((W, b, c)) == pytest.approx(torch.logsumexp(neg_e.flatten(), 0).item(), abs=1e-10)
    assert abs(model.log_partition_exact((W, b, c)) - model.log_partition_exact()) > 0.1


def test_bernoulli_draws_are_uniforms_below_p():
    p = torch.linspace(0, 1, 11).expand(20_000, 11)
    x = bernoulli(p, generator=torch.Generator().manual_seed(0))
    assert x.dtype == p.dtype and x.shape == p.shape
    assert (x[:, 0] == 0).all() and (x[:, -1] == 1).all()
    assert (x.mean(0) - p[0]).abs().max() < 0.015  # 4 standard errors at p = ½
    u = torch.rand(20_000, 11, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, (u < p).float())  # torch.rand's numbers: seeded runs reproduce
    out = torch.empty(20_000, 11)
    assert bernoulli(p, u, out=out) is out and torch.equal(out, x)


def test_fast_uniforms_are_the_documented_cut_of_pcg64dxsm_words_and_resume_from_their_state():
    """float32 on a CPU: the low 24 bits of each 32-bit half of PCG64DXSM's 64-bit words, times 2⁻²⁴ (the stream
    every recorded RBM run and AIS estimate drew: a faster fill must keep it), continued exactly from a saved state."""
    import numpy as np

    from genbench.core.uniforms import Uniforms

    u = Uniforms(torch.Generator().manual_seed(3), torch.float32, torch.device("cpu"))
    words = np.random.PCG64DXSM()
    words.state = u.state()
    out = u.fill(torch.empty(7, 3))  # an odd count: the last word's upper half is not used
    halves = np.frombuffer(words.random_raw(11).tobytes(), dtype=np.uint32)[:21]
    assert torch.equal(out.flatten(), torch.from_numpy(((halves & 0xFFFFFF) * 2.0**-24).astype(np.float32)))
    resumed = Uniforms(None, torch.float32, torch.device("cpu"), state=u.state())
    assert torch.equal(resumed.fill(torch.empty(5)), u.fill(torch.empty(5)))


def test_the_rbm_starts_at_the_clamped_base_rates():
    """Never-on and always-on pixels get base rates 1e-3 and 1 − 1e-3 (finite visible biases ∓6.9)."""
    info = DataInfo("t", "t", DataSpace("binary", (3,)), {}, "x", train_mean=torch.tensor([0.0, 0.25, 1.0]))
    model = RBM(info, hidden=2)
    assert torch.allclose(model.base_rate, torch.tensor([1e-3, 0.25, 1 - 1e-3]))
    assert torch.allclose(model.b, torch.logit(model.base_rate)) and torch.isfinite(model.b).all()


# -- training ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True], ids=["CD-1", "PCD-1"])
def test_training_improves_exact_test_log_likelihood(digits, persistent):
    L.seed_everything(0, verbose=False)
    model = RBM(digits.info, hidden=10, persistent=persistent, lr=0.3, lr_schedule="linear_decay", init_std=0.1)
    test = digits.split("test").float()
    before = mean_log_likelihood(model, test)  # W ≈ 0, b = logit(base rates): close to independent pixels
    fit(model, digits, epochs=20)
    after = mean_log_likelihood(model, test)
    assert after > before + 1.5, (before, after)
    assert model.optimizers().param_groups[0]["lr"] < 0.3 / 200  # linear decay reached ~0 at the last update


@pytest.mark.filterwarnings("ignore:model.matmul_dtype=bfloat16")  # CPUs without native bfloat16: slower, not wrong
def test_bfloat16_products_train_as_well_as_float32(digits):
    test, lls = digits.split("test").float(), []
    for dtype in (None, "bfloat16"):
        L.seed_everything(0, verbose=False)
        model = RBM(digits.info, hidden=10, persistent=True, lr=0.3, lr_schedule="linear_decay", init_std=0.1,
                    matmul_dtype=dtype)
        fit(model, digits, epochs=20)
        lls.append(mean_log_likelihood(model, test))
    assert abs(lls[0] - lls[1]) < 0.1, lls  # measured: 0.002–0.007 nats apart over three seeds, at about −25 nats
    v, W, c = test[:50].flatten(1), model.W.detach(), model.c.detach()
    exact, mixed = _conditional(v, W.T, c), _conditional(v, W.bfloat16().T, c)
    assert mixed.dtype == torch.float32 and 0 < (mixed - exact).abs().max() < 0.01  # bf16 products, not float32


def test_bfloat16_products_on_a_device_that_emulates_them_warn(digits, monkeypatch):
    monkeypatch.setattr(rbm_module, "native_bfloat16", lambda device: False)
    with pytest.warns(UserWarning, match="no native bfloat16 products"):
        fit(RBM(digits.info, hidden=4, matmul_dtype="bfloat16"), digits, epochs=1)


def test_momentum_switches_to_its_final_value_after_five_epochs(digits):
    model = RBM(digits.info, hidden=8, momentum=0.5, final_momentum=0.9)
    fit(model, digits, epochs=5)
    assert model.optimizers().param_groups[0]["momentum"] == 0.5  # epochs 0-4
    fit(model, digits, epochs=6)
    assert model.optimizers().param_groups[0]["momentum"] == 0.9
    assert [model.current_momentum(e) for e in (0, 4, 5, 49)] == [0.5, 0.5, 0.9, 0.9]


def test_sample_shapes_spaces_and_state_round_trip(digits, tmp_path):
    torch.manual_seed(0)
    model = RBM(digits.info, hidden=16, persistent=True, n_chains=7, sample_steps=20)
    fit(model, digits, epochs=1)
    s, means = model.sample(9), model.sample_means(5, steps=3)
    assert s.shape == (9, 1, 8, 8) and set(s.unique().tolist()) <= {0.0, 1.0}
    assert means.shape == (5, 1, 8, 8) and ((means > 0) & (means < 1)).all()
    assert model.gibbs(digits.split("test")[:4].float(), steps=2).shape == (4, 1, 8, 8)
    assert not hasattr(model, "log_prob")  # the likelihood evaluator chooses exact log Z or AIS
    torch.save(model.state_dict(), tmp_path / "rbm.pt")
    fresh = RBM(digits.info, hidden=16, persistent=True, n_chains=7)
    fresh.load_state_dict(torch.load(tmp_path / "rbm.pt"))
    x = digits.split("test")[:32].float()
    assert torch.equal(fresh.free_energy(x), model.free_energy(x)) and torch.equal(fresh.chain_h, model.chain_h)


def test_config_sets_every_constructor_argument(digits):
    config = yaml.safe_load((configs_dir() / "model" / "rbm.yaml").read_text())
    params = set(inspect.signature(RBM).parameters) - {"info"}
    assert set(config) - {"name"} == params
    assert isinstance(build_model(config, digits.info), RBM)


# -- constraints ------------------------------------------------------------------------------------


def test_masked_weights_stay_zero_through_training(digits):
    torch.manual_seed(0)
    cfg = {"mask": {"kind": "random", "fraction": 0.5, "seed": 3}}
    model = RBM(digits.info, hidden=20, persistent=True, lr=0.1, momentum=0.9, weight_decay=1e-3, constraints=cfg)
    removed = ~model.mask
    assert int(removed.sum()) == 20 * 64 // 2 and torch.equal(model.mask, random_mask(20, 64, 0.5, seed=3))
    fit(model, digits, epochs=3)
    assert (model.W[removed] == 0).all()
    assert (model.W[model.mask] != 0).all()  # the kept weights did train


def test_clipping_holds_after_updates(digits):
    torch.manual_seed(0)
    t = 0.05
    model = RBM(digits.info, hidden=20, lr=1.0, momentum=0.5, constraints={"clip": t})
    fit(model, digits, epochs=2)
    for p in (model.W, model.b, model.c):
        assert p.abs().max() <= t
    assert (model.W.abs() == t).any() and (model.b.abs() == t).any()  # the limit was active


def test_weight_noise_is_redrawn_exactly_when_the_weights_change(digits):
    torch.manual_seed(0)
    cfg = {"noise": {"sigma_w": 0.1, "sigma_b": 0.0, "train": True}, "mask": {"kind": "random", "fraction": 0.3}}
    model = RBM(digits.info, hidden=12, persistent=True, lr=0.1, constraints=cfg)
    noise = lambda: model.parameters_for_sampling()[0] - model.W.detach()  # noqa: E731
    first = noise()
    assert torch.equal(noise(), first)  # no update in between: the same noise
    assert first.std().item() == pytest.approx(0.1 * math.sqrt(0.7), rel=0.1) and (first[~model.mask] == 0).all()
    model.sample(3, steps=5)
    assert torch.equal(noise(), first)  # sampling does not change the weights
    opt = model.configure_optimizers()
    draws = model._weight_noise.draws
    for batch in digits.split("train")[:300].float().split(100):
        model.fit_batch(batch, opt)
    # 3 updates: the first negative phase still sees the unchanged W (and its noise), the next two draw anew
    assert model._weight_noise.draws == draws + 2
    assert not torch.equal(noise(), first) and model._weight_noise.draws == draws + 3


def test_bias_noise_is_fresh_per_chain_and_gibbs_step(monkeypatch):
    """Each half-step draws its own [chains, units] bias noise; weight noise is drawn once for the whole run."""
    model = tiny_rbm(5, 3, W=torch.zeros(3, 5), b=torch.zeros(5), c=torch.zeros(3),
                     constraints={"noise": {"sigma_w": 0.2, "sigma_b": 4.0}})
    shapes, real_randn = [], torch.randn

    def recording_randn(*args, **kw):
        out = real_randn(*args, **kw)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "randn", recording_randn)
    v = model.gibbs(torch.zeros(4000, 5), steps=3)
    monkeypatch.undo()
    assert shapes == [(3, 5)] + [(4000, 3), (4000, 5)] * 3
    # with W̃ ≈ 0 the last v is Bernoulli(σ(4ε)): one ε per chain gives column means near ½;
    # one ε shared by all chains would push each column's mean towards 0 or 1
    assert ((v.mean(0) - 0.5).abs() < 0.05).all()


def test_noisy_parameters_for_the_evaluator():
    W, b, c = torch.zeros(3, 5), torch.zeros(5), torch.zeros(3)
    mask = torch.tensor([[True, False, True, True, True]] * 3)
    g = torch.Generator().manual_seed(0)
    Wn, bn, cn = noisy_parameters(W, b, c, 0.1, 0.2, generator=g, mask=mask, chains=7)
    assert Wn.shape == (3, 5) and bn.shape == (7, 5) and cn.shape == (7, 3)
    assert (Wn[:, 1] == 0).all() and (Wn[mask] != 0).all()
    assert not torch.equal(bn[0], bn[1])  # one bias draw per chain


def test_constraint_config_errors_list_the_valid_keys():
    with pytest.raises(ValueError, match="valid: noise, clip, mask"):
        Constraints.from_config({"noise": {"sigma_w": 0.1}, "clipping": 1.0})
    with pytest.raises(ValueError, match="chimera_pixel_blocks"):
        Constraints.from_config({"mask": {"kind": "grid"}})
    with pytest.raises(ValueError, match="784"):
        RBM(DataInfo("d", "d", DataSpace("binary", (1, 8, 8)), {}, "x"), hidden=64,
            constraints={"mask": {"kind": "chimera_pixel_blocks"}})


# -- the chimera graph --------------------------------------------------------------------------------


def test_chimera_pixel_blocks_mask():
    m = chimera_mask("pixel_blocks")
    assert m.shape == (784, 784) and int(m.sum()) == 196 * 16 + 2 * 13 * 14 * 4 == 4592
    # cell (0,0) (r+c even): hidden 0..3 see its block, pixels 0, 1, 28, 29
    assert m[0:4][:, [0, 1, 28, 29]].all()
    # side 0 of an even cell is visible: pixel slot k of cell (0,0) couples to hidden slot k of cell (1,0) (56 + k)
    assert m[56, 0] and m[57, 1] and m[58, 28] and m[59, 29] and not m[56, 1]
    # side 1 of an even cell is hidden: hidden slot k of cell (0,0) couples to pixel slot k of cell (0,1) (2, 3, 30, 31)
    assert m[0, 2] and m[1, 3] and m[2, 30] and m[3, 31] and not m[0, 3]
    # cell (0,1) (odd): side 0 is hidden, so its hidden slot k couples to pixel slot k of cell (1,1) (58, 59, 86, 87)
    assert m[4, 58] and m[5, 59] and m[6, 86] and m[7, 87] and not m[4, 59]
    # no long-range edge: hidden 0 (top-left cell) never sees the bottom-right pixel
    assert not m[0, 783] and not m[:, 783][:700].any()
    assert m.sum(1).min() == 5 and m.sum(1).max() == 6  # 4 intra-cell + 1 or 2 inter-cell couplers


def test_chimera_extended_pixel_blocks_mask():
    m, base = chimera_mask("extended_pixel_blocks"), chimera_mask("pixel_blocks")
    assert int(m.sum()) == 4 * 54 * 54 + 728 == 12392
    assert not (base & ~m).any()  # the pixel-block graph plus overlapping windows
    # cell (1,1): hidden 60..63 see the 4×4 window rows 1..4, cols 1..4
    window = [r * 28 + col for r in range(1, 5) for col in range(1, 5)]
    assert m[60:64][:, window].all() and not m[60, 0] and not m[60, 5 * 28 + 5]
    # cell (0,0) at the corner: the window is clipped to rows 0..2, cols 0..2; hidden 0's coupler (pixel 2 of
    # cell (0,1)) lies inside it, hidden 3's (pixel (1,3) = 31, the far column of cell (0,1)) outside
    assert m[0].nonzero().flatten().tolist() == [0, 1, 2, 28, 29, 30, 56, 57, 58]
    assert int(m[3].sum()) == 10 and m[3, 31]
