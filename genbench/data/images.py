"""CIFAR-10 and SVHN: 32x32 colour images with 8-bit pixels, through torchvision.

Both are a discrete data space (3, 32, 32) with 256 levels, stored as uint8
(batches come out as float32 holding the integers 0..255; models dequantize and rescale them; see
docs/design.md, "Data spaces"). Splits: train = the official training images minus
the last ``val_size`` (default 0, as in the published protocols), val = those
last ``val_size``, test = the official test images. ``hflip=True`` flips each
training image horizontally with probability 1/2 every time it is seen (Real
NVP's CIFAR-10 augmentation); it never touches validation or test data, so
scores stay comparable, but it is a different training protocol.

Files, in torchvision's own layout under the data root (an existing
torchvision root works as is):

* CIFAR-10: ``cifar-10-python.tar.gz`` (extracted beside itself into
  ``cifar-10-batches-py/``);
* SVHN: ``train_32x32.mat``, ``test_32x32.mat`` and, with ``extra=True``,
  ``extra_32x32.mat`` (1.3 GB; 531,131 more training images, appended to the
  training split after the validation images were split off the official
  training set, so that validation stays on the harder official images).

The archives are verified against :data:`CIFAR10_FILES` / :data:`SVHN_FILES`
(torchvision's md5s) before torchvision sees them, and every torchvision call
is wrapped so that its failures become :class:`~genbench.data.files.ChecksumError`
with advice rather than a traceback.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torchvision.datasets import CIFAR10, SVHN
from torchvision.datasets.utils import extract_archive

from ..core.errors import ConfigError
from ..core.paths import data_root
from .base import DataSpace, TensorDataModule
from .files import RemoteFile, require_files, torchvision_errors

CIFAR10_FILES = {CIFAR10.filename: CIFAR10.tgz_md5}
SVHN_FILES = {filename: md5 for _, filename, md5 in SVHN.split_list.values()}
SVHN_URLS = {filename: url for url, filename, _ in SVHN.split_list.values()}


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    """Flip each image of a batch [B, C, H, W] left-right with probability 1/2 (one batched op)."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(-1), x)


class _ImageDataModule(TensorDataModule):
    """Shared splitting, data space and augmentation; subclasses read the official splits."""

    def __init__(self, root: str | os.PathLike | None = None, val_size: int = 0, hflip: bool = False,
                 download: bool = True, **kw):
        super().__init__(**kw)
        self.root, self.val_size, self.hflip, self.download = data_root(root), val_size, hflip, download
        self.train_transform = random_hflip if hflip else None

    def space(self) -> DataSpace:
        return DataSpace("discrete", (3, 32, 32), levels=256)

    def read(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{'train', 'test', optionally 'extra'}: (uint8 images [N,3,32,32], int labels [N])."""
        raise NotImplementedError

    def load(self) -> dict[str, torch.Tensor]:
        parts = self.read()
        (train_x, train_y), n = parts["train"], len(parts["train"][0])
        if not 0 <= self.val_size < n:
            raise ConfigError(f"val_size must be in [0, {n}), got {self.val_size}")
        cut = n - self.val_size
        splits = {"train": (train_x[:cut], train_y[:cut]), "test": parts["test"]}
        if self.val_size:
            splits["val"] = (train_x[cut:], train_y[cut:])
        if "extra" in parts:
            splits["train"] = tuple(np.concatenate([a, b]) for a, b in zip(splits["train"], parts["extra"]))
        self.split_labels = {k: torch.as_tensor(y, dtype=torch.long) for k, (_, y) in splits.items()}
        return {k: torch.from_numpy(np.ascontiguousarray(x)) for k, (x, _) in splits.items()}


class CIFAR10DataModule(_ImageDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test images."""

    name = "cifar10"

    def read(self):
        (path,) = require_files(self.root, [RemoteFile(f, CIFAR10.url, "md5", d) for f, d in CIFAR10_FILES.items()],
                                self.download, "CIFAR-10").values()
        with torchvision_errors("CIFAR-10", self.root):
            try:
                sets = {s: CIFAR10(str(self.root), train=s == "train", download=False) for s in ("train", "test")}
            except RuntimeError:  # not extracted yet (or a partial extraction): extract the verified archive
                extract_archive(str(path), str(self.root))
                sets = {s: CIFAR10(str(self.root), train=s == "train", download=False) for s in ("train", "test")}
        # torchvision keeps CIFAR-10 as HWC arrays; the suite uses CHW
        return {s: (d.data.transpose(0, 3, 1, 2), np.asarray(d.targets)) for s, d in sets.items()}


class SVHNDataModule(_ImageDataModule):
    """SVHN cropped digits (Netzer et al. 2011): 73,257 training and 26,032 test images.

    ``extra=True`` adds the 531,131 "extra" images to the training split. Labels
    follow torchvision (digit 0 is label 0, not the files' 10).
    """

    name = "svhn"

    def __init__(self, extra: bool = False, **kw):
        super().__init__(**kw)
        self.extra = extra

    @property
    def variant(self) -> str:
        return "svhn+extra" if self.extra else "svhn"

    def read(self):
        splits = ("train", "test", "extra") if self.extra else ("train", "test")
        names = [SVHN.split_list[s][1] for s in splits]
        require_files(self.root, [RemoteFile(f, SVHN_URLS[f], "md5", SVHN_FILES[f]) for f in names],
                      self.download, "SVHN")
        with torchvision_errors("SVHN", self.root):
            sets = {s: SVHN(str(self.root), split=s, download=False) for s in splits}
        return {s: (d.data, d.labels) for s, d in sets.items()}
