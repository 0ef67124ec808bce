"""Per-example scores, saved beside a run record: what paired comparisons of two models need.

Two models scored on the same test examples differ far less noisily than their separate intervals suggest, because
most of an example's score (how hard the digit is) is shared. A finished run keeps each per-example metric (the
NLL, its bits/dim, companions such as the ELBO) as float32 in ``RUN_ID.scores.npz`` (compressed) beside its record;
the record's ``scores`` entry names the file and what makes two runs' examples the same ones (data checksum, split,
count, dequantization noise). Comparisons read them through :func:`load_scores`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core import paths


def scores_path(record_path: Path) -> Path:
    return Path(record_path).with_name(f"{Path(record_path).stem}.scores.npz")


def save_scores(record_path: Path, results, data: dict[str, Any]) -> dict[str, Any] | None:
    """Write the per-example scores of ``results`` beside ``record_path``; returns the record's ``scores`` entry
    (None when no result has per-example scores)."""
    kept = {r.metric: r for r in results if r.scores is not None}
    if not kept:
        return None
    first = next(iter(kept.values()))
    path = scores_path(record_path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{m: np.asarray(r.scores, dtype=np.float32) for m, r in kept.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"file": paths.stored(path), "metrics": sorted(kept), "shared_se": {m: r.shared_se for m, r in kept.items()},
            "examples": examples_key(first, data)}


def examples_key(result, data: dict[str, Any]) -> dict[str, Any]:
    """Which examples a run scored (and with which dequantization noise): what pairing two runs checks."""
    return {"variant": data.get("variant"), "checksum": data.get("checksum"), "split": result.split, "n": result.n,
            "dequantization": result.settings.get("dequantization")}


def load_scores(record: dict[str, Any], metric: str, base: Path | None = None) -> np.ndarray | None:
    """The per-example ``metric`` of a run record as float64, or None when the run kept none (a record written before
    scores were saved, a metric without them, a missing file). ``base``: the home the record was read from."""
    entry = record.get("scores") or {}
    if metric not in entry.get("metrics", ()):
        return None
    try:
        with np.load(paths.located(entry["file"], base)) as saved:
            return saved[metric].astype(np.float64)
    except (OSError, KeyError, ValueError):
        return None
