"""What the site shows, read from what genbench wrote: table renders, their run records, the bench results.

A render is read from the results home (``results/``) when it is there, else from the committed reference
(``reference/``), and says which. Its rows come from the render's CSV (the same frame as its Markdown), its
rankings and run index from the render's JSON, and each run's provenance from its run record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.registry import MODELS
from ..tables import load_table, plan, table_names
from ..tables.aggregate import LOWER_IS_BETTER
from ..tables.formatting import fmt
from ..tables.render import STATUS_MEANING, obtained_text, published_text

FAMILIES = {"baselines": "baseline", "rbm": "RBM", "gan": "GAN", "ali": "ALI", "gan_inference": "GAN",
            "flows": "flow", "zuko_flows": "flow", "vae": "VAE", "autoregressive": "autoregressive"}
"""A model's family, by the module that holds it (:data:`genbench.core.registry.MODELS`)."""


@dataclass(frozen=True)
class Source:
    """A results folder the site reads: the user's (``results/``) or the project's committed ``reference/``."""

    label: str
    root: Path
    base: Path  # the home that the paths its records keep are relative to


def sources() -> list[Source]:
    found = [Source("yours", paths.results_root(), paths.home())]
    ref = paths.reference_root()
    if ref is not None:
        found.append(Source("reference", ref, ref.resolve().parent))
    return found


@dataclass
class Run:
    """One run record as the site links it."""

    table: str
    scale: str
    run_id: str
    record: dict
    source: Source

    @property
    def page(self) -> str:
        return f"runs/{self.table}/{self.scale}/{self.run_id}.html"

    def figures(self) -> list[Path]:
        return [f for f in (paths.located(p, self.source.base) for p in self.record.get("figures", [])) if f.is_file()]


@dataclass
class TableRender:
    """One render (a table, or a ``genbench compare`` of a user's model, at one scale) with its runs."""

    name: str
    scale: str
    source: Source
    info: dict
    frame: pd.DataFrame
    spec: dict
    runs: list[tuple[dict, Run | None]] = field(default_factory=list)  # (index entry, its record)

    @property
    def table(self) -> str:
        return self.info.get("table") or self.name

    @property
    def compare(self) -> bool:
        return "--compare-" in self.name

    @property
    def folder(self) -> Path:
        return self.source.root / "tables" / self.name

    @property
    def page(self) -> str:
        return f"{'compare' if self.compare else 'tables'}/{self.name}/{self.scale}.html"

    def figures(self) -> list[Path]:
        """The render's own figures (summary, curves, cost, table figures)."""
        listed = self.info.get("figures")
        if listed is None:  # a render written before the JSON listed them
            return sorted((self.source.root / "figures" / self.name).glob(f"{self.scale}_*.png"))
        return [f for f in ((self.folder / p).resolve() for p in listed) if f.is_file()]


def renders() -> list[TableRender]:
    """Every render there is, the home's before the reference's for the same table and scale."""
    found: dict[tuple[str, str], TableRender] = {}
    known = set(table_names())
    for src in sources():
        for info_path in sorted((src.root / "tables").glob("*/*.json")):
            name, scale = info_path.parent.name, info_path.stem
            info = read_json(info_path)
            csv = info_path.with_suffix(".csv")
            if (name, scale) in found or info.get("table") not in known or not csv.is_file():
                continue
            spec = load_table(info["table"])
            found[(name, scale)] = TableRender(name, scale, src, info, pd.read_csv(csv), spec)
    for r in found.values():
        r.runs = [(entry, find_run(r.table, scale=r.scale, run_id=entry["run_id"], first=r.source))
                  for entry in run_index(r)]
    return sorted(found.values(), key=lambda r: (r.compare, r.name, ("smoke", "cpu", "paper").index(r.scale)))


def run_index(render: TableRender) -> list[dict]:
    """(row, dataset, seed, run_id) of every run of a render, from its JSON or, for an older render, its plan."""
    if "records" in render.info:
        return render.info["records"]
    return [{"row": p.row, "dataset": p.dataset, "seed": p.seed, "run_id": p.run_id}
            for p in plan(render.spec, render.scale)]


def find_run(table: str, scale: str, run_id: str, first: Source) -> Run | None:
    for src in sorted(sources(), key=lambda s: s != first):
        record = read_json(src.root / "runs" / table / scale / f"{run_id}.json")
        if record:
            return Run(table, scale, run_id, record, src)
    return None


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def family(model: str | None) -> str:
    if model is None:
        return "unknown (no run record)"
    module = MODELS.get(model, "").split(":")[0].rsplit(".", 1)[-1]
    return FAMILIES.get(module, "your model" if model == "custom" else model)


def number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def rows(render: TableRender) -> list[dict]:
    """The render's lines as the table page shows them: display texts beside sortable numbers."""
    runs_of: dict[tuple[str, str], list[tuple[dict, Run | None]]] = {}
    for entry, run in render.runs:
        runs_of.setdefault((entry["row"], entry["dataset"]), []).append((entry, run))
    out = []
    for _, line in render.frame.iterrows():
        runs = runs_of.get((line["row"], line["dataset"]), [])
        model = next((e.get("model") or (run.record.get("config") or {}).get("model", {}).get("name")
                      for e, run in runs if run is not None), None)
        obtained, published = number(line["obtained"]), number(line["published"])
        gap = None if obtained is None or published is None else obtained - published
        out.append({
            "row": line["row"], "dataset": render.spec["datasets"].get(line["dataset"], {}).get("label", line["dataset"]),
            "dataset_key": line["dataset"], "variant": text(line["variant"]), "metric": text(line["metric"]),
            "unit": text(line["unit"]), "estimator": text(line["estimator"]) or "none",
            "obtained": obtained, "obtained_text": obtained_text(line), "n": int(number(line["n"]) or 0),
            "published": published, "published_text": published_text(line), "published_status": text(line["published_status"]),
            "status_meaning": STATUS_MEANING.get(text(line["published_status"]), ""), "source": text(line["source"]),
            "gap": gap, "gap_text": "" if gap is None else f"{'+' if gap > 0 else ''}{fmt(gap)}",
            "gap_better": None if gap is None or line["metric"] not in LOWER_IS_BETTER or gap == 0
            else (gap < 0) == LOWER_IS_BETTER[line["metric"]],
            "family": family(model) if runs else "published only", "run_status": text(line["status"]),
            "compared": "(compared" in str(line["row"]),
            "runs": [(e["seed"], run.page if run else None) for e, run in runs]})
    return out


def text(value) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def provenance(runs: list[Run]) -> dict:
    """When and on what machines a set of runs was measured: the first and last start dates and each machine."""
    started = sorted(r.record.get("started", "")[:10] for r in runs if r.record.get("started"))
    machines = sorted({machine_text(r.record.get("machine") or {}) for r in runs if r.record.get("machine")})
    return {"first": started[0] if started else None, "last": started[-1] if started else None, "machines": machines}


def machine_text(m: dict) -> str:
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else (", CUDA" if m.get("cuda") else "")
    return f"{m.get('cpu') or 'unknown CPU'}, {m.get('cpus', '?')} cores{gpu} (torch {m.get('torch', '?')})"


def sources_of(render: TableRender) -> list[str]:
    """The papers and tables a render's published numbers come from."""
    return sorted({s for s in render.frame["source"].dropna().astype(str) if s})


def headline(render: TableRender) -> str:
    """One line: the best row by the headline ranking, and how many rows with a published number beat it."""
    ranking = next(iter((render.info.get("rankings") or {}).values()), None)
    parts = []
    if ranking and ranking["rows"]:
        best = ranking["rows"][0]
        parts.append(f"best by {ranking['metric']}: {best['row']} ({fmt(best['value'])} {ranking['unit']})")
    lines = [r for r in rows(render) if r["gap_better"] is not None and r["n"] > 0]
    if lines:
        parts.append(f"{sum(r['gap_better'] for r in lines)} of {len(lines)} numbers beside a published one beat it")
    return "; ".join(parts) or "no ranked metric"
