"""The on-line enquiry form in a real headless Chromium at 320 px wide: a councillor sends
it empty (the error summary), then fills it in with two files and sees the reference.
Each page is checked with axe-core (WCAG 2.2 AA) and photographed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlmodel import Session, select

from mailbridge.store.db import make_engine
from mailbridge.store.models import Attachment, Case
from tests.browser import ON_SQLITE, checked, chromium, overflow, press
from tests.web.conftest import Web, free_port, make_web, serving

pytestmark = pytest.mark.slow


@pytest.fixture
def live(tmp_path: Path, migrated_db_url: str) -> Iterator[tuple[Web, str]]:
    port = free_port()
    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, web={"base_url": f"http://127.0.0.1:{port}"})
    try:
        with serving(site.app, port) as base:
            yield site, base
    finally:
        engine.dispose()


def _checked(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    """Photographed, checked by axe-core, and no wider than the screen."""
    checked(driver, name)
    wider = overflow(driver)
    assert wider <= 0, f"{name} is {wider} px wider than the screen"


@ON_SQLITE
def test_a_councillor_raises_an_enquiry_with_two_files_on_a_phone(
    live: tuple[Web, str], tmp_path: Path
) -> None:
    site, base = live
    client, _ = site.signed_in("member")
    files = [tmp_path / "survey.pdf", tmp_path / "photo.jpg"]
    files[0].write_bytes(b"%PDF-1.4\n%%EOF\n")
    files[1].write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 500 + b"\xff\xd9")
    with chromium(320, 900) as driver:
        driver.get(base + "/sign-in")
        for name, value in client.cookies.items():
            driver.add_cookie({"name": name, "value": value})
        driver.get(base + "/enquiries/new")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Raise an enquiry"
        _checked(driver, "enquiry-form-320px")

        press(driver, "Send enquiry")
        summary = driver.find_element(By.CLASS_NAME, "govuk-error-summary")
        assert "Enter a subject" in summary.text
        _checked(driver, "enquiry-form-errors-320px")

        Select(driver.find_element(By.ID, "service_area")).select_by_visible_text("Highways")
        driver.find_element(By.ID, "subject").send_keys("Pothole outside 14 Mill Lane")
        driver.find_element(By.ID, "details").send_keys("Deep pothole by the bus stop.")
        driver.find_element(By.ID, "resident_name").send_keys("Mrs Ada Green")
        driver.find_element(By.ID, "preferred_contact-phone").click()
        driver.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
        press(driver, "Send enquiry")

        panel = driver.find_element(By.CLASS_NAME, "govuk-panel--confirmation")
        reference = panel.find_element(By.TAG_NAME, "strong").text
        assert reference.startswith("MQ-")
        _checked(driver, "enquiry-sent-320px")

    with Session(site.engine) as session:
        case = session.exec(select(Case).where(Case.reference == reference)).one()
        names = session.exec(select(Attachment.filename).where(Attachment.case_id == case.id))
        assert sorted(names) == ["photo.jpg", "survey.pdf"]
        assert (case.channel, case.preferred_contact, case.service_area) == (
            "web",
            "phone",
            "Highways",
        )
