"""What the table tests share: run a table's smoke scale, and read the run records it wrote."""

from __future__ import annotations

import json

import pandas as pd

from genbench import tables
from genbench.core.paths import results_dir


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
