"""A councillor in a real headless Chromium: signs in by the emailed link, lands on "My
enquiries", opens the enquiry and requests an update, at desktop width and at 320 px.
Every page is checked with axe-core (WCAG 2.2 AA) and photographed."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import ON_SQLITE, checked, chromium, overflow, press
from tests.helpers.council import JANE, REF
from tests.web.conftest import Web
from tests.web.test_browser_journey import live  # noqa: F401 - the served console
from tests.web.test_signin import _link

pytestmark = pytest.mark.slow


@ON_SQLITE
def test_a_councillor_follows_and_chases_an_enquiry_in_a_browser(
    live: tuple[Web, str],  # noqa: F811
) -> None:
    site, base = live
    with chromium(1280, 1000) as driver:
        driver.get(base + "/sign-in")
        driver.find_element(By.ID, "email").send_keys(JANE)
        press(driver, "Email me a sign-in link")
        driver.get(base + _link(site))
        press(driver, "Sign in")
        assert driver.current_url == base + "/enquiries"
        checked(driver, "councillor-enquiries")
        driver.find_element(By.LINK_TEXT, REF).click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith(REF))
        checked(driver, "councillor-enquiry")
        driver.find_element(By.ID, "update-text").send_keys("Any news from the contractor?")
        press(driver, "Request an update")
        assert "Update requested" in driver.find_element(By.TAG_NAME, "main").text
        checked(driver, "councillor-update-requested")
        cookies = driver.get_cookies()
    with chromium(320, 800) as narrow:
        narrow.get(base + "/sign-in")
        for cookie in cookies:
            narrow.add_cookie({"name": cookie["name"], "value": cookie["value"]})
        for path, name in (("/enquiries", "councillor-enquiries-320px"),
                           (f"/enquiries/{REF}", "councillor-enquiry-320px")):  # fmt: skip
            narrow.get(base + path)
            assert narrow.current_url == base + path
            assert overflow(narrow) <= 0, f"{path} is wider than a 320 px screen"
            checked(narrow, name)
