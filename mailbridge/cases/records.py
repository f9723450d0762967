"""Applying decisions to cases: each function runs inside the caller's one transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import Session, select

from mailbridge.deadlines import policy
from mailbridge.delivery import queue
from mailbridge.mail import subjects
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.pipeline.routing import OpenCase
from mailbridge.services import Services
from mailbridge.store.db import insert_later, insert_or_skip, insert_row
from mailbridge.store.models import (
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

log = logging.getLogger(__name__)

SUMMARY_CHARS = 600


@dataclass(frozen=True, slots=True)
class Inbound:
    """An inbound message ready to store: its parse, and when the server received it."""

    parsed: ParsedEmail
    received_at: datetime
    raw_size: int
    reply_text: str | None = None  # the new text of a reply, without quotes and signature


_COUNTER = ReferenceCounter.__table__  # type: ignore[attr-defined]
_NEXT = (
    update(_COUNTER)
    .where(_COUNTER.c.prefix == bindparam("p"), _COUNTER.c.year == bindparam("y"))
    .values(last=_COUNTER.c.last + 1)
    .returning(_COUNTER.c.last)
)


def allocate_reference(session: Session, prefix: str, year: int) -> tuple[str, int]:
    """Next reference for the year; the counter row lock makes it gap-free and unique."""
    conn = session.connection()
    seq = conn.execute(_NEXT, {"p": prefix, "y": year}).scalar()
    if seq is None:  # the year's first case: create its counter (another writer may race)
        create = insert_or_skip(_COUNTER, ("prefix", "year"), conn.dialect.name)
        conn.execute(create, {"prefix": prefix, "year": year, "last": 0})
        seq = conn.execute(_NEXT, {"p": prefix, "y": year}).scalar_one()
    return f"{prefix}-{year}-{seq:05d}", seq


def record_inbound(
    session: Session,
    item: Inbound,
    disposition: Disposition,
    case_id: int | None,
    *,
    role: str | None = None,
    reply_text: str | None = None,
) -> int:
    """The inbound message's row (dedupe key unique: a second copy fails the savepoint)."""
    p = item.parsed
    return insert_row(
        session,
        Message,
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
        role=role,
        reply_text=reply_text,
        in_reply_to=p.in_reply_to,
        references=" ".join(p.references) or None,
        defects=json.dumps(list(p.defects)) if p.defects else None,
    )


def add_event(
    session: Session,
    case_id: int | None,
    kind: str,
    detail: str = "",
    *,
    actor_id: int | None = None,
    actor: str = "system",
    message_id: int | None = None,
) -> None:
    insert_later(
        session,
        Event,
        case_id=case_id,
        kind=kind,
        detail=detail,
        actor_id=actor_id,
        actor=actor,
        message_id=message_id,
        at=utcnow(),
    )


def store_attachments(
    session: Session, services: Services, item: Inbound, message_id: int, case_id: int
) -> tuple[list[str], list[str]]:
    """Keep attachments within the size cap; note the refused ones on the case.

    For every message that joins a case (the enquiry, replies, chasers, notes), so an
    officer's attached survey is on the case and can be sent on with the reply.
    """
    cap = services.config.storage.max_attachment_bytes
    kept: list[str] = []
    refused: list[str] = []
    for att in item.parsed.attachments:
        size = len(att.payload)
        sha256 = None
        refused_reason = None
        if cap and size > cap:
            refused_reason = f"{size} bytes is over the {cap}-byte limit"
            refused.append(att.filename)
            add_event(
                session,
                case_id,
                "attachment_refused",
                f"{att.filename}: {refused_reason}",
                message_id=message_id,
            )
        else:
            sha256 = services.blobs.put(att.payload)
            if not att.inline:
                kept.append(att.filename)
        insert_row(
            session,
            Attachment,
            message_id=message_id,
            case_id=case_id,
            filename=att.filename,
            content_type=att.content_type[:255],
            size=size,
            inline=att.inline,
            sha256=sha256,
            refused_reason=refused_reason,
        )
    return kept, refused


@dataclass(frozen=True, slots=True)
class Party:
    """The few facts about a person that opening a case needs."""

    id: int
    name: str
    email: str
    district: str | None


_PARTY = select(Person.id, Person.name, Person.email, Person.district).where(
    Person.id == bindparam("person_id")  # type: ignore[arg-type]
)


def _party(session: Session, person_id: int) -> Party:
    """Asked once per person in a transaction: ingest changes nobody's name or address,
    and a batch of a hundred emails often comes from a dozen members."""
    known: dict[int, Party] = session.info.setdefault("mailbridge.parties", {})
    if person_id not in known:
        row = session.connection().execute(_PARTY, {"person_id": person_id}).one()
        known[person_id] = Party(*row)
    return known[person_id]


@dataclass(frozen=True, slots=True)
class OpenedCase:
    id: int
    reference: str


def open_case(
    session: Session, services: Services, item: Inbound, decision: OpenCase
) -> OpenedCase:
    """A new case, its message, attachments, events and acknowledgement: one transaction."""
    cfg = services.config
    cal = services.calendar
    p = item.parsed
    local_day = cal.local_date(item.received_at)
    reference, seq = allocate_reference(session, cfg.cases.reference_prefix, local_day.year)
    member = _party(session, decision.member_id)
    submitter = member
    if decision.submitter_id != decision.member_id:
        submitter = _party(session, decision.submitter_id)
    now = utcnow()
    sla = policy.sla_for(cfg, decision.service_area, None)
    due = policy.deadlines(cal, item.received_at, sla)
    case = {
        "reference": reference,
        "prefix": cfg.cases.reference_prefix,
        "year": local_day.year,
        "seq": seq,
        # Without "RE: FW: [EXTERNAL]" chains and case tags: the subject people will read.
        "subject": (subjects.without_tags(p.subject) or "(no subject)")[:998],
        "body_text": p.body_text,
        "status": CaseStatus.NEW,
        "member_id": member.id,
        "submitter_id": submitter.id,
        "service_area": decision.service_area,
        "directorate": decision.directorate,
        "district": member.district,
        "received_at": item.received_at,
        "acknowledge_due": due.acknowledge_due,
        "response_due": due.response_due,
        # The acknowledgement is queued below, in this same transaction.
        "acknowledged_at": now,
        "created_at": now,
        "updated_at": now,
    }
    if decision.linked_case_id is not None:
        case["linked_case_id"] = decision.linked_case_id
    case_id = insert_row(session, Case, **case)
    message_id = record_inbound(session, item, Disposition.CASE, case_id, role="enquiry")
    via = f" via delegate {submitter.name}" if submitter.id != member.id else ""
    area = case["service_area"]
    add_event(
        session,
        case_id,
        "case_opened",
        f"opened from an email by {member.name}{via}; service area "
        + (f"guessed as {area}" if area else "not guessed")
        + (
            f"; follows up case id {decision.linked_case_id}, completed too long ago to reopen"
            if decision.linked_case_id
            else ""
        ),
        actor_id=submitter.id,
        actor=submitter.email,
        message_id=message_id,
    )
    kept, refused = store_attachments(session, services, item, message_id, case_id)
    queue_acknowledgement(session, services, case_id, case, member, submitter, p, kept, refused)
    log.debug("case opened", extra={"case": reference, "attachments": len(p.attachments)})
    return OpenedCase(case_id, reference)


def _summary(text: str) -> str:
    text = text.strip()
    if len(text) <= SUMMARY_CHARS:
        return text
    cut = text[:SUMMARY_CHARS].rsplit(" ", 1)[0]
    return cut + " …"


def queue_acknowledgement(
    session: Session,
    services: Services,
    case_id: int,
    case: Mapping[str, Any],
    member: Party,
    submitter: Party,
    parsed: ParsedEmail,
    attachments: list[str],
    refused: list[str],
) -> None:
    """Render and queue the acknowledgement; templates see `case` by field name."""
    cfg = services.config
    reference = case["reference"]
    thread = queue.Thread(
        case_id=case_id,
        reference=reference,
        subject=case["subject"],
        started=case["created_at"],
        root_message_id=parsed.message_id,
        answering=parsed.message_id,
        answering_references=parsed.references,
    )
    queued = queue.queue_mail(
        session,
        services,
        kind="acknowledgement",
        template="acknowledgement",
        to=[member.email],
        cc=[submitter.email] if submitter.id != member.id else [],
        thread=thread,
        context={
            "case": case,
            "member": member,
            "submitter": submitter,
            "summary": _summary(parsed.body_text),
            "attachments": attachments,
            "refused": refused,
            "received_local": as_utc(case["received_at"]).astimezone(services.calendar.zone),
            "response_days": policy.sla_for(cfg, case["service_area"], None).response_days,
            # After the office-hours cut-off or on a closed day the count starts later: say so.
            "counted_from": services.calendar.received_day(case["received_at"]),
        },
        automatic=True,
        rate_limited=False,
        idempotency_key=f"ack:{reference}",
    )
    if queued is not None:
        add_event(session, case_id, "acknowledgement_queued", f"to {', '.join(queued.recipients)}")


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
    """A message that finally got an outcome no longer waits for a retry."""
    table = ProcessingFailure.__table__  # type: ignore[attr-defined]
    session.connection().execute(table.delete().where(table.c.dedupe_key == dedupe_key))


def find_case(session: Session, reference: str) -> Case | None:
    return session.exec(select(Case).where(Case.reference == reference.strip().upper())).first()
