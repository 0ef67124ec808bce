"""File-backed data modules (MNIST, binarized MNIST, CIFAR-10, SVHN) on small files written here.

The tests write tiny files in the official formats, point the checksum tables
at them, and replace the one network function with a failure, so they never
touch the network. Real MNIST is tested separately (marker ``mnist``) when a
copy is found in the data root or in ``../shared/data``.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import tarfile
import traceback
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.data import build_datamodule, files, images, mnist
from genbench.data.files import file_digest
from genbench.data.images import CIFAR10DataModule, SVHNDataModule, random_hflip
from genbench.data.mnist import MNISTDataModule
from genbench.core.errors import ChecksumError, DataUnavailableError
from helpers import REPO

N_TRAIN, N_TEST = 30, 10
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every download fails as on an offline machine; the attempted URLs are recorded."""
    attempts = []

    def fail(url, path, timeout=60):
        attempts.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(files, "download_file", fail)
    return attempts


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (big-endian magic 0x0000080<ndim>, then the dims, then uint8 data), gzipped."""
    header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_raw(tmp_path, monkeypatch):
    """A data root with tiny MNIST archives in torchvision's layout; returns (root, arrays)."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8)}
    arrays["train-images-idx3-ubyte"][0, 0, :2] = [0, 255]  # both extremes occur
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, a in arrays.items():
        write_idx(raw / f"{name}.gz", a)
    monkeypatch.setattr(mnist, "MNIST_FILES", {f"{n}.gz": file_digest(raw / f"{n}.gz") for n in arrays})
    return tmp_path, arrays


def only_values(t: torch.Tensor, values) -> bool:
    return set(t.unique().tolist()) <= set(values)


# -- MNIST from IDX archives -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["grey", "dynamic", "fixed", "threshold"])
def test_mnist_variant_shapes_spaces_values(mnist_raw, variant):
    root, arrays = mnist_raw
    dm = MNISTDataModule(variant, root=root, batch_size=8, eval_batch_size=4)
    info = dm.info
    assert info.variant == f"mnist/{variant}" and info.sizes == {"train": N_TRAIN, "test": N_TEST}
    assert dm.labels("test").tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    batch, test_batch = next(iter(dm.train_dataloader())), next(iter(dm.test_dataloader()))
    assert batch.shape == (8, 1, 28, 28) and test_batch.shape == (4, 1, 28, 28)
    assert batch.dtype == test_batch.dtype == torch.float32
    if variant == "grey":
        assert info.space.kind == "discrete" and info.space.levels == 256 and info.space.shape == (1, 28, 28)
        expected = torch.as_tensor(arrays["train-images-idx3-ubyte"]).float()
        assert torch.equal(dm.split("train")[:, 0], expected)  # the integers 0..255 themselves
        assert dm.split("train").min() == 0 and dm.split("train").max() == 255
    else:
        assert info.space.kind == "binary" and info.space.shape == (1, 28, 28) and info.space.levels is None
        assert only_values(batch, {0.0, 1.0}) and only_values(dm.split("test"), {0.0, 1.0})
    if variant == "threshold":
        expected = torch.as_tensor(arrays["t10k-images-idx3-ubyte"] / 255 >= 0.5).float()
        assert torch.equal(dm.split("test")[:, 0], expected)


def test_mnist_val_size_splits_off_the_end_of_train(mnist_raw):
    root, arrays = mnist_raw
    dm = MNISTDataModule("grey", root=root, val_size=5)
    assert dm.info.sizes == {"train": N_TRAIN - 5, "val": 5, "test": N_TEST}
    assert torch.equal(dm.split("val")[:, 0], torch.as_tensor(arrays["train-images-idx3-ubyte"][-5:]).float())
    assert dm.labels("val").tolist() == arrays["train-labels-idx1-ubyte"][-5:].tolist()
    with pytest.raises(ValueError, match="val_size"):
        MNISTDataModule("grey", root=root, val_size=N_TRAIN).setup()


def test_mnist_dynamic_resamples_train_but_not_test(mnist_raw):
    dm = MNISTDataModule("dynamic", root=mnist_raw[0], binarize_seed=3)
    dm.setup()  # as the Trainer does (see test_train_dataloader_before_setup)
    every = list(range(N_TRAIN))
    first, second = (dm.train_dataloader().dataset[every] for _ in range(2))
    assert only_values(first, {0.0, 1.0}) and not torch.equal(first, second)
    tests = [torch.cat(list(dm.test_dataloader())) for _ in range(2)]
    again = MNISTDataModule("dynamic", root=mnist_raw[0], binarize_seed=3)
    assert torch.equal(tests[0], tests[1]) and torch.equal(tests[0], again.split("test"))


def test_train_dataloader_before_setup(mnist_raw):
    dm = MNISTDataModule("dynamic", root=mnist_raw[0])
    assert only_values(next(iter(dm.train_dataloader())), {0.0, 1.0})


def test_mnist_fixed_is_the_same_for_the_same_seed(mnist_raw):
    a, b, c = (MNISTDataModule("fixed", root=mnist_raw[0], binarize_seed=s) for s in (7, 7, 8))
    assert torch.equal(a.split("train"), b.split("train")) and torch.equal(a.split("test"), b.split("test"))
    assert not torch.equal(a.split("train"), c.split("train"))
    every = list(range(N_TRAIN))
    assert torch.equal(a.train_dataloader().dataset[every], a.split("train"))  # no resampling


def test_mnist_from_the_shared_layout_and_the_environment(mnist_raw, monkeypatch):
    """``<root>/mnist/*.gz`` (what `make data-link` links) works too, found through $GENBENCH_DATA."""
    root, arrays = mnist_raw
    os.rename(root / "MNIST" / "raw", root / "mnist")
    monkeypatch.setenv("GENBENCH_DATA", str(root))
    dm = build_datamodule({"name": "mnist", "variant": "grey"})
    assert torch.equal(dm.split("test")[:, 0], torch.as_tensor(arrays["t10k-images-idx3-ubyte"]).float())


def test_mnist_corrupt_archive_names_the_file_and_both_digests(mnist_raw):
    root, _ = mnist_raw
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    expected = mnist.MNIST_FILES[path.name]
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as err:
        MNISTDataModule("dynamic", root=root).setup()
    msg = str(err.value)
    assert path.name in msg and expected in msg and file_digest(path) in msg and "Delete" in msg


def test_mnist_unreadable_archive_is_a_checksum_error_not_a_torchvision_traceback(mnist_raw, monkeypatch):
    root, _ = mnist_raw
    path = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"not an IDX file at all")
    monkeypatch.setitem(mnist.MNIST_FILES, path.name, file_digest(path))  # passes our checksum
    with pytest.raises(ChecksumError, match="could not be read") as err:
        MNISTDataModule("grey", root=root).setup()
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "site-packages" not in "".join(traceback.format_exception(err.value))


def test_mnist_missing_and_offline_gives_one_clear_error(mnist_raw, offline):
    root, _ = mnist_raw
    (root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataUnavailableError) as err:
        MNISTDataModule("dynamic", root=root).setup()
    msg, folder = str(err.value), str((root / "MNIST" / "raw").absolute())
    assert "train-images-idx3-ubyte.gz" in msg and folder in msg and "offline" in msg
    assert f"{mnist.MNIST_MIRRORS[0]}train-images-idx3-ubyte.gz" in msg
    assert "GENBENCH_DATA" in msg and "data.root" in msg and "t10k-images" not in msg  # names only what is missing
    assert offline == [m + "train-images-idx3-ubyte.gz" for m in mnist.MNIST_MIRRORS]  # every mirror tried
    tb = "".join(traceback.format_exception(err.value))
    assert "site-packages" not in tb and "URLError" in msg and err.value.__context__ is None


def test_mnist_missing_with_download_off_does_not_try(tmp_path, offline):
    with pytest.raises(DataUnavailableError, match="download=False") as err:
        MNISTDataModule("grey", root=tmp_path, download=False).setup()
    assert "train-labels-idx1-ubyte.gz" in str(err.value) and offline == []


def test_mnist_download_falls_back_to_the_next_mirror(mnist_raw, monkeypatch):
    root, arrays = mnist_raw
    server = root / "server"
    shutil.move(root / "MNIST" / "raw", server)

    def fake_download(url, path, timeout=60):
        if url.startswith(mnist.MNIST_MIRRORS[0]):
            raise ConnectionResetError("first mirror down")
        shutil.copy(server / url.rsplit("/", 1)[1], path)

    monkeypatch.setattr(files, "download_file", fake_download)
    dm = MNISTDataModule("grey", root=root)
    assert dm.info.sizes == {"train": N_TRAIN, "test": N_TEST}
    assert sorted(p.name for p in (root / "MNIST" / "raw").glob("*.gz")) == sorted(mnist.MNIST_FILES)


# -- binarized MNIST (Larochelle) ------------------------------------------------------------------------

def write_amat(path: Path, bits: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(map(str, row)) for row in bits) + "\n")


@pytest.fixture
def amat_root(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    bits = {}
    for split, n in (("train", 5), ("valid", 4), ("test", 3)):
        bits[split] = rng.integers(0, 2, (n, 784))
        write_amat(folder / f"binarized_mnist_{split}.amat", bits[split])
    monkeypatch.setattr(mnist, "LAROCHELLE_FILES",
                        {p.name: file_digest(p, "sha1") for p in folder.glob("*.amat")})
    return tmp_path, bits


def test_larochelle_loads_the_amat_files(amat_root):
    root, bits = amat_root
    dm = MNISTDataModule("larochelle", root=root)
    assert dm.info.sizes == {"train": 5, "val": 4, "test": 3} and dm.info.space.kind == "binary"
    assert dm.variant == "mnist/larochelle"
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        assert dm.split(split).shape[1:] == (1, 28, 28)
        assert torch.equal(dm.split(split).reshape(-1, 784), torch.as_tensor(bits[name]).float())
    every = list(range(5))
    assert torch.equal(dm.train_dataloader().dataset[every], dm.split("train"))  # fixed: no resampling


def test_larochelle_rejects_a_malformed_file(amat_root, monkeypatch):
    root, _ = amat_root
    path = root / "binarized_mnist" / "binarized_mnist_test.amat"
    path.write_text(path.read_text().replace("1", "2", 1))
    monkeypatch.setitem(mnist.LAROCHELLE_FILES, path.name, file_digest(path, "sha1"))
    with pytest.raises(ChecksumError, match="binarized_mnist_test.amat"):
        MNISTDataModule("larochelle", root=root).setup()


def test_larochelle_missing_names_the_official_url(tmp_path):
    with pytest.raises(DataUnavailableError) as err:
        MNISTDataModule("larochelle", root=tmp_path).setup()
    msg = str(err.value)
    assert str(tmp_path / "binarized_mnist") in msg
    assert f"{mnist.LAROCHELLE_URL}binarized_mnist_valid.amat" in msg
    assert mnist.LAROCHELLE_URL.startswith("http://www.cs.toronto.edu/~larocheh/")


# -- CIFAR-10 and SVHN ------------------------------------------------------------------------------------

def test_cifar10_missing_archive_gives_the_clear_error(tmp_path, offline):
    with pytest.raises(DataUnavailableError) as err:
        CIFAR10DataModule(root=tmp_path).setup()
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg and "offline" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert offline == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert "site-packages" not in "".join(traceback.format_exception(err.value))


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A tiny archive in CIFAR-10's format (pickled batches of [N, 3072] uint8 rows, CHW order)."""
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(2)
    batches = {name: rng.integers(0, 256, (3, 3072), dtype=np.uint8)
               for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    members = {n: {"data": d, "labels": [1, 2, 3]} for n, d in batches.items()}
    members["batches.meta"] = {"label_names": [str(i) for i in range(10)]}
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, obj in members.items():
            blob = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    monkeypatch.setattr(images, "CIFAR10_FILES", {CIFAR10.filename: file_digest(tmp_path / CIFAR10.filename)})
    # torchvision also checks the extracted batches against its own md5s (None: existence only)
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", None] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", None]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": None})
    return tmp_path, batches


def test_cifar10_loads_extracts_and_splits(cifar_root):
    root, batches = cifar_root
    dm = CIFAR10DataModule(root=root, val_size=2, batch_size=4)
    info = dm.info
    assert info.sizes == {"train": 13, "val": 2, "test": 3} and dm.variant == "cifar10"
    assert info.space.kind == "discrete" and info.space.levels == 256 and info.space.shape == (3, 32, 32)
    train = np.concatenate([batches[f"data_batch_{i}"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert torch.equal(dm.split("val"), torch.as_tensor(train[-2:]).float())
    assert torch.equal(dm.split("test"), torch.as_tensor(batches["test_batch"]).reshape(-1, 3, 32, 32).float())
    assert dm.labels("val").tolist() == [2, 3] and next(iter(dm.train_dataloader())).dtype == torch.float32
    assert (root / "cifar-10-batches-py" / "data_batch_1").is_file()


def test_cifar10_corrupt_archive(cifar_root):
    root, _ = cifar_root
    with open(root / "cifar-10-python.tar.gz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ChecksumError, match="cifar-10-python.tar.gz"):
        CIFAR10DataModule(root=root).setup()


@pytest.fixture
def svhn_root(tmp_path, monkeypatch):
    """Tiny .mat files in SVHN's format: X is [32, 32, 3, N] (HWC, N last), y in 1..10 (10 is digit 0)."""
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    rng = np.random.default_rng(3)
    sizes, arrays = {"train": 6, "test": 4, "extra": 5}, {}
    for split, n in sizes.items():
        url, filename, _ = SVHN.split_list[split]
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (10 - np.arange(n)).reshape(n, 1)  # 10, 9, 8, ...
        savemat(tmp_path / filename, {"X": x, "y": y})
        arrays[split] = (x, y)
        monkeypatch.setitem(SVHN.split_list, split, [url, filename, None])  # torchvision: existence only
        monkeypatch.setitem(images.SVHN_FILES, filename, file_digest(tmp_path / filename))
    return tmp_path, arrays


def test_svhn_loads_with_and_without_extra(svhn_root):
    root, arrays = svhn_root
    dm = SVHNDataModule(root=root, val_size=2)
    assert dm.info.sizes == {"train": 4, "val": 2, "test": 4} and dm.variant == "svhn"
    assert torch.equal(dm.split("test"), torch.as_tensor(arrays["test"][0].transpose(3, 2, 0, 1)).float())
    assert dm.labels("test").tolist() == [0, 9, 8, 7]  # label 10 is digit 0
    more = SVHNDataModule(root=root, val_size=2, extra=True)
    assert more.info.sizes == {"train": 9, "val": 2, "test": 4} and more.variant == "svhn+extra"
    assert torch.equal(more.split("val"), dm.split("val"))  # validation stays on the official train images
    assert torch.equal(more.split("train")[4:], torch.as_tensor(arrays["extra"][0].transpose(3, 2, 0, 1)).float())
    assert more.labels("train")[4:].tolist() == [0, 9, 8, 7, 6]


def test_svhn_missing_extra_names_it(svhn_root):
    root, _ = svhn_root
    (root / "extra_32x32.mat").unlink()
    SVHNDataModule(root=root).setup()  # extra is not needed unless asked for
    with pytest.raises(DataUnavailableError, match="extra_32x32.mat") as err:
        SVHNDataModule(root=root, extra=True).setup()
    assert "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat" in str(err.value)


def test_random_hflip_flips_each_image_or_leaves_it():
    x = torch.arange(64 * 3 * 2 * 4, dtype=torch.float32).reshape(64, 3, 2, 4)
    y = random_hflip(x)
    same = (y == x).flatten(1).all(1)
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert (same ^ flipped).all() and same.any() and flipped.any()


def test_hflip_is_the_training_transform_only(cifar_root):
    dm = CIFAR10DataModule(root=cifar_root[0], hflip=True)
    assert dm.train_transform is random_hflip
    assert torch.equal(torch.cat(list(dm.test_dataloader())), dm.split("test"))


# -- the real MNIST, when a copy is around ----------------------------------------------------------------

def find_real(folders, names):
    """The first folder holding every file in ``names`` (data root first, then ../shared/data)."""
    return next((d for d in folders if all((d / n).is_file() for n in names)), None)


def link_into(tmp: Path, source: Path, names) -> None:
    tmp.mkdir(parents=True)
    for n in names:
        os.symlink(source / n, tmp / n)


@pytest.mark.mnist
def test_real_mnist(tmp_path):
    from torchvision.datasets import MNIST

    from genbench.core.paths import data_root

    official = dict(MNIST.resources)
    source = find_real([data_root() / "MNIST" / "raw", data_root() / "mnist", SHARED / "mnist"], official)
    if source is None:
        pytest.skip("real MNIST not found in the data root or ../shared/data")
    for name, md5 in official.items():
        assert file_digest(source / name) == md5
    link_into(tmp_path / "MNIST" / "raw", source, official)
    dm = MNISTDataModule("dynamic", root=tmp_path, download=False)
    assert dm.info.sizes == {"train": 60000, "test": 10000}
    assert dm.labels("train").bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert only_values(dm.split("test"), {0.0, 1.0}) and 0.10 < dm.split("test").mean() < 0.16
    grey = MNISTDataModule("grey", root=tmp_path, download=False, val_size=10000)
    assert grey.info.sizes == {"train": 50000, "val": 10000, "test": 10000} and grey.split("test").max() == 255


@pytest.mark.mnist
def test_real_larochelle(tmp_path):
    from genbench.core.paths import data_root

    names = list(mnist.LAROCHELLE_FILES)
    source = find_real([data_root() / "binarized_mnist", SHARED / "binarized_mnist"], names)
    if source is None:
        pytest.skip("binarized MNIST (Larochelle) not found in the data root or ../shared/data")
    link_into(tmp_path / "binarized_mnist", source, names)
    dm = MNISTDataModule("larochelle", root=tmp_path, download=False)
    assert dm.info.sizes == {"train": 50000, "val": 10000, "test": 10000}
    assert only_values(dm.split("train"), {0.0, 1.0}) and 0.10 < dm.split("train").mean() < 0.16
