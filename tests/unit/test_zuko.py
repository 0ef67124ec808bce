"""The zuko adapter against ground truth: its density integrates to one (quadrature), its samples follow it (a
histogram against the density's bin masses), its log-det is the Jacobian's, the logit-space and pixel-space
likelihoods of one model differ by the transform's closed-form log-det, and GMM's initialization is the
maximum-likelihood Gaussian. Conformance and parameter movement run in tests/unit/test_conformance.py."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import zuko

from genbench.core.errors import ConfigError
from genbench.core.transforms import dequantize
from genbench.data import build_datamodule
from genbench.data.base import DataInfo, DataSpace
from genbench.evaluation.likelihood import likelihood_records
from genbench.models import build_model
from genbench.models.zuko_flows import ZukoFlow, zuko_builders

FOUR_MODES = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, -2.0], [0.0, 2.0]])


def continuous_info(dim: int = 2) -> DataInfo:
    return DataInfo("toy", "toy", DataSpace("continuous", (dim,)), {"train": 1}, "0")


def fit(model, data: torch.Tensor, epochs: int, batch_size: int = 200):
    """Train through Lightning, as a run does (FlowModel's own training_step and optimizer)."""
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, loader)
    return model.eval()


@pytest.fixture(scope="module")
def trained_nsf():
    """An NSF fitted to four Gaussian modes (std 0.3): a density far from its N(0, I) start."""
    torch.manual_seed(0)
    x = FOUR_MODES[torch.randint(0, 4, (4000,))] + 0.3 * torch.randn(4000, 2)
    model = ZukoFlow(continuous_info(), flow="NSF", flow_kwargs={"transforms": 2, "bins": 8,
                                                                "hidden_features": [32, 32]}, lr=3e-3)
    return fit(model, x, epochs=8)


def grid(low: float, high: float, n: int, dtype=torch.float32):
    """Midpoints of an n × n grid over [low, high]², and the cell area."""
    h = (high - low) / n
    c = low + h * (torch.arange(n, dtype=dtype) + 0.5)
    return torch.cartesian_prod(c, c), h * h


def test_trained_density_integrates_to_one(trained_nsf):
    pts, area = grid(-7, 7, 700)
    with torch.no_grad():
        density = trained_nsf.log_prob(pts).double().exp()
        samples = trained_nsf.sample(20000)
    assert (samples.abs() < 7).all(dim=1).float().mean() > 0.999  # the box holds the mass
    assert density.sum() * area == pytest.approx(1.0, abs=2e-3)
    # training moved the density onto the modes: the mixture's own log-likelihood is far above N(0, I)'s
    at_modes = trained_nsf.log_prob(FOUR_MODES).detach()
    assert (at_modes > math.log(0.25 / (2 * math.pi * 0.09)) - 0.7).all()


def test_pixel_space_density_integrates_to_one_over_the_logit_domain():
    """On 4-level data the model is a density of the pixels x ∈ [0, 4)²: Rescale and Logit add their log-dets.

    The logit map y = logit(α + (1 − 2α) x/L) is a bijection from (−αL/(1−2α), (1−α)L/(1−2α)) onto R, so the pixel
    density integrates to one over that interval, squared; without either log-det it would not."""
    torch.manual_seed(0)
    levels, alpha = 4, 0.05
    info = DataInfo("toy", "toy", DataSpace("discrete", (1, 1, 2), levels), {"train": 1}, "0")
    model = ZukoFlow(info, flow="MAF", flow_kwargs={"transforms": 2, "hidden_features": [16]}, alpha=alpha)
    x = torch.tensor([[0.0, 3.0], [1.0, 1.0], [2.0, 0.0], [3.0, 3.0]])[torch.randint(0, 4, (2000,))]
    fit(model, x.reshape(-1, 1, 1, 2), epochs=3)
    low, high = -alpha * levels / (1 - 2 * alpha), (1 - alpha) * levels / (1 - 2 * alpha)
    pts, area = grid(low, high, 1000, torch.float64)
    with torch.no_grad():
        density = model.double().log_prob(pts.reshape(-1, 1, 1, 2)).exp()
    assert density.sum() * area == pytest.approx(1.0, abs=2e-3)


def test_samples_follow_the_density(trained_nsf):
    """A 2D histogram of 100,000 samples against the density's mass in each bin (quadrature): chi-square."""
    n, bins, sub = 100_000, 24, 10
    torch.manual_seed(1)
    with torch.no_grad():
        s = trained_nsf.sample(n)
        pts, area = grid(-4, 4, bins * sub)
        density = trained_nsf.log_prob(pts).double().exp()
    mass = (density.reshape(bins, sub, bins, sub).sum((1, 3)) * area)  # pts are (x, y) row-major: x slow
    idx = ((s + 4) / 8 * bins).floor().long()
    inside = ((idx >= 0) & (idx < bins)).all(1)
    counts = torch.zeros(bins, bins, dtype=torch.float64)
    counts.index_put_((idx[inside, 0], idx[inside, 1]), torch.ones(int(inside.sum()), dtype=torch.float64),
                      accumulate=True)
    expected = n * mass
    used = expected > 20
    chi2 = ((counts - expected)[used] ** 2 / expected[used]).sum().item()
    dof = int(used.sum()) - 1
    assert dof > 100 and chi2 < dof + 5 * math.sqrt(2 * dof)  # ≈ 5σ of the chi-square's spread
    # the same check catches a sampler that is merely close: samples from the prior's N(0, 1.1² I) are far off
    wrong = torch.randn(n, 2) * 1.1
    widx = ((wrong + 4) / 8 * bins).floor().long().clamp(0, bins - 1)
    wcounts = torch.zeros(bins, bins, dtype=torch.float64).index_put_((widx[:, 0], widx[:, 1]),
                                                                       torch.ones(n, dtype=torch.float64), accumulate=True)
    assert ((wcounts - expected)[used] ** 2 / expected[used]).sum().item() > 10 * dof


def test_log_det_is_the_jacobians_with_batch_norm_between_transforms():
    """MAF with genbench's batch-norm flow layers between zuko's transforms: the whole data → latent map's log-det
    (logit transform included) against autograd's Jacobian, and decode(encode(x)) = x."""
    torch.manual_seed(0)
    info = DataInfo("toy", "toy", DataSpace("discrete", (1, 1, 3), 16), {"train": 1}, "0")
    model = ZukoFlow(info, flow="MAF", flow_kwargs={"transforms": 3, "hidden_features": [8]}, batch_norm=True,
                     alpha=0.05)
    fit(model, torch.randint(0, 16, (600, 1, 1, 3)).float(), epochs=2)  # running statistics move off 0 and 1
    model.double()
    assert sum(isinstance(m, torch.nn.Module) and type(m).__name__ == "BatchNormFlow" for m in model.flow.layers) == 3
    x = torch.rand(5, 1, 1, 3, dtype=torch.float64) * 16
    with torch.no_grad():
        _, logdet = model.eval()(x)
    for b in range(5):
        jac = torch.autograd.functional.jacobian(lambda v: model(v.reshape(1, 1, 1, 3))[0][0], x[b].flatten())
        assert logdet[b].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-8)
    assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-8)


def test_logit_and_pixel_space_likelihoods_differ_by_the_transforms_log_det():
    """MAF's Table 2 prints log p(y), y = logit(λ + (1 − 2λ) x̃/256); genbench scores log p(x̃). Their difference is
    Σ_i [log(1 − 2λ) − log p_i − log(1 − p_i)] − D log L with p_i = λ + (1 − 2λ) x̃_i/L: computed here in float64
    from the pixels alone, against the model's two numbers, zuko's own density of y, and the evaluator's records."""
    torch.manual_seed(0)
    dm = build_datamodule({"name": "digits", "variant": "integer"})
    info, lam = dm.info, 1e-6
    model = build_model({"name": "zuko", "flow": "MAF", "flow_kwargs": {"transforms": 2, "hidden_features": [64]},
                         "alpha": lam}, info)
    fit(model, dm.split("train").float(), epochs=2, batch_size=100)
    test = dm.split("test").float()
    x = dequantize(test, torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_px = model.log_prob(x).double()
        log_py, logdet = (t.double() for t in model.log_prob_parts(x))
        y = model.transform(x.flatten(1))[0]
        lazy_transform = model.flow.layers[0].transform  # zuko's own NormalizingFlow of y, bypassing the adapter
        zuko_log_py = zuko.distributions.NormalizingFlow(lazy_transform(), model.prior.distribution()).log_prob(y)
    p = lam + (1 - 2 * lam) * x.flatten(1).double() / info.space.levels
    closed = (math.log(1 - 2 * lam) - torch.log(p) - torch.log1p(-p)).sum(1) - info.dim * math.log(info.space.levels)
    # float32 logit: with λ = 1e-6, 1 − p keeps few digits for a pixel at the top of its bin (measured ≤ 0.003 nats)
    assert torch.allclose(logdet, closed, rtol=0, atol=5e-3) and (logdet - closed).mean().abs() < 1e-4
    assert torch.allclose(log_px - log_py, closed, rtol=0, atol=5e-3)
    assert torch.allclose(log_py, zuko_log_py.double(), rtol=0, atol=1e-3)

    # the evaluator's pixel-space NLL and bits/dim are the logit-space numbers converted by the same log-det
    # (same dequantization noise: seed 0, one batch)
    records = {r.metric: r for r in likelihood_records(model, test, info, batch_size=len(test))}
    nll = -(log_py + logdet).mean().item()
    assert records["nll"].value == pytest.approx(nll, abs=1e-3)
    assert records["bits_per_dim"].value == pytest.approx(nll / (info.dim * math.log(2)), abs=1e-5)
    assert records["nll"].estimator == "upper bound"  # dequantized: a bound on the discrete NLL


def test_gmm_with_one_component_is_initialized_to_the_maximum_likelihood_gaussian(monkeypatch):
    """MAF's Table 2 Gaussian row: zuko's GMM (1 component, full covariance) with initialize=random starts at the
    sample mean and covariance of the modelled training values; no training step is needed (max_epochs=0)."""
    import genbench.models.zuko_flows as zf

    drawn = []
    monkeypatch.setattr(zf, "dequantize", lambda x: drawn.append(dequantize(x)) or drawn[-1])
    torch.manual_seed(0)
    dm = build_datamodule({"name": "digits", "variant": "integer"})
    model = build_model({"name": "zuko", "flow": "GMM", "flow_kwargs": {"components": 1}, "alpha": 1e-6,
                         "initialize": "random"}, dm.info)
    L.Trainer(max_epochs=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, datamodule=dm)
    assert bool(model.initialized) and len(drawn) == 1 and len(drawn[0]) == len(dm.split("train"))
    x = dequantize(dm.split("test").float(), torch.Generator().manual_seed(1))
    y_train = model.transform(drawn[0])[0].double()  # the training values the initialization saw
    gauss = torch.distributions.MultivariateNormal(y_train.mean(0), torch.cov(y_train.T))
    with torch.no_grad():
        log_py, _ = model.log_prob_parts(x)
    expected = gauss.log_prob(model.transform(x.flatten(1))[0].double())
    assert torch.allclose(log_py.double(), expected, rtol=0, atol=0.05)  # float32 Cholesky of a 64-dim covariance


def test_config_errors_name_what_is_valid():
    info = continuous_info()
    with pytest.raises(ConfigError, match="valid: .*MAF.*NSF"):
        ZukoFlow(info, flow="Glow")
    with pytest.raises(ConfigError, match="features"):
        ZukoFlow(info, flow="NSF", flow_kwargs={"features": 3})
    with pytest.raises(ConfigError, match="bins"):  # a typo: the message shows the builder's signature
        ZukoFlow(info, flow="NSF", flow_kwargs={"binz": 3})
    with pytest.raises(ConfigError, match="initialize"):
        ZukoFlow(info, flow="MAF", initialize="kmeans")
    assert {"NSF", "MAF", "RealNVP", "NAF", "GMM"} <= set(zuko_builders())
