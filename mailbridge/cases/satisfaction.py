"""The satisfaction question: asked once per completion, answered with a number from 1 to 5.

When a case is completed (the lead officer's response, `case status REF completed`) and
`[satisfaction].ask` is on, the member gets one short email asking for a number from 1 to 5.
Its idempotency key names the case and how often it was reopened, so each completion asks
once and a reopened-then-completed case asks again.

A reply whose new text is only a rating is an answer (`mail.replies.rating_of`, pure):
routing records it here, on the case, without reopening it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, select

from mailbridge.cases.records import add_event
from mailbridge.delivery import queue
from mailbridge.mail.replies import HIGHEST
from mailbridge.services import Services
from mailbridge.store.models import Case, OutboxMessage, Person

log = logging.getLogger(__name__)

KIND = "satisfaction_question"


def question_key(case: Case) -> str:
    return f"satisfaction:{case.reference}:{case.reopened_count}"


def ask(session: Session, services: Services, case: Case, thread: queue.Thread) -> bool:
    """Queue the question to the member, on the case's thread, when the council asks it and
    this completion was not asked yet; True when it was queued."""
    if not services.config.satisfaction.ask:
        return False
    key = question_key(case)
    asked = session.exec(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))
    if asked.first() is not None:
        return False
    member = session.get(Person, case.member_id)
    assert member is not None
    queued = queue.queue_mail(
        session,
        services,
        kind=KIND,
        template=KIND,
        to=[member.email],
        thread=thread,
        context={"case": case, "member": member},
        automatic=True,
        idempotency_key=key,
    )
    if queued is not None:
        log.info("satisfaction question queued", extra={"case": case.reference})
    return queued is not None


def record(
    session: Session,
    case: Case,
    rating: int,
    *,
    at: datetime,
    actor: str,
    message_id: int | None = None,
) -> None:
    """The member's answer on the case (a later answer replaces an earlier one)."""
    before = case.satisfaction
    case.satisfaction = rating
    case.satisfaction_at = at
    session.add(case)
    detail = f"satisfaction {rating} of {HIGHEST} recorded"
    if before is not None and before != rating:
        detail += f" (was {before})"
    add_event(session, case.id, "satisfaction_recorded", detail, actor=actor, message_id=message_id)
