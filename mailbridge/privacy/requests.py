"""Erasure on request: one case (`erase case`), or everything held about one person
(`erase person`), each saying what it erased and what remains afterwards, in plain words
for the data protection officer who answers the request. A dry run does the same work in a
transaction that is rolled back, so what it lists is exactly what the real run would do.

A person is either in the directory or an address only:

- a councillor who has left office: their open cases go to the `successor` member (an
  event on each says so), or, with `erase_cases`, have their content erased and stay open
  for the coordinators to complete; their completed and closed cases have their content
  erased either way, keeping the skeleton (the reports still count them under the former
  councillor's name: a member's name is a matter of public record). Their directory entry
  is deactivated and keeps only the name, main address, division and party the statistics
  show; their other addresses are removed, so mail from them no longer counts as theirs.
  Cases they only joined (`case link`) stay with the case's own member; open ones go to
  the successor too. Held cases are left as they are and listed.
- an officer, coordinator or delegate: deactivated, other addresses removed; the cases they
  worked on stay as they are (the retention policy erases them in time).
- anyone else (a resident, a colleague outside the council): every message from or to the
  address has its content erased, wherever it is (in a case, quarantined, or handled
  without a case; never on a case on legal hold: those are listed), with the attachments
  and the copies of mail sent to it; the address itself is erased from those rows, and the
  bounce and mail-limit records of it are deleted. The cases those messages were on keep
  the rest of their content: a resident's name inside an enquiry's text is found by
  `mailbridge sar export --name`, and each such case erased with `erase case`.

In every case the mail server's own copies (the shared mailbox's Processed and Quarantine
folders) and backups made earlier are not reached: the output says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from mailbridge.cases.records import add_event, find_case
from mailbridge.errors import UserError
from mailbridge.privacy import audit, erasure
from mailbridge.privacy.audit import Actor
from mailbridge.privacy.erasure import ERASED, Erased, release_blobs, still_named
from mailbridge.services import Services
from mailbridge.store.db import scrub, transaction
from mailbridge.store.models import (
    AddressFlag,
    Attachment,
    AutoMail,
    Case,
    CaseMember,
    CaseStatus,
    Message,
    OutboxMessage,
    Person,
    PersonAddress,
    PersonKind,
    QuarantineItem,
)

MAX_REASON = 200
OPEN = (CaseStatus.NEW.value, CaseStatus.IN_PROGRESS.value)
HANDED_OVER = "member_handed_over"
MAIL_ERASED = "mail_erased"  # some of a case's emails erased (one person's), not the case

SKELETON = (
    "what the reports count stays on each erased case: its reference, dates (received, "
    "acknowledged, due, extended, first and last response, completed), service area, "
    "directorate, enquiry type, district, member, officers, status, deadlines met or "
    "missed, chases, reopenings and the satisfaction score"
)
TIMELINE = (
    "each case's timeline keeps what happened, when and who did it, without the details; "
    "one entry says the content was erased, and why"
)
SHELLS = (
    "the rows of its emails keep their direction, time, sender's address, size and "
    "Message-ID (so the same mail fetched again is still recognised), the attachments "
    "their type and size; subjects, texts, names and files are gone"
)
AUDIT = "the audit keeps a record of this erasure: who asked for it, when, and the reason given"
OUTSIDE = (
    "not reached from here: the shared mailbox's own copies (its Processed and Quarantine "
    "folders, under the mail server's retention), backups made before today (until they "
    "expire), and any export or report someone saved"
)
DIGESTS = (
    "copies of digests and status replies already sent, which list cases' subjects, until "
    "the retention policy erases them ([retention] sent_mail_days after they were sent)"
)


@dataclass
class Outcome:
    """What an erasure did (or, on a dry run, would do), and what remains, line by line."""

    dry_run: bool
    done: list[str] = field(default_factory=list)
    remains: list[str] = field(default_factory=list)


def reason_given(reason: str) -> str:
    """The reason, on one line; it is kept on the case and in the audit, so no resident's
    details belong in it (a request's number does)."""
    why = " ".join(reason.split())
    if not why:
        raise UserError("--reason is empty: say why, e.g. the request's reference")
    if len(why) > MAX_REASON:
        raise UserError(
            f"--reason is longer than {MAX_REASON} characters: give the request's reference "
            "rather than its text"
        )
    return why


@contextmanager
def _unit(services: Services, dry_run: bool) -> Iterator[Session]:
    """One transaction: committed, or on a dry run rolled back after the work was done."""
    with transaction(services.engine) as session:
        yield session
        if dry_run:
            session.rollback()


def _removed(session: Session, released: set[str], dry_run: bool) -> int:
    """How many stored files a dry run would remove, counted inside its (still open)
    transaction; a real run removes them after its commit (`release_blobs`)."""
    return len(released - still_named(session, released)) if dry_run else 0


def _case_line(done: Erased) -> str:
    return (
        f"{done.reference}: content erased ({done.messages} emails, {done.attachments} "
        f"attachments, {done.sent_copies} copies of mail sent, {done.quarantined} "
        f"quarantined messages, {done.event_details} timeline details)"
    )


def _files_line(count: int) -> str:
    return f"{count} stored files (raw emails, attachments) removed from the blob store"


# --- one case -----------------------------------------------------------------------------


def erase_case(
    services: Services,
    reference: str,
    reason: str,
    *,
    actor: Actor,
    now: datetime,
    dry_run: bool,
) -> Outcome:
    """Erase one case's content on request (a legal hold refuses)."""
    why = reason_given(reason)
    out = Outcome(dry_run)
    with _unit(services, dry_run) as session:
        case = find_case(session, reference)
        done = erasure.erase_case(session, case, why=f"request: {why}", actor=actor, now=now)
        files = _removed(session, done.released, dry_run)
    if not dry_run:
        files = len(release_blobs(services, done.released))
        scrub(services.engine)
    out.done = [_case_line(done), _files_line(files)]
    out.remains = [SKELETON, TIMELINE, SHELLS, AUDIT, DIGESTS, OUTSIDE]
    return out


# --- one person ---------------------------------------------------------------------------


def erase_person(
    services: Services,
    email: str,
    reason: str,
    *,
    successor: str | None,
    erase_cases: bool,
    actor: Actor,
    now: datetime,
    dry_run: bool,
) -> Outcome:
    """Erase what is held about the person at `email` (see the module's docstring)."""
    why = reason_given(reason)
    address = email.strip().lower()
    if successor and erase_cases:
        raise UserError("give --successor or --erase-cases, not both")
    if address in {c.email.strip().lower() for c in services.config.coordinators}:
        raise UserError(
            f"{address} is a [[coordinators]] entry in the config file: remove it there first "
            "(it would be made active again when the service starts), then erase"
        )
    out = Outcome(dry_run)
    released: set[str] = set()
    with _unit(services, dry_run) as session:
        person = _person_at(session, address)
        if person is None:
            if successor or erase_cases:
                raise UserError(
                    f"{address} is not in the directory, so it has no cases of its own: "
                    "--successor and --erase-cases are for a councillor"
                )
            released = _erase_address(session, out, address, why, actor, now)
        else:
            released = _erase_directory_person(
                session, out, person, why, successor, erase_cases, actor, now
            )
        # A resident's address is what was erased: the audit, kept for ever, names the
        # request instead. Staff in the directory are named, as the reports name them.
        who = address if person is not None else "an address not in the directory"
        audit.record(session, actor, "erase.person", detail=f"{who}: {why}", at=now)
        files = _removed(session, released, dry_run)
    if not dry_run:
        files = len(release_blobs(services, released))
        scrub(services.engine)
    out.done.append(_files_line(files))
    out.remains += [AUDIT, DIGESTS, OUTSIDE]
    return out


def _person_at(session: Session, address: str) -> Person | None:
    owner = session.get(PersonAddress, address)
    person_id = owner.person_id if owner else None
    if person_id is None:
        person_id = session.exec(select(Person.id).where(Person.email == address)).first()
    return session.get(Person, person_id) if person_id is not None else None


def _erase_directory_person(
    session: Session,
    out: Outcome,
    person: Person,
    why: str,
    successor: str | None,
    erase_cases: bool,
    actor: Actor,
    now: datetime,
) -> set[str]:
    released: set[str] = set()
    if person.kind == PersonKind.MEMBER:
        released = _members_cases(session, out, person, why, successor, erase_cases, actor, now)
    elif successor or erase_cases:
        raise UserError(
            f"{person.email} is a {person.kind}, not a councillor: their cases stay as they "
            "are; leave out --successor and --erase-cases"
        )
    addresses = session.exec(
        select(PersonAddress.email).where(PersonAddress.person_id == person.id)
    ).all()
    released |= _erase_caseless_mail(session, out, [*addresses, person.email], now)
    others = sorted(a for a in addresses if a != person.email)
    if others:
        session.connection().execute(
            delete(PersonAddress.__table__).where(  # type: ignore[arg-type]
                PersonAddress.__table__.c.email.in_(others)  # type: ignore[attr-defined]
            )
        )
        out.done.append(f"other addresses removed from the directory: {', '.join(others)}")
    person.active = False
    person.updated_at = now
    session.add(person)
    out.done.append(f"{person.name} <{person.email}>: deactivated in the directory")
    out.remains.append(
        f"the directory keeps {person.name} <{person.email}> ({person.kind}"
        + (f", {person.division}" if person.division else "")
        + (f", {person.party}" if person.party else "")
        + "), inactive, so the reports still name who the cases were for or by"
    )
    return released


def _members_cases(
    session: Session,
    out: Outcome,
    person: Person,
    why: str,
    successor: str | None,
    erase_cases: bool,
    actor: Actor,
    now: datetime,
) -> set[str]:
    """A departing councillor's cases: open ones handed over or erased, finished ones erased."""
    own = session.exec(select(Case).where(Case.member_id == person.id).order_by(col(Case.id))).all()
    linked = session.exec(
        select(Case)
        .join(CaseMember, col(CaseMember.case_id) == Case.id)
        .where(CaseMember.person_id == person.id, col(Case.status).in_(OPEN))
        .order_by(col(Case.id))
    ).all()
    open_cases = [c for c in own if c.status in OPEN]
    if (open_cases or linked) and not (successor or erase_cases):
        raise UserError(
            f"{person.name} has {len(open_cases) + len(linked)} open cases: say "
            "--successor EMAIL to hand them to the member who follows, or --erase-cases "
            "to erase their content too"
        )
    heir = _successor(session, successor, person) if successor else None
    released: set[str] = set()
    held: list[str] = []
    for case in own:
        if case.status in OPEN and heir is not None:
            _hand_over(session, out, case, person, heir, why, actor)
        elif case.held_at is not None:
            held.append(case.reference)
        elif case.content_erased_at is None or case.status in OPEN:
            done = erasure.erase_case(
                session, case, why=f"request: {why} (member left office)", actor=actor, now=now
            )
            released |= done.released
            out.done.append(_case_line(done))
    for case in linked:
        if heir is not None:
            _hand_over(session, out, case, person, heir, why, actor)
    if held:
        out.remains.append(f"on legal hold, left as they are: {', '.join(held)}")
    still_open = [
        c.reference for c in own if c.status in OPEN and heir is None and c.held_at is None
    ]
    if still_open:
        out.remains.append(
            f"still open, with their content erased: {', '.join(still_open)} "
            "(complete each with `mailbridge case status REF completed`)"
        )
    if own:
        out.remains += [SKELETON, TIMELINE, SHELLS]
    return released


def _successor(session: Session, email: str, leaving: Person) -> Person:
    heir = _person_at(session, email.strip().lower())
    if heir is None or heir.kind != PersonKind.MEMBER or not heir.active:
        raise UserError(
            f"--successor {email.strip()}: not an active councillor in the directory "
            "(see `mailbridge members list`)"
        )
    if heir.id == leaving.id:
        raise UserError("--successor is the councillor who is leaving: name the one who follows")
    return heir


def _hand_over(
    session: Session,
    out: Outcome,
    case: Case,
    leaving: Person,
    heir: Person,
    why: str,
    actor: Actor,
) -> None:
    if case.member_id == leaving.id:
        case.member_id = heir.id  # type: ignore[assignment]
        session.add(case)
    session.connection().execute(
        delete(CaseMember.__table__).where(  # type: ignore[arg-type]
            CaseMember.__table__.c.case_id == case.id,  # type: ignore[attr-defined]
            CaseMember.__table__.c.person_id.in_([leaving.id, heir.id]),  # type: ignore[attr-defined]
        )
    )
    if case.member_id != heir.id:
        session.add(CaseMember(case_id=case.id, person_id=heir.id))  # type: ignore[arg-type]
    session.flush()
    add_event(
        session,
        case.id,
        HANDED_OVER,
        f"handed over from {leaving.name} to {heir.name}, who follows them: {why}",
        actor=actor.name,
    )
    out.done.append(f"{case.reference}: open, handed over to {heir.name} <{heir.email}>")


def _erase_caseless_mail(
    session: Session, out: Outcome, addresses: Sequence[str], now: datetime
) -> set[str]:
    """Mail from these addresses that belongs to no case (status requests, quarantined)."""
    messages = session.exec(
        select(Message).where(
            col(Message.sender).in_(list(addresses)),
            col(Message.case_id).is_(None),
            col(Message.erased_at).is_(None),
        )
    ).all()
    released: set[str] = set()
    for message in messages:
        released |= erasure.erase_message(session, message, now)
        released |= _erase_attachments_of(session, [message.id])  # type: ignore[list-item]
    holds = _Holds(session)
    items = [
        i
        for i in session.exec(
            select(QuarantineItem).where(
                col(QuarantineItem.sender).in_(list(addresses)),
                col(QuarantineItem.erased_at).is_(None),
            )
        )
        if holds.free(i.case_id)
    ]
    holds.tell(out)
    for item in items:
        released |= erasure.erase_quarantined(session, item, now)
    if messages or items:
        out.done.append(
            f"{len(messages)} emails outside any case and {len(items)} quarantined messages "
            "from them: content erased"
        )
    return released


class _Holds:
    """The cases on legal hold: what lies on one is left as it is, and listed."""

    def __init__(self, session: Session) -> None:
        query = select(Case.id, Case.reference).where(col(Case.held_at).is_not(None))
        self.held = dict(session.exec(query).all())
        self.kept: set[int] = set()

    def free(self, case_id: int | None) -> bool:
        if case_id in self.held:
            self.kept.add(case_id)  # type: ignore[arg-type]
            return False
        return True

    def tell(self, out: Outcome) -> None:
        if self.kept:
            kept = ", ".join(self.held[i] for i in sorted(self.kept))
            out.remains.append(f"on legal hold, left as they are: {kept}")


def _erase_attachments_of(session: Session, message_ids: list[int]) -> set[str]:
    released: set[str] = set()
    for attachment in session.exec(
        select(Attachment).where(col(Attachment.message_id).in_(message_ids))
    ).all():
        released |= erasure.erase_attachment(session, attachment)
    return released


def _names(field_text: str, address: str) -> bool:
    """`address` is one of the comma-separated addresses in a recipients field."""
    return address in (a.strip().lower() for a in field_text.split(","))


def _without(field_text: str, address: str) -> str:
    return ", ".join(ERASED if _names(a, address) else a.strip() for a in field_text.split(","))


def _erase_address(
    session: Session, out: Outcome, address: str, why: str, actor: Actor, now: datetime
) -> set[str]:
    """Everything from or to an address that is not in the directory, but on a case on
    legal hold (left as it is, and listed)."""
    pattern = f"%{address}%"
    holds = _Holds(session)

    messages = [
        m
        for m in session.exec(
            select(Message).where(
                (Message.sender == address) | col(Message.recipients).ilike(pattern)
            )
        ).all()
        if (m.sender == address or _names(m.recipients, address)) and holds.free(m.case_id)
    ]
    released: set[str] = set()
    for message in messages:
        released |= erasure.erase_message(session, message, now)
        if message.sender == address:
            message.sender = ERASED
        released |= _erase_attachments_of(session, [message.id])  # type: ignore[list-item]
    items = [
        i
        for i in session.exec(select(QuarantineItem).where(QuarantineItem.sender == address))
        if holds.free(i.case_id)
    ]
    for item in items:
        released |= erasure.erase_quarantined(session, item, now)
    copies = [
        c
        for c in session.exec(
            select(OutboxMessage).where(col(OutboxMessage.recipients).ilike(pattern))
        ).all()
        if _names(c.recipients, address) and holds.free(c.case_id)
    ]
    for copy in copies:
        erasure.erase_sent_copy(session, copy, now)
        copy.recipients = _without(copy.recipients, address)
    for model in (AddressFlag, AutoMail):
        table = model.__table__  # type: ignore[attr-defined]
        column = table.c.email if model is AddressFlag else table.c.address
        session.connection().execute(delete(table).where(column == address))
    case_ids = sorted({m.case_id for m in messages if m.case_id is not None})
    for case_id in case_ids:
        add_event(
            session,
            case_id,
            MAIL_ERASED,
            f"request: {why} (the emails from or to one address)",
            actor=actor.name,
        )
    cases = _references(session, case_ids)
    out.done.append(
        f"{address}: {len(messages)} emails from or to it and {len(items)} quarantined "
        f"messages from it erased, and {len(copies)} copies of mail sent to it; its "
        "bounce and mail-limit records deleted"
    )
    if cases:
        out.done.append(f"those emails were on cases {', '.join(cases)}")
    holds.tell(out)
    out.remains += [
        "the cases those emails were on keep the rest of their content (other emails, the "
        "enquiry); erase a case whole with `mailbridge erase case REF`",
        "a person named only inside an enquiry's text is not found by address: search with "
        "`mailbridge sar export --name`, then erase each case it finds",
    ]
    return released


def _references(session: Session, case_ids: list[int]) -> list[str]:
    if not case_ids:
        return []
    query = select(Case.reference).where(col(Case.id).in_(case_ids)).order_by(col(Case.id))
    return list(session.exec(query).all())
