"""Case mail: rendered from templates, threaded, limited, and queued in the caller's transaction.

Every email mailbridge sends goes through `queue_mail`, so every one gets the same
protections: no mail to an address that bounced permanently, no automatic mail to
no-reply or robot addresses, per-address limits on automatic mail, our loop headers,
a signed Message-ID naming the case, and headers that thread it in Outlook and Gmail.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from mailbridge.delivery import compose, outbox
from mailbridge.delivery.limits import Window, per_hour_and_day, reached
from mailbridge.mail import hygiene, subjects, tokens
from mailbridge.services import Services
from mailbridge.store.db import insert_row
from mailbridge.store.models import AddressFlag, AutoMail, Event, as_utc, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Thread:
    """The case an email belongs to, and the message it answers (for the threading headers)."""

    case_id: int
    reference: str
    subject: str  # the case subject, without any tag
    started: datetime  # when the case was opened: the Outlook thread's start
    root_message_id: str | None = None  # the member's first email
    answering: str | None = None  # the Message-ID this email replies to
    answering_references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Queued:
    message_id: str
    recipients: tuple[str, ...]
    withheld: tuple[tuple[str, str], ...]  # (address, why) not mailed


def queue_mail(
    session: Session,
    services: Services,
    *,
    kind: str,
    template: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    thread: Thread | None = None,
    context: Mapping[str, Any] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    automatic: bool = False,
    rate_limited: bool | None = None,
    idempotency_key: str | None = None,
) -> Queued | None:
    """Queue one email; None when every recipient was withheld (each reason is an event).

    `automatic` mail (no person wrote it) is marked as such and never goes to robot or
    no-reply addresses; it also counts against the per-address limits unless
    `rate_limited=False` (acknowledgements: one per case, and a case needs a person's email).
    """
    limited = automatic if rate_limited is None else rate_limited
    cfg = services.config
    now = utcnow()
    withheld: list[tuple[str, str]] = []
    kept_to = _allowed(session, services, to, automatic, limited, now, withheld)
    kept_cc = [
        a
        for a in _allowed(session, services, cc, automatic, limited, now, withheld)
        if a not in kept_to
    ]
    case_id = thread.case_id if thread else None
    for address, why in withheld:
        insert_row(
            session,
            Event,
            case_id=case_id,
            kind="mail_withheld",
            detail=f"{kind} not sent to {address}: {why}",
            at=now,
        )
        log.info("mail withheld", extra={"kind": kind, "reason": why, "case": _ref(thread)})
    if not kept_to:
        if kept_cc:
            kept_to, kept_cc = kept_cc[:1], kept_cc[1:]
        else:
            return None
    rendered = services.templates.render(
        template,
        **dict(context or {}),
        council=cfg.council.name,
        mailbox=str(cfg.smtp.from_address),
        reference=thread.reference if thread else None,
    )
    subject = rendered.subject
    headers: dict[str, str] = {}
    references: list[str] = []
    in_reply_to = None
    if thread is not None:
        subject = subjects.tag(subject, thread.reference)
        headers["Thread-Topic"] = thread.subject[:250]
        headers["Thread-Index"] = compose.thread_index(thread.reference, thread.started, now)
        if cfg.security.signed_reply_address and services.signing_key:
            headers["Reply-To"] = tokens.reply_address(
                str(cfg.smtp.from_address), thread.reference, services.signing_key
            )
        in_reply_to = thread.answering or thread.root_message_id
        references = [
            r
            for r in dict.fromkeys(
                [thread.root_message_id, *thread.answering_references, thread.answering]
            )
            if r
        ]
    message_id = tokens.new_message_id(
        cfg.smtp.domain, thread.reference if thread else None, services.signing_key
    )
    raw = compose.compose(
        sender=str(cfg.smtp.from_address),
        sender_name=cfg.smtp.from_name,
        to=kept_to,
        cc=kept_cc,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        auto_submitted="auto-replied" if automatic else "auto-generated",
        extra_headers=headers,
        attachments=attachments,
        date=now,
    )
    recipients = tuple(kept_to + kept_cc)
    outbox.enqueue(
        session,
        kind=kind,
        sender=str(cfg.smtp.from_address),
        recipients=recipients,
        subject=subject,
        raw=raw,
        message_id=message_id,
        case_id=case_id,
        case_reference=thread.reference if thread else None,
        idempotency_key=idempotency_key,
        body_text=rendered.text,
        in_reply_to=in_reply_to,
        now=now,
    )
    if limited:
        for address in recipients:
            insert_row(session, AutoMail, address=address, kind=kind, case_id=case_id, at=now)
    return Queued(message_id, recipients, tuple(withheld))


_FLAGS = select(AddressFlag.email, AddressFlag.reason)
_FLAGS_KEY = "mailbridge.address_flags"


def _flags(session: Session) -> dict[str, str]:
    """Every permanent-bounce flag, read once per transaction: a council has a handful,
    and every recipient of every email is checked against them."""
    flags: dict[str, str] | None = session.info.get(_FLAGS_KEY)
    if flags is None:
        flags = {e: r for e, r in session.connection().execute(_FLAGS)}
        session.info[_FLAGS_KEY] = flags
    return flags


def forget_flags(session: Session) -> None:
    """After a flag was written or a savepoint rolled back: read them again when next asked."""
    session.info.pop(_FLAGS_KEY, None)


def _allowed(
    session: Session,
    services: Services,
    addresses: Sequence[str],
    automatic: bool,
    limited: bool,
    now: datetime,
    withheld: list[tuple[str, str]],
) -> list[str]:
    limits = services.config.automatic_mail
    kept: list[str] = []
    for address in dict.fromkeys(a.strip().lower() for a in addresses if a and a.strip()):
        flag = _flags(session).get(address)
        if flag is not None:
            withheld.append((address, f"the address bounced permanently ({flag})"))
            continue
        if automatic and not hygiene.may_answer_automatically(address):
            withheld.append((address, "no automatic mail to robot or no-reply addresses"))
            continue
        if limited:
            windows = per_hour_and_day(limits.per_address_per_hour, limits.per_address_per_day)
            full = reached(windows, sent_within(session, windows, now, address=address))
            if full is not None:
                withheld.append((address, f"automatic mail limit reached: {full}"))
                continue
        kept.append(address)
    return kept


def sent_within(
    session: Session,
    windows: Sequence[Window],
    now: datetime,
    *,
    address: str | None = None,
    kind: str | None = None,
) -> list[int]:
    """Automatic mail sent within each window (to `address`, of `kind`; None: any)."""
    counts = []
    for window in windows:
        query = select(func.count()).where(AutoMail.at >= now - window.span)
        if address is not None:
            query = query.where(AutoMail.address == address)
        if kind is not None:
            query = query.where(AutoMail.kind == kind)
        counts.append(int(session.exec(query).one()))
    return counts


def _ref(thread: Thread | None) -> str | None:
    return thread.reference if thread else None


def coordinator_addresses(services: Services) -> list[str]:
    return [c.email.strip().lower() for c in services.config.coordinators]


def local(services: Services, moment: datetime | None) -> datetime | None:
    """A stored UTC moment in the council's time zone, for templates."""
    return as_utc(moment).astimezone(services.calendar.zone) if moment else None
