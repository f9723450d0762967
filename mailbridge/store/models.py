"""Tables. Times are timezone-aware UTC (invariant 6); deadlines are local calendar dates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint, event, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC now: SQLModel stores aware datetimes and returns them in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC from a naive-UTC or aware datetime (parsers and servers give either)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class PersonKind(StrEnum):
    MEMBER = "member"
    OFFICER = "officer"
    COORDINATOR = "coordinator"
    DELEGATE = "delegate"


class CaseStatus(StrEnum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CLOSED = "closed"  # converted to a complaint or service request, or merged into another


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Disposition(StrEnum):
    """What became of an inbound message."""

    CASE = "case"  # it opened a case or belongs to one
    QUARANTINED = "quarantined"
    HANDLED = "handled"  # no case: a status request, an auto-reply or bounce with no case


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class QuarantineStatus(StrEnum):
    WAITING = "waiting"
    RETRIED = "retried"
    RELEASED = "released"
    ACCEPTED = "accepted"  # a coordinator attached it to the case it pointed at


class Person(SQLModel, table=True):
    """A member, officer, coordinator or delegate; addresses live in PersonAddress."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=16)
    name: str = Field(max_length=200)
    email: str = Field(max_length=254, unique=True)
    division: str | None = Field(default=None, max_length=200)
    district: str | None = Field(default=None, max_length=200, index=True)
    party: str | None = Field(default=None, max_length=200)
    service_area: str | None = Field(default=None, max_length=200)
    directorate: str | None = Field(default=None, max_length=200)
    delegate_for_id: int | None = Field(default=None, foreign_key="person.id")
    active: bool = True
    # An officer who also works as a coordinator (the officers' import's `coordinator` column).
    coordinator: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PersonAddress(SQLModel, table=True):
    """Every address that counts as a person's, the primary one included (lowercased)."""

    __tablename__ = "person_address"

    email: str = Field(primary_key=True, max_length=254)
    person_id: int = Field(foreign_key="person.id", index=True)


class ReferenceCounter(SQLModel, table=True):
    """One row per prefix and year; incremented inside the case transaction."""

    __tablename__ = "reference_counter"

    prefix: str = Field(primary_key=True, max_length=8)
    year: int = Field(primary_key=True)
    last: int = 0


# The last day on which a case's figures in the scrutiny report can change by the passing of
# days alone (console/report_months.py): while it is open, or completed without an
# acknowledgement or a first response, the latest of its deadlines (every figure that waits
# on the date compares one of them with today); NULL once it is closed, or completed with
# both given. After that day only a change to the case changes its figures. Indexed, so the
# report's live pass finds the few cases still live on a day; laid out as PostgreSQL prints
# it back, so the schema test compares it with the database's.
_UNSETTLED = (
    "status = 'new' OR status = 'in_progress' OR status = 'completed' AND "
    "(acknowledged_at IS NULL OR first_response_at IS NULL)"
)
_LATEST = "COALESCE(extended_due, response_due)"
LIVE_UNTIL = (
    f"(\nCASE\n    WHEN {_UNSETTLED} THEN\n    CASE\n"
    f"        WHEN acknowledge_due >= response_due AND acknowledge_due >= {_LATEST}"
    " THEN acknowledge_due\n"
    f"        WHEN response_due >= {_LATEST} THEN response_due\n"
    "        ELSE extended_due\n    END\n    ELSE NULL\nEND)"
)


class Case(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("prefix", "year", "seq", name="uq_case_prefix_year_seq"),
        Index("ix_case_status_created", "status", "created_at"),
        # The console's filters and counts (dashboard, cases list, reports).
        Index("ix_case_status_due", "status", "response_due"),
        Index("ix_case_district", "district"),
        Index("ix_case_enquiry_type", "enquiry_type"),
        # The dashboard's overdue and due-soon counts, read from the index alone (no
        # expression: PostgreSQL scans an index alone only for plain columns).
        Index(
            "ix_case_running", "status", "paused_at", "service_area", "extended_due", "response_due"
        ),
        # A service area as typed (filters compare in lower case). On PostgreSQL migration
        # 0010 also INCLUDEs service_area, so a count reads the index alone (not said here:
        # naming a PostgreSQL option loads its dialect into every command's start-up).
        Index("ix_case_area_status", text("lower(service_area)"), "status"),
        # The list by deadline, the one that counts (console/filters.py's effective_due).
        Index("ix_case_due", text("coalesce(extended_due, response_due)"), "id"),
        Index("ix_case_received", "received_at"),
        # New cases per sender (cases/floods.py), counted for every new case.
        Index("ix_case_submitter_received", "submitter_id", "received_at"),
        # The clock's work: the cases whose next reminder or escalation moment has come.
        Index("ix_case_next_stage", "next_stage_at"),
        # The report's live pass: the cases whose figures can still change on a day.
        Index("ix_case_live_until", text(LIVE_UNTIL)),
    )

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=32, unique=True)
    prefix: str = Field(max_length=8)
    year: int
    seq: int
    subject: str = Field(max_length=998)
    body_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: str = Field(default=CaseStatus.NEW, max_length=16, index=True)
    member_id: int = Field(foreign_key="person.id", index=True)
    submitter_id: int = Field(foreign_key="person.id")
    lead_officer_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    service_area: str | None = Field(default=None, max_length=200, index=True)
    directorate: str | None = Field(default=None, max_length=200, index=True)
    enquiry_type: str | None = Field(default=None, max_length=100)
    district: str | None = Field(default=None, max_length=200)
    received_at: datetime
    acknowledge_due: date
    response_due: date = Field(index=True)
    acknowledged_at: datetime | None = None
    completed_at: datetime | None = None
    # `#extend N`: the deadline the officer set, and why. response_due stays the original,
    # which is the one the scrutiny reports count against.
    extended_due: date | None = None
    extension_reason: str | None = Field(default=None, max_length=500)
    assigned_at: datetime | None = None
    first_response_at: datetime | None = None
    last_response_at: datetime | None = None
    chase_count: int = 0
    reopened_count: int = 0
    # A member writing on a case completed too long ago opens a new case linked to it.
    linked_case_id: int | None = Field(default=None, foreign_key="case.id")
    # The door the enquiry came in by: email, web (the on-line form) or api (another
    # council system); every later step is the same whichever it was.
    channel: str = Field(default="email", max_length=8)
    # The resident's choice on the on-line form, or set by coordinators.
    preferred_contact: str | None = Field(default=None, max_length=32)  # email, phone, letter
    sensitive: bool = False
    # Closed here: converted to a complaint or service request, or merged into another case.
    converted_to: str | None = Field(default=None, max_length=32)
    closed_reason: str | None = Field(default=None, max_length=500)
    merged_into_id: int | None = Field(default=None, foreign_key="case.id")
    # `case pause`: the clock stopped since then, and why; resuming adds the paused working
    # days to response_due (and to extended_due). paused_working_days is the running total.
    paused_at: datetime | None = None
    pause_reason: str | None = Field(default=None, max_length=500)
    paused_working_days: int = 0
    # `case reassign --reset-deadline`: the response days were counted afresh from this day
    # (then a change of service area no longer moves the deadline; a calendar change does).
    deadline_reset_on: date | None = None
    deadline_reset_days: int | None = None
    # The member's answer (1-5) to the satisfaction question sent on completion.
    satisfaction: int | None = None
    satisfaction_at: datetime | None = None
    # A legal hold (`case hold`): the retention policy and erasure leave the case alone.
    hold_reason: str | None = Field(default=None, max_length=500)
    held_at: datetime | None = None
    held_by: str | None = Field(default=None, max_length=254)
    # The content (subject, texts, attachments, raw mail) was erased then; the statistical
    # skeleton stays (mailbridge/privacy/erasure.py).
    content_erased_at: datetime | None = None
    # When the clock next has something to do for this case (its next reminder or
    # escalation, UTC), or None while nothing can be due (closed, paused, no lead officer).
    # Kept by deadlines/stages.py in the transaction of any change that moves it.
    next_stage_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class OfficerRole(StrEnum):
    LEAD = "lead"
    ADDITIONAL = "additional"


class CaseMember(SQLModel, table=True):
    """Another member on a case (two councillors raising the same resident's issue): every
    response is copied to them too."""

    __tablename__ = "case_member"

    case_id: int = Field(foreign_key="case.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True, index=True)
    added_at: datetime = Field(default_factory=utcnow)


class CaseOfficer(SQLModel, table=True):
    """An officer on a case: one lead and any number of additional officers."""

    __tablename__ = "case_officer"

    case_id: int = Field(foreign_key="case.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True, index=True)
    role: str = Field(max_length=16)
    assigned_at: datetime = Field(default_factory=utcnow)


class AddressFlag(SQLModel, table=True):
    """An address that bounced permanently: no automatic mail to it until a person clears it."""

    __tablename__ = "address_flag"

    email: str = Field(primary_key=True, max_length=254)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    case_id: int | None = Field(default=None, foreign_key="case.id")
    flagged_at: datetime = Field(default_factory=utcnow)


class AutoMail(SQLModel, table=True):
    """Each automatic email per address, for the hourly and daily limits (loop protection)."""

    __tablename__ = "auto_mail"
    __table_args__ = (
        Index("ix_auto_mail_address_at", "address", "at"),
        Index("ix_auto_mail_kind_at", "kind", "at"),  # stranger replies in total
    )

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=254)
    kind: str = Field(max_length=64)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """A message in (every one we processed) or out (mirrors an outbox row)."""

    id: int | None = Field(default=None, primary_key=True)
    direction: str = Field(max_length=3)
    dedupe_key: str | None = Field(default=None, max_length=998, unique=True)
    message_id: str | None = Field(default=None, max_length=998, index=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    disposition: str | None = Field(default=None, max_length=16)
    sender: str = Field(default="", max_length=998)
    sender_name: str | None = Field(default=None, max_length=998)
    recipients: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    subject: str = Field(default="", max_length=998)
    date_header: datetime | None = None
    received_at: datetime
    # Indexed: an erasure asks whether any other row still names a blob (privacy/erasure.py).
    raw_sha256: str | None = Field(default=None, max_length=64, index=True)
    raw_size: int = 0
    body_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # What the message was on its case (enquiry, response, chaser, ...) and, for replies,
    # the new text without the quoted history and signature.
    role: str | None = Field(default=None, max_length=32)
    reply_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    in_reply_to: str | None = Field(default=None, max_length=998)
    references: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    defects: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Subject, texts, addresses' names and the raw mail erased then (retention or a request).
    erased_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str | None = Field(default=None, max_length=64, index=True)
    inline: bool = False
    refused_reason: str | None = Field(default=None, max_length=500)
    # Why it is never sent on to members or officers (mail/attachments.py held_back, or the
    # virus scan), kept for coordinators; None: it may be sent on.
    held_reason: str | None = Field(default=None, max_length=500)
    # The virus scan's verdict ("clean", "infected: ...", "scan failed: ..."); None: not scanned.
    scan_result: str | None = Field(default=None, max_length=500)


class Event(SQLModel, table=True):
    """Every change to a case (invariant 3): the audit trail and the timeline."""

    # A case's events, and of which kinds: the report counts a case's holding replies and
    # extensions from this index alone.
    __table_args__ = (Index("ix_event_case_kind", "case_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(max_length=64, index=True)
    actor_id: int | None = Field(default=None, foreign_key="person.id")
    actor: str = Field(default="system", max_length=254)
    message_id: int | None = Field(default=None, foreign_key="message.id")
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class OutboxMessage(SQLModel, table=True):
    """An email to send, rendered in full when queued so its Message-ID is fixed then."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=998, unique=True)
    idempotency_key: str | None = Field(default=None, max_length=300, unique=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    case_reference: str | None = Field(default=None, max_length=32)  # for logs and people
    kind: str = Field(max_length=64)
    sender: str = Field(max_length=254)
    recipients: str = Field(sa_column=Column(Text, nullable=False))
    subject: str = Field(max_length=998)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    # The rendered email (raw, subject) erased then; the row stays as the record of a send.
    erased_at: datetime | None = None
    # The sender that holds the row's lease (a courier's name): while that sender lives no
    # other takes the row; once it is dead, the next sender takes it at once, not when the
    # lease ends (delivery/courier.py).
    claimed_by: str | None = Field(default=None, max_length=64)


class ScheduledSend(SQLModel, table=True):
    """A reminder, escalation or digest that was due: one row per idempotency key, written in
    the transaction that queued its mail (or found nobody to send it to), so no restart, missed
    tick or second daemon sends it twice."""

    __tablename__ = "scheduled_send"

    key: str = Field(primary_key=True, max_length=300)
    kind: str = Field(max_length=64, index=True)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    outcome: str = Field(default="queued", max_length=32)  # queued, withheld, nothing_to_send
    done_at: datetime = Field(default_factory=utcnow)


class ProcessingFailure(SQLModel, table=True):
    """A message whose processing raised; kept with its traceback and retried."""

    __tablename__ = "processing_failure"

    dedupe_key: str = Field(primary_key=True, max_length=998)
    raw_sha256: str = Field(max_length=64, index=True)
    attempts: int = 0
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    traceback: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    first_failed_at: datetime = Field(default_factory=utcnow)
    last_failed_at: datetime = Field(default_factory=utcnow)


class QuarantineItem(SQLModel, table=True):
    __tablename__ = "quarantine"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int | None = Field(default=None, foreign_key="message.id", index=True)
    dedupe_key: str = Field(max_length=998, index=True)
    raw_sha256: str = Field(max_length=64, index=True)
    reason_code: str = Field(max_length=64, index=True)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    sender: str = Field(default="", max_length=998)
    subject: str = Field(default="", max_length=998)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    status: str = Field(default=QuarantineStatus.WAITING, max_length=16, index=True)
    traceback: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    # The sender, subject, traceback and raw mail erased then; the reason stays.
    erased_at: datetime | None = None


class AuditRecord(SQLModel, table=True):
    """One access to personal data (a case read, an export, a report, a SAR, an erasure):
    who, when, what, from where (invariant 9). Append-only: nothing updates or deletes a
    row, and on PostgreSQL the application's role can be refused UPDATE and DELETE
    (docs/data-protection.md)."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_case_at", "case_reference", "at"),
        Index("ix_audit_actor_at", "actor", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=254)  # a directory address, or "os:<user>" when unmapped
    actor_id: int | None = None  # the directory person, when there is one (no key: kept as is)
    channel: str = Field(max_length=16)  # cli, web, api, service
    origin: str = Field(default="", max_length=500)  # host and OS user, or the client address
    action: str = Field(max_length=64)
    case_reference: str | None = Field(default=None, max_length=32)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Incident(SQLModel, table=True):
    """Mail stopped flowing, or a standby took over: one row from the moment it was seen
    until it cleared, so its alert and its all-clear each go once, whichever daemon or
    restart sees it (service/alerts.py)."""

    __tablename__ = "incident"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    scope: str = Field(max_length=300)  # the mailbox's name, or "smtp"
    # "kind scope" while open, None once cleared: at most one open incident of a kind in a
    # scope, however many daemons see it at once (a unique column, as NULLs never clash).
    open_key: str | None = Field(default=None, max_length=341, unique=True)
    started_at: datetime = Field(default_factory=utcnow)
    detail: str = Field(default="", max_length=500)  # never personal data
    cleared_at: datetime | None = None


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept, so a
    copy of the database signs nobody in (signin/sessions.py)."""

    __tablename__ = "web_session"

    token_hash: str = Field(primary_key=True, max_length=64)
    person_id: int = Field(foreign_key="person.id", index=True)
    csrf: str = Field(max_length=64)
    method: str = Field(max_length=16)  # "sso" or "link"
    client: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)  # the absolute end
    idle_seconds: int


class SigninLink(SQLModel, table=True):
    """One emailed sign-in link, asked for by address: kept (hashed) to be used once, and to
    count requests per address and per client (signin/links.py)."""

    __tablename__ = "signin_link"

    token_hash: str = Field(primary_key=True, max_length=64)
    address: str = Field(max_length=254, index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    client: str = Field(default="", max_length=64, index=True)
    keep: bool = False
    next_path: str = Field(default="/", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    expires_at: datetime
    used_at: datetime | None = None


class MailboxState(SQLModel, table=True):
    """Where a mailbox source got to: UIDVALIDITY and the highest UID seen."""

    __tablename__ = "mailbox_state"

    source: str = Field(primary_key=True, max_length=500)
    uidvalidity: int | None = None
    last_uid: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class FormSubmission(SQLModel, table=True):
    """One on-line enquiry form as served: its token, in the form, is claimed once, so a
    second submission (a refresh, a double click) finds the case the first one opened."""

    __tablename__ = "form_submission"

    token_hash: str = Field(primary_key=True, max_length=64)
    person_id: int = Field(foreign_key="person.id", index=True)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    created_at: datetime = Field(default_factory=utcnow)


class ApiScope(StrEnum):
    READ = "read"
    WRITE = "write"  # read too


class ApiToken(SQLModel, table=True):
    """A bearer token of another council system (`mailbridge api-tokens create`): kept as
    a hash, shown once; revoked tokens stay as the record of who called."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    scope: str = Field(max_length=8)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=254)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class WebhookStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the retries; `mailbridge webhooks` shows and retries


class WebhookDelivery(SQLModel, table=True):
    """A case event for one configured receiver: written in the transaction of the change
    (never sent for a change that rolled back), body fixed then so its signature is too."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # receiver name + event: a second enqueue of the same event is skipped.
    dedupe_key: str = Field(max_length=300, unique=True)
    receiver: str = Field(max_length=100)
    event: str = Field(max_length=32)  # opened, assigned, responded, completed, overdue
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=WebhookStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class Setting(SQLModel, table=True):
    """A fact the service keeps about itself, by name: e.g. the basis (SLA rules, calendar,
    sending hours) the cases' next stage moments were counted on (deadlines/stages.py)."""

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class CaseTally(SQLModel, table=True):
    """How many cases each status holds, kept by the database itself: triggers on `case`
    add a row (+1 / -1) for every insert, status change and delete, whichever door made
    it, so the dashboard sums a few rows instead of counting a million cases; the
    service's tick folds the rows into one per status (store/tally.py)."""

    __tablename__ = "case_tally"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(max_length=16)
    delta: int


_SQLITE_TALLY = (
    """CREATE TRIGGER IF NOT EXISTS case_tally_insert AFTER INSERT ON "case" BEGIN
        INSERT INTO case_tally (status, delta) VALUES (NEW.status, 1);
    END""",
    """CREATE TRIGGER IF NOT EXISTS case_tally_update AFTER UPDATE OF status ON "case"
    WHEN OLD.status IS NOT NEW.status BEGIN
        INSERT INTO case_tally (status, delta) VALUES (OLD.status, -1);
        INSERT INTO case_tally (status, delta) VALUES (NEW.status, 1);
    END""",
    """CREATE TRIGGER IF NOT EXISTS case_tally_delete AFTER DELETE ON "case" BEGIN
        INSERT INTO case_tally (status, delta) VALUES (OLD.status, -1);
    END""",
)
_POSTGRESQL_TALLY = (
    """CREATE OR REPLACE FUNCTION case_tally_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO case_tally (status, delta) VALUES (OLD.status, -1);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO case_tally (status, delta) VALUES (NEW.status, 1);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER case_tally_insert_delete AFTER INSERT OR DELETE ON "case"
    FOR EACH ROW EXECUTE FUNCTION case_tally_change()""",
    """CREATE OR REPLACE TRIGGER case_tally_update AFTER UPDATE OF status ON "case"
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION case_tally_change()""",
)

# The triggers that keep case_tally, by dialect: made by migration 0012, and by create_all
# (the tests' schema) once every table is there.
TALLY_TRIGGERS = {"sqlite": _SQLITE_TALLY, "postgresql": _POSTGRESQL_TALLY}


class ReportMonth(SQLModel, table=True):
    """The scrutiny report's figures for one local month's cases settled on `day`, counted
    ahead of time (console/report_months.py): used only from `day` on, while no
    `report_change` row falls inside [lo, hi) and the basis (zone, working days) is today's."""

    __tablename__ = "report_month"

    month: date = Field(primary_key=True)  # its first day, in the council's zone
    lo: datetime  # its first moment, UTC
    hi: datetime  # the next month's first moment, UTC
    basis: str = Field(max_length=64)
    figures: str = Field(sa_column=Column(Text, nullable=False))
    counted_at: datetime = Field(default_factory=utcnow)
    day: date  # the local day counted on: the cases live on it are left to the live pass
    live_until: date | None = None  # the last day one of those is live (NULL: none is)


class ReportChange(SQLModel, table=True):
    """A change to what the report says of the cases received at `received_at`, written by
    the database's own triggers whichever door made it (insert-only: no writer waits on
    another for it); the month's figures are counted again and its rows removed."""

    __tablename__ = "report_change"
    __table_args__ = (Index("ix_report_change_received", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime


# The case columns the report reads: a change to any of them is a report_change.
REPORT_COLUMNS = (
    "received_at",
    "status",
    "member_id",
    "directorate",
    "service_area",
    "acknowledged_at",
    "acknowledge_due",
    "first_response_at",
    "response_due",
    "extended_due",
    "completed_at",
    "chase_count",
    "reopened_count",
    "satisfaction",
)
# The events the report counts.
REPORT_EVENTS = ("holding_reply", "deadline_extended")


def _report_triggers(dialect: str) -> tuple[str, ...]:
    columns = ", ".join(REPORT_COLUMNS)
    kinds = ", ".join(f"'{kind}'" for kind in REPORT_EVENTS)
    log = "INSERT INTO report_change (received_at)"
    if dialect == "sqlite":
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in REPORT_COLUMNS)
        of_case = 'SELECT received_at FROM "case" WHERE id ='
        return (
            f"""CREATE TRIGGER IF NOT EXISTS report_change_case_insert AFTER INSERT ON "case"
            BEGIN {log} VALUES (NEW.received_at); END""",
            f"""CREATE TRIGGER IF NOT EXISTS report_change_case_update
            AFTER UPDATE OF {columns} ON "case" WHEN {changed} BEGIN
                {log} VALUES (OLD.received_at);
                {log} SELECT NEW.received_at WHERE NEW.received_at IS NOT OLD.received_at;
            END""",
            f"""CREATE TRIGGER IF NOT EXISTS report_change_case_delete AFTER DELETE ON "case"
            BEGIN {log} VALUES (OLD.received_at); END""",
            f"""CREATE TRIGGER IF NOT EXISTS report_change_event_insert AFTER INSERT ON event
            WHEN NEW.kind IN ({kinds}) BEGIN {log} {of_case} NEW.case_id; END""",
            f"""CREATE TRIGGER IF NOT EXISTS report_change_event_delete AFTER DELETE ON event
            WHEN OLD.kind IN ({kinds}) BEGIN {log} {of_case} OLD.case_id; END""",
            f"""CREATE TRIGGER IF NOT EXISTS report_change_event_update
            AFTER UPDATE OF kind, case_id ON event
            WHEN OLD.kind IN ({kinds}) OR NEW.kind IN ({kinds}) BEGIN
                {log} {of_case} OLD.case_id;
                {log} {of_case} NEW.case_id;
            END""",
        )
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in REPORT_COLUMNS)
    return (
        f"""CREATE OR REPLACE FUNCTION report_change_case() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                {log} VALUES (OLD.received_at);
            END IF;
            IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE'
                    AND NEW.received_at IS DISTINCT FROM OLD.received_at) THEN
                {log} VALUES (NEW.received_at);
            END IF;
            RETURN NULL;
        END $$""",
        """CREATE OR REPLACE TRIGGER report_change_case_insert_delete
        AFTER INSERT OR DELETE ON "case" FOR EACH ROW EXECUTE FUNCTION report_change_case()""",
        f"""CREATE OR REPLACE TRIGGER report_change_case_update AFTER UPDATE OF {columns}
        ON "case" FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION report_change_case()""",
        f"""CREATE OR REPLACE FUNCTION report_change_event() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.kind IN ({kinds}) THEN
                {log} SELECT received_at FROM "case" WHERE id = OLD.case_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.kind IN ({kinds}) THEN
                {log} SELECT received_at FROM "case" WHERE id = NEW.case_id;
            END IF;
            RETURN NULL;
        END $$""",
        # The kinds in WHEN: most events are of others, and a trigger's WHEN costs far less
        # than calling its function for each (a backlog's tick inserts 200,000 events).
        f"""CREATE OR REPLACE TRIGGER report_change_event_insert AFTER INSERT ON event
        FOR EACH ROW WHEN (NEW.kind IN ({kinds})) EXECUTE FUNCTION report_change_event()""",
        f"""CREATE OR REPLACE TRIGGER report_change_event_delete AFTER DELETE ON event
        FOR EACH ROW WHEN (OLD.kind IN ({kinds})) EXECUTE FUNCTION report_change_event()""",
        f"""CREATE OR REPLACE TRIGGER report_change_event_update AFTER UPDATE OF kind, case_id
        ON event FOR EACH ROW WHEN (OLD.kind IN ({kinds}) OR NEW.kind IN ({kinds}))
        EXECUTE FUNCTION report_change_event()""",
    )


# The triggers that write report_change, by dialect: made by migration 0014 and by
# create_all.
REPORT_TRIGGERS = {dialect: _report_triggers(dialect) for dialect in ("sqlite", "postgresql")}


# SQLite has no roles to refuse UPDATE and DELETE on the audit to (PostgreSQL's grants are
# in docs/data-protection.md): the file refuses them itself. Made by migration 0007.
AUDIT_TRIGGERS = {
    "sqlite": tuple(
        f"CREATE TRIGGER IF NOT EXISTS audit_append_only_{verb.lower()} BEFORE {verb} ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END"
        for verb in ("UPDATE", "DELETE")
    )
}


@event.listens_for(SQLModel.metadata, "after_create")
def _triggers(target: Any, connection: Any, **_: Any) -> None:
    """The triggers the migrations make, for a schema made from the models (the tests')."""
    dialect = connection.dialect.name
    for made in (TALLY_TRIGGERS, REPORT_TRIGGERS, AUDIT_TRIGGERS):
        for statement in made.get(dialect, ()):
            connection.exec_driver_sql(statement)
