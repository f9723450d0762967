"""An officer's answers given in the browser: the same effect as the email an officer sends
(cases/inbound.py `officer_answer`, `pass_on_contribution`), in one transaction each, with
the same mail out.

The form controls stand for the email keywords: a response (the lead's plain reply:
completes the case), a holding reply (`#holding`), a holding reply that moves the deadline
(`#holding` with `#extend N reason`), an internal note (`#internal`), and an additional
officer's contribution (their reply, which goes to the lead and the coordinators). Who may
do which is asked of cases/permissions.py, inside the action's transaction: someone with no
standing on the case gets `NotOnCase` (a case that does not exist, to them), someone whose
standing does not allow the action gets `NotAllowed`. The case's events name the `actor`
as the door gives it (the web console: the person, the channel and their address).

The answer is kept as the email's would be: a Message on the case (direction "in", its role
the kind, the text as its reply text) and its files beside it (records.keep_file: the size
cap, filename rules, content-addressed storage and held-back verdicts of email), so the
history, notices and reports read it alike.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from mailbridge.cases import lifecycle
from mailbridge.cases.coordinator import Upload
from mailbridge.cases.correspondence import thread_for
from mailbridge.cases.inbound import Applied, officer_answer, pass_on_contribution
from mailbridge.cases.permissions import Action, Standing, allows, standings
from mailbridge.cases.records import add_event, find_case, keep_file
from mailbridge.deadlines import clock
from mailbridge.deadlines.policy import EXTEND_MOST_DAYS
from mailbridge.errors import UserError
from mailbridge.mail.attachments import held_back
from mailbridge.mail.parsing import UniqueNames, sanitise_filename
from mailbridge.services import Services
from mailbridge.store.db import action, insert_row
from mailbridge.store.models import Case, Direction, Disposition, Message, Person, utcnow

ANSWERS = ("response", "holding")
OFFICER_STANDINGS = frozenset({Standing.LEAD, Standing.ADDITIONAL})
TEXT_MOST_CHARS = 100_000


class NotOnCase(UserError):
    """The person has no standing on the case: to them it does not exist."""


class NotAllowed(UserError):
    """The person is on the case, but their standing does not allow this action."""


def _officer_on(
    session: Session, reference: str, officer_id: int, wanted: Action
) -> tuple[Case, Person, frozenset[Standing]]:
    """The case (found first in the transaction, so a version check applies) and the officer,
    when they may do `wanted` to it."""
    case = find_case(session, reference)
    officer = session.get(Person, officer_id)
    # Only their standing as an officer counts: an officer who also coordinates answers
    # here as the email door takes their reply (routing looks at lead and additional first).
    held = standings(session, officer, case) & OFFICER_STANDINGS
    if officer is None or not held:
        raise NotOnCase(f"no case has reference {reference.strip()}")
    if not allows(held, wanted):
        raise NotAllowed(_REFUSALS[wanted])
    return case, officer, held


_REFUSALS = {
    Action.RESPOND: "Only the lead officer can answer the member: send your contribution "
    "to the lead instead",
    Action.EXTEND: "Only the lead officer can extend the deadline: ask the lead or a coordinator",
    Action.NOTE: "You cannot add notes to this case",
    Action.CONTRIBUTE: "Only an additional officer sends a contribution: as the lead officer, "
    "answer the member or add an internal note",
}


def _text(text: str, what: str) -> str:
    cleaned = text.replace("\r\n", "\n").strip()
    if not cleaned:
        raise UserError(f"Enter the {what}")
    if len(cleaned) > TEXT_MOST_CHARS:
        raise UserError(f"The {what} is longer than {TEXT_MOST_CHARS:,} characters: shorten it")
    return cleaned


def _record(
    session: Session,
    services: Services,
    case: Case,
    officer: Person,
    *,
    role: str,
    text: str,
    uploads: Sequence[Upload],
    now: datetime,
) -> int:
    """The answer's Message on the case, and its files kept beside it as email's are."""
    assert case.id is not None
    cap = services.config.storage.max_attachment_bytes
    for upload in uploads:
        if cap and len(upload.data) > cap:
            raise UserError(
                f"{upload.called} is {len(upload.data):,} bytes, over the {cap:,}-byte limit: "
                "send a smaller file"
            )
    message_id = insert_row(
        session,
        Message,
        direction=Direction.IN,
        case_id=case.id,
        disposition=Disposition.CASE,
        sender=officer.email[:998],
        sender_name=officer.name,
        subject=f"{role.capitalize()} on {case.reference} (web)",
        received_at=now,
        body_text=text,
        reply_text=text,
        role=role,
        created_at=now,
    )
    unique = UniqueNames(services.config.storage.max_filename_length)
    for upload in uploads:
        name = unique(
            sanitise_filename(
                upload.name,
                fallback="attachment.bin",
                max_length=services.config.storage.max_filename_length,
            )
        )
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        keep_file(
            session,
            services,
            filename=name,
            content_type=ctype,
            payload=upload.data,
            inline=False,
            held=held_back(name, ctype, upload.data),
            message_id=message_id,
            case_id=case.id,
            reference=case.reference,
        )
    return message_id


def respond(
    services: Services,
    reference: str,
    text: str,
    uploads: Sequence[Upload] = (),
    *,
    officer_id: int,
    actor: str,
    kind: str = "response",
    extend_days: int | None = None,
    extend_reason: str = "",
) -> Applied:
    """The lead officer's answer to the member: a response (the case completes) or a holding
    reply (it stays open; with `extend_days` and a reason its deadline moves on), as their
    email would be. The uploads' blobs are kept from removal until it commits."""
    with services.blobs.keeping():
        return _respond(
            services,
            reference,
            text,
            uploads,
            officer_id=officer_id,
            actor=actor,
            kind=kind,
            extend_days=extend_days,
            extend_reason=extend_reason,
        )


@action
def _respond(
    session: Session,
    services: Services,
    reference: str,
    text: str,
    uploads: Sequence[Upload],
    *,
    officer_id: int,
    actor: str,
    kind: str,
    extend_days: int | None,
    extend_reason: str,
) -> Applied:
    if kind not in ANSWERS:
        raise UserError(f"Choose what the answer is: one of {', '.join(ANSWERS)}")
    wanted = Action.EXTEND if extend_days is not None else Action.RESPOND
    case, officer, held = _officer_on(session, reference, officer_id, wanted)
    if not allows(held, Action.RESPOND):
        raise NotAllowed(_REFUSALS[Action.RESPOND])
    lifecycle.refuse_closed(session, case)
    why = " ".join(extend_reason.split())
    if extend_days is not None:
        if kind != "holding":
            raise UserError("An extension goes with a holding reply: the case stays open")
        clock.refuse_unless_open(case, "extended")
        if not 1 <= extend_days <= EXTEND_MOST_DAYS:
            raise UserError(f"Enter from 1 to {EXTEND_MOST_DAYS} working days")
        if not why:
            raise UserError("Enter why the deadline moves: the member is told")
        if len(why) > 500:
            raise UserError("The reason is longer than 500 characters: shorten it")
    body = _text(text, "message to the member")
    now = utcnow()
    message_id = _record(
        session, services, case, officer, role=kind, text=body, uploads=uploads, now=now
    )
    return officer_answer(
        session,
        services,
        case,
        message_id,
        kind=kind,
        text=body,
        officer=actor,
        answered=now,
        extend_days=extend_days,
        extend_reason=why or None,
    )


@action
def add_note(
    session: Session,
    services: Services,
    reference: str,
    text: str,
    *,
    officer_id: int,
    actor: str,
) -> Applied:
    """An internal note: the lead's is their `#internal` email; an additional officer's is
    kept the same way. Nobody is mailed."""
    case, officer, held = _officer_on(session, reference, officer_id, Action.NOTE)
    lifecycle.refuse_closed(session, case)
    body = _text(text, "note")
    now = utcnow()
    message_id = _record(
        session, services, case, officer, role="internal", text=body, uploads=(), now=now
    )
    if Standing.LEAD in held:
        return officer_answer(
            session,
            services,
            case,
            message_id,
            kind="internal",
            text=body,
            officer=actor,
            answered=now,
        )
    add_event(
        session,
        case.id,
        "internal_note",
        "internal note from an additional officer",
        actor=actor,
        message_id=message_id,
    )
    lifecycle.touch(case, now)
    session.add(case)
    return Applied("internal_note", case.reference)


def contribute(
    services: Services,
    reference: str,
    text: str,
    uploads: Sequence[Upload] = (),
    *,
    officer_id: int,
    actor: str,
) -> Applied:
    """An additional officer's contribution, as their emailed reply: to the lead officer and
    the coordinators, never the member."""
    with services.blobs.keeping():
        return _contribute(services, reference, text, uploads, officer_id=officer_id, actor=actor)


@action
def _contribute(
    session: Session,
    services: Services,
    reference: str,
    text: str,
    uploads: Sequence[Upload],
    *,
    officer_id: int,
    actor: str,
) -> Applied:
    case, officer, _held = _officer_on(session, reference, officer_id, Action.CONTRIBUTE)
    lifecycle.refuse_closed(session, case)
    body = _text(text, "contribution")
    message_id = _record(
        session,
        services,
        case,
        officer,
        role="contribution",
        text=body,
        uploads=uploads,
        now=utcnow(),
    )
    return pass_on_contribution(
        session,
        services,
        case,
        message_id,
        text=body,
        officer=actor,
        author=officer.name or officer.email,
        thread=thread_for(session, case),
    )
