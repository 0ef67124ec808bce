"""One run: train one config with one seed, evaluate it, and write its run record.

A run record (JSON, written atomically) holds everything needed to trust and
redo a number: the resolved config and its hash, the seed, the git commit,
the data checksum, the machine, the wall time, the W&B run id, the status
(``finished`` | ``diverged`` | ``failed`` | ``interrupted``, with the error) and the result
records. Tables read nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import torch

from . import paths
from .data import build_datamodule
from .errors import GenbenchError
from .evaluation import PeriodicEvaluation, evaluate
from .evaluation.records import Result
from .logging import build_loggers, finish_loggers
from .models import build_model

USER_ERRORS = (GenbenchError,)
"""Errors whose message is meant for the user: recorded and printed without a traceback. Anything else is a bug
(genbench's or a user's model's) and keeps its traceback in the record."""

VOLATILE_KEYS = ("logger", "name")
"""Config keys that do not change a run's numbers (left out of its hash)."""

TRAINING_KEYS = ("data", "model", "trainer", "seed")
"""Config keys that decide the trained model: runs that differ only in evaluation share one training."""


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def config_hash(config: dict[str, Any]) -> str:
    return _hash({k: v for k, v in config.items() if k not in VOLATILE_KEYS})


def _without_added_nulls(new: Any, old: Any) -> Any:
    """``new`` without the keys ``old`` lacks whose value is null (recursively)."""
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    return {k: _without_added_nulls(v, old[k]) if k in old else v
            for k, v in new.items() if k in old or v is not None}


def is_current(record: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a run record was made under ``config``.

    An option added to the configs later with a null default (off) leaves
    earlier runs current, so adding an option does not rerun every table.
    """
    old = record.get("config") or {}
    return record.get("config_hash") in (config_hash(config), config_hash(_without_added_nulls(config, old)))


def training_hash(config: dict[str, Any]) -> str:
    """Names ``models/trained/<hash>/final.ckpt``: train once, evaluate under many settings (e.g. noise levels)."""
    return _hash({k: config.get(k) for k in TRAINING_KEYS})


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_name() -> str:
    """The CPU's model name and its vector extensions as torch sees them: speeds differ by both."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        name = models[0] if models else name
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def machine() -> dict[str, Any]:
    info = {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "lightning": L.__version__, "cpu": cpu_name(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


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


def non_finite_parameters(model) -> bool:
    return any(not torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


def figure_dir_for(record_path: Path, run_id: str) -> Path:
    """A run's figures mirror its record's place (results/runs/TABLE/SCALE/ID.json → results/figures/TABLE/SCALE/ID/),
    so the scales of a table keep their own sample grids."""
    try:
        where = Path(record_path).parent.resolve().relative_to(paths.results_dir("runs").resolve()).parts
    except ValueError:
        where = ("train",)
    return paths.results_dir("figures", *where, run_id)


def train_and_evaluate(config: dict[str, Any], record_path: Path, run_id: str,
                       table: str | None = None) -> dict[str, Any]:
    """Run ``config`` (resolved, plain dict) and write its record to ``record_path``; returns the record."""
    record: dict[str, Any] = {
        "run_id": run_id, "table": table, "name": config.get("name"), "seed": config["seed"],
        "status": "running", "config": config, "config_hash": config_hash(config), "git_commit": git_commit(),
        "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": [], "figures": [],
    }
    start = time.perf_counter()
    loggers = []
    quiet_lightning()
    try:
        L.seed_everything(config["seed"], workers=True, verbose=False)
        dm = build_datamodule(config["data"])
        info = dm.info
        record["data"] = {"variant": info.variant, "space": str(info.space), "sizes": info.sizes, "checksum": info.checksum}
        model = build_model(config["model"], info)
        loggers = build_loggers(config, run_id, table or "train")
        record["wandb_run_id"] = next((lg.experiment.id for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
        ckpt_dir = paths.models_dir("trained", training_hash(config))
        final = ckpt_dir / "final.ckpt"
        guard = DivergenceGuard()
        if final.is_file():  # the same data, model, trainer and seed were trained before: evaluate that model
            model.load_state_dict(torch.load(final, map_location="cpu", weights_only=False)["state_dict"])
            record["reused_training"] = True
        elif getattr(model, "needs_training", True):
            trainer = build_trainer(config, loggers, [guard, ConfigInCheckpoint(config), *periodic(config, dm)], ckpt_dir)
            trainer.fit(model, datamodule=dm)
            record["epochs"], record["steps"] = trainer.current_epoch, trainer.global_step
        if not final.is_file() and not (guard.reason or non_finite_parameters(model)):
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": model.state_dict(), "genbench": {"config": config}}, final)
        record["checkpoint"] = str(final) if final.is_file() else None
        if guard.reason or non_finite_parameters(model):
            record["status"], record["error"] = "diverged", guard.reason or "non-finite parameters after training"
        else:
            settings = config.get("evaluation") or {}
            figure_dir = figure_dir_for(record_path, run_id)
            results, figures = evaluate(model, dm, settings, figure_dir, split=settings.get("split", "test"))
            figures += learning_curve(loggers, figure_dir) if not record.get("reused_training") else []
            record["results"], record["figures"] = [r.to_dict() for r in results], figures
            record["status"] = "finished"
            for lg in loggers:
                lg.log_metrics({f"test/{r.metric}": r.value for r in results if math.isfinite(r.value)})
    except USER_ERRORS as e:
        record["status"], record["error"] = "failed", f"{type(e).__name__}: {e}"
    except Exception as e:  # recorded so that a table still renders; the traceback is kept for debugging
        record["status"], record["error"] = "failed", f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()
    except BaseException:  # Ctrl-C (Lightning turns it into SystemExit): the table reruns this run next time
        record["status"], record["error"] = "interrupted", "interrupted before the run finished"
        raise
    finally:
        finish_loggers(loggers)
        record["wall_time_s"] = round(time.perf_counter() - start, 3)
        write_json_atomic(record_path, record)
    return record


NOISE = (".*have no `validation_step`.*", ".*returned `None`, this fit will run with no optimizer.*",
         ".*LeafSpec.*", ".*smaller than the logging interval.*", ".*does not have many workers.*",
         ".*exists and is not empty.*")


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners and the warnings that do not apply to the suite's models."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)


def periodic(config: dict[str, Any], dm) -> list[L.Callback]:
    evaluation = config.get("evaluation") or {}
    every = evaluation.get("every_n_epochs", 0)
    return [PeriodicEvaluation(dm, every_n_epochs=every, settings=evaluation.get("likelihood"))] if every else []


def build_trainer(config: dict[str, Any], loggers, callbacks, ckpt_dir: Path) -> L.Trainer:
    from lightning.pytorch.callbacks import ModelCheckpoint

    kw = dict(config.get("trainer") or {})
    if kw.get("enable_progress_bar") is None:
        kw["enable_progress_bar"] = os.isatty(2) and not os.environ.get("CI")
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, enable_version_counter=False)
    return L.Trainer(logger=loggers or False, callbacks=[*callbacks, checkpoint], enable_model_summary=False,
                     num_sanity_val_steps=0, **kw)


class CheckpointError(GenbenchError):
    """A file that is not a checkpoint written by a genbench run."""


def learning_curve(loggers, figure_dir: Path) -> list[str]:
    """The learning-curve figure of the run's CSV log (epoch-level nll or bits/dim), if it logged any."""
    from .evaluation.samples import save_learning_curve

    csv = Path(loggers[0].log_dir) / "metrics.csv" if loggers else None
    if csv is None or not csv.is_file():
        return []
    path = save_learning_curve(csv, figure_dir / "learning_curve.png")
    return [str(path)] if path else []


def load_checkpoint(path: str | Path):
    """(config, model in eval mode, data module) of a checkpoint written by a genbench run."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "genbench" not in ckpt:
        raise CheckpointError(f"{path} was not written by a genbench run (it has no 'genbench' config entry)")
    config = ckpt["genbench"]["config"]
    dm = build_datamodule(config["data"])
    model = build_model(config["model"], dm.info)
    model.load_state_dict(ckpt["state_dict"])
    return config, model.eval(), dm


def results_of(record: dict[str, Any]) -> list[Result]:
    return [Result.from_dict(r) for r in record.get("results", [])]
