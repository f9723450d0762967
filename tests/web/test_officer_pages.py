"""The officers' pages: "My cases", a case as its officers see it, and the answers they
would otherwise email. Each answer in the browser is compared with the same answer emailed
through the real pipeline: the same case change, the same events, the same mail out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailbridge.console.filters import OPEN
from mailbridge.store.db import make_engine
from mailbridge.store.models import CaseStatus
from tests.helpers.council import (
    ANN,
    JANE,
    PRIYA,
    REF,
    SAM,
    SUPPORT,
    attachment_names,
    new_email,
    only,
    recipients,
    reply,
    text_of,
)
from tests.web.cases import seed_cases
from tests.web.conftest import Web, make_web

OTHER = "MQ-2026-00002"
POTHOLE = "Pothole on Mill Lane, Little Bowden"
STREETLIGHT = "Streetlight out on Elm Road"


def _version(page: str) -> str:
    found = re.search(r'name="version" value="([^"]+)"', page)
    assert found, "the page's forms carry the case's version"
    return found.group(1)


def _as(web: Web, address: str) -> tuple[TestClient, str]:
    """A client signed in as this officer of the council's directory."""
    key = address.split("@")[0]
    web.people.setdefault(key, web.council.person_id(address))
    return web.signed_in(key)


def _cases(web: Web) -> dict[str, EmailMessage]:
    """Jane's pothole (REF: Priya leads, Sam is an additional officer) and her streetlight
    enquiry (OTHER: Priya leads): the assignment notices each officer got, by address and
    case."""
    notices = {f"{REF} {recipients(m)[0]}": m for m in web.council.assigned_pothole(SAM).values()}
    web.council.deliver(new_email(JANE, STREETLIGHT, "The light has been out for a week."))
    web.council.new_mail()
    web.council.assign(PRIYA, reference=OTHER)
    notices[f"{OTHER} {PRIYA}"] = only(web.council.new_mail(), PRIYA)
    return notices


def _post(
    web: Web, client: TestClient, csrf: str, reference: str, action: str, **fields: Any
) -> Any:
    version = _version(client.get(f"/my-cases/{reference}").text)
    files = fields.pop("files", None)
    return client.post(
        f"/my-cases/{reference}/{action}",
        data={"csrf": csrf, "version": version, **fields},
        files=files,
    )


def _sent(web: Web) -> list[EmailMessage]:
    """What the courier sends of what the answer queued."""
    web.council.run()
    return web.council.new_mail()


def _kinds_since(web: Web, reference: str, before: int) -> list[str]:
    return web.council.kinds(reference)[before:]


def _same(a: EmailMessage, b: EmailMessage, swaps: dict[str, str]) -> None:
    """Two emails the same but for the swaps (b's words for a's)."""

    def swapped(text: str) -> str:
        for old, new in swaps.items():
            text = text.replace(old, new)
        return text

    assert swapped(str(a["Subject"])) == str(b["Subject"])
    assert swapped(text_of(a)) == text_of(b)
    assert sorted(recipients(a)) == sorted(recipients(b))
    assert attachment_names(a) == attachment_names(b)


def test_a_response_in_the_browser_completes_the_case_and_mails_as_an_emailed_one(
    web: Web,
) -> None:
    notices = _cases(web)
    text = "The pothole was filled on Friday by the highways crew."
    before = len(web.council.kinds(REF))
    web.council.deliver(reply(notices[f"{REF} {PRIYA}"], PRIYA, text, name="Priya Shah"))
    emailed = web.council.new_mail()
    by_email = _kinds_since(web, REF, before)

    client, csrf = _as(web, PRIYA)
    before = len(web.council.kinds(OTHER))
    answer = _post(web, client, csrf, OTHER, "respond", answer="response", text=text)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/my-cases/{OTHER}?done=response"
    browsed = _sent(web)

    assert web.council.case(OTHER).status == CaseStatus.COMPLETED
    assert web.council.case(REF).status == CaseStatus.COMPLETED
    assert _kinds_since(web, OTHER, before) == by_email
    swaps = {REF: OTHER, POTHOLE: STREETLIGHT}
    assert len(emailed) == len(browsed)  # the response and the satisfaction question
    _same(only(emailed, JANE), only(browsed, JANE), swaps)
    assert "Response sent to the member" in client.get(answer.headers["location"]).text


def test_a_holding_reply_keeps_the_case_open_and_tells_the_member_as_by_email(web: Web) -> None:
    notices = _cases(web)
    text = "We are waiting for the contractor's survey."
    before = len(web.council.kinds(REF))
    web.council.deliver(reply(notices[f"{REF} {PRIYA}"], PRIYA, f"#holding\n{text}"))
    emailed = only(web.council.new_mail(), JANE)
    by_email = _kinds_since(web, REF, before)

    client, csrf = _as(web, PRIYA)
    before = len(web.council.kinds(REF))
    answer = _post(web, client, csrf, REF, "respond", answer="holding", text=text)
    assert answer.status_code == 303
    [browsed] = _sent(web)

    assert web.council.case(REF).status in OPEN
    assert _kinds_since(web, REF, before) == by_email
    _same(emailed, browsed, {})  # the same case, the same deadline: the very same email


def test_an_extension_moves_the_deadline_with_its_reason_and_tells_the_member_as_by_email(
    web: Web,
) -> None:
    notices = _cases(web)
    reason = "awaiting a contractor's report"
    text = "The contractor reports next week."
    due_ref = web.council.case(REF).response_due
    before = len(web.council.kinds(REF))
    web.council.deliver(
        reply(notices[f"{REF} {PRIYA}"], PRIYA, f"#holding\n#extend 5 {reason}\n{text}")
    )
    emailed = only(web.council.new_mail(), JANE)
    by_email = _kinds_since(web, REF, before)

    client, csrf = _as(web, PRIYA)
    case = web.council.case(OTHER)
    before = len(web.council.kinds(OTHER))
    answer = _post(web, client, csrf, OTHER, "extend", days="5", reason=reason, text=text)
    assert answer.status_code == 303
    [browsed] = _sent(web)

    moved = web.council.case(OTHER)
    calendar = web.council.services.calendar
    assert moved.extended_due == calendar.add_working_days(case.response_due, 5)
    assert moved.extension_reason == reason
    assert moved.status in OPEN
    assert _kinds_since(web, OTHER, before) == by_email
    [event] = web.council.events(OTHER, "deadline_extended")
    assert reason in event.detail
    emailed_due = web.council.case(REF).extended_due
    assert emailed_due == calendar.add_working_days(due_ref, 5)

    def said(day: Any) -> str:
        return f"{day:%A} {day.day} {day:%B %Y}"  # as the email's longdate says it

    swaps = {
        REF: OTHER,
        POTHOLE: STREETLIGHT,
        said(emailed_due): said(moved.extended_due),
    }
    _same(emailed, browsed, swaps)
    assert said(moved.extended_due) in text_of(browsed)


def test_an_internal_note_reaches_no_one(web: Web) -> None:
    _cases(web)
    client, csrf = _as(web, PRIYA)
    answer = _post(web, client, csrf, REF, "note", text="Rang the contractor: no answer yet.")
    assert answer.status_code == 303
    assert _sent(web) == []
    [event] = web.council.events(REF, "internal_note")
    assert event.actor.startswith(f"{PRIYA} (web")  # who, through which door
    # An additional officer's note is kept the same way, mailed to nobody either.
    client, csrf = _as(web, SAM)
    assert _post(web, client, csrf, REF, "note", text="Site visit booked.").status_code == 303
    assert _sent(web) == []
    assert len(web.council.events(REF, "internal_note")) == 2
    assert "Site visit booked." in client.get(f"/my-cases/{REF}").text


def test_a_contribution_reaches_the_lead_and_never_the_member_as_by_email(web: Web) -> None:
    notices = _cases(web)
    text = "Drainage say the gully was cleared in October."
    web.council.deliver(reply(notices[f"{REF} {SAM}"], SAM, text, name="Sam Whitaker"))
    emailed = web.council.new_mail()

    client, csrf = _as(web, SAM)
    before = len(web.council.kinds(REF))
    answer = _post(web, client, csrf, REF, "contribute", text=text)
    assert answer.status_code == 303
    browsed = _sent(web)

    assert web.council.kinds(REF)[before:] == ["contribution"]
    assert [sorted(recipients(m)) for m in browsed] == [sorted(recipients(m)) for m in emailed]
    assert PRIYA in recipients(browsed[0]) and SUPPORT in recipients(browsed[0])
    assert JANE not in recipients(browsed[0])
    assert text_of(browsed[0]) == text_of(emailed[0])
    assert web.council.case(REF).status in OPEN


def test_an_officer_not_on_the_case_gets_404_for_its_page_files_and_every_answer(
    web: Web,
) -> None:
    _cases(web)
    client, csrf = _as(web, ANN)
    before = web.council.kinds(REF)
    assert client.get(f"/my-cases/{REF}").status_code == 404
    assert client.get(f"/my-cases/{REF}/attachments/1").status_code == 404
    for action in ("respond", "extend", "note", "contribute"):
        answer = client.post(
            f"/my-cases/{REF}/{action}",
            data={"csrf": csrf, "version": "x", "answer": "response", "text": "Done.", "days": "5"},
        )
        assert answer.status_code == 404, action
    assert web.council.kinds(REF) == before
    assert REF not in client.get("/my-cases").text
    assert client.get("/my-cases/MQ-2026-99999").status_code == 404


def test_an_additional_officer_cannot_answer_the_member_or_extend(web: Web) -> None:
    _cases(web)
    client, csrf = _as(web, SAM)
    before = web.council.kinds(REF)
    page = client.get(f"/my-cases/{REF}").text
    assert "/respond" not in page and "/extend" not in page and "/contribute" in page
    refused = _post(web, client, csrf, REF, "respond", answer="response", text="All done.")
    assert refused.status_code == 403
    assert "Only the lead officer can answer the member" in refused.text
    assert "govuk-error-summary" in refused.text
    refused = _post(web, client, csrf, REF, "extend", days="5", reason="survey", text="Later.")
    assert refused.status_code == 403
    assert web.council.kinds(REF) == before
    assert _sent(web) == []
    assert web.council.case(REF).status in OPEN
    # And the lead sends no contribution to themselves.
    lead, lead_csrf = _as(web, PRIYA)
    assert _post(web, lead, lead_csrf, REF, "contribute", text="Hm.").status_code == 403


def test_an_answer_to_a_case_changed_since_the_page_was_loaded_is_refused(web: Web) -> None:
    notices = _cases(web)
    client, csrf = _as(web, PRIYA)
    version = _version(client.get(f"/my-cases/{REF}").text)
    web.council.deliver(reply(notices[f"{REF} {PRIYA}"], PRIYA, "#internal\nChecked the site."))
    before = web.council.kinds(REF)
    answer = client.post(
        f"/my-cases/{REF}/respond",
        data={"csrf": csrf, "version": version, "answer": "response", "text": "Fixed."},
    )
    assert answer.status_code == 409
    assert "changed since you opened it" in answer.text
    assert "Fixed." in answer.text  # what they typed is kept
    assert web.council.kinds(REF) == before
    assert web.council.case(REF).status in OPEN


def test_a_reply_with_files_sends_them_on_as_email_would_and_holds_back_a_script(
    web: Web,
) -> None:
    _cases(web)
    client, csrf = _as(web, PRIYA)
    pdf = b"%PDF-1.4\n% survey\n" + b"0" * 2000
    files = [
        ("files", ("Mill Lane survey.pdf", pdf, "application/pdf")),
        ("files", ("fix.js", b"alert('x')", "text/plain")),
    ]
    answer = _post(
        web, client, csrf, REF, "respond", answer="holding", text="The survey.", files=files
    )
    assert answer.status_code == 303
    [mail] = _sent(web)
    assert attachment_names(mail) == ["Mill Lane survey.pdf"]
    assert "fix.js: script (.js)" in text_of(mail)
    page = client.get(f"/my-cases/{REF}").text
    link = re.search(r'href="(/my-cases/[^"]+/attachments/\d+)"[^>]*>Download Mill Lane', page)
    assert link, "the kept PDF can be downloaded"
    assert client.get(link.group(1)).content == pdf
    assert "Download fix.js" not in page  # held back from officers


@pytest.fixture
def capped(tmp_path: Path, migrated_db_url: str) -> Iterator[Web]:
    """The console with a 4 KB cap on a file (the default is past the request body limit)."""
    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, storage={"max_attachment_bytes": 4096})
    yield site
    for client in site.clients:
        client.close()
    engine.dispose()


def test_a_file_over_the_size_cap_is_refused_with_nothing_done(capped: Web) -> None:
    web = capped
    _cases(web)
    client, csrf = _as(web, PRIYA)
    cap = web.config.storage.max_attachment_bytes
    before = web.council.kinds(REF)
    big = [("files", ("big.pdf", b"0" * (cap + 1), "application/pdf"))]
    answer = _post(web, client, csrf, REF, "respond", answer="response", text="See.", files=big)
    assert answer.status_code == 400
    assert "over the" in answer.text and "send a smaller file" in answer.text
    assert web.council.kinds(REF) == before


def test_an_empty_answer_is_shown_as_an_error_to_put_right(web: Web) -> None:
    _cases(web)
    client, csrf = _as(web, PRIYA)
    answer = _post(web, client, csrf, REF, "respond", answer="response", text="  ")
    assert answer.status_code == 400
    assert 'href="#respond-text"' in answer.text and "Enter the message" in answer.text
    answer = _post(web, client, csrf, REF, "extend", days="five", reason="r", text="t")
    assert answer.status_code == 400 and "whole number" in answer.text


def test_my_cases_lists_what_each_officer_is_on_overdue_first(web: Web) -> None:
    references = seed_cases(web.engine, web.council.person_id, n=40)
    client, _csrf = _as(web, SAM)  # leads every third case from the second, when led
    page = client.get("/my-cases?page=1").text
    listed = re.findall(r'href="/my-cases/(MQ-2026-\d+)"', page)
    sams = [r for i, r in enumerate(references) if i % 4 != 3 and i % 3 == 1]
    assert sorted(listed) == sorted(sams)
    rows = page.split('<tr class="govuk-table__row">')[2:]
    flags = ["Overdue" in row for row in rows]
    assert any(flags) and flags == sorted(flags, reverse=True)  # overdue ones first

    only_overdue = client.get("/my-cases?overdue=yes").text
    overdue_rows = only_overdue.split('<tr class="govuk-table__row">')[2:]
    assert overdue_rows and all("Overdue" in row for row in overdue_rows)
    completed = client.get("/my-cases?status=completed").text
    shown = re.findall(r'<strong class="govuk-tag [^"]*">([^<]+)</strong>', completed)
    assert shown and set(shown) == {"Completed"}

    # Ann is an additional officer on every sixth case, lead on others.
    ann, _ = _as(web, ANN)
    page = ann.get("/my-cases").text
    assert "Additional officer" in page and "Lead officer" in page
    bad = client.get("/my-cases?status=lost")
    assert bad.status_code == 400 and "govuk-error-summary" in bad.text


def test_my_cases_is_paged(web: Web) -> None:
    seed_cases(web.engine, web.council.person_id, n=200)
    client, _ = _as(web, PRIYA)
    size = web.config.web.page_size
    first = re.findall(r'href="/my-cases/(MQ-2026-\d+)"', client.get("/my-cases").text)
    second = re.findall(r'href="/my-cases/(MQ-2026-\d+)"', client.get("/my-cases?page=2").text)
    assert len(first) == size and second and not set(first) & set(second)
    assert 'rel="next"' in client.get("/my-cases").text


def test_home_sends_an_officer_to_my_cases_and_a_coordinating_officer_to_the_dashboard(
    web: Web,
) -> None:
    client, _ = web.signed_in("officer")
    answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/my-cases"
    both, _ = web.signed_in("officer_coordinator")
    assert both.get("/").status_code == 200
    assert 'href="/my-cases"' in both.get("/").text  # and My cases is in their navigation


def test_who_gets_an_officers_case_page(web: Web) -> None:
    """The role matrix for one case: its lead and additional officer see it; an officer not
    on it gets 404; members, delegates and coordinators who are no officers are refused the
    officers' pages (403); nobody is sent to sign in."""
    _cases(web)
    lead, _ = _as(web, PRIYA)
    additional, _ = _as(web, SAM)
    unrelated, _ = _as(web, ANN)
    member, _ = web.signed_in("member")
    delegate, _ = web.signed_in("delegate")
    coordinator, _ = web.signed_in("coordinator")
    nobody, _ = web.anonymous()
    path = f"/my-cases/{REF}"
    got = {
        who: client.get(path).status_code
        for who, client in (
            ("lead", lead),
            ("additional", additional),
            ("unrelated", unrelated),
            ("member", member),
            ("delegate", delegate),
            ("coordinator", coordinator),
            ("nobody", nobody),
        )
    }
    assert got == {
        "lead": 200,
        "additional": 200,
        "unrelated": 404,
        "member": 403,
        "delegate": 403,
        "coordinator": 403,
        "nobody": 303,
    }
    assert "You are the lead officer" in lead.get(path).text
    assert "You are an additional officer" in additional.get(path).text


def test_an_officer_who_also_coordinates_answers_only_as_their_part_on_the_case(web: Web) -> None:
    """As by email, where such an officer's reply on a case they are additional on is a
    contribution: being a coordinator too does not make them the lead here."""
    web.council.open_pothole_case()
    web.council.assign(PRIYA, "sam.lee@example.gov.uk")
    web.council.new_mail()
    client, csrf = web.signed_in("officer_coordinator")
    refused = _post(web, client, csrf, REF, "respond", answer="response", text="Done.")
    assert refused.status_code == 403
    assert web.council.case(REF).status in OPEN
    assert _post(web, client, csrf, REF, "contribute", text="From me.").status_code == 303
    [mail] = _sent(web)
    assert PRIYA in recipients(mail) and JANE not in recipients(mail)
