"""How the journey of one email ends: each step either fills in the work item or returns one
of these, and the processor logs it and moves the mail where `destination` says (after the
batch's commit; None: it stays in the inbox)."""

from __future__ import annotations

from dataclasses import dataclass

from mailbridge.mailbox.base import Destination


@dataclass(frozen=True, slots=True)
class CaseOpened:
    reference: str
    destination: Destination | None = Destination.PROCESSED


@dataclass(frozen=True, slots=True)
class Quarantined:
    quarantine_id: int
    code: str
    reason: str
    destination: Destination | None = Destination.QUARANTINE


@dataclass(frozen=True, slots=True)
class AlreadyHandled:
    """A re-delivery or re-fetch: its effect was committed before, so only move it."""

    dedupe_key: str
    destination: Destination | None


@dataclass(frozen=True, slots=True)
class CaseUpdated:
    """The message belongs to a case and moved it along (a reply, chaser, note, ...)."""

    reference: str
    action: str
    destination: Destination | None = Destination.PROCESSED


@dataclass(frozen=True, slots=True)
class Handled:
    """Dealt with, no case concerned: a status request, an auto-reply to nothing of ours."""

    action: str
    destination: Destination | None = Destination.PROCESSED


@dataclass(frozen=True, slots=True)
class Failed:
    """Processing raised; the message stays in the inbox to be tried again."""

    error: str
    attempts: int
    destination: Destination | None = None


Outcome = CaseOpened | CaseUpdated | Handled | Quarantined | AlreadyHandled | Failed


def committed(outcome: Outcome) -> dict[str, str]:
    """What was committed for a message, as its log lines say it: the case reference and
    what became of the message, nothing the email itself says."""
    if isinstance(outcome, CaseOpened):
        return {"case": outcome.reference, "outcome": "case"}
    if isinstance(outcome, CaseUpdated):
        return {"case": outcome.reference, "outcome": outcome.action}
    if isinstance(outcome, Handled):
        return {"outcome": outcome.action}
    if isinstance(outcome, Quarantined):
        return {"outcome": "quarantined", "reason_code": outcome.code}
    if isinstance(outcome, AlreadyHandled):
        return {"outcome": "duplicate"}
    return {"outcome": "failed"}
