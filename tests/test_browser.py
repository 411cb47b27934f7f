"""Smoke tests of the headless-browser harness (the ``browser`` fixture and tests/browser.py)."""

from __future__ import annotations

from pathlib import Path

from browser import console_errors, save_screenshot, wait_for

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>segmint browser smoke test</title></head>
<body>
  <h1>Smoke test</h1>
  <svg id="chart" xmlns="http://www.w3.org/2000/svg" width="120" height="60">
    <rect x="10" y="10" width="40" height="40" fill="steelblue"></rect>
    <circle cx="90" cy="30" r="20" fill="tomato"></circle>
  </svg>
  <script>
    const p = document.createElement("p");
    p.id = "added-by-script";
    p.textContent = "added by script";
    document.body.appendChild(p);
  </script>
</body>
</html>
"""

BROKEN_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>broken page</title></head>
<body>
  <script>console.error("deliberate console error");</script>
  <script>
    const done = document.createElement("p");
    done.id = "done";
    document.body.appendChild(done);
    throw new Error("deliberate thrown error");
  </script>
</body>
</html>
"""


def _open(driver, path: Path, html: str) -> None:
    path.write_text(html, encoding="utf-8")
    console_errors(driver)  # drain what earlier tests left in the session-wide log
    driver.get(path.resolve().as_uri())


def test_self_contained_page_renders(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By  # imported here: the fixture skips without it

    _open(browser, tmp_path / "page.html", PAGE)
    added = wait_for(browser, "#added-by-script")
    assert added.text == "added by script"
    svg = browser.find_element(By.CSS_SELECTOR, "svg#chart")
    assert svg.is_displayed()
    assert len(svg.find_elements(By.CSS_SELECTOR, "rect, circle")) == 2
    assert console_errors(browser) == []
    shot = save_screenshot(browser, "browser-smoke")
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_errors_are_caught(browser, tmp_path: Path) -> None:
    _open(browser, tmp_path / "broken.html", BROKEN_PAGE)
    wait_for(browser, "#done")
    errors = console_errors(browser)
    assert any("deliberate console error" in e for e in errors), errors
    assert any("deliberate thrown error" in e for e in errors), errors
    assert console_errors(browser) == []  # the log is drained by each call
