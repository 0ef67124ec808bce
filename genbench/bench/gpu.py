"""``make gpu-check``: every family's paper configuration on the accelerator, against the CPU on the same weights.

For each family: a few optimizer steps through the real Trainer on the device (steps/s after a warm-up, peak
memory, the projected cost of the paper's training), then the same weights scored on the device and on the CPU
(the likelihood evaluator's estimate or bound, AIS for the RBM, and a GAN's mode count from the same latent draws):
they must agree within each estimator's tolerance. Writes ``results/bench/gpu.md`` and ``gpu.json`` with the device
name and the torch and CUDA versions. The data are synthetic tensors of the paper data's space and shape (a step's
cost and the agreement do not depend on the pixels); the 2D mixtures are the real ones.

Without a GPU it runs the same code on the CPU, says so in its first line, and measures no GPU;
``tests/unit/test_gpu_check.py`` runs it on the simulated device of :mod:`genbench.core.device_guard`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch

from ..core import paths
from ..core.devices import module_device
from ..data import build_datamodule
from ..evaluation.likelihood import likelihood_records
from ..evaluation.modes import mode_coverage
from ..models import build_model
from ..runs.config import compose
from ..runs.execute import quiet_lightning
from ..tables.spec import load_table, plan
from .probe import StepClock, Synthetic, paper_train_size

FAMILIES: dict[str, tuple[str, str, str]] = {
    "rbm": ("rbm-constraints", "baseline", "mnist"),
    "mixture_of_bernoullis": ("binary-baselines", "MoB (K=500)", "mnist"),
    "vae": ("iwae-table-1", "IWAE, 1 layer, k=50", "mnist"),
    "nade": ("ar-mnist", "NADE", "larochelle"),
    "made": ("ar-mnist", "MADE, 2 hidden layers, 32 masks", "larochelle"),
    "pixelcnn": ("ar-mnist", "PixelCNN", "larochelle"),
    "nice": ("nice-table-5-1", "NICE (MNIST", "mnist"),
    "realnvp": ("realnvp-table-5-2", "Real NVP (CIFAR-10", "cifar10"),
    "gan": ("ali-mode-coverage", "GAN", "grid25"),
    "ali": ("ali-mode-coverage", "ALI", "grid25"),
    "ali_svhn": ("ali-l2svm", "ALI (Table 5.4)", "svhn"),
    "ssl_gan": ("ssl-mnist", "GAN, feature matching (Salimans", "labels100"),
    "ssl_gan_cifar10": ("ali-ssl", "GAN, feature matching (Salimans et al. 2016, CIFAR-10", "cifar4000"),
    "ali_ssl_svhn": ("ali-ssl", "ALI, (K+1)-class joint discriminator (Table 5.4", "svhn1000"),
}
"""One paper configuration per family: (table, the start of its row's label, dataset), run at the paper scale."""


def paper_overrides(family: str) -> list[str]:
    """The overrides of the family's table row at the paper scale (seed 0), as ``genbench table`` would run it."""
    table, row, dataset = FAMILIES[family]
    return next(p.overrides for p in plan(load_table(table), "paper") if p.row.startswith(row) and p.dataset == dataset)


TINY = {"*": ["data.batch_size=4"], "made": ["model.hidden=[500,500]"]}
"""Overrides of the CPU run inside ``make test``: batches of 4, and MADE's 8,000-unit layers at 500 (its 32 masks
of 8,000 × 8,000 take a minute to build on a CPU); the other models as in the paper."""


@dataclass
class Agreement:
    metric: str
    estimator: str
    device: float
    cpu: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.device == self.cpu or abs(self.device - self.cpu) <= self.tolerance


@dataclass
class FamilyCheck:
    family: str
    data: str
    batch_size: int
    parameters: int
    steps_per_s: float
    peak_memory_mb: float | None
    paper_steps: int
    paper_hours: float | None  # None: measured at another batch size than the paper's
    agreements: list[Agreement] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.agreements)


def data_for(config: dict, steps: int, examples: int):
    """The real data module for 2D mixtures (generated, no files), synthetic tensors of the paper's space else."""
    batch = int(config["data"].get("batch_size", 100))
    if config["data"]["name"] == "gmm2d":
        return build_datamodule({**config["data"], "train_size": batch * steps, "val_size": 0, "test_size": examples})
    return Synthetic(build_datamodule(config["data"]).space(), max(batch * steps, examples), batch,
                     labels_per_class=config["data"].get("labels_per_class"))


def check_family(family: str, device: torch.device, steps: int, warmup: int, examples: int,
                 extra: dict[str, list[str]] | None = None) -> FamilyCheck:
    extra = extra or {}
    base = paper_overrides(family)
    paper, config = compose(base), compose([*base, *extra.get("*", []), *extra.get(family, [])])
    dm = data_for(config, steps, examples)
    torch.manual_seed(0)
    model = build_model(config["model"], dm.info)
    clock = StepClock()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    accelerator = {"cuda": "gpu", "cpu": "cpu"}.get(device.type, "simulated")
    trainer = L.Trainer(accelerator=accelerator, strategy="simulated" if accelerator == "simulated" else "auto",
                        devices=1, max_epochs=1, limit_train_batches=steps, limit_val_batches=0,
                        precision=config["trainer"].get("precision") or "32-true", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[clock])
    if getattr(model, "needs_training", True):
        trainer.fit(model, datamodule=dm)
    model.to(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    paper_batch = int(paper["data"].get("batch_size", 100))
    paper_steps = int(paper["trainer"]["max_epochs"]) * math.ceil(paper_train_size(paper["data"]) / paper_batch)
    rate = 1 / clock.seconds_per_step(warmup)
    hours = round(paper_steps / rate / 3600, 2) if rate > 0 and dm.batch_size == paper_batch else None
    return FamilyCheck(family, dm.variant, dm.batch_size, sum(p.numel() for p in model.parameters()), round(rate, 3),
                       peak, paper_steps, hours, agree(model, dm, device, examples))


SCORING = {"bound_k": 64, "ais": {"betas": 1000, "runs": 16, "seed": 0}}


def scores(model, dm, examples: int, latent: torch.Tensor | None) -> dict[tuple[str, str], tuple[float, float]]:
    """(metric, estimator) → (value, standard error) on this device: the likelihood evaluator's records, and the
    modes covered by the decoder's outputs for fixed latent draws (the same samples on any device)."""
    x = dm.split("test")[:examples]
    out = {(r.metric, r.estimator): (r.value, r.std_error or 0.0)
           for r in likelihood_records(model, x, dm.info, settings=SCORING, batch_size=dm.batch_size)}
    if callable(getattr(model, "classify", None)):  # the class scores, not their argmax: near ties may flip
        model.eval()
        with torch.no_grad():
            logits = model.classify(x.float().to(module_device(model)))
        out[("classify_mean_abs", "exact")] = (logits.abs().mean().item(), 0.0)
    if callable(getattr(model, "decode_mean", None)):  # the generator on fixed latent draws: deterministic
        device, z = module_device(model), torch.randn(64, int(model.latent_dim), generator=torch.Generator().manual_seed(1))
        model.eval()
        with torch.no_grad():
            out[("decoder_output_mean_abs", "exact")] = (model.decode_mean(z.to(device)).abs().mean().item(), 0.0)
    if latent is not None:
        device = module_device(model)
        model.eval()
        with torch.no_grad():
            for r in mode_coverage(lambda n: model.decode_mean(latent[:n].to(device)).cpu(), dm.info.mixture,
                                   ali_samples=len(latent), veegan_samples=len(latent)):
                if r.metric in ("modes_ali", "modes_veegan"):
                    out[(r.metric, "count")] = (r.value, 0.0)
    return out


def agree(model, dm, device: torch.device, examples: int) -> list[Agreement]:
    """The same weights scored on ``device`` and on the CPU. Tolerances: 0.1% of the value for exact numbers
    (float32 sums in another order; TF32 convolutions on GPUs), that plus 6 combined standard errors for stochastic
    ones (their draws differ by device), 0 for mode counts."""
    latent = None
    if dm.info.mixture is not None and callable(getattr(model, "decode_mean", None)):
        latent = torch.randn(2000, int(model.latent_dim), generator=torch.Generator().manual_seed(0))
    on_device = scores(model, dm, examples, latent)
    model.to("cpu")
    on_cpu = scores(model, dm, examples, latent)
    model.to(device)
    out = []
    for (metric, estimator), (v, se) in on_device.items():
        c, c_se = on_cpu[(metric, estimator)]
        stochastic = estimator != "exact" and estimator != "count"
        tol = 0.0 if estimator == "count" else 1e-3 * abs(c) + (6 * math.hypot(se, c_se) if stochastic else 1e-6)
        out.append(Agreement(metric, estimator, v, c, round(tol, 6)))
    return out


def environment(device: torch.device) -> dict:
    facts = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
             "host": platform.node(), "measured": time.strftime("%Y-%m-%d %H:%M %Z")}
    facts["name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}"
    return facts


def render(checks: list[FamilyCheck], env: dict) -> str:
    gpu = env["device"].startswith("cuda")
    head = (f"GPU check on {env['name']} ({env['device']}), torch {env['torch']}, CUDA {env['cuda']}, "
            f"{env['measured']}." if gpu else
            f"**No GPU was measured**: this ran on {env['device']} ({env['name']}), torch {env['torch']}; the figures "
            f"below are not GPU figures. Run `make gpu-check` on a machine with a GPU.")
    lines = ["# GPU check", "", head, "",
             "| family | data | batch | parameters | steps/s | peak memory (MiB) | paper steps | projected paper "
             "training (h) | CPU vs device |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in checks:
        worst = ", ".join(f"{a.metric} ({a.estimator}) {a.device:.4g} vs {a.cpu:.4g} (±{a.tolerance:.2g})"
                          for a in c.agreements if not a.ok)
        verdict = "agree" if c.ok else f"**differ**: {worst}"
        lines.append(f"| {c.family} | {c.data} | {c.batch_size} | {c.parameters:,} | {c.steps_per_s:.3g} | "
                     f"{'n/a' if c.peak_memory_mb is None else f'{c.peak_memory_mb:.0f}'} | {c.paper_steps:,} | "
                     f"{'n/a (not the paper batch)' if c.paper_hours is None else f'{c.paper_hours:.3g}'} | "
                     f"{verdict} ({len(c.agreements)} numbers) |")
    lines += ["", "Projected paper training: the paper's epochs × steps per epoch ÷ the measured steps/s (training "
              "only; evaluation and data loading of real files excluded). Agreement: the same weights scored on "
              "the device and on the CPU; exact numbers within 0.1%, estimates and bounds within 0.1% + 6 combined "
              "standard errors, mode counts equal."]
    return "\n".join(lines) + "\n"


def gpu_check(device: torch.device, steps: int = 30, warmup: int = 5, examples: int = 200,
              families: list[str] | None = None, extra: dict[str, list[str]] | None = None,
              out: Path | None = None) -> list[FamilyCheck]:
    """Check ``families`` (all by default) on ``device``; ``extra``: overrides for every family (``"*"``) or one."""
    quiet_lightning()
    checks = [check_family(f, device, steps, warmup, examples, extra) for f in families or FAMILIES]
    env = environment(device)
    out = Path(out) if out is not None else paths.results_dir("bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.md").write_text(render(checks, env))
    (out / "gpu.json").write_text(json.dumps({"environment": env, "checks": [
        {**asdict(c), "ok": c.ok} for c in checks]}, indent=1))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench.bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per family (default 30)")
    parser.add_argument("--families", default=None, help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--tiny", action="store_true", help="batches of 4 and 3 steps (the CPU check of make test)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    families = args.families.split(",") if args.families else None
    steps, warmup, examples, extra = (3, 1, 8, TINY) if args.tiny else (args.steps, 5, 200, None)
    checks = gpu_check(device, steps, warmup, examples, families, extra)
    print((paths.results_dir("bench") / "gpu.md").read_text())
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
