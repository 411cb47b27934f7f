"""Helpers for the headless-browser tests (the ``browser`` fixture is in conftest.py)."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def console_errors(driver) -> list[str]:
    """SEVERE browser console messages since the last call (favicon 404s ignored)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]


def save_screenshot(driver, name: str) -> Path:
    """Save a PNG screenshot under ``tests/artifacts/`` and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver, css: str, timeout: float = 20):
    """Wait until an element matching ``css`` is present; return it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )
