"""An officer's morning in a real headless Chromium against the console served by uvicorn:
the start page sends them to My cases, they open their case, send a holding reply and then
the response, through the forms alone. Every page is checked with axe-core (WCAG 2.2 AA)
and photographed, and My cases and the case page fit a 320 px screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from mailbridge.store.models import CaseStatus
from tests.browser import ON_SQLITE, checked, chromium, follow, overflow, press
from tests.helpers.council import PRIYA
from tests.web.conftest import Web, free_port, make_web, serving

pytestmark = pytest.mark.slow


@pytest.fixture
def live(tmp_path: Path, migrated_db_url: str) -> Iterator[tuple[Web, str]]:
    """The console on loopback, over a council whose pothole case Priya leads."""
    from mailbridge.store.db import make_engine

    port = free_port()
    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, web={"base_url": f"http://127.0.0.1:{port}"})
    site.pothole()
    site.council.assign(PRIYA)
    try:
        with serving(site.app, port) as base:
            yield site, base
    finally:
        engine.dispose()


def _signed_in(driver, site: Web, base: str) -> None:
    """The browser carries a fresh session of Priya's."""
    client, _ = site.signed_in("officer")
    driver.get(base + "/sign-in")
    for name, value in client.cookies.items():
        driver.add_cookie({"name": name, "value": value})


@ON_SQLITE
def test_an_officer_answers_their_case_in_the_browser(live: tuple[Web, str]) -> None:
    site, base = live
    reference = site.pothole()
    with chromium(1280, 1000) as driver:
        _signed_in(driver, site, base)
        driver.get(base + "/")
        assert driver.current_url == base + "/my-cases"
        checked(driver, "officer-my-cases")
        follow(driver, reference)
        assert driver.current_url == f"{base}/my-cases/{reference}"
        checked(driver, "officer-case")

        driver.find_element(By.ID, "respond-holding").click()
        driver.find_element(By.ID, "respond-text").send_keys("The contractor visits on Monday.")
        press(driver, "Send the reply")
        assert "Holding reply sent" in driver.find_element(By.TAG_NAME, "main").text
        assert site.council.case(reference).status != CaseStatus.COMPLETED
        checked(driver, "officer-case-holding-sent")

        press(driver, "Send the reply")  # nothing typed: the error summary
        assert "There is a problem" in driver.find_element(By.TAG_NAME, "main").text
        checked(driver, "officer-case-error")

        driver.find_element(By.ID, "respond-text").send_keys("The pothole is filled.")
        press(driver, "Send the reply")
        assert "the case is completed" in driver.find_element(By.TAG_NAME, "main").text
        assert site.council.case(reference).status == CaseStatus.COMPLETED

    with chromium(320, 800) as narrow:
        _signed_in(narrow, site, base)
        for path, name in (("/my-cases", "list"), (f"/my-cases/{reference}", "case")):
            narrow.get(base + path)
            wider = overflow(narrow)
            assert wider <= 0, f"{path} is {wider} px wider than a 320 px screen"
            checked(narrow, f"officer-{name}-320px")
