"""The reports in a real browser (Debian's /usr/bin/chromium driven by Playwright; never downloaded):
no request beyond the file, every picture decodes, the numbers of the JSON are on screen, the
screenshot is not blank, and axe-core (bundled by axe-playwright-python, runs offline) finds no
serious or critical accessibility violation. Skips with a message where chromium is missing;
CI installs it (.ci/run)."""

from __future__ import annotations

import io as _io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("MEDCLI_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install chromium (CI installs it) to run the real-browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (test extra) for the real-browser tests")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def open_page(browser, path: Path, width: int = 1100):
    """Load ``path``; return (page, requests other than the file itself and data: URIs, load seconds)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    url = path.resolve().as_uri()
    others: list[str] = []
    page.on("request", lambda r: others.append(r.url) if r.url != url and not r.url.startswith("data:") else None)
    t0 = time.perf_counter()
    page.goto(url, wait_until="load")
    seconds = time.perf_counter() - t0
    return page, others, seconds


def check_page(page) -> None:
    """Pictures decode, the screenshot is not blank, no serious accessibility violation."""
    sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
    assert all(ok and w > 0 and alt for ok, w, alt in sizes), sizes
    from PIL import Image as PILImage

    shot = np.asarray(PILImage.open(_io.BytesIO(page.screenshot(full_page=False))).convert("L"), float)
    assert shot.std() > 20 and (shot < 100).mean() > 0.01, "blank screenshot"
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        pytest.skip("axe-playwright-python missing (test extra)")
    res = Axe().run(page)
    bad = [v for v in res.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, [(v["id"], v["help"], len(v["nodes"])) for v in bad]


@pytest.fixture(scope="module")
def scan_report(scan_inputs, tmp_path_factory):
    from tests.conftest import run_cli

    d = tmp_path_factory.mktemp("browser")
    args = ["report", str(scan_inputs["t1"])]
    for k in ("labels", "stats", "sidecar", "findings", "landmarks"):
        args += ["--with", str(scan_inputs[k])]
    r = run_cli(*args, "-o", str(d / "r.html"), "-o", str(d / "r.json"))
    assert r.returncode == 0, r.stderr.decode()
    return d / "r.html", json.loads((d / "r.json").read_text())


def test_scan_report_in_browser(browser, scan_report):
    html, doc = scan_report
    page, others, seconds = open_page(browser, html)
    assert others == [], f"the page requested {others}"
    print(f"\nscan report: {html.stat().st_size / 1e6:.2f} MB, loaded in {seconds:.2f} s")
    text = page.inner_text("body")
    for s in doc["narrative"]:
        assert s["text"] in text  # the sentences of the JSON, as shown
        page.click(f'a[href="#{s["ref"]}"]')  # and each link lands on its number
        assert page.evaluate("location.hash") == "#" + s["ref"]
        assert page.eval_on_selector(f'[id="{s["ref"]}"]', "e => e.matches(':target')")
    gm = next(r for r in doc["volumes"]["labels"] if r["name"] == "GM")
    assert f"{gm['volume_ml']:,.1f}" in page.inner_text('tr[id="vol-GM"]')
    assert page.locator("img").count() == 5
    check_page(page)
    # A phone: nothing wider than the screen but the scrollable tables.
    phone = browser.new_page(viewport={"width": 375, "height": 800})
    phone.goto(html.resolve().as_uri())
    assert phone.evaluate("document.body.scrollWidth") <= 375


def test_cohort_report_in_browser(browser, tmp_path):
    from tests.conftest import run_cli
    from tests.report._synth import write_cohort

    paths = write_cohort(tmp_path, 100, outliers={3: 2500.0}, pages=True)
    r = run_cli("report", "cohort", *map(str, paths), "-o", str(tmp_path / "c.html"))
    assert r.returncode == 0, r.stderr.decode()
    page, others, seconds = open_page(browser, tmp_path / "c.html")
    assert others == [], others
    print(f"\ncohort report (100): loaded in {seconds:.2f} s")
    assert "sub-0003: ICV mL 2,500.0" in page.inner_text("#outliers")
    assert page.locator("svg").count() >= 7 and page.locator("tbody tr").count() == 100
    check_page(page)
    page.click('#outliers a[href="#s-3"]')
    page.click('tr[id="s-3"] a')  # the subject's own page opens
    assert page.url.endswith("sub-0003.html")
