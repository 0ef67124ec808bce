"""`genbench report` without a browser: the site's pages, their local links and its offline assets (the browser
tests in tests/browser/ check the same pages in chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from genbench.cli import main
from genbench.core.paths import results_dir
from helpers.tables import tiny_table


LINK = re.compile(r'(?:href|src)="([^"#]+)')


def local_targets(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not t.startswith(("http:", "https:", "mailto:"))]


def test_report_writes_a_self_contained_site_from_the_renders(configs_copy, capsys):
    (configs_copy / "table" / "tiny.yaml").write_text(tiny_table(seeds=(0,)))
    assert main(["table", "tiny"]) == 0
    assert main(["report"]) == 0
    site = results_dir("site")
    assert "written: " + str(site / "index.html") in capsys.readouterr().out
    pages = sorted(site.rglob("*.html"))
    assert {p.relative_to(site).as_posix() for p in pages} == {
        "index.html", "bench.html", "tables/tiny/smoke.html",
        "runs/tiny/smoke/independent-bernoulli--digits--s0.html", "runs/tiny/smoke/mob-k-3--digits--s0.html"}
    for page in pages:
        text = page.read_text()
        assert not re.search(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', text)  # no CDN
        missing = [t for t in local_targets(page) if not (page.parent / unquote(t)).exists()]
        assert not missing, f"{page}: {missing}"
    table = (site / "tables" / "tiny" / "smoke.html").read_text()
    frame = pd.read_csv(results_dir("tables", "tiny", "smoke.csv"))
    assert table.count("<tr data-family=") == len(frame)
    assert 'data-family="baseline"' in table and "paired over 360 examples and 1 seed" in table
    assert "Measured 20" in table and "cores" in table  # when and on what machine
    run = (site / "runs" / "tiny" / "smoke" / "mob-k-3--digits--s0.html").read_text()
    assert "config hash" in run and "mixture_of_bernoullis" in run


def test_a_report_with_no_render_is_an_empty_index_not_an_error(capsys):
    assert main(["report", "--out", str(results_dir("empty-site"))]) == 0
    index = results_dir("empty-site", "index.html").read_text()
    assert "(no run records found)" in index and "<tbody>\n</tbody>" in index
