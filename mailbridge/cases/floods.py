"""New cases beyond what one person writes: 1,000 emails with a forged member From opened
1,000 cases and sent 1,000 acknowledgements in 9.6 s (issue #13).

A member or delegate opens at most `[limits] new_cases_per_sender_per_hour` and `_per_day`
cases, counted in the database by the person who submitted them and the time their mail
arrived, so the count includes cases opened earlier in the same batch and survives a
restart. Mail beyond it is quarantined as `flood`, and coordinators are told once per
sender per day (the council's day the mail arrived), a claim recorded in `scheduled_send`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlmodel import Session

from mailbridge.cases.correspondence import person
from mailbridge.cases.decisions import HoldFlood, OpenCase
from mailbridge.config import LimitsConfig
from mailbridge.delivery import queue
from mailbridge.delivery.limits import Window, per_hour_and_day, reached
from mailbridge.services import Services
from mailbridge.store.db import insert_or_skip
from mailbridge.store.models import Case, ScheduledSend, utcnow

log = logging.getLogger(__name__)

FLOOD = "flood"
_SENDS = ScheduledSend.__table__  # type: ignore[attr-defined]
_SUBMITTED_SINCE = select(func.count()).where(
    Case.submitter_id == bindparam("person"),  # type: ignore[arg-type]
    Case.received_at > bindparam("since"),  # type: ignore[arg-type,operator]
)


def _windows(limits: LimitsConfig) -> tuple[Window, Window]:
    hour, day = limits.new_cases_per_sender_per_hour, limits.new_cases_per_sender_per_day
    return per_hour_and_day(hour, day)


def limit(
    session: Session, limits: LimitsConfig, decision: OpenCase, received_at: datetime, sender: str
) -> OpenCase | HoldFlood:
    """The new case, unless its sender already opened as many as the limits allow."""
    spans = _windows(limits)
    counts = new_cases_within(session, decision.submitter_id, spans, received_at)
    return hold(decision, spans, counts, sender)


def new_cases_within(
    session: Session, submitter_id: int, spans: Sequence[Window], at: datetime
) -> list[int]:
    """Cases this person submitted whose mail arrived within each window before `at`."""
    conn = session.connection()
    return [
        int(conn.execute(_SUBMITTED_SINCE, {"person": submitter_id, "since": at - w.span}).scalar())
        for w in spans
    ]


def hold(
    decision: OpenCase, spans: Sequence[Window], counts: Sequence[int], sender: str
) -> OpenCase | HoldFlood:
    """The new case, or the flood it is part of when its sender's limit is reached."""
    full = reached(spans, counts)
    if full is None:
        return decision
    return HoldFlood(
        decision,
        f"too many new cases from {sender}: {full}; a coordinator can accept it to open its case",
    )


def tell_coordinators(
    session: Session, services: Services, decision: HoldFlood, received_at: datetime
) -> None:
    """The coordinators' notice, once per sender per day, whichever message claims it first."""
    to = queue.coordinator_addresses(services)
    submitter_id = decision.case.submitter_id
    day = services.calendar.local_date(received_at)
    conn = session.connection()
    key = f"flood:{submitter_id}:{day.isoformat()}"
    claimed = conn.execute(
        insert_or_skip(_SENDS, ("key",), conn.dialect.name, returning="key"),
        {"key": key, "kind": "flood_notice", "case_id": None, "outcome": "queued",
         "done_at": utcnow()},
    ).scalar()  # fmt: skip
    if claimed is None or not to:
        return
    submitter = person(session, submitter_id)
    member = person(session, decision.case.member_id)
    queued = queue.queue_mail(
        session,
        services,
        kind="flood_notice",
        template="flood_notice",
        to=to,
        context={
            "submitter": submitter,
            "member": member,
            "day": day,
            "limits": services.config.limits,
            "reason": decision.reason,
        },
        automatic=True,
        idempotency_key=key,
    )
    if queued is None:
        conn.execute(update(_SENDS).where(_SENDS.c.key == key).values(outcome="withheld"))
    log.warning("new cases held as a flood", extra={"person": submitter_id})
