"""Read-only views of cases for people: a case's whole story (lists are in filters.py).

`case_detail` reads it; `summary` and `attachment_note` put it in words, the same words for
`mailbridge case show` and the web console's case page, so the two never tell it apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailbridge.console.export import STATUS_LABELS
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
    body: str = ""  # an email's or note's text, as plain text (never its HTML)


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
        timeline.append(
            TimelineEntry(m.received_at, f"email {arrow}", m.sender, m.subject, m.body_text)
        )
    events = session.exec(select(Event).where(Event.case_id == case.id)).all()
    for e in events:
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
    # Cases merged into this one: each merge writes a "merged_in" event here
    # (coordinator.merge), so only such a case looks for them (merged_into_id has no index).
    merged_from = (
        list(
            session.exec(
                select(Case.reference).where(Case.merged_into_id == case.id).order_by(col(Case.id))
            ).all()
        )
        if any(e.kind == "merged_in" for e in events)
        else []
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


def attachment_note(a: Attachment) -> str:
    """Why it was refused or held back, the virus scan's verdict, inline."""
    notes = [a.refused_reason] if a.refused_reason else []
    notes += [f"held back: {a.held_reason}"] if a.held_reason else []
    notes += [f"scan: {a.scan_result}"] if a.scan_result else []
    notes += ["inline"] if a.inline else []
    return "; ".join(notes)


def _day(value: date | datetime) -> str:
    return f"{value:%a %d %b %Y}"


def summary(d: CaseDetail, calendar: WorkingCalendar) -> list[tuple[str, str]]:
    """The case's fields as (label, words), in the order a person reads them."""
    c = d.case
    left = d.working_days_left
    if c.completed_at:
        state = f"completed {_day(c.completed_at)}"
    elif c.paused_at:
        state = "paused: the deadline moves on when the case resumes"
    elif left >= 0:
        state = f"{left} working days left"
    else:
        state = f"overdue by {-left} working days"
    deadline = f"{_day(c.response_due)} ({'the original' if c.extended_due else state})"
    fields = [
        ("Status", STATUS_LABELS.get(c.status, c.status)),
        ("Member", f"{d.member.name} <{d.member.email}>"),
        ("Submitted by", f"{d.submitter.name} <{d.submitter.email}>"),
        ("Service area", c.service_area or "-"),
        ("Enquiry type", c.enquiry_type or "-"),
        ("Directorate", c.directorate or "-"),
        ("District", c.district or "-"),
        ("Lead officer", d.lead_officer.name if d.lead_officer else "not assigned"),
        ("Received", f"{c.received_at:%Y-%m-%d %H:%M} UTC"),
        ("Acknowledge by", _day(c.acknowledge_due)),
    ]
    if c.acknowledged_at:
        fields.append(("Acknowledged", f"{c.acknowledged_at:%Y-%m-%d %H:%M} UTC"))
    fields.append(("Reply due", deadline))
    if c.extended_due:
        reason = f" ({c.extension_reason})" if c.extension_reason else ""
        fields.append(("Extended to", f"{_day(c.extended_due)} ({state}){reason}"))
    if c.paused_at:
        since = _day(calendar.local_date(c.paused_at))
        fields.append(("Paused", f"since {since} ({c.pause_reason or 'no reason given'})"))
    if c.paused_working_days:
        added = f"{c.paused_working_days} working days added to the deadline"
        fields.append(("Paused days", added))
    if c.chase_count:
        fields.append(("Chased", f"{c.chase_count} times"))
    extra_officers = [f"{p.name} <{p.email}>" for p, role in d.officers if role != "lead"]
    if extra_officers:
        fields.append(("Also officers", ", ".join(extra_officers)))
    if d.other_members:
        fields.append(("Also members", ", ".join(f"{p.name} <{p.email}>" for p in d.other_members)))
    if d.linked_case:
        fields.append(("Follows on from", d.linked_case))
    if d.merged_from:
        fields.append(("Merged in", ", ".join(d.merged_from)))
    if d.merged_into:
        fields.append(("Merged into", d.merged_into))
    if d.converted_to:
        fields.append(("Converted to", d.converted_to.replace("_", " ")))
    if d.closed_reason and not d.merged_into:
        fields.append(("Closed because", d.closed_reason))
    if c.preferred_contact:
        fields.append(("Contact by", c.preferred_contact))
    if c.sensitive:
        fields.append(("Sensitive", "yes"))
    if c.held_at is not None:
        hold = f"since {c.held_at:%Y-%m-%d} by {c.held_by}: {c.hold_reason}; never erased"
        fields.append(("Legal hold", hold))
    if c.content_erased_at is not None:
        fields.append(("Content erased", f"{c.content_erased_at:%Y-%m-%d} (the figures stay)"))
    if c.satisfaction is not None:
        answered = f", answered {c.satisfaction_at:%Y-%m-%d}" if c.satisfaction_at else ""
        fields.append(("Satisfaction", f"{c.satisfaction} of 5{answered}"))
    return fields


@dataclass(frozen=True, slots=True)
class Choice:
    """A person a coordinator can pick: their address, and how they are offered."""

    person_id: int
    email: str
    label: str  # "Priya Shah (Highways) – priya.shah@example.gov.uk"


def choices(session: Session, kind: str) -> list[Choice]:
    """The active people of one kind by name: whom a coordinator picks from (a case's
    officers, another member to put on it). Plain rows, not entities: a council has
    hundreds of officers and the case page lists them all."""
    rows = session.exec(
        select(Person.id, Person.name, Person.email, Person.service_area)
        .where(Person.kind == kind, col(Person.active).is_(True))
        .order_by(col(Person.name), col(Person.email))
    ).all()
    return [
        Choice(pid or 0, email, f"{name}{f' ({area})' if area else ''} – {email}")
        for pid, name, email, area in rows
    ]
