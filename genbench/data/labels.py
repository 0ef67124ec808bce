"""Labels as data for semi-supervised learning (Salimans et al. 2016; Dumoulin 2018 §5.4.3).

A semi-supervised run sees a few labels: ``per_class`` training examples of each class, drawn by
:func:`labelled_subset` from the training split only (never validation or test), by a permutation seeded with the
run's seed, so every model given a seed learns from the same labelled examples and another seed draws others. As in
Salimans et al.'s code (``train_mnist_feature_matching.py``), the unlabelled stream is the whole training split, the
labelled examples included, and each epoch the labelled subset is reshuffled and tiled to the unlabelled stream's
length, so that every step sees one unlabelled and one labelled batch (:class:`SemiSupervisedBatches`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..core.errors import DataError


def labelled_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices into the training split: the first ``per_class`` examples of each class in a permutation of the
    split seeded by ``seed``. A class with fewer examples is a mistake, said in one paragraph."""
    classes, counts = labels.unique(return_counts=True)
    if per_class > int(counts.min()):
        k = int(classes[counts.argmin()])
        raise DataError(f"the training split has {int(counts.min())} examples of class {k}, fewer than the "
                        f"{per_class} labels per class asked for (data.labels_per_class); ask for at most "
                        f"{int(counts.min())}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = [order[labels[order] == k][:per_class] for k in classes.tolist()]
    return torch.cat(picked).sort().values


class SemiSupervisedBatch(NamedTuple):
    """One step's data: an unlabelled batch, a labelled batch with its labels, and a second unlabelled batch from an
    independent shuffle (the real side of feature matching, as Salimans' code draws it)."""

    unlabelled: torch.Tensor
    labelled: torch.Tensor
    labels: torch.Tensor
    unlabelled_again: torch.Tensor


class SemiSupervisedBatches:
    """Per epoch: a :class:`SemiSupervisedBatch` for each batch of a shuffle of the whole training split; the labelled
    batches come from the labelled subset reshuffled and tiled to as many batches, the second unlabelled batches from
    another shuffle. Every permutation is drawn from torch's CPU stream, so a seeded run sees the same batches."""

    def __init__(self, data: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor, batch_size: int,
                 transform=None):
        self.data, self.labels, self.labelled = data, labels, labelled
        self.batch_size, self.transform = batch_size, transform

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self):
        unlabelled = torch.randperm(len(self.data)).split(self.batch_size)
        again = torch.randperm(len(self.data)).split(self.batch_size)
        tiles = -(-len(self.data) // len(self.labelled))
        labelled = torch.cat([self.labelled[torch.randperm(len(self.labelled))] for _ in range(tiles)])
        for i, index in enumerate(unlabelled):
            lab = labelled[i * self.batch_size: i * self.batch_size + len(index)]
            yield SemiSupervisedBatch(self._x(index), self._x(lab), self.labels[lab], self._x(again[i]))

    def _x(self, index: torch.Tensor) -> torch.Tensor:
        x = self.data[index].float()  # 8-bit images stay uint8 in memory
        return self.transform(x) if self.transform is not None else x
