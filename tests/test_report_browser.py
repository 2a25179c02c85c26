"""The report in a real browser: headless Chromium from the distribution's packages, driven by
Selenium through the matching chromedriver (nothing downloaded), loading the page from disk.

Checked against the chronicle: every run, every verdict, every plotted point; no network request
(Chrome's performance log), no console error (a CSP violation would be one), the injected markup
inert, sorting and filtering by keyboard, no horizontal overflow at a phone's width, axe-core
(WCAG 2.1 A and AA) clean. Screenshots at 1280 px and 390 px go to $CATALYTIC_TEST_ARTIFACTS
(default: the test's temporary directory).

Skipped, with the reason, only where Chromium, chromedriver or Selenium are not installed
(`.ci/run` installs them); the axe test also needs axe-core from npm (`.ci/run` installs it and
sets CATALYTIC_AXE_JS; tests/.axe/node_modules/axe-core/axe.min.js is looked at too)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalytic_hooks.provenance.chronicle import inspect, read
from catalytic_hooks.report.chronicle_html import render

from .helpers import ROOT, needs_tool
from .test_report import (
    EXTREMES,
    HOSTILE_KEY,
    HOSTILE_RUN,
    build_chronicle,
    build_extreme_chronicle,
    build_long_chronicle,
    drift_of,
    same_drifts,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

# Outside CI only: under CI (where .ci/run installs them) a missing browser fails these tests.
pytestmark = needs_tool(
    bool(CHROMIUM and DRIVER and HAVE_SELENIUM),
    "needs chromium, chromium-driver (distribution packages) and selenium (test extras); "
    f"found chromium={CHROMIUM}, chromedriver={DRIVER}, selenium={HAVE_SELENIUM}",
)


def axe_source() -> Path | None:
    for cand in (
        os.environ.get("CATALYTIC_AXE_JS"),
        ROOT / "tests/.axe/node_modules/axe-core/axe.min.js",
    ):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def artifacts(tmp_path: Path) -> Path:
    d = Path(os.environ.get("CATALYTIC_TEST_ARTIFACTS") or tmp_path / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path, list]]:
    """One browser for the module, on the report of the test chronicle."""
    from selenium.webdriver.chrome.service import Service

    top = tmp_path_factory.mktemp("report")
    chronicle = build_chronicle(top)
    html = top / "report.html"
    html.write_bytes(render(inspect(chronicle)))
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM or ""
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER or ""))
    try:
        driver.get(html.as_uri())
        yield driver, html, read(chronicle)
    finally:
        driver.quit()


def test_network_console_and_injection(page: tuple[Any, Path, list]) -> None:
    driver, html, _ = page
    requests = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            requests.append(msg["params"]["request"]["url"])
    # The page itself is the only load: no network request, no CDN, no font, no image.
    assert requests == [html.as_uri()], requests
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    # Injected markup rendered as text and ran nothing.
    assert driver.title == "Chronicle report"
    assert driver.find_elements(By.TAG_NAME, "img") == []
    assert len(driver.find_elements(By.TAG_NAME, "script")) == 1
    body = driver.find_element(By.TAG_NAME, "body").text
    assert HOSTILE_RUN in body and HOSTILE_KEY in body
    assert driver.execute_script("return document.readyState") == "complete"


def test_runs_verdicts_and_points_match_the_chronicle(page: tuple[Any, Path, list]) -> None:
    driver, _, records = page
    banner = driver.find_element(By.ID, "integrity").text
    assert banner.startswith("✓ Chronicle verified: 11 records")
    heads = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "section.run h3")]
    run_ids = list(dict.fromkeys(r["data"]["run_id"] for r in records if "run_id" in r["data"]))
    assert heads == [f"Run {r}" for r in run_ids]
    # Each run's replay table lists its replays' verdicts in order.
    for i, rid in enumerate(run_ids, 1):
        cells = driver.find_elements(By.CSS_SELECTOR, f"#run-{i}-replays tbody td:nth-child(3)")
        want = [
            r["data"]["verdict"]
            for r in records
            if r["kind"] == "replay" and r["data"]["run_id"] == rid
        ]
        assert [c.text.split(" ", 1)[1] for c in cells] == want
    # The plotted points are the recorded drifts (per metric, in order), read back from where
    # the browser draws them: each marker's centre on the plot's log scale.
    plots = driver.execute_script(
        "return Array.from(document.querySelectorAll('svg.plot')).map(s => [s.dataset.run, "
        "s.dataset.key, s.dataset.hi, s.dataset.zero, s.dataset.top, s.dataset.bottom, "
        "Array.from(s.querySelectorAll('polyline.pts')).flatMap(p => "
        "Array.from(p.points).map(q => [q.x, q.y, p.dataset.verdict]))])"
    )
    assert {(p[0], p[1]) for p in plots} == {("train", "loss"), ("train", HOSTILE_KEY)}
    for _run, key, hi, zero, top, bottom, pts in plots:
        svg = {"data-hi": hi, "data-zero": zero, "data-top": top, "data-bottom": bottom}
        got = [(drift_of(y, svg), v) for _, y, v in sorted(pts)]
        want = [
            (m["delta"], r["data"]["verdict"])
            for r in records
            if r["kind"] == "replay"
            for m in r["data"].get("metrics", [])
            if m["key"] == key
        ]
        assert same_drifts(got, want), (key, got, want)
    # Every vertex is drawn by its verdict's marker: the computed style names it and it is a
    # marker of this page.
    marks = driver.execute_script(
        "return Array.from(document.querySelectorAll('polyline.pts')).map(p => {"
        "const st = getComputedStyle(p);"
        "const id = st.markerMid.replace(/^url\\(\"?#|\"?\\)$/g, '');"
        "return [p.dataset.verdict, st.markerStart === st.markerMid && st.markerMid === "
        "st.markerEnd, (document.getElementById(id) || {}).tagName];})"
    )
    assert marks and all(same and tag == "marker" for _, same, tag in marks), marks


def test_sorting_and_filtering_by_keyboard(page: tuple[Any, Path, list]) -> None:
    driver, _, records = page
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    first = driver.switch_to.active_element
    assert first.text == "Skip to the content"
    # Sort the timeline by seq, descending (Enter twice on the header button).
    button = driver.find_element(By.CSS_SELECTOR, "#timeline thead th:nth-child(1) button")
    assert button.is_displayed()
    button.send_keys(Keys.ENTER)
    button.send_keys(Keys.ENTER)
    seqs = [
        int(c.text)
        for c in driver.find_elements(By.CSS_SELECTOR, "#timeline tbody td:nth-child(1)")
    ]
    assert seqs == sorted((r["seq"] for r in records), reverse=True)
    th = driver.find_element(By.CSS_SELECTOR, "#timeline thead th:nth-child(1)")
    assert th.get_attribute("aria-sort") == "descending"
    # Filter by kind: only the replays stay visible.
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "timeline-kind")).select_by_value("replay")
    visible = [
        r for r in driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr") if r.is_displayed()
    ]
    assert len(visible) == sum(r["kind"] == "replay" for r in records)
    box = driver.find_element(By.ID, "timeline-q")
    box.send_keys("BUNDLE_ROOT")
    visible = [
        r for r in driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr") if r.is_displayed()
    ]
    assert len(visible) == 1
    box.clear()
    box.send_keys(" ")
    box.send_keys(Keys.BACKSPACE)
    Select(driver.find_element(By.ID, "timeline-kind")).select_by_value("")


def test_screenshots_and_phone_width(page: tuple[Any, Path, list], tmp_path: Path) -> None:
    driver, _, _ = page
    out = artifacts(tmp_path)
    for name, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
        driver.set_window_size(width, height)
        inner = driver.execute_script("return window.innerWidth")
        # Nothing forces horizontal scrolling of the page (wide tables scroll in their region).
        assert driver.execute_script("return document.documentElement.scrollWidth") <= inner
        shot = out / f"report-{name}.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    driver.set_window_size(1280, 900)


def test_axe_core_finds_no_wcag_a_or_aa_violation(page: tuple[Any, Path, list]) -> None:
    run_axe(page[0])


def run_axe(driver: Any) -> None:
    src = axe_source()
    if src is None and os.environ.get("CI"):
        pytest.fail(
            "CI: axe-core should have been installed by .ci/run (npm install --prefix "
            "tests/.axe axe-core); it was not found"
        )
    if src is None:
        pytest.skip(
            "axe-core not installed (npm install --prefix tests/.axe axe-core, or set "
            "CATALYTIC_AXE_JS); .ci/run installs it"
        )
    driver.set_window_size(1280, 900)
    # Evaluated by the driver (DevTools), which page CSP does not govern; the page's own policy
    # still forbids any script of its own but the hashed one.
    driver.execute_script(src.read_text())
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => done({violations: r.violations.map(v => ({id: v.id, impact: v.impact, "
        "nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})), passes: r.passes.length}))"
        ".catch(e => done({error: String(e)}));"
    )
    assert "error" not in result, result
    assert result["violations"] == [], result["violations"]
    assert result["passes"] > 10


def test_a_long_table_opens_by_its_filter_a_link_and_the_keyboard(
    page: tuple[Any, Path, list], tmp_path: Path
) -> None:
    """A table past COLLAPSE_OVER rows comes closed: its rows are not laid out until opened
    (by typing in its filter, by a link to it, or by the keyboard on its summary); axe-core
    finds nothing on the opened page (the test above covers the rest of the page)."""
    driver, html, _ = page
    long_html = tmp_path / "long.html"
    long_html.write_bytes(render(inspect(build_long_chronicle(tmp_path))))
    try:
        driver.get(long_html.as_uri())
        rows = driver.find_element(By.ID, "timeline-rows")
        assert rows.get_attribute("open") is None
        assert not driver.find_element(By.CSS_SELECTOR, "#timeline tbody tr").is_displayed()
        box = driver.find_element(By.ID, "timeline-q")
        box.send_keys("PASS-7")
        assert rows.get_attribute("open") is not None
        # One round trip, not one per row: the rows the browser draws (a box each).
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll('#timeline tbody tr'))"
            ".filter(r => r.getClientRects().length > 0).map(r => r.textContent)"
        )
        assert len(shown) == 1 + 10 and all("PASS-7" in t for t in shown)  # 7 and 70..79
        # A link to the table opens it (the browser's own fragment navigation).
        driver.get("about:blank")
        driver.get(long_html.as_uri() + "#timeline")
        assert driver.find_element(By.ID, "timeline-rows").get_attribute("open") is not None
        driver.get("about:blank")
        driver.get(long_html.as_uri())
        summary = driver.find_element(By.CSS_SELECTOR, "#timeline-rows > summary")
        summary.send_keys(Keys.ENTER)
        rows = driver.find_element(By.ID, "timeline-rows")
        assert rows.get_attribute("open") is not None
        assert driver.find_element(By.CSS_SELECTOR, "#timeline tbody tr").is_displayed()
        if axe_source() is not None:
            run_axe(driver)
    finally:
        driver.get(html.as_uri())


def test_numbers_beyond_every_float_render_and_stay_in_their_plot(
    page: tuple[Any, Path, list], tmp_path: Path
) -> None:
    """Drifts and tolerances of 1.7e308, 400- and 4,300-digit integers, a subnormal and -0.0:
    the page loads with no console error (a CSP violation would be one), shows each value, and
    the browser draws every point inside its plot."""
    driver, html, _ = page
    extreme = tmp_path / "extreme.html"
    extreme.write_bytes(render(inspect(build_extreme_chronicle(tmp_path))))
    try:
        driver.get_log("browser")  # what earlier pages logged
        driver.get(extreme.as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        cells = driver.find_elements(By.CSS_SELECTOR, "#run-1-replays tbody td:last-child")
        assert [c.text for c in cells] == [shown for _, shown in EXTREMES]
        inside = driver.execute_script(
            "const s = document.querySelector('svg.plot'), b = s.viewBox.baseVal;"
            "return Array.from(s.querySelectorAll('polyline.pts')).flatMap(p => "
            "Array.from(p.points).map(q => q.x >= 0 && q.x <= b.width && q.y >= "
            "Number(s.dataset.top) && q.y <= Number(s.dataset.bottom)));"
        )
        assert len(inside) == len(EXTREMES) and all(inside), inside
        driver.execute_script("document.querySelector('svg.plot').scrollIntoView()")
        shot = artifacts(tmp_path) / "report-extreme.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.get(html.as_uri())
