"""The pieces of semi-supervised adversarial learning (issue 26): the (K+1)-class losses on hand-worked cases, feature
matching's gradients, and labels as data."""

import math

import pytest
import torch

from genbench.core.errors import DataError
from genbench.data.labels import SemiSupervisedBatches, labelled_subset
from genbench.models.semi_supervised import (feature_matching_loss, real_logit, supervised_loss,
                                             unsupervised_loss)


def test_the_k_plus_one_losses_on_a_hand_worked_case():
    # logits (log 1, log 3) → Z = 4, D = 4/5; p(y=1 | x, y ≤ K) = 3/4
    real = torch.log(torch.tensor([[1.0, 3.0]]))
    fake = torch.log(torch.tensor([[0.5, 0.5]]))  # Z = 1, D = 1/2
    assert real_logit(real).item() == pytest.approx(math.log(4))
    assert supervised_loss(real, torch.tensor([1])).item() == pytest.approx(-math.log(3 / 4))
    assert unsupervised_loss(real, fake).item() == pytest.approx(-math.log(4 / 5) - math.log(1 / 2))


def test_a_constant_on_all_k_logits_changes_the_real_fake_part_only():
    torch.manual_seed(0)
    logits, y, fake = torch.randn(8, 10), torch.randint(0, 10, (8,)), torch.randn(8, 10)
    shifted = logits + 2.5
    assert supervised_loss(shifted, y).item() == pytest.approx(supervised_loss(logits, y).item(), abs=1e-6)
    assert unsupervised_loss(shifted, fake).item() < unsupervised_loss(logits, fake).item()  # D(real) grew
    assert unsupervised_loss(logits, fake + 2.5).item() > unsupervised_loss(logits, fake).item()  # D(fake) grew
    big = torch.full((1, 3), 200.0)  # Z = 3e87: computed in log space, no overflow
    assert math.isfinite(unsupervised_loss(big, -big).item())


def test_feature_matching_moves_the_generator_only():
    torch.manual_seed(0)
    generator = torch.nn.Linear(4, 6)
    features = torch.nn.Linear(6, 5)  # the discriminator's feature layer
    real = torch.randn(32, 6)
    loss = feature_matching_loss(features(real), features(generator(torch.randn(32, 4))))
    generator_grads = torch.autograd.grad(loss, list(generator.parameters()), retain_graph=True)
    assert all(g.abs().sum() > 0 for g in generator_grads)
    # through the real side nothing flows: the loss of a detached fake batch has no gradient at all
    detached = feature_matching_loss(features(real), features(generator(torch.randn(32, 4))).detach())
    assert not detached.requires_grad
    a, b = torch.zeros(3, 2), torch.tensor([[1.0, -2.0]] * 3)
    assert feature_matching_loss(a, b).item() == pytest.approx((1 + 4) / 2)
    assert feature_matching_loss(a, b, "absolute").item() == pytest.approx((1 + 2) / 2)


def test_the_labelled_subset_is_balanced_seeded_and_from_the_given_split():
    labels = torch.arange(10).repeat(50)[torch.randperm(500, generator=torch.Generator().manual_seed(1))]
    picked = labelled_subset(labels, 3, seed=0)
    assert len(picked) == 30 and torch.bincount(labels[picked]).tolist() == [3] * 10
    assert picked.max() < len(labels)  # indices into the training split handed in, nothing else
    assert torch.equal(picked, labelled_subset(labels, 3, seed=0))  # the same for every model given the seed
    assert not torch.equal(picked, labelled_subset(labels, 3, seed=1))
    with pytest.raises(DataError, match="fewer than the 51 labels per class"):
        labelled_subset(labels, 51, seed=0)


def test_each_unlabelled_batch_comes_with_a_labelled_one():
    data, labels = torch.arange(25).float()[:, None], torch.arange(25) % 5
    labelled = labelled_subset(labels, 1, seed=0)
    batches = list(SemiSupervisedBatches(data, labels, labelled, batch_size=10))
    assert len(batches) == 3 and [len(u) for u, _, _ in batches] == [10, 10, 5]
    assert sorted(torch.cat([u for u, _, _ in batches]).flatten().tolist()) == list(range(25))  # all of the split
    for u, x, y in batches:
        assert len(x) == len(u) and set(x.flatten().long().tolist()) <= set(labelled.tolist())
        assert torch.equal(y, labels[x.flatten().long()])
