"""Test error of a model that classifies (``classify``): the semi-supervised protocols' one number (Salimans et al.
2016, Tables 1–2; Dumoulin 2018, Tables 5.1–5.2).

``error_pct`` is 100 × the fraction p of the split's N examples whose argmax class is wrong, ``test_errors`` their
count (Salimans et al.'s MNIST unit): exact on that split (no sampling in the evaluation), with the binomial standard
error √(p(1 − p)/N) in their units. Each example's loss is kept as its score (100·wrong and N·wrong, whose means are
the two numbers), so two models are compared paired on the same examples (:mod:`genbench.tables.paired`).
"""

from __future__ import annotations

import math

import torch

from ..core.devices import module_device
from .records import Result


def predictions(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """argmax_k of ``model.classify`` on ``x`` in eval mode, in batches, on the model's device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = module_device(model)
            return torch.cat([model.classify(part.float().to(device)).argmax(1).cpu() for part in x.split(batch_size)])
    finally:
        model.train(was_training)


def classification_error(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> list[Result]:
    """``error_pct`` and ``test_errors`` of the model's predictions on (x, y)."""
    wrong = (predictions(model, x, batch_size) != y.cpu()).double()
    n = len(wrong)
    p = float(wrong.mean())
    se = math.sqrt(p * (1 - p) / n)
    settings = {"predictor": getattr(model, "predictor", "argmax of classify(x)")}
    return [Result("error_pct", 100 * p, "%", "exact", std_error=100 * se, n=n, settings=settings,
                   scores=(100 * wrong).numpy()),
            Result("test_errors", n * p, "errors", "exact", std_error=n * se, n=n, settings=settings,
                   scores=(n * wrong).numpy())]
