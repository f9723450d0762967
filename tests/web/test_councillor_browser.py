"""A councillor in a real headless Chromium: signs in by the emailed link, lands on "My
enquiries", opens the enquiry and requests an update, at desktop width and at 320 px.
Every page is checked with axe-core (WCAG 2.2 AA) and photographed."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import axe_violations, chromium, describe, screenshot
from tests.helpers.council import JANE, REF
from tests.web.conftest import Web
from tests.web.test_browser_journey import live  # noqa: F401 - the served console
from tests.web.test_signin import _link

pytestmark = pytest.mark.slow


def _checked(driver, name: str) -> Path:  # type: ignore[no-untyped-def]
    shot = screenshot(driver, name)
    violations = axe_violations(driver)
    assert not violations, f"{name}: {describe(violations)}"
    return shot


def _press(driver, label: str) -> None:  # type: ignore[no-untyped-def]
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()
    WebDriverWait(driver, 30).until(staleness_of(page))


def _overflow(driver) -> int:  # type: ignore[no-untyped-def]
    return int(
        driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


def test_a_councillor_follows_and_chases_an_enquiry_in_a_browser(
    live: tuple[Web, str],  # noqa: F811
) -> None:
    site, base = live
    with chromium(1280, 1000) as driver:
        driver.get(base + "/sign-in")
        driver.find_element(By.ID, "email").send_keys(JANE)
        _press(driver, "Email me a sign-in link")
        driver.get(base + _link(site))
        _press(driver, "Sign in")
        assert driver.current_url == base + "/enquiries"
        _checked(driver, "councillor-enquiries")
        driver.find_element(By.LINK_TEXT, REF).click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith(REF))
        _checked(driver, "councillor-enquiry")
        driver.find_element(By.ID, "update-text").send_keys("Any news from the contractor?")
        _press(driver, "Request an update")
        assert "Update requested" in driver.find_element(By.TAG_NAME, "main").text
        _checked(driver, "councillor-update-requested")
        cookies = driver.get_cookies()
    with chromium(320, 800) as narrow:
        narrow.get(base + "/sign-in")
        for cookie in cookies:
            narrow.add_cookie({"name": cookie["name"], "value": cookie["value"]})
        for path, name in (("/enquiries", "councillor-enquiries-320px"),
                           (f"/enquiries/{REF}", "councillor-enquiry-320px")):  # fmt: skip
            narrow.get(base + path)
            assert narrow.current_url == base + path
            assert _overflow(narrow) <= 0, f"{path} is wider than a 320 px screen"
            _checked(narrow, name)
