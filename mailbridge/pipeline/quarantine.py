"""Messages kept aside, all in one place: keeping one with its reason (a routing decision,
or processing that failed too often), the failures waiting to be retried, and a
coordinator's list, retry and accept.

A quarantined message is never lost: its raw bytes stay in the blob store, and its dedupe
key keeps a re-fetch from opening a case meanwhile. A retry runs it through the pipeline
again and replaces the quarantined record in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, func, not_
from sqlmodel import Session, col, select

from mailbridge.cases import inbound
from mailbridge.cases.decisions import Contribution
from mailbridge.cases.facts import load_cases
from mailbridge.cases.records import Inbound, add_event, record_inbound
from mailbridge.errors import UserError
from mailbridge.mail import replies
from mailbridge.mail.parsing import ParsedEmail, parse_header, previous_key
from mailbridge.pipeline.outcomes import CaseOpened, CaseUpdated, Failed, Outcome, Quarantined
from mailbridge.pipeline.parse import Limits, parse_or_none, parse_raw
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.models import (
    Case,
    Disposition,
    Message,
    ProcessingFailure,
    QuarantineItem,
    QuarantineStatus,
    utcnow,
)

log = logging.getLogger(__name__)

TOO_LARGE = "too_large"  # read by its header alone: no bytes kept to retry from


def keep(
    session: Session,
    *,
    item: Inbound | None,
    dedupe_key: str,
    raw_sha256: str,
    code: str,
    reason: str,
    traceback: str | None = None,
    sender: str = "",
    subject: str = "",
    case_id: int | None = None,
) -> QuarantineItem:
    """Keep a message aside with its reason; a coordinator can retry, accept or release it."""
    message_id = record_inbound(session, item, Disposition.QUARANTINED, None) if item else None
    entry = QuarantineItem(
        message_id=message_id,
        dedupe_key=dedupe_key,
        raw_sha256=raw_sha256,
        reason_code=code,
        reason=reason,
        sender=(item.parsed.from_address or "") if item else sender,
        subject=item.parsed.subject[:998] if item else subject[:998],
        traceback=traceback,
        case_id=case_id,
    )
    session.add(entry)
    forget_failure(session, dedupe_key)
    session.flush()
    log.debug("message quarantined", extra={"quarantine_id": entry.id, "reason_code": code})
    return entry


def forget_failure(session: Session, dedupe_key: str) -> None:
    """A message that finally got an outcome no longer waits for a retry, under its key or
    the key it had before keys held the content (a failure left from before the upgrade
    would otherwise wait for ever, and make every pass scan the whole mailbox)."""
    table = ProcessingFailure.__table__  # type: ignore[attr-defined]
    keys = [k for k in (dedupe_key, previous_key(dedupe_key)) if k]
    session.connection().execute(table.delete().where(table.c.dedupe_key.in_(keys)))


def release_for_retry(
    session: Session, quarantine_id: int, dedupe_key: str, *, accepted: bool = False
) -> None:
    """A retried message replaces its quarantined record in the same transaction;
    `accepted`: a coordinator vouched for its sender."""
    entry = session.get(QuarantineItem, quarantine_id)
    if entry is None:
        return
    old_message_id = entry.message_id
    entry.status = QuarantineStatus.ACCEPTED if accepted else QuarantineStatus.RETRIED
    entry.resolved_at = utcnow()
    entry.message_id = None
    session.add(entry)
    session.flush()
    if old_message_id is not None:
        old = session.get(Message, old_message_id)
        # Its own row: under this key, or the same bytes under the bare Message-ID that was
        # the key before keys held the content.
        if (
            old is not None
            and old.case_id is None
            and (old.dedupe_key == dedupe_key or old.raw_sha256 == entry.raw_sha256)
        ):
            session.delete(old)
            session.flush()


def mark_accepted(session: Session, quarantine_id: int, reference: str, *, actor: str) -> None:
    """A retried message a coordinator accepted: so recorded, on the item and its case."""
    entry = session.get(QuarantineItem, quarantine_id)
    assert entry is not None  # released for the retry in this transaction
    entry.status = QuarantineStatus.ACCEPTED
    session.add(entry)
    session.flush()
    case_id = session.exec(select(Case.id).where(Case.reference == reference)).one()
    add_event(
        session, case_id, "quarantine_accepted",
        f"quarantined message {quarantine_id} from {entry.sender} accepted by a coordinator "
        f"({entry.reason_code})",
        actor=actor,
    )  # fmt: skip


def record_failure(
    services: Services,
    *,
    dedupe_key: str,
    raw_sha256: str,
    parsed: ParsedEmail | None,
    error: str,
    trace: str,
) -> Failed | Quarantined:
    """A message whose processing raised: kept with its traceback to be tried again on the
    next pass, and quarantined with the reason once it has failed the configured number of
    times (docs/architecture.md, invariant 5). Its own transaction: the batch's rolled back."""
    limit = services.config.cases.max_processing_attempts
    with services.blobs.keeping(), transaction(services.engine) as session:
        failure = session.get(ProcessingFailure, dedupe_key)
        attempts = (failure.attempts if failure else 0) + 1
        if attempts < limit:
            failure = failure or ProcessingFailure(dedupe_key=dedupe_key, raw_sha256=raw_sha256)
            failure.attempts = attempts
            failure.last_error = error
            failure.traceback = trace
            failure.last_failed_at = utcnow()
            session.add(failure)
            return Failed(error, attempts)
        if failure is not None:
            session.expunge(failure)  # keep() deletes its row
        entry = keep(
            session,
            item=None,
            dedupe_key=dedupe_key,
            raw_sha256=raw_sha256,
            code="processing_failed",
            reason=f"processing failed {attempts} times; last error: {error}",
            traceback=trace,
            sender=(parsed.from_address or "") if parsed else "",
            subject=parsed.subject if parsed else "",
        )
        return Quarantined(entry.id or 0, entry.reason_code, entry.reason)


class Listing(StrEnum):
    """Which quarantined messages a list shows."""

    WAITING = "waiting"  # for a coordinator: not retried, accepted, released or erased
    RESOLVED = "resolved"
    ALL = "all"


def _listed(which: Listing) -> ColumnElement[bool] | None:
    # An erased one waits for nothing: nothing is left of it.
    waiting = and_(
        col(QuarantineItem.status) == QuarantineStatus.WAITING,
        col(QuarantineItem.erased_at).is_(None),
    )
    if which == Listing.WAITING:
        return waiting
    if which == Listing.RESOLVED:
        return not_(waiting)
    return None


def list_items(services: Services, *, include_resolved: bool = False) -> list[QuarantineItem]:
    """Every quarantined message waiting (or every one), oldest first."""
    with Session(services.engine) as session:
        query = select(QuarantineItem).order_by(col(QuarantineItem.id))
        where = _listed(Listing.ALL if include_resolved else Listing.WAITING)
        if where is not None:
            query = query.where(where)
        return list(session.exec(query).all())


def get_item(services: Services, item_id: int) -> QuarantineItem:
    with Session(services.engine) as session:
        item = session.get(QuarantineItem, item_id)
    if item is None:
        raise UserError(
            f"no quarantined message has id {item_id} (see `mailbridge quarantine list`)"
        )
    return item


@dataclass(frozen=True, slots=True)
class Listed:
    items: list[QuarantineItem]  # newest first
    total: int  # every page together


def shown_items(
    services: Services,
    actor: Actor,
    *,
    which: Listing = Listing.WAITING,
    limit: int | None = None,
    offset: int = 0,
) -> Listed:
    """`quarantine list` and the console's quarantine page for a person: newest first, a
    page of `limit` from `offset` (all when None), with how many there are in all; senders
    and subjects, so an access in the audit."""
    where = _listed(which)
    query = select(QuarantineItem).order_by(col(QuarantineItem.id).desc())
    counted = select(func.count()).select_from(QuarantineItem)
    if where is not None:
        query, counted = query.where(where), counted.where(where)
    with Session(services.engine) as session:
        items = list(session.exec(query.offset(offset).limit(limit)).all())
        total = session.exec(counted).one() if limit is not None else len(items)
    shown = {Listing.WAITING: "waiting", Listing.RESOLVED: "resolved"}.get(
        which, "waiting and resolved"
    )
    page = f"from {offset + 1} ({limit} a page); " if limit is not None else ""
    with transaction(services.engine) as session:
        audit.record(
            session, actor, "quarantine.list", detail=f"{shown}; {page}{len(items)} messages shown"
        )
    return Listed(items, total)


@dataclass(frozen=True, slots=True)
class Letter:
    """What a quarantined message says, as a coordinator reads it before acting on it."""

    headers: list[tuple[str, str]]  # (name, value), in the order a mail client shows them
    text: str  # the plain text (an HTML-only message's converted), never its HTML
    attachments: list[tuple[str, str, int]]  # (file name, type, size in bytes)
    header_only: str | None = None  # why only the header was read
    unreadable: str | None = None  # why nothing of the message can be shown


@dataclass(frozen=True, slots=True)
class Shown:
    item: QuarantineItem
    case_reference: str | None  # the case it points at
    letter: Letter


SHOWN_HEADERS = (
    "from", "sender", "reply-to", "to", "cc", "date", "subject", "message-id", "in-reply-to",
    "return-path", "auto-submitted",
)  # fmt: skip
# Read by their header alone: reading such a message whole is what it was kept aside for.
HEADER_ONLY = frozenset({"too_complex", TOO_LARGE})


def read_letter(services: Services, item: QuarantineItem) -> Letter:
    """The stored message, read for a person: its header fields (each Authentication-Results
    too, top first: which one is the gateway's depends on where it stands), its text and
    its attachments listed. One kept as too complex or too large is read by its header."""
    if item.erased_at is not None:
        return Letter([], "", [], unreadable=f"erased on {item.erased_at:%Y-%m-%d}")
    if not services.blobs.exists(item.raw_sha256):
        return Letter([], "", [], unreadable="its stored copy is missing")
    raw = services.blobs.get(item.raw_sha256)
    kept_as_such = item.reason_code in HEADER_ONLY
    parsed = None if kept_as_such else parse_or_none(raw, Limits.of(services.config))
    why = None
    if parsed is None or parsed.too_complex or parsed.too_large:
        why = "it was kept aside as too large or too complex to read whole"
        if not kept_as_such:
            why = "it could not be read whole"
        parsed = parse_header(raw)
    fields = [
        *((name, parsed.headers[name]) for name in SHOWN_HEADERS if name in parsed.headers),
        *((name, value) for name, value in parsed.header_fields
          if name == "authentication-results"),
    ]  # fmt: skip
    return Letter(
        headers=[(_field_name(k), v) for k, v in fields],
        text=parsed.body_text if why is None else "",
        attachments=[(a.filename, a.content_type, len(a.payload)) for a in parsed.attachments],
        header_only=why,
    )


def _field_name(name: str) -> str:
    """`message-id` as mail clients write it: Message-ID."""
    return "Message-ID" if name == "message-id" else "-".join(map(str.capitalize, name.split("-")))


def shown_item(services: Services, item_id: int, actor: Actor) -> Shown:
    """`quarantine show` and the console's page of one message, for a person: its sender,
    headers, text, attachments and traceback, recorded in the audit (with the case it
    points at, if any)."""
    item = get_item(services, item_id)
    with transaction(services.engine) as session:
        reference = (
            session.exec(select(Case.reference).where(Case.id == item.case_id)).first()
            if item.case_id is not None
            else None
        )
        audit.record(
            session,
            actor,
            "quarantine.show",
            case_reference=reference,
            detail=f"quarantined message {item_id} ({item.reason_code})",
        )
    return Shown(item, reference, read_letter(services, item))


def release(services: Services, item_id: int, *, actor: Actor) -> None:
    """A coordinator looked and nothing is to be done with it (a circular, a stranger's
    mistake): it leaves the waiting list and the digest, and is erased with the rest of
    the quarantine `quarantine_days` after it arrived. Recorded in the audit as theirs."""
    item = get_item(services, item_id)
    refuse_erased(item)
    table = QuarantineItem.__table__  # type: ignore[attr-defined]
    with transaction(services.engine) as session:
        # One conditional update: of two coordinators releasing at once, one does.
        done = session.connection().execute(
            table.update()
            .where(table.c.id == item_id, table.c.status == QuarantineStatus.WAITING)
            .values(status=QuarantineStatus.RELEASED, resolved_at=utcnow())
        )
        if done.rowcount != 1:
            status = session.exec(
                select(QuarantineItem.status).where(QuarantineItem.id == item_id)
            ).one()
            raise UserError(f"quarantined message {item_id} was already {status}")
        reference = (
            session.exec(select(Case.reference).where(Case.id == item.case_id)).first()
            if item.case_id is not None
            else None
        )
        audit.record(
            session,
            actor,
            "quarantine.release",
            case_reference=reference,
            detail=f"quarantined message {item_id} ({item.reason_code}) released",
        )


def record_retry(services: Services, item_id: int, actor: Actor, outcome: Outcome) -> None:
    """A retry in the audit, as the person's who asked: the message and what came of it."""
    reference = outcome.reference if isinstance(outcome, CaseOpened | CaseUpdated) else None
    if isinstance(outcome, CaseOpened):
        came = f"opened {reference}"
    elif isinstance(outcome, CaseUpdated):
        came = f"applied to {reference}"
    elif isinstance(outcome, Quarantined):
        came = f"quarantined again as {outcome.quarantine_id}"
    elif isinstance(outcome, Failed):
        came = "failed again"
    else:
        came = "handled"
    with transaction(services.engine) as session:
        audit.record(
            session,
            actor,
            "quarantine.retry",
            case_reference=reference,
            detail=f"quarantined message {item_id} retried: {came}",
        )


def waiting_copy(services: Services, item_id: int) -> tuple[bytes, datetime | None]:
    """A waiting message's stored bytes and when it arrived, to run through the pipeline
    again (processor.retry_quarantined), e.g. after its sender was added."""
    item = get_item(services, item_id)
    if item.status != QuarantineStatus.WAITING:
        raise UserError(f"quarantined message {item_id} was already {item.status}")
    refuse_erased(item)
    if item.reason_code == TOO_LARGE:
        raise UserError(
            f"quarantined message {item_id} was too large to keep, so it cannot be retried; "
            "the original is in the mailbox's quarantine folder: ask the sender to send it "
            "again in smaller emails"
        )
    if not services.blobs.exists(item.raw_sha256):
        raise UserError(
            f"the stored copy of quarantined message {item_id} is missing from "
            f"{services.blobs.root}; it cannot be retried"
        )
    received_at = None
    if item.message_id is not None:
        with Session(services.engine) as session:
            message = session.get(Message, item.message_id)
            received_at = message.received_at if message else None
    return services.blobs.get(item.raw_sha256), received_at


def refuse_erased(item: QuarantineItem) -> None:
    if item.erased_at is not None:
        raise UserError(
            f"quarantined message {item.id} was erased on {item.erased_at:%Y-%m-%d} "
            "(the retention policy, or a request): nothing is left to retry or accept; the "
            "mailbox's quarantine folder may still hold the original"
        )


ACCEPT_AS = ("contribution",)


def accept(services: Services, item_id: int, as_: str = "contribution", *, actor: str) -> str:
    """Attach a quarantined message to the case it points at, after a coordinator checked it.

    For a colleague an officer forwarded the enquiry to, say: never done automatically, as a
    guessed reference must not let a stranger write into a case. Returns the case reference.
    """
    if as_ not in ACCEPT_AS:
        raise UserError(f"--as must be one of: {', '.join(ACCEPT_AS)}")
    item = get_item(services, item_id)
    if item.status != QuarantineStatus.WAITING:
        raise UserError(f"quarantined message {item_id} was already {item.status}")
    refuse_erased(item)
    if item.case_id is None:
        raise UserError(
            f"quarantined message {item_id} does not point at a case; "
            "`mailbridge quarantine retry` it after adding its sender instead"
        )
    if not services.blobs.exists(item.raw_sha256):
        raise UserError(
            f"the stored copy of quarantined message {item_id} is missing from "
            f"{services.blobs.root}; it cannot be accepted"
        )
    raw = services.blobs.get(item.raw_sha256)
    parsed = parse_raw(raw, Limits.of(services.config))
    with services.blobs.keeping(), transaction(services.engine) as session:
        entry = session.get(QuarantineItem, item_id)
        assert entry is not None
        received_at = utcnow()
        if entry.message_id is not None:
            old = session.get(Message, entry.message_id)
            if old is not None:
                received_at = old.received_at
                entry.message_id = None
                session.add(entry)
                session.flush()
                session.delete(old)
                session.flush()
        entry.status = QuarantineStatus.ACCEPTED
        entry.resolved_at = utcnow()
        session.add(entry)
        [facts] = load_cases(
            session,
            ids=[item.case_id],
            calendar=services.calendar,
            today=services.calendar.local_date(utcnow()),
        )
        item_in = Inbound(parsed, received_at, len(raw), replies.extract_reply(parsed.body_text))
        applied = inbound.contribution(session, services, item_in, Contribution(facts))
        add_event(
            session, facts.id, "quarantine_accepted",
            f"quarantined message {item_id} from {parsed.from_address} accepted as a "
            f"{as_} by a coordinator",
            actor=actor,
        )  # fmt: skip
    assert applied.reference is not None
    return applied.reference
