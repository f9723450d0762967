"""The "overdue" webhook: a case passing its deadline changes nothing on the case, so no
case event makes it; the deadlines tick queues it, once per receiver, case and deadline
(an extension and a second deadline passing make a second one). See docs/webhooks.md.
"""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import String, cast, exists, literal
from sqlmodel import col, select

from mailbridge.console.filters import effective_due, overdue_clause
from mailbridge.delivery import webhooks
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.models import Case, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

# Cases queued per tick at most: the first tick after webhooks are configured may find
# thousands overdue, and the rest wait for the next tick rather than hold up the mail.
PER_TICK = 200


def queue_overdue(services: Services, today: date, *, limit: int = PER_TICK) -> int:
    """Queue "overdue" for open, running cases whose deadline is before `today` (council
    date) that a receiver has not had it for; how many deliveries were queued."""
    names = [w.name for w in services.config.webhooks if "overdue" in w.events]
    if not names:
        return 0
    queued = 0
    with transaction(services.engine) as session:
        for name in names:
            key = (
                literal(f"{name}:overdue:")
                + col(Case.reference)
                + literal(":")
                + cast(effective_due(), String)
            )
            told = exists().where(col(WebhookDelivery.dedupe_key) == key)
            cases = session.exec(
                select(Case).where(overdue_clause(today), ~told).order_by(col(Case.id)).limit(limit)
            ).all()
            now = utcnow()
            for case in cases:
                queued += webhooks.record_overdue(session, [name], case, now)
    if queued:
        log.info("overdue webhooks queued", extra={"deliveries": queued})
    return queued
