"""The README's measured numbers, generated from the committed renders so that README and render cannot disagree.

Every number the README quotes from a render sits between two HTML comments, which GitHub does not show (the
last example goes on with ``<!--/n-->`` on the same line)::

    <!--n binary-baselines/paper "MoB (K=500)" mnist nll-->126.45<!--/n-->
    <!--n iwae-table-1/cpu "IWAE, 1 layer, k=50" mnist nll obtained_se-->0.27<!--/n-->
    <!--n binary-baselines/paper "MoB (K=500)" mnist nll published-->137.64<!--/n-->
    <!--n ar-mnist/cpu "NADE, 500 sigmoid units" larochelle nll published published_id=ar-mnist-nade-lm11-->88.86

The words of the opening comment, split as a shell does (quote a word with spaces), are:

* ``TABLE/SCALE``: the render ``reference/tables/TABLE/SCALE.csv``;
* ``ROW``, ``DATASET``, ``METRIC``: its line, by the CSV's ``row``, ``dataset`` and ``metric`` columns;
* ``FIELD`` (optional, default ``obtained``): the column shown, e.g. ``obtained_std``, ``obtained_se``, ``n``,
  ``published``;
* ``COLUMN=VALUE`` (optional, any number): narrows lines that share row, dataset and metric (a row beside two
  published sources has one line per source: ``published_id=...`` picks one).

The text between the comments is the value as the render's Markdown prints it (:func:`genbench.tables.formatting.fmt`),
so the README shows the digits of ``reference/tables/TABLE/SCALE.md``.
A marker stays on one line, holds no ``--`` and does not end with ``-`` (GitHub would print such a comment); in a
table row it holds no ``|`` (GitHub would split the cell).

``python -m genbench.readme`` (``make readme``) rewrites every marker's text from the renders; ``--check`` writes
nothing and exits 1 with one line per marker whose text differs from its render or that names a table, scale,
row, dataset, metric or field the render lacks (with what exists). It imports the standard library,
:mod:`genbench.core.paths` and :mod:`genbench.runs.store` only: the check takes a fraction of a second, without torch.
"""

from __future__ import annotations

import argparse
import csv
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .core import paths
from .runs.store import write_text_atomic
from .tables.formatting import fmt

MARKER = re.compile(r"<!--n\s(?P<spec>.*?)-->(?P<text>.*?)<!--/n-->")
STRAY = re.compile(r"<!--n\s|<!--/n-->")
FILTER = re.compile(r"^\w+=")


@dataclass
class Marker:
    """One marker: what it names, and the text it holds now."""

    spec: str
    text: str
    table: str = ""
    scale: str = ""
    row: str = ""
    dataset: str = ""
    metric: str = ""
    column: str = "obtained"
    where: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"<!--n {self.spec}-->"


class MarkerError(ValueError):
    """A marker that cannot be read, or that names what its render lacks."""


def parse(spec: str, text: str = "") -> Marker:
    """A marker from its opening comment's words (``spec``), refusing one that GitHub would not hide."""
    try:
        words = shlex.split(spec)
    except ValueError as e:
        raise MarkerError(f"cannot be split into words ({e})") from None
    if "--" in spec or spec.endswith("-"):
        raise MarkerError("holds '--' or ends with '-', which GitHub does not read as a comment: it would print it")
    rest = words[4:]
    where = dict(w.split("=", 1) for w in rest if FILTER.match(w))
    column = [w for w in rest if not FILTER.match(w)]
    if len(words) < 4 or len(column) > 1 or words[0].count("/") != 1:
        raise MarkerError('needs TABLE/SCALE "ROW" DATASET METRIC [FIELD] [COLUMN=VALUE ...]')
    table, scale = words[0].split("/")
    return Marker(spec, text, table, scale, *words[1:4], *(column or ["obtained"]), where=where)


def default_root() -> Path:
    """The committed renders: the README quotes them whatever a user configured, so with none configured
    (GENBENCH_REFERENCE=none, or GENBENCH_RESULTS at reference/ during ``make reference-renders``) the checkout's."""
    return paths.reference_root() or (paths.checkout() or Path(".")) / "reference"


def default_readme() -> Path:
    return (paths.checkout() or Path(".")) / "README.md"


@cache
def _lines(csv_path: Path, mtime: float) -> tuple[dict[str, str], ...]:
    with open(csv_path, newline="") as f:
        return tuple(csv.DictReader(f))


def render_lines(root: Path, table: str, scale: str) -> tuple[dict[str, str], ...]:
    tables = root / "tables"
    if not (tables / table).is_dir():
        there = _names(sorted(p.name for p in tables.iterdir() if p.is_dir())) if tables.is_dir() else "none"
        raise MarkerError(f"no table {table} in {tables} (tables: {there})")
    path = tables / table / f"{scale}.csv"
    if not path.is_file():
        raise MarkerError(f"no render {scale} of {table} (scales: {_names(p.stem for p in path.parent.glob('*.csv'))})")
    return _lines(path, path.stat().st_mtime)


def _names(values, quote: bool = False) -> str:
    seen = list(dict.fromkeys(values))
    return ", ".join(f'"{v}"' if quote else v for v in seen) or "none"


def _narrow(lines, column: str, value: str, what: str) -> list[dict[str, str]]:
    """The lines whose ``column`` is ``value``, or an error naming the values there are."""
    picked = [line for line in lines if line.get(column) == value]
    if not picked:
        there = _names((line.get(column, "") for line in lines), quote=True)
        raise MarkerError(f"{what} has no {column} {value!r} ({column}: {there})")
    return picked


def _number(raw: str) -> Any:
    try:
        return float(raw)
    except ValueError:
        return raw


def value(marker: Marker, root: Path) -> str:
    """The marker's number as the render prints it."""
    lines = render_lines(root, marker.table, marker.scale)
    name = f"{marker.table}/{marker.scale}"
    lines = _narrow(lines, "row", marker.row, name)
    lines = _narrow(lines, "dataset", marker.dataset, f'{name} row "{marker.row}"')
    what = f'{name} row "{marker.row}", dataset {marker.dataset}'
    lines = _narrow(lines, "metric", marker.metric, what)
    what += f", metric {marker.metric}"
    for column in [marker.column, *marker.where]:
        if column not in lines[0]:
            raise MarkerError(f"{name} has no column {column} (columns: {_names(lines[0])})")
    for column, wanted in marker.where.items():
        lines = _narrow(lines, column, wanted, what)
    texts = list(dict.fromkeys(fmt(_number(line[marker.column])) for line in lines))
    if len(texts) > 1:
        raise MarkerError(f"{what}: {len(lines)} lines give {marker.column} {', '.join(texts)}; pick one with "
                          f"COLUMN=VALUE (published_id: {_names((x.get('published_id', '') for x in lines), True)})")
    if not texts[0]:
        raise MarkerError(f"{what} has no {marker.column} (the cell is empty)")
    return texts[0]


@dataclass
class Report:
    """What a pass over a README found: the text with every marker regenerated, and what differs or is broken."""

    text: str
    markers: int = 0
    differences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def scan(text: str, root: Path | None = None, name: str = "README.md") -> Report:
    """Every marker of ``text`` against the renders under ``root``; problems are named ``name:LINE``."""
    root = root or default_root()
    report = Report(text="")
    out = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        out.append(_scan_line(line, root, f"{name}:{number}", report))
    report.text = "".join(out)
    return report


def _scan_line(line: str, root: Path, where: str, report: Report) -> str:
    in_table = line.lstrip().startswith("|")

    def one(match: re.Match) -> str:
        report.markers += 1
        try:
            marker = parse(match["spec"], match["text"])
            if in_table and "|" in marker.spec:
                raise MarkerError("holds '|' inside a table row, which splits the cell on GitHub")
            new = value(marker, root)
        except MarkerError as e:
            report.problems.append(f"{where}: <!--n {match['spec']}-->: {e}")
            return match[0]
        if new != marker.text:
            report.differences.append(f"{where}: {marker} says {marker.text!r}, the render gives {new!r}")
        return match[0][: match.start("text") - match.start()] + new + "<!--/n-->"

    new_line = MARKER.sub(one, line)
    if STRAY.search(MARKER.sub("", new_line)):
        report.problems.append(f"{where}: a marker without its pair (<!--n ...-->TEXT<!--/n--> on one line)")
    return new_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing stale or broken markers")
    parser.add_argument("--readme", type=Path, help="the file (default: the checkout's README.md)")
    parser.add_argument("--renders", type=Path, help="the results root holding tables/ (default: reference/)")
    args = parser.parse_args(argv)
    readme = args.readme or default_readme()
    before = readme.read_text()
    report = scan(before, args.renders, readme.name)
    if args.check:
        for line in report.differences + report.problems:
            print(line)
        print(f"{readme}: {report.markers} markers, {len(report.differences)} stale, {len(report.problems)} broken"
              + ("" if report.differences or report.problems else ": up to date"), file=sys.stderr)
        return 1 if report.differences or report.problems else 0
    if report.text != before:
        write_text_atomic(readme, report.text)
    for line in report.problems:
        print(line)
    print(f"{readme}: {report.markers} markers, {len(report.differences)} rewritten, {len(report.problems)} broken",
          file=sys.stderr)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
