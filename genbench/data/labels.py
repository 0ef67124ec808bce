"""Labels as data for semi-supervised learning (Salimans et al. 2016; Dumoulin 2018 §5.4.3).

A semi-supervised run sees a few labels: ``per_class`` training examples of each class, drawn by
:func:`labelled_subset` from the training split only (never validation or test), by a permutation seeded with the
run's seed, so every model given a seed learns from the same labelled examples and another seed draws others. As in
Salimans et al.'s code (``train_mnist_feature_matching.py``), the unlabelled stream is the whole training split, the
labelled examples included, and each epoch the labelled subset is reshuffled and tiled to the unlabelled stream's
length, so that every step sees one unlabelled and one labelled batch (:class:`SemiSupervisedBatches`).
"""

from __future__ import annotations

import torch

from ..core.errors import DataError


def labelled_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices into the training split: the first ``per_class`` examples of each class in a permutation of the
    split seeded by ``seed``. A class with fewer examples is a mistake, said in one paragraph."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = []
    for k in labels.unique().tolist():
        of_k = order[labels[order] == k][:per_class]
        if len(of_k) < per_class:
            raise DataError(f"the training split has {len(of_k)} examples of class {k}, fewer than the "
                            f"{per_class} labels per class asked for (data.labels_per_class); ask for at most "
                            f"{len(of_k)}")
        picked.append(of_k)
    return torch.cat(picked).sort().values


class SemiSupervisedBatches:
    """Per epoch: (unlabelled batch, labelled batch, its labels) for each batch of a shuffle of the whole training
    split; the labelled batches come from the labelled subset reshuffled and tiled to as many batches. Both
    permutations are drawn from torch's CPU stream, so a seeded run sees the same batches."""

    def __init__(self, data: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor, batch_size: int,
                 transform=None):
        self.data, self.labels, self.labelled = data, labels, labelled
        self.batch_size, self.transform = batch_size, transform

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self):
        unlabelled = torch.randperm(len(self.data)).split(self.batch_size)
        tiles = -(-len(self.data) // len(self.labelled))
        labelled = torch.cat([self.labelled[torch.randperm(len(self.labelled))] for _ in range(tiles)])
        for i, index in enumerate(unlabelled):
            lab = labelled[i * self.batch_size: i * self.batch_size + len(index)]
            yield self._x(index), self._x(lab), self.labels[lab]

    def _x(self, index: torch.Tensor) -> torch.Tensor:
        x = self.data[index]
        return self.transform(x) if self.transform is not None else x
