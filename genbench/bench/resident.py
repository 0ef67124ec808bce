"""``make bench`` (o): the training split resident on the training device (:class:`genbench.data.base.ResidentBatches`)
against the loader, on the CPU: one epoch of dynamically binarized MNIST batches alone, and one training epoch of
Burda's VAE through the Trainer; each the fastest of ``rounds`` interleaved rounds. On the CPU both gather the same
batches from the same tensor, so the resident path must not be slower; on a GPU it also saves the copy per step."""

from __future__ import annotations

import time

import lightning as L

from ..data import build_datamodule
from ..data.base import ResidentBatches, shuffled_loader
from ..models import build_model
from ..runs.config import compose
from ..runs.execute import quiet_lightning

DATA = ["data=mnist", "data.variant=dynamic"]


def _iterate(batches) -> float:
    start = time.perf_counter()
    for _ in batches:
        pass
    return time.perf_counter() - start


def _train_epoch(resident: bool | None) -> float:
    dm = build_datamodule(compose(DATA)["data"])
    dm.resident = resident
    L.seed_everything(0, verbose=False)
    model = build_model(compose([*DATA, "model=vae"])["model"], dm.info)  # Burda's 784-200-200-50, batch 100
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return time.perf_counter() - start


def benchmark_resident(rounds: int = 3) -> dict:
    quiet_lightning()
    dm = build_datamodule(compose(DATA)["data"])
    data, transform, batch = dm.split("train"), dm.train_transform, dm.batch_size
    walls = {"loader_epoch_s": [], "resident_epoch_s": [], "loader_training_s": [], "resident_training_s": []}
    for _ in range(rounds):
        walls["loader_epoch_s"].append(_iterate(shuffled_loader(data, batch, transform)))
        walls["resident_epoch_s"].append(_iterate(ResidentBatches(data, batch, transform, "cpu")))
        walls["loader_training_s"].append(_train_epoch(None))
        walls["resident_training_s"].append(_train_epoch(True))
    best = {k: round(min(v), 3) for k, v in walls.items()}
    return {**best, "examples": len(data), "batch_size": batch, "rounds": rounds,
            "epoch_ratio": round(best["resident_epoch_s"] / best["loader_epoch_s"], 3),
            "training_ratio": round(best["resident_training_s"] / best["loader_training_s"], 3)}


def markdown(result: dict) -> list[str]:
    r = result.get("resident")
    if not r:
        return []
    return [f"## (o) The training split resident on the device against the loader, on the CPU ({r['examples']:,} "
            f"dynamically binarized MNIST images, batch {r['batch_size']}, fastest of {r['rounds']})", "",
            "| | loader (s) | resident (s) | resident / loader |", "|---|---:|---:|---:|",
            f"| one epoch of batches | {r['loader_epoch_s']} | {r['resident_epoch_s']} | **{r['epoch_ratio']}** |",
            f"| one training epoch of Burda's VAE (Trainer) | {r['loader_training_s']} | {r['resident_training_s']} | "
            f"**{r['training_ratio']}** |", "",
            "The same batches either way (tests/unit/test_resident.py); on a GPU the resident path also drops the "
            "copy to the device per step, which is not measured here.", ""]
