"""Applying the conversation decisions to cases: each runs inside the caller's transaction.

Routing (routing.py) decided what an email means; this module records it on the case,
moves the case along and queues the emails people must get. Nothing here decides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from mailbridge.cases import facts, satisfaction
from mailbridge.cases.records import Inbound, add_event, record_inbound, store_attachments
from mailbridge.console.member_status import member_dashboard
from mailbridge.deadlines import clock
from mailbridge.delivery import queue
from mailbridge.mail import hygiene
from mailbridge.mail.hygiene import Bounce
from mailbridge.mail.replies import strip_keywords
from mailbridge.pipeline.routing import (
    Chase,
    Contribution,
    CoordinatorNote,
    NoteAutoReply,
    NoteBounce,
    OfficerReply,
    RecordSatisfaction,
    Reopen,
    StatusRequest,
)
from mailbridge.pipeline.threading import CaseFacts
from mailbridge.services import Services
from mailbridge.store.db import insert_row
from mailbridge.store.models import (
    AddressFlag,
    Attachment,
    Case,
    CaseMember,
    CaseStatus,
    Direction,
    Disposition,
    Message,
    Person,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Applied:
    """What happened, for the log and the pass report."""

    action: str
    reference: str | None = None


# --- helpers --------------------------------------------------------------------------


def _case(session: Session, facts: CaseFacts) -> Case:
    case = session.get(Case, facts.id)
    assert case is not None  # the facts were read in this transaction
    return case


def _person(session: Session, person_id: int | None) -> Person | None:
    return session.get(Person, person_id) if person_id is not None else None


def thread_for(session: Session, case: Case, item: Inbound | None = None) -> queue.Thread:
    assert case.id is not None
    return queue.Thread(
        case_id=case.id,
        reference=case.reference,
        subject=case.subject,
        started=case.created_at,
        root_message_id=facts.root_message_id(session, case.id),
        answering=item.parsed.message_id if item else None,
        answering_references=item.parsed.references if item else (),
    )


def member_recipients(session: Session, case: Case) -> tuple[list[str], list[str]]:
    """To the member and every other member on the case (`case link`, `case merge`), in
    the order they joined; a copy to the delegate who wrote the enquiry for them."""
    member = _person(session, case.member_id)
    submitter = _person(session, case.submitter_id)
    assert member is not None
    others = session.exec(
        select(Person.email)
        .join(CaseMember, col(CaseMember.person_id) == col(Person.id))
        .where(CaseMember.case_id == case.id, CaseMember.person_id != member.id)
        .order_by(col(CaseMember.added_at), col(CaseMember.person_id))
    ).all()
    to = list(dict.fromkeys([member.email, *others]))
    cc = [submitter.email] if submitter is not None and submitter.email not in to else []
    return to, cc


def _lead_and_coordinators(session: Session, services: Services, case: Case) -> list[str]:
    lead = _person(session, case.lead_officer_id)
    return ([lead.email] if lead else []) + queue.coordinator_addresses(services)


def attachments_of(
    session: Session, services: Services, message_id: int, cap: int
) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """A message's kept, non-inline attachments up to `cap` bytes in total; the rest named."""
    sent: list[tuple[str, str, bytes]] = []
    listed: list[str] = []
    total = 0
    rows = session.exec(
        select(Attachment)
        .where(Attachment.message_id == message_id, col(Attachment.inline).is_(False))
        .order_by(col(Attachment.id))
    ).all()
    for att in rows:
        if att.sha256 is None:
            listed.append(f"{att.filename} (refused: {att.refused_reason})")
        elif total + att.size > cap:
            listed.append(f"{att.filename} ({att.size} bytes, kept on the case)")
        else:
            sent.append((att.filename, att.content_type, services.blobs.get(att.sha256)))
            total += att.size
    return sent, listed


HISTORY_CHARS = 1200


def history(session: Session, case_id: int, limit: int = 6) -> list[dict[str, object]]:
    """What people wrote on the case, oldest first, for notices that carry the history.

    Only the emails people sent in (the enquiry, replies, chasers, notes), each as its new
    text: our own mail repeats them, and auto-replies and bounces say nothing new.
    """
    rows = session.exec(
        select(Message)
        .where(
            Message.case_id == case_id,
            Message.direction == Direction.IN,
            or_(col(Message.role).is_(None), col(Message.role).not_in(("auto_reply", "bounce"))),
        )
        .order_by(col(Message.id).desc())
        .limit(limit)
    ).all()
    return [
        {
            "at": m.received_at,
            "direction": m.direction,
            "sender": m.sender,
            "role": (m.role or "enquiry").replace("_", " "),
            "text": _shorten((m.reply_text or m.body_text or "").strip(), HISTORY_CHARS),
        }
        for m in reversed(rows)
    ]


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def _tell_staff(
    session: Session, services: Services, case: Case, template: str, **context: object
) -> None:
    """A notice for the lead officer and coordinators, with the case's recent history."""
    queue.queue_mail(
        session,
        services,
        kind=f"{template}_notice",
        template=template,
        to=_lead_and_coordinators(session, services, case),
        thread=thread_for(session, case),
        context={"case": case, "history": history(session, case.id or 0), **context},
        automatic=True,
        # Staff are told of every chaser: the per-address limits guard outside addresses.
        rate_limited=False,
    )


def _touch(case: Case, now: datetime) -> None:
    case.updated_at = now


def _record_on_case(
    session: Session,
    services: Services,
    item: Inbound,
    case: Case,
    role: str,
    reply_text: str | None,
) -> int:
    """The message's row on the case, and its attachments kept with it.

    Without the attachments an officer's attached report never reached the member:
    `attachments_of` found nothing to send on.
    """
    assert case.id is not None
    message_id = record_inbound(
        session, item, Disposition.CASE, case.id, role=role, reply_text=reply_text
    )
    store_attachments(session, services, item, message_id, case.id)
    return message_id


# --- decisions ------------------------------------------------------------------------


def chase(session: Session, services: Services, item: Inbound, decision: Chase) -> Applied:
    """The member asks for an update: counted, and the lead officer and coordinators told."""
    case = _case(session, decision.case)
    now = utcnow()
    message_id = _record_on_case(session, services, item, case, "chaser", item.reply_text)
    case.chase_count += 1
    _touch(case, now)
    session.add(case)
    add_event(
        session,
        case.id,
        "update_requested",
        f"update requested ({case.chase_count} so far)",
        actor=item.parsed.from_address or "",
        message_id=message_id,
    )
    _tell_staff(
        session,
        services,
        case,
        "chase",
        count=case.chase_count,
        text=item.reply_text,
        lead=_person(session, case.lead_officer_id),
        due=case.extended_due or case.response_due,
    )
    return Applied("chased", case.reference)


def reopen(session: Session, services: Services, item: Inbound, decision: Reopen) -> Applied:
    """A member writes on a recently completed case: it is open again."""
    case = _case(session, decision.case)
    now = utcnow()
    message_id = _record_on_case(session, services, item, case, "reopened", item.reply_text)
    case.status = CaseStatus.IN_PROGRESS if case.lead_officer_id else CaseStatus.NEW
    case.completed_at = None
    case.reopened_count += 1
    _touch(case, now)
    session.add(case)
    add_event(
        session,
        case.id,
        "reopened",
        f"reopened by the member's email ({case.reopened_count} times so far)",
        actor=item.parsed.from_address or "",
        message_id=message_id,
    )
    _tell_staff(session, services, case, "reopened", text=item.reply_text)
    return Applied("reopened", case.reference)


def record_satisfaction(
    session: Session, services: Services, item: Inbound, decision: RecordSatisfaction
) -> Applied:
    """The member's rating of a completed case: kept on the case; it stays completed and
    nobody is mailed."""
    case = _case(session, decision.case)
    message_id = _record_on_case(session, services, item, case, "satisfaction", item.reply_text)
    satisfaction.record(
        session,
        case,
        decision.rating,
        at=item.received_at,
        actor=item.parsed.from_address or "",
        message_id=message_id,
    )
    return Applied("satisfaction_recorded", case.reference)


def officer_reply(
    session: Session, services: Services, item: Inbound, decision: OfficerReply
) -> Applied:
    """The lead officer answers: relayed to the member (unless #internal)."""
    case = _case(session, decision.case)
    now = utcnow()
    text = strip_keywords(item.reply_text or "").strip()
    message_id = _record_on_case(session, services, item, case, decision.kind, text)
    officer = item.parsed.from_address or ""
    for line in decision.malformed:
        add_event(
            session,
            case.id,
            "keyword_not_understood",
            f"{line!r} was not understood (use e.g. #extend 5 waiting for the contractor); "
            "the deadline is unchanged",
            actor=officer,
            message_id=message_id,
        )
    if decision.kind == "internal":
        add_event(
            session,
            case.id,
            "internal_note",
            "internal note from the lead officer",
            actor=officer,
            message_id=message_id,
        )
        _touch(case, now)
        session.add(case)
        return Applied("internal_note", case.reference)
    if decision.kind == "holding" and decision.extend_days:
        # An extension adds working days to the deadline in force: it never brings it forward.
        current = case.extended_due or case.response_due
        case.extended_due = services.calendar.add_working_days(current, decision.extend_days)
        case.extension_reason = (decision.extend_reason or "")[:500] or None
        add_event(
            session,
            case.id,
            "deadline_extended",
            f"deadline extended by {decision.extend_days} working days to "
            f"{case.extended_due.isoformat()} (the original, {case.response_due.isoformat()}, "
            f"stays in reports)" + (f": {case.extension_reason}" if case.extension_reason else ""),
            actor=officer,
            message_id=message_id,
        )
    # Service-level figures count from when the reply reached us, not when we processed it.
    answered = item.received_at
    case.first_response_at = case.first_response_at or answered
    case.last_response_at = answered
    if decision.kind == "response":
        clock.settle_pause(session, services, case, actor=officer, now=now)
        case.status = CaseStatus.COMPLETED
        case.completed_at = answered
    _touch(case, now)
    session.add(case)
    add_event(
        session,
        case.id,
        "responded" if decision.kind == "response" else "holding_reply",
        "response sent to the member; case completed"
        if decision.kind == "response"
        else "holding reply sent to the member; case stays open",
        actor=officer,
        message_id=message_id,
    )
    attachments, listed = attachments_of(
        session, services, message_id, services.config.cases.officer_attachments_max_bytes
    )
    to, cc = member_recipients(session, case)
    queue.queue_mail(
        session,
        services,
        kind=decision.kind,
        template="response",
        to=to,
        cc=cc,
        thread=thread_for(session, case),
        context={
            "case": case,
            "text": text,
            "holding": decision.kind == "holding",
            "officer": _person(session, case.lead_officer_id),
            "due": case.extended_due or case.response_due,
            "listed": listed,
        },
        attachments=attachments,
    )
    if decision.kind == "response":
        satisfaction.ask(session, services, case, thread_for(session, case))
    return Applied(decision.kind, case.reference)


def contribution(
    session: Session, services: Services, item: Inbound, decision: Contribution
) -> Applied:
    """An additional officer's input: kept, and forwarded to the lead and coordinators only."""
    case = _case(session, decision.case)
    text = (item.reply_text or "").strip()
    message_id = _record_on_case(session, services, item, case, "contribution", text)
    add_event(
        session,
        case.id,
        "contribution",
        "contribution from an additional officer",
        actor=item.parsed.from_address or "",
        message_id=message_id,
    )
    _touch(case, utcnow())
    session.add(case)
    attachments, listed = attachments_of(
        session, services, message_id, services.config.cases.officer_attachments_max_bytes
    )
    queue.queue_mail(
        session,
        services,
        kind="contribution",
        template="contribution",
        to=_lead_and_coordinators(session, services, case),
        thread=thread_for(session, case, item),
        context={
            "case": case,
            "text": text,
            "author": item.parsed.from_name or item.parsed.from_address,
            "listed": listed,
        },
        attachments=attachments,
    )
    return Applied("contribution", case.reference)


def coordinator_note(
    session: Session, services: Services, item: Inbound, decision: CoordinatorNote
) -> Applied:
    """A coordinator's note; with #member it goes to the member too."""
    case = _case(session, decision.case)
    text = strip_keywords(item.reply_text or "").strip()
    message_id = _record_on_case(session, services, item, case, "note", text)
    add_event(
        session,
        case.id,
        "note_to_member" if decision.to_member else "note",
        "coordinator's note, sent to the member" if decision.to_member else "coordinator's note",
        actor=item.parsed.from_address or "",
        message_id=message_id,
    )
    _touch(case, utcnow())
    session.add(case)
    if decision.to_member:
        to, cc = member_recipients(session, case)
        queue.queue_mail(
            session,
            services,
            kind="note_to_member",
            template="note",
            to=to,
            cc=cc,
            thread=thread_for(session, case),
            context={"case": case, "text": text},
        )
    return Applied("note", case.reference)


def note_auto_reply(
    session: Session, services: Services, item: Inbound, decision: NoteAutoReply
) -> Applied:
    """Logged and nothing more; an assigned officer's out-of-office is flagged to coordinators."""
    case = _case(session, decision.case)
    message_id = record_inbound(session, item, Disposition.CASE, case.id, role="auto_reply")
    add_event(
        session,
        case.id,
        "auto_reply_received",
        f"{decision.kind.replace('_', ' ')} from {item.parsed.from_address}",
        message_id=message_id,
    )
    if decision.officer_away:
        add_event(
            session,
            case.id,
            "officer_away",
            f"{item.parsed.from_address} is away: consider reassigning",
            actor=item.parsed.from_address or "",
        )
        queue.queue_mail(
            session,
            services,
            kind="officer_away",
            template="officer_away",
            to=queue.coordinator_addresses(services),
            thread=thread_for(session, case),
            context={
                "case": case,
                "officer": item.parsed.from_address,
                "text": (item.parsed.body_text or "")[:1500],
            },
            automatic=True,
        )
    return Applied("auto_reply", case.reference)


def note_bounce(
    session: Session, services: Services, item: Inbound, decision: NoteBounce
) -> Applied | None:
    """A bounce of our mail: the case records who failed; permanent failures are flagged.

    None when the bounce matches no mail of ours: the caller quarantines it (a forged
    bounce must not flag anyone's address).
    """
    bounce: Bounce = decision.bounce
    case_id = facts.case_of_outgoing(session, bounce.original_message_id)
    if bounce.original_message_id is None or (
        case_id is None and not _ours(session, bounce.original_message_id)
    ):
        return None
    message_id = record_inbound(
        session,
        item,
        Disposition.CASE if case_id else Disposition.HANDLED,
        case_id,
        role="bounce",
    )
    words = (
        "; ".join(
            f"{f.address}: {f.status or '?'} {f.diagnostic or ''}".strip() for f in bounce.failures
        )
        or bounce.reason
    )
    add_event(
        session,
        case_id,
        "delivery_failed",
        ("permanent" if bounce.permanent else "temporary") + f" failure: {words}",
        message_id=message_id,
    )
    now = utcnow()
    for failure in bounce.failures:
        if failure.permanent and session.get(AddressFlag, failure.address.lower()) is None:
            insert_row(
                session,
                AddressFlag,
                email=failure.address.lower(),
                reason=f"{failure.status or '5.0.0'} {failure.diagnostic or ''}".strip()[:500],
                case_id=case_id,
                flagged_at=now,
            )
            queue.forget_flags(session)
    case = session.get(Case, case_id) if case_id else None
    if case is None:
        # Mail on no case (a reply to a stranger, whose address may well be forged): the
        # message log is enough; telling coordinators would only spend their mail allowance.
        return Applied("bounce")
    queue.queue_mail(
        session,
        services,
        kind="bounce_notice",
        template="bounce_notice",
        to=queue.coordinator_addresses(services),
        thread=thread_for(session, case),
        context={
            "case": case,
            "failures": bounce.failures,
            "permanent": bounce.permanent,
            "reason": bounce.reason,
        },
        automatic=True,
    )
    return Applied("bounce", case.reference)


def _ours(session: Session, message_id: str) -> bool:
    return (
        session.exec(
            select(Message.id).where(
                Message.message_id == message_id, Message.direction == Direction.OUT
            )
        ).first()
        is not None
    )


def status_request(
    session: Session, services: Services, item: Inbound, decision: StatusRequest
) -> Applied:
    """The member's dashboard by email: their own enquiries only, never another member's."""
    record_inbound(session, item, Disposition.HANDLED, None, role="status_request")
    member = _person(session, decision.member_id)
    requester = _person(session, decision.requester_id)
    assert member is not None and requester is not None
    today = services.calendar.local_date(utcnow())
    board = member_dashboard(session, services, decision.member_id, today)
    queue.queue_mail(
        session,
        services,
        kind="status",
        template="status",
        to=[requester.email],
        context=board.context(member, requester, today),
        automatic=True,
    )
    return Applied("status_sent")


def answer_stranger(session: Session, services: Services, item: Inbound) -> bool:
    """One polite reply that the mailbox is for councillors, at most once a day per sender."""
    address = item.parsed.from_address
    limit = services.config.automatic_mail.stranger_replies_per_day
    if not address or limit <= 0 or not hygiene.may_answer_automatically(address, item.parsed):
        return False
    if queue.stranger_replies_today(session, address) >= limit:
        return False
    queued = queue.queue_mail(
        session,
        services,
        kind="stranger_reply",
        template="stranger",
        to=[address],
        context={"subject": item.parsed.subject},
        automatic=True,
    )
    return queued is not None
