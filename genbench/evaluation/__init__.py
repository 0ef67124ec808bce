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

from ..core.devices import forked_rng, module_device
from ..core.errors import ModelContractError
from ..models.contract import CAPABILITIES, offers
from .classification import classification_error
from .decoder_ais import decoder_ais_records
from .features import svm_error
from .inference import inference_quality
from .likelihood import likelihood_records
from .modes import mode_coverage
from .records import Result
from .samples import save_density_2d, save_image_grid, save_scatter_2d

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
        if offers(model, "decoder"):
            records += decoder_ais_records(model, datamodule.split(split), info, settings["decoder_ais"],
                                           entropy=not any(r.metric == "mixture_entropy" for r in records))
    if offers(model, "classify") and datamodule.labels(split) is not None:
        records += classification_error(model, datamodule.split(split), datamodule.labels(split),
                                        datamodule.eval_batch_size)
    if settings.get("features") and offers(model, "features") and datamodule.labels(split) is not None:
        records += svm_error(model, datamodule, split, **settings["features"])
    figures: list[str] = []
    if offers(model, "sample"):
        model.eval()
        if info.mixture is not None:
            records += mode_coverage(model, info.mixture, **settings.get("modes", {}))

            if offers(model, "inference"):  # encoder + decoder: reconstructions and q(z) vs the prior
                records += inference_quality(model, datamodule.split(split), info.mixture, **settings.get("inference", {}))
        if figure_dir is not None:
            figures = sample_figures(model, datamodule, Path(figure_dir))
    for r in records:
        r.data = r.data or info.variant
        r.split = r.split or split
    return records, figures


def check_capabilities(model, x: torch.Tensor, info) -> None:
    """Call each capability the model offers once on two examples and check its output against the contract
    (:data:`genbench.models.contract.CAPABILITIES`), so that a wrong model fails here with its cause named, not
    deep inside an evaluator."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), forked_rng(module_device(model)):  # the check must not shift later draws
            x = x.float().to(module_device(model))
            for cap in CAPABILITIES:
                if cap.probe is not None and offers(model, cap.name):
                    problem = cap.expect(cap.probe(model, x), x, info)
                    if problem:
                        raise ModelContractError(f"{type(model).__name__}.{cap.call} {problem}")
    finally:
        model.train(was_training)


def sample_figures(model, datamodule, figure_dir: Path) -> list[str]:
    """Sample figures in the data's own form: an image grid, or a 2D scatter over the true density."""
    info = datamodule.info
    figure_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if info.space.kind == "continuous" and info.dim == 2:
            x = model.sample(FIGURE_SAMPLES["points"]).detach().cpu()
            test = datamodule.split("test")[: FIGURE_SAMPLES["points"]]
            return [str(save_scatter_2d(x, figure_dir / "samples.png", mixture=info.mixture, data=test,
                                        title=f"samples ({info.variant})")),
                    str(save_density_2d(x, figure_dir / "density.png", mixture=info.mixture,
                                        log_prob=model.log_prob if offers(model, "log_prob") else None))]
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
        for r in likelihood_records(pl_module, data, self.datamodule.info, self.split, self.settings):
            if r.metric in ("nll", "bits_per_dim"):
                pl_module.log(f"{self.split}/{r.metric}", r.value)
