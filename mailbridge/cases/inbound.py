"""What an inbound email does to a case, once routing decided what it means: each function
applies one Decision (cases/decisions.py) inside the caller's transaction — records the
message on the case, moves the case along (lifecycle.py) and queues the emails people must
get. Nothing here decides; the pipeline's apply table calls these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select

from mailbridge.cases import lifecycle, satisfaction
from mailbridge.cases.correspondence import (
    attachments_of,
    lead_and_coordinators,
    member_recipients,
    person,
    tell_staff,
    thread_for,
)
from mailbridge.cases.decisions import (
    Chase,
    Contribution,
    CoordinatorNote,
    NoteAutoReply,
    NoteBounce,
    OfficerReply,
    OpenCase,
    RecordSatisfaction,
    Reopen,
    StatusRequest,
)
from mailbridge.cases.facts import CaseFacts, outgoing
from mailbridge.cases.records import (
    Inbound,
    add_event,
    allocate_reference,
    record_inbound,
    store_attachments,
)
from mailbridge.console.member_status import member_dashboard
from mailbridge.deadlines import clock, policy
from mailbridge.deadlines.policy import EXTEND_MOST_DAYS
from mailbridge.delivery import queue
from mailbridge.delivery.limits import DAY, Window, per_hour_and_day, reached
from mailbridge.mail import hygiene, subjects
from mailbridge.mail.hygiene import Bounce
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.mail.replies import strip_keywords
from mailbridge.services import Services
from mailbridge.store.db import insert_row
from mailbridge.store.models import (
    AddressFlag,
    Case,
    CaseStatus,
    Disposition,
    Message,
    Person,
    as_utc,
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
    store_attachments(session, services, item, message_id, case.id, case.reference)
    return message_id


# --- a new case ----------------------------------------------------------------------


SUMMARY_CHARS = 600


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


# How a case's first event names the door it came in by (Case.channel).
DOORS = {"email": "an email", "web": "the on-line form", "api": "another council system"}


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
        "channel": decision.channel,
        "acknowledge_due": due.acknowledge_due,
        "response_due": due.response_due,
        # The acknowledgement is queued below, in this same transaction.
        "acknowledged_at": now,
        "created_at": now,
        "updated_at": now,
    }
    if decision.linked_case_id is not None:
        case["linked_case_id"] = decision.linked_case_id
    if decision.preferred_contact:
        case["preferred_contact"] = decision.preferred_contact
    case_id = insert_row(session, Case, **case)
    message_id = record_inbound(session, item, Disposition.CASE, case_id, role="enquiry")
    via = f" via delegate {submitter.name}" if submitter.id != member.id else ""
    area = case["service_area"]
    add_event(
        session,
        case_id,
        "case_opened",
        f"opened from {DOORS[decision.channel]} by {member.name}{via}; service area "
        + (f"{'given' if decision.area_given else 'guessed'} as {area}" if area else "not guessed")
        + (
            f"; follows up case id {decision.linked_case_id}, completed too long ago to reopen"
            if decision.linked_case_id
            else ""
        ),
        actor_id=None if decision.actor else submitter.id,
        actor=decision.actor or submitter.email,
        message_id=message_id,
    )
    kept, refused, held = store_attachments(session, services, item, message_id, case_id, reference)
    queue_acknowledgement(
        session, services, case_id, case, member, submitter, p, kept, refused, held
    )
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
    held: list[str],
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
            "held": held,
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


# --- decisions ------------------------------------------------------------------------


def chase(session: Session, services: Services, item: Inbound, decision: Chase) -> Applied:
    """The member asks for an update by email."""
    case = _case(session, decision.case)
    message_id = _record_on_case(session, services, item, case, "chaser", item.reply_text)
    address = item.parsed.from_address or ""
    request_update(
        session,
        services,
        case,
        sender=address,
        actor=address,
        text=item.reply_text,
        message_id=message_id,
    )
    return Applied("chased", case.reference)


def _earlier_chasers(
    session: Session, case_id: int, sender: str, message_id: int, windows: Sequence[Window]
) -> list[int]:
    """The sender's other chasers on the case within each window ending now."""
    now = utcnow()
    return [
        int(
            session.exec(
                select(func.count()).where(
                    Message.case_id == case_id,
                    Message.role == "chaser",
                    func.lower(Message.sender) == sender.lower(),
                    Message.id != message_id,
                    col(Message.created_at) > now - window.span,
                )
            ).one()
        )
        for window in windows
    ]


def request_update(
    session: Session,
    services: Services,
    case: Case,
    *,
    sender: str,
    actor: str,
    text: str | None,
    message_id: int,
    actor_id: int | None = None,
) -> str | None:
    """A chaser, by email or from the portal: counted, an event naming who asked, and the
    lead officer and coordinators told, up to `[limits] chasers_per_case_per_hour` and
    `_per_day` from one address on one case (the same rule for both doors). `message_id`:
    the chaser's message on the case. Returns the limit reached, in words, or None."""
    assert case.id is not None
    limits = services.config.limits
    windows = per_hour_and_day(limits.chasers_per_case_per_hour, limits.chasers_per_case_per_day)
    full = reached(windows, _earlier_chasers(session, case.id, sender, message_id, windows))
    case.chase_count += 1
    lifecycle.touch(case, utcnow())
    session.add(case)
    add_event(
        session,
        case.id,
        "update_requested",
        f"update requested ({case.chase_count} so far)"
        + (f"; nobody told again, as this address sent {full}" if full else ""),
        actor=actor,
        actor_id=actor_id,
        message_id=message_id,
    )
    if full is not None:
        log.info("chaser not passed on", extra={"case": case.reference, "reason": full})
        return full
    tell_staff(
        session,
        services,
        case,
        "chase",
        count=case.chase_count,
        text=text,
        lead=person(session, case.lead_officer_id),
        due=case.extended_due or case.response_due,
    )
    return None


def reopen(session: Session, services: Services, item: Inbound, decision: Reopen) -> Applied:
    """A member writes on a recently completed case: it is open again."""
    case = _case(session, decision.case)
    message_id = _record_on_case(session, services, item, case, "reopened", item.reply_text)
    reopen_case(
        session,
        services,
        case,
        how="the member's email",
        actor=item.parsed.from_address or "",
        text=item.reply_text,
        message_id=message_id,
    )
    return Applied("reopened", case.reference)


def reopen_case(
    session: Session,
    services: Services,
    case: Case,
    *,
    how: str,
    actor: str,
    text: str | None,
    message_id: int,
    actor_id: int | None = None,
) -> None:
    """A completed case open again at the member's word (an email on it, or the portal's
    button), within the reopen window (lifecycle.reopens); the lead and coordinators told."""
    lifecycle.reopen(case, utcnow())
    session.add(case)
    add_event(
        session,
        case.id,
        "reopened",
        f"reopened by {how} ({case.reopened_count} times so far)",
        actor=actor,
        actor_id=actor_id,
        message_id=message_id,
    )
    tell_staff(session, services, case, "reopened", text=text)


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
    text = strip_keywords(item.reply_text or "").strip()
    message_id = _record_on_case(session, services, item, case, decision.kind, text)
    officer = item.parsed.from_address or ""
    for line in decision.malformed:
        add_event(
            session,
            case.id,
            "keyword_not_understood",
            f"{line!r} was not understood (use e.g. #extend 5 waiting for the contractor, "
            f"1 to {EXTEND_MOST_DAYS} working days); the deadline is unchanged",
            actor=officer,
            message_id=message_id,
        )
    return officer_answer(
        session,
        services,
        case,
        message_id,
        kind=decision.kind,
        text=text,
        officer=officer,
        answered=item.received_at,
        extend_days=decision.extend_days,
        extend_reason=decision.extend_reason,
    )


def officer_answer(
    session: Session,
    services: Services,
    case: Case,
    message_id: int,
    *,
    kind: str,
    text: str,
    officer: str,
    answered: datetime,
    extend_days: int | None = None,
    extend_reason: str | None = None,
) -> Applied:
    """What the lead officer's answer does, by email or in the browser: `kind` "response"
    completes the case, "holding" keeps it open (and with `extend_days` moves its deadline),
    "internal" is a note nobody is mailed. The answer's message (`message_id`) is on the
    case already, with its attachments, which go on to the member.

    `answered`: when the answer reached us, from which service-level figures count."""
    now = utcnow()
    if kind == "internal":
        add_event(
            session,
            case.id,
            "internal_note",
            "internal note from the lead officer",
            actor=officer,
            message_id=message_id,
        )
        lifecycle.touch(case, now)
        session.add(case)
        return Applied("internal_note", case.reference)
    if kind == "holding" and extend_days:
        clock.extend(
            session,
            services,
            case,
            extend_days,
            extend_reason,
            actor=officer,
            now=now,
            message_id=message_id,
        )
    lifecycle.record_response(case, answered)
    if kind == "response":
        lifecycle.complete(session, services, case, at=answered, actor=officer, now=now)
    else:
        lifecycle.touch(case, now)
    session.add(case)
    add_event(
        session,
        case.id,
        "responded" if kind == "response" else "holding_reply",
        "response sent to the member; case completed"
        if kind == "response"
        else "holding reply sent to the member; case stays open",
        actor=officer,
        message_id=message_id,
    )
    sent_on = attachments_of(
        session, services, message_id, services.config.cases.officer_attachments_max_bytes
    )
    to, cc = member_recipients(session, case)
    queue.queue_mail(
        session,
        services,
        kind=kind,
        template="response",
        to=to,
        cc=cc,
        thread=thread_for(session, case),
        context={
            "case": case,
            "text": text,
            "holding": kind == "holding",
            "officer": person(session, case.lead_officer_id),
            "due": case.extended_due or case.response_due,
            "listed": sent_on.listed,
            "held": sent_on.held,
            "reopen_days": services.config.cases.reopen_working_days,
        },
        attachments=sent_on.files,
    )
    if kind == "response":
        satisfaction.ask(session, services, case, thread_for(session, case))
    return Applied(kind, case.reference)


def contribution(
    session: Session, services: Services, item: Inbound, decision: Contribution
) -> Applied:
    """An additional officer's input: kept, and forwarded to the lead and coordinators only."""
    case = _case(session, decision.case)
    text = (item.reply_text or "").strip()
    message_id = _record_on_case(session, services, item, case, "contribution", text)
    return pass_on_contribution(
        session,
        services,
        case,
        message_id,
        text=text,
        officer=item.parsed.from_address or "",
        author=item.parsed.from_name or item.parsed.from_address,
        thread=thread_for(session, case, item),
    )


def pass_on_contribution(
    session: Session,
    services: Services,
    case: Case,
    message_id: int,
    *,
    text: str,
    officer: str,
    author: str | None,
    thread: queue.Thread,
) -> Applied:
    """What an additional officer's contribution does, by email or in the browser: an event,
    and the text with its files (on the case already as `message_id`) sent to the lead
    officer and the coordinators, never to the member."""
    add_event(
        session,
        case.id,
        "contribution",
        "contribution from an additional officer",
        actor=officer,
        message_id=message_id,
    )
    lifecycle.touch(case, utcnow())
    session.add(case)
    sent_on = attachments_of(
        session, services, message_id, services.config.cases.officer_attachments_max_bytes
    )
    queue.queue_mail(
        session,
        services,
        kind="contribution",
        template="contribution",
        to=lead_and_coordinators(session, services, case),
        thread=thread,
        context={
            "case": case,
            "text": text,
            "author": author,
            "listed": sent_on.listed,
            "held": sent_on.held,
        },
        attachments=sent_on.files,
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
    lifecycle.touch(case, utcnow())
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
    ours = outgoing(session, bounce.original_message_id)
    if ours is None:
        return None
    case_id, sent_to = ours.case_id, ours.recipients
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
    claimed = ("permanent" if bounce.permanent else "temporary") + f" failure: {words}"
    if decision.doubt:
        # Not made by the council's own mail system: it claims, it proves nothing.
        add_event(
            session,
            case_id,
            "bounce_not_believed",
            f"a delivery report not believed ({decision.doubt}); it claimed {claimed}; "
            "nobody flagged",
            message_id=message_id,
        )
        case = session.get(Case, case_id) if case_id else None
        return Applied("bounce", case.reference if case else None)
    add_event(session, case_id, "delivery_failed", claimed, message_id=message_id)
    now = utcnow()
    believed = [f for f in bounce.failures if f.address.lower() in sent_to]
    for failure in bounce.failures:
        if failure not in believed:
            # Anyone can quote one of our Message-IDs in a forged report: only an address that
            # email went to can have failed to receive it.
            add_event(
                session,
                case_id,
                "bounce_not_believed",
                f"{failure.address} was not a recipient of that email; not flagged",
                message_id=message_id,
            )
            continue
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
    if case is None or (bounce.failures and not believed):
        # Mail on no case (a reply to a stranger, whose address may well be forged), or a
        # report that names nobody the email went to: the case's events and the message log
        # are enough; telling coordinators would only spend their mail allowance.
        return Applied("bounce", case.reference if case else None)
    queue.queue_mail(
        session,
        services,
        kind="bounce_notice",
        template="bounce_notice",
        to=queue.coordinator_addresses(services),
        thread=thread_for(session, case),
        context={
            "case": case,
            "failures": believed or bounce.failures,
            "permanent": bounce.permanent,
            "reason": bounce.reason,
        },
        automatic=True,
    )
    return Applied("bounce", case.reference)


def status_request(
    session: Session, services: Services, item: Inbound, decision: StatusRequest
) -> Applied:
    """The member's dashboard by email: their own enquiries only, never another member's."""
    record_inbound(session, item, Disposition.HANDLED, None, role="status_request")
    member = person(session, decision.member_id)
    requester = person(session, decision.requester_id)
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


def tell_too_large(session: Session, services: Services, item: Inbound) -> bool:
    """One notice to a sender in the directory that their email was too large to take in
    (so the attachments can come again in smaller emails), within the per-address limits
    of automatic mail. It repeats nothing of their email, only its size and when it came."""
    address = item.parsed.from_address
    if not address or not hygiene.may_answer_automatically(address, item.parsed):
        return False
    received = as_utc(item.received_at).astimezone(services.calendar.zone)
    queued = queue.queue_mail(
        session,
        services,
        kind="too_large_notice",
        template="too_large",
        to=[address],
        context={
            "received": received,
            "size_mb": round(item.raw_size / 1024 / 1024, 1),
            "limit_mb": round(services.config.mailbox.max_message_bytes / 1024 / 1024, 1),
        },
        automatic=True,
    )
    return queued is not None


def answer_stranger(session: Session, services: Services, item: Inbound) -> bool:
    """One polite reply that the mailbox is for councillors: at most so many a day per
    address, and so many a day in all, so forged strangers cannot mail the world from us."""
    address = item.parsed.from_address
    if not address or not hygiene.may_answer_automatically(address, item.parsed):
        return False
    cfg = services.config
    now = utcnow()
    each = (Window(DAY, cfg.automatic_mail.stranger_replies_per_day),)
    total = (Window(DAY, cfg.limits.stranger_replies_total_per_day),)
    sent = queue.sent_within(session, each, now, address=address, kind="stranger_reply")
    if reached(each, sent) is not None:
        return False
    full = reached(total, queue.sent_within(session, total, now, kind="stranger_reply"))
    if full is not None:
        log.info("stranger not answered", extra={"reason": f"stranger replies: {full}"})
        return False
    queued = queue.queue_mail(
        session,
        services,
        kind="stranger_reply",
        template="stranger",
        to=[address],
        # Nothing of theirs is repeated: a forged From would turn our reply into their
        # message ("Your mailbox is full: re-validate at ...") sent from the council.
        context={},
        automatic=True,
    )
    return queued is not None
