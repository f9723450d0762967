"""The case page: what `mailbridge case show` prints, every view in the audit, a message's
text never rendered as markup, and attachments only ever downloaded, only the case's own."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from mailbridge.cases import coordinator
from mailbridge.mail.parsing import parse
from mailbridge.store.db import make_engine
from mailbridge.store.models import AuditRecord
from tests.factories import fixture_bytes, ok_lines
from tests.helpers.council import (
    JANE,
    PRIYA,
    RAJ,
    council_cli,
    new_email,
    write_council_config,
)
from tests.web.case_helpers import SURVEY_PAGE, SURVEY_PDF, attachments_of, with_survey
from tests.web.conftest import Web, free_port, make_web, serving

pytestmark = pytest.mark.usefixtures("fixed_clock")

COORDINATOR = "member.support@example.gov.uk"
SHOWN = f"{COORDINATOR} (web, testclient)"


def _summary(page: str) -> dict[str, str]:
    """The page's Details as {label: value}, unescaped."""
    pairs = re.findall(
        r'<dt class="govuk-summary-list__key">(.*?)</dt>\s*'
        r'<dd class="govuk-summary-list__value">(.*?)</dd>',
        page,
        re.S,
    )
    text = {k.strip(): " ".join(re.sub(r"<[^>]+>", "", v).split()) for k, v in pairs}
    return {html.unescape(k): html.unescape(v) for k, v in text.items()}


def _case_show(web: Web, tmp_path: Path, reference: str) -> dict[str, str]:
    """`mailbridge case show`'s fields as {label: value}."""
    url = web.engine.url.render_as_string(hide_password=False)
    config = write_council_config(tmp_path, url)
    lines = ok_lines(council_cli(config, "case", "show", reference))
    fields = {}
    for line in lines[1:]:
        if not line.startswith("  ") or not line.strip():
            break
        label, value = line[2:17].strip(), line[18:]
        fields[label] = value
    return fields


def test_the_page_shows_what_case_show_shows(web: Web, tmp_path: Path) -> None:
    reference = web.pothole()
    client, _ = web.signed_in("coordinator")
    answer = client.get(f"/cases/{reference}")
    assert answer.status_code == 200
    shown = _case_show(web, tmp_path, reference)
    assert {"Status", "Member", "Reply due", "Lead officer"} <= shown.keys()
    assert _summary(answer.text) == shown
    assert "Pothole on Mill Lane, Little Bowden" in answer.text
    assert "Two cars have had damaged tyres this week" in answer.text  # the enquiry
    assert "acknowledgement" in answer.text  # the acknowledgement's delivery in the timeline

    # After an assignment, a note and an extension: the same again, and each on the page.
    web.council.assign(PRIYA)
    coordinator.add_note(web.council.services, reference, "Contractor booked", actor="desk")
    coordinator.extend(web.council.services, reference, 5, "awaiting the survey", actor="desk")
    answer = client.get(f"/cases/{reference}")
    shown = _case_show(web, tmp_path, reference)
    assert shown["Lead officer"] == "Priya Shah"
    assert shown["Extended to"].endswith("(awaiting the survey)")
    assert _summary(answer.text) == shown
    assert "Contractor booked" in answer.text
    assert "deadline extended by 5 working days" in answer.text

    # Raj's case merged into it: each page links to the other, and says what case show says.
    [other] = web.council.deliver(new_email(RAJ, "Mill Lane", "The pothole again.")).references
    coordinator.merge(web.council.services, other, reference, actor="desk")
    for one, two in ((reference, other), (other, reference)):
        answer = client.get(f"/cases/{one}")
        assert _summary(answer.text) == _case_show(web, tmp_path, one)
        assert f'<a class="govuk-link" href="/cases/{two}">{two}</a>' in answer.text
    assert "A closed case never changes." in answer.text
    assert 'name="version"' not in answer.text, "a closed case offers no action"


def test_every_view_of_a_case_is_in_the_audit(web: Web) -> None:
    reference = web.pothole()
    client, _ = web.signed_in("coordinator")
    client.get(f"/cases/{reference}")
    client.get(f"/cases/{reference.lower()}")
    with Session(web.engine) as session:
        views = session.exec(select(AuditRecord).where(AuditRecord.action == "case.show")).all()
    assert [(r.actor, r.channel, r.origin, r.case_reference) for r in views] == [
        (COORDINATOR, "web", "testclient", reference)
    ] * 2


def test_an_unknown_case_is_not_found(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    answer = client.get("/cases/MQ-2026-09999")
    assert answer.status_code == 404
    assert "Page not found" in answer.text


def test_a_message_is_shown_as_text_never_as_markup(web: Web) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)><b>bold</b>'
    report = web.council.deliver(
        new_email(JANE, "<i>Broken</i> streetlight", f"The light is out. {hostile}")
    )
    [reference] = report.references
    client, _ = web.signed_in("coordinator")
    page = client.get(f"/cases/{reference}").text
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold" not in page
    assert "<i>Broken" not in page
    assert html.escape(hostile, quote=False) in page.replace("&#34;", '"').replace("&#39;", "'")
    assert "&lt;i&gt;Broken&lt;/i&gt; streetlight" in page


def test_an_attachment_is_downloaded_with_its_stored_type_never_inline(web: Web) -> None:
    files = with_survey(web)
    reference = web.pothole()
    client, _ = web.signed_in("coordinator")
    pdf = client.get(f"/cases/{reference}/attachments/{files[SURVEY_PDF]}")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == (
        "attachment; filename=\"Mill Lane survey.pdf\"; filename*=UTF-8''Mill%20Lane%20survey.pdf"
    )
    assert pdf.headers["x-content-type-options"] == "nosniff"
    original = {a.filename: a.payload for a in parse(fixture_bytes(
        "attack_officer_reply_html_password_form.eml")).attachments}  # fmt: skip
    assert pdf.content == original[SURVEY_PDF]
    page = client.get(f"/cases/{reference}/attachments/{files[SURVEY_PAGE]}")
    assert page.status_code == 200
    assert page.headers["content-type"] == "application/octet-stream"  # stored text/html
    assert page.headers["content-disposition"].startswith("attachment;")
    assert page.content == original[SURVEY_PAGE]
    events = web.council.events(reference, "attachment_downloaded")
    assert [(e.detail, e.actor) for e in events] == [
        ("Mill Lane survey.pdf downloaded (180 B)", SHOWN),
        ("Survey report - secure view.htm downloaded (526 B)", SHOWN),
    ]
    with Session(web.engine) as session:
        taken = session.exec(
            select(AuditRecord).where(AuditRecord.action == "attachments.download")
        ).all()
    assert [(r.actor, r.channel, r.case_reference) for r in taken] == [
        (COORDINATOR, "web", reference)
    ] * 2


def test_only_the_cases_own_kept_attachments_can_be_downloaded(web: Web) -> None:
    files = with_survey(web)
    reference = web.pothole()
    [other] = web.council.deliver(
        new_email(RAJ, "Flooding on the A6", "Water over the road.")
    ).references
    coordinator.reply(
        web.council.services,
        other,
        "A plan.",
        [coordinator.Upload("plan.pdf", b"%PDF-1.4 plan", "plan.pdf")],
        actor="desk",
    )
    theirs = attachments_of(web, other)["plan.pdf"]
    client, _ = web.signed_in("coordinator")
    assert client.get(f"/cases/{other}/attachments/{theirs}").status_code == 200
    for path in (
        f"/cases/{reference}/attachments/{theirs}",  # another case's file
        f"/cases/{reference}/attachments/{max(files.values()) + 1000}",  # no such file
        f"/cases/MQ-2026-09999/attachments/{files[SURVEY_PDF]}",  # no such case
        f"/cases/{reference}/attachments/x",
    ):
        answer = client.get(path)
        assert answer.status_code in (404, 400), path
        assert "content-disposition" not in answer.headers, path
    assert client.get(f"/cases/{reference}/attachments/{theirs}").status_code == 404


def test_a_refused_attachment_is_listed_but_not_downloadable(
    tmp_path: Path, migrated_db_url: str
) -> None:
    engine = make_engine(migrated_db_url)
    small = make_web(tmp_path, engine, storage={"max_attachment_bytes": 200})
    enquiry = fixture_bytes("member_enquiry_with_photo_and_pdf.eml")
    [reference] = small.council.deliver(
        enquiry.replace(b"Cllr.Jones@members.example-county.gov.uk", JANE.encode())
    ).references
    files = attachments_of(small, reference)
    assert set(files) == {"IMG_4521.jpg", "Letter from resident - 21 Station Road.pdf"}
    client, _ = small.signed_in("coordinator")
    page = client.get(f"/cases/{reference}").text
    photo, letter = files["IMG_4521.jpg"], files["Letter from resident - 21 Station Road.pdf"]
    assert f'href="/cases/{reference}/attachments/{photo}"' in page
    assert f'href="/cases/{reference}/attachments/{letter}"' not in page
    assert "over the 200-byte limit; not downloadable" in page
    assert client.get(f"/cases/{reference}/attachments/{letter}").status_code == 404
    assert client.get(f"/cases/{reference}/attachments/{photo}").status_code == 200
    client.close()
    engine.dispose()


@pytest.mark.slow
# SQLite only, as every browser test (tests/browser.py, ON_SQLITE): the route tests above
# run on both databases.
@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_the_page_passes_axe_core_and_fits_a_320_px_screen(web: Web) -> None:
    """In a real Chromium, every action's section open: no WCAG 2.x A/AA violation, and
    nothing wider than the screen (wide tables scroll in their own region)."""
    from mailbridge.web.routing import SESSION_COOKIE
    from tests.browser import axe_violations, chromium, describe, screenshot

    with_survey(web)
    reference = web.pothole()
    client, _ = web.signed_in("coordinator")
    with serving(web.app, free_port()) as base:
        for width in (1280, 320):
            with chromium(width, 900) as driver:
                driver.get(base + "/sign-in")
                token = client.cookies[SESSION_COOKIE]
                driver.add_cookie({"name": SESSION_COOKIE, "value": token, "path": "/"})
                driver.get(f"{base}/cases/{reference}")
                assert driver.find_element("tag name", "h1").text.startswith("Pothole")
                for section in driver.find_elements("css selector", "details"):
                    driver.execute_script("arguments[0].open = true", section)
                screenshot(driver, f"case-page-{width}px")
                violations = axe_violations(driver)
                assert not violations, f"{width} px: {describe(violations)}"
                overflow = driver.execute_script(
                    "return document.documentElement.scrollWidth"
                    " - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"the case page is {overflow} px wider than {width} px"
