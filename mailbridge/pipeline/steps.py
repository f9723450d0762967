"""The journey of one inbound email, as an ordered list of named steps (invariant 5).

Each step fills in the work item or returns a typed outcome that ends the journey.
Reorder or add steps in STEPS alone. Anything a step raises is caught by `Processor`:
the message stays in the inbox, its traceback is kept, and after the configured number
of failures it is quarantined with the reason while the loop goes on.
"""

from __future__ import annotations

import hashlib
import logging
import traceback as tb
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from mailbridge import logs
from mailbridge.cases import directory, inbound, records, satisfaction
from mailbridge.cases.directory import Identity
from mailbridge.cases.facts import case_ids_for_message_ids, load_cases
from mailbridge.delivery import queue
from mailbridge.mail import hygiene, parsing, replies
from mailbridge.mail.hygiene import Verdict
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.mailbox.base import Destination
from mailbridge.pipeline import routing, threading
from mailbridge.pipeline.routing import Decision, OpenCase, Quarantine
from mailbridge.services import Services
from mailbridge.store.db import discard_later, flush_later, rows_later, transaction
from mailbridge.store.models import (
    Disposition,
    Message,
    ProcessingFailure,
    QuarantineItem,
    QuarantineStatus,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)


# --- typed outcomes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseOpened:
    reference: str
    destination: Destination | None = Destination.PROCESSED


@dataclass(frozen=True, slots=True)
class Quarantined:
    quarantine_id: int
    code: str
    reason: str
    destination: Destination | None = Destination.QUARANTINE


@dataclass(frozen=True, slots=True)
class AlreadyHandled:
    """A re-delivery or re-fetch: its effect was committed before, so only move it."""

    dedupe_key: str
    destination: Destination | None


@dataclass(frozen=True, slots=True)
class CaseUpdated:
    """The message belongs to a case and moved it along (a reply, chaser, note, ...)."""

    reference: str
    action: str
    destination: Destination | None = Destination.PROCESSED


@dataclass(frozen=True, slots=True)
class Handled:
    """Dealt with, no case concerned: a status request, an auto-reply to nothing of ours."""

    action: str
    destination: Destination | None = Destination.PROCESSED


@dataclass(frozen=True, slots=True)
class Failed:
    """Processing raised; the message stays in the inbox to be tried again."""

    error: str
    attempts: int
    destination: Destination | None = None


Outcome = CaseOpened | CaseUpdated | Handled | Quarantined | AlreadyHandled | Failed


# --- the work item and the steps ------------------------------------------------------


@dataclass
class Work:
    raw: bytes
    server_received_at: datetime | None
    session: Session
    retry_of: int | None = None
    raw_sha256: str = ""
    parsed: ParsedEmail | None = None
    sender: Identity | None = None
    verdict: Verdict | None = None
    match: threading.Match | None = None
    reply_text: str | None = None
    keywords: replies.Keywords | None = None
    status_request: bool = False
    decision: Decision | None = None
    facts: BatchFacts | None = None  # read once for the whole batch; None: ask per message

    @property
    def dedupe_key(self) -> str:
        if self.parsed is not None:
            return self.parsed.dedupe_key
        return "sha256:" + (self.raw_sha256 or hashlib.sha256(self.raw).hexdigest())

    @property
    def received_at(self) -> datetime:
        """Server time first (INTERNALDATE, then the first Received header), client Date last."""
        p = self.parsed
        for moment in (self.server_received_at, p and p.received_at, p and p.date):
            if moment:
                return as_utc(moment)
        return utcnow()


Step = Callable[[Work, Services], Outcome | None]


def store_raw(work: Work, services: Services) -> None:
    """Keep the exact bytes first, so any later failure can be retried from them."""
    known = work.parsed.raw_sha256 if work.parsed is not None else None  # parsed ahead
    work.raw_sha256 = services.blobs.put(work.raw, sha256=known)


def parse(work: Work, services: Services) -> None:
    if work.parsed is None:  # the batch may have parsed it ahead
        work.parsed = parse_raw(work.raw, services.config.storage.max_filename_length)


def parse_raw(raw: bytes, max_filename_length: int) -> ParsedEmail:
    return parsing.parse(raw, max_filename_length=max_filename_length)


def skip_handled(work: Work, services: Services) -> Outcome | None:
    """Nothing doubled: a message whose effect is already committed is only moved."""
    if work.retry_of is not None:
        return None
    if work.facts is not None:
        disposition = work.facts.dispositions.get(work.dedupe_key)
        return AlreadyHandled(work.dedupe_key, _destination(disposition)) if disposition else None
    return _handled(work.session, work.dedupe_key)


# Built once: constructing a statement costs more than running it, once per message.
_DISPOSITION = select(Message.disposition).where(Message.dedupe_key == bindparam("key"))
_WAITING = select(QuarantineItem.id).where(
    QuarantineItem.dedupe_key == bindparam("key"),
    QuarantineItem.status == QuarantineStatus.WAITING,
)


def _handled(session: Session, key: str) -> AlreadyHandled | None:
    conn = session.connection()
    disposition = conn.execute(_DISPOSITION, {"key": key}).scalar()
    if disposition is None:
        if conn.execute(_WAITING, {"key": key}).first() is None:
            return None
        disposition = Disposition.QUARANTINED
    return AlreadyHandled(key, _destination(disposition))


def classify(work: Work, services: Services) -> None:
    """Loops, bounces and auto-replies are recognised before anything else is decided."""
    assert work.parsed is not None
    work.verdict = hygiene.classify(work.parsed, services.own_addresses)


def identify_sender(work: Work, services: Services) -> None:
    assert work.parsed is not None
    address = work.parsed.from_address
    if work.facts is None:
        work.sender = directory.identify(work.session, address)
        return
    # Ingest changes nobody's addresses: a batch asks once per sender, not per message.
    known = work.facts.senders
    key = address or ""
    if key not in known:
        known[key] = directory.identify(work.session, address)
    work.sender = known[key]


def find_case(work: Work, services: Services) -> None:
    """The case the message points at, by the threading rules (threading.py), if any."""
    assert work.parsed is not None
    cfg = services.config
    found = threading.candidates(work.parsed, services.signing_key, cfg.cases.reference_prefix)
    if not (found.message_ids or found.references):
        work.match = threading.Match(None)
        return
    by_message_id = case_ids_for_message_ids(work.session, found.message_ids)
    today = services.calendar.local_date(utcnow())
    facts = load_cases(
        work.session,
        ids=by_message_id.values(),
        references=found.references,
        calendar=services.calendar,
        today=today,
    )
    match = threading.choose(
        found,
        {f.id: f for f in facts},
        by_message_id,
        {f.reference: f for f in facts},
    )
    # Mail on a case merged into another belongs to the case it was merged into.
    for _ in range(5):
        if match.case is None or match.case.merged_into_id is None:
            break
        merged = load_cases(
            work.session, ids=[match.case.merged_into_id], calendar=services.calendar, today=today
        )
        if not merged:
            break
        match = threading.Match(merged[0], match.how)
    work.match = match


def read_reply(work: Work, services: Services) -> None:
    """A reply's new text (no quoted history or signature) and the keywords in it."""
    assert work.parsed is not None and work.match is not None
    parsed = work.parsed
    if work.match.case is None or work.verdict is not None:
        # Keywords only mean something on a case; a fresh email's first line is its own.
        work.keywords = replies.Keywords()
        work.status_request = replies.asks_for_status(parsed.subject, parsed.body_text)
        return
    work.reply_text = replies.extract_reply(parsed.body_text)
    work.keywords = replies.find_keywords(work.reply_text)
    work.status_request = replies.asks_for_status(parsed.subject, work.reply_text)


def route(work: Work, services: Services) -> None:
    assert work.parsed is not None and work.sender is not None and work.match is not None
    work.decision = routing.decide(
        work.parsed,
        work.sender,
        work.verdict,
        work.match,
        work.keywords or replies.Keywords(),
        work.status_request,
        routing.Policy(
            areas=services.config.service_areas,
            reopen_working_days=services.config.cases.reopen_working_days,
            satisfaction=services.config.satisfaction.ask,
        ),
        rating=satisfaction.rating_of(work.reply_text) if work.reply_text else None,
    )


def apply(work: Work, services: Services) -> Outcome:
    """The whole effect of the message, in the batch's transaction (invariants 1 and 2)."""
    assert work.parsed is not None and work.decision is not None
    session = work.session
    item = records.Inbound(work.parsed, work.received_at, len(work.raw), work.reply_text)
    if work.retry_of is not None:
        _release_for_retry(session, work.retry_of, work.dedupe_key)
    if work.facts is None or work.dedupe_key in work.facts.failing:
        records.forget_failure(session, work.dedupe_key)
    decision = work.decision
    if isinstance(decision, OpenCase):
        case = records.open_case(session, services, item, decision)
        return CaseOpened(case.reference)
    if isinstance(decision, Quarantine):
        return _quarantine(work, services, item, decision)
    if isinstance(decision, routing.NoteBounce):
        applied = inbound.note_bounce(session, services, item, decision)
        if applied is None:
            return _quarantine(
                work,
                services,
                item,
                Quarantine(
                    "bounce_unmatched",
                    "a delivery failure report for a message mailbridge did not send "
                    f"({decision.bounce.reason})",
                ),
            )
    else:
        applied = _APPLY[type(decision)](session, services, item, decision)
    if applied.reference is None:
        return Handled(applied.action)
    return CaseUpdated(applied.reference, applied.action)


def _quarantine(work: Work, services: Services, item: records.Inbound, q: Quarantine) -> Outcome:
    entry = records.quarantine(
        work.session,
        item=item,
        dedupe_key=work.dedupe_key,
        raw_sha256=work.raw_sha256,
        code=q.code,
        reason=q.reason,
        case_id=q.case_id,
    )
    if q.answer_stranger:
        inbound.answer_stranger(work.session, services, item)
    return Quarantined(entry.id or 0, q.code, q.reason)


_APPLY: dict[type, Callable[..., inbound.Applied]] = {
    routing.StatusRequest: inbound.status_request,
    routing.Chase: inbound.chase,
    routing.Reopen: inbound.reopen,
    routing.RecordSatisfaction: inbound.record_satisfaction,
    routing.OfficerReply: inbound.officer_reply,
    routing.Contribution: inbound.contribution,
    routing.CoordinatorNote: inbound.coordinator_note,
    routing.NoteAutoReply: inbound.note_auto_reply,
}


STEPS: Sequence[Step] = (
    store_raw,
    parse,
    skip_handled,
    classify,
    identify_sender,
    find_case,
    read_reply,
    route,
    apply,
)


def _destination(disposition: str) -> Destination:
    if disposition == Disposition.QUARANTINED:
        return Destination.QUARANTINE
    return Destination.PROCESSED


def _release_for_retry(session: Session, quarantine_id: int, dedupe_key: str) -> None:
    """A retried message replaces its quarantined record in the same transaction."""
    entry = session.get(QuarantineItem, quarantine_id)
    if entry is None:
        return
    old_message_id = entry.message_id
    entry.status = QuarantineStatus.RETRIED
    entry.resolved_at = utcnow()
    entry.message_id = None
    session.add(entry)
    session.flush()
    if old_message_id is not None:
        old = session.get(Message, old_message_id)
        if old is not None and old.dedupe_key == dedupe_key and old.case_id is None:
            session.delete(old)
            session.flush()


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """What the database already knows of a batch's messages, read with one query each.

    Per message these lookups cost more than the rest of the bookkeeping together.
    """

    dispositions: dict[str, str]  # dedupe key -> where a committed or quarantined copy went
    failing: frozenset[str]  # dedupe keys with a failure waiting to be retried
    senders: dict[str, Identity] = field(default_factory=dict)  # filled as the batch goes

    @classmethod
    def load(cls, session: Session, keys: Sequence[str]) -> BatchFacts:
        wanted = sorted(set(keys))
        dispositions: dict[str, str] = {}
        failing: set[str] = set()
        conn = session.connection()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for key in conn.execute(_WAITING_IN, {"keys": chunk}).scalars():
                dispositions[key] = Disposition.QUARANTINED
            for key, disposition in conn.execute(_DISPOSITIONS_IN, {"keys": chunk}):
                dispositions[key] = disposition
            failing.update(conn.execute(_FAILING_IN, {"keys": chunk}).scalars())
        return cls(dispositions, frozenset(failing))


_DISPOSITIONS_IN = select(Message.dedupe_key, Message.disposition).where(
    Message.dedupe_key.in_(bindparam("keys", expanding=True))  # type: ignore[union-attr]
)
_WAITING_IN = select(QuarantineItem.dedupe_key).where(
    QuarantineItem.dedupe_key.in_(bindparam("keys", expanding=True)),  # type: ignore[attr-defined]
    QuarantineItem.status == QuarantineStatus.WAITING,
)
_FAILING_IN = select(ProcessingFailure.dedupe_key).where(
    ProcessingFailure.dedupe_key.in_(bindparam("keys", expanding=True))  # type: ignore[attr-defined]
)


# --- the processor --------------------------------------------------------------------


class Processor:
    """Runs the steps for each message and turns any exception into a kept failure.

    A batch shares one database transaction: one commit serves the batch, and the caller
    moves the batch's mail only after `process_batch` returns (after that commit). A
    message's effect is all or nothing: the batch is first tried whole, and if any message
    raises it runs again with each message in its own savepoint.
    """

    def __init__(self, services: Services, steps: Sequence[Step] = STEPS) -> None:
        self.services = services
        self.steps = steps

    def process(
        self, raw: bytes, received_at: datetime | None = None, *, retry_of: int | None = None
    ) -> Outcome:
        return self.process_batch([(raw, received_at)], retry_of=retry_of)[0]

    def process_batch(
        self,
        items: Sequence[tuple[bytes, datetime | None]],
        *,
        retry_of: int | None = None,
        parsed: Sequence[ParsedEmail | None] | None = None,
    ) -> list[Outcome]:
        """Outcomes in the order of `items`; `parsed`, when given, was parsed ahead."""
        parsed_ahead = list(parsed) if parsed is not None else self.parse_ahead(items)
        keys = [p.dedupe_key for p in parsed_ahead if p is not None]
        if len(items) > 1 and len(set(keys)) == len(keys):  # a copy would fail its insert
            done = self._all_at_once(items, parsed_ahead, retry_of)
            if done is not None:
                for outcome in done:
                    self._log(outcome)
                return done
        outcomes: list[Outcome | None] = [None] * len(items)
        failures: list[tuple[int, Work, Exception]] = []
        with logs.held() as logged:  # what the steps log goes out once the batch commits
            try:
                with self._batch(parsed_ahead) as (session, facts):
                    for index, (raw, received_at) in enumerate(items):
                        work = _work(
                            raw, received_at, session, retry_of, parsed_ahead[index], facts
                        )
                        try:
                            with logs.held() as its_own:
                                with session.begin_nested():
                                    outcomes[index] = self._run(work)
                                    flush_later(session)  # its rows stand or fall with it
                                its_own.release()
                        except IntegrityError as exc:
                            discard_later(session)
                            queue.forget_flags(session)  # a flag it read may be rolled back
                            # Another daemon committed the same message first: one effect.
                            handled = _handled(session, work.dedupe_key)
                            if handled is None:
                                failures.append((index, work, exc))
                            outcomes[index] = handled
                        except Exception as exc:  # noqa: BLE001 - untrusted input never stops us
                            discard_later(session)
                            queue.forget_flags(session)
                            failures.append((index, work, exc))
            except Exception as exc:  # noqa: BLE001 - e.g. the database went away mid-batch
                error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                log.error(
                    "batch not committed; its mail stays in the inbox", extra={"error": error}
                )
                return [Failed(error, 0) for _ in items]
            logged.release()
        for index, work, exc in failures:
            outcomes[index] = self._failed(work, exc)
        for outcome in outcomes:
            assert outcome is not None
            self._log(outcome)
        return outcomes  # type: ignore[return-value]

    def _all_at_once(
        self,
        items: Sequence[tuple[bytes, datetime | None]],
        parsed: Sequence[ParsedEmail | None],
        retry_of: int | None,
    ) -> list[Outcome] | None:
        """The batch in one transaction without a savepoint per message, or None.

        A savepoint and its release cost ~7% of storing an email (bench/), and nearly every
        batch goes through without an error. If any message raises, the whole attempt is
        rolled back (its blobs' temporary files go with it) and the caller processes the
        batch again, each message in its own savepoint, where a failure stays its own.
        """
        with logs.held() as logged:  # dropped with the attempt if it rolls back
            try:
                with self._batch(parsed) as (session, facts):
                    outcomes = []
                    for (raw, received_at), ahead in zip(items, parsed, strict=True):
                        work = _work(raw, received_at, session, retry_of, ahead, facts)
                        outcomes.append(self._run(work))
            except Exception as exc:  # noqa: BLE001 - the careful path below decides
                error = type(exc).__name__
            else:
                logged.release()
                return outcomes
        log.debug("batch goes message by message", extra={"error": error})
        return None

    @contextmanager
    def _batch(self, parsed: Sequence[ParsedEmail | None]) -> Iterator[tuple[Session, BatchFacts]]:
        """The batch's one transaction: its blobs synced to disk before the commit, its
        events and outbox rows inserted together, what the database knows of it read once."""
        with (
            transaction(self.services.engine) as session,
            self.services.blobs.batch(),
            rows_later(session),
        ):
            yield session, BatchFacts.load(session, [p.dedupe_key for p in parsed if p is not None])

    def parse_ahead(
        self, items: Sequence[tuple[bytes, datetime | None]]
    ) -> list[ParsedEmail | None]:
        """Parse the batch before its transaction; None where parsing raised (the parse step
        then raises again inside the pipeline, where the failure is recorded)."""
        limit = self.services.config.storage.max_filename_length
        return [parse_or_none(raw, limit) for raw, _ in items]

    def _run(self, work: Work) -> Outcome:
        for step in self.steps:
            outcome = step(work, self.services)
            if outcome is not None:
                return outcome
        raise RuntimeError("the processing steps ended without an outcome")

    def _log(self, outcome: Outcome) -> None:
        if isinstance(outcome, CaseOpened):
            log.info("message processed", extra={"case": outcome.reference, "outcome": "case"})
        elif isinstance(outcome, CaseUpdated):
            log.info(
                "message processed",
                extra={"case": outcome.reference, "outcome": outcome.action},
            )
        elif isinstance(outcome, Handled):
            log.info("message processed", extra={"outcome": outcome.action})
        elif isinstance(outcome, Quarantined):
            log.info(
                "message processed",
                extra={"outcome": "quarantined", "reason_code": outcome.code},
            )
        else:
            log.debug("message already handled", extra={"outcome": "duplicate"})

    def _failed(self, work: Work, exc: Exception) -> Outcome:
        key = work.dedupe_key
        trace = "".join(tb.format_exception(exc))
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        limit = self.services.config.cases.max_processing_attempts
        log.warning("message processing failed", extra={"error": error})
        log.debug("failure traceback\n%s", trace)
        try:
            with transaction(self.services.engine) as session:
                failure = session.get(ProcessingFailure, key)
                attempts = (failure.attempts if failure else 0) + 1
                raw_sha256 = work.raw_sha256 or hashlib.sha256(work.raw).hexdigest()
                if attempts < limit:
                    failure = failure or ProcessingFailure(dedupe_key=key, raw_sha256=raw_sha256)
                    failure.attempts = attempts
                    failure.last_error = error
                    failure.traceback = trace
                    failure.last_failed_at = utcnow()
                    session.add(failure)
                    return Failed(error, attempts)
                if failure is not None:
                    session.expunge(failure)  # quarantine() deletes its row
                p = work.parsed
                entry = records.quarantine(
                    session,
                    item=None,
                    dedupe_key=key,
                    raw_sha256=raw_sha256,
                    code="processing_failed",
                    reason=f"processing failed {attempts} times; last error: {error}",
                    traceback=trace,
                    sender=(p.from_address or "") if p else "",
                    subject=p.subject if p else "",
                )
                return Quarantined(entry.id or 0, entry.reason_code, entry.reason)
        except Exception as record_exc:  # noqa: BLE001 - e.g. the database is down
            log.error("could not record a processing failure", extra={"error": str(record_exc)})
            return Failed(error, 0)


def _work(
    raw: bytes,
    received_at: datetime | None,
    session: Session,
    retry_of: int | None,
    parsed: ParsedEmail | None,
    facts: BatchFacts,
) -> Work:
    """One message of a batch, with its parse done ahead and the batch's facts."""
    work = Work(raw, received_at, session, retry_of=retry_of)
    work.parsed = parsed
    work.facts = facts if parsed is not None else None
    return work


def parse_or_none(raw: bytes, max_filename_length: int) -> ParsedEmail | None:
    try:
        return parse_raw(raw, max_filename_length)
    except Exception:  # noqa: BLE001 - recorded when the parse step runs again
        return None


def pending_failures(services: Services) -> int:
    """Failures still to retry: the mailbox must be scanned in full to find them again."""
    limit = services.config.cases.max_processing_attempts
    with Session(services.engine) as session:
        rows = session.exec(
            select(ProcessingFailure.dedupe_key).where(ProcessingFailure.attempts < limit)
        ).all()
    return len(rows)
