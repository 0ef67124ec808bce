"""A table's figures: the summary (headline metric per row beside the published values), the curves of a metric
against a swept setting, and table-level figures drawn from the trained models."""

from __future__ import annotations

import itertools
import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.container import Container
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator

from ..core import paths
from ..core.registry import import_object
from ..evaluation.samples import new_figure, save_figure
from ..runs.checkpoints import load_checkpoint
from .spec import SCALES


@dataclass
class TrainedRun:
    """One row's trained model for a table figure (``model`` is None when the run did not finish)."""

    label: str
    dataset: str
    seed: int
    status: str
    model: Any = None
    datamodule: Any = None


def table_figures(spec, scale, planned, records, name: str) -> list[Path]:
    """The table's ``figures``: each drawn by its function from the trained models of one dataset and seed."""
    written = []
    for fig in spec.get("figures") or []:
        runs = []
        for p, r in zip(planned, records):
            if p.dataset != fig["dataset"] or p.seed != fig.get("seed", planned[0].seed):
                continue
            checkpoint = paths.located(r["checkpoint"]) if r.get("checkpoint") else None
            done = r.get("status") == "finished" and checkpoint is not None and checkpoint.is_file()
            model, dm = load_checkpoint(checkpoint)[1:] if done else (None, None)
            runs.append(TrainedRun(p.row, p.dataset, p.seed, r.get("status", "missing"), model, dm))
        path = paths.results_dir("figures", name, f"{scale}_{fig['file']}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and not any(run.model is not None for run in runs):
            written.append(path)  # drawn before from checkpoints that are not here (a fresh clone): kept, not lost
            continue
        try:
            out = import_object(fig["function"])(runs, path)
        except Exception as e:  # a broken figure must not cost the table: its runs are recorded, rerun --render-only
            print(f"table {name}: figure {fig['file']} failed: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if out:
            written.append(Path(out))
    return written


LABEL_WIDTH = 28
"""Characters per line of a row label in the summary figure: longer labels wrap instead of running off the left."""

PANELS_PER_ROW = 3
"""Datasets side by side in the summary figure; more wrap onto further rows (nine in one row were unreadable)."""

NO_UNIT = ("", "none", "nan")
"""Units that say nothing: such a metric's axis is labelled with the metric alone, not "modes_ali (none)"."""

RECALLED = "R"
"""The published status of a number recalled, not verified in a source (genbench/published.py): drawn hollow."""


def axis_label(metric: str, units) -> str:
    """``metric (unit)`` with the first real unit among ``units``, else the metric alone."""
    unit = next((u for u in units if isinstance(u, str) and u.strip().lower() not in NO_UNIT), None)
    return f"{metric} ({unit})" if unit else metric


def scale_of(path: Path) -> str:
    """The scale a render's figure file is named after (write_render writes ``SCALE_summary.png``, ...)."""
    prefix = Path(path).stem.split("_", 1)[0]
    return prefix if prefix in SCALES else "unknown"


def figure_title(spec, scale: str, what: str) -> str:
    """Table and scale first: a figure seen alone (a README, a slide) must say which render it shows."""
    return textwrap.fill(f"table {spec.get('name') or spec.get('title', '?')}, {scale} scale: {what}", 100)


def has_data(artist) -> bool:
    """Whether an artist draws at least one finite point: an errorbar or scatter of nothing gets no legend entry."""
    if isinstance(artist, Container):
        return any(has_data(a) for a in artist.get_children())
    if isinstance(artist, Line2D):
        return bool(np.isfinite(np.asarray(artist.get_xdata(), float)).any())
    if isinstance(artist, LineCollection):
        return len(artist.get_segments()) > 0
    if isinstance(artist, PathCollection):
        offsets = np.ma.filled(np.asarray(artist.get_offsets(), float), np.nan).reshape(-1, 2)
        return bool(np.isfinite(offsets).all(axis=1).any())
    return True


def legend(target, axes, **kw):
    """A legend on ``target`` of the labelled artists of ``axes`` that draw something, one entry per label."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if has_data(handle):
                entries.setdefault(label, handle)
    return target.legend(list(entries.values()), list(entries), **kw) if entries else None


def tick_labels(axis) -> list:
    """The major tick labels an axis draws: non-empty, visible, at a location inside its view."""
    locs = axis.get_majorticklocs()
    axis.get_majorticklabels()  # sets the labels' texts and positions for these locations
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * (hi - lo)
    return [t.label1 for t, loc in zip(axis.get_major_ticks(len(locs)), locs)
            if lo - tol <= loc <= hi + tol and t.label1.get_visible() and t.label1.get_text()]


def overlapping(labels, renderer, pad: float = 2.0) -> bool:
    """Whether two labels' boxes (in pixels, ``pad`` apart at least) overlap side by side."""
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    return any(a.x1 + pad > b.x0 for a, b in itertools.pairwise(boxes))


def _sparser_locators(axis):
    """Tick locators with fewer and fewer ticks (a log axis keeps round powers while they fit, then round values)."""
    lo, hi = sorted(axis.get_view_interval())
    if axis.get_scale() == "log" and lo > 0:
        yield from (LogLocator(10, subs=(1.0, 2.0, 5.0)), LogLocator(10, subs=(1.0,)))
        if math.log10(hi / lo) >= 2:
            yield from (LogLocator(10, subs=(1.0,), numticks=n) for n in (6, 4, 3, 2))
    yield from (MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]) for n in (5, 4, 3, 2, 1))


def fit_ticks(fig) -> None:
    """Fit each axes' x tick labels so that no two overlap, measured with the figure's renderer: long numbers such
    as −4.2875 at matplotlib's default density ran together, and a log axis within a decade had one label."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if ax.axison:
            _fit_axis(ax.xaxis, renderer)


def _fit_axis(axis, renderer) -> None:
    """Sparser locators until at least two labels stand apart; a locator leaving fewer than two is not kept;
    labels that still collide are rotated."""
    def fits() -> bool:
        labels = tick_labels(axis)
        return len(labels) >= 2 and not overlapping(labels, renderer)

    if fits():
        return
    for locator in _sparser_locators(axis):
        previous = axis.get_major_locator()
        axis.set_major_locator(locator)
        if fits():
            return
        if len(tick_labels(axis)) < 2:
            axis.set_major_locator(previous)
    if overlapping(tick_labels(axis), renderer):
        for label in tick_labels(axis):
            label.set(rotation=40, horizontalalignment="right", rotation_mode="anchor")


def _finish(fig) -> None:
    """Lay out (a draw runs the layout engine), fit the ticks to the laid-out widths, lay out again for what the
    fit changed."""
    for _ in range(2):
        fig.draw_without_rendering()
        fit_ticks(fig)


def table_figure(**kw):
    """A pyplot-free figure (:func:`genbench.evaluation.samples.new_figure`), so a render never touches the session's
    backend, with the constrained layout: tight_layout left a tall figure's suptitle over the first row's titles."""
    return new_figure(layout="constrained", **kw)


def summary_figure(spec, frame: pd.DataFrame, path: Path, scale: str | None = None) -> Path | None:
    """The headline metric per row and dataset, titled with the table and ``scale`` (default: the file's prefix,
    ``SCALE_summary.png``): the mean with its seed std (else standard error) as a thick bar, the estimator's
    interval (e.g. AIS's ±3σ) as a thin line, published values (with their ±) as red diamonds, hollow for a
    number recalled but not verified (status R)."""
    fig = summary_plot(spec, frame, scale or scale_of(path))
    return None if fig is None else save_figure(fig, path)


def summary_plot(spec, frame: pd.DataFrame, scale: str):
    """The summary figure (see :func:`summary_figure`), or None when the headline metric has no number."""
    headline = next((m for m in spec["metrics"] if m in set(frame["metric"])), None)
    part = frame[frame["metric"] == headline]
    if headline is None or part["obtained"].isna().all():
        return None
    keys = list(part["dataset"].drop_duplicates())
    labels = {row: textwrap.fill(str(row), LABEL_WIDTH) for row in part["row"].unique()}
    lines_per_row = max(label.count("\n") + 1 for label in labels.values())
    panel_height = 1.6 + 0.3 * lines_per_row * part.groupby("dataset")["row"].nunique().max()
    cols = min(PANELS_PER_ROW, len(keys))
    fig_rows = math.ceil(len(keys) / cols)
    fig = table_figure(figsize=(5.5 * cols, 0.5 + panel_height * fig_rows), dpi=110)
    axes = list(fig.subplots(fig_rows, cols, squeeze=False).flat)
    for ax in axes[len(keys):]:
        ax.set_axis_off()
    axes = axes[:len(keys)]
    names = published_labels(part)
    for ax, key in zip(axes, keys):
        d = part[part["dataset"] == key]
        _summary_panel(ax, d, labels, names)
        ax.set_title(textwrap.fill(spec["datasets"].get(key, {}).get("label", key), 40), fontsize=9)
        ax.set_xlabel(axis_label(headline, d["unit"]))
    legend(axes[0], axes, fontsize=7)
    fig.suptitle(figure_title(spec, scale, f"{headline}, obtained beside published"), fontsize=10)
    _finish(fig)
    return fig


def _summary_panel(ax, d: pd.DataFrame, labels: dict[str, str], names: dict[bool, str]) -> None:
    """One dataset's rows top to bottom in the table's order: interval, obtained, published."""
    d = d.drop_duplicates(["row", "published_id"])
    y = {row: i for i, row in enumerate(d["row"].drop_duplicates())}
    ours = d.drop_duplicates("row")
    ours = ours[ours["obtained"].notna()]
    for i, (_, line) in enumerate(ours[ours["obtained_low"].notna()].iterrows()):
        ax.plot([line["obtained_low"], line["obtained_high"]], [y[line["row"]]] * 2, color="tab:gray", lw=1,
                label="estimator interval" if i == 0 else None)
    if len(ours):
        ax.errorbar(ours["obtained"], [y[r] for r in ours["row"]], fmt="o", color="tab:blue", elinewidth=3, capsize=3,
                    xerr=ours["obtained_std"].fillna(ours["obtained_se"]).fillna(0),
                    label="obtained (± seed std, else s.e.)")
    _published(ax, d[d["published"].notna()], y, names)
    ax.set_yticks(list(y.values()), [labels[r] for r in y], fontsize=8)
    ax.set_ylim(len(y) - 0.5, -0.5)  # the table's order, top to bottom


def _statuses(pubs: pd.DataFrame) -> pd.Series:
    """The published status of each line ("" where the frame has none)."""
    return pubs["published_status"].fillna("") if "published_status" in pubs else pd.Series("", index=pubs.index)


def published_labels(part: pd.DataFrame) -> dict[bool, str]:
    """The legend labels of published values, recalled (True) or not, naming the statuses the figure shows: one
    label per kind across the panels, so the legend lists each once."""
    status = _statuses(part[part["published"].notna()])
    named = ", ".join(sorted(s for s in set(status) if s and s != RECALLED))
    return {False: "published" + (f" (status {named})" if named else ""),
            True: "published, recalled: unverified (status R)"}


def _published(ax, pubs: pd.DataFrame, y: dict[str, int], names: dict[bool, str]) -> None:
    """Published values as red diamonds: filled when verified (P, S) or derived (D), hollow when recalled (R)."""
    recalled = _statuses(pubs).eq(RECALLED)
    for group, hollow in ((pubs[~recalled], False), (pubs[recalled], True)):
        if not group.empty:
            ax.errorbar(group["published"], [y[r] for r in group["row"]], xerr=group["published_std"].fillna(0),
                        fmt="D", ms=5, color="tab:red", mfc="none" if hollow else "tab:red", capsize=2, zorder=3,
                        label=names[hollow])


def curve_points(panel: dict, frame: pd.DataFrame) -> dict[str, list[tuple[float, float, float]]]:
    """A ``curves`` panel's series as (x, mean, seed std else s.e.) sorted by x; rows without a number are left out."""
    part = frame[(frame["metric"] == panel["metric"]) & (frame["dataset"] == panel["dataset"])].drop_duplicates("row")
    by_row = part.set_index("row")
    series = {}
    for name, points in panel["series"].items():
        pts = sorted((x, float(by_row.loc[r, "obtained"]), _spread(by_row.loc[r]))
                     for x, r in points if r in by_row.index and pd.notna(by_row.loc[r, "obtained"]))
        if pts:
            series[name] = pts
    return series


def _spread(line: pd.Series) -> float:
    """The seed standard deviation, else the standard error, else 0."""
    for key in ("obtained_std", "obtained_se"):
        if pd.notna(line[key]):
            return float(line[key])
    return 0.0


def curves_figure(spec, frame: pd.DataFrame, path: Path, scale: str | None = None) -> Path | None:
    """The table's ``curves``: one panel per swept setting, mean ± seed std (else s.e.) of the metric, titled with
    the table and ``scale`` (default: the file's prefix)."""
    panels = spec.get("curves") or []
    if not panels or frame.empty:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = table_figure(figsize=(4.8 * cols, 3.6 * rows + 0.5), dpi=110)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, panel in zip(axes.flat, panels):
        for name, pts in curve_points(panel, frame).items():
            xs, ys, spread = zip(*pts)
            ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=name)
        ylabel = axis_label(panel["metric"], frame.loc[frame["metric"] == panel["metric"], "unit"])
        ax.set(title=textwrap.fill(panel["title"], 55), xlabel=panel["xlabel"], ylabel=ylabel)
        ax.title.set_fontsize(9)
        legend(ax, [ax], fontsize=7)
    fig.suptitle(figure_title(spec, scale or scale_of(path), "curves (mean ± seed std, else s.e.)"), fontsize=10)
    _finish(fig)
    return save_figure(fig, path)


def cost_figure(spec, frame: pd.DataFrame, path: Path, scale: str | None = None) -> Path | None:
    """The table's ``cost_figure`` ({``metric``}): per dataset, the metric against the training and the evaluation
    wall time (log scale), one marker per row ``family``, titled with the table and ``scale`` (default: the file's
    prefix). A row whose record has no training time of its own (runs made before training and evaluation were
    timed apart) is drawn hollow at its whole run's time."""
    if not spec.get("cost_figure") or frame.empty:
        return None
    metric = spec["cost_figure"]["metric"]
    keys = [k for k in frame["dataset"].drop_duplicates() if (frame[(frame["dataset"] == k)]["metric"] == metric).any()]
    if not keys:
        return None
    by = frame.drop_duplicates(["row", "dataset", "metric"]).set_index(["row", "dataset", "metric"])["obtained"]
    family = {m["label"]: m.get("family", m["label"]) for m in spec["models"]}
    markers = dict(zip(sorted(set(family.values())), "osD^vP*XhpH<>8"))
    ylabel = axis_label(metric, frame.loc[frame["metric"] == metric, "unit"])
    fig = table_figure(figsize=(10, 3.6 * len(keys) + 0.5), dpi=110)
    axes = fig.subplots(len(keys), 2, squeeze=False)
    hollow_drawn = False
    for axrow, key in zip(axes, keys):
        rows = [r for r in frame.loc[frame["dataset"] == key, "row"].drop_duplicates() if (r, key, metric) in by.index]
        for ax, cost in zip(axrow, ("train_time_s", "eval_time_s")):
            hollow_drawn |= _cost_panel(ax, by, key, rows, metric, cost, lambda row: markers[family.get(row, row)])
            ax.set(xlabel=f"{'training' if cost == 'train_time_s' else 'evaluation'} wall time (s, log scale)",
                   ylabel=ylabel)
            ax.set_title(textwrap.fill(spec["datasets"].get(key, {}).get("label", key), 50), fontsize=8)
        legend(axrow[1], axrow, fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    note = "\nfilled: the training alone; hollow: the whole run (its record predates timing training apart)"
    fig.suptitle(figure_title(spec, scale or scale_of(path), f"{metric} against wall time")
                 + (note if hollow_drawn else ""), fontsize=9)
    _finish(fig)
    return save_figure(fig, path)


def _cost_panel(ax, by: pd.Series, key: str, rows: list[str], metric: str, cost: str, marker) -> bool:
    """One dataset's rows: the metric against one wall time; returns whether a hollow marker was drawn."""
    hollow_drawn = False
    for i, row in enumerate(rows):
        y, x = by[(row, key, metric)], by.get((row, key, cost))
        hollow = cost == "train_time_s" and (x is None or pd.isna(x))
        x = by.get((row, key, "wall_time_s")) if hollow else x
        if x is None or pd.isna(x) or pd.isna(y):
            continue
        hollow_drawn |= hollow
        ax.scatter([x], [y], marker=marker(row), s=50, edgecolors=f"C{i % 10}",
                   facecolors="none" if hollow else f"C{i % 10}", label=textwrap.fill(row, 40))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # labels within a single decade too
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    return hollow_drawn
