"""A legal hold on a case (`case hold` / `case release`): while it lasts, neither the
retention policy nor a request erases the case's content (privacy/erasure.py refuses).

For litigation, a complaint to the Ombudsman, an information request being answered: the
reason says which, and is kept on the case, in its events and in the audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailbridge.cases import lifecycle
from mailbridge.cases.records import add_event, find_case
from mailbridge.errors import UserError
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.models import utcnow

HELD = "legal_hold"
RELEASED = "legal_hold_released"
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Hold:
    reference: str
    reason: str
    since: datetime
    by: str


def hold(services: Services, reference: str, reason: str, *, actor: Actor, now: datetime) -> Hold:
    """Put the case on legal hold, with the reason."""
    why = " ".join(reason.split())
    if not why:
        raise UserError("--reason is empty: say why the case is held (e.g. the claim's number)")
    if len(why) > MAX_REASON:
        raise UserError(f"--reason is longer than {MAX_REASON} characters")
    with transaction(services.engine) as session:
        case = find_case(session, reference)
        if case.held_at is not None:
            raise UserError(
                f"{case.reference} is on legal hold already, since {case.held_at:%Y-%m-%d} "
                f"({case.hold_reason}); release it first to give another reason"
            )
        case.hold_reason, case.held_at, case.held_by = why, now, actor.name
        lifecycle.touch(case, utcnow())
        session.add(case)
        session.flush()
        add_event(session, case.id, HELD, f"legal hold: {why}", actor=actor.name)
        audit.record(session, actor, "case.hold", case_reference=case.reference, detail=why)
        return Hold(case.reference, why, now, actor.name)


def release(services: Services, reference: str, *, actor: Actor) -> Hold:
    """End the case's legal hold; returns the hold that ended."""
    with transaction(services.engine) as session:
        case = find_case(session, reference)
        if case.held_at is None:
            raise UserError(f"{case.reference} is not on legal hold")
        ended = Hold(case.reference, case.hold_reason or "", case.held_at, case.held_by or "")
        case.hold_reason = case.held_at = case.held_by = None
        lifecycle.touch(case, utcnow())
        session.add(case)
        session.flush()
        add_event(
            session,
            case.id,
            RELEASED,
            f"legal hold released (held since {ended.since:%Y-%m-%d}: {ended.reason})",
            actor=actor.name,
        )
        audit.record(
            session, actor, "case.release", case_reference=case.reference, detail=ended.reason
        )
        return ended
