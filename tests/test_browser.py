"""The generated HTML report opened in a real browser: headless Chromium (Debian's `chromium`, installed by .ci/run).

Each page is checked twice: once as-is for console messages and a screenshot, once as an instrumented copy
whose appended script measures what rendered (tables, inline SVG plots, images, horizontal overflow on a
laptop-width window, resources fetched) and writes the answer into the DOM that --dump-dom prints. The page
itself carries no script, so any console message is an error. A deliberately broken page proves the
detection works. Skipped, with the reason, where chromium is not installed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ablate.report.build import build_reports
from test_report import STUDIES, fake_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs Debian's package: apt-get install chromium)")

LAPTOP = (1366, 768)  # a common laptop screen: pages must not scroll sideways at this width
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
# Chromium logs every console message (log, warning, error, uncaught exception) as INFO:CONSOLE(...)
CONSOLE = re.compile(r"CONSOLE[(:]\d+|Uncaught ")

# Registered first, in <head>, so it sees errors thrown anywhere in the page.
ERROR_HOOK = ("<script>window.__errors = []; window.addEventListener('error', "
              "function (e) { window.__errors.push(String(e.message || (e.target && e.target.src) || e)); }, true);"
              "</script>")
# Run last, synchronously, at the end of <body>: layout is forced by getBoundingClientRect. Collapsed
# <details> are opened first, so their tables are measured as a reader who opens them would see them.
MEASURE = """<script>(function () {
  Array.prototype.forEach.call(document.querySelectorAll('details'), function (d) { d.open = true; });
  function size(el) { var r = el.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; }
  var out = {
    errors: window.__errors,
    tables: Array.prototype.map.call(document.querySelectorAll('table'), size),
    svgs: Array.prototype.map.call(document.querySelectorAll('svg'), size),
    images: Array.prototype.map.call(document.querySelectorAll('img'), function (i) { return i.naturalWidth; }),
    scripts: document.querySelectorAll('script').length,
    resources: performance.getEntriesByType('resource').map(function (e) { return e.name; }),
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    text: document.body.innerText.length
  };
  document.body.setAttribute('data-check', JSON.stringify(out));
})();</script>"""


def chromium(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    """One headless run with a fresh profile; stdout holds --dump-dom output, stderr the log."""
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={LAPTOP[0]},{LAPTOP[1]}", *action, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if CONSOLE.search(line)]


def measure(page: Path, tmp: Path) -> dict:
    """Render an instrumented copy of `page` (beside it, so relative links resolve) and read back the measurements."""
    text = page.read_text(encoding="utf-8")
    probe = page.with_name(f"_probe_{page.name}")
    probe.write_text(text.replace("<head>", "<head>" + ERROR_HOOK, 1).replace("</body>", MEASURE + "</body>", 1),
                     encoding="utf-8")
    try:
        run = chromium(probe.as_uri(), tmp / f"profile-{page.parent.name}-probe", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r'data-check="([^"]*)"', run.stdout)
    assert found, f"no measurements from {page}: {run.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, tmp: Path, name: str, height: int = 2400) -> tuple[Path, list[str]]:
    """A PNG of the page's top `height` pixels at laptop width; also the console errors of that load."""
    png = tmp / f"{name}.png"
    run = chromium(page.as_uri(), tmp / f"profile-{name}", f"--screenshot={png}",
                   f"--window-size={LAPTOP[0]},{height}")
    assert png.exists(), run.stderr[-2000:]
    return png, console_errors(run.stderr)


def assert_nontrivial_png(png: Path) -> None:
    from PIL import Image

    assert png.stat().st_size > 20_000, png
    with Image.open(png) as im:
        grey = im.convert("L")
        low, high = grey.getextrema()
        assert high - low > 100, "the screenshot is (nearly) one colour"
        assert len(grey.getcolors(256)) > 16, "too few shades for text and plots"  # "L" has at most 256


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    build_reports(fake_store(root / "results"), root / "reports")
    return root / "reports"


def test_detector_sees_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><p>text</p>"
                    "<script>console.error('planted error'); notDefinedAnywhere();</script></body></html>",
                    encoding="utf-8")
    _, errors = screenshot(page, tmp_path, "broken", height=300)
    assert any("planted error" in e for e in errors), errors
    assert any("notDefinedAnywhere" in e for e in errors), errors
    found = measure(page, tmp_path)
    assert any("notDefinedAnywhere" in e for e in found["errors"]), found


def test_index_renders(reports, tmp_path):
    page = reports / "index.html"
    png, errors = screenshot(page, tmp_path, "index", height=900)
    assert errors == []
    assert_nontrivial_png(png)
    found = measure(page, tmp_path)
    assert found["errors"] == [] and found["resources"] == []
    assert len(found["tables"]) == 1 and min(found["tables"][0]) > 50
    assert found["overflow"] <= 0, "the index scrolls sideways on a laptop screen"


@pytest.mark.parametrize("name", [p.stem for p in STUDIES])
def test_study_page_renders(reports, tmp_path, name):
    page = reports / name / "index.html"
    png, errors = screenshot(page, tmp_path, name)
    assert errors == [], errors
    assert_nontrivial_png(png)
    found = measure(page, tmp_path)
    assert found["errors"] == [], found["errors"]
    assert found["resources"] == [], "the report fetched something: it must be self-contained"
    assert found["scripts"] == 2, "only the probe's two scripts: a study string must never become a <script>"
    assert len(found["tables"]) >= 5 and all(w > 50 and h > 20 for w, h in found["tables"]), found["tables"]
    assert len(found["svgs"]) >= 5 and all(w > 200 and h > 100 for w, h in found["svgs"]), found["svgs"]
    assert all(w > 0 for w in found["images"])
    assert found["overflow"] <= 0, f"{name} scrolls sideways by {found['overflow']}px on a laptop screen"
    shutil.copy(png, tmp_path.parent / f"report-{name}.png")  # kept beside the test dirs for a human to look at


def test_script_in_a_study_string_is_shown_as_text(tmp_path):
    from test_report import make_results, make_study

    from ablate.report.html import write_study_report

    study = make_study(description="Masking <script>document.title='pwned'; console.error('ran')</script>")
    page = write_study_report(study, make_results(), tmp_path / "reports", {})
    _, errors = screenshot(page, tmp_path, "escaped", height=600)
    assert errors == []
    dom = chromium(page.as_uri(), tmp_path / "profile-dom", "--dump-dom").stdout
    assert "<title>masking: ablate report</title>" in dom
    assert "&lt;script&gt;document.title=" in dom
