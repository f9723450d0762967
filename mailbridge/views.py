"""Read-only views of cases for people: lists and a case's whole story."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from mailbridge.errors import UserError
from mailbridge.models import Attachment, Case, Event, Message, OutboxMessage, Person
from mailbridge.sla import WorkingCalendar


@dataclass(frozen=True, slots=True)
class CaseRow:
    reference: str
    member: str
    subject: str
    service_area: str | None
    status: str
    created_at: object
    response_due: date


def list_cases(session: Session, *, status: str | None = None, limit: int = 50) -> list[CaseRow]:
    member = aliased(Person)
    query = (
        select(Case, member.name)
        .join(member, member.id == Case.member_id)  # type: ignore[arg-type]
        .order_by(col(Case.created_at).desc(), col(Case.id).desc())
        .limit(limit)
    )
    if status:
        query = query.where(Case.status == status)
    return [
        CaseRow(
            c.reference, name, c.subject, c.service_area, c.status, c.created_at, c.response_due
        )
        for c, name in session.exec(query).all()
    ]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: object
    kind: str
    who: str
    text: str


@dataclass
class CaseDetail:
    case: Case
    member: Person
    submitter: Person
    lead_officer: Person | None
    working_days_left: int
    attachments: list[Attachment]
    timeline: list[TimelineEntry]


def case_detail(
    session: Session, reference: str, calendar: WorkingCalendar, today: date
) -> CaseDetail:
    case = session.exec(select(Case).where(Case.reference == reference.strip().upper())).first()
    if case is None:
        raise UserError(f"no case has reference {reference.strip()} (see `mailbridge cases list`)")
    member = session.get(Person, case.member_id)
    submitter = session.get(Person, case.submitter_id)
    lead = session.get(Person, case.lead_officer_id) if case.lead_officer_id else None
    assert member is not None and submitter is not None
    attachments = list(
        session.exec(
            select(Attachment).where(Attachment.case_id == case.id).order_by(col(Attachment.id))
        ).all()
    )
    timeline: list[TimelineEntry] = []
    for m in session.exec(select(Message).where(Message.case_id == case.id)).all():
        arrow = "in" if m.direction == "in" else "out"
        timeline.append(TimelineEntry(m.received_at, f"email {arrow}", m.sender, m.subject))
    for e in session.exec(select(Event).where(Event.case_id == case.id)).all():
        timeline.append(TimelineEntry(e.at, e.kind, e.actor, e.detail))
    for o in session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case.id)).all():
        state = o.status + (f" ({o.last_error})" if o.last_error else "")
        timeline.append(
            TimelineEntry(o.sent_at or o.created_at, f"delivery {state}", o.recipients, o.subject)
        )
    timeline.sort(key=lambda t: t.at)  # type: ignore[arg-type, return-value]
    return CaseDetail(
        case=case,
        member=member,
        submitter=submitter,
        lead_officer=lead,
        working_days_left=calendar.working_days_between(
            today, case.extended_due or case.response_due
        ),
        attachments=attachments,
        timeline=timeline,
    )
