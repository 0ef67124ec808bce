"""Running a table: its plan's runs, each claimed by one process, trained or found done, then its render."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from ..core import paths
from ..loggers import log_table
from ..runs.execute import claim_run, results_of, train_and_evaluate
from ..runs.identity import is_current
from ..runs.store import read_record, save_record
from .aggregate import aggregate
from .figures import table_figures
from .render import Render, write_render
from .spec import check_selection, compose, load_table, plan

MISSING = {"status": "missing", "error": "not run yet"}


def run_table(name: str, scale: str = "smoke", extra_rows: list[dict] | None = None, output_name: str | None = None,
              log=print, render_only: bool = False, rows: str | None = None, seeds: list[int] | None = None,
              overwrite: bool = False, render: bool = True, logger: str | None = None) -> Render | None:
    """Run the table's missing runs, then write its render of this scale; returns what was written.

    ``render_only``: run nothing, write the table from the records there are (missing runs show as such);
    ``rows``: run only the rows whose label contains this text, ``seeds`` only these seeds (the others as
    with ``render_only``): a long scale can be run piece by piece, or split over machines. A render with fewer
    finished runs than the one already written for this scale is not written unless ``overwrite``.

    Several processes (or machines sharing the results folder) may run one table at once: each run is claimed
    by one of them; the others skip it, run the rest, then wait for it and read its record. ``render=False``
    (a launcher's worker, :mod:`genbench.launchers`) runs and writes nothing else. ``logger``: the runs'
    ``logger=`` option (volatile: no done run is rerun for it); with ``wandb`` the runs' W&B group is
    ``NAME/SCALE`` and a written render is logged to W&B too (:func:`log_render`).
    """
    spec = load_table(name)
    if extra_rows:
        spec["models"] = [*spec["models"], *extra_rows]
    planned = plan(spec, scale)
    check_selection(spec, scale, planned, rows, seeds)
    began = time.time()
    records: list[dict] = []
    claimed_elsewhere = []
    measured = MeasuredRuns()
    extra = logger_overrides(name, scale, logger)
    configs = [compose([*p.overrides, *extra]) for p in planned]  # a bad override stops the table before any run
    for i, (p, config) in enumerate(zip(planned, configs)):
        step = f"[{i + 1}/{len(planned)}] {p.run_id}"
        path = paths.results_dir("runs", name, scale, f"{p.run_id}.json")
        old, where = earlier_record(path, config, name, scale, p.run_id)
        if is_done(old, config):
            log(f"{step}: done before ({old['status']}{where})")
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
                    records.append(_run_claimed(config, path, p.run_id, name, step, log, overwrite))
            else:
                log(f"{step}: being run by {claim.holder() or 'another process'}; waiting for it at the end")
                records.append(MISSING)
                claimed_elsewhere.append((i, config, path, claim, step))
    for i, config, path, claim, step in claimed_elsewhere:
        with claim:  # blocks until its holder ends, however it ends
            old = read_record(path)
            ran_meanwhile = (old is not None and old.get("status") in ("finished", "diverged", "failed")
                             and os.path.getmtime(path) >= began and is_current(old, config))
            records[i] = old if ran_meanwhile else _run_claimed(config, path, planned[i].run_id, name, step, log,
                                                                 overwrite)
            log(f"{step}: {records[i]['status']}" + (" (run by another process)" if ran_meanwhile else ""))
    if not render:
        return None
    frame = aggregate(spec, planned, records)
    written = write_render(spec, scale, frame, planned, records, output_name or name, overwrite=overwrite, log=log,
                           figures=lambda out: table_figures(spec, scale, planned, records, out))
    written.runs = list(zip(planned, records))
    if logger == "wandb" and configs and not written.kept:
        log_render(configs[0]["logger"], f"{output_name or name}--{scale}", frame, written, log)
    return written


def logger_overrides(name: str, scale: str, logger: str | None) -> list[str]:
    """The overrides ``--logger`` adds to each run: ``logger=LOGGER``, and for W&B the group ``NAME/SCALE``."""
    if logger is None:
        return []
    return [f"logger={logger}", *([f"logger.group={name}/{scale}"] if logger == "wandb" else [])]


WANDB_COLUMNS = {"row": "model", "dataset": "dataset", "variant": "variant", "metric": "metric", "unit": "unit",
                 "estimator": "estimator", "obtained": "obtained", "obtained_low": "low", "obtained_high": "high",
                 "obtained_se": "std_error", "obtained_std": "seed_std", "n": "seeds", "status": "run_status",
                 "published": "published", "published_status": "published_status", "source": "source"}
"""The render frame's columns a W&B table shows, and their names there (``gap`` is added: obtained − published)."""


def log_render(opts: dict, run_name: str, frame: pd.DataFrame, written: Render, log) -> None:
    """The render as one W&B run of the table's group: its lines as a table, its figures as images."""
    view = frame[list(WANDB_COLUMNS)].rename(columns=WANDB_COLUMNS)
    gap = pd.to_numeric(frame["obtained"], errors="coerce") - pd.to_numeric(frame["published"], errors="coerce")
    view.insert(view.columns.get_loc("published_status") + 1, "gap", gap)
    figures = {key.partition(":")[2] or "summary": f for key, f in written.paths.items()
               if key.startswith("figure") and f.suffix.lower() in (".png", ".jpg", ".jpeg")}
    run_id = log_table(opts, run_name, view, figures)
    log(f"W&B: the render and {len(figures)} figure(s) logged as run {run_name} ({run_id}) in group {opts.get('group')}")


def earlier_record(path: Path, config: dict, table: str, scale: str, run_id: str) -> tuple[dict | None, str]:
    """The record of this run in the results home, or else a current one in the reference results (what the
    project measured, committed); with a note saying where it came from."""
    old = read_record(path)
    if is_done(old, config):
        return old, ""
    ref_path = paths.reference_dir("runs", table, scale, f"{run_id}.json")
    ref = read_record(ref_path) if ref_path is not None else None
    if is_done(ref, config):
        return from_reference(ref), f", reference record {ref_path}"
    return old, ""


def from_reference(record: dict) -> dict:
    """A reference record whose figure, checkpoint and scores paths name the files from here (they are kept relative to
    the checkout that holds the reference)."""
    base = paths.reference_root().resolve().parent
    checkpoint, scores = record.get("checkpoint"), record.get("scores")
    return {**record, "figures": [str(paths.located(f, base)) for f in record.get("figures", [])],
            "checkpoint": str(paths.located(checkpoint, base)) if checkpoint else checkpoint,
            **({"scores": {**scores, "file": str(paths.located(scores["file"], base))}} if scores else {})}


class MeasuredRuns:
    """Every finished run record under the home's and the reference's ``runs/``, read once (on the first lookup)
    per table run."""

    def __init__(self):
        self._records: list[tuple[Path, Path, dict]] | None = None

    def find(self, config: dict, path: Path) -> tuple[Path, Path, dict] | None:
        """(root, file, record) of a finished record of this exact config other than ``path``; or None."""
        if self._records is None:
            roots = [r for r in (paths.results_dir("runs"), paths.reference_dir("runs")) if r is not None]
            found = ((root, f, read_record(f)) for root in roots for f in sorted(root.rglob("*.json")))
            self._records = [(root, f, r) for root, f, r in found
                             if r and r.get("status") == "finished" and not r.get("reused_record")]
        return next(((root, f, r) for root, f, r in self._records if f != path
                     and r.get("config", {}).get("seed") == config["seed"] and is_current(r, config)), None)

    def copy(self, config: dict, path: Path, run_id: str, table: str) -> dict | None:
        """Another record of this exact config, saved as this run's with ``reused_record`` naming it; or None."""
        source = self.find(config, path)
        if source is None:
            return None
        root, found, rec = source
        where = str(found.relative_to(root))
        rec = from_reference(rec) if root != paths.results_dir("runs") else rec
        record = {**rec, "run_id": run_id, "table": table, "name": config.get("name"), "reused_record": where}
        save_record(path, record)
        return record


DONE = ("finished", "diverged")
"""Outcomes a rerun of the same config would repeat: not run again (a failed or interrupted run is)."""


def is_done(record: dict | None, config: dict) -> bool:
    """A record of ``config`` whose outcome a rerun would repeat."""
    return bool(record) and record.get("status") in DONE and is_current(record, config)


def _run_claimed(config: dict, path: Path, run_id: str, table: str, step: str, log, overwrite: bool = False) -> dict:
    """Run one claimed run, unless another process finished it between our first look and our claim."""
    old = read_record(path)
    if is_done(old, config):
        log(f"{step}: done meanwhile ({old['status']})")
        return old
    log(f"{step}: running")
    rec = train_and_evaluate(config, path, run_id, table=table, overwrite=overwrite)
    log(f"{step}: {outcome(rec)}")
    return rec


def outcome(rec: dict) -> str:
    """One line: the status, the time, the headline number or the error, and where the record went."""
    headline = next((f" ({r})" for r in results_of(rec)), "") if rec["status"] == "finished" else ""
    why = "".join(f" ({rec[k]})" for k in ("error", "kept_record", "record_error") if rec.get(k))
    return f"{rec['status']} in {rec['wall_time_s']:.1f} s{headline}{why}"
