"""A member's own enquiries, as the portal's "My enquiries" page, the `status` reply and the
weekly member digest show them.

One builder for all three, so the page, the digest and a `status` request say the same
thing about each case. A member's cases are those cases/permissions.py gives them: those
they raised (or a delegate raised for them) and those they were put on (`case link`,
`case merge`); never another member's. The emails read every case; the page reads one page
of them, filtered, in SQL (a member may have thousands).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from mailbridge.cases.permissions import member_cases_clause
from mailbridge.delivery import queue
from mailbridge.services import Services
from mailbridge.store.models import Case, CaseStatus, Direction, Message, OutboxMessage, Person

OPEN = (CaseStatus.NEW.value, CaseStatus.IN_PROGRESS.value)
COUNTED = (CaseStatus.NEW, CaseStatus.IN_PROGRESS, CaseStatus.COMPLETED)


@dataclass(frozen=True, slots=True)
class MemberDashboard:
    entries: list[dict[str, Any]]  # one per case, newest first: case, lead, due, overdue, ...
    counts: dict[str, int]  # new, in_progress, completed
    total: int = 0  # the cases the filters match, every page together

    @property
    def open(self) -> int:
        return self.counts[CaseStatus.NEW] + self.counts[CaseStatus.IN_PROGRESS]

    def context(self, member: Person, requester: Person, today: date) -> dict[str, Any]:
        """What the `status` and `member_digest` templates read."""
        return {
            "member": member,
            "requester": requester,
            "entries": self.entries,
            "counts": self.counts,
            "today": today,
        }


def _day(value: date) -> str:
    return f"{value:%a} {value.day} {value:%b}"


def deadline_words(response_due: date, extended_due: date | None, reason: str | None) -> str:
    """The reply deadline in force, and an extension in words: "due Mon 21 Dec, extended
    from Fri 11 Dec: awaiting a contractor's report"."""
    if extended_due is None or extended_due == response_due:
        return f"due {_day(response_due)}"
    words = f"due {_day(extended_due)}, extended from {_day(response_due)}"
    why = " ".join((reason or "").split())
    return f"{words}: {why}" if why else words


def entry(case: Case, lead: Person | None, services: Services, today: date) -> dict[str, Any]:
    """One case as every member-facing view shows it."""
    due = case.extended_due or case.response_due
    return {
        "case": case,
        "lead": lead,
        "due": due,
        "due_words": deadline_words(case.response_due, case.extended_due, case.extension_reason),
        "overdue": case.status in OPEN and case.paused_at is None and due < today,
        "paused": case.paused_at is not None,
        "last_response": queue.local(services, case.last_response_at),
        "last_activity": queue.local(services, case.updated_at),
    }


def member_dashboard(
    session: Session,
    services: Services,
    member_id: int,
    today: date,
    *,
    open_only: bool = False,
    status: str | None = None,
    text: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> MemberDashboard:
    """The member's cases with their lead officer, deadline in force, lateness and last
    response, newest first; counts by status over all of them. `open_only` (the digest),
    `status` and `text` (in the reference, subject or enquiry) narrow the list; `limit`
    reads one page from `offset`."""
    mine = member_cases_clause(member_id)
    counted = session.exec(
        select(Case.status, func.count()).where(mine).group_by(col(Case.status))
    ).all()
    by_status = dict(counted)
    counts = {s: int(by_status.get(s.value, 0)) for s in COUNTED}
    query = select(Case).where(mine)
    if open_only:
        query = query.where(col(Case.status).in_(OPEN))
    if status:
        query = query.where(Case.status == status)
    if text and text.strip():
        wanted = text.strip().lower()
        query = query.where(
            or_(
                func.lower(Case.reference).contains(wanted, autoescape=True),
                func.lower(Case.subject).contains(wanted, autoescape=True),
                func.lower(Case.body_text).contains(wanted, autoescape=True),
            )
        )
    ordered = query.order_by(col(Case.created_at).desc(), col(Case.id).desc())
    if limit is not None:
        ordered = ordered.offset(offset).limit(limit)
    rows = session.exec(ordered).all()
    total = len(rows)
    if limit is not None and (offset or len(rows) == limit):
        total = int(session.exec(select(func.count()).select_from(query.subquery())).one())
    lead_ids = {c.lead_officer_id for c in rows if c.lead_officer_id}
    leads = {
        p.id: p for p in session.exec(select(Person).where(col(Person.id).in_(lead_ids))).all()
    }
    entries = [
        entry(c, leads.get(c.lead_officer_id) if c.lead_officer_id else None, services, today)
        for c in rows
    ]
    return MemberDashboard(entries, counts, total)


# The emails a member gets that answer their enquiry, by the outbox's kind, as the
# enquiry page names them (never internal notes, contributions or staff notices).
SENT_TO_MEMBER = {
    "holding": "Holding reply",
    "response": "Response",
    "reply": "Reply from the Member Support Team",
    "note_to_member": "Note from the Member Support Team",
}


def sent_to_member(session: Session, services: Services, case_id: int) -> list[dict[str, Any]]:
    """Every response and holding reply sent to the member on the case, oldest first, as
    the text that went out."""
    rows = session.exec(
        select(Message.received_at, Message.body_text, OutboxMessage.kind)
        .join(OutboxMessage, col(OutboxMessage.message_id) == col(Message.message_id))
        .where(
            Message.case_id == case_id,
            Message.direction == Direction.OUT,
            col(OutboxMessage.kind).in_(list(SENT_TO_MEMBER)),
        )
        .order_by(col(Message.id))
    ).all()
    return [
        {"at": queue.local(services, at), "label": SENT_TO_MEMBER[kind], "text": text}
        for at, text, kind in rows
    ]
