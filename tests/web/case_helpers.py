"""Cases the case-page tests act on: Jane's pothole enquiry, assigned to Priya, with Priya's
reply carrying a web page with a password form and a PDF (a real email from
tests/fixtures/mail), so the case has attachments to download."""

from __future__ import annotations

from sqlmodel import col, select

from mailbridge.store.models import Attachment
from tests.factories import fixture_bytes
from tests.helpers.council import PRIYA
from tests.web.conftest import Web

SURVEY_PAGE = "Survey report - secure view.htm"
SURVEY_PDF = "Mill Lane survey.pdf"


def attachments_of(web: Web, reference: str) -> dict[str, int]:
    """The case's attachment ids by file name."""
    with web.council.db() as session:
        case_id = web.council.case(reference).id
        rows = session.exec(
            select(Attachment).where(Attachment.case_id == case_id).order_by(col(Attachment.id))
        ).all()
        return {a.filename: a.id or 0 for a in rows}


def with_survey(web: Web) -> dict[str, int]:
    """The pothole case assigned to Priya, and her reply with its two files (once)."""
    reference = web.pothole()
    found = attachments_of(web, reference)
    if SURVEY_PDF not in found:
        web.council.assign(PRIYA)
        web.council.new_mail()
        web.council.deliver(fixture_bytes("attack_officer_reply_html_password_form.eml"))
        web.council.new_mail()
        found = attachments_of(web, reference)
    return found
