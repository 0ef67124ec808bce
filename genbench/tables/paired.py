"""Rankings with paired uncertainty: the difference between adjacent ranked rows and its standard error.

Two models scored on the same test examples share most of each example's score, so the standard error of their
difference, computed from per-example differences, is far smaller than their separate standard errors combined.
For two rows A (ranked above) and B (next), on the seeds both finished:

* **paired** (both kept per-example scores of the same examples, :mod:`genbench.runs.scores`, :func:`same_examples`): per seed
  d_s = mean_i (B_si − A_si), oriented so that d > 0 means A is better; the difference is the mean of d_s. With one
  seed its s.e. is sd_i(B_i − A_i)/√n; with S seeds, s.e.² = var_s(d_s)/S (training randomness, paired by seed)
  + var_i(ē_i)/n (the test set, paired by example on ē_i = mean_s(B_si − A_si)). A term every example shares
  (AIS's log Z) is not removed by pairing: its s.e. is added in quadrature.
* **unpaired** (scores missing, or the examples differ): the same with each record's standard error in place of
  the per-example term, s.e.² = var_s(d_s)/S + Σ_s (se_As² + se_Bs²)/S², labelled so.

A difference smaller than two of its standard errors is an **unresolved tie**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runs.scores import load_scores

TIE_SE = 2.0
"""A difference below TIE_SE standard errors does not resolve the order of two rows."""


@dataclass(frozen=True)
class SeedScore:
    """One seed's number for a row: its value and s.e., and its per-example scores when the run kept them."""

    seed: int
    value: float
    std_error: float
    scores: np.ndarray | None = None
    shared_se: float = 0.0
    examples: dict | None = None


@dataclass(frozen=True)
class Difference:
    """How much better the higher-ranked row is (in the metric's unit, > 0 when it is better), with its s.e."""

    value: float
    std_error: float
    paired: bool
    n_seeds: int
    n_examples: int | None
    why_unpaired: str = ""

    @property
    def tie(self) -> bool:
        """Unresolved: |difference| < 2 s.e. (or no uncertainty known to resolve it)."""
        return not abs(self.value) >= TIE_SE * self.std_error

    @property
    def how(self) -> str:
        seeds = f"{self.n_seeds} seed{'s' * (self.n_seeds > 1)}"
        if self.paired:
            return f"paired over {self.n_examples} examples and {seeds}"
        return f"unpaired ({self.why_unpaired}), {seeds}"


def seed_scores(records: list[tuple[int, dict]], metric: str, base: Path | None = None) -> list[SeedScore]:
    """Each finished seed's ``metric`` of a row: (seed, run record) pairs → :class:`SeedScore` (NaN values left out)."""
    out = []
    for seed, record in records:
        if record.get("status") != "finished":
            continue
        result = next((r for r in record.get("results", []) if r["metric"] == metric), None)
        if result is None or not math.isfinite(result["value"]):
            continue
        entry = record.get("scores") or {}
        se = result.get("std_error")
        out.append(SeedScore(seed, result["value"], float("nan") if se is None else se,
                             load_scores(record, metric, base), (entry.get("shared_se") or {}).get(metric, 0.0),
                             entry.get("examples")))
    return out


def difference(better: list[SeedScore], worse: list[SeedScore], lower_is_better: bool) -> Difference | None:
    """The difference between two rows on the seeds both have (None when they share none); see the module doc."""
    a_of = {s.seed: s for s in better}
    pairs = [(a_of[b.seed], b) for b in worse if b.seed in a_of]
    if not pairs:
        return None
    sign = 1.0 if lower_is_better else -1.0
    why = unpaired_reason(pairs)
    shared = sum(a.shared_se ** 2 + b.shared_se ** 2 for a, b in pairs) / len(pairs) ** 2
    if not why:
        per_example = np.stack([sign * (b.scores - a.scores) for a, b in pairs])  # seeds × examples
        d = per_example.mean(1)
        test = per_example.mean(0).var(ddof=1) / per_example.shape[1]
        return Difference(float(d.mean()), math.sqrt(seed_variance(d) + test + shared), True, len(pairs),
                          per_example.shape[1])
    d = np.array([sign * (b.value - a.value) for a, b in pairs])
    test = sum(a.std_error ** 2 + b.std_error ** 2 for a, b in pairs) / len(pairs) ** 2
    return Difference(float(d.mean()), math.sqrt(seed_variance(d) + test), False, len(pairs), None, why)


def seed_variance(d: np.ndarray) -> float:
    """var_s(d_s)/S: the training randomness of the mean difference (0 with one seed, where it cannot be told)."""
    return float(d.var(ddof=1) / len(d)) if len(d) > 1 else 0.0


def unpaired_reason(pairs: list[tuple[SeedScore, SeedScore]]) -> str:
    """Why two rows' seeds cannot be paired example by example ('' when they can)."""
    if any(a.scores is None or b.scores is None for a, b in pairs):
        return "per-example scores not saved"
    if any(same_examples(a.examples) != same_examples(b.examples) or len(a.scores) != len(b.scores) for a, b in pairs):
        return "scored on different examples"
    return ""


def same_examples(examples: dict | None) -> tuple:
    """What identifies the examples two runs scored: data variant, checksum, split and count. Dequantization noise is
    not part of it: a dequantized density's score of x + u bounds the NLL of the same example x, and the noise only
    widens the per-example differences, which the paired s.e. measures."""
    e = examples or {}
    return e.get("variant"), e.get("checksum"), e.get("split"), e.get("n")
