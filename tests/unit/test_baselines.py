"""Baselines: EM's monotonicity, the closed-form independent Bernoulli, the true mixture."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from genbench.data.base import DataInfo, DataSpace, TensorDataModule
from genbench.models.baselines import IndependentBernoulli, MixtureOfBernoullis


class FixedBinary(TensorDataModule):
    """Fixed binary data drawn from a planted mixture (the tests' own data)."""

    name = "planted"

    def __init__(self, n=600, d=20, k=3, seed=0, **kw):
        super().__init__(batch_size=50, **kw)
        g = torch.Generator().manual_seed(seed)
        self.protos = torch.rand(k, d, generator=g)
        z = torch.randint(0, k, (n,), generator=g)
        self.data = torch.bernoulli(self.protos[z], generator=g)

    def space(self):
        return DataSpace("binary", (self.data.shape[1],))

    def load(self):
        return {"train": self.data, "test": self.data}


def fit(model, dm, epochs):
    L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, datamodule=dm)


def objective(model, x, penalized):
    with torch.no_grad():
        ll = model.log_prob(x).double().sum().item()
        return ll + (model.log_prior().item() if penalized else 0.0)


@pytest.mark.parametrize("pseudocount", [0.0, 0.5])
def test_em_never_decreases_its_objective(pseudocount):
    dm = FixedBinary()
    model = MixtureOfBernoullis(dm.info, components=4, pseudocount=pseudocount)
    x = dm.split("train")
    # with a > 0, EM is MAP-EM: it increases log-likelihood + log prior; with a = 0, the likelihood itself
    values = [objective(model, x, penalized=pseudocount > 0)]
    for _ in range(15):
        fit(model, dm, 1)
        values.append(objective(model, x, penalized=pseudocount > 0))
    steps = torch.tensor(values).diff()
    assert (steps >= -1e-6 * abs(values[0])).all(), values
    assert values[-1] > values[0] + 1.0  # and it does learn


def test_independent_bernoulli_is_the_smoothed_pixel_mean_after_one_epoch():
    dm = FixedBinary()
    model = IndependentBernoulli(dm.info, pseudocount=0.5)
    fit(model, dm, 1)
    x = dm.split("train")
    expected = (x.sum(0) + 0.5) / (len(x) + 1.0)
    assert torch.allclose(model.mu[0], expected, atol=1e-6)


def test_mixture_of_bernoullis_recovers_planted_prototypes():
    dm = FixedBinary(n=3000, d=30, k=2, seed=3)
    model = MixtureOfBernoullis(dm.info, components=2, pseudocount=0.0)
    fit(model, dm, 30)
    err = torch.cdist(model.mu, dm.protos).min(dim=1).values
    assert (err < 0.15 * dm.protos.shape[1] ** 0.5).all()


def test_sampling_matches_the_model():
    info = DataInfo("t", "t", DataSpace("binary", (5,)), {}, "x")
    model = MixtureOfBernoullis(info, components=2)
    model.mu.copy_(torch.tensor([[0.9] * 5, [0.1] * 5]))
    model.log_weights.copy_(torch.log(torch.tensor([0.25, 0.75])))
    torch.manual_seed(0)
    s = model.sample(40_000)
    assert s.mean().item() == pytest.approx(0.25 * 0.9 + 0.75 * 0.1, abs=0.01)
    # the exact pmf sums to one over all 32 binary vectors
    grid = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 5)
    assert model.log_prob(grid).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
