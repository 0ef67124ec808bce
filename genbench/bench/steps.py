"""Speed of one training step (``make bench`` (j), (k)): Lightning against a bare loop, genbench against peers, and
both against the arithmetic floor, each a ratio measured in one call.

* (j) one small model per family, its update as a real run takes it (``lightning.Trainer.fit`` over the data
  modules' loader, a CSV logger, ``log_every_n_steps`` 50) beside a bare loop of the same update over pre-batched
  tensors, and beside the arithmetic floor: the matrix products one update performs (recorded from the update
  itself by a dispatch mode, backward included) replayed as bare ``torch.mm``/``torch.bmm`` into preallocated
  buffers. Models: the RBM's PCD-1 update (MNIST shapes, H = 500, batch 100), the 2D GAN toy (the ALI code's
  networks, batch 100), the 2D Real NVP of ``flows-2d`` (8 couplings, 2 × 64 ReLU, batch 500) with and without
  batch norm, the VAE (Burda's 784-200-200-50, batch 20, k = 1) and MADE (784-500-784, batch 100).
* (k) the 2D Real NVP against zuko's and normflows' (the peers a user would otherwise pick; normflows is the
  ``bench`` extra) on equal architectures, parameter counts stated: a training step (Adam, batch 500), log_prob
  and sampling of 100,000 points.

Each figure is the median step over ``steps`` steps after a warm-up, the minimum over ``rounds`` interleaved rounds
(other processes only ever add time). Per-step times are microseconds to milliseconds: run on an idle machine.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable

import lightning as L
import torch
import zuko
from lightning.pytorch.loggers import CSVLogger
from torch.utils._python_dispatch import TorchDispatchMode

from ..core.optional import require
from ..data import build_datamodule
from ..data.base import DataInfo, DataSpace
from ..evaluation.samples import new_figure, save_figure
from ..models import build_model
from ..models.autoregressive import MADE
from ..models.flows import RealNVP
from ..models.rbm import RBM
from ..nn.flows import evaluating
from ..runs.execute import cpu_name, quiet_lightning
from ..tables import compose
from .rbm import fit_timed, mnist_info, mnist_train_binary
from .vae import burda_model

PRODUCTS = {"mm", "addmm", "bmm", "baddbmm"}


# -- the arithmetic floor: the step's own products, replayed -------------------------------------------------------------

class _Products(TorchDispatchMode):
    """Records the (batch, n, k, m) shape of every matrix product dispatched while active."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, int, int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in PRODUCTS:
            a, b = args[-2:] if name in ("addmm", "baddbmm") else args[:2]
            self.shapes.append((a.shape[0], *a.shape[-2:], b.shape[-1]) if a.ndim == 3 else (1, *a.shape, b.shape[-1]))
        return func(*args, **(kwargs or {}))


def products_of(step: Callable[[], object]) -> list[tuple[int, int, int, int]]:
    """The matrix products one call of ``step`` performs, backward included."""
    with _Products() as rec:
        step()
    return rec.shapes


def flops(products) -> int:
    return sum(2 * b * n * k * m for b, n, k, m in products)


def products_seconds(products, repeats: int = 200, seed: int = 0) -> float:
    """Seconds for the products alone, each a bare ``torch.mm`` (or ``bmm``) into a preallocated buffer."""
    g = torch.Generator().manual_seed(seed)
    work = []
    for b, n, k, m in products:
        batch = () if b == 1 else (b,)
        work.append((torch.mm if b == 1 else torch.bmm, torch.randn(*batch, n, k, generator=g),
                     torch.randn(*batch, k, m, generator=g), torch.empty(*batch, n, m)))
    for fn, a, w, out in work:
        fn(a, w, out=out)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for fn, a, w, out in work:
            fn(a, w, out=out)
    return (time.perf_counter() - t0) / repeats


# -- Lightning and the bare loop -----------------------------------------------------------------------------------------

def lightning_step_seconds(model, data: torch.Tensor, batch_size: int, steps: int, warmup: int) -> float:
    """Median seconds from one batch's start to the next under ``Trainer.fit``: loading, the update, hooks and
    logging (a CSV logger, ``log_every_n_steps`` 50, as ``configs/trainer/default.yaml``)."""

    class Stamps(L.Callback):
        def __init__(self):
            self.t = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.t.append(time.perf_counter())

    stamps = Stamps()
    with tempfile.TemporaryDirectory() as logs:
        fit_timed(model, data, batch_size, stamps, logger=CSVLogger(logs), max_steps=warmup + steps + 1)
    gaps = [b - a for a, b in zip(stamps.t, stamps.t[1:])][warmup:]
    return statistics.median(gaps)


def bare_step_seconds(update: Callable[[torch.Tensor, int], object], batches: list[torch.Tensor], steps: int,
                      warmup: int) -> float:
    """Median seconds of ``update(batch, i)`` over pre-batched tensors."""
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        update(batches[i % len(batches)], i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:])


# -- the models ----------------------------------------------------------------------------------------------------------

def _rbm(x):
    model = RBM(mnist_info(x), hidden=500, k=1, persistent=True, n_chains=100, lr=0.01)
    opt = optimizer_of(model)
    return model, lambda b, i: model.fit_batch(b, opt), 100


def _gan(x):
    info = _gmm_info(x)
    model = build_model(compose(["experiment=gan_grid25"])["model"], info)
    opts = model.configure_optimizers()
    return model, lambda b, i: model.update(b, i, *opts[:2]), 100


def _realnvp(batch_norm: bool):
    def make(x):
        model = RealNVP(_gmm_info(x), architecture="mlp", couplings=8, hidden=64, layers=2, weight_norm=False,
                        batch_norm=batch_norm, lr=3e-3)
        return model, autograd_update(lambda b: model.training_loss(b)[0], optimizer_of(model)), 500
    return make


def optimizer_of(model) -> torch.optim.Optimizer:
    """The optimizer a model's ``configure_optimizers`` gives (without its learning-rate schedule)."""
    opt = model.configure_optimizers()
    return opt["optimizer"] if isinstance(opt, dict) else opt


def autograd_update(loss_of: Callable[[torch.Tensor], torch.Tensor],
                    opt: torch.optim.Optimizer) -> Callable[[torch.Tensor, int], None]:
    """A training step as Lightning's automatic optimization takes it: loss, zero_grad, backward, step."""
    def update(batch, i):
        loss = loss_of(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return update


def _vae(x):
    model = burda_model(x, k=1)
    return model, autograd_update(lambda b: -model.bound(b, model.k).sum(), optimizer_of(model)), 20


def _made(x):
    model = MADE(mnist_info(x), hidden=[500], masks=1, optimizer="adam", lr=3e-3)
    return model, autograd_update(lambda b: -model.training_log_prob(b).mean(), optimizer_of(model)), 100


def _gmm_info(x):
    return DataInfo("gmm2d", "gmm2d/bench", DataSpace("continuous", (2,)), {"train": len(x)}, "bench")


def _gmm(n: int = 100_000) -> torch.Tensor:
    return build_datamodule({"name": "gmm2d", "mixture": "grid25", "train_size": n, "val_size": 0,
                             "test_size": 1000}).split("train").float()


SHORT = {"rbm_pcd1": "RBM PCD-1", "gan_toy": "GAN toy", "realnvp_2d_bn": "Real NVP 2D + BN", "realnvp_2d": "Real NVP 2D",
         "vae": "VAE k=1", "made": "MADE"}
MODELS = {"rbm_pcd1": ("RBM PCD-1 update (784-500, batch 100)", "mnist", _rbm),
          "gan_toy": ("GAN 2D toy (ALI code's networks, batch 100)", "gmm", _gan),
          "realnvp_2d_bn": ("Real NVP 2D, 8 couplings 2 × 64, batch norm (batch 500)", "gmm", _realnvp(True)),
          "realnvp_2d": ("Real NVP 2D, 8 couplings 2 × 64, no batch norm (batch 500)", "gmm", _realnvp(False)),
          "vae": ("VAE 784-200-200-50, k = 1 (batch 20)", "mnist", _vae),
          "made": ("MADE 784-500-784, one mask (batch 100)", "mnist", _made)}


def lightning_own_step_seconds(steps: int = 300, warmup: int = 30) -> dict[str, float]:
    """Lightning's own cost per step: a one-parameter module whose step does almost nothing, with automatic and with
    manual optimization, over the same loader and logger as :func:`lightning_step_seconds`. No update through the
    Trainer can cost less than this more than its bare loop."""
    class Tiny(L.LightningModule):
        def __init__(self, manual: bool):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.automatic_optimization = not manual

        def training_step(self, batch, batch_idx):
            if self.automatic_optimization:
                return self.w * batch[0, 0]
            self.w.grad = batch[0, :1].clone()
            self.optimizers().step()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.randn(2 * (warmup + steps + 2), 2)
    return {kind: lightning_step_seconds(Tiny(kind == "manual"), data, 2, steps, warmup) for kind in ("automatic", "manual")}


def benchmark_steps(names=None, steps: int = 300, warmup: int = 30, rounds: int = 3, seed: int = 0) -> dict:
    """(j): per model, the median step under Lightning, in a bare loop and of the products alone."""
    quiet_lightning()
    data = {}
    out = {"benchmark": "training_step", "steps": steps, "warmup": warmup, "rounds": rounds,
           "threads": torch.get_num_threads(), "machine": cpu_name(), "models": {}}
    for name in names or MODELS:
        label, source, make = MODELS[name]
        if source not in data:
            data[source] = mnist_train_binary(seed)[0] if source == "mnist" else _gmm()
        x = data[source]
        torch.manual_seed(seed)
        model, update, batch = make(x)
        batches = list(x[torch.randperm(len(x))[: batch * 50]].split(batch))
        products = products_of(lambda: update(batches[0], 0))
        best = {"lightning_s": [], "bare_s": [], "floor_s": []}
        for _ in range(rounds):
            torch.manual_seed(seed)
            model_l, _, _ = make(x)
            best["lightning_s"].append(lightning_step_seconds(model_l, x, batch, steps, warmup))
            best["bare_s"].append(bare_step_seconds(update, batches, steps, warmup))
            best["floor_s"].append(products_seconds(products))
        row = {"label": label, "batch_size": batch, "parameters": sum(p.numel() for p in model.parameters()),
               "products": len(products), "gflop": flops(products) / 1e9, "all_times_s": best,
               **{k: min(v) for k, v in best.items()}}
        row["lightning_over_bare"] = row["lightning_s"] / row["bare_s"]
        row["bare_over_floor"] = row["bare_s"] / row["floor_s"]
        row["lightning_over_floor"] = row["lightning_s"] / row["floor_s"]
        row["floor_gflops"] = row["gflop"] / row["floor_s"]
        out["models"][name] = row
    own = [lightning_own_step_seconds(steps, warmup) for _ in range(rounds)]
    out["lightning_own_s"] = {k: min(o[k] for o in own) for k in own[0]}
    return out


# -- (k) the 2D Real NVP against zuko and normflows ------------------------------------------------------------------------

def peer_flows(batch_norm: bool) -> dict:
    """{name: (module, training loss of a batch, log_prob, sample)} of the 2D Real NVP (8 affine couplings, s and t
    from one 2 × 64 ReLU network, Gaussian prior) in genbench, zuko and normflows. Only genbench's has the
    ``flows-2d`` batch norm; the peers have none."""
    nf = require("normflows", "make bench (k), the flows against normflows")


    x = _gmm(1000)
    ours = RealNVP(_gmm_info(x), architecture="mlp", couplings=8, hidden=64, layers=2, weight_norm=False,
                   batch_norm=batch_norm, lr=3e-3)
    z = zuko.flows.RealNVP(features=2, transforms=8, hidden_features=[64, 64])
    layers = []
    for _ in range(8):
        layers += [nf.flows.AffineCouplingBlock(nf.nets.MLP([1, 64, 64, 2], init_zeros=True)),
                   nf.flows.Permute(2, mode="swap")]
    n = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), layers)

    return {"genbench": (ours, lambda b: ours.training_loss(b)[0], ours.log_prob, ours.sample),
            "zuko": (z, lambda b: -z().log_prob(b).mean(), lambda b: z().log_prob(b), lambda k: z().sample((k,))),
            "normflows": (n, lambda b: n.forward_kld(b), n.log_prob, lambda k: n.sample(k)[0])}


def benchmark_peers(steps: int = 300, warmup: int = 30, rounds: int = 5, points: int = 100_000, seed: int = 0) -> dict:
    """(k): per implementation, the median training step (batch 500, Adam: genbench's own, fused; the peers'
    ``torch.optim.Adam`` with its defaults, as their documentation trains), and log_prob and sampling of
    ``points`` points in evaluation mode without gradients; with and without genbench's batch norm. The three
    implementations take turns within each round, so a slow spell of a shared machine cannot fall on one alone."""
    x = _gmm()
    batches = list(x[: 500 * 50].split(500))
    out = {"benchmark": "flows_2d_peers", "steps": steps, "points": points, "rounds": rounds,
           "threads": torch.get_num_threads(), "machine": cpu_name(), "variants": {}}
    for batch_norm in (True, False):
        torch.manual_seed(seed)
        flows = peer_flows(batch_norm)
        updates = {name: autograd_update(loss_of, optimizer_of(module) if name == "genbench"
                                         else torch.optim.Adam(module.parameters(), lr=3e-3))
                   for name, (module, loss_of, _, _) in flows.items()}
        times = {name: {"step_s": [], "log_prob_s": [], "sample_s": []} for name in flows}
        for _ in range(rounds):
            for name, (module, _, log_prob, sample) in flows.items():
                times[name]["step_s"].append(bare_step_seconds(updates[name], batches, steps, warmup))
                with evaluating(module), torch.no_grad():
                    t0 = time.perf_counter()
                    log_prob(x[:points])
                    times[name]["log_prob_s"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    sample(points)
                    times[name]["sample_s"].append(time.perf_counter() - t0)
        rows = {name: {"parameters": sum(p.numel() for p in flows[name][0].parameters()), "all_times_s": t,
                       **{k: min(v) for k, v in t.items()}} for name, t in times.items()}
        for name in ("zuko", "normflows"):
            for k in ("step_s", "log_prob_s", "sample_s"):
                rows["genbench"][f"{k[:-2]}_over_{name}"] = rows["genbench"][k] / rows[name][k]
        out["variants"]["batch_norm" if batch_norm else "no_batch_norm"] = rows
    return out


# -- the report ----------------------------------------------------------------------------------------------------------

def markdown(result: dict) -> list[str]:
    lines = []
    steps = result.get("training_step")
    if steps:
        lines += ["## (j) One training step: Lightning, a bare loop, and the arithmetic floor", "",
                  f"Median step over {steps['steps']} steps, best of {steps['rounds']} rounds, {steps['threads']} "
                  "threads. Lightning: `Trainer.fit` over the data modules' loader with a CSV logger; bare: the same "
                  "update over pre-batched tensors; floor: the update's own matrix products (recorded from it, backward "
                  "included) as bare `torch.mm`/`bmm` into preallocated buffers.", "",
                  "| model | parameters | GFLOP per step | Lightning (ms) | bare (ms) | floor (ms) | Lightning / bare "
                  "(goal ≤ 1.05) | bare / floor | floor GFLOP/s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in steps["models"].values():
            lines.append(f"| {r['label']} | {r['parameters']:,} | {r['gflop']:.3f} | {1e3 * r['lightning_s']:.2f} | "
                         f"{1e3 * r['bare_s']:.2f} | {1e3 * r['floor_s']:.2f} | **{r['lightning_over_bare']:.2f}** | "
                         f"{r['bare_over_floor']:.2f} | {r['floor_gflops']:.0f} |")
        own = steps.get("lightning_own_s")
        if own:
            lines += ["", f"Lightning's own cost per step (a one-parameter module, the same loader and logger): "
                      f"{1e3 * own['automatic']:.2f} ms with automatic optimization (the flows, VAE, MADE), "
                      f"{1e3 * own['manual']:.2f} ms with manual optimization (the RBM, GAN). Lightning / bare ≤ 1.05 "
                      "needs a bare step of at least 20× that."]
        lines += [""]
    peers = result.get("flow_peers")
    if peers:
        lines += ["## (k) The 2D Real NVP against zuko and normflows", "",
                  f"8 affine couplings, s and t from one 2 × 64 ReLU network, N(0, I) prior; a training step on batch "
                  f"500 (genbench: its own fused Adam; the peers: `torch.optim.Adam` as their documentation trains), "
                  f"log_prob and sampling of {peers['points']:,} points in evaluation mode. Only genbench's first "
                  "variant has `flows-2d`'s batch norm (the peers have none). genbench / peer: below 1 is faster.", "",
                  "| variant | implementation | parameters | step (ms) | log_prob (s) | sample (s) | step / peer | "
                  "log_prob / peer | sample / peer |", "|---|---|---|---|---|---|---|---|---|"]
        for variant, rows in peers["variants"].items():
            g = rows["genbench"]
            for name, r in rows.items():
                rel = ("" if name == "genbench" else
                       f"**{g[f'step_over_{name}']:.2f}** | **{g[f'log_prob_over_{name}']:.2f}** | "
                       f"**{g[f'sample_over_{name}']:.2f}**")
                lines.append(f"| {variant.replace('_', ' ')} | {name} | {r['parameters']:,} | {1e3 * r['step_s']:.2f} | "
                             f"{r['log_prob_s']:.3f} | {r['sample_s']:.3f} | " + (rel or "– | – | –") + " |")
        lines += ["", "Goals: step ≤ 0.9 of each peer without batch norm, ≤ 1.0 with it; log_prob and sampling ≤ 1.0.", ""]
    par = result.get("parallel_table")
    if par:
        lines += [f"## (l) `{par['table']}` at smoke scale: one process against {par['workers']} single-thread workers", "",
                  f"Fastest of {par.get('rounds', 1)} interleaved rounds. Sequential (one process, one thread): "
                  f"{par['sequential_s']:.1f} s; {par['workers']} workers of one thread each forked by the `local` "
                  f"launcher: {par['parallel_s']:.1f} s, **{par['speedup']:.2f}×** faster (goal ≥ 1.6)"
                  + (f"; as {par['workers']} `submitit_local` jobs (each a new interpreter, 4–5 s of imports): "
                     f"{par['submitit_s']:.1f} s, {par['submitit_speedup']:.2f}×" if par.get("submitit_s") else "")
                  + f". The renders' numbers are {'identical' if par['same_numbers'] else 'DIFFERENT: ' + par['difference']}.",
                  ""]
    return lines


def ratios_figure(result: dict, path) -> None:
    """Every ratio of the report with a goal, drawn as "lower is better" (an at-least goal is drawn inverted, e.g.
    AIS as the plain matmul's GFLOP/s over AIS's), one bar each, its goal a black tick, red when missed."""
    bars = []
    if result.get("pcd_epoch"):
        bars.append(("(a) PCD-1 epoch / scikit-learn's", result["pcd_epoch"]["ratio"], 0.5))
    if result.get("ais"):
        bars.append(("(b) plain matmul / AIS, GFLOP/s", 1 / result["ais"]["ratio_to_plain_mm"], 1 / 0.75))
    if result.get("vae_bound"):
        bars.append(("(d) L_5000 / its products", result["vae_bound"]["ratio_to_floor"], 1.5))
    for key, r in (result.get("training_step") or {}).get("models", {}).items():
        short = SHORT.get(key, key)
        bars += [(f"(j) {short}: Lightning / bare", r["lightning_over_bare"], 1.05),
                 (f"(j) {short}: bare / its products", r["bare_over_floor"], 1.25 if key in ("rbm_pcd1", "gan_toy") else None)]
    for variant, rows in (result.get("flow_peers") or {}).get("variants", {}).items():
        goal = 1.0 if variant == "batch_norm" else 0.9
        for peer in ("zuko", "normflows"):
            for k, g in (("step", goal), ("log_prob", 1.0), ("sample", 1.0)):
                bars.append((f"(k) Real NVP{' + BN' if variant == 'batch_norm' else ''}: {k} / {peer}",
                             rows["genbench"][f"{k}_over_{peer}"], g))
    if result.get("parallel_table"):
        par = result["parallel_table"]
        bars.append((f"(l) {par['table']}: {par['workers']} workers / 1", 1 / par["speedup"], 1 / 1.6))
    if not bars:
        return
    fig = new_figure(figsize=(8, 0.26 * len(bars) + 1.3))
    ax = fig.add_subplot(1, 1, 1)
    ys = range(len(bars))
    ax.barh(list(ys), [b[1] for b in bars], color=["tab:red" if b[2] and b[1] > b[2] else "tab:blue" for b in bars])
    for y, (_, _, goal) in zip(ys, bars):
        if goal:
            ax.plot([goal, goal], [y - 0.4, y + 0.4], color="black", lw=1.5)
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("ratio, lower is better (black tick: goal; red: goal missed)")
    ax.set_title(f"genbench speed ratios, {result.get('machine', '')}, {result.get('date', '')}", fontsize=9)
    save_figure(fig, path)
