"""Who a case's mail goes to, on which thread, carrying what: the recipients (the member,
every member linked or merged in, the delegate who wrote for them; the lead officer and the
coordinators), the thread, the recent history and the attachments sent on.

Shared by what inbound email does (inbound.py), the coordinator's actions, assignment and
the scheduled reminders, so every email about a case is addressed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_
from sqlmodel import Session, col, select

from mailbridge.cases.facts import root_message_id
from mailbridge.cases.records import Inbound
from mailbridge.delivery import queue
from mailbridge.mail.attachments import UNPACKED, held_back
from mailbridge.services import Services
from mailbridge.store.models import Attachment, Case, CaseMember, Direction, Message, Person


def person(session: Session, person_id: int | None) -> Person | None:
    """A person by id; None for no id (a case without a lead officer, say)."""
    return session.get(Person, person_id) if person_id is not None else None


def thread_for(session: Session, case: Case, item: Inbound | None = None) -> queue.Thread:
    """The thread a case's mail goes on: its subject, tag and first Message-ID; with `item`,
    answering that message."""
    assert case.id is not None
    return queue.Thread(
        case_id=case.id,
        reference=case.reference,
        subject=case.subject,
        started=case.created_at,
        root_message_id=root_message_id(session, case.id),
        answering=item.parsed.message_id if item else None,
        answering_references=item.parsed.references if item else (),
    )


def member_recipients(session: Session, case: Case) -> tuple[list[str], list[str]]:
    """To the member and every other member on the case (`case link`, `case merge`), in
    the order they joined; a copy to the delegate who wrote the enquiry for them."""
    member = person(session, case.member_id)
    submitter = person(session, case.submitter_id)
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


def lead_and_coordinators(session: Session, services: Services, case: Case) -> list[str]:
    """Who staff notices go to: the lead officer, if any, and the coordinators."""
    lead = person(session, case.lead_officer_id)
    return ([lead.email] if lead else []) + queue.coordinator_addresses(services)


@dataclass(frozen=True, slots=True)
class SentOn:
    """What of a message's files goes with an email about it, and what the email names."""

    files: list[tuple[str, str, bytes]]  # (filename, content type, bytes) to attach
    listed: list[str]  # kept on the case, too large for email or refused
    held: list[str]  # "name: why", never sent on (mail/attachments.py held_back)


def attachments_of(session: Session, services: Services, message_id: int, cap: int) -> SentOn:
    """A message's kept, non-inline attachments up to `cap` bytes in total; the rest named.

    The one place case files are sent on from: a file with a held reason (a program, a
    script, a web page with a form, a failed virus scan) is named with why, never attached.
    The rule is asked again of each file about to go, so one kept before the rule existed
    (an upgraded database) is judged too.
    """
    sent: list[tuple[str, str, bytes]] = []
    listed: list[str] = []
    held: list[str] = []
    total = 0
    rows = session.exec(
        select(Attachment)
        .where(Attachment.message_id == message_id, col(Attachment.inline).is_(False))
        .order_by(col(Attachment.id))
    ).all()
    message = session.get(Message, message_id)
    if rows and message is not None and message.erased_at is not None:
        # Erased with its case (the retention policy, a request): names and bytes are gone.
        return SentOn([], [f"{len(rows)} attached file(s), since erased"], [])
    for att in rows:
        if att.sha256 is None:
            listed.append(f"{att.filename} (refused: {att.refused_reason})")
        elif att.held_reason:
            if att.held_reason != UNPACKED:
                held.append(f"{att.filename}: {att.held_reason}")
        elif total + att.size > cap:
            listed.append(f"{att.filename} ({att.size} bytes, kept on the case)")
        else:
            data = services.blobs.get(att.sha256)
            reason = held_back(att.filename, att.content_type, data)
            if reason:
                held.append(f"{att.filename}: {reason}")
                continue
            sent.append((att.filename, att.content_type, data))
            total += att.size
    return SentOn(sent, listed, held)


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


def tell_staff(
    session: Session, services: Services, case: Case, template: str, **context: object
) -> None:
    """A notice for the lead officer and coordinators, with the case's recent history."""
    queue.queue_mail(
        session,
        services,
        kind=f"{template}_notice",
        template=template,
        to=lead_and_coordinators(session, services, case),
        thread=thread_for(session, case),
        context={"case": case, "history": history(session, case.id or 0), **context},
        automatic=True,
        # Staff are told of every chaser: the per-address limits guard outside addresses.
        rate_limited=False,
    )
