"""A coordinator's actions on a case: each is one function with its own transaction
(`store.db.action`), which the command line and the web console call alike.

Every change writes an Event naming who made it (the `actor`); the only emails are a
`reply` to the member(s), queued through `queue.queue_mail` like all case mail.

Decisions recorded here:

- `note` is an internal note: a Message with direction "in" and role "note", the same row a
  coordinator's emailed note makes, so officers' notices that carry the case history
  (`correspondence.history`) include it. It is never sent to the member.
- `reply` mails the member, every other member on the case and the delegate who wrote the
  enquiry (`correspondence.member_recipients`); the outgoing Message gets role "reply" and its
  attachments are kept on the case. It counts as a response (first/last_response_at) but
  does not complete the case: `case status REF completed` does.
- Status changes: new <-> in_progress (back to new only while no lead officer is assigned),
  new or in_progress -> completed (sets completed_at). A completed case comes back with
  `reopen`; a closed case (merged or converted) never changes.
- `convert` stores converted_to as "complaint" or "service_request".
- A new service area or enquiry type moves an open case's deadlines to its new SLA
  (`clock.follow_sla`); the change is listed with the others and logged as its own event.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from mailbridge.cases import directory, lifecycle, satisfaction
from mailbridge.cases.correspondence import member_recipients, thread_for
from mailbridge.cases.records import add_event, find_case
from mailbridge.deadlines import clock
from mailbridge.deadlines.policy import EXTEND_MOST_DAYS
from mailbridge.delivery import queue
from mailbridge.errors import UserError
from mailbridge.files import private_folder, private_open
from mailbridge.mail.attachments import held_back
from mailbridge.mail.parsing import UniqueNames, sanitise_filename
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.store.db import action, insert_row
from mailbridge.store.models import (
    Attachment,
    Case,
    CaseMember,
    CaseStatus,
    Direction,
    Disposition,
    Message,
    Person,
    PersonKind,
    utcnow,
)

log = logging.getLogger(__name__)

CONTACT_METHODS = ("email", "phone", "letter")
CONVERSIONS = {"complaint": "complaint", "service-request": "service_request"}
FIELD_LABELS = {
    "service_area": "service area",
    "enquiry_type": "enquiry type",
    "directorate": "directorate",
    "district": "district",
    "preferred_contact": "preferred contact",
    "sensitive": "sensitive",
}


# --- helpers -------------------------------------------------------------------


def _shown(value: object) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _touch(session: Session, case: Case) -> None:
    lifecycle.touch(case, utcnow())
    session.add(case)


# --- set ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Changed:
    reference: str
    changes: tuple[str, ...]  # "service area: Highways → School Transport"


@action
def set_fields(
    session: Session,
    services: Services,
    reference: str,
    *,
    actor: str,
    service_area: str | None = None,
    enquiry_type: str | None = None,
    directorate: str | None = None,
    district: str | None = None,
    preferred_contact: str | None = None,
    sensitive: bool | None = None,
) -> Changed:
    """Change only the fields given; an empty text clears that field.

    A service area must be one of config's [[service_areas]] when any are configured, so
    the reports never count a misspelt area on its own.
    """
    given: dict[str, object] = {
        name: value
        for name, value in (
            ("service_area", service_area),
            ("enquiry_type", enquiry_type),
            ("directorate", directorate),
            ("district", district),
            ("preferred_contact", preferred_contact),
            ("sensitive", sensitive),
        )
        if value is not None
    }
    if not given:
        raise UserError(
            "nothing to change: give at least one of --service-area, --enquiry-type, "
            "--directorate, --district, --contact, --sensitive/--not-sensitive"
        )
    case = find_case(session, reference)
    for name, value in list(given.items()):
        if isinstance(value, str):
            text = " ".join(value.split())
            given[name] = text or None
    contact = given.get("preferred_contact")
    if contact is not None:
        contact = str(contact).lower()
        if contact not in CONTACT_METHODS:
            raise UserError(f"--contact must be one of: {', '.join(CONTACT_METHODS)}")
        given["preferred_contact"] = contact
    area = given.get("service_area")
    areas = [a.name for a in services.config.service_areas]
    if area is not None and areas:
        match = next((a for a in areas if a.lower() == str(area).lower()), None)
        if match is None:
            raise UserError(
                f"--service-area {area!r} is not a service area in the config "
                f"(one of: {', '.join(areas)})"
            )
        given["service_area"] = match
    for name, limit in (("enquiry_type", 100), ("directorate", 200), ("district", 200)):
        value = given.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise UserError(f"--{name.replace('_', '-')} is longer than {limit} characters")
    changes: list[str] = []
    changed: set[str] = set()
    for name, value in given.items():
        old = getattr(case, name)
        if old == value:
            continue
        setattr(case, name, value)
        changed.add(name)
        changes.append(f"{FIELD_LABELS[name]}: {_shown(old)} → {_shown(value)}")
    if changes:
        _touch(session, case)
        session.flush()
        add_event(session, case.id, "fields_changed", "; ".join(changes), actor=actor)
        if {"service_area", "enquiry_type"} & changed:
            # The deadlines follow the new SLA (clock.follow_sla says when they do not).
            moved = clock.follow_sla(session, services, case, actor=actor, now=utcnow())
            changes.extend(moved.changes if moved else ())
    return Changed(case.reference, tuple(changes))


# --- status ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusChanged:
    reference: str
    old: str
    new: str


@action
def set_status(
    session: Session, services: Services, reference: str, status: str, *, actor: str
) -> StatusChanged:
    wanted = status.strip().lower().replace("-", "_").replace(" ", "_")
    choices = (CaseStatus.NEW, CaseStatus.IN_PROGRESS, CaseStatus.COMPLETED)
    if wanted == CaseStatus.CLOSED:
        raise UserError(
            "a case is closed by `mailbridge case merge` or `mailbridge case convert`, "
            "not by a status change"
        )
    if wanted not in choices:
        raise UserError(f"status must be one of: {', '.join(choices)}")
    case = find_case(session, reference)
    lifecycle.refuse_closed(session, case)
    old = case.status
    if old == wanted:
        raise UserError(f"{case.reference} is already {lifecycle.words(old)}")
    if old == CaseStatus.COMPLETED:
        raise UserError(
            f"{case.reference} is completed; use `mailbridge case reopen {case.reference}` "
            "to open it again"
        )
    now = utcnow()
    if wanted == CaseStatus.COMPLETED:
        lifecycle.complete(session, services, case, at=now, actor=actor, now=now)
    elif wanted == CaseStatus.NEW:
        lifecycle.back_to_new(case, now)
    else:
        lifecycle.mark_in_progress(case, now)
    session.add(case)
    session.flush()
    detail = f"status {lifecycle.words(old)} → {lifecycle.words(wanted)}"
    add_event(session, case.id, "status_changed", detail, actor=actor)
    if wanted == CaseStatus.COMPLETED:
        satisfaction.ask(session, services, case, thread_for(session, case))
    return StatusChanged(case.reference, old, wanted)


# --- note -----------------------------------------------------------------------------


def _clean_text(text: str, what: str) -> str:
    cleaned = text.replace("\r\n", "\n").strip()
    if not cleaned:
        raise UserError(f"the {what} is empty")
    return cleaned


@action
def add_note(session: Session, services: Services, reference: str, text: str, *, actor: str) -> str:
    """An internal note on the case; nobody is emailed."""
    body = _clean_text(text, "note")
    case = find_case(session, reference)
    now = utcnow()
    message_id = insert_row(
        session,
        Message,
        direction=Direction.IN,
        case_id=case.id,
        disposition=Disposition.CASE,
        sender=actor[:998],
        subject=f"Note on {case.reference}",
        received_at=now,
        body_text=body,
        reply_text=body,
        role="note",
        created_at=now,
    )
    _touch(session, case)
    session.flush()
    add_event(session, case.id, "note", "internal note", actor=actor, message_id=message_id)
    return case.reference


# --- reply ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replied:
    reference: str
    recipients: tuple[str, ...]
    withheld: tuple[tuple[str, str], ...]
    attached: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a coordinator attaches to a reply, as read (a path on the command line, an
    upload in the browser); `called` is how the person named it, for the error message."""

    name: str
    data: bytes
    called: str


def _check_attachments(
    services: Services, uploads: Sequence[Upload], checked: bool
) -> list[tuple[str, str, bytes, str | None]]:
    """The files to attach: (name, type, bytes, why it would be held back). The type comes
    from the safe name, never from whoever sent the file. A file the rule holds back
    (mail/attachments.py) goes only when the coordinator says they checked it."""
    cap = services.config.storage.max_attachment_bytes
    unique = UniqueNames(services.config.storage.max_filename_length)
    files: list[tuple[str, str, bytes, str | None]] = []
    for upload in uploads:
        data = upload.data
        if cap and len(data) > cap:
            raise UserError(f"{upload.called}: {len(data)} bytes is over the {cap}-byte limit")
        name = sanitise_filename(
            upload.name,
            fallback="attachment.bin",
            max_length=services.config.storage.max_filename_length,
        )
        name = unique(name)
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        held = held_back(name, ctype, data)
        if held and not checked:
            raise UserError(
                f"{upload.called}: held back as {held}; if you have checked it and mean to "
                "send it, add --checked"
            )
        files.append((name, ctype, data, held))
    return files


def reply(
    services: Services,
    reference: str,
    text: str,
    attach: Sequence[Upload] = (),
    *,
    actor: str,
    checked: bool = False,
) -> Replied:
    """Email the member(s) on the case; recorded on it and counted as a response.

    `checked`: the coordinator checked the attached files, so one that is held back by
    type (a program, a web page with a form...) may go; it is noted on the case.
    Its attachments' blobs are kept from removal until the reply is committed."""
    with services.blobs.keeping():
        return _reply(services, reference, text, attach, actor=actor, checked=checked)


@action
def _reply(
    session: Session,
    services: Services,
    reference: str,
    text: str,
    attach: Sequence[Upload] = (),
    *,
    actor: str,
    checked: bool = False,
) -> Replied:
    body = _clean_text(text, "reply")
    case = find_case(session, reference)
    if case.status == CaseStatus.CLOSED:
        raise UserError(
            f"{case.reference} is closed ({lifecycle.closed_why(session, case)}); "
            "reply on the case that carries on from it"
        )
    files = _check_attachments(services, attach, checked)
    names = [name for name, _, _, _ in files]
    checked_names = [f"{name} ({held})" for name, _, _, held in files if held]
    to, cc = member_recipients(session, case)
    queued = queue.queue_mail(
        session,
        services,
        kind="reply",
        template="reply",
        to=to,
        cc=cc,
        thread=thread_for(session, case),
        context={"case": case, "text": body, "attached": names},
        attachments=[(name, ctype, data) for name, ctype, data, _ in files],
    )
    if queued is None:
        raise UserError(
            f"{case.reference}: the reply was not queued, as every recipient is withheld "
            "(see `mailbridge addresses list`)"
        )
    out = session.exec(
        select(Message).where(
            Message.message_id == queued.message_id, Message.direction == Direction.OUT
        )
    ).one()
    out.role = "reply"
    out.reply_text = body
    session.add(out)
    for name, ctype, data, _held in files:
        insert_row(
            session,
            Attachment,
            message_id=out.id,
            case_id=case.id,
            filename=name,
            content_type=ctype[:255],
            size=len(data),
            inline=False,
            sha256=services.blobs.put(data),
        )
    lifecycle.record_response(case, utcnow())
    _touch(session, case)
    session.flush()
    add_event(
        session,
        case.id,
        "replied",
        f"reply sent to {', '.join(queued.recipients)}"
        + (f"; attached {', '.join(names)}" if names else "")
        + (f"; checked by the coordinator: {', '.join(checked_names)}" if checked_names else ""),
        actor=actor,
        message_id=out.id,
    )
    return Replied(case.reference, queued.recipients, queued.withheld, tuple(names))


# --- reopen ---------------------------------------------------------------------------


@action
def reopen(
    session: Session, services: Services, reference: str, reason: str | None = None, *, actor: str
) -> StatusChanged:
    """A completed case open again: in progress with its lead officer, else new."""
    case = find_case(session, reference)
    lifecycle.refuse_closed(session, case)
    if case.status != CaseStatus.COMPLETED:
        raise UserError(
            f"{case.reference} is {lifecycle.words(case.status)}; "
            "only a completed case can be reopened"
        )
    lifecycle.reopen(case, utcnow())
    session.add(case)
    session.flush()
    why = " ".join((reason or "").split())
    add_event(
        session,
        case.id,
        "reopened",
        f"reopened by a coordinator ({case.reopened_count} times so far); now "
        f"{lifecycle.words(case.status)}" + (f": {why}" if why else ""),
        actor=actor,
    )
    return StatusChanged(case.reference, CaseStatus.COMPLETED, case.status)


# --- link and merge -------------------------------------------------------------------


def _members_on(session: Session, case: Case) -> set[int]:
    linked = session.exec(select(CaseMember.person_id).where(CaseMember.case_id == case.id)).all()
    return {case.member_id, *linked}


def _add_member(session: Session, case: Case, person_id: int) -> bool:
    """Another member on the case; False when they are on it already."""
    if person_id in _members_on(session, case):
        return False
    session.add(CaseMember(case_id=case.id, person_id=person_id, added_at=utcnow()))
    session.flush()
    return True


@dataclass(frozen=True, slots=True)
class Linked:
    reference: str
    member: str  # "Name <email>"
    members: tuple[str, ...]  # every member's address on the case now


@action
def link(
    session: Session, services: Services, reference: str, member_email: str, *, actor: str
) -> Linked:
    """Another member on the case: from now on they get every response and reply."""
    case = find_case(session, reference)
    lifecycle.refuse_closed(session, case)
    person = directory.person_of_kind(session, member_email, PersonKind.MEMBER, "--member")
    assert person.id is not None
    if person.id == case.member_id:
        raise UserError(f"{person.name} <{person.email}> is the member who raised {case.reference}")
    if not _add_member(session, case, person.id):
        raise UserError(f"{person.name} <{person.email}> is already on {case.reference}")
    _touch(session, case)
    session.flush()
    add_event(
        session,
        case.id,
        "member_linked",
        f"{person.name} <{person.email}> added; responses now go to every member on the case",
        actor=actor,
    )
    to, _cc = member_recipients(session, case)
    return Linked(case.reference, f"{person.name} <{person.email}>", tuple(to))


@dataclass(frozen=True, slots=True)
class Merged:
    reference: str
    into: str
    members_added: tuple[str, ...]


@action
def merge(session: Session, services: Services, reference: str, into: str, *, actor: str) -> Merged:
    """REF closes into OTHER; REF's members join OTHER. REF's history stays on REF."""
    case = find_case(session, reference)
    other = find_case(session, into)
    if case.id == other.id:
        raise UserError(f"{case.reference} cannot be merged into itself")
    lifecycle.refuse_closed(session, case)
    if other.status == CaseStatus.CLOSED:
        raise UserError(
            f"--into {other.reference} is closed ({lifecycle.closed_why(session, other)}); "
            "merge into an open case"
        )
    added: list[str] = []
    for person_id in sorted(_members_on(session, case), key=lambda p: (p != case.member_id, p)):
        if _add_member(session, other, person_id):
            person = session.get(Person, person_id)
            assert person is not None
            added.append(f"{person.name} <{person.email}>")
    old = case.status
    lifecycle.close(
        session,
        services,
        case,
        reason=f"merged into {other.reference}",
        actor=actor,
        now=utcnow(),
        merged_into=other,
    )
    session.add(case)
    _touch(session, other)
    session.flush()
    joined = f"; {', '.join(added)} added to it" if added else ""
    add_event(
        session,
        case.id,
        "merged",
        f"merged into {other.reference} (was {lifecycle.words(old)}); closed here{joined}",
        actor=actor,
    )
    add_event(
        session,
        other.id,
        "merged_in",
        f"{case.reference} merged into this case"
        + (f"; {', '.join(added)} now on this case" if added else ""),
        actor=actor,
    )
    return Merged(case.reference, other.reference, tuple(added))


# --- convert --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Converted:
    reference: str
    converted_to: str
    reason: str


@action
def convert(
    session: Session, services: Services, reference: str, to: str, reason: str, *, actor: str
) -> Converted:
    """Closed here: it carries on as a complaint or service request elsewhere."""
    kind = CONVERSIONS.get(to.strip().lower())
    if kind is None:
        raise UserError(f"--to must be one of: {', '.join(CONVERSIONS)}")
    why = " ".join(reason.split())
    if not why:
        raise UserError("--reason is empty: say why the case is converted")
    if len(why) > 500:
        raise UserError("--reason is longer than 500 characters")
    case = find_case(session, reference)
    lifecycle.refuse_closed(session, case)
    old = case.status
    lifecycle.close(
        session, services, case, reason=why, actor=actor, now=utcnow(), converted_to=kind
    )
    session.add(case)
    session.flush()
    add_event(
        session,
        case.id,
        "converted",
        f"converted to a {kind.replace('_', ' ')} (was {lifecycle.words(old)}); closed here: {why}",
        actor=actor,
    )
    return Converted(case.reference, kind, why)


# --- attachments ----------------------------------------------------------------------


def kept_attachments(case_id: int | None) -> Select[tuple[Attachment]]:
    """The attachments a coordinator may take a copy of: kept (a refused one has no bytes),
    not an inline image of an email's body; by their order on the case."""
    return (
        select(Attachment)
        .where(
            Attachment.case_id == case_id,
            col(Attachment.sha256).is_not(None),
            col(Attachment.inline).is_(False),
        )
        .order_by(col(Attachment.id))
    )


class NoSuchAttachment(UserError):
    """The case has no kept attachment with that id (another case's is not this case's)."""


@dataclass(frozen=True, slots=True)
class Taken:
    filename: str  # safe on any disk
    content_type: str  # as stored
    data: bytes


@action
def take_attachment(
    session: Session, services: Services, reference: str, attachment_id: int, *, actor: Actor
) -> Taken:
    """One kept attachment of the case, for a person to download: an event on the case and
    an access in the audit, in this transaction, like `save_attachments`."""
    case = find_case(session, reference)
    att = session.exec(kept_attachments(case.id).where(Attachment.id == attachment_id)).first()
    return hand_over(session, services, case, att, attachment_id, actor=actor)


def hand_over(
    session: Session,
    services: Services,
    case: Case,
    att: Attachment | None,
    attachment_id: int,
    *,
    actor: Actor,
) -> Taken:
    """A found attachment's bytes for a download, recorded on the case and in the audit
    (the coordinators' page and the portal alike); None or a lost blob: NoSuchAttachment."""
    if att is None or not services.blobs.exists(att.sha256 or ""):
        raise NoSuchAttachment(f"{case.reference} has no attachment {attachment_id} to download")
    name = sanitise_filename(
        att.filename,
        fallback=f"attachment-{att.id}.bin",
        max_length=services.config.storage.max_filename_length,
    )
    data = services.blobs.get(att.sha256 or "")
    what = f"{name} downloaded ({len(data):,} B)"
    add_event(session, case.id, "attachment_downloaded", what, actor=actor.shown)
    audit.record(session, actor, "attachments.download", case_reference=case.reference, detail=what)
    return Taken(name, att.content_type, data)


@dataclass(frozen=True, slots=True)
class Saved:
    path: Path
    size: int


@action
def save_attachments(
    session: Session,
    services: Services,
    reference: str,
    target: Path,
    *,
    force: bool = False,
    actor: Actor,
) -> list[Saved]:
    """Write the case's kept attachments (not inline images, not refused ones) into `target`.

    Nothing is written when any file is there already, unless `force`. The save is an event
    on the case (who took a copy of what) and an access in the audit, in this transaction.
    """
    case = find_case(session, reference)
    rows = session.exec(kept_attachments(case.id)).all()
    if not rows:
        raise UserError(f"{case.reference} has no kept attachments")
    if target.exists() and not target.is_dir():
        raise UserError(f"--save {target} is not a folder")
    unique = UniqueNames(services.config.storage.max_filename_length)
    plan: list[tuple[Path, Attachment]] = []
    for att in rows:
        name = sanitise_filename(
            att.filename,
            fallback=f"attachment-{att.id}.bin",
            max_length=services.config.storage.max_filename_length,
        )
        plan.append((target / unique(name), att))
    there = [p.name for p, _ in plan if p.exists()]
    if there and not force:
        raise UserError(
            f"{target} already has {', '.join(there)}; nothing saved (use --force to overwrite)"
        )
    missing = [a.filename for _, a in plan if not services.blobs.exists(a.sha256 or "")]
    if missing:
        raise UserError(
            f"{case.reference}: the blob store lacks {', '.join(missing)}; nothing saved "
            f"(is [storage] data_dir {services.config.storage.data_dir} right?)"
        )
    private_folder(target)
    saved: list[Saved] = []
    try:
        for path, att in plan:
            data = services.blobs.get(att.sha256 or "")
            with private_open(path, "wb") as stream:
                stream.write(data)
            saved.append(Saved(path, len(data)))
        what = f"{len(saved)} attachments saved to {target.resolve()}: " + ", ".join(
            s.path.name for s in saved
        )
        add_event(session, case.id, "attachments_saved", what, actor=actor.shown)
        audit.record(session, actor, "attachments.save", case_reference=case.reference, detail=what)
        session.flush()
    except BaseException:  # no file leaves without its record: those written go again
        for done in saved:
            done.path.unlink(missing_ok=True)
        raise
    log.info("attachments saved", extra={"case": case.reference, "files": len(saved)})
    return saved


# --- the clock ------------------------------------------------------------------------


@action
def pause(
    session: Session, services: Services, reference: str, reason: str, *, actor: str, now: datetime
) -> clock.Paused:
    """Stop the case's clock (deadlines/clock.py says how)."""
    return clock.pause(
        session, services, find_case(session, reference), reason, actor=actor, now=now
    )


@action
def resume(
    session: Session, services: Services, reference: str, *, actor: str, now: datetime
) -> clock.Resumed:
    """Restart the case's clock: its deadlines move on by the working days it was paused."""
    return clock.resume(session, services, find_case(session, reference), actor=actor, now=now)


@action
def extend(
    session: Session,
    services: Services,
    reference: str,
    days: int,
    reason: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> clock.Extended:
    """Move the deadline in force on by working days (deadlines/clock.py says how), with a
    reason, as an officer's `#extend N` does."""
    if not 1 <= days <= EXTEND_MOST_DAYS:
        raise UserError(f"--days must be from 1 to {EXTEND_MOST_DAYS} working days")
    why = " ".join(reason.split())
    if not why:
        raise UserError("--reason is empty: say why the deadline moves")
    if len(why) > 500:
        raise UserError("--reason is longer than 500 characters")
    case = find_case(session, reference)
    clock.refuse_unless_open(case, "extended")
    return clock.extend(session, services, case, days, why, actor=actor, now=now or utcnow())


@action
def recompute_deadlines(
    session: Session, services: Services, *, actor: str, now: datetime, dry_run: bool = False
) -> list[clock.Change]:
    """Every open case's deadlines counted again with the calendar and SLA rules in force
    (`calendar recompute`): one transaction, so a dry run and a real run see the same cases."""
    return clock.recompute(session, services, actor=actor, now=now, dry_run=dry_run)
