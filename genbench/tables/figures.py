"""A table's figures: the summary (headline metric per row beside the published values), the curves of a metric
against a swept setting, and table-level figures drawn from the trained models."""

from __future__ import annotations

import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import paths
from ..registry import import_object
from ..runs import load_checkpoint


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
            done = r.get("status") == "finished" and r.get("checkpoint") and Path(r["checkpoint"]).is_file()
            model, dm = load_checkpoint(r["checkpoint"])[1:] if done else (None, None)
            runs.append(TrainedRun(p.row, p.dataset, p.seed, r.get("status", "missing"), model, dm))
        path = paths.results_dir("figures", name, f"{scale}_{fig['file']}")
        path.parent.mkdir(parents=True, exist_ok=True)
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


def summary_figure(spec, frame: pd.DataFrame, path: Path) -> Path | None:
    """The headline metric per row and dataset: the mean with its seed std (else standard error) as a thick bar,
    the estimator's interval (e.g. AIS's ±3σ) as a thin line, published values (with their ±) as red crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    headline = next((m for m in spec["metrics"] if m in set(frame["metric"])), None)
    part = frame[frame["metric"] == headline]
    if headline is None or part["obtained"].isna().all():
        return None
    keys = list(part["dataset"].drop_duplicates())
    labels = {row: textwrap.fill(str(row), LABEL_WIDTH) for row in part["row"].unique()}
    lines_per_row = max(label.count("\n") + 1 for label in labels.values())
    height = 1.6 + 0.3 * lines_per_row * part["row"].nunique()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), height), squeeze=False)
    for ax, key in zip(axes[0], keys):
        d = part[part["dataset"] == key].drop_duplicates(["row", "published_id"])
        ours = d.drop_duplicates("row")
        y = list(range(len(ours)))
        for yi, (_, line) in zip(y, ours.iterrows()):
            if pd.notna(line["obtained_low"]):
                ax.plot([line["obtained_low"], line["obtained_high"]], [yi, yi], color="tab:gray", lw=1,
                        label="estimator interval" if yi == 0 else None)
        ax.errorbar(ours["obtained"], y, xerr=ours["obtained_std"].fillna(ours["obtained_se"]).fillna(0), fmt="o",
                    color="tab:blue", elinewidth=3, capsize=3, label="obtained (± seed std, else s.e.)")
        for yi, row in zip(y, ours["row"]):
            pubs = d[(d["row"] == row) & d["published"].notna()]
            ax.errorbar(pubs["published"], [yi] * len(pubs), xerr=pubs["published_std"].fillna(0), fmt="x",
                        color="tab:red", capsize=2, zorder=3, label="published" if yi == 0 else None)
        ax.set_yticks(y, [labels[r] for r in ours["row"]], fontsize=8)
        ax.invert_yaxis()  # the table's order, top to bottom
        ax.set_title(textwrap.fill(spec["datasets"].get(key, {}).get("label", key), 40), fontsize=9)
        ax.set_xlabel(f"{headline} ({ours['unit'].dropna().iloc[0] if ours['unit'].notna().any() else ''})")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    axes[0][0].legend(handles.values(), handles.keys(), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the bounding box includes every label
    plt.close(fig)
    return path


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


def curves_figure(spec, frame: pd.DataFrame, path: Path) -> Path | None:
    """The table's ``curves``: one panel per swept setting, mean ± seed std (else s.e.) of the metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = spec.get("curves") or []
    if not panels or frame.empty:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, panel in zip(axes.flat, panels):
        for name, pts in curve_points(panel, frame).items():
            xs, ys, spread = zip(*pts)
            ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=name)
        units = frame.loc[(frame["metric"] == panel["metric"]) & frame["unit"].notna(), "unit"]
        unit = units.iloc[0] if len(units) else ""
        ax.set(title=panel["title"], xlabel=panel["xlabel"], ylabel=f"{panel['metric']} ({unit})")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_figure(spec, frame: pd.DataFrame, path: Path) -> Path | None:
    """The table's ``cost_figure`` ({``metric``}): per dataset, the metric against the training and the evaluation
    wall time (log scale), one marker per row ``family``. A row whose record has no training time of its own
    (runs made before training and evaluation were timed apart) is drawn hollow at its whole run's time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FormatStrFormatter, LogLocator

    if not spec.get("cost_figure") or frame.empty:
        return None
    metric = spec["cost_figure"]["metric"]
    family = {m["label"]: m.get("family", m["label"]) for m in spec["models"]}
    markers = dict(zip(sorted(set(family.values())), "osD^vP*XhpH<>8"))
    by = frame.drop_duplicates(["row", "dataset", "metric"]).set_index(["row", "dataset", "metric"])["obtained"]
    keys = [k for k in frame["dataset"].drop_duplicates() if (frame[(frame["dataset"] == k)]["metric"] == metric).any()]
    units = frame.loc[(frame["metric"] == metric) & frame["unit"].notna(), "unit"]
    unit = units.iloc[0] if len(units) else ""
    if not keys:
        return None
    fig, axes = plt.subplots(len(keys), 2, figsize=(10, 3.6 * len(keys)), squeeze=False)
    for axrow, key in zip(axes, keys):
        rows = [r for r in frame.loc[frame["dataset"] == key, "row"].drop_duplicates() if (r, key, metric) in by.index]
        for ax, cost in zip(axrow, ("train_time_s", "eval_time_s")):
            for i, row in enumerate(rows):
                y, x = by[(row, key, metric)], by.get((row, key, cost))
                hollow = cost == "train_time_s" and (x is None or pd.isna(x))
                x = by.get((row, key, "wall_time_s")) if hollow else x
                if x is None or pd.isna(x) or pd.isna(y):
                    continue
                ax.scatter([x], [y], marker=markers[family[row]], s=50, edgecolors=f"C{i % 10}",
                           facecolors="none" if hollow else f"C{i % 10}", label=textwrap.fill(row, 40))
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # labels within a single decade too
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.tick_params(axis="x", which="minor", labelbottom=False)
            ax.set(xlabel=f"{'training' if cost == 'train_time_s' else 'evaluation'} wall time (s, log scale)",
                   ylabel=f"{metric} ({unit})")
            ax.set_title(textwrap.fill(spec["datasets"].get(key, {}).get("label", key), 50), fontsize=8)
        handles = {h.get_label(): h for ax in axrow for h in ax.get_legend_handles_labels()[0]}
        if handles:
            axrow[1].legend(handles.values(), handles.keys(), fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("filled: the training alone; hollow: the whole run (its record predates timing training apart)",
                 fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
