"""The results site in a real browser (Debian's chromium through Playwright): every page loads cleanly, sorting and
filtering do what they claim, the legend matches the chips; and the checks catch a planted broken link and a
planted wrong sort. Run by `make test-browser` (CI runs it after `make test`)."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from genbench.report import build_site
from genbench.report.browser import browser_page, check_page, screenshot
from helpers import REPO
from helpers.tables import tiny_table

pytestmark = pytest.mark.browser



@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site of the project's reference results plus a user's tiny table and a `genbench compare` on it."""
    from genbench.cli import main

    tmp = tmp_path_factory.mktemp("site")
    configs = tmp / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "table" / "tiny.yaml").write_text(tiny_table())
    env = {"GENBENCH_HOME": str(tmp / "home"), "GENBENCH_REFERENCE": str(REPO / "reference"),
           "GENBENCH_CONFIGS": str(configs), "WANDB_MODE": "offline", "CI": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("GENBENCH_RESULTS", raising=False)
        assert main(["table", "tiny"]) == 0
        assert main(["compare", "model=mixture_of_bernoullis", "table=tiny", "model.components=5"]) == 0
        built = build_site(tmp / "site")
    return built


@pytest.fixture(scope="module")
def page():
    with browser_page() as p:
        yield p


def test_every_page_loads_without_errors_broken_links_or_images(site, page):
    assert site.renders >= 19 and site.runs > 100 and len(site.pages) == site.renders + site.runs + 2
    problems = [p for path in site.pages for p in check_page(page, path)]
    assert not problems, "\n".join(problems[:20])
    index = site.index.read_text()
    assert "tables/tiny/smoke.html" in index and "compare/tiny--compare-mixture-of-bernoullis/smoke.html" in index


def test_a_planted_broken_link_and_image_are_caught(site, page, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site.root, copy)
    index = copy / "index.html"
    index.write_text(index.read_text().replace("</main>", '<a href="tables/no-such-table/smoke.html">x</a>'
                                                          '<img src="figures/missing.png"></main>'))
    problems = check_page(page, index)
    assert any("broken link" in p and "no-such-table" in p for p in problems)
    assert any("broken image: figures/missing.png" in p for p in problems)


def visible_values(page, column: int) -> list:
    """The sort values of one column over the rows shown, as the page holds them (numbers where they parse)."""
    return page.eval_on_selector_all(
        "#rows tbody tr:not([hidden])",
        f"rows => rows.map(r => r.cells[{column}].dataset.value)")


def sorted_numerically(values: list[str], descending: bool = False) -> bool:
    numbers = [float(v) for v in values if v not in ("", None)]
    empties_last = all(v in ("", None) for v in values[len(numbers):])
    return empties_last and numbers == sorted(numbers, reverse=descending)


def sort_column(page, path, header: str) -> tuple[list, list]:
    """Click a column's header once and twice; the column's values after each."""
    page.goto(path.resolve().as_uri())
    th = page.locator("#rows thead th", has_text=header).first
    column = page.eval_on_selector_all("#rows thead th", "ths => ths.map(t => t.textContent)").index(header)
    th.click()
    first = visible_values(page, column)
    th.click()
    return first, visible_values(page, column)


def gmm_page(site):
    return site.root / "tables" / "gmm-baselines" / "smoke.html"


def test_sorting_a_column_reorders_the_rows(site, page):
    up, down = sort_column(page, gmm_page(site), "obtained")  # modes 8 and 25, NLL −4.3 and 0.06, 98.9 %
    assert len(up) > 5 and sorted_numerically(up) and sorted_numerically(down, descending=True)
    assert float(up[0]) < 0 < float(up[-1]) and up != down
    assert page.get_attribute("#rows thead th:nth-child(5)", "aria-sort") == "descending"
    page.locator("#rows thead th", has_text="model").first.click()
    names = visible_values(page, 0)
    assert names == sorted(names, key=str.lower)


def test_a_planted_wrong_sort_is_caught(site, page, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site.root, copy)
    script = copy / "assets" / "site.js"
    planted = script.read_text().replace("const x = parseFloat(raw);", "const x = raw;")  # numbers sorted as text
    assert planted != script.read_text()
    script.write_text(planted)
    up, _ = sort_column(page, copy / "tables" / "gmm-baselines" / "smoke.html", "obtained")
    assert not sorted_numerically(up)  # "25" before "8": the check sees it


def test_a_filter_hides_exactly_the_other_rows(site, page):
    path = gmm_page(site)
    page.goto(path.resolve().as_uri())
    frame = pd.read_csv(REPO / "reference" / "tables" / "gmm-baselines" / "smoke.csv")
    total = len(page.query_selector_all("#rows tbody tr"))
    assert total == len(frame)
    page.select_option("select[data-filter=estimator]", "exact")
    shown = page.eval_on_selector_all("#rows tbody tr:not([hidden])", "rows => rows.map(r => r.cells[5].innerText)")
    assert shown and set(shown) == {"exact"} and len(shown) == (frame["estimator"] == "exact").sum()
    assert page.inner_text("#shown") == f"{len(shown)} of {total} rows shown"
    page.select_option("select[data-filter=estimator]", "")
    assert len(page.query_selector_all("#rows tbody tr:not([hidden])")) == total


def test_the_compare_page_highlights_the_users_model(site, page):
    path = site.root / "compare" / "tiny--compare-mixture-of-bernoullis" / "smoke.html"
    page.goto(path.resolve().as_uri())
    highlighted = page.eval_on_selector_all("#rows tr.compared", "rows => rows.map(r => r.cells[0].innerText)")
    assert highlighted and set(highlighted) == {"mixture_of_bernoullis (compared)"}
    colour = page.eval_on_selector("#rows tr.compared td", "td => getComputedStyle(td).backgroundColor")
    plain = page.eval_on_selector("#rows tr:not(.compared) td", "td => getComputedStyle(td).backgroundColor")
    assert colour != plain


def test_the_estimator_legend_matches_the_chips(site, page):
    page.goto((site.root / "tables" / "flows-2d" / "paper.html").resolve().as_uri())
    colour = "e => [e.innerText, getComputedStyle(e).backgroundColor]"
    legend = dict(page.eval_on_selector_all("#legend .chip", f"es => es.map({colour})"))
    chips = page.eval_on_selector_all("#rows .chip", f"es => es.map({colour})")
    assert len(set(legend.values())) == len(legend)  # every estimator its own colour
    assert chips and all(legend[name] == bg for name, bg in chips)  # each chip drawn as the legend says
    statuses = page.eval_on_selector_all("#legend .status", "es => es.map(e => getComputedStyle(e).borderStyle"
                                                            " + getComputedStyle(e).color)")
    assert len(set(statuses)) == 4  # P, S, R, D drawn distinctly


def test_paired_rankings_show_on_the_table_pages(site, page):
    page.goto((site.root / "compare" / "tiny--compare-mixture-of-bernoullis" / "smoke.html").resolve().as_uri())
    first = page.inner_text("table.ranking tbody tr:first-child")
    assert "mixture_of_bernoullis (compared)" in first and "paired over 360 examples and 2 seeds" in first
    page.goto((site.root / "tables" / "tiny" / "smoke.html").resolve().as_uri())
    assert "paired over 360 examples and 2 seeds" in page.inner_text("table.ranking")
    # a committed render whose records predate per-example scores says its differences are unpaired
    page.goto((site.root / "tables" / "mnist-nll" / "cpu.html").resolve().as_uri())
    assert "unpaired (per-example scores not saved)" in page.inner_text("table.ranking")


def test_screenshots_of_the_index_and_a_table_page(site, page):
    shots = site.root / "screenshots"
    for name, path in (("index", site.index), ("table", site.root / "tables" / "flows-2d" / "paper.html")):
        out = screenshot(page, path, shots / f"{name}.png")
        assert out.stat().st_size > 20_000  # a rendered page, not a blank one
    if os.environ.get("GENBENCH_KEEP_SCREENSHOTS"):
        shutil.copytree(shots, os.environ["GENBENCH_KEEP_SCREENSHOTS"], dirs_exist_ok=True)
