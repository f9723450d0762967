"""The transactional outbox (docs/architecture.md, invariant 2): queue in the caller's
transaction, deliver later.

Delivery claims due rows with a lease in one short transaction, talks SMTP with no
transaction open, then records each result in its own short transaction (the courier on
SQLite writes accepted mail to a receipts file and marks it in bulk: receipts.py). A
sender writes its name on the rows it claims and holds a lock of that name while it lives
(claims.py): the rows of a sender that died are taken over by the next claim, not left
until the lease ends, and sent again with the same Message-ID, so a repeat is
recognisable as one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, update
from sqlmodel import Session, select

from mailbridge.delivery.claims import Claimer, take_over
from mailbridge.delivery.receipts import Receipts
from mailbridge.delivery.transports.base import (
    PermanentDeliveryError,
    Sender,
    TemporaryDeliveryError,
)
from mailbridge.errors import DeliveryError
from mailbridge.store.db import insert_later, transaction
from mailbridge.store.models import Direction, Event, Message, OutboxMessage, OutboxStatus, utcnow

log = logging.getLogger(__name__)


def enqueue(
    session: Session,
    *,
    kind: str,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    raw: bytes,
    message_id: str,
    case_id: int | None = None,
    case_reference: str | None = None,
    idempotency_key: str | None = None,
    body_text: str = "",
    in_reply_to: str | None = None,
    now: datetime | None = None,
) -> None:
    """Add the email to the caller's transaction; it is sent only if that commits.

    Inside `db.rows_later` (ingest's batches, the clock's) the rows wait to go in with the
    batch's others: nothing in a batch reads the outbox or its own sent mail back.
    """
    moment = now or utcnow()
    to = ", ".join(recipients)
    insert_later(
        session,
        OutboxMessage,
        message_id=message_id,
        idempotency_key=idempotency_key,
        case_id=case_id,
        case_reference=case_reference,
        kind=kind,
        sender=sender,
        recipients=to,
        subject=subject[:998],
        raw=raw,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=moment,
        created_at=moment,
    )
    insert_later(
        session,
        Message,
        direction=Direction.OUT,
        message_id=message_id,
        case_id=case_id,
        sender=sender,
        recipients=to,
        subject=subject[:998],
        received_at=moment,
        body_text=body_text,
        in_reply_to=in_reply_to,
        raw_size=len(raw),
        created_at=moment,
    )


class RateLimiter:
    """At most `per_minute` sends in any 60 seconds (0 = no limit); waits rather than drops."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.sleep = sleep
        self.sent: deque[float] = deque()

    def would_wait(self) -> bool:
        """True when the next `acquire` has to wait for a slot."""
        if self.per_minute <= 0:
            return False
        self._forget(self.clock())
        return len(self.sent) >= self.per_minute

    def acquire(self, stopping: Callable[[], bool] | None = None) -> None:
        """Wait for a free slot, or until `stopping()` (the caller then checks it)."""
        if self.per_minute <= 0:
            return
        while True:
            if stopping is not None and stopping():
                return
            now = self.clock()
            self._forget(now)
            if len(self.sent) < self.per_minute:
                self.sent.append(now)
                return
            self.sleep(60.0 - (now - self.sent[0]))

    def _forget(self, now: float) -> None:
        while self.sent and now - self.sent[0] >= 60.0:
            self.sent.popleft()


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    last_sent_at: datetime | None = None  # when the server last accepted an email
    open_error: DeliveryError | None = None  # the transport could not be opened

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.failed


def claim(
    engine: Engine,
    *,
    batch_size: int,
    lease_seconds: float,
    now: datetime,
    receipts: Receipts | None = None,
    claimer: Claimer | None = None,
) -> list[int]:
    """Take due rows for this sender: no other sender gets them while this one lives and
    the lease lasts.

    With `receipts`, every receipt in their folder (ours and other couriers') is marked
    sent in the same transaction, before anything is claimed: one wait for SQLite's lock,
    not two, and no row that was sent can be claimed again. With `claimer`, the rows are
    claimed in its name, and the rows of senders that died are taken over first, after
    those receipts are marked (claims.py).
    """
    dead = claimer.dead_senders(engine, now) if claimer is not None else []
    with (
        receipts.taken() if receipts is not None else nullcontext(None) as taken,
        transaction(engine) as session,
    ):
        if taken is not None:
            taken.mark(session)
        if dead:
            take_over(session, dead, now)
        due = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.next_attempt_at <= now,
            )
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
            .limit(batch_size)
        )
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list(session.execute(due).scalars().all())
        if not ids:
            return []
        # Our lock is taken only once there is something to claim (a file, or a connection
        # of its own on PostgreSQL), then kept by the courier for its life.
        name = claimer.hold() if claimer is not None else None
        claimed = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id.in_(ids),  # type: ignore[union-attr]
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.next_attempt_at <= now,
            )
            .values(
                next_attempt_at=now + timedelta(seconds=lease_seconds),
                attempts=OutboxMessage.attempts + 1,
                claimed_by=name,
            )
            .returning(OutboxMessage.id)
        )
        return sorted(claimed.scalars().all())


def deliver_due(
    engine: Engine,
    sender: Sender,
    *,
    batch_size: int = 100,
    lease_seconds: float = 300.0,
    retry_base_seconds: float = 60.0,
    retry_max_seconds: float = 3600.0,
    give_up_after_hours: float = 72.0,
    rate_limit: RateLimiter | None = None,
    now: Callable[[], datetime] = utcnow,
    stopping: Callable[[], bool] | None = None,
    receipts: Receipts | None = None,
    claimer: Claimer | None = None,
) -> DeliveryReport:
    """Send one batch of due mail over one connection; never inside a case transaction.

    When `stopping()` turns true the message in flight is finished and the rest of the
    batch is handed back at once, not left to its lease. With `receipts` (the courier on
    SQLite) accepted mail is marked sent in bulk, by the next claim or once it is due
    (`Receipts.fold`), instead of one transaction per email.
    """
    report = DeliveryReport()
    ids = claim(
        engine,
        batch_size=batch_size,
        lease_seconds=lease_seconds,
        now=now(),
        receipts=receipts,
        claimer=claimer,
    )
    if not ids:
        return report
    try:
        sender.open()
    except (TemporaryDeliveryError, PermanentDeliveryError) as exc:
        # The server is unreachable or refused our login: nothing is wrong with the mail.
        log.error("cannot open the mail transport", extra={"error": str(exc)})
        report.open_error = exc
        for row in _load(engine, ids):
            if row is not None:
                _retry_later(
                    engine, row, str(exc), now(), retry_base_seconds, retry_max_seconds,
                    give_up_after_hours,
                )  # fmt: skip
                report.retried += 1
        return report
    rows = _load(engine, ids)
    for index, row in enumerate(rows):
        if rate_limit is not None:
            if receipts is not None and receipts.pending and rate_limit.would_wait():
                receipts.fold(engine)  # what was sent shows as sent during the pause
            rate_limit.acquire(stopping)
        if stopping is not None and stopping():
            _release(engine, [r.id for r in rows[index:] if r.id is not None])
            break
        if claimer is not None and not claimer.still_ours():
            # Others may take our rows for a dead sender's now: those they have not taken
            # go back to the outbox, and we send none of them.
            log.warning("sender lock lost; the rest of the batch goes back to the outbox")
            _release(engine, [r.id for r in rows[index:] if r.id is not None], claimer.name)
            break
        recipients = [r.strip() for r in row.recipients.split(",") if r.strip()]
        try:
            result = sender.send(row.raw, row.sender, recipients)
        except PermanentDeliveryError as exc:
            _failed(engine, row, str(exc), now())
            report.failed += 1
            continue
        except TemporaryDeliveryError as exc:
            gave_up = _retry_later(
                engine, row, str(exc), now(), retry_base_seconds, retry_max_seconds,
                give_up_after_hours,
            )  # fmt: skip
            if gave_up:
                report.failed += 1
            else:
                report.retried += 1
            continue
        if receipts is not None and not result.refused and _noted(receipts, row, now()):
            _log_sent(row)
            if receipts.due():
                receipts.fold(engine)
        else:
            _sent(engine, row, result.refused, now())
        report.sent += 1
        report.last_sent_at = now()
    return report


def _noted(receipts: Receipts, row: OutboxMessage, at: datetime) -> bool:
    """Note the accepted email in the receipts file; False (mark it in the database at once)
    when the file cannot be written, e.g. the data folder is full or read-only."""
    if row.id is None:
        return False
    try:
        receipts.record(row.id, at)
    except OSError as exc:
        log.warning(
            "cannot write delivery receipts; marking sent one by one", extra={"error": str(exc)}
        )
        return False
    return True


def claim_size(batch_size: int, rate_limit_per_minute: int, lease_seconds: float) -> int:
    """Rows to claim at once: no more than can be sent in half the lease at the rate limit,
    or another sender would take the rest for abandoned and send them again."""
    if rate_limit_per_minute <= 0:
        return batch_size
    return max(1, min(batch_size, int(rate_limit_per_minute * lease_seconds / 120)))


def _release(engine: Engine, ids: list[int], owner: str | None = None) -> None:
    """Claimed but not tried: due again now, and this claim does not count as an attempt.
    With `owner`, only the rows still pending in that sender's name (another sender may
    have taken the rest over)."""
    if not ids:
        return
    ours = OutboxMessage.id.in_(ids)  # type: ignore[union-attr]
    if owner is not None:
        ours = ours & (OutboxMessage.claimed_by == owner)
        ours = ours & (OutboxMessage.status == OutboxStatus.PENDING)
    with transaction(engine) as session:
        session.execute(
            update(OutboxMessage)
            .where(ours)
            .values(next_attempt_at=utcnow(), attempts=OutboxMessage.attempts - 1, claimed_by=None)
        )


def _load(engine: Engine, ids: list[int]) -> list[OutboxMessage]:
    """The claimed rows in one query, in the order they were queued."""
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.id.in_(ids))  # type: ignore[union-attr]
        ).all()
        session.expunge_all()
    return sorted(rows, key=lambda r: r.id or 0)


def _sent(engine: Engine, row: OutboxMessage, refused: dict[str, str], at: datetime) -> None:
    # Marked one by one, right after the server accepted it: a crash can repeat at most
    # the one message in flight (with the same Message-ID).
    if not refused:
        with engine.execution_options(mailbridge_write=True).begin() as conn:
            conn.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)  # type: ignore[arg-type]
                .values(status=OutboxStatus.SENT, sent_at=at, last_error=None)
            )
        _log_sent(row)
        return
    with transaction(engine) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id)  # type: ignore[arg-type]
            .values(status=OutboxStatus.SENT, sent_at=at, last_error=None)
        )
        if refused:
            words = "; ".join(f"{rcpt}: {why}" for rcpt, why in refused.items())
            session.add(
                Event(
                    case_id=row.case_id,
                    at=at,
                    kind="delivery_partially_failed",
                    detail=f"{row.kind} {row.message_id} refused for {words}",
                )
            )
    _log_sent(row)


def _log_sent(row: OutboxMessage) -> None:
    log.info("mail sent", extra={"outbox_id": row.id, "kind": row.kind, "case": row.case_reference})


def _failed(engine: Engine, row: OutboxMessage, error: str, at: datetime) -> None:
    with transaction(engine) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id)  # type: ignore[arg-type]
            .values(status=OutboxStatus.FAILED, last_error=error[:2000])
        )
        session.add(
            Event(
                case_id=row.case_id,
                at=at,
                kind="delivery_failed",
                detail=f"{row.kind} to {row.recipients} could not be delivered: {error[:500]}",
            )
        )
    log.warning(
        "mail delivery failed",
        extra={"outbox_id": row.id, "kind": row.kind, "case": row.case_reference, "error": error},
    )


def _retry_later(
    engine: Engine,
    row: OutboxMessage,
    error: str,
    at: datetime,
    base: float,
    cap: float,
    give_up_after_hours: float,
) -> bool:
    created = row.created_at
    if at - created > timedelta(hours=give_up_after_hours):
        _failed(engine, row, f"gave up after {give_up_after_hours:g} hours: {error}", at)
        return True
    delay = min(cap, base * 2 ** max(0, row.attempts - 1))
    with transaction(engine) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id)  # type: ignore[arg-type]
            .values(
                next_attempt_at=at + timedelta(seconds=delay),
                last_error=error[:2000],
                claimed_by=None,  # a retry waiting, not a lease: no takeover may cut it short
            )
        )
    log.info(
        "mail delivery deferred",
        extra={
            "outbox_id": row.id,
            "case": row.case_reference,
            "retry_in_seconds": delay,
            "error": error,
        },
    )
    return False
