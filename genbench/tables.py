"""Tables: a paper's comparison as models × datasets × seeds, run, aggregated and written beside the published numbers.

A table config (``configs/table/NAME.yaml``) lists

* ``datasets``: key → {``label``, ``overrides``, optional ``smoke`` / ``paper`` overrides};
* ``models``: rows, each {``label``, ``overrides``, optional ``datasets`` (keys; default all),
  ``smoke`` / ``paper`` overrides, ``scales`` (the scales the row runs at; default all),
  ``published``: dataset key → [published ids]};
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
resumes where it stopped and a changed config reruns only what changed.
"""

from __future__ import annotations

import math
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from . import paths
from .errors import ConfigError
from .published import Published, load_published
from .registry import import_object
from .runs import is_current, load_checkpoint, read_record, train_and_evaluate

SCALES = ("smoke", "cpu", "paper")  # cpu: the paper protocol cut down to about an hour on 2 cores (optional)
LOWER_IS_BETTER = {"nll": True, "bits_per_dim": True, "reverse_kl": True, "modes_ali": False,
                   "modes_veegan": False, "high_quality_pct": False, "sample_log_density": False}


class TableError(ConfigError):
    """A bad table name, scale or table config; the message lists the valid choices."""


def table_names() -> list[str]:
    return sorted(p.stem for p in (paths.configs_dir() / "table").glob("*.yaml"))


def load_table(name: str) -> dict[str, Any]:
    path = paths.configs_dir() / "table" / f"{name}.yaml"
    if not path.is_file():
        raise TableError(f"unknown table {name!r}; valid: {', '.join(table_names())}")
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("name", name)
    for key in ("datasets", "models", "metrics", "scales"):
        if key not in spec:
            raise TableError(f"table config {path} has no {key!r} section")
    return spec


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


@dataclass
class PlannedRun:
    row: str
    dataset: str
    seed: int
    overrides: list[str]
    published: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return f"{slug(self.row)}--{self.dataset}--s{self.seed}"


def plan(spec: dict[str, Any], scale: str) -> list[PlannedRun]:
    if scale not in SCALES:
        raise TableError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    if scale not in spec["scales"]:
        raise TableError(f"table {spec['name']!r} has no {scale!r} scale; it has {', '.join(spec['scales'])}")
    scale_cfg = spec["scales"][scale] or {}
    planned = []
    for row in spec["models"]:
        if scale not in row.get("scales", SCALES):
            continue
        for key in row.get("datasets") or list(spec["datasets"]):
            if key not in spec["datasets"]:
                raise TableError(f"row {row['label']!r} names dataset {key!r}; the table has {', '.join(spec['datasets'])}")
            ds = spec["datasets"][key]
            drawn = {**(scale_cfg.get("random_overrides") or {}), **(row.get("random_overrides") or {})}
            for seed in scale_cfg.get("seeds", [0]):
                overrides = [*scale_cfg.get("overrides", []), *ds.get("overrides", []), *ds.get(scale, []),
                             *row.get("overrides", []), *row.get(scale, []), *random_overrides(drawn, seed),
                             f"seed={seed}", f"name={slug(row['label'])}"]
                planned.append(PlannedRun(row["label"], key, seed, overrides, (row.get("published") or {}).get(key, [])))
    return planned


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


def compose(overrides: list[str]) -> dict[str, Any]:
    """The resolved config of ``configs/train.yaml`` under Hydra overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(paths.configs_dir().resolve()), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def run_table(name: str, scale: str = "smoke", extra_rows: list[dict] | None = None, output_name: str | None = None,
              log=print, render_only: bool = False, rows: str | None = None,
              seeds: list[int] | None = None) -> dict[str, Path]:
    """Run the table's missing runs, then write its md/csv/tex and figure; returns the written paths.

    ``render_only``: run nothing, write the table from the records there are (missing runs show as such);
    ``rows``: run only the rows whose label contains this text, ``seeds`` only these seeds (the others as
    with ``render_only``): a long scale can be run piece by piece, or split over machines.
    """
    spec = load_table(name)
    if extra_rows:
        spec["models"] = [*spec["models"], *extra_rows]
    planned = plan(spec, scale)
    records = []
    for i, p in enumerate(planned, 1):
        config = compose(p.overrides)
        path = paths.results_dir("runs", name, scale, f"{p.run_id}.json")
        old = read_record(path)
        if old and old.get("status") in ("finished", "diverged") and is_current(old, config):
            log(f"[{i}/{len(planned)}] {p.run_id}: done before ({old['status']})")
            records.append(old)
            continue
        if render_only or (rows is not None and rows not in p.row) or (seeds is not None and p.seed not in seeds):
            records.append({"status": "missing", "error": "not run yet"})
            continue
        log(f"[{i}/{len(planned)}] {p.run_id}: running")
        rec = train_and_evaluate(config, path, p.run_id, table=name)
        log(f"[{i}/{len(planned)}] {p.run_id}: {rec['status']} in {rec['wall_time_s']:.1f} s"
            + (f" ({rec['error']})" if rec.get("error") else ""))
        records.append(rec)
    frame = aggregate(spec, planned, records)
    figures = table_figures(spec, scale, planned, records, output_name or name)
    return write_outputs(spec, scale, frame, planned, records, output_name or name, figures)


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


# -- aggregation ------------------------------------------------------------------------------------------------------

COLUMNS = ["row", "dataset", "variant", "metric", "unit", "estimator", "obtained", "obtained_std", "obtained_se",
           "obtained_low", "obtained_high", "obtained_min", "obtained_max", "n", "status", "published", "published_std", "published_std_kind",
           "published_status", "source", "published_id"]


def aggregate(spec: dict[str, Any], planned: list[PlannedRun], records: list[dict]) -> pd.DataFrame:
    """One line per (row, dataset, metric[, published entry]): seed statistics beside the published value."""
    published = load_published()
    groups: dict[tuple[str, str], list[tuple[PlannedRun, dict]]] = {}
    for p, rec in zip(planned, records):
        groups.setdefault((p.row, p.dataset), []).append((p, rec))
    lines = []
    for (row, key), runs in groups.items():
        done = [r for _, r in runs if r.get("status") == "finished"]
        status = run_status(runs)
        pubs = [published[i] for i in runs[0][0].published if i in published]
        missing = [i for i in runs[0][0].published if i not in published]
        if missing:
            raise TableError(f"table {spec['name']!r} row {row!r} names unknown published ids {missing}")
        variant = next((r["data"]["variant"] for _, r in runs if r.get("data")), spec["datasets"][key].get("label", key))
        shown = False
        for metric in spec["metrics"]:
            values = [res for r in done for res in r["results"] if res["metric"] == metric]
            metric_pubs = [q for q in pubs if q.metric == metric]
            if not values and not metric_pubs:
                continue
            base = {"row": row, "dataset": key, "variant": variant, "metric": metric, "status": status, **stats(values)}
            for q in metric_pubs or [None]:
                lines.append({**base, **published_columns(q)})
            shown = True
        if not shown:
            lines.append({"row": row, "dataset": key, "variant": variant, "metric": "—", "status": status, "n": 0})
    lines += derived_lines(spec, planned, records, published)
    for ref in spec.get("references") or []:
        q = published[ref]
        lines.append({"row": f"{q.model} (published only)", "dataset": ref_dataset(spec, q), "variant": q.variant,
                      "metric": q.metric, "unit": q.unit, "estimator": q.estimator, "n": 0, "status": "not run here",
                      **published_columns(q)})
    return pd.DataFrame(lines, columns=COLUMNS)


DERIVED = {
    # kind → (roles, per-seed formula, unit)
    "relative_increase_pct": (("row", "reference"), lambda v: 100 * (v["row"] - v["reference"]) / v["reference"], "%"),
    "increase_reduction_pct": (("mitigated", "unmitigated", "reference"),
                               lambda v: 100 * (1 - (v["mitigated"] - v["reference"]) / (v["unmitigated"] - v["reference"])), "%"),
}
"""Derived numbers as the papers state them (Dumoulin ch. 3: "+4.3% NLL", "21.9% less NLL increase")."""


def derived_lines(spec, planned, records, published) -> list[dict[str, Any]]:
    """Each derived number computed per seed from the rows' finished runs, then aggregated like a metric."""
    by = {(p.row, p.dataset, p.seed): r for p, r in zip(planned, records) if r.get("status") == "finished"}
    lines = []
    for d in spec.get("derived") or []:
        roles, formula, unit = DERIVED[d["kind"]]
        key, metric = d.get("dataset") or next(iter(spec["datasets"])), d.get("metric", "nll")
        seeds = sorted({s for (_, k, s) in by if k == key})
        values = []
        for seed in seeds:
            v = {role: next((x["value"] for x in by.get((d["rows"][role], key, seed), {}).get("results", [])
                             if x["metric"] == metric), None) for role in roles}
            if None not in v.values():
                values.append({"value": formula(v), "unit": unit, "estimator": "estimate"})
        pubs = [published[i] for i in d.get("published", [])] or [None]
        base = {"row": d["label"], "dataset": key, "variant": spec["datasets"][key].get("label", key),
                "metric": d["kind"], "status": f"derived from {metric} of {', '.join(d['rows'].values())}", **stats(values)}
        lines += [{**base, **published_columns(q)} for q in pubs]
    return lines


def ref_dataset(spec: dict[str, Any], q: Published) -> str:
    """The table dataset key a published-only row belongs to (by its variant), else its own dataset."""
    for key, ds in spec["datasets"].items():
        if ds.get("variant") == q.variant or key == q.dataset:
            return key
    return q.dataset


def run_status(runs) -> str:
    counts: dict[str, int] = {}
    for _, r in runs:
        counts[r.get("status", "missing")] = counts.get(r.get("status", "missing"), 0) + 1
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    errors = sorted({r["error"].splitlines()[0][:160] for _, r in runs if r.get("error")})
    return text + (f" ({'; '.join(errors)})" if errors else "")


def stats(values: list[dict]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = pd.Series([x["value"] for x in values], dtype=float)
    se = [x["std_error"] for x in values if x.get("std_error") is not None]
    intervals = [x["interval"] for x in values if x.get("interval")]
    low, high = ((sum(i[0] for i in intervals) / len(intervals), sum(i[1] for i in intervals) / len(intervals))
                 if len(intervals) == len(values) else (float("nan"), float("nan")))
    return {"unit": values[0]["unit"], "estimator": values[0]["estimator"], "obtained": v.mean(),
            "obtained_low": low, "obtained_high": high,
            "obtained_std": v.std(ddof=1) if len(v) > 1 else float("nan"),
            "obtained_se": sum(se) / len(se) if se else float("nan"),
            "obtained_min": v.min(), "obtained_max": v.max(), "n": len(v)}


def published_columns(q: Published | None) -> dict[str, Any]:
    if q is None:
        return {}
    return {"published": q.value, "published_std": q.std, "published_std_kind": q.std_kind, "published_status": q.status,
            "source": f"{q.paper}, {q.table}", "published_id": q.id}


# -- output -----------------------------------------------------------------------------------------------------------

def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.2f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def obtained_text(line: pd.Series) -> str:
    n = int(line["n"]) if not pd.isna(line["n"]) else 0
    if n == 0:
        return "n/a"
    interval = "" if pd.isna(line["obtained_low"]) else f" [{fmt(line['obtained_low'])}, {fmt(line['obtained_high'])}]"
    if n == 1:
        se = fmt(line["obtained_se"])
        return fmt(line["obtained"]) + (f" ± {se} (s.e.)" if se else "") + interval
    return (f"{fmt(line['obtained'])} ± {fmt(line['obtained_std'])} (std, n={n}; "
            f"min {fmt(line['obtained_min'])}, max {fmt(line['obtained_max'])}){interval}")


def published_text(line: pd.Series) -> str:
    if pd.isna(line["published"]):
        return ""
    std = f" ± {fmt(line['published_std'])}" if not pd.isna(line["published_std"]) else ""
    kind = f" ({line['published_std_kind']})" if std and isinstance(line["published_std_kind"], str) else ""
    return f"{fmt(line['published'])}{std}{kind}"


STATUS_MEANING = {"P": "verified in the primary source", "S": "verified in a secondary source only",
                  "R": "UNVERIFIED (recalled)", "D": "derived by arithmetic"}


def write_outputs(spec, scale, frame: pd.DataFrame, planned, records, name: str,
                  figures: list[Path] = ()) -> dict[str, Path]:
    out = paths.results_dir("tables")
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": out / f"{name}.csv", "md": out / f"{name}.md", "tex": out / f"{name}.tex"}
    frame.assign(scale=scale).to_csv(written["csv"], index=False)
    fig = summary_figure(spec, frame, paths.results_dir("figures", name, f"{scale}_summary.png"))
    curves = curves_figure(spec, frame, paths.results_dir("figures", name, f"{scale}_curves.png"))
    figures = [*([curves] if curves else []), *figures]
    written["md"].write_text(markdown(spec, scale, frame, planned, records, fig, figures))
    written["tex"].write_text(latex(spec, scale, frame))
    if fig:
        written["figure"] = fig
    written.update({f"figure:{p.stem.split('_', 1)[-1]}": p for p in figures})
    return written


def markdown(spec, scale, frame, planned, records, fig: Path | None, figures: list[Path] = ()) -> str:
    lines = [f"# {spec.get('title', spec['name'])}", "", f"Table `{spec['name']}`, scale **{scale}**. "
             + (spec.get("description") or "").strip(), ""]
    for key in frame["dataset"].drop_duplicates():
        part = frame[frame["dataset"] == key]
        label = spec["datasets"].get(key, {}).get("label", key)
        variants = ", ".join(sorted({str(v) for v in part["variant"] if isinstance(v, str)}))
        lines += [f"## {label}", "", f"Data variant: `{variants}`.", "",
                  "| model | metric | unit | estimator | obtained | published | source (status) | runs |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, line in part.iterrows():
            source = "" if pd.isna(line["published"]) else f"{line['source']} ({line['published_status']}: {STATUS_MEANING.get(line['published_status'], '?')})"
            lines.append(f"| {line['row']} | {line['metric']} | {line['unit'] if isinstance(line['unit'], str) else ''} | "
                         f"{line['estimator'] if isinstance(line['estimator'], str) else ''} | {obtained_text(line)} | "
                         f"{published_text(line)} | {source} | {line['status']} |")
        lines += ranking(spec, part) + [""]
    if fig:
        lines += [f"![summary]({relative(fig)})", ""]
    lines += [line for p in figures for line in (f"![{p.stem}]({relative(p)})", "")]
    figures = [(p.run_id, f) for p, r in zip(planned, records) if p.seed == planned[0].seed for f in r.get("figures", [])]
    if figures:
        lines += ["Sample figures (first seed): " + ", ".join(f"[{rid}/{Path(f).name}]({relative(Path(f))})" for rid, f in figures), ""]
    lines += ["Estimators: *exact* has only the test set's sampling error (± is the standard error over test points; "
              "[low, high] is the estimator's own interval, e.g. AIS's ±3σ on log Z carried to the NLL); "
              "*upper bound* / *lower bound* bound the named quantity; *estimate* is a stochastic estimate. "
              "Across seeds, ± is the standard deviation. Published statuses: P primary source, S secondary source, "
              "R recalled and unverified (not an anchor), D derived.", ""]
    for note in spec.get("notes") or []:
        lines.append(f"- {note.strip()}")
    return "\n".join(lines) + "\n"


def ranking(spec, part: pd.DataFrame) -> list[str]:
    headline = next((m for m in spec["metrics"] if m in set(part["metric"]) and m in LOWER_IS_BETTER), None)
    if headline is None:
        return []
    ours = part[(part["metric"] == headline) & (part["n"] > 0)].drop_duplicates("row")
    if len(ours) < 2:
        return []
    ours = ours.sort_values("obtained", ascending=LOWER_IS_BETTER[headline])
    unit = ours["unit"].iloc[0]
    return ["", f"Ranking by {headline} ({unit}, {'lower' if LOWER_IS_BETTER[headline] else 'higher'} is better): "
            + "; ".join(f"{i}. {r} ({fmt(v)})" for i, (r, v) in enumerate(zip(ours["row"], ours["obtained"]), 1))]


def relative(path: Path) -> str:
    try:
        return str(Path("..") / Path(path).resolve().relative_to(paths.results_dir().resolve()))
    except ValueError:
        return str(path)


def latex(spec, scale, frame: pd.DataFrame) -> str:
    cols = {"row": "model", "dataset": "data", "metric": "metric", "unit": "unit", "estimator": "estimator"}
    view = frame[list(cols)].rename(columns=cols).fillna("")
    view["obtained"] = [obtained_text(line) for _, line in frame.iterrows()]
    view["published"] = [published_text(line) for _, line in frame.iterrows()]
    view["status"] = frame["published_status"].fillna("")
    return view.to_latex(index=False, caption=f"{spec.get('title', spec['name'])} ({scale} scale)", label=f"tab:{spec['name']}")


def summary_figure(spec, frame: pd.DataFrame, path: Path) -> Path | None:
    """The headline metric per model and dataset (seed std, else standard error), published values as crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    headline = next((m for m in spec["metrics"] if m in set(frame["metric"])), None)
    part = frame[frame["metric"] == headline]
    if headline is None or part["obtained"].isna().all():
        return None
    keys = list(part["dataset"].drop_duplicates())
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 1.5 + 0.45 * part["row"].nunique()), squeeze=False)
    for ax, key in zip(axes[0], keys):
        d = part[part["dataset"] == key].drop_duplicates(["row", "published_id"])
        ours = d.drop_duplicates("row")
        y = range(len(ours))
        spread = ours["obtained_std"].fillna(ours["obtained_se"]).fillna(0)
        ax.errorbar(ours["obtained"], list(y), xerr=spread, fmt="o", color="tab:blue", capsize=3, label="obtained")
        for yi, row in zip(y, ours["row"]):
            pubs = d[(d["row"] == row) & d["published"].notna()]
            ax.scatter(pubs["published"], [yi] * len(pubs), color="tab:red", marker="x", zorder=3,
                       label="published" if yi == 0 else None)
        ax.set_yticks(list(y), list(ours["row"]))
        ax.set_title(textwrap.fill(spec["datasets"].get(key, {}).get("label", key), 40), fontsize=9)  # long labels wrap
        ax.set_xlabel(f"{headline} ({ours['unit'].dropna().iloc[0] if ours['unit'].notna().any() else ''})")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
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
