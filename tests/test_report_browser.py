"""The HTML site in a real headless browser (Debian's ``chromium``, driven over the DevTools protocol
on a pipe, tests/cdp_browser.py): every page loads without console errors, its tables and images are
present and visible, the task pages fit a phone's width; a screenshot of the index page is written to
``build/test-artifacts/report-index.png`` (or ``$MEDSSL_TEST_ARTIFACTS``). Installs nothing: skipped,
with the reason, when no browser is found (``.ci/run`` installs ``chromium`` with apt)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdp_browser import Browser, find_browser
from report_fixtures import write_run
from reports import build_report

ARTIFACTS = Path(os.environ.get("MEDSSL_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "build" / "test-artifacts"))

VISIBLE = """(() => {
  const shown = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
                        return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const tables = [...document.querySelectorAll('table')];
  const images = [...document.images];
  return {tables: tables.length, tablesShown: tables.filter(shown).length, cells: document.querySelectorAll('td').length,
          images: images.length, imagesLoaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
          imagesShown: images.filter(shown).length, pageWidth: document.documentElement.scrollWidth, viewport: innerWidth,
          title: document.title};
})()"""


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    if executable is None:
        pytest.skip("no headless browser found (chromium / chromium-browser / google-chrome on PATH, or $MEDSSL_BROWSER); "
                    "install Debian's chromium (`apt-get install chromium`, as .ci/run does) to run the HTML check")
    driver = Browser(executable)
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    runs = [write_run(root / "run1"), write_run(root / "run2", mixup=True)]
    paths = build_report(runs, out_dir=root / "report", publish_dir=root / "site", title="medssl-bench fixture leaderboard", n_boot=100)
    return root / "site", paths


def test_index_loads_without_errors_and_shows_tables_and_images(browser, site):
    folder, _ = site
    session = browser.open((folder / "index.html").as_uri(), width=1280, height=900)
    state = browser.evaluate(session, VISIBLE)
    assert browser.errors(session) == []
    assert state["title"] == "medssl-bench fixture leaderboard"
    assert state["tables"] >= 3 and state["tablesShown"] == state["tables"] and state["cells"] > 20  # ranking + one per task
    assert state["images"] >= 1 and state["imagesLoaded"] == state["images"] == state["imagesShown"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = browser.screenshot(session, ARTIFACTS / "report-index.png")
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("page", ["task-brats.html", "task-prostate158.html", "leaderboard.html"])
def test_pages_load_and_fit_a_phone(browser, site, page):
    folder, _ = site
    session = browser.open((folder / page).as_uri(), width=390, height=844, mobile=True)
    state = browser.evaluate(session, VISIBLE)
    assert browser.errors(session) == []
    assert state["tables"] >= 2 and state["tablesShown"] == state["tables"]
    assert state["images"] >= 2 and state["imagesLoaded"] == state["images"] == state["imagesShown"]
    assert state["pageWidth"] <= state["viewport"]  # wide tables scroll inside their box, the page does not
