"""A new enquiry that comes in by another door than email (the on-line form, the API):
`submit` opens it through the very path an email takes (`inbound.open_case`), so the case,
its events, deadlines and acknowledgement are the ones the same email would make.

How: what the form gives is written as the email a councillor would have sent (From the
person submitting, To the shared mailbox, the subject, the details and the resident's
details as lines of the body, the files as attachments), kept content-addressed like any
raw email, and read by the same parser. So the uploads get the email's filename rules,
size cap, storage and attachment verdicts, and the case can be re-read as received. The
only structure beyond the email is the door (`Case.channel`), the area when the submitter
chose one (else keyword routing guesses it, as for an email), and the resident's preferred
contact method (`Case.preferred_contact`).

Double submission: the form carries a one-use token; its sha256 (with the door) is put in
`form_submission` in the case's own transaction (insert-or-skip on the primary key), so of
two posts of one form, however close, one opens the case and the other waits for it and
finds that case (PostgreSQL: the second insert waits on the first's row; SQLite: writers
queue on BEGIN IMMEDIATE).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

from sqlmodel import Session

from mailbridge.cases import floods, permissions
from mailbridge.cases.areas import guess_service_area
from mailbridge.cases.decisions import HoldFlood, OpenCase
from mailbridge.cases.inbound import open_case
from mailbridge.cases.records import Inbound
from mailbridge.errors import UserError
from mailbridge.mail.parsing import DIRECTION_CONTROLS, parse, sanitise_filename
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.services import Services
from mailbridge.store.db import insert_or_skip, transaction
from mailbridge.store.models import Case, FormSubmission, Person, as_utc, utcnow

log = logging.getLogger(__name__)

CONTACT_METHODS = ("email", "phone", "letter")
MAX_FILES = 10
SUBJECT_CHARS = 200
DETAILS_CHARS = 20_000
NAME_CHARS = 200
ADDRESS_CHARS = 1_000
REFERENCE_CHARS = 100


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as the browser (or the API client) sent it: its name and bytes only; its type
    is read from the name, never taken from the sender."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Submission:
    """What the form gives. `service_area` None is "Not sure": keyword routing decides, as
    for an email that names none. `token`: the form's one-use token (None: no guard)."""

    member_id: int
    subject: str
    details: str
    service_area: str | None = None
    resident_name: str = ""
    resident_address: str = ""
    resident_reference: str = ""
    preferred_contact: str | None = None
    uploads: tuple[Upload, ...] = ()
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing to put right: the form field it is about, and what to do (one line)."""

    field: str
    text: str


class Invalid(UserError):
    """The submission was refused as it stands: nothing was stored."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.text for p in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class Submitted:
    """The case the submission opened, or (`repeated`) the one its token opened before."""

    case_id: int
    reference: str
    response_due: date
    repeated: bool = False


# --- checking (pure) --------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _safe_name(name: str, max_length: int) -> str:
    """The name as the email path would store it (NFC, no separators or control
    characters, no leading dot, within the length)."""
    return sanitise_filename(name, fallback="", max_length=max_length)


def problems(
    submission: Submission,
    areas: Sequence[str],
    *,
    max_bytes: int,
    max_filename_length: int,
) -> list[Problem]:
    """Everything wrong with a submission, in the order of the form's fields (empty: none).

    A file name the email path would have to change (a folder in it, control characters,
    a leading dot, too long) is refused rather than silently renamed: the person sees
    which file and renames it."""
    found: list[Problem] = []
    area = submission.service_area
    if area is not None and area not in areas:
        found.append(Problem("service_area", "Select a service area from the list, or Not sure"))
    subject = _one_line(submission.subject)
    if not subject:
        found.append(Problem("subject", "Enter a subject"))
    elif len(subject) > SUBJECT_CHARS:
        found.append(Problem("subject", f"Subject must be {SUBJECT_CHARS} characters or fewer"))
    details = submission.details.strip()
    if not details:
        found.append(Problem("details", "Enter the details of the enquiry"))
    elif len(details) > DETAILS_CHARS:
        found.append(Problem("details", f"Details must be {DETAILS_CHARS:,} characters or fewer"))
    for name, value, limit, what in (
        ("resident_name", submission.resident_name, NAME_CHARS, "Resident's name"),
        ("resident_address", submission.resident_address, ADDRESS_CHARS, "Resident's address"),
        (
            "resident_reference",
            submission.resident_reference,
            REFERENCE_CHARS,
            "Resident's reference",
        ),
    ):
        if len(value.strip()) > limit:
            found.append(Problem(name, f"{what} must be {limit:,} characters or fewer"))
    contact = submission.preferred_contact
    if contact is not None and contact not in CONTACT_METHODS:
        found.append(Problem("preferred_contact", "Select email, phone or letter"))
    uploads = submission.uploads
    if len(uploads) > MAX_FILES:
        found.append(Problem("files", f"Select {MAX_FILES} files or fewer"))
    for upload in uploads[:MAX_FILES]:
        name = unicodedata.normalize("NFC", upload.filename)
        shown = _one_line(name)[:60] or "A file"
        if (
            not name.strip()
            or _safe_name(name, max_filename_length) != name
            or DIRECTION_CONTROLS.search(name)
        ):
            found.append(
                Problem(
                    "files",
                    f"{shown}: rename the file without folders, slashes, control or direction "
                    "characters "
                    f"or a leading dot, in {max_filename_length} characters or fewer",
                )
            )
        elif not upload.data:
            found.append(Problem("files", f"{shown} is empty: select the file again"))
        elif max_bytes and len(upload.data) > max_bytes:
            found.append(
                Problem(
                    "files",
                    f"{shown} must be smaller than {max_bytes / 1024 / 1024:g} MB",
                )
            )
    return found


def body_of(submission: Submission) -> str:
    """The enquiry's text as a councillor's email would carry it: the details, then the
    resident's details as plain lines (what is not given is left out)."""
    lines = [submission.details.strip().replace("\r\n", "\n").replace("\r", "\n")]
    about = [
        ("Resident", _one_line(submission.resident_name)),
        (
            "Address",
            ", ".join(_one_line(p) for p in submission.resident_address.splitlines() if p.strip()),
        ),
        ("Resident's reference", _one_line(submission.resident_reference)),
        ("Preferred contact", submission.preferred_contact or ""),
    ]
    given = [f"{label}: {value}" for label, value in about if value]
    if given:
        lines += ["", *given]
    return "\n".join(lines) + "\n"


def as_email(
    submission: Submission,
    sender: Person,
    mailbox: str,
    message_id: str,
    at: datetime,
) -> bytes:
    """The email a councillor would have sent with this content (see the module's note)."""
    mail = EmailMessage(policy=SMTP)
    mail["From"] = formataddr((sender.name, sender.email))
    mail["To"] = mailbox
    mail["Subject"] = _one_line(submission.subject)
    mail["Date"] = format_datetime(as_utc(at))
    mail["Message-ID"] = f"<{message_id}>"
    mail.set_content(body_of(submission))
    for upload in submission.uploads:
        name = unicodedata.normalize("NFC", upload.filename)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        main, sub = kind.split("/", 1)
        mail.add_attachment(upload.data, maintype=main, subtype=sub, filename=name)
    return mail.as_bytes()


def token_hash(token: str, channel: str) -> str:
    """The stored key of a token sent through `channel`: each door's tokens apart, so a
    form's token (the browser's to write) never claims an API client's Idempotency-Key."""
    return hashlib.sha256(f"{channel}:{token}".encode()).hexdigest()


def new_form_token() -> str:
    """A fresh one-use token for a form as served; only its hash is ever stored."""
    return secrets.token_urlsafe(32)


# --- the door ---------------------------------------------------------------------------


def _claim(
    session: Session, submission: Submission, person_id: int | None, channel: str
) -> Submitted | None:
    """Claim the form's token in this transaction; the case it opened before, if any."""
    if submission.token is None:
        return None
    key = token_hash(submission.token, channel)
    conn = session.connection()
    table = FormSubmission.__table__  # type: ignore[attr-defined]
    insert = insert_or_skip(table, ("token_hash",), conn.dialect.name, "token_hash")
    person = person_id or submission.member_id
    values = {"token_hash": key, "person_id": person, "case_id": None, "created_at": utcnow()}
    claimed = conn.execute(insert, values).first() is not None
    if claimed:
        return None
    row = session.get(FormSubmission, key, populate_existing=True)
    assert row is not None  # the insert found it there
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    if case is None or row.person_id != person:
        if channel == Channel.API:
            raise UserError(
                "This Idempotency-Key opened a case already: send a new key for a new case"
            )
        raise UserError("This form was sent already: open a new form to raise another enquiry")
    assert case.id is not None
    return Submitted(case.id, case.reference, case.response_due, repeated=True)


def submit(
    session: Session, services: Services, submission: Submission, *, actor: Actor
) -> Submitted:
    """Open the enquiry as its email would, in the caller's transaction, with the door
    named by `actor.channel` ("web" or "api").

    A person (`actor.person_id`) must be the member or a delegate registered for them;
    without a person (an API token the caller has authorised) the member submits.
    Raises Invalid (nothing stored) or UserError."""
    cfg = services.config
    areas = [a.name for a in cfg.service_areas]
    found = problems(
        submission,
        areas,
        max_bytes=cfg.storage.max_attachment_bytes,
        max_filename_length=cfg.storage.max_filename_length,
    )
    if found:
        raise Invalid(found)
    member = session.get(Person, submission.member_id)
    if member is None or permissions.acting_for(member) != member.id:
        raise UserError("No such councillor: choose the member the enquiry is for")
    submitter = member
    if actor.person_id is not None:
        person = session.get(Person, actor.person_id)
        if person is None or permissions.acting_for(person) != member.id:
            raise UserError("You can raise enquiries only for yourself or the member you act for")
        submitter = person
    earlier = _claim(session, submission, submitter.id, actor.channel)
    if earlier is not None:
        return earlier
    now = utcnow()
    mailbox = str(cfg.smtp.from_address)
    domain = mailbox.rsplit("@", 1)[1]
    message_id = f"{actor.channel}.{secrets.token_hex(16)}@{domain}"
    raw = as_email(submission, submitter, mailbox, message_id, now)
    parsed = parse(raw, max_filename_length=cfg.storage.max_filename_length)
    chosen = next((a for a in cfg.service_areas if a.name == submission.service_area), None)
    area = chosen or guess_service_area(f"{parsed.subject}\n{parsed.body_text}", cfg.service_areas)
    decision = OpenCase(
        member_id=member.id,  # type: ignore[arg-type]
        submitter_id=submitter.id,  # type: ignore[arg-type]
        service_area=area.name if area else None,
        directorate=area.directorate if area else None,
        channel=str(actor.channel),
        area_given=chosen is not None,
        preferred_contact=submission.preferred_contact,
        actor=actor.shown if actor.person_id is None else None,
    )
    if isinstance(floods.limit(session, cfg.limits, decision, now, submitter.email), HoldFlood):
        raise UserError(
            "You have raised as many enquiries as the limit allows for now: try again in an "
            "hour, or ask the Member Support Team"
        )
    services.blobs.put(raw, sha256=parsed.raw_sha256)
    opened = open_case(session, services, Inbound(parsed, now, len(raw)), decision)
    if submission.token is not None:
        row = session.get(FormSubmission, token_hash(submission.token, actor.channel))
        assert row is not None  # claimed above, in this transaction
        row.case_id = opened.id
        session.add(row)
    session.flush()
    case = session.get(Case, opened.id)
    assert case is not None
    log.info("enquiry submitted", extra={"case": opened.reference, "channel": actor.channel})
    return Submitted(opened.id, opened.reference, case.response_due)


def open_enquiry(services: Services, submission: Submission, *, actor: Actor) -> Submitted:
    """`submit` in a transaction of its own, the blob store held until it commits (so no
    clean-up removes the files between their writing and the rows that name them)."""
    with services.blobs.keeping(), transaction(services.engine) as session:
        return submit(session, services, submission, actor=actor)
