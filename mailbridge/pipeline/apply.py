"""The last step: a Decision's whole effect, in the batch's transaction.

`EFFECTS` is the one table from each kind of decision (cases/decisions.py) to what carries
it out: opening a case, quarantining the message, noting a bounce, or one of the case
updates in cases/inbound.py. A new kind of decision needs a row here; a test checks that
every kind has one (docs/architecture.md, invariants 1 to 3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlmodel import select

from mailbridge.cases import floods, inbound
from mailbridge.cases.decisions import (
    Chase,
    Contribution,
    CoordinatorNote,
    HoldFlood,
    NoteAutoReply,
    NoteBounce,
    OfficerReply,
    OpenCase,
    Quarantine,
    RecordSatisfaction,
    Reopen,
    StatusRequest,
)
from mailbridge.cases.records import Inbound, add_event
from mailbridge.pipeline import quarantine
from mailbridge.pipeline.outcomes import CaseOpened, CaseUpdated, Handled, Outcome, Quarantined
from mailbridge.pipeline.work import Work
from mailbridge.services import Services
from mailbridge.store.models import Message

log = logging.getLogger(__name__)
Effect = Callable[[Work, Services, Inbound, Any], Outcome]


def apply(work: Work, services: Services) -> Outcome:
    """The whole effect of the message, in the batch's transaction."""
    assert work.decision is not None  # the route step ran
    session = work.session
    size = work.oversize if work.oversize is not None else len(work.raw)
    item = Inbound(work.email, work.received_at, size, work.reply_text)
    if work.retry_of is not None:
        quarantine.release_for_retry(session, work.retry_of, work.dedupe_key, accepted=work.vouched)
    if work.facts is None or work.dedupe_key in work.facts.failing:
        quarantine.forget_failure(session, work.dedupe_key)
    outcome = EFFECTS[type(work.decision)](work, services, item, work.decision)
    if work.reused_message_id and isinstance(outcome, CaseOpened | CaseUpdated):
        _note_reuse_on_case(work, outcome.reference)
    return outcome


def reuse_note(work: Work) -> str | None:
    """What the case or the quarantine reason says when an earlier, different email used
    this message's Message-ID: the two are separate messages, not a copy of one."""
    if not work.reused_message_id:
        return None
    return f"Message-ID <{work.reused_message_id}> was used before by a different message"


def _note_reuse_on_case(work: Work, reference: str) -> None:
    row = work.session.exec(
        select(Message.id, Message.case_id).where(Message.dedupe_key == work.dedupe_key)
    ).first()
    if row is None or row[1] is None:
        return
    message_row, case_id = row
    note = f"{reuse_note(work)}; this one was processed as a new message"
    add_event(work.session, case_id, "message_id_reused", note, message_id=message_row)
    log.info("message id reused", extra={"case": reference})


def _open_case(work: Work, services: Services, item: Inbound, decision: OpenCase) -> Outcome:
    case = inbound.open_case(work.session, services, item, decision)
    return CaseOpened(case.reference)


def _quarantine(work: Work, services: Services, item: Inbound, decision: Quarantine) -> Outcome:
    entry = quarantine.keep(
        work.session,
        item=item,
        dedupe_key=work.dedupe_key,
        raw_sha256=work.raw_sha256,
        code=decision.code,
        reason="; ".join(filter(None, (decision.reason, reuse_note(work)))),
        case_id=decision.case_id,
    )
    if decision.answer_stranger:
        inbound.answer_stranger(work.session, services, item)
    if decision.tell_too_large:
        inbound.tell_too_large(work.session, services, item)
    return Quarantined(entry.id or 0, decision.code, entry.reason)


def _note_bounce(work: Work, services: Services, item: Inbound, decision: NoteBounce) -> Outcome:
    """A bounce of mail we never sent is quarantined: a forged one must flag nobody."""
    applied = inbound.note_bounce(work.session, services, item, decision)
    if applied is None:
        unmatched = Quarantine(
            "bounce_unmatched",
            "a delivery failure report for a message mailbridge did not send "
            f"({decision.bounce.reason})",
        )
        return _quarantine(work, services, item, unmatched)
    return _outcome(applied)


def _hold_flood(work: Work, services: Services, item: Inbound, decision: HoldFlood) -> Outcome:
    """Kept aside like any quarantined message; the coordinators hear of it once a day."""
    outcome = _quarantine(work, services, item, Quarantine(floods.FLOOD, decision.reason))
    floods.tell_coordinators(work.session, services, decision, item.received_at)
    return outcome


def _on_case(effect: Callable[..., inbound.Applied]) -> Effect:
    """A case update of cases/inbound.py as an effect of the table."""

    def run(work: Work, services: Services, item: Inbound, decision: Any) -> Outcome:
        return _outcome(effect(work.session, services, item, decision))

    return run


def _outcome(applied: inbound.Applied) -> Outcome:
    if applied.reference is None:
        return Handled(applied.action)
    return CaseUpdated(applied.reference, applied.action)


EFFECTS: dict[type, Effect] = {
    OpenCase: _open_case,
    Quarantine: _quarantine,
    NoteBounce: _note_bounce,
    HoldFlood: _hold_flood,
    StatusRequest: _on_case(inbound.status_request),
    Chase: _on_case(inbound.chase),
    Reopen: _on_case(inbound.reopen),
    RecordSatisfaction: _on_case(inbound.record_satisfaction),
    OfficerReply: _on_case(inbound.officer_reply),
    Contribution: _on_case(inbound.contribution),
    CoordinatorNote: _on_case(inbound.coordinator_note),
    NoteAutoReply: _on_case(inbound.note_auto_reply),
}
