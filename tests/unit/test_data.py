"""The embedded data modules: digits variants, 2D mixtures, two moons."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data import build_datamodule
from genbench.data.gmm2d import GaussianMixture, GMM2DDataModule, grid25, ring8


def test_ring8_has_eight_distinct_means_on_the_unit_circle():
    m = ring8()
    assert m.n_components == 8
    assert torch.allclose(m.means.norm(dim=1), torch.ones(8, dtype=torch.float64))
    assert torch.pdist(m.means).min() > 0.7  # 2 sin(π/8) = 0.765: none repeated (unlike linspace with endpoint)
    assert torch.allclose(m.covariances, 1e-4 * torch.eye(2, dtype=torch.float64).expand(8, 2, 2))


def test_grid25_means_and_std():
    m = grid25()
    assert sorted(set(m.means[:, 0].tolist())) == [-4, -2, 0, 2, 4]
    assert len({tuple(v) for v in m.means.tolist()}) == 25
    assert torch.allclose(m.covariances[:, 0, 0], torch.full((25,), 0.0025, dtype=torch.float64))


def test_mixture_log_prob_integrates_to_one_and_matches_scipy():
    from scipy.stats import multivariate_normal

    m = GaussianMixture([[0, 0], [2, 1]], [[[1, 0.3], [0.3, 0.5]], [[0.4, 0], [0, 2]]], [0.3, 0.7])
    x = torch.randn(20, 2, dtype=torch.float64)
    expected = torch.log(0.3 * torch.tensor(multivariate_normal([0, 0], [[1, 0.3], [0.3, 0.5]]).pdf(x.numpy()))
                         + 0.7 * torch.tensor(multivariate_normal([2, 1], [[0.4, 0], [0, 2]]).pdf(x.numpy())))
    assert torch.allclose(m.log_prob(x), expected)
    g = torch.linspace(-8, 10, 600, dtype=torch.float64)
    xy = torch.cartesian_prod(g, g)
    assert (m.log_prob(xy).exp().sum() * (g[1] - g[0]) ** 2).item() == pytest.approx(1.0, abs=1e-3)


def test_gmm_splits_are_independent_and_fixed():
    a, b = GMM2DDataModule("ring8"), GMM2DDataModule("ring8")
    assert a.info.sizes == {"train": 100_000, "val": 10_000, "test": 10_000}
    assert torch.equal(a.split("test"), b.split("test"))
    assert not torch.equal(a.split("train")[:10_000], a.split("test"))
    assert a.info.checksum == b.info.checksum


def test_custom_mixture_and_bad_names():
    dm = build_datamodule({"name": "gmm2d", "mixture": "custom", "means": [[0, 0], [5, 5]], "std": 0.1,
                           "train_size": 100, "val_size": 0, "test_size": 10})
    assert dm.info.variant.startswith("gmm2d/custom-") and dm.info.sizes["train"] == 100
    with pytest.raises(ValueError, match="valid: grid25, ring8, custom"):
        GMM2DDataModule("ring9")
    with pytest.raises(ValueError, match="valid:"):
        build_datamodule({"name": "nope"})


@pytest.mark.parametrize("variant", ["dynamic", "fixed", "threshold"])
def test_digits_binary_variants(variant):
    dm = build_datamodule({"name": "digits", "variant": variant})
    info = dm.info
    assert info.space.kind == "binary" and info.shape == (1, 8, 8)
    assert info.sizes == {"train": 1257, "val": 180, "test": 360}
    batch = next(iter(dm.train_dataloader()))
    assert set(batch.unique().tolist()) <= {0.0, 1.0} and batch.shape == (100, 1, 8, 8)
    assert set(dm.split("test").unique().tolist()) <= {0.0, 1.0}
    every = list(range(1257))
    first, second = dm.train_dataloader().dataset[every], dm.train_dataloader().dataset[every]
    assert torch.equal(first, second) == (variant != "dynamic")  # dynamic resamples each time it is seen
    again = build_datamodule({"name": "digits", "variant": variant})
    assert torch.equal(again.split("test"), dm.split("test"))  # the test set is one fixed sample


def test_digits_dynamic_matches_the_intensities_on_average():
    dm = build_datamodule({"name": "digits", "variant": "dynamic"})
    ds = dm.train_dataloader().dataset
    mean = torch.stack([ds[list(range(1257))] for _ in range(200)]).mean(0)
    assert (mean - dm.split("train")).abs().max() < 5 * math.sqrt(0.25 / 200)


def test_digits_integer_variant_is_17_levels():
    dm = build_datamodule({"name": "digits", "variant": "integer"})
    assert dm.info.space.kind == "discrete" and dm.info.space.levels == 17
    values = dm.split("train").unique()
    assert values.min() == 0 and values.max() == 16 and torch.equal(values, values.round())


def test_two_moons():
    dm = build_datamodule({"name": "two_moons", "train_size": 1000, "val_size": 0, "test_size": 200})
    assert dm.info.space.kind == "continuous" and dm.split("train").shape == (1000, 2)
    assert dm.info.mixture is None


@pytest.mark.parametrize("n, batch", [(1000, 100), (1003, 100), (7, 3)])
def test_training_batches_are_torchs_shuffled_batches_drawn_the_same_way(n, batch):
    """The training loader's index batches equal BatchSampler(RandomSampler) ones, epoch after epoch, and leave torch's
    RNG where it leaves it: runs recorded before the faster sampler replay their data order exactly."""
    from torch.utils.data import BatchSampler, RandomSampler

    from genbench.data.base import _ShuffledBatches

    torch.manual_seed(5)
    torchs = [list(b) for _ in range(3) for b in BatchSampler(RandomSampler(range(n)), batch, drop_last=False)]
    after = torch.rand(1)
    torch.manual_seed(5)
    ours = [b.tolist() for _ in range(3) for b in _ShuffledBatches(n, batch)]
    assert ours == torchs and torch.equal(torch.rand(1), after)
    assert len(_ShuffledBatches(n, batch)) == math.ceil(n / batch)
