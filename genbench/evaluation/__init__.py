"""Evaluators: pure functions (model, data) → result records, and their Lightning callback.

:func:`evaluate` applies every evaluator whose needs a model meets (a model
without ``sample`` gets no mode coverage, one without a likelihood gets no NLL):
tables show "n/a" where none applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..core.errors import ModelContractError
from .likelihood import likelihood_records
from .records import Result

FIGURE_SAMPLES = {"image": 64, "points": 2000}


def evaluate(model, datamodule, settings: dict[str, Any] | None = None, figure_dir: Path | None = None,
             split: str = "test") -> tuple[list[Result], list[str]]:
    """All applicable evaluators on ``split``; returns the records and the figure paths written."""
    settings = dict(settings or {})
    info = datamodule.info
    check_capabilities(model, datamodule.split(split)[:2], info)
    records = likelihood_records(model, datamodule.split(split), info, split, settings.get("likelihood"),
                              batch_size=datamodule.eval_batch_size)
    if settings.get("decoder_ais"):
        from .decoder_ais import decoder_ais_records, has_decoder  # AIS for decoder models (Wu et al. 2017), on request

        if has_decoder(model):
            records += decoder_ais_records(model, datamodule.split(split), info, settings["decoder_ais"],
                                           entropy=not any(r.metric == "mixture_entropy" for r in records))
    if settings.get("features") and callable(getattr(model, "features", None)) and datamodule.labels(split) is not None:
        from .features import svm_error  # a linear probe of encoder features, when the run asks for it

        records += svm_error(model, datamodule, split, **settings["features"])
    figures: list[str] = []
    if callable(getattr(model, "sample", None)):
        model.eval()
        if info.mixture is not None:
            from .modes import mode_coverage

            records += mode_coverage(model, info.mixture, **settings.get("modes", {}))
            from .inference import has_inference, inference_quality

            if has_inference(model):  # encoder + decoder: reconstructions and q(z) vs the prior
                records += inference_quality(model, datamodule.split(split), info.mixture, **settings.get("inference", {}))
        if figure_dir is not None:
            figures = sample_figures(model, datamodule, Path(figure_dir))
    for r in records:
        r.data = r.data or info.variant
        r.split = r.split or split
    return records, figures


def check_capabilities(model, x: torch.Tensor, info) -> None:
    """Call each capability once on two examples and check the shapes against the contract (docs/design.md,
    "Model capabilities"), so that a wrong model fails here with its cause named, not deep inside an evaluator."""
    name = type(model).__name__
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the check must not shift later draws
            x = x.float().to(next(iter(model.parameters()), torch.empty(0)).device)
            calls = {"log_prob(x)": lambda: model.log_prob(x), "log_prob_bound(x, 2)": lambda: model.log_prob_bound(x, 2),
                     "free_energy(x)": lambda: model.free_energy(x)}
            for call, fn in calls.items():
                if callable(getattr(model, call.split("(")[0], None)):
                    out = fn()
                    if tuple(out.shape) != (len(x),):
                        raise ModelContractError(
                            f"{name}.{call} returned shape {tuple(out.shape)} for a batch of {len(x)} examples of shape "
                            f"{tuple(x.shape[1:])}; it must return one number per example, shape ({len(x)},) "
                            f"(e.g. sum the per-dimension terms over every axis but the first)")
            if callable(getattr(model, "sample", None)):
                shape = tuple(model.sample(2).shape)
                if shape not in ((2, *info.shape), (2, info.dim)):
                    raise ModelContractError(
                        f"{name}.sample(2) returned shape {shape}; it must return 2 draws shaped like the data, "
                        f"{(2, *info.shape)} (or flat, {(2, info.dim)})")
    finally:
        model.train(was_training)


def sample_figures(model, datamodule, figure_dir: Path) -> list[str]:
    """Sample figures in the data's own form: an image grid, or a 2D scatter over the true density."""
    from .samples import save_density_2d, save_image_grid, save_scatter_2d

    info = datamodule.info
    figure_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if info.space.kind == "continuous" and info.dim == 2:
            x = model.sample(FIGURE_SAMPLES["points"]).detach().cpu()
            test = datamodule.split("test")[: FIGURE_SAMPLES["points"]]
            return [str(save_scatter_2d(x, figure_dir / "samples.png", mixture=info.mixture, data=test,
                                        title=f"samples ({info.variant})")),
                    str(save_density_2d(x, figure_dir / "density.png", mixture=info.mixture,
                                        log_prob=model.log_prob if callable(getattr(model, "log_prob", None)) else None))]
        if len(info.shape) == 3:  # models with sample_means (RBMs) show E[v | h], as Dumoulin's figures do
            draw = getattr(model, "sample_means", model.sample)
            x = draw(FIGURE_SAMPLES["image"]).detach().cpu().reshape(-1, *info.shape)
            levels = info.space.levels  # discrete data: integers 0..levels−1 (17-level digits are not 0..255)
            return [str(save_image_grid(x, figure_dir / "samples.png", title=f"samples ({info.variant})",
                                        value_range=(0, levels - 1) if levels else None))]
    return []


class PeriodicEvaluation(L.Callback):
    """Runs the likelihood evaluator on a split every few epochs and logs it (nats, with its estimator)."""

    def __init__(self, datamodule, every_n_epochs: int = 1, split: str = "val", max_examples: int = 2000,
                 settings: dict | None = None):
        self.datamodule, self.every, self.split, self.max_examples = datamodule, every_n_epochs, split, max_examples
        self.settings = settings  # the run's likelihood settings (e.g. a short AIS schedule for RBMs)

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every or self.split not in self.datamodule.splits:
            return
        data = self.datamodule.split(self.split)[: self.max_examples]
        for r in likelihood_records(pl_module, data.to(pl_module.device), self.datamodule.info, self.split, self.settings):
            if r.metric in ("nll", "bits_per_dim"):
                pl_module.log(f"{self.split}/{r.metric}", r.value)
