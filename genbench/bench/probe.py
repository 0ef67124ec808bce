"""Probes of a run's cost on the current device: a few timed steps of its real training, and its real evaluation
shrunk along its counted sizes, each scaled back up to the run's own sizes.

Training: the run's Trainer (its callbacks, its per-epoch checkpoint) for two short epochs of ``steps`` batches
(the first warms up); seconds per step, per validation batch and per epoch's other work, times the run's epochs.
Evaluation: :func:`genbench.evaluation.evaluate` with the test split cut to ``n`` examples and every temperature
schedule, RAISE's, decoder AIS's and BDMC's example counts cut by the same factor F = N / n; each stage that
reports its progress spans ``dims`` of those sizes (:mod:`genbench.core.progress`) and is scaled by F^dims, the
rest (mode coverage, SVM features, checks) is taken as measured; the sample figures are not probed. Costs do not
depend on the weights, so the few trained steps are enough.

The data are the run's own when its files are here, else synthetic tensors of the data's space with the
published split sizes (:class:`Synthetic`): a step's cost does not depend on the pixels.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ..core.devices import module_device
from ..core.errors import DataUnavailableError
from ..core.progress import Stage, timed_stages
from ..data import build_datamodule
from ..data.base import TensorDataModule
from ..evaluation import evaluate
from ..evaluation.ais import sm_schedule
from ..evaluation.likelihood import likelihood_records
from ..models import build_model
from ..runs.callbacks import DivergenceGuard, RankStreams, periodic
from ..runs.execute import build_trainer

TRAIN_EXAMPLES = {"mnist": 60_000, "cifar10": 50_000, "svhn": 73_257}
"""Training images before a validation split (SVHN's ``extra`` adds 531,131; MNIST's larochelle split has 50,000)."""
TEST_EXAMPLES = {"mnist": 10_000, "cifar10": 10_000, "svhn": 26_032}


def paper_train_size(data: dict) -> int:
    """How many examples one epoch of the paper's training passes over (for data whose files are absent)."""
    if data["name"] not in TRAIN_EXAMPLES:
        return int(data.get("train_size", 0))
    if data.get("variant") == "larochelle":
        return 50_000
    return TRAIN_EXAMPLES[data["name"]] + (531_131 if data.get("extra") else 0) - int(data.get("val_size") or 0)


def paper_val_size(data: dict) -> int:
    """The validation examples of the paper's split (for data whose files are absent)."""
    return 10_000 if data.get("variant") == "larochelle" else int(data.get("val_size") or 0)


class Synthetic(TensorDataModule):
    """Random tensors in a data space (binary {0,1}, integers below ``levels`` as uint8), ``n`` per split (a
    validation split too when ``val``), labelled with 10 classes in turn (a semi-supervised run's
    ``labels_per_class`` capped at what n allows)."""

    name = "synthetic"
    CLASSES = 10

    def __init__(self, space, n: int, batch_size: int, seed: int = 0, eval_batch_size: int | None = None,
                 val: bool = False, labels_per_class: int | None = None):
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size or batch_size,
                         labels_per_class=labels_per_class and max(1, min(labels_per_class, n // self.CLASSES)))
        self.data_space, self.n, self.seed, self.with_val = space, n, seed, val

    @property
    def variant(self) -> str:
        return f"synthetic {self.data_space}"

    def space(self):
        return self.data_space

    def load(self):
        g, shape = torch.Generator().manual_seed(self.seed), (self.n, *self.data_space.shape)
        if self.data_space.kind == "binary":
            make = lambda: torch.randint(0, 2, shape, generator=g).float()  # noqa: E731
        elif self.data_space.kind == "discrete":
            make = lambda: torch.randint(0, self.data_space.levels, shape, generator=g, dtype=torch.uint8)  # noqa: E731
        else:
            make = lambda: torch.randn(shape, generator=g)  # noqa: E731
        splits = {"train": make(), "test": make(), **({"val": make()} if self.with_val else {})}
        self.split_labels = {k: torch.arange(self.n) % self.CLASSES for k in splits}
        return splits


@dataclass
class ProbeData:
    """The data module a probe runs on, and the sizes of the run's own splits."""

    module: TensorDataModule
    train: int
    val: int
    test: int
    real: bool
    load_s: float = 0.0  # building and loading it: part of every run's set-up


def probe_data(data: dict, examples: int) -> ProbeData:
    """The run's data module when its files are here; else ``examples`` synthetic tensors per split of its space
    (the module is built without loading, so its space is known) with the published sizes."""
    began = time.perf_counter()
    dm = build_datamodule({**data, "download": False} if "download" in data else data)  # a plan writes nothing
    try:
        sizes = dm.info.sizes
        return ProbeData(dm, sizes["train"], sizes.get("val", 0), sizes["test"], True, time.perf_counter() - began)
    except DataUnavailableError:
        batch, eval_batch, val = int(data.get("batch_size", 100)), int(data.get("eval_batch_size", 1000)), \
            paper_val_size(data)
        fake = Synthetic(dm.space(), examples, batch, eval_batch_size=eval_batch, val=val > 0,
                         labels_per_class=data.get("labels_per_class"))
        return ProbeData(fake, paper_train_size(data), val, TEST_EXAMPLES.get(data["name"], examples), False)


class StepClock(L.Callback):
    """When each training batch, validation batch and training epoch ended (the device synchronized first); stops
    the training after ``stop_after`` epochs (the config's own epochs stay: some models check them)."""

    def __init__(self, stop_after: int | None = None):
        self.stop_after = stop_after
        self.steps: list[list[float]] = []
        self.val: list[float] = []
        self.epoch_starts: list[float] = []
        self.fit_end = math.nan

    def _now(self, module) -> float:
        if module_device(module).type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_starts.append(self._now(pl_module))
        self.steps.append([])
        self._val_start = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps[-1].append(self._now(pl_module))

    def on_train_epoch_end(self, trainer, pl_module):
        if self.stop_after is not None and trainer.current_epoch + 1 >= self.stop_after:
            trainer.should_stop = True

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._val_start = self._now(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.val.append(self._now(pl_module) - self._val_start)

    def on_fit_end(self, trainer, pl_module):
        self.fit_end = self._now(pl_module)

    def seconds_per_step(self, warmup: int = 1) -> float:
        """The last epoch's steps after ``warmup`` of them (the first epoch warmed the caches)."""
        t = self.steps[-1][warmup:] if self.steps else []
        return (t[-1] - t[0]) / (len(t) - 1) if len(t) > 1 else math.nan


class StepCounter(L.Callback):
    """The floating-point operations (matrix products and convolutions, backward included: torch's
    ``FlopCounterMode``) and the operator calls (each a kernel launch on a GPU) of one training batch: the one
    last of the first epoch, whose time no rate uses (counting slows it); none when ``enabled`` is false."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.flops, self.ops, self._modes = enabled, 0, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.enabled and trainer.current_epoch == 0 and batch_idx == trainer.num_training_batches - 1:
            self._modes = (FlopCounterMode(display=False), _OpCounter())
            for mode in self._modes:
                mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._modes is not None:
            for mode in reversed(self._modes):
                mode.__exit__(None, None, None)
            self.flops, self.ops = self._modes[0].get_total_flops(), self._modes[1].calls
            self._modes = None


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


REFERENCE_GPU = {"name": "NVIDIA H100 SXM", "fp32_tflops": 67.0, "sustained": 0.3, "launch_us": 5.0}
"""The GPU a paper cost is estimated for: its FP32 peak (NVIDIA's H100 datasheet, non-tensor-core FP32), the
fraction of it the small products of these models are taken to sustain, and a kernel launch's cost (a few µs on
current CUDA); estimates, not measurements."""


def gpu_step_seconds(flops: int, ops: int, gpu: dict = REFERENCE_GPU) -> float:
    """A training step on the reference GPU, estimated: its arithmetic at the sustained rate, or its kernel
    launches one after the other, whichever takes longer (small models are launch-bound)."""
    return max(flops / (gpu["fp32_tflops"] * 1e12 * gpu["sustained"]), ops * gpu["launch_us"] * 1e-6)


@dataclass
class TrainingProbe:
    """A training's measured rates and the run's sizes; :attr:`seconds` projects the whole training."""

    device: str
    seconds_per_step: float
    seconds_per_val_batch: float
    epoch_overhead_s: float  # per epoch besides its steps and validation: the checkpoint, loader start, callbacks
    setup_s: float  # data, model and Trainer before the first epoch
    steps_per_epoch: int
    val_batches: int
    epochs: int
    peak_mib: float | None
    periodic_s: float  # one periodic validation NLL (evaluation.every_n_epochs), all of them in the training
    periodic_every: int
    early_stopping: bool  # the run may stop before its epochs: the projection is an upper bound
    flops_per_step: int = 0
    ops_per_step: int = 0

    @property
    def seconds(self) -> float:
        return self.projected(self.seconds_per_step)

    def projected(self, step_s: float, speedup: float = 1.0) -> float:
        """The whole training with steps of ``step_s`` and its validation ``speedup`` times faster than here
        (set-up and each epoch's checkpoint as measured)."""
        epoch = self.steps_per_epoch * step_s + self.val_batches * self.seconds_per_val_batch / speedup
        periodic = self.epochs // self.periodic_every * self.periodic_s if self.periodic_every else 0.0
        return self.setup_s + self.epochs * (epoch + self.epoch_overhead_s) + periodic / speedup

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def gpu_speedup(self) -> float | None:
        """How many times faster a step runs on the reference GPU than here, estimated (None: nothing trains)."""
        if not self.steps or not self.seconds_per_step or not self.ops_per_step:
            return None  # nothing trains, or the step was not counted
        return self.seconds_per_step / gpu_step_seconds(self.flops_per_step, self.ops_per_step)


def probe_training(config: dict, data: ProbeData | None = None, steps: int = 12,
                   val_batches: int = 1) -> tuple[TrainingProbe, L.LightningModule, ProbeData]:
    """Two epochs of ``steps`` batches (and, in the second, ``val_batches`` validation batches: MADE's 32-mask
    ensemble of 8,000-unit layers takes a minute per batch on a CPU) of the run's training on this device;
    returns the rates, the model (trained those steps, on the device) and its data (``data``: the run's data,
    loaded by an earlier probe; its loading is then not in the set-up time)."""
    began = time.perf_counter() - (data.load_s if data is not None else 0.0)
    with PeakMemory() as peak:
        if data is None:
            batch, eval_batch = (int(config["data"].get(k, d)) for k, d in (("batch_size", 100), ("eval_batch_size", 1000)))
            data = probe_data(config["data"], max(steps * batch, val_batches * eval_batch, MIN_EXAMPLES))
        torch.manual_seed(int(config["seed"]))
        model = build_model(config["model"], data.module.info)
        epochs = int(config["trainer"].get("max_epochs") or 1)
        trainer_cfg = {**config["trainer"], "limit_train_batches": steps, "limit_val_batches": val_batches,
                       "check_val_every_n_epoch": 2 if epochs > 1 else 1, "enable_progress_bar": False}
        clock = StepClock(stop_after=2)
        counter = StepCounter(enabled=epochs > 1)  # a one-epoch training's steps are all timed
        with tempfile.TemporaryDirectory() as ckpt_dir:
            trainer = build_trainer({**config, "trainer": trainer_cfg}, [], [DivergenceGuard(), RankStreams(
                config["seed"]), clock, counter], Path(ckpt_dir))
            if getattr(model, "needs_training", True):
                trainer.fit(model, datamodule=data.module)
        model.to(trainer.strategy.root_device)
        model.trainer = data.module.trainer = None  # the probe's Trainer (and a resident split) can go
    batch, eval_batch = data.module.batch_size, data.module.eval_batch_size
    trains = getattr(model, "needs_training", True) and bool(clock.steps)
    has_val = trains and data.val > 0 and type(model).validation_step is not L.LightningModule.validation_step
    val_rate = sum(clock.val) / len(clock.val) if has_val and clock.val else 0.0
    step_rate = clock.seconds_per_step() if trains else 0.0
    last_epoch = clock.fit_end - clock.epoch_starts[-1] if trains else 0.0
    overhead = max(0.0, last_epoch - len(clock.steps[-1]) * step_rate - len(clock.val) * val_rate) if trains else 0.0
    every = int((config.get("evaluation") or {}).get("every_n_epochs") or 0) if trains else 0
    limits = config["trainer"]
    probe = TrainingProbe(
        device=str(trainer.strategy.root_device), seconds_per_step=step_rate, seconds_per_val_batch=val_rate,
        epoch_overhead_s=overhead, setup_s=(clock.epoch_starts[0] - began) if trains else 0.0,
        steps_per_epoch=limited(-(-data.train // batch), limits.get("limit_train_batches")) if trains else 0,
        val_batches=limited(-(-data.val // eval_batch), limits.get("limit_val_batches")) if has_val else 0,
        epochs=epochs if trains else 0, peak_mib=peak.mib,
        periodic_s=periodic_seconds(config, model, data) if every else 0.0, periodic_every=every,
        early_stopping=any(type(c).__name__ == "EarlyStopping" for c in trainer.callbacks),
        flops_per_step=counter.flops, ops_per_step=counter.ops)
    return probe, model, data


def limited(batches: int, limit) -> int:
    """Batches per epoch under the Trainer's ``limit_*_batches`` (None: all; an int: at most that many; a float:
    that fraction), as Lightning counts them."""
    if limit is None or (isinstance(limit, float) and limit == 1.0):
        return batches
    return min(batches, int(limit)) if isinstance(limit, int) else int(batches * float(limit))


def periodic_seconds(config: dict, model, data: ProbeData) -> float:
    """One periodic validation NLL (:class:`genbench.evaluation.PeriodicEvaluation`), timed at its full size."""
    callbacks = periodic(config, data.module)
    if not callbacks or callbacks[0].split not in data.module.splits:
        return 0.0
    cb = callbacks[0]
    began = time.perf_counter()
    likelihood_records(model, data.module.split(cb.split)[: cb.max_examples], data.module.info, cb.split, cb.settings)
    return time.perf_counter() - began


@dataclass
class EvaluationProbe:
    seconds: float  # projected for the run's sizes
    peak_mib: float | None


def counted_sizes(settings: dict, test: int) -> list[tuple[dict, str, int]]:
    """(settings dict, key, units) of every size the evaluation's stages count: each temperature schedule (its
    steps: temperatures − 1), RAISE's and decoder AIS's test examples (at most the split's ``test``) and BDMC's
    simulated examples. RAISE's only when it runs."""
    like, decoder = settings.get("likelihood") or {}, settings.get("decoder_ais") or {}

    def steps(n) -> int:
        return (len(sm_schedule()) if n == "sm2008" else int(n)) - 1

    out = []
    if like.get("ais"):
        out.append((like["ais"], "betas", steps(like["ais"].get("betas", "sm2008"))))
    if like.get("raise") and int(like["raise"].get("runs") or 0) > 0:
        out.append((like["raise"], "examples", min(int(like["raise"].get("examples", 1000)), test)))
        if like["raise"].get("betas") is not None:
            out.append((like["raise"], "betas", steps(like["raise"]["betas"])))
    if decoder:
        out += [(decoder, "temperatures", steps(decoder.get("temperatures", 10_000))),
                (decoder, "examples", min(int(decoder.get("examples", 1000)), test)),
                (decoder, "bdmc_examples", int(decoder.get("bdmc_examples", 100) or 0))]
    return out


def shrunk_settings(settings: dict, factor: float, test: int) -> dict:
    """The evaluation settings with every counted size (:func:`counted_sizes`) cut by ``factor``."""
    s = copy.deepcopy(settings or {})
    for where, key, units in counted_sizes(s, test):
        cut = max(1, round(units / factor)) if units > 0 else 0
        where[key] = cut + 1 if key in ("betas", "temperatures") else cut
    return s


def shrink_factor(settings: dict, test: int, shrink: int) -> float:
    """F: the test split cut to max(:data:`MIN_EXAMPLES`, N / ``shrink``) examples, and less where a counted size
    is smaller than that cut (each keeps at least one unit, so its stage is scaled by its own ratio, ≈ F)."""
    f = test / min(test, max(MIN_EXAMPLES, math.ceil(test / shrink)))
    return max(1.0, min([f, *(units for _, _, units in counted_sizes(settings or {}, test) if units > 0)]))


MIN_EXAMPLES = 100
"""Test examples a shrunk evaluation keeps at least (batches much smaller than a run's would cost more per example)."""


class CutTest:
    """A data module whose test split (and its labels) is its first ``n`` examples."""

    def __init__(self, module: TensorDataModule, n: int):
        self._module, self._n = module, n

    def __getattr__(self, name):
        return getattr(self._module, name)

    def split(self, name: str) -> torch.Tensor:
        x = self._module.split(name)
        return x[: self._n] if name == "test" else x

    def labels(self, name: str):
        y = self._module.labels(name)
        return y[: self._n] if name == "test" and y is not None else y


def probe_evaluation(model, data: ProbeData, settings: dict, shrink: int = 100) -> EvaluationProbe:
    """The run's evaluation with its test split cut to max(:data:`MIN_EXAMPLES`, N / ``shrink``) examples and
    every counted size by the same factor; its stages scaled back up (module docstring). The sample figures are
    left out: a few seconds for most models, but an autoregressive model draws its 64 images pixel by pixel at full
    cost (minutes for MADE's 8,000-unit layers on a CPU), which no shrinking makes cheaper to probe."""
    factor = shrink_factor(settings, data.test, shrink)
    n = round(data.test / factor)
    factor = data.test / n
    small = shrunk_settings(settings, factor, data.test)
    with PeakMemory() as peak, timed_stages() as stages:
        began = time.perf_counter()
        evaluate(model, CutTest(data.module, n), small, figure_dir=None, split="test")
        measured = time.perf_counter() - began
    return EvaluationProbe(scaled_up(measured, stages, factor), peak.mib)


def scaled_up(measured: float, stages: list[Stage], factor: float) -> float:
    """A shrunk evaluation's seconds at full size: each stage × factor^dims, the rest as measured."""
    return measured + sum(s.seconds * (factor ** s.dims - 1) for s in stages)


class PeakMemory:
    """The peak memory of a block: the accelerator's allocations on CUDA, else the process's resident set (its
    high-water mark reset at the start, Linux ≥ 4.0; None where it cannot be reset)."""

    def __enter__(self) -> "PeakMemory":
        self.mib, self.cuda = None, torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self._status = Path("/proc/self/status")
            except OSError:
                self._status = None
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        elif self._status is not None:
            line = next(x for x in self._status.read_text().splitlines() if x.startswith("VmHWM:"))
            self.mib = int(line.split()[1]) / 1024
