"""Tables: a paper's comparison as models × datasets × seeds, run, aggregated and written beside the published numbers.

A table config (``configs/table/NAME.yaml``) lists

* ``datasets``: key → {``label``, ``overrides``, optional ``smoke`` / ``paper`` overrides};
* ``models``: rows, each {``label``, ``overrides``, optional ``datasets`` (keys; default all),
  ``smoke`` / ``paper`` overrides, ``scales`` (the scales the row runs at; default all),
  ``published``: dataset key → [published ids], ``same_as``: {``table``, ``row``, ``dataset``, optional ``scales``:
  this scale → theirs}, to repeat another table's row (its overrides and, by default, its published ids), and
  ``family`` (the marker of the cost figure)};
* ``derived``: numbers computed from rows seed by seed, e.g. a relative NLL increase
  (:data:`DERIVED`), each {``label``, ``kind``, ``metric``, ``rows``: role → row label, ``dataset``, ``published``};
* ``metrics``: the metrics shown, in order (the first is the headline of the figure and ranking);
* ``references``: published ids shown as rows of their own (no run of ours), each an id or {``id``, ``dataset``}
  (the table's dataset key it is shown under; by default the one whose key is its dataset);
* ``scales``: ``smoke`` / ``cpu`` (optional) / ``paper`` → {``seeds``, ``overrides``}; ``title``, ``description``, ``notes``;
* ``random_overrides`` (in a scale or a row): key → {``uniform`` | ``log_uniform``: [low, high]}, hyperparameters
  drawn per seed (random search, as in Dumoulin's ALI-vs-GAN comparison); the draws depend only on the seed, so
  rows compared seed by seed share them, and they become ordinary overrides (in the run's config and hash);
* ``curves``: panels of a metric against a swept setting, each {``title``, ``xlabel``, ``metric``, ``dataset``,
  ``series``: name → [[x, row label], ...]} (the thesis' NLL-versus-σ plots); points not run at a scale are left out;
* ``figures``: table-level figures drawn from the trained models, each {``function``: "module:fn", ``file``,
  ``dataset``, ``seed``}; ``fn(runs, path)`` gets the :class:`TrainedRun` of every row on that dataset and seed.

Overrides apply from the general to the specific: scale, dataset, dataset at this scale, row,
row at this scale. Every (row, dataset, seed) is one run whose record lives in
``results/runs/TABLE/SCALE/RUN_ID.json``; a run whose finished (or diverged)
record has the same config hash is not run again, so an interrupted table
resumes where it stopped and a changed config reruns only what changed. A run whose config another table's
finished record already has (a ``same_as`` row) copies that record (``reused_record`` names it) instead of
rerunning: the cross-family table costs nothing for what the family tables measured. Each scale has its own render,
``results/tables/TABLE/SCALE.{md,csv,tex,json}`` (:mod:`.render`).

Homes: :mod:`.spec` (config and plan), :mod:`.aggregate` (records → lines), :mod:`.render` (md/csv/tex, the
index), :mod:`.figures` (summary, curves, table figures), :mod:`.runner` (runs the plan).
"""

from __future__ import annotations

import importlib

from ..runs.identity import slug
from .spec import SCALES, PlannedRun, compose, load_table, plan, random_overrides, table_names
from ..core.errors import TableError

__all__ = ["LOWER_IS_BETTER", "SCALES", "PlannedRun", "Render", "TableError", "TrainedRun", "aggregate", "compose",
           "curve_points", "fmt", "load_table", "plan", "random_overrides", "run_table", "slug", "stats", "table_names"]

LAZY = {"run_table": "runner", "MeasuredRuns": "runner", "aggregate": "aggregate", "stats": "aggregate",
        "LOWER_IS_BETTER": "aggregate", "Render": "render", "fmt": "formatting", "TrainedRun": "figures",
        "curve_points": "figures"}
"""Names whose modules import torch, Lightning, pandas or matplotlib: loaded on first use, so that what needs only
a table's config (``genbench list``, a bad table name or scale) answers at once."""


def __getattr__(name: str):
    if name in LAZY:
        return getattr(importlib.import_module(f".{LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
