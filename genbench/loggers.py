"""Loggers: a CSV log always, Weights & Biases when the config asks (``logger=wandb``).

W&B runs online when an API key is available (``WANDB_API_KEY`` or a
``wandb login``) and offline otherwise, so nothing fails on a machine without
network; ``wandb sync results/wandb/...`` uploads offline runs later. A table run with ``logger=wandb`` groups its
runs as ``TABLE/SCALE`` (``logger.group``) and logs its render as one more run of that group (:func:`log_table`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import CSVLogger, WandbLogger

from .core import paths
from .core.optional import require

if TYPE_CHECKING:
    import pandas as pd


def wandb_online() -> bool:
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()


def build_loggers(config: dict[str, Any], run_id: str, group: str) -> list:
    """The run's loggers; ``group`` is the table (or ``train``, or ``sweep/NAME``), a folder under ``results/logs``,
    and the W&B group unless the config's ``logger.group`` names another (a table's runs: ``TABLE/SCALE``).
    A CSV log left by an earlier attempt (a killed run that will resume) is kept as ``metrics.attemptN.csv``,
    because Lightning's CSV logger deletes ``metrics.csv`` when it starts."""
    log_dir = paths.results_dir("logs", *group.split("/"), run_id)
    if (log_dir / "metrics.csv").is_file():
        attempt = len(list(log_dir.glob("metrics.attempt*.csv")))
        (log_dir / "metrics.csv").rename(log_dir / f"metrics.attempt{attempt}.csv")
    loggers = [CSVLogger(save_dir=str(log_dir.parent), name=run_id, version="")]
    opts = config.get("logger") or {}
    if opts.get("wandb"):
        loggers.append(WandbLogger(
            project=opts.get("project", "genbench"), entity=opts.get("entity"), name=run_id,
            group=opts.get("group") or group, tags=list(opts.get("tags") or []), save_dir=str(wandb_dir()),
            offline=not wandb_online(), config=config, reinit="finish_previous"))
    return loggers


def wandb_dir() -> Path:
    """Where W&B writes its runs (``results/wandb/wandb/``): offline runs wait there for ``wandb sync``."""
    save_dir = paths.results_dir("wandb")
    save_dir.mkdir(parents=True, exist_ok=True)
    return save_dir


def log_table(opts: dict[str, Any], name: str, frame: pd.DataFrame, figures: dict[str, Path]) -> str:
    """One W&B run (``job_type="table"``, named ``name``, in the group ``opts["group"]``) holding a table render:
    ``frame`` as a ``wandb.Table`` under ``table`` (NaN as empty) and each figure as a ``wandb.Image`` under
    ``figure/NAME``.
    ``opts``: the runs' ``logger`` config (project, entity, tags, group). Returns the W&B run's id."""
    wandb = require("wandb", "logger=wandb")
    run = wandb.init(project=opts.get("project", "genbench"), entity=opts.get("entity"), group=opts.get("group"),
                     name=name, job_type="table", tags=list(opts.get("tags") or []), dir=str(wandb_dir()),
                     mode="online" if wandb_online() else "offline", reinit="finish_previous")
    try:
        run.log({"table": wandb.Table(dataframe=frame.astype(object).where(frame.notna(), None)),
                 **{f"figure/{k}": wandb.Image(str(f)) for k, f in figures.items()}})
    finally:
        run.finish()
    return run.id


def finish_loggers(loggers) -> None:
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            wandb = require("wandb", "logger=wandb")
            if wandb.run is not None:
                wandb.finish()
