"""MNIST in the five protocols the compared papers use.

Variants (the ``variant`` argument; the data protocol is printed as ``mnist/<variant>``):

* ``grey``: the 8-bit images, a discrete data space with 256 levels (flows
  dequantize them; see docs/design.md, "Data spaces").
* ``dynamic``, ``fixed``, ``threshold``: binary images from the intensities
  x/255 by :func:`~genbench.data.binarize.binarize_splits` (``dynamic``
  resamples the training images every time they are seen; its validation
  and test sets are one Bernoulli sample seeded by ``binarize_seed``).
* ``larochelle``: the official fixed binarization of Larochelle & Murray
  (2011), 50,000 / 10,000 / 10,000 images, the split NADE, MADE and PixelCNN
  report on. It is *not* interchangeable with ``fixed`` (a different sample,
  and 10,000 training images fewer).

Splits of the torchvision-based variants: train = the 60,000 training images
minus the last ``val_size`` (default 0: the published protocols train on all
60,000 and have no validation set), val = those last ``val_size`` images,
test = the 10,000 test images. Labels are in ``split_labels``.

Files, under the data root (:func:`genbench.core.paths.data_root`):

* ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``: torchvision's
  layout, so an existing torchvision root works as is. The shared copy's
  layout (``mnist/*.gz``, what ``make data-link`` links) is accepted too.
* ``binarized_mnist/binarized_mnist_{train,valid,test}.amat``.

How the IDX files are read: torchvision's ``MNIST`` class checks the archives
against its own hard-coded md5s, which would refuse the small files the tests
generate and fail with torchvision's own messages. So we verify the archives
ourselves against :data:`MNIST_FILES` (tests monkeypatch it), decompress each
``.gz`` into a temporary folder (never under the data root, which may be a
shared copy), and parse them with torchvision's own IDX readers
(``read_image_file`` / ``read_label_file``). One code path serves the real
files and the test files.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import MNIST as _TorchvisionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from ..core.errors import ChecksumError, ConfigError
from ..core.paths import data_root
from .binarize import BINARIZATIONS, binarize_splits
from .base import DataSpace, TensorDataModule
from .files import RemoteFile, require_files, torchvision_errors

VARIANTS = ("grey", *BINARIZATIONS, "larochelle")

#: md5 of the four official archives (torchvision's ``MNIST.resources``).
MNIST_FILES = dict(_TorchvisionMNIST.resources)
#: torchvision's mirrors, tried in order for a missing archive.
MNIST_MIRRORS = tuple(_TorchvisionMNIST.mirrors)

#: sha1 of the official fixed-binarization files (Larochelle & Murray 2011).
LAROCHELLE_FILES = {
    "binarized_mnist_train.amat": "cf70514ec5f481e54ad3eb0e6c03c83326ff96f8",
    "binarized_mnist_valid.amat": "13418487742e6ea6d48db7b5187353a20b1b1f8c",
    "binarized_mnist_test.amat": "ca70bd7775e182596dec148d4dc1bc6bd6c4c5f4",
}
LAROCHELLE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"


class MNISTDataModule(TensorDataModule):
    """MNIST in one of :data:`VARIANTS` (see the module docstring); files are checked on every load."""

    name = "mnist"

    def __init__(self, variant: str = "dynamic", root: str | os.PathLike | None = None, val_size: int = 0,
                 binarize_seed: int = 0, download: bool = True, **kw):
        super().__init__(**kw)
        if variant not in VARIANTS:
            raise ConfigError(f"unknown mnist variant {variant!r}; valid: {', '.join(VARIANTS)}")
        if variant == "larochelle" and val_size:
            raise ConfigError("mnist/larochelle has fixed official splits (50,000 / 10,000 / 10,000); "
                             "leave val_size at 0 (its validation set is the official one)")
        self._variant, self.root, self.val_size = variant, data_root(root), val_size
        self.binarize_seed, self.download = binarize_seed, download

    @property
    def variant(self) -> str:
        return f"mnist/{self._variant}"

    def space(self) -> DataSpace:
        if self._variant == "grey":
            return DataSpace("discrete", (1, 28, 28), levels=256)
        return DataSpace("binary", (1, 28, 28))

    def load(self) -> dict[str, torch.Tensor]:
        if self._variant == "larochelle":
            folder = self.root / "binarized_mnist"
            paths = require_files(folder, [RemoteFile(f, LAROCHELLE_URL + f, "sha1", d)
                                           for f, d in LAROCHELLE_FILES.items()],
                                  self.download, "Binarized MNIST (Larochelle & Murray)")
            return {split: read_amat(paths[f"binarized_mnist_{name}.amat"])
                    for split, name in (("train", "train"), ("val", "valid"), ("test", "test"))}

        images, labels = self._read_archives()
        n = images["train"].shape[0]
        if not 0 <= self.val_size < n:
            raise ConfigError(f"val_size must be in [0, {n}), got {self.val_size}")
        cut = n - self.val_size
        index = {"train": slice(0, cut), "val": slice(cut, n)} if self.val_size else {"train": slice(0, n)}
        x = {k: images["train"][s] for k, s in index.items()} | {"test": images["test"]}
        self.split_labels = {k: labels["train"][s] for k, s in index.items()} | {"test": labels["test"]}
        x = {k: v.reshape(-1, 1, 28, 28) for k, v in x.items()}
        if self._variant == "grey":
            return x  # uint8 in memory, float32 batches
        splits, self.train_transform = binarize_splits({k: v.float() / 255 for k, v in x.items()},
                                                       self._variant, self.binarize_seed)
        return splits

    def _read_archives(self):
        """uint8 images [N,28,28] and int64 labels of the train and test archives."""
        folder = self.raw_folder()
        files = [RemoteFile(f, [m + f for m in MNIST_MIRRORS], "md5", d) for f, d in MNIST_FILES.items()]
        paths = require_files(folder, files, self.download, "MNIST")
        images, labels = {}, {}
        with torchvision_errors("MNIST", folder):
            for split, prefix in (("train", "train"), ("test", "t10k")):
                images[split] = _read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"], read_image_file)
                labels[split] = _read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"], read_label_file)
                if images[split].shape[0] != labels[split].shape[0]:
                    raise ChecksumError(f"MNIST {split} files in {folder} disagree: "
                                        f"{images[split].shape[0]} images but {labels[split].shape[0]} labels")
        return images, labels

    def raw_folder(self) -> Path:
        """``<root>/MNIST/raw`` (torchvision's layout), or ``<root>/mnist`` when only that one has the files."""
        tv, shared = self.root / "MNIST" / "raw", self.root / "mnist"
        complete = {d: all((d / f).is_file() for f in MNIST_FILES) for d in (tv, shared)}
        return shared if complete[shared] and not complete[tv] else tv


def _read_idx(gz: Path, reader):
    """Run torchvision's IDX ``reader`` on ``gz`` decompressed into a temporary folder.

    Nothing is written under the data root: it may be a shared, read-only copy.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / gz.with_suffix("").name
        with gzip.open(gz, "rb") as fin, open(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)
        return reader(str(out))


def read_amat(path: str | os.PathLike) -> torch.Tensor:
    """Parse an ``.amat`` file of 0/1 values into a float tensor [N, 1, 28, 28].

    ``np.loadtxt`` takes about a minute on the 50,000-line training file; here
    the file is read as bytes, whitespace is dropped with one mask, and the
    remaining ``'0'``/``'1'`` characters are the values (any other character is
    an error), which takes a fraction of a second.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    chars = raw[raw > ord(" ")]  # drops space, tab, CR, LF
    lines = int(np.count_nonzero(raw == ord("\n"))) + int(raw.size > 0 and raw[-1] != ord("\n"))
    if ((chars | 1) != ord("1")).any() or chars.size != lines * 784:
        raise ChecksumError(f"{path} is not a binarized MNIST .amat file ({lines} lines of 784 "
                            "space-separated 0/1 values expected); delete it and download it again "
                            f"from {LAROCHELLE_URL}{Path(path).name}")
    return torch.from_numpy(chars - ord("0")).reshape(-1, 1, 28, 28).float()
