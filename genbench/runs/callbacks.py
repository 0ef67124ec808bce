"""The Lightning callbacks every genbench training runs with: divergence, the config and wall time in each
checkpoint, random states for an exact resume, per-rank streams on several devices, periodic validation, and the
exception a sweep's pruner stops a training with."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from ..evaluation import PeriodicEvaluation


class DivergenceGuard(L.Callback):
    """Stops training at the first non-finite loss or parameter and remembers where."""

    def __init__(self):
        self.reason: str | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        bad = loss is not None and torch.is_tensor(loss) and not torch.isfinite(loss).all()
        if not bad and batch_idx % 50 == 0:
            bad = any(not torch.isfinite(p).all() for p in pl_module.parameters())
        if bad:
            self.reason = f"non-finite loss or parameters at epoch {trainer.current_epoch}, step {trainer.global_step}"
            trainer.should_stop = True


class ConfigInCheckpoint(L.Callback):
    """Stores the resolved config in every checkpoint, so ``genbench evaluate`` can rebuild the run."""

    def __init__(self, config: dict[str, Any]):
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["genbench"] = {"config": self.config}


class TrainingClock(L.Callback):
    """Wall time spent in training, kept in every checkpoint: a resumed training reports its whole cost."""

    def __init__(self):
        self.before, self.start = 0.0, None

    def on_fit_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.before + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = state["seconds"]


def non_finite_parameters(model) -> bool:
    return any(not torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


class RunPruned(Exception):
    """Raised by a callback (a sweep's pruner) to stop a training that is not worth finishing: the run is recorded
    as ``pruned`` with this message, and its ``last.ckpt`` is kept so that a later run of the config resumes."""

    def __init__(self, message: str, epochs: int):
        super().__init__(message)
        self.epochs = epochs


class RandomState(L.Callback):
    """Keeps the random generators' states in every checkpoint, so a resumed training draws the same batches,
    binarizations and noise as one that was never interrupted."""

    def state_dict(self) -> dict[str, Any]:
        keys, pos, has_gauss, gauss = np.random.get_state()[1:]
        state = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(keys.astype(np.int64)),
                 "numpy_extra": [int(pos), int(has_gauss), float(gauss)], "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        pos, has_gauss, gauss = state["numpy_extra"]
        np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def periodic(config: dict[str, Any], dm) -> list[L.Callback]:
    evaluation = config.get("evaluation") or {}
    every = evaluation.get("every_n_epochs", 0)
    return [PeriodicEvaluation(dm, every_n_epochs=every, settings=evaluation.get("likelihood"))] if every else []


PARENT_PID = os.getpid()
"""The process that imported genbench: a rank with another pid was forked from it."""


class RankStreams(L.Callback):
    """On several devices each rank draws its own noise (chains, latent codes, dequantization, data order): forked
    ranks start from the launching process's random state and would otherwise all draw the same numbers."""

    def __init__(self, seed: int):
        self.seed = seed

    def setup(self, trainer, pl_module, stage):
        """Forked ranks run one torch thread each, before DDP's first broadcast: with OMP_NUM_THREADS set in the
        parent, a forked child's first parallel region hangs in libgomp (measured: both ranks stuck in
        ``_sync_params_and_buffers``), as the forked table workers would (:mod:`genbench.launchers`)."""
        if trainer.world_size > 1 and os.getpid() != PARENT_PID:
            torch.set_num_threads(1)

    def on_fit_start(self, trainer, pl_module):
        if trainer.world_size > 1:
            L.seed_everything(self.seed + 7919 * trainer.global_rank + 104729 * trainer.current_epoch, verbose=False)
