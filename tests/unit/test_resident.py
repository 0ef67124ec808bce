"""The training split resident on the training device: the same batches as the loader for the same seed (on the
CPU, bit for bit, through the Trainer too), used by itself on a non-CPU device and device-clean there."""

from __future__ import annotations

import lightning as L
import torch

from genbench.core.device_guard import SIMULATED, simulated_device
from genbench.data import build_datamodule
from genbench.data.base import ResidentBatches, shuffled_loader
from genbench.models import build_model
from genbench.tables import compose


def digits(**kw):
    return build_datamodule({**compose(["data=digits"])["data"], **kw})


def epochs(batches, n=2) -> list[torch.Tensor]:
    return [x.cpu() for _ in range(n) for x in batches]


def test_resident_batches_are_the_loaders_for_the_same_seed():
    dm = digits()
    dm.setup()
    data, transform = dm.split("train"), dm.train_transform  # dynamic binarization: draws per batch
    torch.manual_seed(3)
    loaded = epochs(shuffled_loader(data, 100, transform))
    torch.manual_seed(3)
    resident = epochs(ResidentBatches(data, 100, transform, "cpu"))
    assert len(resident) == len(loaded) == 2 * -(-len(data) // 100)
    assert all(torch.equal(a, b) for a, b in zip(resident, loaded))
    torch.manual_seed(4)
    assert not torch.equal(epochs(ResidentBatches(data, 100, transform, "cpu"))[0], resident[0])


def trained(resident: bool | None, accelerator: str = "cpu", **trainer):
    dm = digits()
    dm.resident = resident
    L.seed_everything(0, verbose=False)
    model = build_model(compose(["model=vae", "model.latent=4", "model.hidden=[16]"])["model"], dm.info)
    L.Trainer(accelerator=accelerator, max_epochs=2, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, **trainer).fit(model, datamodule=dm)
    return model, dm


def test_training_on_resident_batches_gives_the_loaders_parameters_on_the_cpu():
    (a, dm_a), (b, dm_b) = trained(True), trained(None)  # None on the CPU: the loader
    assert isinstance(dm_a.train_dataloader(), ResidentBatches)
    assert isinstance(dm_b.train_dataloader(), torch.utils.data.DataLoader)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_non_cpu_device_keeps_the_split_resident_and_stays_device_clean():
    with simulated_device() as guard:
        guard.checking = True  # a CPU tensor made in model code at any step would be caught
        model, dm = trained(None, "simulated", strategy="simulated", limit_train_batches=3)
        loader = dm.train_dataloader()
        assert isinstance(loader, ResidentBatches) and loader.device == SIMULATED
        assert next(iter(loader)).device == SIMULATED
    assert not guard.violations
