"""What the table tests share: run a table's smoke scale, and read the run records it wrote."""

from __future__ import annotations

import json

import pandas as pd

from genbench import tables
from genbench.core.paths import results_dir


def tiny_table(seeds=(0, 1), mob_epochs: int = 3) -> str:
    """A two-row table on the bundled digits (seconds per run): independent Bernoulli, and a 3-component mixture of
    Bernoullis beside a published number; ``configs/table/NAME.yaml`` text."""
    return f"""
title: tiny
datasets:
  digits: {{label: digits, overrides: [data=digits]}}
models:
  - label: independent Bernoulli
    overrides: [model=independent_bernoulli, trainer.max_epochs=1]
  - label: MoB (K=3)
    overrides: [model=mixture_of_bernoullis, model.components=3, trainer.max_epochs={mob_epochs}]
    published: {{digits: [sm08-mob-10]}}
metrics: [nll, bits_per_dim]
scales:
  smoke: {{seeds: [{", ".join(map(str, seeds))}]}}
"""


def run(name: str):
    """The table's smoke scale through the real pipeline: (what was written, the rendered CSV)."""
    written = tables.run_table(name, "smoke", log=lambda *_: None)
    return written, pd.read_csv(written["csv"])


def records_of(table: str) -> dict[str, dict]:
    """The table's run records by run id, wherever the records folder keeps them."""
    recs = [json.loads(p.read_text()) for p in results_dir("runs").rglob("*.json")]
    return {r["run_id"]: r for r in recs if r.get("table") == table}


def result(record: dict, metric: str) -> dict:
    """The record's result line for ``metric`` (value, unit, estimator, ...)."""
    return next(r for r in record["results"] if r["metric"] == metric)


def obtained(frame: pd.DataFrame) -> pd.DataFrame:
    """The numbers our rows obtained, indexed by (dataset, row), one column per metric."""
    ours = frame[frame["n"] > 0].drop_duplicates(["row", "dataset", "metric"])
    return ours.pivot_table(index=["dataset", "row"], columns="metric", values="obtained")
