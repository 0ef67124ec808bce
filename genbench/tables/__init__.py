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
* ``references``: published ids shown as rows of their own (no run of ours);
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
index), :mod:`.figures` (summary, curves, table figures); this module runs the plan.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import paths
from ..runs import claim_run, is_current, read_record, save_record, train_and_evaluate
from .aggregate import LOWER_IS_BETTER, aggregate, stats
from .figures import TrainedRun, curve_points, table_figures
from .render import Render, fmt, write_render
from .spec import SCALES, PlannedRun, TableError, compose, load_table, plan, random_overrides, slug, table_names

__all__ = ["LOWER_IS_BETTER", "SCALES", "PlannedRun", "Render", "TableError", "TrainedRun", "aggregate", "compose",
           "curve_points", "fmt", "load_table", "plan", "random_overrides", "run_table", "slug", "stats", "table_names"]

MISSING = {"status": "missing", "error": "not run yet"}


def run_table(name: str, scale: str = "smoke", extra_rows: list[dict] | None = None, output_name: str | None = None,
              log=print, render_only: bool = False, rows: str | None = None, seeds: list[int] | None = None,
              overwrite: bool = False, render: bool = True) -> Render | None:
    """Run the table's missing runs, then write its render of this scale; returns what was written.

    ``render_only``: run nothing, write the table from the records there are (missing runs show as such);
    ``rows``: run only the rows whose label contains this text, ``seeds`` only these seeds (the others as
    with ``render_only``): a long scale can be run piece by piece, or split over machines. A render with fewer
    finished runs than the one already written for this scale is not written unless ``overwrite``.

    Several processes (or machines sharing the results folder) may run one table at once: each run is claimed
    by one of them; the others skip it, run the rest, then wait for it and read its record. ``render=False``
    (a launcher's worker, :mod:`genbench.launchers`) runs and writes nothing else.
    """
    spec = load_table(name)
    if extra_rows:
        spec["models"] = [*spec["models"], *extra_rows]
    planned = plan(spec, scale)
    began = time.time()
    records: list[dict] = []
    claimed_elsewhere = []
    measured = MeasuredRuns()
    for i, p in enumerate(planned):
        step = f"[{i + 1}/{len(planned)}] {p.run_id}"
        config = compose(p.overrides)
        path = paths.results_dir("runs", name, scale, f"{p.run_id}.json")
        old = read_record(path)
        if _done(old, config):
            log(f"{step}: done before ({old['status']})")
            records.append(old)
        elif (same := measured.copy(config, path, p.run_id, name)) is not None:
            log(f"{step}: the same run as {same['reused_record']}")
            records.append(same)
        elif render_only or (rows is not None and rows not in p.row) or (seeds is not None and p.seed not in seeds):
            records.append(MISSING)
        else:
            claim = claim_run(path)
            if claim.acquire(wait=False):
                with claim:
                    records.append(_run_claimed(config, path, p.run_id, name, step, log))
            else:
                log(f"{step}: being run by {claim.holder() or 'another process'}; waiting for it at the end")
                records.append(MISSING)
                claimed_elsewhere.append((i, config, path, claim, step))
    for i, config, path, claim, step in claimed_elsewhere:
        with claim:  # blocks until its holder ends, however it ends
            old = read_record(path)
            ran_meanwhile = (old is not None and old.get("status") in ("finished", "diverged", "failed")
                             and os.path.getmtime(path) >= began and is_current(old, config))
            records[i] = old if ran_meanwhile else _run_claimed(config, path, planned[i].run_id, name, step, log)
            log(f"{step}: {records[i]['status']}" + (" (run by another process)" if ran_meanwhile else ""))
    if not render:
        return None
    frame = aggregate(spec, planned, records)
    return write_render(spec, scale, frame, planned, records, output_name or name, overwrite=overwrite, log=log,
                        figures=lambda out: table_figures(spec, scale, planned, records, out))


class MeasuredRuns:
    """Every finished run record under ``results/runs``, read once (on the first lookup) per table run."""

    def __init__(self):
        self._records: list[tuple[Path, dict]] | None = None

    def copy(self, config: dict, path: Path, run_id: str, table: str) -> dict | None:
        """Another record of this exact config, saved as this run's with ``reused_record`` naming it; or None."""
        if self._records is None:
            root = paths.results_dir("runs")
            found = ((f, read_record(f)) for f in sorted(root.rglob("*.json")))
            self._records = [(f, r) for f, r in found if r and r.get("status") == "finished" and not r.get("reused_record")]
        source = next(((f, r) for f, r in self._records if f != path and r.get("config", {}).get("seed") == config["seed"]
                       and is_current(r, config)), None)
        if source is None:
            return None
        where = str(source[0].relative_to(paths.results_dir("runs")))
        record = {**source[1], "run_id": run_id, "table": table, "name": config.get("name"), "reused_record": where}
        save_record(path, record)
        return record


def _done(record: dict | None, config: dict) -> bool:
    return bool(record) and record.get("status") in ("finished", "diverged") and is_current(record, config)


def _run_claimed(config: dict, path: Path, run_id: str, table: str, step: str, log) -> dict:
    """Run one claimed run, unless another process finished it between our first look and our claim."""
    old = read_record(path)
    if _done(old, config):
        log(f"{step}: done meanwhile ({old['status']})")
        return old
    log(f"{step}: running")
    rec = train_and_evaluate(config, path, run_id, table=table)
    log(f"{step}: {rec['status']} in {rec['wall_time_s']:.1f} s" + (f" ({rec['error']})" if rec.get("error") else "")
        + (f" ({rec['record_error']})" if rec.get("record_error") else ""))
    return rec
