"""Erasing a case's content and keeping its statistical skeleton (invariant 7).

What stays on an erased case is everything the scrutiny report (console/reports.py), the
dashboard and the exports count: the reference, every date (received, acknowledged, due,
extended, first and last response, completed, satisfaction), the service area, directorate,
enquiry type and district, the member, the other members and the officers, the status, the
pause days, the chase and reopen counts and the satisfaction score. Each event keeps its
kind, time and actor; each message its direction, role, sender address, times, size and
Message-ID (so a mail fetched again from the mailbox's Processed folder is still known and
does not open a second case); each attachment row its type and size.

What goes: the case's subject and enquiry text, the reasons typed for an extension, a pause
or a closure, every event's detail (details quote subjects, names and reasons), every
message's subject, texts, display name, recipients, threading references and parser
defects, the raw email, the attachments' names and bytes, the copies of mail sent (their
subject and bytes), and the quarantined mail that pointed at the case. Text fields become
ERASED, never blank, so nobody reads an empty subject as "the member wrote none".

Bytes live in the blob store, possibly shared (the same attachment on two cases, a message
re-read after a quarantine): an erasure returns the digests it released, and `release_blobs`
removes those no row names any more, after the erasure's commit (store/blobs.py says why
that cannot race with a parse worker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import union, update
from sqlmodel import Session, col, select

from mailbridge.cases.records import add_event
from mailbridge.errors import UserError
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.store.models import (
    Attachment,
    Case,
    Event,
    Message,
    OutboxMessage,
    OutboxStatus,
    ProcessingFailure,
    QuarantineItem,
)

ERASED = "(erased)"
CONTENT_ERASED = "content_erased"  # the event an erasure leaves on the case
NOT_SENT = "not sent: the case's content was erased before it went"


class OnHold(UserError):
    """A case on legal hold is never erased."""


@dataclass
class Erased:
    """What one erasure changed, and the blob digests it released."""

    reference: str
    messages: int = 0
    attachments: int = 0
    sent_copies: int = 0
    quarantined: int = 0
    event_details: int = 0
    released: set[str] = field(default_factory=set)


def refuse_held(case: Case) -> None:
    if case.held_at is not None:
        raise OnHold(
            f"{case.reference} is on legal hold since {case.held_at:%Y-%m-%d} "
            f"({case.hold_reason}); nothing was erased. `mailbridge case release "
            f"{case.reference}` ends the hold, when the reason for it has gone"
        )


def erase_case(session: Session, case: Case, *, why: str, actor: Actor, now: datetime) -> Erased:
    """Erase the case's content in the session's transaction, leaving the skeleton, one
    `content_erased` event saying why (`why` holds no resident's data: "retention: ...",
    "request: ...") and an `erase.case` audit record. Raises OnHold for a held case."""
    refuse_held(case)
    done = Erased(case.reference)
    messages = session.exec(select(Message).where(Message.case_id == case.id)).all()
    for message in messages:
        done.released |= erase_message(session, message, now)
    done.messages = len(messages)
    ids = [m.id for m in messages]
    attachments = session.exec(
        select(Attachment).where(
            (Attachment.case_id == case.id) | col(Attachment.message_id).in_(ids)
        )
    ).all()
    for attachment in attachments:
        done.released |= erase_attachment(session, attachment)
    done.attachments = len(attachments)
    copies = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case.id)).all()
    for copy in copies:
        erase_sent_copy(session, copy, now)
    done.sent_copies = len(copies)
    items = session.exec(select(QuarantineItem).where(QuarantineItem.case_id == case.id)).all()
    for item in items:
        done.released |= erase_quarantined(session, item, now)
    done.quarantined = len(items)
    done.event_details = _erase_event_details(session, case)
    case.subject = ERASED
    case.body_text = ERASED
    for name in ("extension_reason", "pause_reason", "closed_reason"):
        if getattr(case, name):
            setattr(case, name, ERASED)
    case.content_erased_at = now
    session.add(case)
    session.flush()
    add_event(session, case.id, CONTENT_ERASED, why, actor=actor.name)
    audit.record(session, actor, "erase.case", case_reference=case.reference, detail=why, at=now)
    return done


def erase_message(session: Session, message: Message, now: datetime) -> set[str]:
    """A message's content erased (its attachments are the caller's); its raw mail's digest."""
    released = {message.raw_sha256} if message.raw_sha256 else set()
    message.subject = ERASED
    message.body_text = ERASED
    message.reply_text = ERASED if message.reply_text else None
    message.sender_name = None
    message.recipients = ""
    message.references = None
    message.defects = None
    message.raw_sha256 = None
    message.erased_at = now
    session.add(message)
    return released


def erase_attachment(session: Session, attachment: Attachment) -> set[str]:
    """An attachment's name and bytes erased; its digest."""
    released = {attachment.sha256} if attachment.sha256 else set()
    attachment.filename = ERASED
    attachment.sha256 = None
    for name in ("refused_reason", "held_reason", "scan_result"):  # may quote the file name
        if getattr(attachment, name):
            setattr(attachment, name, ERASED)
    session.add(attachment)
    return released


def erase_sent_copy(session: Session, copy: OutboxMessage, now: datetime) -> None:
    """The rendered email goes; the row stays as the record that mail was (or was not) sent.
    One still waiting is not sent at all: its text is gone."""
    copy.raw = b""
    copy.subject = ERASED
    copy.erased_at = now
    if copy.status == OutboxStatus.PENDING:
        copy.status = OutboxStatus.FAILED
        copy.last_error = NOT_SENT
    session.add(copy)


def erase_quarantined(session: Session, item: QuarantineItem, now: datetime) -> set[str]:
    """A quarantined message's sender, subject, reason, traceback and raw mail erased (its
    reason code stays, for the counts); its message row too. Its raw mail's digest."""
    released = {item.raw_sha256} if item.raw_sha256 else set()
    item.raw_sha256 = ""
    item.sender = ERASED
    item.subject = ERASED
    item.reason = ERASED
    item.traceback = None
    item.erased_at = now
    session.add(item)
    if item.message_id is not None:
        message = session.get(Message, item.message_id)
        if message is not None and message.erased_at is None:
            released |= erase_message(session, message, now)
    return released


def _erase_event_details(session: Session, case: Case) -> int:
    events = Event.__table__.c  # type: ignore[attr-defined]
    result = session.connection().execute(
        update(Event.__table__)  # type: ignore[arg-type]
        .where(
            events.case_id == case.id,
            events.detail != "",
            events.detail != ERASED,
            events.kind != CONTENT_ERASED,  # an earlier erasure's reason stays
        )
        .values(detail=ERASED)
    )
    return int(result.rowcount or 0)


def still_named(session: Session, digests: set[str]) -> set[str]:
    """The digests some row still names: a message's raw mail, an attachment, a quarantined
    message, a failed message waiting for its retry."""
    wanted = list(digests)
    named = union(
        select(Message.raw_sha256).where(col(Message.raw_sha256).in_(wanted)),
        select(Attachment.sha256).where(col(Attachment.sha256).in_(wanted)),
        select(QuarantineItem.raw_sha256).where(col(QuarantineItem.raw_sha256).in_(wanted)),
        select(ProcessingFailure.raw_sha256).where(col(ProcessingFailure.raw_sha256).in_(wanted)),
    )
    return {row[0] for row in session.connection().execute(named)}


def release_blobs(services: Services, digests: set[str]) -> set[str]:
    """Remove from the blob store the released digests nothing names any more (call it after
    the erasure committed); returns those removed."""

    def named(candidates: set[str]) -> set[str]:
        with Session(services.engine) as session:
            return still_named(session, candidates)

    return services.blobs.remove({d for d in digests if d}, named)
