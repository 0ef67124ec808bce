"""Writing the site: one page per render, per run, an index and a bench page, with every file they show copied in.

The site is self-contained: pages link only to files inside it (figures, raw CSV/LaTeX, run records are copied),
so it opens from disk, moves as one folder and needs no server or network.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import markdown as md
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ..core import paths
from ..runs.store import write_text_atomic
from ..tables import table_names
from .collect import (Run, TableRender, headline, machine_text, provenance, renders, rows, sources, sources_of)

ESTIMATOR_LEGEND = {
    "exact": "exact: no sampling error beyond the finite test set",
    "upper bound": "upper bound on the named quantity (e.g. −L_k, or a dequantized density on discrete data)",
    "lower bound": "lower bound on the named quantity",
    "estimate": "stochastic estimate, no bound guarantee (AIS, Monte Carlo)",
    "measured": "a wall time read from the run record",
    "none": "no number (not run, or published only)",
}
"""Every estimator chip the table pages draw, with its meaning: the legend shows exactly these."""

STATUS_LEGEND = {"P": "verified in the primary source", "S": "verified in a secondary source only",
                 "R": "recalled, unverified: not an anchor", "D": "derived by arithmetic"}


@dataclass
class Site:
    """What :func:`build_site` wrote."""

    root: Path
    pages: list[Path]
    renders: int
    runs: int

    @property
    def index(self) -> Path:
        return self.root / "index.html"


def build_site(out: Path | None = None) -> Site:
    """Write the site to ``out`` (default ``results/site/``) from every render there is; returns what it wrote."""
    out = Path(out) if out is not None else paths.results_dir("site")
    out.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=PackageLoader("genbench.report", "templates"), autoescape=select_autoescape(),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["markdown"] = lambda text: Markup(md.markdown(str(text), extensions=["tables"]))
    env.globals.update(built=time.strftime("%Y-%m-%d %H:%M %Z"), estimators=ESTIMATOR_LEGEND, statuses=STATUS_LEGEND,
                       chip=chip_class)
    copy_assets(out)
    found = renders()
    writer = PageWriter(env, out)
    runs = {(r.table, r.scale, r.run_id): r for render in found for _, r in render.runs if r is not None}
    for run in runs.values():
        writer.run_page(run)
    for render in found:
        writer.render_page(render)
    writer.bench_page()
    writer.index_page(found)
    return Site(out, writer.pages, len(found), len(runs))


def chip_class(estimator: str) -> str:
    return "chip est-" + estimator.replace(" ", "-")


def copy_assets(out: Path) -> None:
    static = Path(__file__).parent / "static"
    for f in static.iterdir():
        copy(f, out / "assets" / f.name)


def copy(src: Path, dst: Path) -> Path:
    """Copy a file into the site unless the same one is there already."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.is_file() or dst.stat().st_size != src.stat().st_size or dst.stat().st_mtime < src.stat().st_mtime:
        shutil.copy2(src, dst)
    return dst


class PageWriter:
    def __init__(self, env: Environment, out: Path):
        self.env, self.out, self.pages = env, out, []

    def write(self, page: str, template: str, **context) -> Path:
        path = self.out / page
        depth = page.count("/")
        html = self.env.get_template(template).render(root="../" * depth or "./", page=page, **context)
        write_text_atomic(path, html)
        self.pages.append(path)
        return path

    def link(self, page: str, target: Path, under: str) -> str:
        """Copy ``target`` into the site under ``under`` and return its link from ``page``."""
        dst = copy(target, self.out / under / target.name)
        return os.path.relpath(dst, (self.out / page).parent)

    def run_page(self, run: Run) -> None:
        page, rec = run.page, run.record
        raw = f"runs/{run.table}/{run.scale}/{run.run_id}.json"
        write_text_atomic(self.out / raw, json.dumps(rec, indent=2, default=str))
        figures = [self.link(page, f, f"figures/runs/{run.table}/{run.scale}/{run.run_id}") for f in run.figures()]
        self.write(page, "run.html.j2", run=run, rec=rec, raw=os.path.basename(raw), figures=figures,
                   machine=machine_text(rec.get("machine") or {}), config=json.dumps(rec.get("config"), indent=2),
                   provenance=provenance([run]), title=f"run {run.run_id}")

    def render_page(self, render: TableRender) -> None:
        page = render.page
        raw = {ext: self.link(page, render.folder / f"{render.scale}.{ext}", f"{page.rsplit('/', 1)[0]}")
               for ext in ("csv", "tex", "md") if (render.folder / f"{render.scale}.{ext}").is_file()}
        figures = [self.link(page, f, f"figures/{render.name}") for f in render.figures()]
        samples = []
        seed0 = min((e["seed"] for e, _ in render.runs), default=None)
        for entry, run in render.runs:
            if run is not None and entry["seed"] == seed0:
                shown = [self.link(page, f, f"figures/runs/{run.table}/{run.scale}/{run.run_id}")
                         for f in run.figures() if f.stem != "learning_curve"]
                if shown:
                    samples.append({"row": entry["row"], "dataset": entry["dataset"], "files": shown})
        lines = rows(render)
        self.write(page, "table.html.j2", render=render, rows=lines, figures=figures, samples=samples, raw=raw,
                   rankings=self.rankings(render), notes=render.spec.get("notes") or [],
                   options={k: sorted({r[k] for r in lines}) for k in ("family", "estimator", "published_status",
                                                                        "dataset")},
                   provenance=provenance([r for _, r in render.runs if r is not None]), sources=sources_of(render),
                   title=f"{render.spec.get('title', render.table)} ({render.scale})")

    def rankings(self, render: TableRender) -> list[dict]:
        datasets = render.spec["datasets"]
        return [{"dataset": datasets.get(key, {}).get("label", key), **ranking}
                for key, ranking in (render.info.get("rankings") or {}).items()]

    def bench_page(self) -> None:
        """The speed results: each ``bench/*.md`` of the home, else of the reference, with its images."""
        parts = []
        for src in sources():
            for f in sorted((src.root / "bench").glob("*.md")):
                if any(p["name"] == f.name for p in parts):
                    continue
                text = f.read_text()
                for image in sorted(f.parent.glob("*.png")):
                    if image.name in text:
                        text = text.replace(image.name, self.link("bench.html", image, "figures/bench"))
                parts.append({"name": f.name, "source": src.label, "text": text,
                              "measured": time.strftime("%Y-%m-%d", time.gmtime(f.stat().st_mtime))})
        self.write("bench.html", "bench.html.j2", parts=parts, title="speed and cost")

    def index_page(self, found: list[TableRender]) -> None:
        tables: dict[str, list[TableRender]] = {}
        for r in found:
            if not r.compare:
                tables.setdefault(r.name, []).append(r)
        entries = [{"name": name, "title": rs[0].spec.get("title", name), "sources": sorted({s for r in rs for s in sources_of(r)}),
                    "renders": rs, "headline": headline(rs[-1])} for name, rs in sorted(tables.items())]
        compares = [r for r in found if r.compare]
        runs = [run for r in found for _, run in r.runs if run is not None]
        unrendered = [name for name in table_names() if name not in tables]
        self.write("index.html", "index.html.j2", entries=entries, compares=compares, provenance=provenance(runs),
                   unrendered=unrendered, title="genbench results")
