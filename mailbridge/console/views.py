"""Read-only views of cases for people: a case's whole story (lists are in filters.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.store.models import (
    Attachment,
    Case,
    CaseMember,
    CaseOfficer,
    Event,
    Message,
    OutboxMessage,
    Person,
)


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
    # Added for `case show` (the console issue); defaults keep older callers working.
    officers: list[tuple[Person, str]] = field(default_factory=list)  # (officer, lead/additional)
    other_members: list[Person] = field(default_factory=list)  # CaseMember, in joining order
    chasers: int = 0  # chaser emails on the case (Message role "chaser")
    merged_into: str | None = None  # the reference this case was merged into
    merged_from: list[str] = field(default_factory=list)  # references merged into this one
    linked_case: str | None = None  # the earlier case this one follows on from
    converted_to: str | None = None  # "complaint" or "service_request"
    closed_reason: str | None = None


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
    officers = [
        (person, role)
        for person, role in session.exec(
            select(Person, CaseOfficer.role)
            .join(CaseOfficer, col(CaseOfficer.person_id) == col(Person.id))
            .where(CaseOfficer.case_id == case.id)
            .order_by(col(CaseOfficer.role) != "lead", col(CaseOfficer.assigned_at))
        ).all()
    ]
    others = list(
        session.exec(
            select(Person)
            .join(CaseMember, col(CaseMember.person_id) == col(Person.id))
            .where(CaseMember.case_id == case.id)
            .order_by(col(CaseMember.added_at), col(CaseMember.person_id))
        ).all()
    )
    chasers = session.exec(
        select(func.count()).where(Message.case_id == case.id, Message.role == "chaser")
    ).one()
    merged_into = session.get(Case, case.merged_into_id) if case.merged_into_id else None
    linked = session.get(Case, case.linked_case_id) if case.linked_case_id else None
    merged_from = list(
        session.exec(
            select(Case.reference).where(Case.merged_into_id == case.id).order_by(col(Case.id))
        ).all()
    )
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
        officers=officers,
        other_members=others,
        chasers=chasers,
        merged_into=merged_into.reference if merged_into else None,
        merged_from=merged_from,
        linked_case=linked.reference if linked else None,
        converted_to=case.converted_to,
        closed_reason=case.closed_reason,
    )
