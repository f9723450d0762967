"""Webhooks: case events POSTed, signed, to the systems named in `[[webhooks]]`, through an
outbox of their own (docs/webhooks.md).

Queueing. `cases/records.add_event` is called for every change to a case; for the changes
a receiver hears about (`EVENTS`) it calls `record`, which writes one `webhook_delivery` row
per interested receiver in the caller's transaction, its body made again from the case as
the transaction leaves it just before it commits (`_as_committed`). So a change that rolls
back sends nothing, and nothing is sent before the change commits. Which
receivers listen is carried by the engine (an execution option `Services.build` sets), so
the 46 callers of `add_event` need no new argument. "overdue" has no change behind it: the
deadlines tick queues it (`deadlines/overdue.py`), once per case and deadline.

Delivery. `deliver_due` runs after each round of mail, in the courier process (or the
daemon, when it delivers in-process) and in `schedule run-due`: at most PER_PASS requests
and PASS_SECONDS a round, each with bounded timeouts, so mail is never held up for long.
It claims one row at a time under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL too), so two
deliverers never send one row at once; a deliverer killed mid-request leaves its row to be
sent again when the lease ends, with the same event id, which the receiver dedupes on.
Timeouts, connection errors, 408, 429 and 5xx are retried with exponential backoff and
jitter for GIVE_UP_HOURS; any other 4xx after FOUR_XX_ATTEMPTS; then the row is failed,
shown by `mailbridge check`, and queued again by `mailbridge webhooks retry`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from mailbridge.config import WEBHOOK_LISTENERS, Config, Webhook
from mailbridge.errors import ConfigError, one_line
from mailbridge.store.db import flush_later, insert_later, insert_or_skip, transaction
from mailbridge.store.models import (
    Case,
    Person,
    WebhookDelivery,
    WebhookStatus,
    as_utc,
    utcnow,
)

if TYPE_CHECKING:  # imported when first used: every command imports this module
    import httpx

log = logging.getLogger(__name__)

# The case events (records.add_event's kinds) a receiver hears about, and as what.
# "completed" is added when one of COMPLETING leaves the case completed (`events_for`).
EVENTS: dict[str, tuple[str, ...]] = {
    "case_opened": ("opened",),
    "assigned": ("assigned",),
    "reassigned": ("assigned",),
    "responded": ("responded",),  # the lead officer's response
    "holding_reply": ("responded",),  # a holding reply: the case stays open
    "replied": ("responded",),  # a coordinator's reply to the member
    "status_changed": (),  # only when it completes the case
}
# The changes that can complete a case (a coordinator's reply to a completed case does not).
COMPLETING = frozenset({"responded", "status_changed"})

TIMEOUT_SECONDS = 10.0  # each request, whatever the receiver does
CONNECT_SECONDS = 5.0
PER_PASS = 20  # requests a round at most
PASS_SECONDS = 30.0  # no new request is started after this long in one round
LEASE_SECONDS = 60.0  # a claimed row is nobody else's this long (well over TIMEOUT_SECONDS)
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0
GIVE_UP_HOURS = 24.0
FOUR_XX_ATTEMPTS = 3  # a 4xx (not 408/429) or 3xx is the receiver refusing: stop sooner
RETRIED_STATUSES = frozenset({408, 429})
_WARNED: set[str] = set()  # receivers whose unreadable secret this process has logged


# --- what is sent ------------------------------------------------------------------------


def events_for(kind: str, status: str) -> tuple[str, ...]:
    """The webhook events a case event of `kind` is, the case being `status` after it."""
    if kind not in EVENTS:
        return ()
    completed = ("completed",) if status == "completed" and kind in COMPLETING else ()
    return EVENTS[kind] + completed


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def body_of(
    case: Case, lead: Person | None, event: str, event_id: str, at: datetime, change: str
) -> str:
    """The JSON a receiver gets: what changed and the case's state, never a message body."""
    due = case.extended_due or case.response_due
    return json.dumps(
        {
            "id": event_id,
            "event": event,
            "change": change,
            "occurred_at": as_utc(at).isoformat(timespec="seconds"),
            "case": {
                "reference": case.reference,
                "status": case.status,
                "service_area": case.service_area,
                "channel": case.channel,
                "received_at": as_utc(case.received_at).isoformat(timespec="seconds"),
                "acknowledge_by": _day(case.acknowledge_due),
                "respond_by": _day(case.response_due),
                "extended_to": _day(case.extended_due),
                "due": _day(due),
                "completed_at": (
                    as_utc(case.completed_at).isoformat(timespec="seconds")
                    if case.completed_at
                    else None
                ),
                "lead_officer": (
                    {"name": lead.name, "email": lead.email} if lead is not None else None
                ),
            },
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def listeners(session: Session) -> tuple[tuple[str, frozenset[str]], ...]:
    return session.connection().get_execution_options().get(WEBHOOK_LISTENERS, ())


def record(session: Session, case_id: int | None, kind: str, at: datetime) -> None:
    """Queue the webhooks a case event of `kind` makes, in the caller's transaction."""
    if case_id is None or kind not in EVENTS:
        return
    receivers = listeners(session)
    if not receivers:
        return
    case = session.get(Case, case_id)
    if case is None:
        return
    events = events_for(kind, case.status)
    if not any(e in wanted for e in events for _, wanted in receivers):
        return
    lead = session.get(Person, case.lead_officer_id) if case.lead_officer_id else None
    written = session.info.setdefault(_WRITTEN, [])
    for event in events:
        event_id = str(uuid.uuid4())
        body = body_of(case, lead, event, event_id, at, kind)
        keys = []
        for name, wanted in receivers:
            if event in wanted:
                insert_later(
                    session, WebhookDelivery, **_row(name, event, event_id, case_id, body, at)
                )
                keys.append(f"{name}:{event_id}")
        written.append(_Written(case_id, event, event_id, kind, at, tuple(keys)))


# The rows `record` wrote in the session's transaction, their bodies made again at commit.
_WRITTEN = "mailbridge.webhooks_written"


@dataclass(frozen=True, slots=True)
class _Written:
    case_id: int
    event: str
    event_id: str
    change: str
    at: datetime
    keys: tuple[str, ...]


@sa_event.listens_for(OrmSession, "before_commit")
def _as_committed(session: OrmSession) -> None:
    """Each body written in this transaction made again from the case as the transaction
    leaves it: a change often goes on after its event is recorded (an assignment that
    resets the deadline records "assigned" first), and a receiver is told what committed.
    A row a savepoint rolled back is simply not found."""
    written: list[_Written] = session.info.pop(_WRITTEN, [])
    if not written:
        return
    flush_later(session)
    for item in written:
        case = session.get(Case, item.case_id)
        if case is None:
            continue
        lead = session.get(Person, case.lead_officer_id) if case.lead_officer_id else None
        body = body_of(case, lead, item.event, item.event_id, item.at, item.change)
        session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.dedupe_key).in_(item.keys))
            .values(body=body)
        )


@sa_event.listens_for(OrmSession, "after_soft_rollback")
def _forget(session: OrmSession, _previous: Any) -> None:
    session.info.pop(_WRITTEN, None)


def _row(
    receiver: str, event: str, event_id: str, case_id: int, body: str, at: datetime
) -> dict[str, Any]:
    return {
        "dedupe_key": f"{receiver}:{event_id}",
        "receiver": receiver,
        "event": event,
        "case_id": case_id,
        "body": body,
        "status": WebhookStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


def overdue_id(reference: str, deadline: date) -> str:
    """The event id of a case passing a deadline: the same for every tick and deliverer."""
    return f"overdue:{reference}:{deadline.isoformat()}"


def record_overdue(session: Session, receivers: Iterable[str], case: Case, at: datetime) -> int:
    """Queue "overdue" for `case` to each receiver once (its dedupe key); how many were new."""
    deadline = case.extended_due or case.response_due
    event_id = overdue_id(case.reference, deadline)
    lead = session.get(Person, case.lead_officer_id) if case.lead_officer_id else None
    body = body_of(case, lead, "overdue", event_id, at, "overdue")
    conn = session.connection()
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    statement = insert_or_skip(table, ("dedupe_key",), conn.dialect.name, returning="id")
    assert case.id is not None
    added = 0
    for name in receivers:
        row = _row(name, "overdue", event_id, case.id, body, at)
        added += conn.execute(statement, row).scalar() is not None
    return added


# --- the signature -----------------------------------------------------------------------


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256, keyed by the receiver's secret, of
    `<timestamp>.<body>`: the timestamp signed with the body, so a replay is seen as old."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers(
    secret: bytes, body: bytes, event_id: str, event: str, timestamp: int
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "mailbridge-webhooks/1",
        "X-Mailbridge-Event": event,
        "X-Mailbridge-Event-Id": event_id,
        "X-Mailbridge-Timestamp": str(timestamp),
        "X-Mailbridge-Signature": signature(secret, timestamp, body),
    }


# --- the decisions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a row after an attempt: delivered, retried at `delay`, or failed."""

    outcome: str  # delivered | retry | failed
    delay: float = 0.0
    error: str = ""


def backoff(attempts: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after `attempts` tries: doubling from RETRY_BASE_SECONDS
    to RETRY_MAX_SECONDS, its upper half drawn at random so receivers coming back up are
    not all hit at once."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return ceiling / 2 + rand() * ceiling / 2


def verdict(
    status: int | None,
    error: str,
    attempts: int,
    age: timedelta,
    rand: Callable[[], float] = random.random,
) -> Verdict:
    """After the `attempts`-th try, `age` after the row was queued: the receiver answered
    `status`, or (None) could not be reached or timed out, as `error` says."""
    if status is not None and 200 <= status < 300:
        return Verdict("delivered")
    # Any other 4xx, or a redirect (not followed: the URL is to be put right), is the
    # receiver refusing it.
    refused = status is not None and status < 500 and status not in RETRIED_STATUSES
    if refused and attempts >= FOUR_XX_ATTEMPTS:
        return Verdict("failed", error=f"refused {attempts} times: {error}")
    if age >= timedelta(hours=GIVE_UP_HOURS):
        return Verdict("failed", error=f"gave up after {GIVE_UP_HOURS:g} hours: {error}")
    return Verdict("retry", backoff(attempts, rand), error)


# --- delivery ------------------------------------------------------------------------------


@dataclass
class WebhookReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    down: set[str] = field(default_factory=set)  # receivers not reached this round

    @property
    def tried(self) -> int:
        return self.delivered + self.retried + self.failed


def secrets_of(config: Config) -> dict[str, bytes | str]:
    """Each receiver's secret, or why it cannot be read (its rows then wait, unsent)."""
    found: dict[str, bytes | str] = {}
    for hook in config.webhooks:
        try:
            found[hook.name] = config.secret(
                f"[[webhooks]] {hook.name} secret", hook.secret
            ).encode()
        except ConfigError as exc:
            found[hook.name] = str(exc)
    return found


def claim(engine: Engine, now: datetime, skip: Iterable[str] = ()) -> WebhookDelivery | None:
    """The next due row, leased to this deliverer for LEASE_SECONDS (one attempt more)."""
    with transaction(engine) as session:
        due = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == WebhookStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(col(WebhookDelivery.id))  # oldest first
            .limit(1)
        )
        skipped = list(skip)
        if skipped:
            due = due.where(col(WebhookDelivery.receiver).not_in(skipped))
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        row_id = session.execute(due).scalar()
        if row_id is None:
            return None
        taken = session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == row_id,
                WebhookDelivery.status == WebhookStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(
                next_attempt_at=now + timedelta(seconds=LEASE_SECONDS),
                attempts=col(WebhookDelivery.attempts) + 1,
            )
            .returning(WebhookDelivery.id)
        ).scalar()
        if taken is None:
            return None
        row = session.get(WebhookDelivery, row_id)
        assert row is not None
        session.refresh(row)
        session.expunge(row)
        return row


def _event_id(row: WebhookDelivery) -> str:
    return row.dedupe_key.split(":", 1)[1]


def post(
    client: httpx.Client, url: str, secret: bytes, row: WebhookDelivery
) -> tuple[int | None, str]:
    """One request: the receiver's status code, or None and why it was not reached."""
    import httpx

    body = row.body.encode("utf-8")
    sent = headers(secret, body, _event_id(row), row.event, int(time.time()))
    try:
        answer = client.post(url, content=body, headers=sent)
    except httpx.TimeoutException:
        return None, "timed out"
    except httpx.HTTPError as exc:
        return None, one_line(exc) or type(exc).__name__
    return answer.status_code, f"HTTP {answer.status_code}"


def _settle(engine: Engine, row: WebhookDelivery, said: Verdict, at: datetime) -> None:
    """Record the attempt; only while the row is still pending (the lease is ours)."""
    values: dict[str, Any]
    if said.outcome == "delivered":
        values = {"status": WebhookStatus.DELIVERED, "delivered_at": at, "last_error": None}
    elif said.outcome == "failed":
        values = {"status": WebhookStatus.FAILED, "last_error": said.error[:500]}
    else:
        values = {
            "next_attempt_at": at + timedelta(seconds=said.delay),
            "last_error": said.error[:500],
        }
    with transaction(engine) as session:
        session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == row.id,
                WebhookDelivery.status == WebhookStatus.PENDING,
            )
            .values(**values)
        )
    extra = {"webhook_id": row.id, "receiver": row.receiver, "event": row.event}
    if said.outcome == "delivered":
        log.info("webhook delivered", extra=extra)
    elif said.outcome == "failed":
        log.warning("webhook failed", extra={**extra, "error": said.error[:200]})
    else:
        log.info(
            "webhook deferred",
            extra={**extra, "retry_in_seconds": round(said.delay), "error": said.error[:200]},
        )


def deliver_due(
    engine: Engine,
    config: Config,
    *,
    limit: int = PER_PASS,
    budget_seconds: float = PASS_SECONDS,
    now: Callable[[], datetime] = utcnow,
    stopping: Callable[[], bool] = lambda: False,
) -> WebhookReport:
    """One round: up to `limit` due rows sent, none started after `budget_seconds`. A
    receiver that could not be reached is left alone for the rest of the round."""
    report = WebhookReport()
    if not config.webhooks:
        return report
    hooks: dict[str, Webhook] = {w.name: w for w in config.webhooks}
    keys = secrets_of(config)
    # Rows for a receiver no longer configured, or without a readable secret, wait.
    for name, key in keys.items():
        if isinstance(key, str):
            report.down.add(name)
            if name not in _WARNED:  # once a process: `mailbridge check` says it too
                _WARNED.add(name)
                log.warning("webhook secret unreadable; its events wait", extra={"error": key})
    unknown = _unknown(engine, hooks)
    started = time.monotonic()
    import httpx

    timeout = httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_SECONDS)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        while report.tried < limit and time.monotonic() - started < budget_seconds:
            if stopping():
                break
            row = claim(engine, now(), skip=report.down | unknown)
            if row is None:
                break
            key = keys[row.receiver]
            assert isinstance(key, bytes)
            status, error = post(client, hooks[row.receiver].url, key, row)
            at = now()
            said = verdict(status, error, row.attempts, at - as_utc(row.created_at))
            _settle(engine, row, said, at)
            if said.outcome == "delivered":
                report.delivered += 1
            elif said.outcome == "failed":
                report.failed += 1
            else:
                report.retried += 1
            if status is None or status >= 500:
                report.down.add(row.receiver)
    return report


def _unknown(engine: Engine, hooks: dict[str, Webhook]) -> set[str]:
    """Receivers with rows waiting that the config no longer names: left as they are."""
    with Session(engine) as session:
        names = session.exec(
            select(WebhookDelivery.receiver)
            .where(WebhookDelivery.status == WebhookStatus.PENDING)
            .distinct()
        ).all()
    return {n for n in names if n not in hooks}


def retry_failed(engine: Engine, receiver: str | None = None, now: datetime | None = None) -> int:
    """Failed rows queued again (`mailbridge webhooks retry`): due now, with a fresh
    GIVE_UP_HOURS counted from now. How many."""
    moment = now or utcnow()
    with transaction(engine) as session:
        query = update(WebhookDelivery).where(WebhookDelivery.status == WebhookStatus.FAILED)
        if receiver is not None:
            query = query.where(WebhookDelivery.receiver == receiver)
        result = session.execute(
            query.values(
                status=WebhookStatus.PENDING,
                attempts=0,
                next_attempt_at=moment,
                created_at=moment,
            )
        )
        return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class Undelivered:
    id: int
    receiver: str
    event: str
    reference: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


def undelivered(engine: Engine, limit: int = 200) -> list[Undelivered]:
    """Rows waiting or failed, oldest first (`mailbridge webhooks list`): never a body."""
    with Session(engine) as session:
        found = session.exec(
            select(
                WebhookDelivery.id,
                WebhookDelivery.receiver,
                WebhookDelivery.event,
                Case.reference,
                WebhookDelivery.status,
                WebhookDelivery.attempts,
                WebhookDelivery.next_attempt_at,
                WebhookDelivery.last_error,
            )
            .outerjoin(Case, col(Case.id) == col(WebhookDelivery.case_id))
            .where(WebhookDelivery.status != WebhookStatus.DELIVERED)
            .order_by(col(WebhookDelivery.id))
            .limit(limit)
        ).all()
    return [Undelivered(*row) for row in found]  # type: ignore[arg-type]
