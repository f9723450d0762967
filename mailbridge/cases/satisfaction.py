"""The satisfaction question: asked once per completion, answered with a number from 1 to 5.

When a case is completed (the lead officer's response, `case status REF completed`) and
`[satisfaction].ask` is on, the member gets one short email asking for a number from 1 to 5.
Its idempotency key names the case and how often it was reopened, so each completion asks
once and a reopened-then-completed case asks again.

A reply whose new text is only a rating — "4", "4/5", "5 - thank you", "Rating: 3", with at
most a short sign-off under it — is an answer (`rating_of`, pure): routing records it on the
case without reopening it. Anything longer is a person writing, and the usual rules apply.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlmodel import Session, select

from mailbridge.cases.records import add_event
from mailbridge.delivery import queue
from mailbridge.services import Services
from mailbridge.store.models import Case, OutboxMessage, Person

log = logging.getLogger(__name__)

KIND = "satisfaction_question"
LOWEST, HIGHEST = 1, 5

# The first line: an optional label, the number, an optional "/5" or "out of 5" and "stars",
# then nothing, or a short comment after punctuation or a thank-you ("5 thanks").
_RATING_LINE = re.compile(
    r"""^(?:(?:rating|score|satisfaction|mark)\s*[:=-]?\s*)?
        (?P<n>\d+)
        (?:\s*(?:/|out\s+of|of)\s*5)?
        (?:\s*stars?)?
        (?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE,
)
_COMMENT = re.compile(
    r"^(?:\s*[-\u2013\u2014,.!:;)]|\s+(?=thank|many thanks|cheers))", re.IGNORECASE
)
SHORT = 40  # characters: a comment or a sign-off line, never a message
SIGN_OFF_LINES = 3


def rating_of(text: str | None) -> int | None:
    """The rating a reply's new text gives, or None when it says more than a rating."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    found = _RATING_LINE.match(lines[0])
    if found is None:
        return None
    number, rest = int(found["n"]), found["rest"]
    if not LOWEST <= number <= HIGHEST:
        return None
    if rest.strip() and (not _COMMENT.match(rest) or not _short(rest)):
        return None
    sign_off = lines[1:]
    if len(sign_off) > SIGN_OFF_LINES or not all(_short(line) for line in sign_off):
        return None
    return number


def _short(text: str) -> bool:
    """A comment or sign-off, not a message: short and without figures."""
    return len(text.strip()) <= SHORT and not any(ch.isdigit() for ch in text)


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
