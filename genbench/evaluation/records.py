"""Result records: one number together with everything needed to read it honestly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch

ESTIMATORS = ("exact", "lower bound", "upper bound", "estimate")
"""How a number relates to the quantity its metric names.

``exact`` is computed without sampling error beyond the finite test set;
``lower bound`` / ``upper bound`` bound the named quantity (possibly
stochastically, e.g. an importance-weighted bound); ``estimate`` is a
stochastic estimate with no bound guarantee (AIS log Z, Monte-Carlo entropy).
"""


@dataclass
class Result:
    """One reported number.

    ``std_error`` is the standard error of ``value`` (over test points or
    estimator runs); ``interval`` an explicit (low, high) interval when the
    estimator reports one (AIS's ±3σ).  ``n`` counts what the value averages
    over (test points, samples, runs).

    ``scores``: the per-example values whose mean ``value`` is (a likelihood's), kept out of the record's JSON and
    saved beside it (:mod:`genbench.runs.scores`), so that two models scored on the same examples can be compared
    paired; ``shared_se``: the standard error of a term common to every example (AIS's log Z), which pairing over
    examples cannot remove.
    """

    metric: str
    value: float
    unit: str
    estimator: str
    std_error: float | None = None
    interval: tuple[float, float] | None = None
    n: int | None = None
    split: str | None = None
    data: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    scores: Any = field(default=None, repr=False, compare=False)
    shared_se: float = field(default=0.0, repr=False, compare=False)

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator {self.estimator!r} is not one of {ESTIMATORS}")
        self.value = float(self.value)
        if self.std_error is not None:
            self.std_error = float(self.std_error)
        if self.interval is not None:
            self.interval = (float(self.interval[0]), float(self.interval[1]))

    @property
    def unexplained_non_finite(self) -> bool:
        """A NaN or infinite value that no evaluator declared undefined by design (``settings["undefined"]`` or
        ``settings["skipped"]`` gives why): a broken score, not a result."""
        return not math.isfinite(self.value) and not (self.settings.get("undefined") or self.settings.get("skipped"))

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON keeps it (without the per-example scores)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.compare}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        d = dict(d)
        if d.get("interval") is not None:
            d["interval"] = tuple(d["interval"])
        return cls(**d)

    def __str__(self) -> str:
        unc = f" ± {self.std_error:.3g}" if self.std_error is not None else ""
        if self.interval is not None:
            unc += f" [{self.interval[0]:.4g}, {self.interval[1]:.4g}]"
        where = f" on {self.data}" if self.data else ""
        return f"{self.metric} = {self.value:.4g}{unc} {self.unit} ({self.estimator}{where})"


def mean_and_std_error(values) -> tuple[float, float]:
    """Mean and its standard error of a 1-D tensor or array of per-item values."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = v.numel()
    mean = v.mean().item()
    se = (v.std(unbiased=True).item() / math.sqrt(n)) if n > 1 else float("nan")
    return mean, se
