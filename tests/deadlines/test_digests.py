"""What the digests say, on SQLite and PostgreSQL: the coordinators' daily digest, each
member's weekly digest (their own cases only) and the weekly management summary.

Today is Wed 25 Nov 2026 (GMT, so UTC times are local). Working days around it: Tue 24,
Wed 25, Thu 26, Fri 27 Nov; due within 2 working days means due from 25 to 27 Nov.

    case  member   status        lead    due (orig / extended)   note
    C1    Jane     new           -       9 Dec                   unassigned
    C2    Jane     in progress   Priya   26 Nov                  due soon; Priya away Tue 24
    C3    Raj      in progress   Priya   23 Nov                  overdue; Raj's address bounced
    C4    Raj      in progress   Priya   20 Nov                  paused: neither late nor soon
    C5    Jane     completed     Priya   1 Nov                   done: never late
    C6    Jane     in progress   Priya   20 Nov / 3 Dec          extended: not late; Raj on it
    C7    Gareth   completed     Priya   10 Nov                  Gareth has nothing open
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbridge.deadlines import digests
from mailbridge.delivery import queue
from mailbridge.store.db import transaction
from mailbridge.store.models import (
    AddressFlag,
    CaseMember,
    Event,
    OutboxMessage,
    QuarantineItem,
)
from tests.helpers.digests import AH, ET, HEAD, SUPPORT, Desk, seed_week, utc

TODAY = date(2026, 11, 25)
MONDAY = date(2026, 11, 30)  # the week after: the management summary covers 23-29 Nov


def seed_cases(desk: Desk) -> dict[str, str]:
    """The table in the module docstring; returns the references by name."""
    c = {
        "C1": desk.case("jane", "Street light out on Church Street", status="new",
                        response_due=date(2026, 12, 9)),
        "C2": desk.case("jane", "Pothole on Mill Lane", status="in_progress", lead="priya",
                        response_due=date(2026, 11, 26)),
        "C3": desk.case("raj", "Care package for Mr Evans", status="in_progress", lead="priya",
                        service_area="Adult Social Care", directorate=AH,
                        response_due=date(2026, 11, 23)),
        "C4": desk.case("raj", "Bus shelter glass", status="in_progress", lead="priya",
                        response_due=date(2026, 11, 20), paused_at=utc(2026, 11, 19, 9),
                        pause_reason="awaiting information from the councillor"),
        "C5": desk.case("jane", "Blocked drain", status="completed", lead="priya",
                        response_due=date(2026, 11, 1)),
        "C6": desk.case("jane", "Verge cutting", status="in_progress", lead="priya",
                        response_due=date(2026, 11, 20), extended_due=date(2026, 12, 3)),
        "C7": desk.case("gareth", "Gritting route", status="completed", lead="priya",
                        response_due=date(2026, 11, 10)),
    }  # fmt: skip
    desk.add(CaseMember(case_id=desk.id_of(c["C6"]), person_id=desk.people["raj"]))
    return c


@pytest.fixture
def desk(tmp_path: Path, engine: Engine) -> Desk:
    return Desk(tmp_path, engine)


def refs(rows: list[Any]) -> list[str]:
    return [r.reference for r in rows]


# --- the coordinators' daily digest ---------------------------------------------------


def test_coordinator_digest_lists_what_needs_a_coordinator_today(desk: Desk) -> None:
    c = seed_cases(desk)
    desk.add(
        # Priya's out-of-office on C2 yesterday (the previous working day) counts; the one
        # on C3 last week is old news.
        Event(case_id=desk.id_of(c["C2"]), kind="officer_away", actor="priya.shah@example.gov.uk",
              detail="priya.shah@example.gov.uk is away: consider reassigning",
              at=utc(2026, 11, 24, 14)),
        Event(case_id=desk.id_of(c["C3"]), kind="officer_away", actor="system",
              detail="sam.whitaker@example.gov.uk is away: consider reassigning",
              at=utc(2026, 11, 20, 14)),
        AddressFlag(email="raj@example.gov.uk", reason="5.1.1 user unknown",
                    case_id=desk.id_of(c["C3"]), flagged_at=utc(2026, 11, 24, 16)),
        QuarantineItem(dedupe_key="a", raw_sha256="0" * 64, reason_code="unknown_sender",
                       reason="not registered", sender="someone@example.org",
                       subject="Planning objection", created_at=utc(2026, 11, 25, 7)),
        QuarantineItem(dedupe_key="b", raw_sha256="1" * 64, reason_code="loop", reason="loop",
                       status="released"),
    )  # fmt: skip
    with Session(desk.engine) as session:
        mail = digests.coordinator_digest(session, desk.services, TODAY)
    assert mail is not None
    assert (mail.key, mail.kind, mail.to, mail.template) == (
        "digest:coordinators:2026-11-25", "coordinator_digest", (SUPPORT,), "coordinator_digest"
    )  # fmt: skip
    ctx = mail.context
    assert ctx["counts"] == {
        "unassigned": 1, "due_soon": 1, "overdue": 1, "away": 1, "bounced": 1, "quarantined": 1
    }  # fmt: skip
    assert refs(ctx["unassigned"]) == [c["C1"]]
    assert refs(ctx["due_soon"]) == [c["C2"]]
    assert refs(ctx["overdue"]) == [c["C3"]]  # not paused C4, completed C5 or extended C6
    [away] = ctx["away"]
    assert (away.officer, away.reference) == ("Priya Shah", c["C2"])
    assert [b["address"] for b in ctx["bounced"]] == ["raj@example.gov.uk"]
    assert ctx["bounced"][0]["reference"] == c["C3"]
    assert [q["subject"] for q in ctx["quarantined"]] == ["Planning objection"]

    rendered = desk.render(mail)
    assert rendered.subject == (
        "Member enquiries digest Wednesday 25 November 2026: 1 overdue, 1 due soon, 1 unassigned"
    )
    text = rendered.text
    assert "  Overdue:                     1\n" in text
    assert "  Due within 2 working days:   1 (by Friday 27 November 2026)" in text
    overdue = text.split("\nOverdue\n", 1)[1].split("\n\n", 1)[0]
    assert f"{c['C3']}  Care package for Mr Evans" in overdue
    assert "Member:         Cllr Raj Patel" in overdue
    assert "Service area:   Adult Social Care" in overdue
    assert "Reply due by:   Monday 23 November 2026" in overdue
    assert c["C4"] not in text and c["C5"] not in text and c["C6"] not in text
    assert "Priya Shah <priya.shah@example.gov.uk> is away" in text
    assert "raj@example.gov.uk  (" + c["C3"] + ")" in text
    assert "#1  Planning objection" in text and "unknown sender" in text
    html = rendered.html or ""
    assert f'<td style="white-space: nowrap;">{c["C3"]}</td>' in html
    assert "class=" not in html and "<img" not in html and "<link" not in html

    # Queued by the caller (the scheduler): it lands in the outbox under its key.
    with transaction(desk.engine) as session:
        queued = queue.queue_mail(
            session, desk.services, kind=mail.kind, template=mail.template, to=mail.to,
            context=mail.context, automatic=True, rate_limited=False,
            idempotency_key=mail.key,
        )  # fmt: skip
    assert queued is not None and queued.recipients == (SUPPORT,)
    with Session(desk.engine) as session:
        row = session.exec(select(OutboxMessage)).one()
    assert (row.idempotency_key, row.kind) == ("digest:coordinators:2026-11-25", mail.kind)
    assert "Care package for Mr Evans" in row.raw.decode("utf-8", "replace")


def test_coordinator_digest_gives_a_flood_one_line_without_its_subjects(desk: Desk) -> None:
    """980 emails held from one forged sender are one line, not 980 of the forger's words."""
    forged = "cllr.jane.smith@example.gov.uk"
    desk.add(
        *(
            QuarantineItem(dedupe_key=f"f{i}", raw_sha256=f"{i:064d}", reason_code="flood",
                           reason="too many new cases", sender=forged,
                           subject="Your mailbox is full", created_at=utc(2026, 11, 25, 7))
            for i in range(3)
        ),
        QuarantineItem(dedupe_key="s", raw_sha256="s" * 64, reason_code="unknown_sender",
                       reason="not registered", sender="someone@example.org",
                       subject="Planning objection", created_at=utc(2026, 11, 25, 8)),
    )  # fmt: skip
    with Session(desk.engine) as session:
        mail = digests.coordinator_digest(session, desk.services, TODAY)
        first, *_, last = session.exec(select(QuarantineItem.id).order_by(QuarantineItem.id))
    assert mail is not None
    assert mail.context["counts"]["quarantined"] == 4
    lines = [(q["sender"], q["subject"], q["reason"]) for q in mail.context["quarantined"]]
    assert lines == [
        (forged, f"3 held, #{first} to #{last - 1}", "flood"),
        ("someone@example.org", "Planning objection", "unknown sender"),
    ]
    assert "mailbox is full" not in desk.render(mail).text


def test_coordinator_digest_is_none_when_there_is_nothing_to_say(desk: Desk) -> None:
    desk.case("jane", "Blocked drain", status="completed", lead="priya",
              response_due=date(2026, 11, 1))  # fmt: skip
    desk.case("jane", "Verge cutting", status="in_progress", lead="priya",
              response_due=date(2026, 12, 18))  # fmt: skip
    with Session(desk.engine) as session:
        assert digests.coordinator_digest(session, desk.services, TODAY) is None


# --- each member's weekly digest ------------------------------------------------------


def test_member_digest_is_each_members_own_open_cases_and_never_another_members(
    desk: Desk,
) -> None:
    c = seed_cases(desk)
    with Session(desk.engine) as session:
        mails = digests.member_digests(session, desk.services, MONDAY)
    by_member = {m.to: m for m in mails}
    # Gareth has only a completed case: no digest.
    assert set(by_member) == {("jane@example.gov.uk",), ("raj@example.gov.uk",)}
    jane, raj = by_member[("jane@example.gov.uk",)], by_member[("raj@example.gov.uk",)]
    assert jane.key == f"digest:member:{desk.people['jane']}:2026-W49"
    assert raj.key == f"digest:member:{desk.people['raj']}:2026-W49"
    assert jane.kind == raj.kind == "member_digest"

    own = {
        "jane": {c["C1"], c["C2"], c["C6"]},  # her open cases; C5 is completed
        "raj": {c["C3"], c["C4"], c["C6"]},  # his own, and Jane's C6 that he was put on
    }
    everyone = set(c.values())
    for name, mail in (("jane", jane), ("raj", raj)):
        assert {e["case"].reference for e in mail.context["entries"]} == own[name]
        rendered = desk.render(mail)
        for part in (rendered.subject, rendered.text, rendered.html or ""):
            for reference in everyone - own[name]:
                assert reference not in part, (name, reference)
        for reference in own[name]:
            assert reference in rendered.text and reference in (rendered.html or "")

    text = desk.render(raj).text
    assert text.startswith("Dear Cllr Raj Patel,\n\nThese are your open enquiries as of "
                           "Monday 30 November 2026.")  # fmt: skip
    care = text.split(f"{c['C3']}  Care package for Mr Evans", 1)[1].split("MQ-")[0]
    assert "Status:         In progress (overdue)" in care
    assert "Lead officer:   Priya Shah" in care
    shelter = text.split(f"{c['C4']}  Bus shelter glass", 1)[1].split("MQ-")[0]
    assert "(on hold: awaiting information from the councillor)" in shelter
    assert "(overdue)" not in shelter  # the clock is stopped
    assert desk.render(raj).subject == "Your open enquiries this week: 3 open"


def test_member_digest_and_status_reply_share_one_dashboard(desk: Desk) -> None:
    """The digest is the `status` dashboard: the same entries, the open ones."""
    from mailbridge.console.member_status import member_dashboard

    seed_cases(desk)
    with Session(desk.engine) as session:
        [_, raj] = digests.member_digests(session, desk.services, MONDAY)
        board = member_dashboard(session, desk.services, desk.people["raj"], MONDAY)
    assert raj.context["entries"] == [e for e in board.entries if e["case"].status != "completed"]
    assert raj.context["counts"] == board.counts


# --- the weekly management summary ----------------------------------------------------


def test_management_summary_gives_the_reports_headline_figures_per_directorate(
    desk: Desk,
) -> None:
    seed_week(desk)
    with Session(desk.engine) as session:
        mails = digests.management_summaries(session, desk.services, MONDAY)
    # Adults and Health had no case that week and none overdue; Children's Services none.
    [et] = mails
    assert et.key == f"summary:{ET}:2026-W49"
    assert (et.kind, et.template) == ("management_summary", "management_summary")
    assert et.to == (HEAD, SUPPORT)
    summary = et.context["summary"]
    assert summary.received == 3
    assert str(summary.responded) == "2/3 (67%)"
    assert str(summary.on_time) == "2/2 (100%)"
    assert summary.to_first_response.median == 2
    assert (summary.satisfaction, summary.satisfaction_answers) == (3.0, 2)
    assert et.context["overdue_open"] == 1  # E4, received weeks ago
    assert [g.service_area for g in et.context["areas"]] == ["Highways", "Waste"]

    rendered = desk.render(et)
    assert rendered.subject == (
        f"Member enquiries, {ET}, week of Monday 23 November 2026: 3 received, 1 overdue"
    )
    text = rendered.text
    assert text.startswith("Dear Alex Head,")
    assert "  Received:                            3\n" in text
    assert "  Responded:                           2/3 (67%)\n" in text
    assert "  On time (original deadline):         2/2 (100%)\n" in text
    assert "  On time (with extensions):           2/2 (100%)\n" in text
    assert "  Median working days to 1st response: 2\n" in text
    assert "  Overdue now (of these):              0\n" in text
    assert "  Satisfaction:                        3.0 of 5 (2 answers)\n" in text
    assert "overdue now (any week): 1" in text
    assert "  Waste\n    received 1, responded 1/1 (100%)" in text
    html = rendered.html or ""
    assert "<td><strong>3</strong></td>" in html and "3.0 of 5 (2 answers)" in html
    assert "class=" not in html and "<img" not in html


def test_management_summary_for_a_directorate_without_a_head_goes_to_coordinators(
    desk: Desk,
) -> None:
    desk.case("raj", "A2", status="new", directorate=AH, service_area="Adult Social Care",
              received_at=utc(2026, 11, 24, 10), response_due=date(2026, 12, 8))  # fmt: skip
    with Session(desk.engine) as session:
        [ah] = digests.management_summaries(session, desk.services, MONDAY)
    assert ah.key == f"summary:{AH}:2026-W49" and ah.to == (SUPPORT,)
    text = desk.render(ah).text
    assert text.startswith("Dear colleague,")
    assert "  Satisfaction:                        no answers\n" in text


# --- templates ------------------------------------------------------------------------


def test_a_digest_template_in_the_configured_directory_overrides_the_shipped_one(
    tmp_path: Path, engine: Engine
) -> None:
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "coordinator_digest.subject.j2").write_text(
        "Morning briefing: {{ counts.overdue }} late\n", encoding="utf-8"
    )
    desk = Desk(tmp_path, engine, templates={"directory": str(overrides)})
    seed_cases(desk)
    with Session(desk.engine) as session:
        mail = digests.coordinator_digest(session, desk.services, TODAY)
    assert mail is not None
    rendered = desk.render(mail)
    assert rendered.subject == "Morning briefing: 1 late"
    assert "Member enquiries digest for Wednesday 25 November 2026" in rendered.text  # shipped


def test_iso_week_names_the_iso_year() -> None:
    assert digests.iso_week(date(2026, 11, 30)) == "2026-W49"
    assert digests.iso_week(date(2026, 12, 28)) == "2026-W53"
    assert digests.iso_week(date(2027, 1, 4)) == "2027-W01"


def test_every_digest_queues_into_the_outbox_under_its_key(desk: Desk) -> None:
    seed_cases(desk)
    seed_week(desk)
    with Session(desk.engine) as session:
        mails = [
            digests.coordinator_digest(session, desk.services, TODAY),
            *digests.member_digests(session, desk.services, MONDAY),
            *digests.management_summaries(session, desk.services, MONDAY),
        ]
    # Two summaries: E&T's week, and AH for C3, overdue though received weeks ago.
    assert [m.kind for m in mails if m] == [
        "coordinator_digest", *["member_digest"] * 2, *["management_summary"] * 2
    ]  # fmt: skip
    with transaction(desk.engine) as session:
        for mail in mails:
            assert mail is not None
            queued = queue.queue_mail(
                session, desk.services, kind=mail.kind, template=mail.template, to=mail.to,
                context=mail.context, automatic=True, rate_limited=False,
                idempotency_key=mail.key,
            )  # fmt: skip
            assert queued is not None and set(queued.recipients) == set(mail.to)
    with Session(desk.engine) as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()  # type: ignore[arg-type]
    assert [(r.idempotency_key, r.kind) for r in rows] == [(m.key, m.kind) for m in mails if m]
    assert all(r.raw.count(b"Content-Type: text/html") == 1 for r in rows)


def test_officers_away_since_the_previous_working_day_began_in_council_time(desk: Desk) -> None:
    """Tue 16 Jun 2026 (BST): from Mon 15 Jun 00:00 BST, which is Sun 14 Jun 23:00 UTC."""
    reference = desk.case("jane", "Pothole on Mill Lane", status="in_progress", lead="priya",
                          response_due=date(2026, 6, 26))  # fmt: skip
    case_id = desk.id_of(reference)

    def away(at: datetime, who: str) -> Event:
        return Event(case_id=case_id, kind="officer_away", actor=who, at=at,
                     detail=f"{who} is away: consider reassigning")  # fmt: skip

    desk.add(
        away(utc(2026, 6, 14, 22, 30), "sunday.late@example.gov.uk"),  # 23:30 BST Sunday
        away(utc(2026, 6, 14, 23, 30), "priya.shah@example.gov.uk"),  # 00:30 BST Monday
        away(utc(2026, 6, 16, 22, 59), "ann.other@example.gov.uk"),  # 23:59 BST Tuesday
        away(utc(2026, 6, 16, 23, 0), "wednesday@example.gov.uk"),  # 00:00 BST Wednesday
    )
    with Session(desk.engine) as session:
        mail = digests.coordinator_digest(session, desk.services, date(2026, 6, 16))
    assert mail is not None
    notices = mail.context["away"]
    assert [a.address for a in notices] == ["priya.shah@example.gov.uk", "ann.other@example.gov.uk"]
    assert [a.officer for a in notices] == ["Priya Shah", "ann.other@example.gov.uk"]
    assert notices[0].at.hour == 0 and notices[0].at.minute == 30  # shown in council time


def test_long_lists_stop_at_fifty_and_say_how_many_more(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(digests, "LISTED", 2)
    for n in range(3):
        desk.case("raj", f"Late {n}", status="in_progress", lead="priya",
                  response_due=date(2026, 11, 16 + n))  # fmt: skip
    with Session(desk.engine) as session:
        mail = digests.coordinator_digest(session, desk.services, TODAY)
    assert mail is not None
    assert mail.context["counts"]["overdue"] == 3
    assert [r.subject for r in mail.context["overdue"]] == ["Late 0", "Late 1"]  # soonest due
    rendered = desk.render(mail)
    assert "... and 1 more: mailbridge cases list --overdue" in rendered.text
    assert "and 1 more: <code>mailbridge cases list --overdue</code>" in (rendered.html or "")
