"""A table's config and plan: which runs (row × dataset × seed) a scale holds, with their overrides.

The table config format is described in :mod:`genbench.tables`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from ..core import paths
from ..core.errors import TableError, closest
from ..runs.config import compose  # noqa: F401 (tables compose their runs' configs through it)
from ..runs.identity import slug

SCALES = ("smoke", "cpu", "paper")  # cpu: the paper protocol cut down to about an hour on 2 cores (optional)


def table_names() -> list[str]:
    return sorted(p.stem for p in (paths.configs_dir() / "table").glob("*.yaml"))


def load_table(name: str) -> dict[str, Any]:
    path = paths.configs_dir() / "table" / f"{name}.yaml"
    if name not in table_names():
        raise TableError(f"unknown table {name!r}{closest(name, table_names())}; valid: {', '.join(table_names())}")
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("name", name)
    for key in ("datasets", "models", "metrics", "scales"):
        if key not in spec:
            raise TableError(f"table config {path} has no {key!r} section")
    return spec


@dataclass
class PlannedRun:
    """One run of a table; ``key`` names its record file (the row's ``id``, else its label, as a slug)."""

    row: str
    dataset: str
    seed: int
    overrides: list[str]
    published: list[str] = field(default_factory=list)
    key: str | None = None

    @property
    def run_id(self) -> str:
        return f"{slug(self.key or self.row)}--{self.dataset}--s{self.seed}"


def plan(spec: dict[str, Any], scale: str) -> list[PlannedRun]:
    check_scale(spec, scale)
    scale_cfg = spec["scales"][scale] or {}
    planned = []
    for row in spec["models"]:
        if scale not in row.get("scales", SCALES):
            continue
        for key in row.get("datasets") or list(spec["datasets"]):
            if key not in spec["datasets"]:
                raise TableError(f"row {row['label']!r} names dataset {key!r}; the table has {', '.join(spec['datasets'])}")
            published = (row.get("published") or {}).get(key) or source_published(row)
            for seed in scale_cfg.get("seeds", [0]):
                name = slug(row.get("id") or row["label"])
                overrides = [*run_overrides(spec, scale, row, key, seed), f"seed={seed}", f"name={name}"]
                planned.append(PlannedRun(row["label"], key, seed, overrides, published, row.get("id")))
    return planned


def check_selection(spec: dict, scale: str, planned: list[PlannedRun], rows: str | None, seeds: list[int] | None):
    """``--rows`` and ``--seeds`` that select no run are a mistake, not a table with nothing to do."""
    if rows is not None and not any(rows in p.row for p in planned):
        labels = sorted({p.row for p in planned})
        raise TableError(f"--rows {rows!r} matches no row of table {spec['name']!r} at scale {scale!r} (a row runs "
                         f"when its label contains the text); its rows: {'; '.join(labels)}")
    if seeds is not None and not set(seeds) & {p.seed for p in planned}:
        valid = sorted({p.seed for p in planned})
        raise TableError(f"--seeds {','.join(map(str, seeds))} matches no seed of table {spec['name']!r} at scale "
                         f"{scale!r}; its seeds: {','.join(map(str, valid))}")


def check_scale(spec: dict[str, Any], scale: str) -> None:
    if scale not in SCALES:
        raise TableError(f"unknown scale {scale!r}{closest(scale, SCALES)}; valid: {', '.join(SCALES)}")
    if scale not in spec["scales"]:
        raise TableError(f"table {spec['name']!r} has no {scale!r} scale; it has {', '.join(spec['scales'])}")


def run_overrides(spec: dict[str, Any], scale: str, row: dict[str, Any], key: str, seed: int) -> list[str]:
    """The overrides of one run, the most specific last: scale < dataset < dataset at this scale < row < row at
    this scale < random draws. A row ``same_as`` another table's row takes that row's overrides (at the scale
    ``same_as.scales`` maps this scale to, else the same), so the two runs share one config and one record."""
    if "same_as" in row:
        src, src_row, src_scale = same_as(row, scale)
        base = run_overrides(src, src_scale, src_row, row["same_as"]["dataset"], seed)
        return [*base, *row.get("overrides", []), *row.get(scale, [])]
    scale_cfg, ds = spec["scales"][scale] or {}, spec["datasets"][key]
    drawn = {**(scale_cfg.get("random_overrides") or {}), **(row.get("random_overrides") or {})}
    return [*scale_cfg.get("overrides", []), *ds.get("overrides", []), *ds.get(scale, []),
            *row.get("overrides", []), *row.get(scale, []), *random_overrides(drawn, seed)]


def same_as(row: dict[str, Any], scale: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The table, row and scale a ``same_as`` row repeats: ``{table, row, dataset[, scales: {ours: theirs}]}``."""
    ref = row["same_as"]
    src = load_table(ref["table"])
    src_scale = (ref.get("scales") or {}).get(scale, scale)
    check_scale(src, src_scale)
    src_row = next((m for m in src["models"] if m["label"] == ref["row"]), None)
    if src_row is None or src_scale not in src_row.get("scales", SCALES) or ref["dataset"] not in (
            src_row.get("datasets") or list(src["datasets"])):
        raise TableError(f"row {row['label']!r} is same_as row {ref['row']!r} of table {ref['table']!r} on "
                         f"{ref['dataset']!r} at scale {src_scale!r}, which that table does not plan; its rows: "
                         + "; ".join(m["label"] for m in src["models"]))
    return src, src_row, src_scale


def source_published(row: dict[str, Any]) -> list[str]:
    """A ``same_as`` row's published entries default to those of the row it repeats."""
    if "same_as" not in row:
        return []
    ref = row["same_as"]
    src_row = next((m for m in load_table(ref["table"])["models"] if m["label"] == ref["row"]), {})
    return (src_row.get("published") or {}).get(ref["dataset"], [])


def random_overrides(spec: dict[str, dict[str, list[float]]], seed: int) -> list[str]:
    """Hydra overrides ``key=value`` drawn for one seed: {key: {uniform | log_uniform: [low, high]}}."""
    rng = np.random.default_rng(seed)
    drawn = []
    for key in sorted(spec):
        (kind, (low, high)), = spec[key].items()
        if kind == "uniform":
            value = rng.uniform(low, high)
        elif kind == "log_uniform":
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            raise TableError(f"random override {key}: unknown distribution {kind!r}; valid: uniform, log_uniform")
        drawn.append(f"{key}={float(f'{value:.4g}')}")
    return drawn
