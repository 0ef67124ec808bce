"""Aggregation: the run records of a table's plan → one line per (row, dataset, metric[, published entry]).

Across seeds a line carries the mean, the seed standard deviation, min and max; where every seed's record has an
estimator standard error or interval, the line carries their combination (see :func:`stats`).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..published import Published, load_published
from .spec import PlannedRun
from ..core.errors import TableError

LOWER_IS_BETTER = {"nll": True, "bits_per_dim": True, "reverse_kl": True, "modes_ali": False,
                   "modes_veegan": False, "high_quality_pct": False, "sample_log_density": False, "error_pct": True,
                   "test_errors": True}
"""The metrics a ranking may order rows by, and their direction."""

COLUMNS = ["row", "dataset", "variant", "metric", "unit", "estimator", "obtained", "obtained_std", "obtained_se",
           "obtained_low", "obtained_high", "obtained_min", "obtained_max", "n", "n_undefined", "status", "published", "published_std", "published_std_kind",
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
            values = [res for r in done for res in [*r["results"], *cost_results(r)] if res["metric"] == metric]
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
        ref, key = (ref["id"], ref["dataset"]) if isinstance(ref, dict) else (ref, None)
        q = published[ref]
        lines.append({"row": f"{q.model} (published only)", "dataset": key or ref_dataset(spec, q), "variant": q.variant,
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


COSTS = ("train_time_s", "eval_time_s", "wall_time_s")
"""A run's wall times in its record: training (the whole of it, across resumptions), evaluation, and the run."""


def cost_results(record: dict) -> list[dict[str, Any]]:
    """A run's wall times as result lines (seconds, ``measured``), for a table whose ``metrics`` lists them.

    A run that reused a training (or whose record was copied from one that did) has no run time of its own:
    ``wall_time_s`` is then left out, and ``train_time_s`` is the original training's where its checkpoint kept it.
    """
    costs = [k for k in COSTS if record.get(k) is not None and not (k == "wall_time_s" and record.get("reused_training"))]
    return [{"metric": k, "value": float(record[k]), "unit": "s", "estimator": "measured"} for k in costs]


def ref_dataset(spec: dict[str, Any], q: Published) -> str:
    """The table dataset key a published-only row belongs to (by its variant), else its own dataset."""
    for key, ds in spec["datasets"].items():
        if ds.get("variant") == q.variant or key == q.dataset:
            return key
    return q.dataset


def run_status(runs) -> str:
    """The runs' outcomes with every error in full (the Markdown shortens them for display, the CSV keeps them)."""
    counts: dict[str, int] = {}
    for _, r in runs:
        counts[r.get("status", "missing")] = counts.get(r.get("status", "missing"), 0) + 1
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    errors = sorted({" ".join(r[key].split()) for _, r in runs for key in ("error", "record_error") if r.get(key)})
    return text + (f" ({'; '.join(errors)})" if errors else "")


def stats(values: list[dict]) -> dict[str, Any]:
    """Seed statistics of one metric's result records, and their estimator uncertainty combined.

    ``obtained_std``/``min``/``max`` describe the spread over seeds. ``obtained_se`` is the standard error of the
    seed mean that comes from the estimators (test-set sampling, AIS runs): √(Σ seᵢ²)/n, the seeds' errors being
    independent. ``obtained_low``/``high`` is the mean of the seeds' estimator intervals: it holds the seed mean of
    the true values whenever every seed's interval holds its own. Both are NaN unless every seed reports one.
    A seed whose value is undefined (NaN, e.g. a reverse KL with no high-quality sample) is left out of all of
    them and counted in ``n_undefined``, so ``n`` is the number of seeds the statistics describe.
    """
    undefined = sum(1 for x in values if math.isnan(x["value"]))
    values = [x for x in values if not math.isnan(x["value"])]
    if not values:
        return {"n": 0, "n_undefined": undefined}
    n = len(values)
    v = pd.Series([x["value"] for x in values], dtype=float)
    se = [x["std_error"] for x in values if x.get("std_error") is not None]
    intervals = [x["interval"] for x in values if x.get("interval")]
    low, high = ((sum(i[0] for i in intervals) / n, sum(i[1] for i in intervals) / n) if len(intervals) == n
                 else (float("nan"), float("nan")))
    return {"unit": values[0]["unit"], "estimator": values[0]["estimator"], "obtained": v.mean(),
            "obtained_low": low, "obtained_high": high,
            "obtained_std": v.std(ddof=1) if n > 1 else float("nan"),
            "obtained_se": math.sqrt(sum(e * e for e in se)) / n if len(se) == n else float("nan"),
            "obtained_min": v.min(), "obtained_max": v.max(), "n": n, "n_undefined": undefined}


def published_columns(q: Published | None) -> dict[str, Any]:
    if q is None:
        return {}
    return {"published": q.value, "published_std": q.std, "published_std_kind": q.std_kind, "published_status": q.status,
            "source": f"{q.paper}, {q.table}", "published_id": q.id}


