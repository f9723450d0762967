"""What the scheduled digests say: the coordinators' daily digest, each member's weekly
digest of their own enquiries, and the weekly management summary per directorate.

These functions only read. Each returns the mail to send (recipients, template, context and
its idempotency key) or nothing when there is nothing to say; the scheduler decides when,
claims the key and queues the mail (run.py). `day` and `week_start` are the council's
calendar dates (week_start is the Monday of the ISO week) and are also the "today" the
contents are counted against, so a digest says the same whenever it is built for that day.

The figures come from the existing queries — the case list's filters (console/filters.py),
the member's `status` dashboard (console/member_status.py) and the scrutiny report
(console/reports.py) — so
a digest never disagrees with what `cases list`, `status` or `report` would show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from mailbridge.cases.directory import flagged_addresses
from mailbridge.cases.floods import FLOOD
from mailbridge.config import Directorate
from mailbridge.console.filters import (
    OPEN,
    CaseFilter,
    CaseListRow,
    count_cases,
    iter_cases,
    list_cases,
)
from mailbridge.console.member_status import member_dashboard
from mailbridge.console.reports import GroupStats, build_report
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.delivery import queue
from mailbridge.services import Services
from mailbridge.store.models import (
    Case,
    CaseMember,
    Event,
    Person,
    PersonAddress,
    QuarantineItem,
    QuarantineStatus,
)

DUE_SOON_WORKING_DAYS = 2
LISTED = 50  # cases listed per section of the coordinators' digest; the counts say how many
OFFICER_AWAY = "officer_away"  # the event cases/inbound.note_auto_reply records


@dataclass(frozen=True, slots=True)
class DigestMail:
    """One digest to queue: the scheduler passes these fields to `queue.queue_mail`."""

    key: str  # idempotency key, e.g. "digest:coordinators:2026-11-25"
    kind: str  # "coordinator_digest" | "member_digest" | "management_summary"
    to: tuple[str, ...]
    template: str  # template name in templates/
    context: dict[str, Any]


def iso_week(week_start: date) -> str:
    """`2026-W48`: the ISO year and week of the Monday, as digest keys name the week."""
    year, week, _ = week_start.isocalendar()
    return f"{year}-W{week:02d}"


def _local_midnight(day: date, calendar: WorkingCalendar) -> datetime:
    """The first moment of a council day, in UTC as the database stores moments."""
    return datetime.combine(day, time(0), tzinfo=calendar.zone).astimezone(UTC)


def previous_working_day(calendar: WorkingCalendar, day: date) -> date:
    before = day - timedelta(days=1)
    while not calendar.is_working_day(before):
        before -= timedelta(days=1)
    return before


# --- the coordinators' daily digest -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwayNotice:
    """An out-of-office from an officer on a case, seen in the digest's window."""

    officer: str  # their name when the directory knows the address, else the address
    address: str
    at: datetime  # local time
    reference: str
    subject: str


def _listed(
    session: Session, services: Services, day: date, case_filter: CaseFilter
) -> tuple[list[CaseListRow], int]:
    """The filter's first LISTED cases, and how many there are in all."""
    rows = list_cases(session, case_filter, services.calendar, day)
    total = count_cases(session, case_filter, services.calendar, day)
    return rows, total


def _officers_away(session: Session, services: Services, day: date) -> list[AwayNotice]:
    """Out-of-office notices from a case's officers since the previous working day began."""
    calendar = services.calendar
    since = _local_midnight(previous_working_day(calendar, day), calendar)
    until = _local_midnight(day + timedelta(days=1), calendar)
    rows = session.execute(
        sa_select(Event.at, Event.actor, Event.detail, Case.reference, Case.subject)
        .join(Case, col(Case.id) == col(Event.case_id))
        .where(Event.kind == OFFICER_AWAY, Event.at >= since, Event.at < until)
        .order_by(col(Event.at), col(Event.id))
    ).all()
    addresses = {actor.lower() for _, actor, *_ in rows if "@" in actor}
    names = dict(
        session.execute(
            sa_select(PersonAddress.email, Person.name)
            .join(Person, col(Person.id) == col(PersonAddress.person_id))
            .where(col(PersonAddress.email).in_(addresses))
        ).all()
    )
    notices = []
    for at, actor, detail, reference, subject in rows:
        # Events from before the officer's address was recorded as the actor name it in text.
        address = actor.lower() if "@" in actor else detail.split(" ", 1)[0]
        moment = queue.local(services, at)
        assert moment is not None
        notices.append(AwayNotice(names.get(address, address), address, moment, reference, subject))
    return notices


def _quarantine_waiting(session: Session) -> list[QuarantineItem]:
    return list(
        session.exec(
            select(QuarantineItem)
            .where(QuarantineItem.status == QuarantineStatus.WAITING)
            .order_by(col(QuarantineItem.id))
        ).all()
    )


def _quarantine_lines(services: Services, items: list[QuarantineItem]) -> list[dict[str, Any]]:
    """One line per waiting message, but one per sender for a flood: a thousand forged
    emails are one thing to look at, and their subjects are the forger's words."""
    lines: list[dict[str, Any]] = []
    floods: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for q in items:
        if q.reason_code == FLOOD and q.sender in floods:
            floods[q.sender][1].append(q.id or 0)
            continue
        line = {
            "id": q.id,
            "sender": q.sender,
            "subject": q.subject,
            "reason": q.reason_code.replace("_", " "),
            "at": queue.local(services, q.created_at),
        }
        if q.reason_code == FLOOD:
            floods[q.sender] = (line, [q.id or 0])
        lines.append(line)
    for line, ids in floods.values():
        line["subject"] = f"{len(ids)} held" + (f", #{ids[0]} to #{ids[-1]}" if ids[1:] else "")
    return lines


def coordinator_digest(session: Session, services: Services, day: date) -> DigestMail | None:
    """The morning digest for every [[coordinators]] address; None when all is quiet."""
    to = tuple(queue.coordinator_addresses(services))
    if not to:
        return None
    calendar = services.calendar
    # New cases are few: the unassigned ones are picked out here, oldest first.
    new = iter_cases(
        session, CaseFilter(status="new", sort="created", desc=False, limit=None), calendar, day
    )
    unassigned = [row for row in new if row.lead_officer is None]
    # A paused case (its clock stopped) is neither due soon nor overdue: filters.py.
    due_soon, due_soon_total = _listed(
        session,
        services,
        day,
        CaseFilter(due_within=DUE_SOON_WORKING_DAYS, sort="due", limit=LISTED),
    )
    overdue, overdue_total = _listed(
        session, services, day, CaseFilter(overdue=True, sort="due", limit=LISTED)
    )
    away = _officers_away(session, services, day)
    flags = flagged_addresses(session)
    flagged_cases = {
        case_id: reference
        for case_id, reference in session.execute(
            sa_select(Case.id, Case.reference).where(
                col(Case.id).in_({f.case_id for f in flags if f.case_id})
            )
        ).all()
    }
    bounced = [
        {
            "address": f.email,
            "reason": f.reason,
            "reference": flagged_cases.get(f.case_id) if f.case_id else None,
            "at": queue.local(services, f.flagged_at),
        }
        for f in flags
    ]
    waiting = _quarantine_waiting(session)
    quarantined = _quarantine_lines(services, waiting)
    counts = {
        "unassigned": len(unassigned),
        "due_soon": due_soon_total,
        "overdue": overdue_total,
        "away": len(away),
        "bounced": len(bounced),
        "quarantined": len(waiting),
    }
    if not any(counts.values()):
        return None
    return DigestMail(
        key=f"digest:coordinators:{day.isoformat()}",
        kind="coordinator_digest",
        to=to,
        template="coordinator_digest",
        context={
            "day": day,
            "counts": counts,
            "due_soon_days": DUE_SOON_WORKING_DAYS,
            "due_soon_until": calendar.add_working_days(day, DUE_SOON_WORKING_DAYS),
            "unassigned": unassigned[:LISTED],
            "due_soon": due_soon,
            "overdue": overdue,
            "away": away,
            "bounced": bounced,
            "quarantined": quarantined,
        },
    )


# --- each member's weekly digest ---------------------------------------------------------


def _members_with_open_cases(session: Session) -> list[Person]:
    """Active members who raised, or were put on, an open case; by name."""
    raised = select(Case.member_id).where(col(Case.status).in_(OPEN))
    joined = (
        select(CaseMember.person_id)
        .join(Case, col(Case.id) == col(CaseMember.case_id))
        .where(col(Case.status).in_(OPEN))
    )
    return list(
        session.exec(
            select(Person)
            .where(
                Person.kind == "member",
                col(Person.active).is_(True),
                (col(Person.id).in_(raised)) | (col(Person.id).in_(joined)),
            )
            .order_by(col(Person.name), col(Person.id))
        ).all()
    )


def member_digests(session: Session, services: Services, week_start: date) -> list[DigestMail]:
    """Each member's open enquiries, as their `status` reply shows them: their own only."""
    week = iso_week(week_start)
    mails = []
    for member in _members_with_open_cases(session):
        assert member.id is not None
        board = member_dashboard(session, services, member.id, week_start, open_only=True)
        if not board.entries:
            continue
        context = board.context(member, member, week_start)
        context["week_start"] = week_start
        mails.append(
            DigestMail(
                key=f"digest:member:{member.id}:{week}",
                kind="member_digest",
                to=(member.email,),
                template="member_digest",
                context=context,
            )
        )
    return mails


# --- the weekly management summary -------------------------------------------------------


def _recipients(directorate: Directorate, services: Services) -> tuple[str, ...]:
    head = [str(directorate.head_email).lower()] if directorate.head_email else []
    return tuple(dict.fromkeys([*head, *queue.coordinator_addresses(services)]))


def management_summaries(
    session: Session, services: Services, week_start: date
) -> list[DigestMail]:
    """For each [[directorates]] entry: the scrutiny report's headline figures for the week
    before `week_start` (its row and its service areas' rows, from `build_report`), and how
    many of the directorate's open cases are overdue now. Skipped when it had no cases that
    week and none overdue."""
    calendar = services.calendar
    start, end = week_start - timedelta(days=7), week_start - timedelta(days=1)
    report = build_report(session, calendar, start, end, today=week_start)
    rows = report.current.areas
    week = iso_week(week_start)
    mails = []
    for directorate in services.config.directorates:
        to = _recipients(directorate, services)
        summary: GroupStats | None = next(
            (g for g in report.current.directorates if g.directorate == directorate.name), None
        )
        areas = [g for g in rows if g.level == "service_area" and g.directorate == directorate.name]
        overdue_open = count_cases(
            session, CaseFilter(directorate=directorate.name, overdue=True), calendar, week_start
        )
        if not to or (summary is None and not overdue_open):
            continue
        mails.append(
            DigestMail(
                key=f"summary:{directorate.name}:{week}",
                kind="management_summary",
                to=to,
                template="management_summary",
                context={
                    "directorate": directorate,
                    "week_start": week_start,
                    "start": start,
                    "end": end,
                    "summary": summary,
                    "areas": areas,
                    "overdue_open": overdue_open,
                },
            )
        )
    return mails
