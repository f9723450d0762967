"""A coordinator's morning in a real headless Chromium against `mailbridge web` served by
uvicorn on loopback: sign in by the emailed link (read from the outbox), filter the
dashboard, open the case, assign a lead officer, and see the assignment email queued.
Every page is checked with axe-core (WCAG 2.2 AA) and photographed; the dashboard must work
at 320 px wide. The screenshots are test artefacts; `MAILBRIDGE_DOCS_SCREENSHOTS=1` also
writes the README's pictures to docs/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from mailbridge.store.db import make_engine
from tests.browser import ON_SQLITE, checked, chromium, follow, overflow, press
from tests.web.conftest import Web, free_port, make_web, serving
from tests.web.test_signin import COORDINATOR, _link

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def live(tmp_path: Path, migrated_db_url: str) -> Iterator[tuple[Web, str]]:
    """The console served by a real uvicorn on loopback, over a council with cases."""
    port = free_port()
    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, web={"base_url": f"http://127.0.0.1:{port}"})
    site.pothole()
    try:
        with serving(site.app, port) as base:
            yield site, base
    finally:
        engine.dispose()


def _checked(driver, name: str) -> Path:
    """Screenshot, then axe-core; copied to docs/ for the README when asked."""
    shot = checked(driver, name)
    if os.environ.get("MAILBRIDGE_DOCS_SCREENSHOTS"):
        shutil.copyfile(shot, DOCS / f"{name}.png")
    return shot


@ON_SQLITE
def test_a_coordinator_signs_in_filters_opens_a_case_and_assigns_it(
    live: tuple[Web, str],
) -> None:
    site, base = live
    with chromium(1280, 1000) as driver:
        driver.get(base + "/")
        assert driver.current_url.startswith(base + "/sign-in")
        _checked(driver, "console-sign-in")
        driver.find_element(By.ID, "email").send_keys(COORDINATOR)
        press(driver, "Email me a sign-in link")
        assert "Check your email" in driver.find_element(By.TAG_NAME, "h1").text

        driver.get(base + _link(site))
        press(driver, "Sign in")
        assert driver.current_url == base + "/"
        _checked(driver, "console-dashboard")

        field = driver.find_element(By.ID, "service-area")
        field.send_keys("Highways")
        press(driver, "Apply filters")
        assert "service_area=Highways" in driver.current_url
        reference = site.pothole()
        follow(driver, reference)
        assert driver.current_url == f"{base}/cases/{reference}"
        _checked(driver, "console-case")

        driver.find_element(By.ID, "assign-lead").send_keys("priya.shah@example.gov.uk")
        press(driver, "Assign")
        assert driver.current_url.startswith(f"{base}/cases/{reference}")
        assert "Priya Shah" in driver.find_element(By.TAG_NAME, "main").text
        queued = [m for m in site.outbox() if "priya.shah@example.gov.uk" in m.recipients]
        assert queued, "the assignment email to the lead officer was not queued"
        _checked(driver, "console-case-assigned")

        driver.back()
        driver.back()
        assert "service_area=Highways" in driver.current_url  # the filter lives in the URL

        driver.get(base + "/report?from=2026-11-01&to=2026-11-30&compare=yes")
        assert "Member enquiries" in driver.find_element(By.TAG_NAME, "h1").text
        _checked(driver, "console-report")

    with chromium(320, 800) as narrow:
        narrow.get(base + "/")
        for name, value in driver_cookies_of(site):
            narrow.add_cookie({"name": name, "value": value})
        narrow.get(base + "/")
        assert narrow.current_url == base + "/"
        wider = overflow(narrow)
        assert wider <= 0, f"the dashboard is {wider} px wider than a 320 px screen"
        _checked(narrow, "console-dashboard-320px")


def driver_cookies_of(site: Web) -> list[tuple[str, str]]:
    """A fresh coordinator session for the narrow-screen browser."""
    client, _ = site.signed_in("coordinator")
    return [(name, value) for name, value in client.cookies.items()]
