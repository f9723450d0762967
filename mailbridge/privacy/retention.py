"""The retention policy ([retention] in the config; docs/data-protection.md, "How long it is
kept"): what is due for erasure, as pure functions, and the run that erases it.

Due, at `now`:
- a completed or closed case's content, `completed_case_months` calendar months after it
  finished: its latest completion (a reopened case counts again from its next one), or
  when it was merged or converted; never a case on legal hold, an open one, or one erased
  already;
- quarantined mail `quarantine_days` after it arrived, unless a coordinator accepted it
  (then it is part of its case and goes with the case's content). Waiting, retried and
  released items alike: a retried one became a case or a new quarantined item of its own;
- mail that belongs to no case and was not quarantined (a status request, an automatic
  reply, a bounce), `caseless_mail_days` after it arrived; mail sent on no case (a status
  reply, a digest: they list the subjects of many cases) `sent_mail_days` after it went;
- the rendered copy of each email sent, `sent_mail_days` after it was sent (the row stays
  as the record of the send);
- the traceback of a failed message, and of a quarantined one, `failure_days` after it
  failed (or was quarantined);
- the note of each automatic email sent to an address, kept for the limits on automatic
  mail (delivery/limits.py counts a day at most), after AUTOMATIC_MAIL_DAYS.

A case on legal hold keeps all of its content: the copies of its mail sent and the mail
quarantined on it are not due either, whatever their age.

`run` does each piece in a short transaction of its own, so a first run over years of
cases never holds the database's write lock for long, and checks again inside it, so a
rerun (or a second daemon) erases nothing more. The service runs it once a day at `run_at`
(`run_daily`), claimed under a `retention:YYYY-MM-DD` key as the digests are.

The mailbox keeps its own copies of processed and quarantined mail (its Processed and
Quarantine folders): the mail server's own retention governs those.
"""

from __future__ import annotations

import calendar as months
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, delete, func, or_, update
from sqlmodel import Session, col, select

from mailbridge.config import RetentionConfig
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor
from mailbridge.privacy.erasure import (
    ERASED,
    erase_case,
    erase_message,
    erase_quarantined,
    release_blobs,
)
from mailbridge.services import Services
from mailbridge.store.db import insert_or_skip, scrub, transaction
from mailbridge.store.models import (
    AutoMail,
    Case,
    CaseStatus,
    Direction,
    Disposition,
    Event,
    Message,
    OutboxMessage,
    OutboxStatus,
    ProcessingFailure,
    QuarantineItem,
    QuarantineStatus,
    ScheduledSend,
    as_utc,
)

log = logging.getLogger(__name__)

FINISHED = (CaseStatus.COMPLETED.value, CaseStatus.CLOSED.value)
CLOSING_EVENTS = ("merged", "converted")  # when a closed case finished
CHUNK = 200  # rows per transaction for the bulk pieces
# The limits on automatic mail count the last hour and day: a week's notes is plenty.
AUTOMATIC_MAIL_DAYS = 7


# --- what is due (pure) ------------------------------------------------------------------


def months_before(moment: datetime, count: int) -> datetime:
    """The same moment `count` calendar months earlier (31 March less one month: 28 or 29
    February)."""
    index = moment.year * 12 + moment.month - 1 - count
    year, month = divmod(index, 12)
    day = min(moment.day, months.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True, slots=True)
class CaseState:
    """What the policy reads of a case."""

    reference: str
    status: str
    finished_at: datetime | None  # its latest completion, or when it closed
    held: bool
    erased: bool


def case_due(case: CaseState, now: datetime, policy: RetentionConfig) -> bool:
    """Its content is due for erasure: finished at least the policy's months ago, not held,
    not erased already."""
    if case.held or case.erased or case.status not in FINISHED or case.finished_at is None:
        return False
    return case.finished_at <= months_before(now, policy.completed_case_months)


def quarantine_due(
    status: str, arrived: datetime, erased: bool, now: datetime, policy: RetentionConfig
) -> bool:
    """A quarantined message is due `quarantine_days` after it arrived, unless accepted."""
    if erased or status == QuarantineStatus.ACCEPTED:
        return False
    return arrived <= now - timedelta(days=policy.quarantine_days)


def caseless_due(
    disposition: str | None,
    case_id: int | None,
    arrived: datetime,
    erased: bool,
    now: datetime,
    policy: RetentionConfig,
    *,
    outbound: bool = False,
) -> bool:
    """Mail that belongs to no case, handled without one (quarantined mail goes with its
    quarantine item), is due `caseless_mail_days` after it arrived; mail sent on no case
    `sent_mail_days` after it went, as the copies of mail sent."""
    if erased or case_id is not None:
        return False
    if outbound:
        return arrived <= now - timedelta(days=policy.sent_mail_days)
    if disposition != Disposition.HANDLED:
        return False
    return arrived <= now - timedelta(days=policy.caseless_mail_days)


def sent_copy_due(
    status: str, sent_at: datetime | None, erased: bool, now: datetime, policy: RetentionConfig
) -> bool:
    """A sent email's copy is due `sent_mail_days` after it was sent; unsent ones never."""
    if erased or status != OutboxStatus.SENT or sent_at is None:
        return False
    return sent_at <= now - timedelta(days=policy.sent_mail_days)


def traceback_due(
    failed_at: datetime, has_traceback: bool, now: datetime, policy: RetentionConfig
) -> bool:
    return has_traceback and failed_at <= now - timedelta(days=policy.failure_days)


# --- what is due (read from the database) ----------------------------------------------


@dataclass
class Plan:
    """What a run erases (or, on a dry run, would)."""

    cases: list[str] = field(default_factory=list)  # references
    quarantined: list[int] = field(default_factory=list)
    caseless: list[int] = field(default_factory=list)  # message ids
    sent_copies: list[int] = field(default_factory=list)
    failure_tracebacks: list[str] = field(default_factory=list)  # dedupe keys
    quarantine_tracebacks: list[int] = field(default_factory=list)


def _not_held(case_id: ColumnElement[int | None]) -> ColumnElement[bool]:
    """On no case, or on one not on legal hold: a hold keeps all of the case, its copies
    of mail sent and the mail quarantined on it too."""
    held = select(Case.id).where(col(Case.held_at).is_not(None))
    return or_(case_id.is_(None), case_id.not_in(held))


_unerased_mail = select(Message.id).where(
    Message.case_id == Case.id, col(Message.erased_at).is_(None)
)


def case_states(
    session: Session, cutoff: datetime, reference: str | None = None
) -> list[CaseState]:
    """Finished cases not held, with content left, that may have finished by `cutoff` (or
    the one case `reference`, when it is such a case)."""
    closed_at = (
        select(Event.case_id, func.max(Event.at).label("at"))
        .where(col(Event.kind).in_(CLOSING_EVENTS))
        .group_by(col(Event.case_id))
        .subquery()
    )
    query = (
        select(Case.reference, Case.status, Case.completed_at, closed_at.c.at, Case.updated_at)
        .outerjoin(closed_at, closed_at.c.case_id == Case.id)
        .where(
            col(Case.status).in_(FINISHED),
            col(Case.held_at).is_(None),
            # Erased already, unless mail came since (an officer's late reply): that goes too.
            col(Case.content_erased_at).is_(None) | _unerased_mail.exists(),
            (col(Case.completed_at) <= cutoff) | (Case.status == CaseStatus.CLOSED),
        )
        .order_by(col(Case.id))
    )
    if reference is not None:
        query = query.where(Case.reference == reference)
    return [
        CaseState(
            reference,
            status,
            _utc(completed if status == CaseStatus.COMPLETED else (closed or updated)),
            held=False,
            erased=False,
        )
        for reference, status, completed, closed, updated in session.exec(query).all()
    ]


def _utc(moment: datetime | None) -> datetime | None:
    return as_utc(moment) if moment is not None else None


def plan(services: Services, now: datetime) -> Plan:
    policy = services.config.retention
    due = Plan()
    with Session(services.engine) as session:
        cutoff = months_before(now, policy.completed_case_months)
        due.cases = [c.reference for c in case_states(session, cutoff) if case_due(c, now, policy)]
        arrived = now - timedelta(days=policy.quarantine_days)
        for item_id, status, created in session.exec(
            select(QuarantineItem.id, QuarantineItem.status, QuarantineItem.created_at).where(
                col(QuarantineItem.erased_at).is_(None),
                col(QuarantineItem.created_at) <= arrived,
                _not_held(col(QuarantineItem.case_id)),
            )
        ):
            if quarantine_due(status, as_utc(created), False, now, policy):
                due.quarantined.append(item_id)  # type: ignore[arg-type]
        arrived = now - timedelta(days=min(policy.caseless_mail_days, policy.sent_mail_days))
        for message_id, disposition, direction, received in session.exec(
            select(Message.id, Message.disposition, Message.direction, Message.received_at).where(
                col(Message.case_id).is_(None),
                col(Message.erased_at).is_(None),
                col(Message.received_at) <= arrived,
            )
        ):
            out = direction == Direction.OUT
            if caseless_due(disposition, None, as_utc(received), False, now, policy, outbound=out):
                due.caseless.append(message_id)  # type: ignore[arg-type]
        sent = now - timedelta(days=policy.sent_mail_days)
        for copy_id, status, sent_at in session.exec(
            select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.sent_at).where(
                col(OutboxMessage.erased_at).is_(None),
                col(OutboxMessage.sent_at) <= sent,
                _not_held(col(OutboxMessage.case_id)),
            )
        ):
            if sent_copy_due(status, _utc(sent_at), False, now, policy):
                due.sent_copies.append(copy_id)  # type: ignore[arg-type]
        failed = now - timedelta(days=policy.failure_days)
        due.failure_tracebacks = [
            key
            for key, at in session.exec(
                select(ProcessingFailure.dedupe_key, ProcessingFailure.last_failed_at).where(
                    ProcessingFailure.traceback != "",
                    col(ProcessingFailure.last_failed_at) <= failed,
                )
            )
            if traceback_due(as_utc(at), True, now, policy)
        ]
        due.quarantine_tracebacks = [
            item_id  # type: ignore[misc]
            for item_id, at in session.exec(
                select(QuarantineItem.id, QuarantineItem.created_at).where(
                    col(QuarantineItem.traceback).is_not(None),
                    col(QuarantineItem.created_at) <= failed,
                )
            )
            if traceback_due(as_utc(at), True, now, policy) and item_id not in due.quarantined
        ]
    return due


# --- the run -------------------------------------------------------------------------------


@dataclass
class Report:
    """What a run erased, or on a dry run would have."""

    dry_run: bool
    cases: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # held or changed since the plan
    quarantined: int = 0
    caseless: int = 0
    sent_copies: int = 0
    tracebacks: int = 0
    automatic_mail: int = 0
    blobs_removed: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.cases)} cases' content, {self.quarantined} quarantined messages, "
            f"{self.caseless} emails outside any case, "
            f"{self.sent_copies} copies of sent mail, {self.tracebacks} tracebacks, "
            f"{self.automatic_mail} notes of automatic mail, {self.blobs_removed} stored files"
        )


def run(services: Services, now: datetime, *, dry_run: bool, actor: Actor) -> Report:
    """Erase what the policy says is due at `now` (a dry run only lists it)."""
    due = plan(services, now)
    report = Report(dry_run)
    if dry_run:
        report.cases = due.cases
        report.quarantined = len(due.quarantined)
        report.caseless = len(due.caseless)
        report.sent_copies = len(due.sent_copies)
        report.tracebacks = len(due.failure_tracebacks) + len(due.quarantine_tracebacks)
        report.automatic_mail = _forget_automatic_mail(services, now, dry_run=True)
        return report
    policy = services.config.retention
    why = f"retention: {policy.completed_case_months} months after completion"
    for reference in due.cases:
        released = _erase_one_case(services, reference, why, now, actor)
        if released is None:
            report.skipped.append(reference)
            continue
        report.cases.append(reference)
        report.blobs_removed += len(release_blobs(services, released))
    report.quarantined, removed = _erase_each(
        services,
        QuarantineItem,
        due.quarantined,
        lambda i: quarantine_due(
            i.status, as_utc(i.created_at), i.erased_at is not None, now, policy
        ),
        erase_quarantined,
        now,
    )
    report.blobs_removed += removed
    report.caseless, removed = _erase_each(
        services,
        Message,
        due.caseless,
        lambda m: caseless_due(
            m.disposition,
            m.case_id,
            as_utc(m.received_at),
            m.erased_at is not None,
            now,
            policy,
            outbound=m.direction == Direction.OUT,
        ),
        erase_message,
        now,
    )
    report.blobs_removed += removed
    report.sent_copies = _erase_sent_copies(services, due.sent_copies, now)
    report.tracebacks = _erase_tracebacks(services, due)
    report.automatic_mail = _forget_automatic_mail(services, now, dry_run=False)
    with transaction(services.engine) as session:
        audit.record(session, actor, "retention.run", detail=report.summary(), at=now)
    scrub(services.engine)
    log.info(
        "retention run done",
        extra={
            "cases": len(report.cases),
            "quarantined": report.quarantined,
            "caseless": report.caseless,
            "sent_copies": report.sent_copies,
            "tracebacks": report.tracebacks,
            "blobs_removed": report.blobs_removed,
        },
    )
    return report


def _erase_one_case(
    services: Services, reference: str, why: str, now: datetime, actor: Actor
) -> set[str] | None:
    """One case in its own transaction, checked again there; None when no longer due."""
    policy = services.config.retention
    with transaction(services.engine) as session:
        cutoff = months_before(now, policy.completed_case_months)
        states = case_states(session, cutoff, reference)
        if not states or not case_due(states[0], now, policy):
            return None  # held, reopened or erased since the plan was made
        case = session.exec(select(Case).where(Case.reference == reference)).one()
        done = erase_case(session, case, why=why, actor=actor, now=now)
    log.info("case content erased", extra={"case": reference})
    return done.released


Row = TypeVar("Row", QuarantineItem, Message)


def _erase_each(
    services: Services,
    model: type[Row],
    ids: list[int],
    still_due: Callable[[Row], bool],
    erase: Callable[[Session, Row, datetime], set[str]],
    now: datetime,
) -> tuple[int, int]:
    """Rows erased a chunk per transaction, each checked again there (a rerun, a second
    daemon); their blobs nothing names any more removed. How many erased, blobs removed."""
    done = removed = 0
    for chunk in _chunks(ids):
        released: set[str] = set()
        with transaction(services.engine) as session:
            for row_id in chunk:
                row = session.get(model, row_id)
                if row is not None and still_due(row) and not _held(session, row.case_id):
                    released |= erase(session, row, now)
                    done += 1
        removed += len(release_blobs(services, released))
    return done, removed


def _held(session: Session, case_id: int | None) -> bool:
    case = session.get(Case, case_id) if case_id is not None else None
    return case is not None and case.held_at is not None


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _erase_sent_copies(services: Services, ids: list[int], now: datetime) -> int:
    """Sent copies: the bytes and subject erased, the row kept."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    done = 0
    for chunk in _chunks(ids):
        with transaction(services.engine) as session:
            result = session.connection().execute(
                update(table)
                .where(
                    table.c.id.in_(chunk),
                    table.c.erased_at.is_(None),
                    _not_held(table.c.case_id),
                )
                .values(raw=b"", subject=ERASED, erased_at=now)
            )
            done += int(result.rowcount or 0)
    return done


def _erase_tracebacks(services: Services, due: Plan) -> int:
    failures = ProcessingFailure.__table__  # type: ignore[attr-defined]
    items = QuarantineItem.__table__  # type: ignore[attr-defined]
    done = 0
    for keys in _chunks(due.failure_tracebacks):  # type: ignore[arg-type]
        with transaction(services.engine) as session:
            result = session.connection().execute(
                update(failures)
                .where(failures.c.dedupe_key.in_(keys), failures.c.traceback != "")
                .values(traceback="")
            )
            done += int(result.rowcount or 0)
    for ids in _chunks(due.quarantine_tracebacks):
        with transaction(services.engine) as session:
            result = session.connection().execute(
                update(items)
                .where(items.c.id.in_(ids), items.c.traceback.is_not(None))
                .values(traceback=None)
            )
            done += int(result.rowcount or 0)
    return done


def _forget_automatic_mail(services: Services, now: datetime, *, dry_run: bool) -> int:
    """Notes of automatic mail (an address and a time) older than the limits look back."""
    notes = AutoMail.__table__  # type: ignore[attr-defined]
    old = notes.c.at < now - timedelta(days=AUTOMATIC_MAIL_DAYS)
    with transaction(services.engine) as session:
        if dry_run:
            return int(
                session.connection()
                .execute(select(func.count()).select_from(notes).where(old))
                .scalar_one()
            )
        return int(session.connection().execute(delete(notes).where(old)).rowcount or 0)


# --- once a day ----------------------------------------------------------------------------


def daily_key(services: Services, now: datetime) -> str | None:
    """The key of today's run once its time has come (`run_at`, the council's time); None
    before then, or when the daily run is off."""
    at = services.config.retention.run_at
    if not at:
        return None
    local = now.astimezone(services.calendar.zone)
    if local.time() < time.fromisoformat(at):
        return None
    return f"retention:{local.date().isoformat()}"


def run_daily(services: Services, now: datetime) -> Report | None:
    """Today's run, once, whatever the restarts and however many daemons: the first to
    claim today's key runs it. A run that fails is tried again tomorrow (it erases
    only what is due, so nothing is lost by waiting)."""
    key = daily_key(services, now)
    if key is None:
        return None
    sends = ScheduledSend.__table__  # type: ignore[attr-defined]
    with Session(services.engine) as session:  # every tick: a read, not the write lock
        if session.get(ScheduledSend, key) is not None:
            return None
    with transaction(services.engine) as session:
        conn = session.connection()
        claimed = conn.execute(
            insert_or_skip(sends, ("key",), conn.dialect.name, returning="key"),
            {
                "key": key,
                "kind": "retention",
                "case_id": None,
                "outcome": "claimed",
                "done_at": now,
            },
        ).scalar()
    if claimed is None:
        return None
    report = run(services, now, dry_run=False, actor=audit.SERVICE)
    with transaction(services.engine) as session:
        row = session.get(ScheduledSend, key)
        if row is not None:
            row.outcome = "done"
            session.add(row)
    return report
