"""Renders: a table's frame written as Markdown, CSV and LaTeX, one render per scale."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core import paths
from ..runs.store import git_commit, write_json_atomic, write_text_atomic
from .aggregate import LOWER_IS_BETTER
from .figures import cost_figure, curves_figure, summary_figure
from .formatting import fmt
from .paired import TIE_SE, Difference, difference, seed_scores


def obtained_text(line: pd.Series) -> str:
    """One seed: value ± its standard error [the estimator's interval]. Several: mean ± seed std (n, min, max)
    [the mean of the seeds' intervals]."""
    n = int(line["n"]) if not pd.isna(line["n"]) else 0
    undefined = int(line["n_undefined"]) if not pd.isna(line.get("n_undefined")) else 0
    if n == 0:
        return "undefined" if undefined else "n/a"
    return _obtained_text(line, n) + (f" ({undefined} more seed{'s' * (undefined > 1)} undefined)" if undefined else "")


def _obtained_text(line: pd.Series, n: int) -> str:
    interval = "" if pd.isna(line["obtained_low"]) else f" [{fmt(line['obtained_low'])}, {fmt(line['obtained_high'])}]"
    if n == 1:
        se = fmt(line["obtained_se"])
        return fmt(line["obtained"]) + (f" ± {se} (s.e.)" if se else "") + interval
    return (f"{fmt(line['obtained'])} ± {fmt(line['obtained_std'])} (std over {n} seeds; "
            f"min {fmt(line['obtained_min'])}, max {fmt(line['obtained_max'])}){interval}")


STATUS_SHOWN = 200
"""Characters of a run status (with its errors) shown in a Markdown cell; the CSV and the run records keep it all."""


def status_cell(line: pd.Series, scale: str, records: str) -> str:
    """A line's run status, shortened for display with a pointer to where the whole reason is (``records``)."""
    text = str(line["status"]).replace("|", "/")
    if len(text) <= STATUS_SHOWN:
        return text
    return f"{text[:STATUS_SHOWN].rstrip()}… (whole reason: {scale}.csv, {records})"


def published_text(line: pd.Series) -> str:
    if pd.isna(line["published"]):
        return ""
    std = f" ± {fmt(line['published_std'])}" if not pd.isna(line["published_std"]) else ""
    kind = f" ({line['published_std_kind']})" if std and isinstance(line["published_std_kind"], str) else ""
    return f"{fmt(line['published'])}{std}{kind}"


STATUS_MEANING = {"P": "verified in the primary source", "S": "verified in a secondary source only",
                  "R": "UNVERIFIED (recalled)", "D": "derived by arithmetic"}


@dataclass
class Render:
    """What a table render wrote (``paths``: md, csv, tex, json and figures by name), its Markdown text and runs.
    ``kept``: the render already on disk has more finished runs, so it was left as it was and nothing written."""

    paths: dict[str, Path]
    markdown: str
    kept: bool = False
    runs: list = field(default_factory=list)
    """(PlannedRun, record) of every run of the render, in plan order."""

    def __getitem__(self, key: str) -> Path:
        return self.paths[key]


def render_dir(name: str) -> Path:
    return paths.results_dir("tables", name)


def run_counts(records: list[dict]) -> dict[str, int]:
    counts = {"planned": len(records)}
    for r in records:
        counts[r.get("status", "missing")] = counts.get(r.get("status", "missing"), 0) + 1
    return counts


def write_render(spec, scale, frame: pd.DataFrame, planned, records, name: str, overwrite: bool = False, log=print,
                 figures=lambda out: []) -> Render:
    """Write ``results/tables/NAME/SCALE.{md,csv,tex,json}`` and the figures, unless the render of this scale on
    disk has more finished runs (measured results are never replaced by a smaller render unless ``overwrite``)."""
    out = render_dir(name)
    written = {ext: out / f"{scale}.{ext}" for ext in ("md", "csv", "tex", "json")}
    counts = run_counts(records)
    ranked = rankings(spec, frame, planned, records)
    before = _read_json(written["json"]).get("runs", {}).get("finished", 0)
    if before > counts.get("finished", 0) and not overwrite:
        text = markdown(spec, scale, frame, planned, records, counts, out, [], ranked)
        log(f"kept {written['md']}: it has {before} finished runs, this render {counts.get('finished', 0)} "
            f"(pass --overwrite to replace it)")
        return Render(written, text, kept=True)
    out.mkdir(parents=True, exist_ok=True)
    drawn = ((draw, paths.results_dir("figures", name, f"{scale}_{kind}.png"))
             for kind, draw in (("summary", summary_figure), ("curves", curves_figure), ("cost", cost_figure)))
    figs = [f for f in (draw(spec, frame, path, scale=scale) for draw, path in drawn) if f]
    figs += figures(name)
    text = markdown(spec, scale, frame, planned, records, counts, out, figs, ranked)
    write_text_atomic(written["csv"], frame.assign(scale=scale).to_csv(index=False))
    write_text_atomic(written["md"], text)
    write_text_atomic(written["tex"], latex(spec, scale, frame))
    write_json_atomic(written["json"], {"table": spec["name"], "scale": scale, "runs": counts,
                                        "rendered": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_commit": git_commit(),
                                        "rankings": {key: r.to_dict() for key, r in ranked.items()},
                                        "records": record_index(planned, records),
                                        "figures": [relative(f, out) for f in figs]})
    written.update({("figure" if f.stem.endswith("_summary") else f"figure:{f.stem.split('_', 1)[-1]}"): f for f in figs})
    write_index()
    return Render(written, text)


def record_index(planned, records) -> list[dict]:
    """Which run record holds each (row, dataset, seed) of the render (``runs/TABLE/SCALE/RUN_ID.json``), and its
    model: what the results site links each row to."""
    return [{"row": p.row, "dataset": p.dataset, "seed": p.seed, "run_id": p.run_id, "status": r.get("status"),
             "model": ((r.get("config") or {}).get("model") or {}).get("name")} for p, r in zip(planned, records)]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_index() -> Path:
    """``results/tables/README.md``: every table's renders, one line per scale with its run counts."""
    root = paths.results_dir("tables")
    lines = ["# Rendered tables", "", "One render per table and scale (smoke, cpu, paper; see docs/design.md, "
             "\"Tables and scales\"). A render is replaced only by one with at least as many finished runs.", "",
             "| table | scale | finished / planned | other runs | rendered |", "|---|---|---|---|---|"]
    for info_path in sorted(root.glob("*/*.json")):
        info = _read_json(info_path)
        runs = info.get("runs", {})
        other = ", ".join(f"{n} {k}" for k, n in sorted(runs.items()) if k not in ("planned", "finished"))
        lines.append(f"| [{info_path.parent.name}]({info_path.parent.name}/{info_path.stem}.md) | {info_path.stem} | "
                     f"{runs.get('finished', 0)} / {runs.get('planned', 0)} | {other} | {info.get('rendered', '')[:10]} |")
    index = root / "README.md"
    write_text_atomic(index, "\n".join(lines) + "\n")
    return index


def markdown(spec, scale, frame, planned, records, counts: dict[str, int], where: Path, figures: list[Path],
             ranked: dict[str, Ranking]) -> str:
    runs = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k != "planned")
    lines = [f"# {spec.get('title', spec['name'])}", "", f"Table `{spec['name']}`, scale **{scale}** "
             f"({runs} of {counts['planned']} planned runs). " + (spec.get("description") or "").strip(), ""]
    records_of = {(p.row, p.dataset): f"runs/{spec['name']}/{scale}/{p.run_id.rsplit('--s', 1)[0]}--s*.json"
                  for p in planned}
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
                         f"{published_text(line)} | {source} | "
                         f"{status_cell(line, scale, records_of.get((line['row'], key), 'the run records'))} |")
        lines += ranking_lines(ranked.get(key)) + [""]
    lines += [line for f in figures for line in (f"![{f.stem}]({relative(f, where)})", "")]
    samples = [(p.run_id, f) for p, r in zip(planned, records) if p.seed == planned[0].seed for f in r.get("figures", [])]
    if samples:
        lines += ["Sample figures (first seed): "
                  + ", ".join(f"[{rid}/{Path(f).name}]({relative(paths.located(f), where)})" for rid, f in samples), ""]
    lines += ["Estimators: *exact* has only the test set's sampling error (± is the standard error over test points; "
              "[low, high] is the estimator's own interval, e.g. AIS's ±3σ on log Z carried to the NLL); "
              "*upper bound* / *lower bound* bound the named quantity; *estimate* is a stochastic estimate; "
              "*measured* is a wall time read from the run record. "
              "Across seeds, ± is the standard deviation over seeds and [low, high] the mean of the seeds' own "
              "intervals, which holds the seed mean of the true values when each seed's interval holds its own "
              "(the CSV's obtained_se is the estimators' standard error of that mean). Published statuses: P primary "
              "source, S secondary source, R recalled and unverified (not an anchor), D derived.", ""]
    for note in spec.get("notes") or []:
        lines.append(f"- {note.strip()}")
    return "\n".join(lines) + "\n"


@dataclass
class Ranking:
    """A dataset section's rows ordered by the headline metric, each with its difference to the next row."""

    metric: str
    unit: str
    lower_is_better: bool
    rows: list[tuple[str, float, Difference | None]]
    """(row, value, difference to the next row; None for the last row or when the two share no seed)."""

    def to_dict(self) -> dict:
        return {"metric": self.metric, "unit": self.unit, "lower_is_better": self.lower_is_better,
                "rows": [{"rank": i, "row": row, "value": value, **difference_dict(d)}
                         for i, (row, value, d) in enumerate(self.rows, 1)]}


def difference_dict(d: Difference | None) -> dict:
    if d is None:
        return {}
    return {"difference": d.value, "std_error": d.std_error, "paired": d.paired, "tie": d.tie, "how": d.how}


def rankings(spec, frame: pd.DataFrame, planned, records) -> dict[str, Ranking]:
    """Each dataset section's ranking by its headline metric (the first of the table's metrics that has a
    direction), with the paired differences between adjacent rows (:mod:`.paired`)."""
    out = {}
    for key in frame["dataset"].drop_duplicates():
        part = frame[frame["dataset"] == key]
        metric = next((m for m in spec["metrics"] if m in set(part["metric"]) and m in LOWER_IS_BETTER), None)
        ours = part[(part["metric"] == metric) & (part["n"] > 0)].drop_duplicates("row") if metric else part[:0]
        if len(ours) < 2:
            continue
        lower = LOWER_IS_BETTER[metric]
        ours = ours.sort_values("obtained", ascending=lower)
        scores = {row: seed_scores([(p.seed, r) for p, r in zip(planned, records) if (p.row, p.dataset) == (row, key)],
                                   metric) for row in ours["row"]}
        rows = list(zip(ours["row"], ours["obtained"]))
        out[key] = Ranking(metric, ours["unit"].iloc[0], lower, [
            (row, float(value), difference(scores[row], scores[rows[i + 1][0]], lower) if i + 1 < len(rows) else None)
            for i, (row, value) in enumerate(rows)])
    return out


def ranking_lines(ranking: Ranking | None) -> list[str]:
    """The ranking as a Markdown table: each row's value and its difference to the next, with the s.e. of that
    difference and whether it resolves the order."""
    if ranking is None:
        return []
    better = "lower" if ranking.lower_is_better else "higher"
    lines = ["", f"Ranking by {ranking.metric} ({ranking.unit}, {better} is better), with the difference to the next "
                 f"row and its standard error, paired over the same test examples (and seeds) where the runs kept "
                 f"per-example scores; a difference under {TIE_SE:g} s.e. is an unresolved tie (≈):", "",
             "| rank | model | " + ranking.metric + " | better than the next by | s.e. | order | how |",
             "|---|---|---|---|---|---|---|"]
    for i, (row, value, d) in enumerate(ranking.rows, 1):
        if d is None:
            cells = ["", "", "", "" if i == len(ranking.rows) else "no common seed"]
        else:
            cells = [fmt(d.value), fmt(d.std_error), "≈ unresolved tie" if d.tie else "resolved", d.how]
        lines.append(f"| {i} | {row} | {fmt(value)} | " + " | ".join(cells) + " |")
    return lines


def relative(path: Path, start: Path) -> str:
    """``path`` as a link from a file in ``start`` (results/ moves as a whole: links stay valid)."""
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def latex(spec, scale, frame: pd.DataFrame) -> str:
    cols = {"row": "model", "dataset": "data", "metric": "metric", "unit": "unit", "estimator": "estimator"}
    view = frame[list(cols)].rename(columns=cols).fillna("")
    view["obtained"] = [obtained_text(line) for _, line in frame.iterrows()]
    view["published"] = [published_text(line) for _, line in frame.iterrows()]
    view["status"] = frame["published_status"].fillna("")
    return view.to_latex(index=False, caption=f"{spec.get('title', spec['name'])} ({scale} scale)", label=f"tab:{spec['name']}")


