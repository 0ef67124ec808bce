"""One run: train one config with one seed, evaluate it, and write its run record.

A run record (JSON, written atomically by :mod:`.store`) holds everything needed to trust and redo a number: the
resolved config and its hash, the seed, the git commit, the data checksum, the machine, the wall time, the W&B run
id, the status (``finished`` | ``diverged`` | ``failed`` | ``interrupted`` | ``pruned``, with the error) and the
result records. Tables read nothing else.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from ..core import paths
from ..core.devices import module_device
from ..core.errors import ConfigError, GenbenchError, ModelContractError
from ..core.locks import Claim
from ..data import build_datamodule
from ..evaluation import evaluate
from ..evaluation.records import Result
from ..evaluation.samples import save_learning_curve
from ..loggers import build_loggers, finish_loggers
from ..models import EVALUATORS, SCORED, build_model, capabilities
from .callbacks import (ConfigInCheckpoint, DivergenceGuard, RandomState, RankStreams, RunPruned, TrainingClock,
                        non_finite_parameters, periodic)
from .checkpoints import FINAL_CHECKPOINT, LAST_CHECKPOINT, save_atomic, trusted_checkpoint
from .identity import config_hash, model_source, training_hash
from .scores import save_scores
from .store import git_commit, save_record


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
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "cuda_version": torch.version.cuda}
    if info["cuda"]:
        info["gpu"], info["gpus"] = torch.cuda.get_device_name(0), torch.cuda.device_count()
    return info


def figure_dir_for(record_path: Path, run_id: str) -> Path:
    """A run's figures mirror its record's place (results/runs/TABLE/SCALE/ID.json → results/figures/TABLE/SCALE/ID/),
    so the scales of a table keep their own sample grids."""
    try:
        where = Path(record_path).parent.resolve().relative_to(paths.results_dir("runs").resolve()).parts
    except ValueError:
        where = ("train",)
    return paths.results_dir("figures", *where, run_id)


def train_and_evaluate(config: dict[str, Any], record_path: Path, run_id: str, table: str | None = None,
                       callbacks: list[L.Callback] = (), overwrite: bool = False) -> dict[str, Any]:
    """Run ``config`` (resolved, plain dict) and write its record to ``record_path`` (:func:`save_record`: a
    finished record there is kept unless this run finishes too, or ``overwrite``); returns the record, with
    ``record_path`` set to where it went. ``callbacks`` are added to the Trainer's (e.g. a sweep's pruner).

    The caller holds the run's claim (:func:`claim_run`); the training is claimed here, because runs that differ
    only in evaluation share it.
    """
    record: dict[str, Any] = {
        "run_id": run_id, "table": table, "name": config.get("name"), "seed": config["seed"],
        "status": "running", "config": config, "config_hash": config_hash(config), "git_commit": git_commit(),
        "machine": machine(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": [], "figures": [],
    }
    source = model_source(config["model"].get("name"))
    if source is not None:
        record["model_source"] = source
    start = time.perf_counter()
    loggers = []
    quiet_lightning()
    try:
        L.seed_everything(config["seed"], workers=True, verbose=False)
        dm = build_datamodule(config["data"], seed=config["seed"])
        info = dm.info
        record["data"] = {"variant": info.variant, "space": str(info.space), "sizes": info.sizes, "checksum": info.checksum}
        model = build_model(config["model"], info)
        if not set(capabilities(model)) & set(SCORED):  # say so before training, not after
            raise ModelContractError(no_result_reason(model, info))
        if bool(getattr(model, "semi_supervised", False)) != (dm.labels_per_class is not None):
            raise ConfigError(labels_mismatch(model, config))
        loggers = build_loggers(config, run_id, table or "train")
        record["wandb_run_id"] = next((lg.experiment.id for lg in loggers if type(lg).__name__ == "WandbLogger"), None)
        ckpt_dir = paths.models_dir("trained", training_hash(config))
        with Claim(ckpt_dir / "training.lock"):
            diverged = train_or_load(config, model, dm, loggers, ckpt_dir, record, callbacks)
        final = ckpt_dir / FINAL_CHECKPOINT
        record["checkpoint"] = paths.stored(final) if final.is_file() else None
        if diverged:
            record["status"], record["error"] = "diverged", diverged
        else:
            settings = config.get("evaluation") or {}
            figure_dir = figure_dir_for(record_path, run_id)
            began = time.perf_counter()
            results, figures = evaluate(model, dm, settings, figure_dir, split=settings.get("split", "test"))
            record["eval_time_s"] = round(time.perf_counter() - began, 3)
            record["stages"]["evaluate"] = {"device": str(module_device(model))}
            figures += learning_curve(loggers, figure_dir) if not record.get("reused_training") else []
            record["results"], record["figures"] = [r.to_dict() for r in results], [paths.stored(f) for f in figures]
            record["status"] = "finished"
            if not results:
                record["status"], record["error"] = "failed", no_result_reason(model, info)
            elif broken := [r for r in results if r.unexplained_non_finite]:
                record["status"], record["error"] = "diverged", non_finite_reason(broken)
            if record["status"] == "finished":
                keep_scores(record, record_path, results)
            for lg in loggers:
                lg.log_metrics({f"test/{r.metric}": r.value for r in results if math.isfinite(r.value)})
    except RunPruned as e:
        record["status"], record["error"], record["epochs"] = "pruned", str(e), e.epochs
    except GenbenchError as e:  # the user's to fix: recorded without a traceback
        record["status"], record["error"] = "failed", f"{type(e).__name__}: {e}"
    except Exception as e:  # recorded so that a table still renders; the traceback is kept for debugging
        record["status"], record["error"] = "failed", f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()
        print(f"genbench: run {run_id} failed:\n{record['traceback']}", file=sys.stderr)
    except BaseException:  # Ctrl-C (Lightning turns it into SystemExit): the table reruns this run next time
        record["status"], record["error"] = "interrupted", "interrupted before the run finished"
        raise
    finally:
        finish_loggers(loggers)
        record["wall_time_s"] = round(time.perf_counter() - start, 3)
        record["record_path"] = str(save_record(record_path, record, overwrite=overwrite))
    return record


def keep_scores(record: dict[str, Any], record_path: Path, results: list[Result]) -> None:
    """Save the per-example scores beside the record; a failed write costs the paired comparisons, not the run."""
    try:
        if kept := save_scores(record_path, results, record["data"]):
            record["scores"] = kept
    except OSError as e:
        record["scores_error"] = f"the per-example scores could not be written ({e}); paired comparisons skip this run"
        print(f"genbench: run {record.get('run_id')}: {record['scores_error']}", file=sys.stderr)


def non_finite_reason(broken: list[Result]) -> str:
    """Why a run whose training ended cleanly is not finished: the scores that are not numbers."""
    scores = "; ".join(str(r) for r in broken[:3]) + (f"; and {len(broken) - 3} more" if len(broken) > 3 else "")
    return (f"non-finite score: {scores}. The model trained without a non-finite loss, but its scores are not "
            f"numbers (usually a log of zero or an overflow in log_prob, log_prob_bound or sample)")


def labels_mismatch(model, config) -> str:
    """Why a model and its data disagree on labels: a semi-supervised model needs a labelled subset, others none."""
    name = config["model"].get("name")
    if getattr(model, "semi_supervised", False):
        return (f"model {name!r} is semi-supervised: it trains on a few labelled examples beside the unlabelled "
                f"data, so the data config must say how many per class, e.g. +data.labels_per_class=10 (100 labels "
                f"on 10 classes)")
    return (f"data.labels_per_class={config['data'].get('labels_per_class')} gives labelled batches, but model "
            f"{name!r} is unsupervised and trains on images alone; drop the option, or choose a semi-supervised "
            f"model (ssl_gan, ali_ssl)")


def no_result_reason(model, info) -> str:
    needs = "; ".join(f"{name}: {EVALUATORS[name]}" for name in SCORED)
    return (f"{type(model).__name__} offers nothing the evaluators score on {info.variant}; a model offers at least "
            f"one of these (genbench/models/contract.py): {needs}")


def train_or_load(config, model, dm, loggers, ckpt_dir: Path, record: dict[str, Any], callbacks=()) -> str | None:
    """Load the model this training produced before, else train it (resuming a killed training from its
    last epoch) and save it atomically; either way the model ends on the training device (Lightning's teardown
    puts it back on the CPU), so that evaluation runs there. Returns why training diverged, or None."""
    final = ckpt_dir / FINAL_CHECKPOINT
    saved = trusted_checkpoint(final)
    if saved is not None:  # the same data, model, trainer and seed were trained before: evaluate that model
        model.load_state_dict(saved["state_dict"])
        model.to(root_device(config))
        kept = saved.get("genbench", {})
        record["reused_training"] = True
        record["train_time_s"] = kept.get("train_time_s")  # None: trained before times were kept
        record["trained_on"] = kept.get("cpu")
        record["stages"] = {"train": kept.get("stage") or {"device": None}}  # None: trained before devices were kept
        return None
    guard, clock, began = DivergenceGuard(), TrainingClock(), time.perf_counter()
    if not getattr(model, "needs_training", True):
        stage = {"device": str(root_device(config)), "precision": None}
    else:
        last = ckpt_dir / LAST_CHECKPOINT
        interrupted = trusted_checkpoint(last, mmap=True)
        if interrupted is not None:
            record["resumed_from_epoch"] = interrupted["epoch"] + 1
        trainer = build_trainer(config, loggers, [guard, clock, ConfigInCheckpoint(config), RandomState(),
                                                  RankStreams(config["seed"]), *periodic(config, dm), *callbacks],
                                ckpt_dir)
        if trainer.world_size > 1 and getattr(model, "single_device", None):  # say why before any rank starts
            raise ConfigError(model.single_device)
        trainer.fit(model, datamodule=dm, ckpt_path=last if interrupted is not None else None, weights_only=True)
        stage = {"device": str(trainer.strategy.root_device), "precision": str(trainer.precision),
                 "deterministic": bool((config.get("trainer") or {}).get("deterministic"))}
        record["epochs"], record["steps"] = trainer.current_epoch, trainer.global_step
        if trainer.world_size > 1:
            record["devices"] = trainer.world_size  # the effective batch: data.batch_size on each of them
    record["stages"] = {"train": stage}
    record["train_time_s"] = round(clock.seconds if clock.start is not None else time.perf_counter() - began, 3)
    record["trained_on"] = cpu_name()
    diverged = guard.reason or ("non-finite parameters after training" if non_finite_parameters(model) else None)
    if not diverged:
        save_atomic({"state_dict": model.state_dict(), "genbench": {
            "config": config, "train_time_s": record["train_time_s"], "cpu": record["trained_on"], "stage": stage}},
            final)
    (ckpt_dir / LAST_CHECKPOINT).unlink(missing_ok=True)  # the training has ended: nothing to resume
    model.to(stage["device"])
    return diverged


def claim_run(record_path: Path) -> Claim:
    """The claim on one run (its record's ``.lock``): only its holder trains and writes that run."""
    return Claim(Path(record_path).with_suffix(".lock"))


NOISE = (".*have no `validation_step`.*", ".*returned `None`, this fit will run with no optimizer.*",
         ".*LeafSpec.*", ".*smaller than the logging interval.*", ".*does not have many workers.*",
         ".*exists and is not empty.*", ".*across ranks is zero.*")  # a model with validation_step, data without a val split


def quiet_lightning() -> None:
    """Silence Lightning's start-up banners and the warnings that do not apply to the suite's models."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)


def strategy(name: str | None):
    """``ddp`` as a forking DDP strategy: plain DDP re-executes the command line once per rank (a whole table per
    rank), and spawning pickles the model (weight-normalized layers refuse); forked ranks train, and the launching
    process gets rank 0's model back, evaluates it and writes the one record (CUDA must not be initialized before
    the fork, which building the model does not do). Buffers are not broadcast, so each rank keeps its own
    persistent chains and batch statistics."""
    if name in (None, "auto"):
        return "auto"
    if name == "ddp":
        return DDPStrategy(start_method="fork", broadcast_buffers=False)
    return name


def root_device(config: dict[str, Any]) -> torch.device:
    """The device a run's Trainer trains on (rank 0's under DDP): where the model is evaluated too."""
    kw = config.get("trainer") or {}
    trainer = L.Trainer(accelerator=kw.get("accelerator", "auto"), devices=kw.get("devices", "auto"),
                        strategy=strategy(kw.get("strategy")), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    return trainer.strategy.root_device


def build_trainer(config: dict[str, Any], loggers, callbacks, ckpt_dir: Path) -> L.Trainer:
    kw = dict(config.get("trainer") or {})
    kw["strategy"] = strategy(kw.get("strategy"))
    kw["use_distributed_sampler"] = False  # the data modules shard the training split themselves (one batch sampler)
    if kw.get("enable_progress_bar") is None:
        kw["enable_progress_bar"] = os.isatty(2) and not os.environ.get("CI")
    # one file, replaced atomically at every epoch end: what a killed training resumes from
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename=Path(LAST_CHECKPOINT).stem, save_top_k=1,
                                 enable_version_counter=False)
    return L.Trainer(logger=loggers or False, callbacks=[*callbacks, checkpoint], enable_model_summary=False,
                     num_sanity_val_steps=0, **kw)


def learning_curve(loggers, figure_dir: Path) -> list[str]:
    """The learning-curve figure of the run's CSV log (epoch-level nll or bits/dim), if it logged any."""
    path = save_learning_curve(loggers[0].log_dir, figure_dir / "learning_curve.png") if loggers else None
    return [str(path)] if path else []


def results_of(record: dict[str, Any]) -> list[Result]:
    return [Result.from_dict(r) for r in record.get("results", [])]
