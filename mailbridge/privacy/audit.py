"""The audit of access (invariant 9): who read, exported, reported on or erased personal
data, when, and from where. Changes to a case are its events; reads are recorded here.

Append-only: this module only inserts. The record is written in the transaction of the
access it records where there is one (an erasure), so the two stand or fall together.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, col, select

from mailbridge.store.models import AuditRecord, utcnow

EVENT_ACTOR = 254  # models.Event.actor


class Channel(StrEnum):
    """The door an access came through."""

    CLI = "cli"
    WEB = "web"
    API = "api"
    SERVICE = "service"  # the daemon itself (the retention run)


@dataclass(frozen=True, slots=True)
class Actor:
    """A person (or the service) as the audit and a case's events name them.

    `name` is a directory address when the person is known to the directory (`person_id`),
    or `os:<user>` for an operating-system account no config maps to a person.
    `origin` says from where: the host and OS account, or the client's address.
    """

    name: str
    channel: str
    origin: str = ""
    person_id: int | None = None

    @property
    def shown(self) -> str:
        """How the case's timeline and the audit show this actor: what a case event's
        `actor` holds when a person changes a case (at most EVENT_ACTOR characters)."""
        shown = f"{self.name} ({self.channel}{', ' + self.origin if self.origin else ''})"
        return shown if len(shown) <= EVENT_ACTOR else shown[: EVENT_ACTOR - 1] + ")"


SERVICE = Actor(name="mailbridge", channel=Channel.SERVICE)


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    case_reference: str | None = None,
    detail: str = "",
    at: datetime | None = None,
) -> None:
    """Add one audit record to the session's transaction."""
    session.add(
        AuditRecord(
            at=at or utcnow(),
            actor=actor.name,
            actor_id=actor.person_id,
            channel=actor.channel,
            origin=actor.origin[:500],
            action=action,
            case_reference=case_reference,
            detail=detail,
        )
    )


def records(
    session: Session,
    *,
    case_reference: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    actions: Collection[str] = (),
    channel: Channel | None = None,
) -> list[AuditRecord]:
    """The audit, oldest first, narrowed by case, actor, start (`since`, included), end
    (`until`, excluded), any of `actions` and the door; one query."""
    query = select(AuditRecord).order_by(col(AuditRecord.at), col(AuditRecord.id))
    if case_reference:
        query = query.where(AuditRecord.case_reference == case_reference)
    if actor:
        query = query.where(AuditRecord.actor == actor.lower())
    if since:
        query = query.where(col(AuditRecord.at) >= since)
    if until:
        query = query.where(col(AuditRecord.at) < until)
    if actions:
        query = query.where(col(AuditRecord.action).in_(sorted(set(actions))))
    if channel:
        query = query.where(AuditRecord.channel == channel.value)
    return list(session.exec(query))
