"""Loggers: a CSV log always, Weights & Biases when the config asks (``logger=wandb``).

W&B runs online when an API key is available (``WANDB_API_KEY`` or a
``wandb login``) and offline otherwise, so nothing fails on a machine without
network; ``wandb sync results/wandb/...`` uploads offline runs later.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger, WandbLogger

from .core import paths
from .core.optional import require


def wandb_online() -> bool:
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()


def build_loggers(config: dict[str, Any], run_id: str, group: str) -> list:
    """The run's loggers; ``group`` is the table (or ``train``, or ``sweep/NAME``), a folder under ``results/logs``.
    A CSV log left by an earlier attempt (a killed run that will resume) is kept as ``metrics.attemptN.csv``,
    because Lightning's CSV logger deletes ``metrics.csv`` when it starts."""
    log_dir = paths.results_dir("logs", *group.split("/"), run_id)
    if (log_dir / "metrics.csv").is_file():
        attempt = len(list(log_dir.glob("metrics.attempt*.csv")))
        (log_dir / "metrics.csv").rename(log_dir / f"metrics.attempt{attempt}.csv")
    loggers = [CSVLogger(save_dir=str(log_dir.parent), name=run_id, version="")]
    opts = config.get("logger") or {}
    if opts.get("wandb"):
        save_dir = paths.results_dir("wandb")
        save_dir.mkdir(parents=True, exist_ok=True)
        loggers.append(WandbLogger(
            project=opts.get("project", "genbench"), entity=opts.get("entity"), name=run_id, group=group,
            tags=list(opts.get("tags") or []), save_dir=str(save_dir), offline=not wandb_online(),
            config=config, reinit="finish_previous"))
    return loggers


def finish_loggers(loggers) -> None:
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            wandb = require("wandb", "logger=wandb")
            if wandb.run is not None:
                wandb.finish()
