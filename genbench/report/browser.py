"""Driving a real browser over the site: Debian's ``chromium`` through Playwright (the ``browser`` extra).

Playwright's own browser download needs the network; the system's chromium (``apt-get install chromium``, which
``make browser-setup`` does) is used instead. The checks here are what the browser tests assert and what
``genbench report --check`` runs: a page's console errors, its broken links and images.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..core.errors import GenbenchError
from ..core.optional import require

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def system_browser() -> str:
    """The chromium to drive: ``$GENBENCH_BROWSER``, else the first of :data:`BROWSERS` on the PATH."""
    found = os.environ.get("GENBENCH_BROWSER") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        raise GenbenchError("no chromium found on the PATH (looked for " + ", ".join(BROWSERS) + "); install "
                            "Debian's with `make browser-setup` (apt-get install chromium) or set GENBENCH_BROWSER "
                            "to a Chromium or Chrome executable")
    return found


@contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A fresh page of the system chromium (headless); ``page.problems`` collects console errors and page errors."""
    sync_api = require("playwright.sync_api", "the site's browser checks (pip install -e '.[browser]')")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=system_browser(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.problems = problems
            yield page
        finally:
            browser.close()


def check_page(page, path: Path) -> list[str]:
    """Open ``path`` and return what is wrong with it: console or script errors, links to files that do not exist,
    images that did not load, a stylesheet or script that did not load."""
    page.problems.clear()
    page.goto(Path(path).resolve().as_uri())
    problems = list(page.problems)
    for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
        url = urlparse(href)
        if url.scheme == "file" and not Path(unquote(url.path)).exists():
            problems.append(f"broken link: {href}")
        elif url.scheme not in ("file", "http", "https", "mailto"):
            problems.append(f"link of unexpected scheme: {href}")
    broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                                              ".map(i => i.getAttribute('src'))")
    problems += [f"broken image: {src}" for src in broken]
    if page.evaluate("getComputedStyle(document.body).marginTop") != "0px":  # site.css sets it; browsers use 8px
        problems.append("the stylesheet did not load")
    if page.evaluate("document.documentElement.dataset.site") != "ready":  # site.js sets it when it has run
        problems.append("the script did not run")
    return [f"{path}: {p}" for p in problems]


def screenshot(page, path: Path, out: Path) -> Path:
    page.goto(Path(path).resolve().as_uri())
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    return out
