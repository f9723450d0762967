"""A real headless Chromium for the browser tests, with axe-core's accessibility check and
screenshots kept as test artefacts.

Debian's /usr/bin/chromium and /usr/bin/chromedriver only (scripts/install-test-deps puts them
there): Selenium Manager would try to download a driver, and nothing outside the package
registries can be fetched. A missing browser skips the test, or fails it when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from axe_selenium_python import Axe
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.servers import unavailable

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS_ENV = "MAILBRIDGE_TEST_ARTIFACTS"
# axe-selenium-python bundles axe-core 3.1.1, too old for WCAG 2.1 AA and 2.2: a current
# axe-core is vendored beside these tests (tests/vendor/axe-core/README.md).
AXE_VERSION = "4.14.1"
AXE_SCRIPT = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
# A browser test proves the pages (markup, forms, axe-core, the narrow screen) and the journey
# through them; what each route does to the database (the form with its files, assigning,
# replies, requests for updates, completing) is proven on SQLite and on PostgreSQL by the
# route tests (tests/web/test_enquiry_form.py, test_case_actions.py, test_officer_pages.py,
# test_councillor_pages.py, ...). So a browser test runs on SQLite only.
ON_SQLITE = pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests may run as root, where Chromium's sandbox will not start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium showing pages width x height CSS pixels, with a fresh profile of
    its own; quit (and its profile removed) when the block ends."""
    for needed in (CHROMIUM, CHROMEDRIVER):
        if not os.access(needed, os.X_OK):
            unavailable("Chromium", f"{needed} is missing (scripts/install-test-deps installs it)")
    with tempfile.TemporaryDirectory(prefix="mailbridge-chromium-") as profile:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        log = Path(profile) / "chromedriver.log"  # a file, never an unread pipe
        service = Service(str(CHROMEDRIVER), log_output=str(log))
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            unavailable("Chromium", str(exc).strip().splitlines()[0])
        try:
            viewport(driver, width, height)
            yield driver
        finally:
            driver.quit()


def viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    """Show pages exactly width x height CSS pixels from now on: a headless window cannot be
    narrower than 500 px, and the console must work at 320 (WCAG's reflow width). Not
    "mobile": that lays a page without a viewport meta tag out at 980 px."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def press(driver: webdriver.Chrome, label: str) -> None:
    """Click the button with this text and wait for the page it leads to."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()
    _wait_for_next_page(driver, page)


def follow(driver: webdriver.Chrome, link_text: str) -> None:
    """Click the link with this text and wait for the page it leads to."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.LINK_TEXT, link_text).click()
    _wait_for_next_page(driver, page)


def _wait_for_next_page(driver: webdriver.Chrome, page: WebElement) -> None:
    """Until the old page's root is gone. Asked mid-navigation, chromedriver may answer
    "Node with given id does not belong to the document" instead of "stale element
    reference": both say the old page is gone."""

    def gone(_: webdriver.Chrome) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc):
                raise
            return True
        return False

    WebDriverWait(driver, 30).until(gone)


def overflow(driver: webdriver.Chrome) -> int:
    """How many CSS pixels the page is wider than the viewport (0 or less: no sideways
    scrolling, WCAG 1.4.10 Reflow)."""
    script = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    return int(driver.execute_script(script))


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A and AA violations on the page the driver shows now."""
    axe = Axe(driver, script_url=str(AXE_SCRIPT))
    axe.inject()
    version = driver.execute_script("return axe.version")
    assert version == AXE_VERSION, f"axe-core {version} ran, not the vendored {AXE_VERSION}"
    options = {"runOnly": {"type": "tag", "values": list(WCAG_TAGS)}}
    results = axe.run(options=json.dumps(options))
    return list(results["violations"])


def describe(violations: list[dict[str, Any]], targets: int = 3) -> str:
    """Violations as an assertion message: each rule's id, impact and help, and the first
    elements it found, so a failure says what to fix without opening a report."""
    if not violations:
        return "no accessibility violations"
    lines = [f"{len(violations)} accessibility violations (axe-core {AXE_VERSION}):"]
    for v in violations:
        nodes = v.get("nodes", [])
        where = [" ".join(map(str, n.get("target", []))) for n in nodes[:targets]]
        more = f" (+{len(nodes) - targets} more)" if len(nodes) > targets else ""
        lines.append(f"- {v['id']} [{v.get('impact')}]: {v.get('help')}")
        lines.append(f"    at {', '.join(where) or '(page)'}{more}")
    return "\n".join(lines)


def artifacts() -> Path:
    """Where screenshots go: $MAILBRIDGE_TEST_ARTIFACTS, or test-artifacts/ in the repo."""
    folder = Path(os.environ.get(ARTIFACTS_ENV) or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """The page as a PNG among the test artefacts, named `name` (made safe as a file name)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "screenshot"
    path = artifacts() / f"{stem}.png"
    if not driver.save_screenshot(str(path)):
        pytest.fail(f"Chromium could not write the screenshot {path}")
    return path


def checked(driver: webdriver.Chrome, name: str) -> Path:
    """Photograph the page (a test artefact named `name`), then fail on any WCAG 2.x A/AA
    violation axe-core finds on it."""
    shot = screenshot(driver, name)
    violations = axe_violations(driver)
    assert not violations, f"{name}: {describe(violations)}"
    return shot
