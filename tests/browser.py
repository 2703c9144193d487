"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by its
``chromedriver`` through Selenium. A missing browser fails the test; it never skips.

``scripts/test.sh`` installs both (``apt-get install chromium chromium-driver``).
``CHROMIUM_BIN`` and ``CHROMEDRIVER_BIN`` point elsewhere when needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
ARTIFACTS = Path(
    os.environ.get(
        "STUDIO_ARTIFACTS_DIR", Path(__file__).resolve().parents[1] / "artifacts" / "studio"
    )
)
# Quiet, reproducible and offline: no sandbox (CI runs as root), no GPU, nothing fetched
# in the background, a fresh profile each time.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)

T = TypeVar("T")


def chromium(
    user_data_dir: Path, download_dir: Path, size: tuple[int, int] = (1280, 1000)
) -> webdriver.Chrome:
    """A fresh headless Chromium with console logs kept and downloads into
    ``download_dir``."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver; scripts/test.sh does it)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={user_data_dir}", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return driver


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after
    ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what} (last: {last!r})")


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save a PNG of the page under the artifacts folder; its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Console messages at level SEVERE since the last call (the log is drained)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
