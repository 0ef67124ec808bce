"""Mode coverage protocols and sample figures, on sample sets whose answers are known."""

import math

import pytest
import torch

from genbench.data.gmm2d import GaussianMixture, grid25, ring8
from genbench.evaluation.modes import ali_protocol, mode_coverage, sample_log_density, veegan_protocol
from genbench.evaluation.samples import save_density_2d, save_image_grid, save_scatter_2d

HQ_TRUE = 1 - math.exp(-4.5)  # P(chi²_2 < 3²): fraction of true 2D Gaussian samples within 3 std


def by_metric(records):
    return {r.metric: r for r in records}


def at_means(mixture, counts):
    """counts[k] points exactly at mean k."""
    return mixture.means.repeat_interleave(torch.as_tensor(counts), dim=0)


def test_all_samples_at_one_mean():
    gmm = grid25()
    x = gmm.means[12].expand(500, 2)
    ali = by_metric(ali_protocol(x, gmm))
    vee = by_metric(veegan_protocol(x, gmm))
    assert ali["modes_ali"].value == 1 and ali["modes_ali"].unit == "modes" and ali["modes_ali"].n == 500
    assert vee["modes_veegan"].value == 1
    assert vee["high_quality_pct"].value == 100.0 and vee["high_quality_pct"].unit == "%"
    assert vee["reverse_kl"].value == pytest.approx(math.log(25)) and vee["reverse_kl"].unit == "nats"
    assert all(r.estimator == "estimate" for r in [*ali.values(), *vee.values()])
    # log p at a mean: log(1/K) - log(2π σ²), the other components are 40σ away
    lp = by_metric(sample_log_density(x, gmm))["sample_log_density"]
    assert lp.value == pytest.approx(math.log(1 / 25) - math.log(2 * math.pi * 0.05**2)) and lp.unit == "nats"


@pytest.mark.parametrize("make, k", [(grid25, 25), (ring8, 8)])
def test_true_samples_cover_every_mode(make, k):
    gmm = make()
    x10k = gmm.sample(10_000, torch.Generator().manual_seed(0))
    x2500 = gmm.sample(2_500, torch.Generator().manual_seed(1))
    assert by_metric(ali_protocol(x10k, gmm))["modes_ali"].value == k
    vee = by_metric(veegan_protocol(x2500, gmm))
    assert vee["modes_veegan"].value == k
    se = 100 * math.sqrt(HQ_TRUE * (1 - HQ_TRUE) / 2_500)
    hq = vee["high_quality_pct"]
    assert abs(hq.value - 100 * HQ_TRUE) < 3 * se
    assert hq.std_error == pytest.approx(se, rel=0.2)
    assert vee["reverse_kl"].value < 0.05  # balanced up to multinomial noise
    # true samples: mean log p is minus the entropy, within a few standard errors
    lp = by_metric(sample_log_density(x2500, gmm))["sample_log_density"]
    h, h_se = gmm.entropy(50_000)
    assert abs(lp.value + h) < 4 * math.hypot(lp.std_error, h_se)


def test_far_away_sample_counts_for_ali_not_veegan():
    gmm = grid25()
    x = torch.cat([gmm.means[12].expand(99, 2), torch.tensor([[100.0, 100.0]], dtype=torch.float64)])
    assert by_metric(ali_protocol(x, gmm))["modes_ali"].value == 2
    vee = by_metric(veegan_protocol(x, gmm))
    assert vee["modes_veegan"].value == 1
    assert vee["high_quality_pct"].value == pytest.approx(99.0)
    assert vee["reverse_kl"].value == pytest.approx(math.log(25))  # the far sample is not in the histogram


def test_reverse_kl_balanced_and_unbalanced():
    gmm = ring8()
    assert by_metric(veegan_protocol(gmm.means, gmm))["reverse_kl"].value == pytest.approx(0.0, abs=1e-12)
    # h = (1/2, 1/4, 1/8, 1/8, 0, 0, 0, 0): Σ h log(8h) = ½ log 4 + ¼ log 2 + 2·⅛ log 1 = 1.25 log 2
    vee = by_metric(veegan_protocol(at_means(gmm, [4, 2, 1, 1, 0, 0, 0, 0]), gmm))
    assert vee["reverse_kl"].value == pytest.approx(1.25 * math.log(2))
    assert vee["modes_veegan"].value == 4


def test_no_high_quality_sample_gives_nan_with_note():
    gmm = ring8()
    vee = by_metric(veegan_protocol(torch.tensor([[50.0, 50.0]]), gmm))
    assert vee["modes_veegan"].value == 0 and vee["high_quality_pct"].value == 0
    assert math.isnan(vee["reverse_kl"].value) and "undefined" in vee["reverse_kl"].settings


def test_mahalanobis_threshold_uses_the_covariance():
    # A: long axis x (σ = 1), short axis y (σ = 0.1); B: small and round, at (4, 0)
    gmm = GaussianMixture([[0.0, 0.0], [4.0, 0.0]], [[[1.0, 0.0], [0.0, 0.01]], [[0.01, 0.0], [0.0, 0.01]]])
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # 2σ along the long axis; same distance along the short one (20σ)
    vee = by_metric(veegan_protocol(x, gmm))
    assert vee["high_quality_pct"].value == 50.0 and vee["modes_veegan"].value == 1
    # nearest by Mahalanobis, not Euclidean: (2.5, 0) is 1.5 from B (15σ) but 2.5σ from A, so HQ on A
    vee = by_metric(veegan_protocol(torch.tensor([[2.5, 0.0]]), gmm))
    assert vee["high_quality_pct"].value == 100.0 and vee["reverse_kl"].value == pytest.approx(math.log(2))


class TrueSampler:
    """A 'model' drawing from the global RNG, like a generator network would."""

    def __init__(self, gmm):
        self.gmm = gmm

    def sample(self, n):
        return self.gmm.sample(n)


def test_mode_coverage_is_reproducible_and_keeps_global_rng():
    gmm = ring8()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = mode_coverage(TrueSampler(gmm), gmm, ali_samples=2_000, veegan_samples=1_000, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = mode_coverage(TrueSampler(gmm), gmm, ali_samples=2_000, veegan_samples=1_000, seed=5)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    recs = by_metric(a)
    assert set(recs) == {"modes_ali", "modes_veegan", "high_quality_pct", "reverse_kl", "sample_log_density"}
    assert recs["modes_ali"].value == 8 and recs["modes_ali"].n == 2_000
    assert recs["modes_veegan"].value == 8 and recs["sample_log_density"].n == 1_000
    assert recs["modes_ali"].settings["sample_set"] == "ali"
    assert recs["sample_log_density"].settings["sample_set"] == "veegan"
    # a plain callable works too
    c = mode_coverage(lambda n: gmm.sample(n), gmm, ali_samples=2_000, veegan_samples=1_000, seed=5)
    assert [r.to_dict() for r in c] == [r.to_dict() for r in a]


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_write_pngs(tmp_path):
    import matplotlib.pyplot as plt

    gmm = grid25()
    x = gmm.sample(2_000, torch.Generator().manual_seed(0))
    far = torch.cat([x, torch.tensor([[100.0, 100.0]])])
    _assert_png(save_scatter_2d(far, tmp_path / "scatter.png", mixture=gmm, data=x, title="grid25"))
    _assert_png(save_scatter_2d(x, tmp_path / "scatter_nomix.png"))
    _assert_png(save_density_2d(x, tmp_path / "density.png", mixture=gmm, title="grid25"))
    _assert_png(save_density_2d(x, tmp_path / "density_nomix.png"))

    g = torch.Generator().manual_seed(0)
    binary = (torch.rand(16, 64, generator=g) > 0.5).float()  # flat binary 8x8 digits
    _assert_png(save_image_grid(binary, tmp_path / "binary.png", shape=(8, 8), title="binary"))
    rgb = torch.randint(0, 256, (12, 3, 32, 32), generator=g, dtype=torch.uint8)
    _assert_png(save_image_grid(rgb, tmp_path / "rgb.png", nrow=4))
    _assert_png(save_image_grid(rgb.float() / 255, tmp_path / "rgb_unit.png"))
    assert plt.get_fignums() == []  # nothing left open in pyplot's registry


def test_non_finite_samples_cover_no_mode():
    m = grid25()
    x = torch.cat([m.means[:1].float(), torch.full((5, 2), float("nan"))])
    assert ali_protocol(x, m)[0].value == 1 and ali_protocol(x, m)[0].settings["non_finite_samples"] == 5
    assert veegan_protocol(x, m)[0].value == 1


def test_learning_curve_plots_epoch_level_likelihoods_only(tmp_path):
    from genbench.evaluation.samples import save_learning_curve

    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/nll,val/nll,train/loss_d\n0,9,5.0,,\n0,9,,4.8,\n1,19,4.0,3.9,\n")
    assert save_learning_curve(tmp_path, tmp_path / "curve.png").is_file()
    log.write_text("epoch,step,train/loss_d\n0,9,0.7\n")  # an adversarial run: no likelihood to plot
    assert save_learning_curve(tmp_path, tmp_path / "none.png") is None


def test_learning_curve_of_a_resumed_run_joins_its_attempts(tmp_path):
    """A killed attempt's log (kept as metrics.attempt0.csv) and the resumed one's: the redone epoch 1 keeps
    the resumed values only."""
    from genbench.evaluation.samples import read_metrics

    (tmp_path / "metrics.attempt0.csv").write_text("epoch,step,train/nll\n0,9,5.0\n1,19,4.5\n")
    (tmp_path / "metrics.csv").write_text("epoch,step,train/nll\n1,19,4.0\n2,29,3.0\n")
    log = read_metrics(tmp_path)
    assert log["epoch"].tolist() == [0, 1, 2] and log["train/nll"].tolist() == [5.0, 4.0, 3.0]
