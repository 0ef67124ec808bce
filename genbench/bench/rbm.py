"""Speed of the RBM estimators against a plain PyTorch matmul loop of the same shapes.

Run through ``make bench`` (:mod:`genbench.bench`). Speed is a
ratio measured in one call (docs/design.md, "Speed"): the AIS loop's useful arithmetic (two
[runs, V]×[V, H]-sized matmuls per temperature) over its wall time, beside
``torch.mm`` of the same shapes in a bare loop, on the same threads.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext

import lightning as L
import torch
from sklearn.neural_network import BernoulliRBM
from threadpoolctl import threadpool_limits

from ..core.errors import DataUnavailableError
from ..data import build_datamodule
from ..data.base import DataInfo, DataSpace, shuffled_loader
from ..evaluation.ais import ais_log_z, sm_schedule
from ..models.rbm import RBM, native_bfloat16
from ..runs.execute import cpu_name, quiet_lightning


def benchmark_ais(V: int = 784, H: int = 500, runs: int = 100, betas=None, plain_steps: int = 2000,
                  dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    """Time :func:`ais_log_z` on a random V×H RBM (default: S&M's 14,503 temperatures).

    GFLOP/s counts ``2 · (2·runs·V·H)`` flops per temperature (the two matmuls);
    the plain loop runs ``plain_steps`` iterations of ``torch.mm`` [runs,V]·[V,H] and
    [runs,H]·[H,V] into preallocated outputs, the ceiling any AIS loop could reach.
    """
    betas = sm_schedule() if betas is None else torch.as_tensor(betas, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(H, V, generator=g, dtype=dtype) * 0.05
    b = torch.randn(V, generator=g, dtype=dtype) * 0.5 - 1.0
    c = torch.randn(H, generator=g, dtype=dtype) * 0.5 - 1.0
    base_b = torch.logit((torch.rand(V, generator=g, dtype=dtype) * 0.3 + 0.05))
    flops_step = 2 * 2 * runs * V * H

    v = (torch.rand(runs, V, generator=g) < 0.2).to(dtype)
    h = (torch.rand(runs, H, generator=g) < 0.5).to(dtype)
    WT, x, y = W.t().contiguous(), torch.empty(runs, H, dtype=dtype), torch.empty(runs, V, dtype=dtype)

    def plain_loop(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            torch.mm(v, WT, out=x)
            torch.mm(h, W, out=y)
        return time.perf_counter() - t0

    plain_loop(20)  # warm-up
    # half of the plain loop before and half after AIS, so a change of machine load hits both alike
    plain = plain_loop(plain_steps // 2)
    t0 = time.perf_counter()
    res = ais_log_z(W, b, c, base_b, betas, n_runs=runs, generator=g)
    wall = time.perf_counter() - t0
    plain += plain_loop(plain_steps - plain_steps // 2)
    n_steps = len(betas) - 1
    out = {
        "benchmark": "ais_log_z", "V": V, "H": H, "runs": runs, "n_betas": len(betas), "dtype": str(dtype),
        "threads": torch.get_num_threads(), "machine": cpu_name(),
        "wall_time_s": wall, "ms_per_temperature": 1e3 * wall / n_steps,
        "gflops": flops_step * n_steps / wall / 1e9,
        "plain_mm_gflops": flops_step * plain_steps / plain / 1e9,
        "plain_mm_ms_per_step": 1e3 * plain / plain_steps,
        "log_z": res.log_z,
    }
    out["ratio_to_plain_mm"] = out["gflops"] / out["plain_mm_gflops"]
    return out


# --------------------------------------------------------------------------- RBM training (PCD-1)


def fit_timed(model, x: torch.Tensor, batch_size: int, timer, logger=False, **limits) -> None:
    """``Trainer.fit`` of ``model`` on ``x`` in shuffled batches as the data modules hand them out, on the CPU, with
    the callback ``timer`` and the Trainer's ``limits`` (max_epochs, max_steps)."""

    L.Trainer(logger=logger, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              num_sanity_val_steps=0, callbacks=[timer], accelerator="cpu", devices=1, log_every_n_steps=50,
              **limits).fit(model, train_dataloaders=shuffled_loader(x, batch_size))


def lightning_epoch_seconds(model, x: torch.Tensor, batch_size: int) -> float:
    """One epoch of ``model`` over ``x`` through the Lightning Trainer; the epoch alone is timed (not the Trainer's
    set-up)."""
    class EpochTimer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds = time.perf_counter() - self.t0

    timer = EpochTimer()
    fit_timed(model, x, batch_size, timer, max_epochs=1)
    return timer.seconds


def mnist_train_binary(seed: int = 0) -> tuple[torch.Tensor, str]:
    """The 60,000 MNIST training images, one seeded Bernoulli sample ([N, 784] float32), or a stand-in.

    Timing does not depend on pixel values (dense BLAS), so without the MNIST
    files a Bernoulli(0.13) matrix of the same shape stands in; the result says which.
    """
    try:
        x = build_datamodule({"name": "mnist", "variant": "fixed", "download": False, "binarize_seed": seed}).split("train")
        return x.reshape(len(x), -1).float().contiguous(), "mnist/fixed train (60,000)"
    except (DataUnavailableError, OSError):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(60000, 784, generator=g) < 0.13).float(), "random Bernoulli(0.13) stand-in, 60,000×784"


def mnist_info(x: torch.Tensor):
    """The DataInfo of binary MNIST-shaped training data ``x`` [N, 784] (for models built outside a data module)."""
    return DataInfo("mnist", "mnist/fixed", DataSpace("binary", (1, 28, 28)), {"train": len(x)}, "bench",
                    train_mean=x.mean(0))


def benchmark_pcd_epoch(hidden: int = 500, batch_size: int = 100, lr: float = 0.01, repeats: int = 3,
                        sklearn_float64: bool = True, threads: int | None = None, seed: int = 0) -> dict:
    """One PCD-1 epoch over MNIST (60k, batch 100, H=500): genbench's RBM vs scikit-learn's BernoulliRBM.

    In one process, on the same binary data and the same threads, ``repeats``
    rounds of (a) ``BernoulliRBM(n_components=H, batch_size, learning_rate=lr,
    n_iter=1).fit`` on float32 data (the same precision as ours; and, with
    ``sklearn_float64``, on float64, sklearn's default), (b) genbench's
    ``RBM(persistent=True, k=1, n_chains=batch_size)`` through
    ``lightning.Trainer.fit`` for one epoch (the code path of a real run; the
    epoch is timed between the epoch hooks, so Trainer start-up is excluded but
    data loading, hooks and logging are in), (b') the same with
    ``matmul_dtype=bfloat16`` (mixed precision: bf16 products, float32
    parameters), and (c) the float32 updates through ``RBM.fit_batch`` in a
    bare loop (Lightning's overhead is (b) − (c)).
    ``floor_s`` is the five [B×V]·[V×H]-sized matmuls per update alone. Times
    are the minimum over rounds (other processes only ever add time).
    ``ratio`` = genbench epoch / sklearn float32 epoch (< 1: genbench is faster);
    ``ratio_bfloat16`` the same for (b'), measured only where the CPU multiplies
    bfloat16 natively (else None).

    ``threads`` limits both torch and numpy's BLAS (default: as configured).
    The load average before and after is recorded: on a busy 2-core machine
    two-thread runs slow down many-fold (each of the ~20 parallel regions per
    update waits for a core), so compare only runs made on an idle machine,
    or use ``threads=1``.
    """


    x, data_name = mnist_train_binary(seed)
    n, V = x.shape
    info = mnist_info(x)
    x_np = {"float32": x.numpy(), "float64": x.double().numpy()} if sklearn_float64 else {"float32": x.numpy()}

    def run_sklearn(dtype):
        t0 = time.perf_counter()
        BernoulliRBM(n_components=hidden, batch_size=batch_size, learning_rate=lr, n_iter=1, random_state=seed).fit(x_np[dtype])
        return time.perf_counter() - t0

    def make_model(matmul_dtype=None):
        torch.manual_seed(seed)
        return RBM(info, hidden=hidden, k=1, persistent=True, n_chains=batch_size, lr=lr, sample_steps=1,
                   matmul_dtype=matmul_dtype)

    def run_lightning(matmul_dtype=None):
        return lightning_epoch_seconds(make_model(matmul_dtype), x, batch_size)

    def run_core():
        model = make_model()
        opt = model.configure_optimizers()
        t0 = time.perf_counter()
        for batch in x.split(batch_size):
            model.fit_batch(batch, opt)
        return time.perf_counter() - t0

    def run_floor():
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(hidden, V, generator=g) * 0.01
        v, h = x[:batch_size], torch.rand(batch_size, hidden, generator=g)
        out_h, out_v, out_w = torch.empty(batch_size, hidden), torch.empty(batch_size, V), torch.empty(hidden, V)
        t0 = time.perf_counter()
        for _ in range(-(-n // batch_size)):
            torch.mm(v, W.t(), out=out_h), torch.mm(h, W, out=out_v), torch.mm(v, W.t(), out=out_h)
            torch.mm(h.t(), v, out=out_w), torch.mm(h.t(), v, out=out_w)
        return time.perf_counter() - t0


    quiet_lightning()
    old_threads, load_before = torch.get_num_threads(), os.getloadavg()
    if threads:
        torch.set_num_threads(threads)
    limits = threadpool_limits(threads, user_api="blas") if threads else nullcontext()
    bf16 = native_bfloat16(torch.device("cpu"))  # emulated bfloat16 would take minutes and say nothing useful
    with limits:
        times = _time_rounds(run_sklearn, run_lightning, run_core, run_floor, repeats, sklearn_float64, bf16)
    torch.set_num_threads(old_threads)
    best = {k: min(v) for k, v in times.items()}
    out = {"benchmark": "pcd1_epoch", "data": data_name, "hidden": hidden, "visible": V, "batch_size": batch_size,
           "updates": -(-n // batch_size), "lr": lr, "repeats": repeats, "threads": threads or old_threads,
           "machine": cpu_name(), "load_average_before": load_before[0],
           "load_average_after": os.getloadavg()[0], **best, "all_times_s": times,
           "ratio": best["genbench_lightning_s"] / best["sklearn_float32_s"],
           "ratio_bfloat16": best["genbench_lightning_bf16_s"] / best["sklearn_float32_s"] if bf16 else None,
           "ratio_core": best["genbench_core_s"] / best["sklearn_float32_s"],
           "lightning_overhead_s": best["genbench_lightning_s"] - best["genbench_core_s"]}
    if sklearn_float64:
        out["ratio_vs_sklearn_float64"] = best["genbench_lightning_s"] / best["sklearn_float64_s"]
    return out


def _time_rounds(run_sklearn, run_lightning, run_core, run_floor, repeats, sklearn_float64,
                 bf16: bool) -> dict[str, list[float]]:
    for fn in (run_core, run_floor):  # warm-up: first-touch allocations, BLAS thread start-up
        fn()
    times: dict[str, list[float]] = {"sklearn_float32_s": [], "genbench_lightning_s": [], "genbench_core_s": [], "floor_s": []}
    if sklearn_float64:
        times["sklearn_float64_s"] = []
    if bf16:
        times["genbench_lightning_bf16_s"] = []
    for _ in range(repeats):
        times["sklearn_float32_s"].append(run_sklearn("float32"))
        if sklearn_float64:
            times["sklearn_float64_s"].append(run_sklearn("float64"))
        times["genbench_lightning_s"].append(run_lightning())
        if bf16:
            times["genbench_lightning_bf16_s"].append(run_lightning("bfloat16"))
        times["genbench_core_s"].append(run_core())
        times["floor_s"].append(run_floor())
    return times
