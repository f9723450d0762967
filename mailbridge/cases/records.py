"""The records a case is made of: its reference, the messages on it, their attachments and
its events (the audit trail). Each function writes inside the caller's one transaction.

A case's version is its `updated_at` (`version_of`), which every change moves
(`lifecycle.touch`). A page that shows a case carries the version it showed; the action it
posts runs inside `expecting(reference, version)`, and `find_case`, at the start of the
action's transaction, refuses with `CaseChanged` when the case has moved on since, so a
coordinator never overwrites a change they did not see. On PostgreSQL the case's row is
locked from that check to the commit (SQLite's writers hold the whole database already), so
no other change can come between them. The command line acts on the case as it is now and
expects nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from sqlalchemy import bindparam, update
from sqlmodel import Session, col, select

from mailbridge.cases.scan import CLEAN, scan
from mailbridge.delivery import webhooks
from mailbridge.errors import UserError
from mailbridge.mail.attachments import UNPACKED
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.services import Services
from mailbridge.store.db import insert_later, insert_or_skip, insert_row
from mailbridge.store.models import (
    Attachment,
    Case,
    Direction,
    Disposition,
    Event,
    Message,
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
    """The change on the audit trail, and the webhooks it makes queued with it (the one place
    both are written, in the caller's transaction)."""
    at = utcnow()
    insert_later(
        session,
        Event,
        case_id=case_id,
        kind=kind,
        detail=detail,
        actor_id=actor_id,
        actor=actor,
        message_id=message_id,
        at=at,
    )
    webhooks.record(session, case_id, kind, at)


def store_attachments(
    session: Session,
    services: Services,
    item: Inbound,
    message_id: int,
    case_id: int,
    reference: str | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """Keep attachments within the size cap, each with the verdict that decides whether it
    may be sent on; note the refused and the held back ones on the case.

    For every message that joins a case (the enquiry, replies, chasers, notes), so an
    officer's attached survey is on the case and can be sent on with the reply. Returns the
    names kept, refused, and held back ("name: why").
    """
    kept: list[str] = []
    refused: list[str] = []
    held: list[str] = []
    for att in item.parsed.attachments:
        verdict = keep_file(
            session,
            services,
            filename=att.filename,
            content_type=att.content_type,
            payload=att.payload,
            inline=att.inline,
            held=att.held,
            message_id=message_id,
            case_id=case_id,
            reference=reference,
        )
        if verdict.refused:
            refused.append(att.filename)
        elif not att.inline:
            kept.append(att.filename)
            if verdict.held:
                held.append(f"{att.filename}: {verdict.held}")
    return kept, refused, held


@dataclass(frozen=True, slots=True)
class Kept:
    """One file's verdict: refused (over the size cap: no bytes kept), or held back (kept,
    never sent on) and why."""

    refused: str | None = None
    held: str | None = None


def keep_file(
    session: Session,
    services: Services,
    *,
    filename: str,
    content_type: str,
    payload: bytes,
    inline: bool,
    held: str | None,
    message_id: int,
    case_id: int,
    reference: str | None = None,
) -> Kept:
    """One file of a message on a case, by the rules every door shares: over the size cap
    refused (its record kept, no bytes); else stored by content, virus-scanned, and held
    back from members and officers with `held` (mail/attachments.py held_back) or a scan's
    verdict. Refused and held files are events on the case."""
    cfg = services.config
    cap = cfg.storage.max_attachment_bytes
    size = len(payload)
    sha256 = None
    refused_reason = None
    held_reason = held
    scanned = None
    shown_held = None
    if cap and size > cap:
        refused_reason = f"{size} bytes is over the {cap}-byte limit"
        add_event(
            session,
            case_id,
            "attachment_refused",
            f"{filename}: {refused_reason}",
            message_id=message_id,
        )
    else:
        sha256 = services.blobs.put(payload)
        scanned = scan(cfg.attachments, payload, cfg.storage.data_dir / "scan")
        if scanned is not None and scanned != CLEAN:
            held_reason = held_reason or f"virus scan: {scanned}"
            log.warning(
                "attachment held back by the virus scan",
                extra={"case": reference, "verdict": scanned[:100]},
            )
        if not inline and held_reason and held_reason != UNPACKED:
            shown_held = held_reason
            add_event(
                session,
                case_id,
                "attachment_held",
                f"{filename}: held back from members and officers: {held_reason}",
                message_id=message_id,
            )
    insert_row(
        session,
        Attachment,
        message_id=message_id,
        case_id=case_id,
        filename=filename,
        content_type=content_type[:255],
        size=size,
        inline=inline,
        sha256=sha256,
        refused_reason=refused_reason,
        held_reason=held_reason[:500] if held_reason else None,
        scan_result=scanned[:500] if scanned else None,
    )
    return Kept(refused_reason, shown_held)


class CaseChanged(UserError):
    """The case changed since the person acting on it loaded it: nothing was done."""


@dataclass(frozen=True, slots=True)
class _Expected:
    version: str
    zone: tzinfo


_EXPECTED: ContextVar[dict[str, _Expected]] = ContextVar("mailbridge_expected_versions")


def version_of(case: Case) -> str:
    """The case's version as a page carries it: its `updated_at`, to the microsecond."""
    return as_utc(case.updated_at).isoformat(timespec="microseconds")


@contextmanager
def expecting(reference: str, version: str, *, zone: tzinfo = UTC) -> Iterator[None]:
    """Inside the block, `find_case(reference)` insists on the case being at `version` (see
    the module's note). Blocks nest, so a merge can expect both its cases. `zone` is the
    council's, for the time the refusal names."""
    key = reference.strip().upper()
    token = _EXPECTED.set({**_EXPECTED.get({}), key: _Expected(version, zone)})
    try:
        yield
    finally:
        _EXPECTED.reset(token)


def _changed(session: Session, case: Case, zone: tzinfo) -> CaseChanged:
    """The refusal, naming when the case changed and, when an event says, who changed it:
    the first event written from that change on (every change writes one)."""
    moved = as_utc(case.updated_at)
    by = session.exec(
        select(Event.actor)
        .where(Event.case_id == case.id, col(Event.at) >= moved)
        .order_by(col(Event.at), col(Event.id))
        .limit(1)
    ).first()
    local = moved.astimezone(zone)
    today = utcnow().astimezone(zone).date()
    when = f"{local:%H:%M}" if local.date() == today else f"{local:%d %b %Y %H:%M}"
    when += " UTC" if zone is UTC else ""
    who = f" by {by}" if by and by != "system" else ""
    return CaseChanged(
        f"{case.reference} changed since you opened it (at {when}{who}); nothing was done — "
        "reload it and try again"
    )


def find_case(session: Session, reference: str) -> Case:
    """The case a person named by its reference, or a UserError that says how to find one.

    Inside `expecting` for this case: its row is locked (PostgreSQL) and CaseChanged raised
    when it is not at the expected version. Call it first in the action's transaction."""
    key = reference.strip().upper()
    expected = _EXPECTED.get({}).get(key)
    query = select(Case).where(Case.reference == key)
    if expected is not None:
        query = query.with_for_update()
    case = session.exec(query).first()
    if case is None:
        raise UserError(f"no case has reference {reference.strip()} (see `mailbridge cases list`)")
    if expected is not None and version_of(case) != expected.version:
        raise _changed(session, case, expected.zone)
    return case
