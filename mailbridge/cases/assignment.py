"""Assigning officers to a case: a coordinator's act, in one transaction.

The officers get the enquiry by email (text, attachments, deadline, how to reply); the
member learns the lead officer's name. Reassigning replaces the officers; only those new
to the case are sent the enquiry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, delete, select

from mailbridge.cases import directory, lifecycle
from mailbridge.cases.correspondence import (
    SentOn,
    attachments_of,
    history,
    member_recipients,
    thread_for,
)
from mailbridge.cases.records import add_event, find_case
from mailbridge.deadlines import clock
from mailbridge.delivery import queue
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.store.db import action
from mailbridge.store.models import (
    Case,
    CaseOfficer,
    CaseStatus,
    Direction,
    Message,
    OfficerRole,
    Person,
    PersonKind,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Assigned:
    reference: str
    lead: str
    additional: tuple[str, ...]
    emailed: tuple[str, ...]  # officers sent the enquiry now
    member_told: bool
    deadline_reset: str | None = None  # the reset's event detail (--reset-deadline)


@action
def assign(
    session: Session,
    services: Services,
    reference: str,
    lead_email: str,
    also: Sequence[str] = (),
    *,
    actor: str,
    reassign: bool = False,
    reset_deadline: bool = False,
    now: datetime | None = None,
) -> Assigned:
    """Assign (or reassign) the officers. Reassignment keeps the deadline unless
    `reset_deadline`: then the SLA's response days count afresh from today (clock.py)."""
    case = find_case(session, reference)
    assert case.id is not None
    lifecycle.refuse_closed(session, case)
    if case.status == CaseStatus.COMPLETED:
        raise UserError(
            f"{case.reference} is completed; it reopens if the member replies within "
            f"{services.config.cases.reopen_working_days} working days"
        )
    current = {
        row.person_id: row
        for row in session.exec(select(CaseOfficer).where(CaseOfficer.case_id == case.id)).all()
    }
    if current and not reassign:
        raise UserError(
            f"{case.reference} is already assigned; use `mailbridge case reassign` to change "
            "its officers"
        )
    lead = directory.person_of_kind(session, lead_email, PersonKind.OFFICER, "--lead")
    extra: dict[int, Person] = {}
    for email in also:
        person = directory.person_of_kind(session, email, PersonKind.OFFICER, "--also")
        if person.id != lead.id:
            extra[person.id or 0] = person
    wanted = {lead.id: OfficerRole.LEAD, **{pid: OfficerRole.ADDITIONAL for pid in extra}}
    now = now or utcnow()
    session.exec(  # type: ignore[call-overload]
        delete(CaseOfficer).where(
            col(CaseOfficer.case_id) == case.id,
            col(CaseOfficer.person_id).not_in(list(wanted)),
        )
    )
    for person_id, role in wanted.items():
        row = current.get(person_id or 0)
        if row is None:
            session.add(
                CaseOfficer(case_id=case.id, person_id=person_id, role=role, assigned_at=now)
            )
        elif row.role != role:
            row.role = role
            session.add(row)
    lead_changed = case.lead_officer_id != lead.id
    case.lead_officer_id = lead.id
    lifecycle.start(case, now)
    case.assigned_at = case.assigned_at or now
    session.add(case)
    session.flush()
    names = ", ".join(p.name for p in extra.values())
    add_event(
        session,
        case.id,
        "reassigned" if reassign and current else "assigned",
        f"lead officer {lead.name}" + (f"; also {names}" if names else ""),
        actor=actor,
    )
    reset = None
    if reset_deadline:
        # Before the officers' and member's notices, so they carry the new deadline.
        reset = clock.reset_deadline(session, services, case, actor=actor, now=now)
    newcomers = [p for p in (lead, *extra.values()) if p.id not in current]
    emailed = _send_enquiry(session, services, case, newcomers, lead)
    told = False
    if lead_changed and services.config.cases.tell_member_on_assignment:
        to, cc = member_recipients(session, case)
        told = (
            queue.queue_mail(
                session,
                services,
                kind="assigned",
                template="assigned",
                to=to,
                cc=cc,
                thread=thread_for(session, case),
                context={
                    "case": case,
                    "lead": lead,
                    "member": session.get(Person, case.member_id),
                    "due": case.extended_due or case.response_due,
                },
            )
            is not None
        )
    log.info("case assigned", extra={"case": case.reference, "officers": len(wanted)})
    return Assigned(
        case.reference,
        lead.email,
        tuple(p.email for p in extra.values()),
        tuple(emailed),
        told,
        reset,
    )


def _send_enquiry(
    session: Session, services: Services, case: Case, officers: list[Person], lead: Person
) -> list[str]:
    """Each newly assigned officer gets the member's enquiry, its attachments and deadline."""
    if not officers:
        return []
    assert case.id is not None
    enquiry = session.exec(
        select(Message)
        .where(Message.case_id == case.id, Message.direction == Direction.IN)
        .order_by(col(Message.id))
    ).first()
    sent_on = (
        attachments_of(
            session,
            services,
            enquiry.id or 0,
            services.config.cases.officer_attachments_max_bytes,
        )
        if enquiry
        else SentOn([], [], [])
    )
    member = session.get(Person, case.member_id)
    today = services.calendar.local_date(utcnow())
    due = case.extended_due or case.response_due
    emailed = []
    for officer in officers:
        queued = queue.queue_mail(
            session,
            services,
            kind="assignment",
            template="assignment",
            to=[officer.email],
            thread=thread_for(session, case),
            context={
                "case": case,
                "officer": officer,
                "is_lead": officer.id == lead.id,
                "lead": lead,
                "member": member,
                "due": due,
                "working_days_left": services.calendar.working_days_between(today, due),
                "listed": sent_on.listed,
                "held": sent_on.held,
                "history": history(session, case.id),
            },
            attachments=sent_on.files,
        )
        if queued is not None:
            emailed.append(officer.email)
    return emailed
