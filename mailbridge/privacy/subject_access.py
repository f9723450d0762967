"""Subject access: everything mailbridge holds that concerns one person, in one zip that the
person answering the request reviews before sending (docs/data-protection.md).

Two ways to look. By address: the directory's person with that address (every address of
theirs) as member, delegate, officer or actor on a case, and every email sent from or to one
of those addresses, quarantined mail included; residents and strangers have no directory
entry, so their address alone is looked for. By name: a text search of cases, emails, events
and quarantined mail, which can miss a spelling and catch a namesake; the index says so.

A case that concerns the person goes in whole: its facts, every email, attachment and event.
What was erased (the retention policy, a request) is listed as erased, not left out.

Bounded: what is found is listed first as ids; the zip is then written a case at a time and
a blob at a time, and the index is rendered as it is written, so no more than one case's rows
and one attachment are in memory at once. The zip is written under a temporary name beside
the target and renamed in the transaction that audits it: a failed run leaves no half zip,
and no zip leaves without its audit record.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import func, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from mailbridge.console.export import status_label
from mailbridge.errors import UserError
from mailbridge.files import private_folder, private_open
from mailbridge.mail.parsing import UniqueNames, sanitise_filename
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.spreadsheet import neutralise
from mailbridge.store.db import transaction
from mailbridge.store.models import (
    Attachment,
    AuditRecord,
    Case,
    CaseMember,
    CaseOfficer,
    Direction,
    Event,
    Message,
    OutboxMessage,
    Person,
    PersonAddress,
    QuarantineItem,
    utcnow,
)

TEMPLATE = "sar_index.html.j2"
MIN_NAME = 3  # fewer letters match nearly everything
CHUNK = 500  # ids per IN (...) list

T = TypeVar("T")

# Why a case is included, in the order the index gives them ("Included because ...").
RAISED = "they raised it (the member)"
DELEGATE = "they sent it in for the member (a delegate)"
ALSO_MEMBER = "they are another member on it"
LEAD = "they are its lead officer"
OFFICER = "they are an officer on it"
SENT = "they sent an email on it"
RECEIVED = "an email on it was sent to them"
ACTED = "they appear in its timeline"
NAMED_IN_CASE = "the name is in its subject or enquiry"
NAMED_IN_EMAIL = "the name is in an email on it"
NAMED_IN_TIMELINE = "the name is in its timeline"
REASONS = (
    RAISED,
    DELEGATE,
    ALSO_MEMBER,
    LEAD,
    OFFICER,
    SENT,
    RECEIVED,
    ACTED,
    NAMED_IN_CASE,
    NAMED_IN_EMAIL,
    NAMED_IN_TIMELINE,
)


# --- what to look for ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Search:
    """An address (exact, case-insensitive) or a name (a text search); exactly one."""

    email: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, email: str | None, name: str | None) -> Search:
        """From the command line's options; one clear error when both or neither are given."""
        email = (email or "").strip() or None
        name = " ".join((name or "").split()) or None
        if (email is None) == (name is None):
            raise UserError('give either --email ADDRESS or --name "NAME" (one of the two)')
        if email is not None:
            if "@" not in email or any(c.isspace() for c in email):
                raise UserError(f"--email {email!r} is not an email address")
            return cls(email=email.lower())
        assert name is not None
        if len(name.replace(" ", "")) < MIN_NAME:
            raise UserError(
                f"--name {name!r}: give at least {MIN_NAME} letters (a shorter text matches "
                "nearly everything)"
            )
        return cls(name=name)

    @property
    def by_name(self) -> bool:
        return self.name is not None

    @property
    def described(self) -> str:
        return f'the name "{self.name}"' if self.by_name else f"the address {self.email}"


# --- what was found: ids and why -------------------------------------------------------


@dataclass
class Found:
    """The inventory: which cases (and why), which emails not on a case, which quarantined
    mail kept without an email row, and which audit records."""

    search: Search
    people: list[Person] = field(default_factory=list)  # the directory's, with the address
    addresses: list[str] = field(default_factory=list)  # every address looked for
    cases: dict[int, set[str]] = field(default_factory=dict)  # case id -> why
    loose: set[int] = field(default_factory=set)  # emails on no case (message ids)
    quarantine_only: set[int] = field(default_factory=set)  # quarantine ids with no message
    audit_ids: set[int] = field(default_factory=set)

    def case(self, case_id: int | None, why: str) -> None:
        if case_id is not None:
            self.cases.setdefault(case_id, set()).add(why)

    def message(self, message_id: int, case_id: int | None, why: str) -> None:
        """An email: its case goes in (with the reason); one on no case goes in itself."""
        if case_id is None:
            self.loose.add(message_id)
        else:
            self.case(case_id, why)


def _chunks(ids: Iterable[T]) -> Iterator[list[T]]:
    items = list(ids)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def gather(session: Session, search: Search) -> Found:
    """List what concerns the person (ids only: the rows are read when written)."""
    found = Found(search)
    if search.email is not None:
        _by_address(session, found, search.email)
    else:
        assert search.name is not None
        _by_name(session, found, search.name)
    return found


def _by_address(session: Session, found: Found, email: str) -> None:
    person_ids = list(
        session.exec(select(PersonAddress.person_id).where(PersonAddress.email == email))
    )
    people = [p for pid in person_ids if (p := session.get(Person, pid)) is not None]
    found.people = people
    ids = [p.id for p in people if p.id is not None]
    addresses = {email}
    if ids:
        addresses |= set(
            session.exec(select(PersonAddress.email).where(col(PersonAddress.person_id).in_(ids)))
        )
    found.addresses = sorted(addresses)
    if ids:
        for case_id, member_id, submitter_id, lead_id in session.exec(
            select(Case.id, Case.member_id, Case.submitter_id, Case.lead_officer_id).where(
                or_(
                    col(Case.member_id).in_(ids),
                    col(Case.submitter_id).in_(ids),
                    col(Case.lead_officer_id).in_(ids),
                )
            )
        ):
            if member_id in ids:
                found.case(case_id, RAISED)
            if submitter_id in ids and submitter_id != member_id:
                found.case(case_id, DELEGATE)
            if lead_id in ids:
                found.case(case_id, LEAD)
        for case_id in session.exec(
            select(CaseMember.case_id).where(col(CaseMember.person_id).in_(ids))
        ):
            found.case(case_id, ALSO_MEMBER)
        for case_id, role in session.exec(
            select(CaseOfficer.case_id, CaseOfficer.role).where(col(CaseOfficer.person_id).in_(ids))
        ):
            found.case(case_id, LEAD if role == "lead" else OFFICER)
    actor = func.lower(Event.actor)
    by_actor: list[ColumnElement[bool]] = [actor.in_(addresses)]
    by_actor += [actor.startswith(f"{a} (", autoescape=True) for a in addresses]
    if ids:
        by_actor.append(col(Event.actor_id).in_(ids))
    for case_id in session.exec(select(Event.case_id).where(or_(*by_actor)).distinct()):
        found.case(case_id, ACTED)
    # Recipients are one text ("a@x, b@y"): narrowed in SQL, then compared address by address.
    sender = func.lower(Message.sender)
    near = [sender.in_(addresses)]
    near += [col(Message.recipients).icontains(a, autoescape=True) for a in addresses]
    for message_id, case_id, from_, to in session.exec(
        select(Message.id, Message.case_id, Message.sender, Message.recipients).where(or_(*near))
    ):
        if from_.lower() in addresses:
            found.message(message_id, case_id, SENT)  # type: ignore[arg-type]
        elif {r.strip().lower() for r in to.split(",")} & addresses:
            found.message(message_id, case_id, RECEIVED)  # type: ignore[arg-type]
    _quarantined(session, found, func.lower(QuarantineItem.sender).in_(addresses))
    audit_actor = [func.lower(AuditRecord.actor).in_(addresses)]
    if ids:
        audit_actor.append(col(AuditRecord.actor_id).in_(ids))
    found.audit_ids = set(session.exec(select(AuditRecord.id).where(or_(*audit_actor))))  # type: ignore[arg-type]


def _by_name(session: Session, found: Found, name: str) -> None:
    def named(*columns: Any) -> ColumnElement[bool]:
        return or_(*(col(c).icontains(name, autoescape=True) for c in columns))

    for case_id in session.exec(select(Case.id).where(named(Case.subject, Case.body_text))):
        found.case(case_id, NAMED_IN_CASE)
    where = named(Message.subject, Message.body_text, Message.reply_text, Message.sender_name)
    for message_id, case_id in session.exec(select(Message.id, Message.case_id).where(where)):
        found.message(message_id, case_id, NAMED_IN_EMAIL)  # type: ignore[arg-type]
    for case_id in session.exec(select(Event.case_id).where(named(Event.detail)).distinct()):
        found.case(case_id, NAMED_IN_TIMELINE)
    _quarantined(session, found, named(QuarantineItem.subject, QuarantineItem.sender))


def _quarantined(session: Session, found: Found, where: ColumnElement[bool]) -> None:
    for item_id, message_id in session.exec(
        select(QuarantineItem.id, QuarantineItem.message_id).where(where)
    ):
        if message_id is None:
            found.quarantine_only.add(item_id)  # type: ignore[arg-type]
        else:
            found.loose.add(message_id)


# --- the zip's layout: what each item is called and whether it is there ----------------


@dataclass
class Item:
    """One line of index.csv: an item found and where it is in the zip."""

    kind: str  # case, email, attachment, event, audit record, quarantined email
    case: str = ""
    at: datetime | None = None
    who: str = ""
    to: str = ""
    text: str = ""  # a subject, a file name, an event's detail
    files: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Email:
    message: Message
    text_file: str | None
    eml_file: str | None
    note: str
    quarantine: QuarantineItem | None = None


@dataclass
class Kept:
    attachment: Attachment
    file: str | None
    note: str


@dataclass
class CaseView:
    """One case as the index shows it (read again for the index: never all at once)."""

    case: Case
    why: list[str]
    folder: str
    people: dict[str, str]  # "Member": "Cllr Jane Smith <...>", ...
    emails: list[Email]
    attachments: list[Kept]
    events: list[Event]
    events_file: str


@dataclass(frozen=True, slots=True)
class Counts:
    cases: int = 0
    emails: int = 0
    attachments: int = 0
    events: int = 0
    audit_records: int = 0
    quarantined: int = 0  # quarantined mail kept without an email row (too large, failures)

    @property
    def nothing(self) -> bool:
        return not any((self.cases, self.emails, self.quarantined, self.audit_records))

    def text(self) -> str:
        return (
            f"{self.cases} cases, {self.emails} emails, {self.attachments} attachments, "
            f"{self.events} events, {self.audit_records} audit records, "
            f"{self.quarantined} other quarantined emails"
        )


@dataclass(frozen=True, slots=True)
class Summary:
    path: Path
    search: Search
    people: list[str]
    counts: Counts
    references: list[str]


class _Reader:
    """Reads the rows of one case (or of the emails on no case) and names their files."""

    def __init__(self, session: Session, services: Services, found: Found) -> None:
        self.session = session
        self.services = services
        self.found = found
        self.names: dict[int, str] = {}
        self.max_name = services.config.storage.max_filename_length

    def person(self, person_id: int | None) -> str:
        if person_id is None:
            return ""
        if person_id not in self.names:
            p = self.session.get(Person, person_id)
            self.names[person_id] = f"{p.name} <{p.email}>" if p else f"person {person_id}"
        return self.names[person_id]

    def case_ids(self) -> list[int]:
        ids = list(self.found.cases)
        order: list[tuple[datetime, int]] = []
        for chunk in _chunks(ids):
            order += list(
                self.session.exec(select(Case.received_at, Case.id).where(col(Case.id).in_(chunk)))  # type: ignore[arg-type]
            )
        return [case_id for _, case_id in sorted(order)]

    def case(self, case_id: int) -> CaseView:
        case = self.session.get(Case, case_id)
        assert case is not None
        folder = "cases/" + sanitise_filename(case.reference, fallback=f"case-{case_id}")
        people = {"Member": self.person(case.member_id)}
        if case.submitter_id != case.member_id:
            people["Sent in by"] = self.person(case.submitter_id)
        for person_id in self.session.exec(
            select(CaseMember.person_id)
            .where(CaseMember.case_id == case_id)
            .order_by(col(CaseMember.added_at))
        ):
            people.setdefault("Also members", "")
            people["Also members"] += (", " if people["Also members"] else "") + self.person(
                person_id
            )
        for person_id, role in self.session.exec(
            select(CaseOfficer.person_id, CaseOfficer.role)
            .where(CaseOfficer.case_id == case_id)
            .order_by(col(CaseOfficer.role) != "lead", col(CaseOfficer.assigned_at))
        ):
            label = "Lead officer" if role == "lead" else "Officers"
            people[label] = (people.get(label, "") + ", " if label in people else "") + (
                self.person(person_id)
            )
        messages = list(
            self.session.exec(
                select(Message)
                .where(Message.case_id == case_id)
                .order_by(col(Message.received_at), col(Message.id))
            )
        )
        emails = [
            self.email(m, f"{folder}/emails", n, case.content_erased_at)
            for n, m in enumerate(messages, 1)
        ]
        attachments = self.attachments(
            select(Attachment).where(Attachment.case_id == case_id),
            f"{folder}/attachments",
            {m.id: m for m in messages},
            case.content_erased_at,
        )
        events = list(
            self.session.exec(
                select(Event).where(Event.case_id == case_id).order_by(col(Event.at), col(Event.id))
            )
        )
        return CaseView(
            case=case,
            why=sorted(self.found.cases.get(case_id, ()), key=REASONS.index),
            folder=folder,
            people=people,
            emails=emails,
            attachments=attachments,
            events=events,
            events_file=f"{folder}/events.csv",
        )

    def each_case(self, order: list[int]) -> Iterator[CaseView]:
        """The cases one by one, each let go before the next is read."""
        for case_id in order:
            yield self.case(case_id)
            self.session.expunge_all()

    def email(self, m: Message, folder: str, n: int, case_erased: datetime | None = None) -> Email:
        erased = m.erased_at or case_erased
        stem = f"{folder}/{n:03d}-{'received' if m.direction == Direction.IN else 'sent'}"
        stem += f"-{self.local(m.received_at):%Y-%m-%d}"
        if erased:
            return Email(m, None, None, f"erased on {self.local(erased):%d %b %Y}")
        eml, note = None, ""
        if m.direction == Direction.IN:
            if m.raw_sha256 and self.services.blobs.exists(m.raw_sha256):
                eml = f"{stem}.eml"
            else:
                note = "the original email is not in the store"
        else:
            kept = self.session.exec(
                select(OutboxMessage.id).where(
                    OutboxMessage.message_id == m.message_id,
                    col(OutboxMessage.erased_at).is_(None),
                )
            ).first()
            if kept is not None:
                eml = f"{stem}.eml"
            else:
                note = "the copy of the sent email was removed after sending (retention)"
        return Email(m, f"{stem}.txt", eml, note)

    def attachments(
        self,
        query: Any,
        folder: str,
        messages: dict[int | None, Message],
        case_erased: datetime | None,
    ) -> list[Kept]:
        unique = UniqueNames(self.max_name)
        kept = []
        for a in self.session.exec(query.order_by(col(Attachment.id))):
            m = messages.get(a.message_id) or self.session.get(Message, a.message_id)
            erased = case_erased or (m.erased_at if m else None)
            if erased:
                kept.append(Kept(a, None, f"erased on {self.local(erased):%d %b %Y}"))
            elif a.refused_reason or not a.sha256:
                kept.append(Kept(a, None, f"not kept: {a.refused_reason or 'refused'}"))
            elif not self.services.blobs.exists(a.sha256):
                kept.append(Kept(a, None, "not in the store"))
            else:
                name = sanitise_filename(
                    a.filename, fallback=f"attachment-{a.id}.bin", max_length=self.max_name
                )
                held = f"held back from members and officers: {a.held_reason}"
                kept.append(Kept(a, f"{folder}/{unique(name)}", held if a.held_reason else ""))
        return kept

    def loose(self) -> tuple[list[Email], list[Kept], list[QuarantineItem]]:
        """The emails on no case (quarantined mail, status requests), their attachments, and
        quarantined mail kept without an email row."""
        folder = "emails-not-on-a-case"
        messages: list[Message] = []
        for chunk in _chunks(self.found.loose):
            messages += self.session.exec(select(Message).where(col(Message.id).in_(chunk)))
        messages.sort(key=lambda m: (m.received_at, m.id or 0))
        held: dict[int, QuarantineItem] = {}
        for chunk in _chunks(self.found.loose):
            for q in self.session.exec(
                select(QuarantineItem).where(col(QuarantineItem.message_id).in_(chunk))
            ):
                held[q.message_id] = q  # type: ignore[index]
        emails = []
        for n, m in enumerate(messages, 1):
            email = self.email(m, folder, n, held[m.id].erased_at if m.id in held else None)
            email.quarantine = held.get(m.id)  # type: ignore[arg-type]
            emails.append(email)
        attachments = self.attachments(
            select(Attachment).where(col(Attachment.message_id).in_(list(self.found.loose))),
            f"{folder}/attachments",
            {m.id: m for m in messages},
            None,
        )
        others: list[QuarantineItem] = []
        for chunk in _chunks(self.found.quarantine_only):
            others += self.session.exec(
                select(QuarantineItem).where(col(QuarantineItem.id).in_(chunk))
            )
        others.sort(key=lambda q: (q.created_at, q.id or 0))
        return emails, attachments, others

    def audit_records(self) -> list[AuditRecord]:
        rows: list[AuditRecord] = []
        for chunk in _chunks(self.found.audit_ids):
            rows += self.session.exec(select(AuditRecord).where(col(AuditRecord.id).in_(chunk)))
        return sorted(rows, key=lambda r: (r.at, r.id or 0))

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.services.calendar.zone)

    def shown(self, moment: datetime | None) -> str:
        return f"{self.local(moment):%d %b %Y %H:%M}" if moment else ""


# --- writing -----------------------------------------------------------------------------


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A CSV file for a spreadsheet: every cell through the one rule, UTF-8 with a BOM."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([neutralise("" if v is None else str(v)) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _message_text(m: Message, reader: _Reader, reference: str) -> bytes:
    lines = [
        f"From: {m.sender_name + ' ' if m.sender_name else ''}<{m.sender}>",
        f"To: {m.recipients}",
        f"Date: {reader.shown(m.received_at)} ({'received' if m.direction == 'in' else 'sent'})",
        f"Subject: {m.subject}",
    ]
    if reference:
        lines.append(f"Case: {reference}")
    return ("\n".join(lines) + "\n\n" + m.body_text + "\n").encode("utf-8")


class _Zip:
    """Writes the files of the export; collects index.csv's lines (names, no bodies)."""

    def __init__(self, zf: zipfile.ZipFile, reader: _Reader, moment: datetime) -> None:
        self.zf = zf
        self.reader = reader
        self.items: list[Item] = []
        self.made = reader.local(moment).timetuple()[:6]

    def entry(self, name: str) -> zipfile.ZipInfo:
        """A file in the zip, dated when the export was made."""
        info = zipfile.ZipInfo(name, date_time=self.made)  # type: ignore[arg-type]
        info.compress_type = zipfile.ZIP_DEFLATED  # unpacked 0600: zipfile gives no mode
        return info

    def bytes(self, name: str, data: bytes) -> None:
        self.zf.writestr(self.entry(name), data)

    def emails(self, emails: list[Email], reference: str) -> None:
        for e in emails:
            m = e.message
            if e.text_file:
                self.bytes(e.text_file, _message_text(m, self.reader, reference))
            if e.eml_file:
                self.bytes(e.eml_file, self._original(m))
            note = e.note
            if e.quarantine is not None:
                note = f"quarantined: {e.quarantine.reason}" + (f"; {note}" if note else "")
            self.items.append(
                Item(
                    "email received" if m.direction == Direction.IN else "email sent",
                    reference,
                    m.received_at,
                    m.sender,
                    m.recipients,
                    "" if e.text_file is None else m.subject,
                    [f for f in (e.text_file, e.eml_file) if f],
                    note,
                )
            )

    def _original(self, m: Message) -> bytes:
        if m.direction == Direction.IN:
            return self.reader.services.blobs.get(m.raw_sha256 or "")
        raw = self.reader.session.exec(
            select(OutboxMessage.raw).where(OutboxMessage.message_id == m.message_id)
        ).first()
        return raw or b""

    def attachments(self, kept: list[Kept], reference: str) -> None:
        for k in kept:
            a = k.attachment
            if k.file:
                self.bytes(k.file, self.reader.services.blobs.get(a.sha256 or ""))
            self.items.append(
                Item(
                    "attachment",
                    reference,
                    None,
                    text="" if k.note.startswith("erased") else a.filename,
                    files=[k.file] if k.file else [],
                    note=k.note,
                )
            )


def _events_csv(view: CaseView, reader: _Reader) -> bytes:
    return _csv(
        ("When", "What", "Who", "Detail"),
        ((reader.shown(e.at), e.kind, e.actor, e.detail) for e in view.events),
    )


def _audit_csv(records: list[AuditRecord], reader: _Reader) -> bytes:
    return _csv(
        ("When", "Who", "Through", "From", "What", "Case", "Detail"),
        (
            (reader.shown(r.at), r.actor, r.channel, r.origin, r.action, r.case_reference, r.detail)
            for r in records
        ),
    )


def _place(temporary: Path, out: Path, force: bool) -> None:
    """Give the finished zip its name; without `force`, never over a file that appeared
    meanwhile (a hard link fails when the name is taken)."""
    if force:
        os.replace(temporary, out)
        return
    try:
        os.link(temporary, out)
    except FileExistsError:
        raise UserError(f"{out} is there already; nothing written (use --force)") from None
    except OSError:  # a file system without hard links
        if out.exists():
            raise UserError(f"{out} is there already; nothing written (use --force)") from None
        os.replace(temporary, out)


def export(
    services: Services,
    search: Search,
    out: Path,
    *,
    actor: Actor,
    force: bool = False,
    now: datetime | None = None,
) -> Summary:
    """Gather, write the zip, audit it; the zip gets its name only with its audit record."""
    moment = now or utcnow()
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out}/sar.zip")
    if out.exists() and not force:
        raise UserError(f"{out} is there already; nothing written (use --force to replace it)")
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    try:
        private_folder(out.parent)
        with Session(services.engine) as session:
            found = gather(session, search)
            reader = _Reader(session, services, found)
            with (
                private_open(temporary, "wb") as stream,
                zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as zf,
            ):
                summary = _write(zf, reader, found, out, actor, moment)
        with transaction(services.engine) as session:
            detail = f"{search.described}: {summary.counts.text()}; written to {out.resolve()}"
            audit.record(session, actor, "sar.export", detail=detail, at=moment)
            for reference in summary.references:
                audit.record(
                    session,
                    actor,
                    "sar.case",
                    case_reference=reference,
                    detail=f"included in a subject access export ({search.described}) "
                    f"written to {out.resolve()}",
                    at=moment,
                )
            session.flush()
            _place(temporary, out, force)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; nothing written") from None
    finally:
        with suppress(OSError):  # never made (the folder is not one), or renamed already
            temporary.unlink()
    return summary


def _write(
    zf: zipfile.ZipFile,
    reader: _Reader,
    found: Found,
    out: Path,
    actor: Actor,
    moment: datetime,
) -> Summary:
    z = _Zip(zf, reader, moment)
    references: list[str] = []
    contents: list[tuple[str, str, bool, str]] = []  # reference, subject, erased, anchor
    counts = {"emails": 0, "attachments": 0, "events": 0}
    order = reader.case_ids()
    for case_id in order:
        view = reader.case(case_id)
        c = view.case
        references.append(c.reference)
        erased = c.content_erased_at
        contents.append((c.reference, c.subject, erased is not None, _anchor(c.reference)))
        z.items.append(
            Item(
                "case",
                c.reference,
                c.received_at,
                view.people["Member"],
                text="" if erased else c.subject,
                note=(f"content erased on {reader.shown(erased)}; " if erased else "")
                + "included because "
                + "; ".join(view.why),
            )
        )
        z.emails(view.emails, c.reference)
        z.attachments(view.attachments, c.reference)
        z.bytes(view.events_file, _events_csv(view, reader))
        z.items += [
            Item("event", c.reference, e.at, e.actor, text=f"{e.kind}: {e.detail}")
            for e in view.events
        ]
        counts["emails"] += len(view.emails)
        counts["attachments"] += len(view.attachments)
        counts["events"] += len(view.events)
        reader.session.expunge_all()  # one case's rows in memory at a time
    loose_emails, loose_kept, others = reader.loose()
    z.emails(loose_emails, "")
    z.attachments(loose_kept, "")
    for q in others:
        z.items.append(
            Item(
                "quarantined email",
                "",
                q.created_at,
                "" if q.erased_at else q.sender,
                text="" if q.erased_at else q.subject,
                note=(f"erased on {reader.shown(q.erased_at)}; " if q.erased_at else "")
                + f"quarantined: {q.reason}",
            )
        )
    records = reader.audit_records()
    if records:
        z.bytes("audit.csv", _audit_csv(records, reader))
    z.items += [
        Item("audit record", r.case_reference or "", r.at, r.actor, text=f"{r.action}: {r.detail}")
        for r in records
    ]
    counts_ = Counts(
        cases=len(order),
        emails=counts["emails"] + len(loose_emails),
        attachments=counts["attachments"] + len(loose_kept),
        events=counts["events"],
        audit_records=len(records),
        quarantined=len(others),
    )
    z.bytes(
        "index.csv",
        _csv(
            ("Item", "Case", "When", "From or by", "To", "Subject or detail", "Files", "Note"),
            (
                (i.kind, i.case, reader.shown(i.at), i.who, i.to, i.text, " ".join(i.files), i.note)
                for i in z.items
            ),
        ),
    )
    people = [f"{p.name} <{p.email}> ({p.kind})" for p in found.people]
    template = reader.services.templates.env.get_template(TEMPLATE)
    # Each case read again as the index reaches it: the same rows give the same file names.
    cases = reader.each_case(order)
    with zf.open(z.entry("index.html"), "w") as stream:
        for chunk in template.generate(
            search=found.search,
            people=people,
            addresses=found.addresses,
            made=reader.shown(moment),
            zone=str(reader.services.calendar.zone),
            actor=actor.shown,
            counts=counts_,
            contents=contents,
            cases=cases,
            loose=loose_emails,
            loose_attachments=loose_kept,
            others=others,
            records=records,
            shown=reader.shown,
            status_label=status_label,
            href=_href,
            anchor=_anchor,
            file_name=out.name,
        ):
            stream.write(chunk.encode("utf-8"))
    return Summary(out, found.search, people, counts_, references)


def _href(name: str) -> str:
    """A file in the zip as a relative link from index.html."""
    return quote(name)


def _anchor(reference: str) -> str:
    return "case-" + "".join(c if c.isalnum() or c == "-" else "_" for c in reference)
