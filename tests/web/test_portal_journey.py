"""One enquiry from the form to its completion, in a real headless Chromium against the
console served by uvicorn, through the real pipeline and outbox: a councillor signs in by
the emailed link, raises an enquiry with two files on the on-line form and sees its
reference; a coordinator assigns it on the case page; the officer signs in, sends a holding
reply; the councillor sees it and requests an update; the officer sends the response; the
councillor sees both replies and the enquiry completed. Every page is photographed and
checked with axe-core (WCAG 2.2 AA); the councillor's pages and the officer's fit 320 px.

`MAILBRIDGE_DOCS_SCREENSHOTS=1` also copies the pictures the two guides show into docs/."""

from __future__ import annotations

import os
import shutil
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlmodel import Session, select

from mailbridge.store.models import Attachment, Case, CaseStatus
from tests.browser import ON_SQLITE, checked, chromium, follow, overflow, press, viewport
from tests.helpers.council import JANE, PRIYA, SUPPORT
from tests.web.conftest import Web
from tests.web.test_enquiry_form_browser import live  # noqa: F401 - the served console
from tests.web.test_signin import _link

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parents[2] / "docs"
# The journey's pictures the guides show: artefact name -> docs/ file name.
FOR_THE_GUIDES = {
    "journey-my-enquiries": "portal-my-enquiries.png",
    "journey-enquiry-holding": "portal-enquiry.png",
    "journey-form": "portal-form.png",
    "journey-sent": "portal-sent.png",
    "journey-my-cases": "portal-my-cases.png",
    "journey-officer-case": "portal-officer-case.png",
}
HOLDING = "The contractor inspects Mill Lane on Monday; I will write again after the visit."
CHASE = "Residents ask whether the bus stop will be closed."
RESPONSE = "The pothole was filled on Tuesday and the bus stop stays open."


def _page(driver: Chrome, name: str, at: str | None = None) -> str:
    """The page checked and photographed (and copied for the guides when asked), scrolled
    to the heading `at` if given: its text."""
    if at:
        heading = driver.find_element(By.XPATH, f"//*[self::h2 or self::h3][.='{at}']")
        driver.execute_script("arguments[0].scrollIntoView()", heading)
    shot = checked(driver, name)
    if os.environ.get("MAILBRIDGE_DOCS_SCREENSHOTS") and name in FOR_THE_GUIDES:
        shutil.copyfile(shot, DOCS / FOR_THE_GUIDES[name])
    return str(driver.find_element(By.TAG_NAME, "main").text)


def _sign_in(driver: Chrome, site: Web, base: str, address: str, who: str) -> list[dict]:
    """Sign in as `address` by the link the console emails, each page checked; the
    session's cookies."""
    driver.delete_all_cookies()
    driver.get(base + "/sign-in")
    _page(driver, f"journey-{who}-sign-in")
    driver.find_element(By.ID, "email").send_keys(address)
    press(driver, "Email me a sign-in link")
    assert "Check your email" in _page(driver, f"journey-{who}-check-email")
    driver.get(base + _link(site))
    assert "Continue signing in" in _page(driver, f"journey-{who}-continue")
    press(driver, "Sign in")
    return list(driver.get_cookies())


def _as(driver: Chrome, base: str, cookies: list[dict], path: str) -> None:
    """Open `path` in the session these cookies carry."""
    driver.delete_all_cookies()
    for cookie in cookies:
        driver.add_cookie({"name": cookie["name"], "value": cookie["value"]})
    driver.get(base + path)
    assert driver.current_url == base + path


def _mail(site: Web, kind: str, to: str) -> list[EmailMessage]:
    """The queued emails of this kind addressed to `to`, parsed."""
    return [
        message_from_bytes(row.raw, policy=policy.default)  # type: ignore[misc]
        for row in site.outbox(kind)
        if to in row.recipients
    ]


def _text(message: EmailMessage) -> str:
    return str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]


@ON_SQLITE
def test_an_enquiry_raised_on_the_form_is_assigned_answered_chased_and_completed(
    live: tuple[Web, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    site, base = live
    files = [tmp_path / "survey.pdf", tmp_path / "photo.jpg"]
    files[0].write_bytes(b"%PDF-1.4\n%%EOF\n")
    files[1].write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 500 + b"\xff\xd9")
    with chromium(1024, 900) as driver:
        # The councillor: signs in by the emailed link and raises the enquiry.
        jane = _sign_in(driver, site, base, JANE, "councillor")
        assert driver.current_url == base + "/enquiries"
        assert "No enquiries yet" in _page(driver, "journey-no-enquiries")
        follow(driver, "New enquiry")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Raise an enquiry"
        _page(driver, "journey-form")
        Select(driver.find_element(By.ID, "service_area")).select_by_visible_text("Highways")
        driver.find_element(By.ID, "subject").send_keys("Pothole outside 14 Mill Lane")
        driver.find_element(By.ID, "details").send_keys("A deep pothole by the bus stop.")
        driver.find_element(By.ID, "resident_name").send_keys("Mrs Ada Green")
        driver.find_element(By.ID, "resident_address").send_keys("14 Mill Lane, Ashford")
        driver.find_element(By.ID, "preferred_contact-phone").click()
        driver.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
        press(driver, "Send enquiry")
        panel = driver.find_element(By.CLASS_NAME, "govuk-panel--confirmation")
        reference = panel.find_element(By.TAG_NAME, "strong").text
        assert reference.startswith("MQ-")
        assert "We will reply by" in _page(driver, "journey-sent")
        (acknowledgement,) = _mail(site, "acknowledgement", JANE)
        assert reference in str(acknowledgement["Subject"])

        # A coordinator assigns it to Priya on the case page.
        _sign_in(driver, site, base, SUPPORT, "coordinator")
        assert driver.current_url == base + "/"
        assert reference in _page(driver, "journey-dashboard")
        follow(driver, reference)
        _page(driver, "journey-case-new")
        driver.find_element(By.ID, "assign-lead").send_keys(PRIYA)
        press(driver, "Assign")
        assert "Priya Shah" in _page(driver, "journey-case-assigned")
        assert _mail(site, "assignment", PRIYA), "the lead officer was not sent the enquiry"

        # The officer: signs in by the link, finds the case on My cases, sends a holding reply.
        priya = _sign_in(driver, site, base, PRIYA, "officer")
        assert driver.current_url == base + "/my-cases"
        _page(driver, "journey-my-cases")
        follow(driver, reference)
        assert "survey.pdf" in _page(driver, "journey-officer-case", at="Answer")
        driver.find_element(By.ID, "respond-holding").click()
        driver.find_element(By.ID, "respond-text").send_keys(HOLDING)
        press(driver, "Send the reply")
        assert "Holding reply sent" in _page(driver, "journey-officer-holding-sent")
        (holding,) = _mail(site, "holding", JANE)
        assert HOLDING in _text(holding)

        # The councillor sees the holding reply and asks for an update.
        _as(driver, base, jane, "/enquiries")
        listed = _page(driver, "journey-my-enquiries")
        assert reference in listed and "Priya Shah" in listed
        follow(driver, reference)
        shown = _page(driver, "journey-enquiry-holding", at="Replies to you")
        assert "Holding reply" in shown and HOLDING in shown
        assert "photo.jpg" in shown and "survey.pdf" in shown
        driver.find_element(By.ID, "update-text").send_keys(CHASE)
        press(driver, "Request an update")
        assert "Update requested" in _page(driver, "journey-update-requested")
        (chased,) = _mail(site, "chase_notice", PRIYA)
        assert CHASE in _text(chased)

        # The officer sees the request in the history and sends the response.
        _as(driver, base, priya, f"/my-cases/{reference}")
        assert "update requested" in _page(driver, "journey-officer-chased")
        driver.find_element(By.ID, "respond-text").send_keys(RESPONSE)
        press(driver, "Send the reply")
        assert "the case is completed" in _page(driver, "journey-officer-responded")
        (response,) = _mail(site, "response", JANE)
        assert RESPONSE in _text(response)

        # The councillor sees both replies and the enquiry completed.
        _as(driver, base, jane, f"/enquiries/{reference}")
        shown = _page(driver, "journey-enquiry-completed")
        assert "Completed" in shown
        assert HOLDING in shown and RESPONSE in shown
        assert "Request an update" not in shown

        # At 320 px the councillor's pages and the officer's fit without sideways scrolling.
        viewport(driver, 320, 800)
        for who, path, name in (
            (jane, "/enquiries", "journey-my-enquiries-320px"),
            (jane, f"/enquiries/{reference}", "journey-enquiry-320px"),
            (jane, "/enquiries/new", "journey-form-320px"),
            (jane, f"/enquiries/{reference}/sent", "journey-sent-320px"),
            (priya, "/my-cases", "journey-my-cases-320px"),
            (priya, f"/my-cases/{reference}", "journey-officer-case-320px"),
        ):
            _as(driver, base, who, path)
            assert overflow(driver) <= 0, f"{path} is wider than a 320 px screen"
            _page(driver, name)

    with Session(site.engine) as session:
        case = session.exec(select(Case).where(Case.reference == reference)).one()
        names = session.exec(select(Attachment.filename).where(Attachment.case_id == case.id))
        assert sorted(names) == ["photo.jpg", "survey.pdf"]
        assert (case.channel, case.status, case.chase_count) == ("web", CaseStatus.COMPLETED, 1)
