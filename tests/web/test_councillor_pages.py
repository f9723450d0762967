"""The councillors' pages: "My enquiries" and an enquiry's page, for a member and their
delegate, on both databases, with cases made by real passes of the daemon."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlmodel import Session, col, select

from mailbridge.cases import coordinator
from mailbridge.console.member_status import deadline_words, member_dashboard
from mailbridge.deadlines import digests
from mailbridge.store.db import transaction
from mailbridge.store.models import Case, Event, Message
from tests.helpers.council import JANE, RAJ, REF, TOM, new_email, reply
from tests.web.case_helpers import SURVEY_PAGE, SURVEY_PDF, with_survey
from tests.web.conftest import Web

REFERENCE = re.compile(r"MQ-\d{4}-\d{5}")


def _raj_case(web: Web) -> str:
    """Raj's enquiry, opened by a real pass: another member's case."""
    web.council.deliver(new_email(RAJ, "Streetlight out on Hill Road", "Dark since Monday."))
    with web.council.db() as session:
        raj = web.council.person_id(RAJ)
        return session.exec(select(Case.reference).where(Case.member_id == raj)).one()


def _listed(html: str) -> list[str]:
    """The references in the page's table, in order."""
    table = html.split("<tbody", 1)[1].split("</tbody>", 1)[0] if "<tbody" in html else ""
    return list(dict.fromkeys(REFERENCE.findall(table)))


def _case(web: Web, reference: str = REF) -> Case:
    with Session(web.engine) as session:
        return session.exec(select(Case).where(Case.reference == reference)).one()


# --- the deadline in words (pure) -----------------------------------------------------


@pytest.mark.parametrize(
    ("due", "extended", "reason", "words"),
    [
        (date(2026, 12, 11), None, None, "due Fri 11 Dec"),
        (
            date(2026, 12, 11),
            date(2026, 12, 21),
            "awaiting a contractor's report",
            "due Mon 21 Dec, extended from Fri 11 Dec: awaiting a contractor's report",
        ),
        (date(2026, 12, 11), date(2026, 12, 21), "  ", "due Mon 21 Dec, extended from Fri 11 Dec"),
        (date(2026, 12, 11), date(2026, 12, 11), "no change", "due Fri 11 Dec"),
    ],
)
def test_the_deadline_says_its_extension_in_words(
    due: date, extended: date | None, reason: str | None, words: str
) -> None:
    assert deadline_words(due, extended, reason) == words


# --- who sees what ----------------------------------------------------------------------


def test_a_member_and_their_delegate_see_the_members_enquiries_and_no_one_elses(web: Web) -> None:
    web.pothole()
    theirs = _raj_case(web)
    for who in ("member", "delegate"):
        client, csrf = web.signed_in(who)
        page = client.get("/enquiries")
        assert page.status_code == 200
        assert _listed(page.text) == [REF]
        assert client.get(f"/enquiries/{REF}").status_code == 200
        # Another member's case by its reference in the URL: as if it did not exist.
        assert client.get(f"/enquiries/{theirs}").status_code == 404
        assert client.get("/enquiries/MQ-2026-99999").status_code == 404
        assert client.get(f"/enquiries/{theirs.lower()}").status_code == 404
        refused = client.post(f"/enquiries/{theirs}/update", data={"csrf": csrf})
        assert refused.status_code == 404
    raj = web.signed_in("member")[0]
    with transaction(web.engine) as session:  # Raj signed in instead: Jane's case is not his
        from mailbridge.signin import sessions
        from mailbridge.store.models import Person

        person = session.get(Person, web.council.person_id(RAJ))
        assert person is not None
        token = sessions.start(
            session, person, web.config.web, method="link", client="t", keep=False, now=web.clock()
        ).token
    raj.cookies.set("mailbridge_session", token)
    assert _listed(raj.get("/enquiries").text) == [theirs]
    assert raj.get(f"/enquiries/{REF}").status_code == 404
    assert _case(web, theirs).chase_count == 0
    # Put on Jane's case by a coordinator, Raj sees it too.
    coordinator.link(web.council.services, REF, RAJ, actor="coordinator (test)")
    assert set(_listed(raj.get("/enquiries").text)) == {theirs, REF}
    assert raj.get(f"/enquiries/{REF}").status_code == 200


def test_officers_and_coordinators_are_refused_the_councillors_pages(web: Web) -> None:
    reference = web.pothole()
    for who in ("officer", "coordinator"):
        client, _ = web.signed_in(who)
        assert client.get("/enquiries").status_code == 403
        assert client.get(f"/enquiries/{reference}").status_code == 403


def test_home_sends_a_councillor_to_their_enquiries(web: Web) -> None:
    for who in ("member", "delegate"):
        client, _ = web.signed_in(who)
        answer = client.get("/")
        assert (answer.status_code, answer.headers["location"]) == (303, "/enquiries")
    officer, _ = web.signed_in("officer")
    assert officer.get("/").headers["location"] == "/my-cases"
    coordinator, _ = web.signed_in("coordinator")
    assert "Member queries dashboard" in coordinator.get("/").text


# --- the list ---------------------------------------------------------------------------


def test_the_list_filters_by_status_and_text_in_the_url_and_pages(web: Web) -> None:
    from tests.web.cases import seed_cases

    seed_cases(web.engine, web.council.person_id, n=40)  # Jane has every fourth: 10
    client, _ = web.signed_in("member")
    every = _listed(client.get("/enquiries").text)
    assert len(every) == 10
    with Session(web.engine) as session:
        rows = {
            c.reference: c
            for c in session.exec(select(Case).where(Case.member_id == web.council.person_id(JANE)))
        }
    assert set(every) == set(rows)
    new = _listed(client.get("/enquiries?status=new").text)
    assert new and set(new) == {r for r, c in rows.items() if c.status == "new"}
    found = _listed(client.get("/enquiries?q=gully+is+BLOCKED").text)
    assert found and set(found) == {r for r, c in rows.items() if "gully" in c.body_text}
    assert client.get("/enquiries?status=lost").status_code == 400
    assert "There is a problem" in client.get("/enquiries?page=x").text
    with Session(web.engine) as session:  # one page at a time, read in SQL
        jane = web.council.person_id(JANE)
        today = web.council.services.calendar.local_date(web.clock())
        pages = [
            member_dashboard(session, web.council.services, jane, today, offset=o, limit=4)
            for o in (0, 4, 8)
        ]
    assert [len(p.entries) for p in pages] == [4, 4, 2]
    assert {p.total for p in pages} == {10}
    assert [e["case"].reference for p in pages for e in p.entries] == every


def test_the_page_the_status_email_and_the_digest_list_the_same_cases(web: Web) -> None:
    from tests.web.cases import seed_cases

    seed_cases(web.engine, web.council.person_id, n=40)
    client, _ = web.signed_in("delegate")
    page = _listed(client.get("/enquiries").text)
    web.council.deliver(new_email(JANE, "status", "status"))
    [status] = web.council.new_mail()
    text = status.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert list(dict.fromkeys(REFERENCE.findall(text))) == page
    today = web.council.services.calendar.local_date(web.clock())
    with Session(web.engine) as session:
        mails = digests.member_digests(session, web.council.services, today)
        jane = next(m for m in mails if m.to == (JANE,))
        open_refs = [e["case"].reference for e in jane.context["entries"]]
        statuses = {
            c.reference: c.status
            for c in session.exec(select(Case).where(col(Case.reference).in_(page)))
        }
    assert open_refs == [r for r in page if statuses[r] in ("new", "in_progress")]


# --- the enquiry's page -----------------------------------------------------------------


def test_the_enquiry_page_shows_responses_and_files_but_no_internal_notes(web: Web) -> None:
    files = with_survey(web)  # Priya's holding reply (#extend), a PDF and a page with a form
    with transaction(web.engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        session.add(
            Message(
                direction="in",
                case_id=case.id,
                sender="priya.shah@example.gov.uk",
                received_at=case.received_at,
                body_text="Internal: the contractor is unreliable",
                reply_text="Internal: the contractor is unreliable",
                role="internal",
            )
        )
    client, _ = web.signed_in("member")
    page = client.get(f"/enquiries/{REF}").text
    assert "Holding reply," in page and "Due Fri 5 Mar, extended from Tue 8 Dec" in page
    assert "contractor is unreliable" not in page
    assert f"/attachments/{files[SURVEY_PDF]}" in page
    assert f"/attachments/{files[SURVEY_PAGE]}" not in page  # held back: never sent on
    got = client.get(f"/enquiries/{REF}/attachments/{files[SURVEY_PDF]}")
    assert got.status_code == 200 and got.headers["content-disposition"].startswith("attachment")
    assert client.get(f"/enquiries/{REF}/attachments/{files[SURVEY_PAGE]}").status_code == 404
    downloaded = [e for e in web.council.events(REF) if e.kind == "attachment_downloaded"]
    assert downloaded and JANE in downloaded[-1].actor


PRIYA_ADDRESS = "priya.shah@example.gov.uk"


# --- request an update ------------------------------------------------------------------


def test_request_an_update_is_exactly_a_chaser_email(web: Web) -> None:
    ack = web.council.open_pothole_case()
    web.council.assign(PRIYA_ADDRESS)
    web.council.new_mail()
    web.council.deliver(reply(ack, JANE, "Any news on this please?"))
    by_email = web.council.new_mail()
    after_email = _case(web)
    client, csrf = web.signed_in("delegate")
    answer = client.post(f"/enquiries/{REF}/update", data={"csrf": csrf, "text": "Any news?"})
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        f"/enquiries/{REF}?done=requested",
    )
    web.council.run()
    by_web = web.council.new_mail()
    after_web = _case(web)
    assert (after_email.chase_count, after_web.chase_count) == (1, 2)
    assert [sorted(m["To"].split(", ")) for m in by_email] == [
        sorted(m["To"].split(", ")) for m in by_web
    ]
    assert [m["Subject"].replace("(1)", "(2)") for m in by_email] == [m["Subject"] for m in by_web]
    events = [e for e in web.council.events(REF) if e.kind == "update_requested"]
    assert [e.detail for e in events] == [
        "update requested (1 so far)",
        "update requested (2 so far)",
    ]
    assert events[0].actor == JANE and TOM in events[1].actor
    with Session(web.engine) as session:
        chasers = session.exec(
            select(Message.role).where(Message.case_id == after_web.id, Message.role == "chaser")
        ).all()
    assert len(chasers) == 2
    assert "Update requested" in client.get(f"/enquiries/{REF}?done=requested").text


def test_no_update_request_on_another_members_case_or_a_completed_one(web: Web) -> None:
    web.pothole()
    theirs = _raj_case(web)
    client, csrf = web.signed_in("member")
    assert client.post(f"/enquiries/{theirs}/update", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/enquiries/{theirs}/reopen", data={"csrf": csrf}).status_code == 404
    assert _case(web, theirs).chase_count == 0
    _completed(web, 0)
    refused = client.post(f"/enquiries/{REF}/update", data={"csrf": csrf})
    assert refused.status_code == 400 and "There is a problem" in refused.text
    assert _case(web).chase_count == 0


# --- reopen -----------------------------------------------------------------------------


def _completed(web: Web, working_days_ago: int) -> None:
    with transaction(web.engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        calendar = web.council.services.calendar
        today = calendar.local_date(web.clock())
        day = today
        for _ in range(working_days_ago):
            day -= timedelta(days=1)
            while not calendar.is_working_day(day):
                day -= timedelta(days=1)
        case.status = "completed"
        case.completed_at = web.clock() - (today - day)
        session.add(case)


def test_reopen_inside_the_window_as_a_reply_would_and_not_after_it(web: Web) -> None:
    with_survey(web)
    web.council.new_mail()
    client, csrf = web.signed_in("member")
    window = web.config.cases.reopen_working_days
    _completed(web, window + 1)
    late = client.post(f"/enquiries/{REF}/reopen", data={"csrf": csrf, "text": "Still broken"})
    assert late.status_code == 400 and "raise a new enquiry" in late.text
    assert _case(web).status == "completed"
    assert "Reopen the enquiry" not in client.get(f"/enquiries/{REF}").text
    _completed(web, window)
    assert "Reopen the enquiry" in client.get(f"/enquiries/{REF}").text
    done = client.post(f"/enquiries/{REF}/reopen", data={"csrf": csrf, "text": "Still broken"})
    assert done.status_code == 303
    case = _case(web)
    assert (case.status, case.reopened_count) == ("in_progress", 1)
    [event] = [e for e in web.council.events(REF) if e.kind == "reopened"]
    assert JANE in event.actor and "on-line" in event.detail
    web.council.run()
    told = web.council.new_mail()
    assert told and all("Still broken" in m.get_body(("plain",)).get_content() for m in told)  # type: ignore[union-attr]


def test_events_name_the_delegate_who_acted(web: Web) -> None:
    web.pothole()
    client, csrf = web.signed_in("delegate")
    client.post(f"/enquiries/{REF}/update", data={"csrf": csrf})
    with Session(web.engine) as session:
        [event] = session.exec(select(Event).where(Event.kind == "update_requested")).all()
    assert event.actor.startswith(TOM) and event.actor_id == web.people["delegate"]


def test_request_an_update_and_a_chaser_email_share_one_limit(web: Web) -> None:
    """Three update requests an hour from one address on one case are passed on, by
    either door; beyond that each is counted and recorded, and nobody mailed again."""
    ack = web.council.open_pothole_case()
    web._pothole.append(REF)
    client, csrf = web.signed_in("member")  # Jane: the same address as her email

    def by_email(n: int) -> None:
        web.council.deliver(reply(ack, JANE, f"Chasing again ({n})"))

    def by_web(n: int) -> str:
        answer = client.post(f"/enquiries/{REF}/update", data={"csrf": csrf, "text": f"({n})"})
        assert answer.status_code == 303
        return answer.headers["location"]

    assert web.config.limits.chasers_per_case_per_hour == 3
    by_email(1)
    assert by_web(2).endswith("done=requested")
    by_email(3)
    assert len(web.outbox("chase_notice")) == 3
    assert by_web(4).endswith("done=recorded")  # the web door hits the limit
    by_email(5)  # and so does the email door
    assert len(web.outbox("chase_notice")) == 3
    assert _case(web).chase_count == 5
    held = [e.detail for e in web.council.events(REF) if e.kind == "update_requested"][3:]
    assert held == [
        f"update requested ({n} so far); nobody told again, as this address sent "
        f"{n - 1} in the last hour (the limit is 3)"
        for n in (4, 5)
    ]
    # Tom, Jane's delegate, writes from his own address: his requests are told.
    tom, tom_csrf = web.signed_in("delegate")
    tom.post(f"/enquiries/{REF}/update", data={"csrf": tom_csrf})
    assert len(web.outbox("chase_notice")) == 4
