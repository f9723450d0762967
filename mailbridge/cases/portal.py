"""What a councillor (or their delegate) does in the portal, through the same functions as
their email: "Request an update" is a chaser (inbound.request_update), Reopen is a reply
on a recently completed case (inbound.reopen_case, under lifecycle.reopens), each in one
transaction with the same mail queued.

Every function asks cases/permissions.py first; a case the person has no standing on is
NotYours, which the portal shows as "page not found" (a reference tried in a URL says
nothing about whether it exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col

from mailbridge.cases import coordinator, inbound, lifecycle
from mailbridge.cases.permissions import Action, may
from mailbridge.cases.records import find_case
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.store.db import action, insert_row
from mailbridge.store.models import (
    Attachment,
    Case,
    CaseStatus,
    Direction,
    Disposition,
    Message,
    Person,
    utcnow,
)

# The messages whose files the member may have: their own (the enquiry, chasers, replies
# that reopened it) and what was sent to them; never internal notes or contributions.
MEMBER_ROLES = ("enquiry", "chaser", "reopened", "response", "holding", "reply")
TEXT_CHARS = 5000


class NotYours(UserError):
    """No such case, or none this person may see or do this to: to them, the same."""


def member_case(session: Session, person_id: int | None, reference: str, what: Action) -> Case:
    """The case, when this person's standing on it allows `what`; else NotYours."""
    who = session.get(Person, person_id) if person_id is not None else None
    try:
        case = find_case(session, reference)
    except UserError:
        raise NotYours(f"no enquiry {reference.strip()} of yours") from None
    if not may(session, who, case, what):
        raise NotYours(f"no enquiry {reference.strip()} of yours")
    if what != Action.SEE:
        # A change: the row locked and read again, so of two clicks at once the second waits
        # for the first and sees what it did (PostgreSQL; SQLite's writers queue anyway).
        session.refresh(case, with_for_update=True)
    return case


def member_attachments(case_id: int | None) -> Any:
    """The case's files a member may download: kept, not held back from sending on
    (coordinator.kept_attachments, Attachment.held_reason), on the member's own messages
    or those sent to them."""
    return (
        coordinator.kept_attachments(case_id)
        .join(Message, col(Message.id) == col(Attachment.message_id))
        .where(col(Attachment.held_reason).is_(None), col(Message.role).in_(MEMBER_ROLES))
    )


def _clean(text: str) -> str | None:
    body = text.strip()
    if len(body) > TEXT_CHARS:
        raise UserError(f"Shorten the message to {TEXT_CHARS:,} characters or fewer")
    return body or None


def _record(session: Session, case: Case, actor: Actor, role: str, text: str | None) -> int:
    """The request's message on the case, as an email's would be (its role, its text)."""
    now = utcnow()
    return insert_row(
        session,
        Message,
        direction=Direction.IN,
        case_id=case.id,
        disposition=Disposition.CASE,
        sender=actor.name[:998],
        subject=f"{'Update requested' if role == 'chaser' else 'Reopened'} on {case.reference}",
        received_at=now,
        body_text=text or "",
        reply_text=text,
        role=role,
        created_at=now,
    )


@dataclass(frozen=True, slots=True)
class Requested:
    reference: str
    limit: str | None  # the chasers' limit reached (nobody told again), in words; None: told


@action
def request_update(
    session: Session, services: Services, reference: str, text: str, *, actor: Actor
) -> Requested:
    """The portal's "Request an update": a chaser, counted, told and limited as one by
    email (inbound.request_update)."""
    case = member_case(session, actor.person_id, reference, Action.REQUEST_UPDATE)
    if case.status not in (CaseStatus.NEW, CaseStatus.IN_PROGRESS):
        raise UserError(
            f"{case.reference} is {lifecycle.words(case.status)}: an update can be requested "
            "only while it is open"
        )
    body = _clean(text)
    message_id = _record(session, case, actor, "chaser", body)
    limit = inbound.request_update(
        session,
        services,
        case,
        sender=actor.name,
        actor=actor.shown,
        actor_id=actor.person_id,
        text=body,
        message_id=message_id,
    )
    return Requested(case.reference, limit)


def may_reopen(case: Case, calendar: WorkingCalendar, window: int, today: date) -> bool:
    """Whether a reply on this case now would reopen it (the email rule, lifecycle.reopens)."""
    if case.status != CaseStatus.COMPLETED or case.completed_at is None:
        return False
    since = calendar.working_days_between(calendar.local_date(case.completed_at), today)
    return lifecycle.reopens(since, window)


@action
def reopen(
    session: Session,
    services: Services,
    reference: str,
    text: str,
    *,
    actor: Actor,
    now: datetime | None = None,
) -> str:
    """The portal's Reopen: a completed case open again, as the member's reply would
    (`now`: the console's clock, which counts the window)."""
    case = member_case(session, actor.person_id, reference, Action.REOPEN)
    window = services.config.cases.reopen_working_days
    today = services.calendar.local_date(now or utcnow())
    if not may_reopen(case, services.calendar, window, today):
        if case.status != CaseStatus.COMPLETED:
            raise UserError(f"{case.reference} is {lifecycle.words(case.status)}, not completed")
        raise UserError(
            f"{case.reference} was completed more than {window} working days ago: "
            "raise a new enquiry instead"
        )
    body = _clean(text)
    message_id = _record(session, case, actor, "reopened", body)
    inbound.reopen_case(
        session,
        services,
        case,
        how="the member on-line",
        actor=actor.shown,
        actor_id=actor.person_id,
        text=body,
        message_id=message_id,
    )
    return case.reference


@action
def take_attachment(
    session: Session, services: Services, reference: str, attachment_id: int, *, actor: Actor
) -> coordinator.Taken:
    """One of the case's files the member may have, as a download (an event and an audit
    record, as for coordinators); any other id is not found."""
    case = member_case(session, actor.person_id, reference, Action.SEE)
    att = session.exec(
        member_attachments(case.id).where(col(Attachment.id) == attachment_id)
    ).first()
    return coordinator.hand_over(session, services, case, att, attachment_id, actor=actor)
