"""What every data module declares, and the batching they share.

A data module holds its splits as tensors in memory (every dataset in the
suite fits) and yields plain batches ``x`` (no labels: the models are
unconditional; labels stay available through :meth:`TensorDataModule.labels`),
except for a semi-supervised run (``labels_per_class``), whose batches add a
few labelled examples (:mod:`genbench.data.labels`).
Batches are drawn by indexing the split tensor with a whole index list, so no
Python loop runs per example.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler

from ..core.bernoulli import bernoulli
from ..core.distributed import world_size
from ..core.errors import ConfigError, DataError
from .labels import SemiSupervisedBatches, labelled_subset

SPACES = ("binary", "discrete", "continuous")


@dataclass(frozen=True)
class DataSpace:
    """Where the data lives, which decides how NLL becomes bits/dim.

    * ``binary``: {0,1}^D; NLL in nats is exact for a pmf; bits/dim = NLL/(D ln 2).
    * ``discrete``: integers {0, ..., levels-1}^D (8-bit images: levels = 256).
      A continuous density is scored on the dequantized x + u, u ~ U[0,1)^D,
      which upper-bounds the discrete NLL.
    * ``continuous``: R^D; NLL in nats per point.
    """

    kind: str
    shape: tuple[int, ...]
    levels: int | None = None

    def __post_init__(self):
        if self.kind not in SPACES:
            raise ConfigError(f"data space kind {self.kind!r} is not one of {SPACES}")
        if (self.kind == "discrete") != (self.levels is not None):
            raise ConfigError("a discrete data space needs `levels`; other spaces take none")

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def __str__(self) -> str:
        levels = f", {self.levels} levels" if self.levels else ""
        return f"{self.kind} {'x'.join(map(str, self.shape))}{levels}"


@dataclass(frozen=True)
class DataInfo:
    """The facts models and evaluators need about a data module.

    ``variant`` names the exact data protocol (e.g. ``mnist/dynamic``), and is
    printed beside every number so that protocols are never silently mixed.
    ``mixture`` is the true :class:`~genbench.data.gmm2d.GaussianMixture` for
    2D mixtures (None otherwise). ``train_mean`` is the per-dimension mean of
    the training split in the data space (base rates for RBM AIS, init of
    output biases). ``classes``: how many classes the training labels have
    (None for unlabelled data).
    """

    name: str
    variant: str
    space: DataSpace
    sizes: dict[str, int]
    checksum: str
    train_mean: torch.Tensor | None = field(default=None, repr=False, compare=False)
    mixture: Any = field(default=None, repr=False, compare=False)
    classes: int | None = None

    @property
    def dim(self) -> int:
        return self.space.dim

    @property
    def shape(self) -> tuple[int, ...]:
        return self.space.shape


def tensor_checksum(*tensors: torch.Tensor) -> str:
    """A short sha1 of tensors' bytes: identifies exactly which data a run saw."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _IndexedSplit(Dataset):
    """A split whose ``__getitem__`` takes a whole list of indices (one batch)."""

    def __init__(self, data: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index):
        x = self.data[torch.as_tensor(index)].float()  # 8-bit images stay uint8 in memory
        return self.transform(x) if self.transform is not None else x


class _ShuffledBatches(Sampler):
    """Batches of a fresh random permutation each epoch, as index tensors: the batches of ``BatchSampler(
    RandomSampler(data), batch_size)`` exactly (the same draw from torch's RNG seeds the same permutation), without
    building each batch from Python ints (a tenth of a millisecond per step, a few % of a small model's update)."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        yield from torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).split(self.batch_size)


def shuffled_loader(data: torch.Tensor, batch_size: int, transform=None) -> DataLoader:
    """The training loader on one device: reshuffled batches of ``data`` each epoch, ``transform`` applied to each."""
    return DataLoader(_IndexedSplit(data, transform), sampler=_ShuffledBatches(len(data), batch_size), batch_size=None,
                      num_workers=0)


class ResidentBatches:
    """The training split on the training device for each epoch (one copy per epoch, released when the epoch's
    iteration ends, so evaluation has the memory back), its shuffled batches gathered there and ``transform``
    (dynamic binarization, flips) applied there: no loader and no copy to the device per step, which bound small
    models on a GPU. Each epoch draws what :func:`shuffled_loader` draws from torch's RNG (its iterator's base
    seed, then the permutation's seed), so the order of the batches is the loader's, and on the CPU the batches
    themselves; on a GPU ``transform`` draws from the GPU's stream (seeded by the run's seed as well)."""

    def __init__(self, data: torch.Tensor, batch_size: int, transform=None, device: torch.device | str = "cpu"):
        self.data, self.batch_size, self.transform, self.device = data, batch_size, transform, torch.device(device)

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()  # the base seed a DataLoader's iterator draws
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(seed)).to(self.device)
        data = self.data.to(self.device)  # 8-bit images stay uint8 on the device
        for index in order.split(self.batch_size):
            x = data[index].float()
            yield self.transform(x) if self.transform is not None else x


RESIDENT_SHARE = 0.25
"""A training split is kept on a GPU when it takes at most this share of the GPU's free memory."""


def resident_device(trainer, data: torch.Tensor) -> torch.device | None:
    """The device to keep ``data`` on while ``trainer`` trains: its root device when that is not the CPU, it
    trains on one device (DDP ranks shard one shuffle through the loader) and the split fits; else None."""
    device = trainer.strategy.root_device if trainer is not None else None
    if device is None or device.type == "cpu" or trainer.world_size > 1:
        return None
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if data.numel() * data.element_size() > RESIDENT_SHARE * free:
            return None
    return device


class TensorDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`load` (returns the split tensors).

    Subclasses set ``name`` and return from :meth:`space` their data space;
    ``train_transform`` (e.g. dynamic binarization, resampled every time an
    example is seen) applies to the training split only: validation and test
    splits are fixed tensors so that every model is scored on the same data.
    """

    name: str = "?"

    def __init__(self, batch_size: int = 100, eval_batch_size: int = 1000, seed: int = 0,
                 labels_per_class: int | None = None, labels_seed: int | None = None):
        super().__init__()
        if labels_per_class is not None and labels_per_class < 1:
            raise ConfigError(f"data.labels_per_class must be a positive count of labelled training examples per "
                              f"class (or null: no labels), got {labels_per_class}")
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.labels_per_class, self.labels_seed = labels_per_class, labels_seed
        self.splits: dict[str, torch.Tensor] | None = None
        self.split_labels: dict[str, torch.Tensor] = {}

    # -- what subclasses provide -------------------------------------------------
    @property
    def variant(self) -> str:
        return self.name

    def space(self) -> DataSpace:
        raise NotImplementedError

    def load(self) -> dict[str, torch.Tensor]:
        """Return {'train': ..., 'val': ..., 'test': ...} (val may be absent)."""
        raise NotImplementedError

    train_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    mixture: Any = None
    resident: bool | None = None  # keep the training split on the training device: None = when not on the CPU

    # -- shared machinery ----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = {k: v for k, v in self.load().items() if v is not None}
            for name, x in splits.items():
                if x.is_floating_point() and not torch.isfinite(x).all():
                    bad = (~torch.isfinite(x)).nonzero()[0].tolist()
                    raise DataError(f"the {name!r} split of {self.variant} holds {int((~torch.isfinite(x)).sum())} "
                                    f"non-finite values (NaN or ±inf; the first at index {bad}). Every model would "
                                    f"score NaN on it: check the data files (their checksums) or the data config "
                                    f"(e.g. a custom mixture's means, std or covariances).")
            self.splits = splits

    @property
    def info(self) -> DataInfo:
        self.setup()
        train = self.splits["train"].float()
        return DataInfo(
            name=self.name,
            variant=self.variant,
            space=self.space(),
            sizes={k: int(v.shape[0]) for k, v in self.splits.items()},
            checksum=tensor_checksum(*(self.splits[k] for k in sorted(self.splits))),
            train_mean=train.mean(0),
            mixture=self.mixture,
            classes=int(self.split_labels["train"].max()) + 1 if "train" in self.split_labels else None,
        )

    def split(self, name: str) -> torch.Tensor:
        """The fixed tensor of a split (the training split before its transform), as stored (uint8 for images)."""
        self.setup()
        if name not in self.splits:
            raise ConfigError(f"{self.variant} has no {name!r} split; it has {sorted(self.splits)}")
        return self.splits[name]

    def labels(self, name: str) -> torch.Tensor | None:
        self.setup()
        return self.split_labels.get(name)

    def _loader(self, name: str, shuffle: bool, batch_size: int, transform=None) -> DataLoader:
        if shuffle and world_size() == 1:
            return shuffled_loader(self.split(name), batch_size, transform)
        ds = _IndexedSplit(self.split(name), transform)
        if shuffle:  # several devices: disjoint shards of one shuffle (the data seed's; Lightning sets its epoch)
            base = DistributedSampler(ds, shuffle=True, seed=self.seed)
        else:
            base = SequentialSampler(ds)
        sampler = BatchSampler(base, batch_size=batch_size, drop_last=False)
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0)

    def labelled_subset(self) -> torch.Tensor:
        """The training examples whose labels a semi-supervised run sees (seeded by ``labels_seed``, the run's seed)."""
        labels = self.labels("train")
        if labels is None:
            raise DataError(f"{self.variant} has no training labels, so data.labels_per_class cannot draw a labelled "
                            f"subset; semi-supervised runs take labelled data (digits, mnist, cifar10, svhn)")
        return labelled_subset(labels, self.labels_per_class, self.labels_seed or 0)

    def train_dataloader(self) -> DataLoader | ResidentBatches | SemiSupervisedBatches:
        """Shuffled batches of the training split: kept on the training device and drawn there
        (:class:`ResidentBatches`) when it is not the CPU and the split fits, else through the loader; with
        ``labels_per_class``, each beside a labelled batch (:class:`SemiSupervisedBatches`, one device)."""
        self.setup()  # the training transform is known only once the data is loaded
        data = self.split("train")
        if self.labels_per_class is not None:
            if world_size() > 1:
                raise ConfigError("semi-supervised batches (data.labels_per_class) are drawn on one device; "
                                  "train them with trainer.devices=1")
            return SemiSupervisedBatches(data, self.labels("train"), self.labelled_subset(), self.batch_size,
                                         self.train_transform)
        device = resident_device(self.trainer, data) if self.resident is None else (
            self.trainer.strategy.root_device if self.resident and self.trainer is not None
            and self.trainer.world_size == 1 else None)
        if device is not None:
            return ResidentBatches(data, self.batch_size, self.train_transform, device)
        return self._loader("train", True, self.batch_size, self.train_transform)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader("val", False, self.eval_batch_size) if "val" in self.splits else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)


def dynamic_binarize(x: torch.Tensor) -> torch.Tensor:
    """Bernoulli sample with the pixel intensities (in [0,1]) as probabilities.

    ``rand < p`` (:func:`~genbench.core.bernoulli.bernoulli`) rather than ``torch.bernoulli``:
    the same distribution, about 2.5x faster on CPU, which matters when every epoch
    resamples all of MNIST.
    """
    return bernoulli(x.float())


def seeded_split(n: int, sizes: dict[str, int], seed: int) -> dict[str, torch.Tensor]:
    """Disjoint index sets of the given sizes from a seeded permutation of range(n)."""
    if sum(sizes.values()) > n:
        raise ConfigError(f"split sizes {sizes} exceed the {n} available examples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = perm[start : start + size]
        start += size
    return out
