"""Applying decisions to cases: each function runs inside the caller's one transaction."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from mailbridge import compose, outbox
from mailbridge.models import (
    Attachment,
    Case,
    CaseStatus,
    Direction,
    Disposition,
    Event,
    Message,
    Person,
    ProcessingFailure,
    QuarantineItem,
    ReferenceCounter,
    as_utc,
    utcnow,
)
from mailbridge.parsing import ParsedEmail
from mailbridge.routing import OpenCase
from mailbridge.services import Services

log = logging.getLogger(__name__)

SUMMARY_CHARS = 600


@dataclass(frozen=True, slots=True)
class Inbound:
    """An inbound message ready to store: its parse, and when the server received it."""

    parsed: ParsedEmail
    received_at: datetime
    raw_size: int


def allocate_reference(session: Session, prefix: str, year: int) -> tuple[str, int]:
    """Next reference for the year; the counter row lock makes it gap-free and unique."""
    # Core statements on the session's connection: the ORM's bulk-update bookkeeping
    # costs more than the statements themselves here.
    conn = session.connection()
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(ReferenceCounter)
        .values(prefix=prefix, year=year, last=0)
        .on_conflict_do_nothing(index_elements=["prefix", "year"])
    )
    seq = conn.execute(
        update(ReferenceCounter)
        .where(ReferenceCounter.prefix == prefix, ReferenceCounter.year == year)  # type: ignore[arg-type]
        .values(last=ReferenceCounter.last + 1)
        .returning(ReferenceCounter.last)
    ).scalar_one()
    return f"{prefix}-{year}-{seq:05d}", seq


def record_inbound(
    session: Session, item: Inbound, disposition: Disposition, case_id: int | None
) -> Message:
    p = item.parsed
    message = Message(
        direction=Direction.IN,
        dedupe_key=p.dedupe_key,
        message_id=p.message_id,
        case_id=case_id,
        disposition=disposition,
        sender=p.from_address or "",
        sender_name=p.from_name,
        recipients=", ".join(p.to + p.cc),
        subject=p.subject[:998],
        date_header=as_utc(p.date) if p.date else None,
        received_at=item.received_at,
        raw_sha256=p.raw_sha256,
        raw_size=item.raw_size,
        body_text=p.body_text,
        in_reply_to=p.in_reply_to,
        references=" ".join(p.references) or None,
        defects=json.dumps(list(p.defects)) if p.defects else None,
    )
    session.add(message)
    session.flush()
    return message


def _store_attachments(
    session: Session, services: Services, item: Inbound, message: Message, case: Case
) -> tuple[list[str], list[str]]:
    """Keep attachments within the size cap; note the refused ones on the case."""
    cap = services.config.storage.max_attachment_bytes
    kept: list[str] = []
    refused: list[str] = []
    for att in item.parsed.attachments:
        size = len(att.payload)
        row = Attachment(
            message_id=message.id,  # type: ignore[arg-type]
            case_id=case.id,
            filename=att.filename,
            content_type=att.content_type[:255],
            size=size,
            inline=att.inline,
        )
        if cap and size > cap:
            row.refused_reason = f"{size} bytes is over the {cap}-byte limit"
            refused.append(att.filename)
            session.add(
                Event(
                    case_id=case.id,
                    kind="attachment_refused",
                    message_id=message.id,
                    detail=f"{att.filename}: {row.refused_reason}",
                )
            )
        else:
            row.sha256 = services.blobs.put(att.payload)
            if not att.inline:
                kept.append(att.filename)
        session.add(row)
    return kept, refused


def open_case(session: Session, services: Services, item: Inbound, decision: OpenCase) -> Case:
    """A new case, its message, attachments, events and acknowledgement: one transaction."""
    cfg = services.config
    cal = services.calendar
    p = item.parsed
    local_day = cal.local_date(item.received_at)
    reference, seq = allocate_reference(session, cfg.cases.reference_prefix, local_day.year)
    member = session.get(Person, decision.member_id)
    submitter = session.get(Person, decision.submitter_id)
    assert member is not None and submitter is not None  # the directory lookup just found them
    case = Case(
        reference=reference,
        prefix=cfg.cases.reference_prefix,
        year=local_day.year,
        seq=seq,
        subject=(p.subject or "(no subject)")[:998],
        body_text=p.body_text,
        status=CaseStatus.NEW,
        member_id=member.id,  # type: ignore[arg-type]
        submitter_id=submitter.id,  # type: ignore[arg-type]
        service_area=decision.service_area,
        directorate=decision.directorate,
        district=member.district,
        received_at=item.received_at,
        acknowledge_due=cal.add_working_days(local_day, cfg.cases.acknowledge_working_days),
        response_due=cal.add_working_days(local_day, cfg.cases.response_working_days),
    )
    session.add(case)
    session.flush()
    message = record_inbound(session, item, Disposition.CASE, case.id)
    via = f" via delegate {submitter.name}" if submitter.id != member.id else ""
    session.add(
        Event(
            case_id=case.id,
            kind="case_opened",
            actor_id=submitter.id,
            actor=submitter.email,
            message_id=message.id,
            detail=f"opened from an email by {member.name}{via}; service area "
            + (f"guessed as {case.service_area}" if case.service_area else "not guessed"),
        )
    )
    kept, refused = _store_attachments(session, services, item, message, case)
    queue_acknowledgement(session, services, case, member, submitter, p, kept, refused)
    _forget_failure(session, p.dedupe_key)
    log.debug("case opened", extra={"case": reference, "attachments": len(p.attachments)})
    return case


def _summary(text: str) -> str:
    text = text.strip()
    if len(text) <= SUMMARY_CHARS:
        return text
    cut = text[:SUMMARY_CHARS].rsplit(" ", 1)[0]
    return cut + " …"


def queue_acknowledgement(
    session: Session,
    services: Services,
    case: Case,
    member: Person,
    submitter: Person,
    parsed: ParsedEmail,
    attachments: list[str],
    refused: list[str],
) -> None:
    cfg = services.config
    rendered = services.templates.render(
        "acknowledgement",
        case=case,
        member=member,
        submitter=submitter,
        summary=_summary(parsed.body_text),
        attachments=attachments,
        refused=refused,
        received_local=as_utc(case.received_at).astimezone(services.calendar.zone),
        response_days=cfg.cases.response_working_days,
        mailbox=str(cfg.smtp.from_address),
        council=cfg.council.name,
    )
    to = [member.email]
    cc = [submitter.email] if submitter.id != member.id else []
    message_id = compose.new_message_id(cfg.smtp.domain, case.reference, services.signing_key)
    references = [*parsed.references, parsed.message_id] if parsed.message_id else []
    raw = compose.compose(
        sender=str(cfg.smtp.from_address),
        sender_name=cfg.smtp.from_name,
        to=to,
        cc=cc,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id,
        in_reply_to=parsed.message_id,
        references=references,
        auto_submitted="auto-replied",
    )
    outbox.enqueue(
        session,
        kind="acknowledgement",
        sender=str(cfg.smtp.from_address),
        recipients=to + cc,
        subject=rendered.subject,
        raw=raw,
        message_id=message_id,
        case_id=case.id,
        case_reference=case.reference,
        idempotency_key=f"ack:{case.reference}",
        body_text=rendered.text,
        in_reply_to=parsed.message_id,
    )
    case.acknowledged_at = utcnow()
    session.add(
        Event(case_id=case.id, kind="acknowledgement_queued", detail=f"to {', '.join(to + cc)}")
    )


def quarantine(
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
) -> QuarantineItem:
    """Keep a message aside with its reason; a coordinator can retry or release it."""
    message = record_inbound(session, item, Disposition.QUARANTINED, None) if item else None
    entry = QuarantineItem(
        message_id=message.id if message else None,
        dedupe_key=dedupe_key,
        raw_sha256=raw_sha256,
        reason_code=code,
        reason=reason,
        sender=(item.parsed.from_address or "") if item else sender,
        subject=item.parsed.subject[:998] if item else subject[:998],
        traceback=traceback,
    )
    session.add(entry)
    _forget_failure(session, dedupe_key)
    session.flush()
    log.debug("message quarantined", extra={"quarantine_id": entry.id, "reason_code": code})
    return entry


def _forget_failure(session: Session, dedupe_key: str) -> None:
    """A message that finally got an outcome no longer waits for a retry."""
    table = ProcessingFailure.__table__  # type: ignore[attr-defined]
    session.connection().execute(table.delete().where(table.c.dedupe_key == dedupe_key))


def find_case(session: Session, reference: str) -> Case | None:
    return session.exec(select(Case).where(Case.reference == reference.strip().upper())).first()
