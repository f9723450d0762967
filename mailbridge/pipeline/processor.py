"""Runs the steps over a batch of emails in one transaction, and turns anything a step
raises into a kept failure instead of a stopped service (docs/architecture.md, invariants
1 and 5)."""

from __future__ import annotations

import hashlib
import logging
import traceback as tb
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from mailbridge import logs
from mailbridge.cases import floods
from mailbridge.delivery import queue
from mailbridge.errors import UserError
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.pipeline import quarantine
from mailbridge.pipeline.apply import apply
from mailbridge.pipeline.outcomes import (
    AlreadyHandled,
    CaseOpened,
    CaseUpdated,
    Failed,
    Outcome,
    committed,
)
from mailbridge.pipeline.parse import Limits, parse_or_none
from mailbridge.pipeline.steps import STEPS, Step, already_handled
from mailbridge.pipeline.work import BatchFacts, Work
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.store.db import discard_later, flush_later, rows_later, transaction
from mailbridge.store.models import ProcessingFailure, QuarantineItem

log = logging.getLogger(__name__)


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
        self,
        raw: bytes,
        received_at: datetime | None = None,
        *,
        retry_of: int | None = None,
        vouched: bool = False,
    ) -> Outcome:
        return self.process_batch([(raw, received_at)], retry_of=retry_of, vouched=vouched)[0]

    def process_batch(
        self,
        items: Sequence[tuple[bytes, datetime | None]],
        *,
        retry_of: int | None = None,
        parsed: Sequence[ParsedEmail | None] | None = None,
        vouched: bool = False,
        oversizes: Sequence[int | None] | None = None,
    ) -> list[Outcome]:
        """Outcomes in the order of `items`; `parsed`, when given, was parsed ahead.
        `vouched`: a coordinator accepted them as coming from their senders. `oversizes`:
        each message's whole size where the item holds only its header (it was larger than
        [mailbox] max_message_bytes), else None."""
        sizes = list(oversizes) if oversizes is not None else [None] * len(items)
        parsed_ahead = list(parsed) if parsed is not None else self.parse_ahead(items, sizes)
        keys = [p.dedupe_key for p in parsed_ahead if p is not None]
        if len(items) > 1 and len(set(keys)) == len(keys):  # a copy would fail its insert
            done = self._all_at_once(items, parsed_ahead, sizes, retry_of, vouched)
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
                        work.vouched = vouched
                        work.oversize = sizes[index]
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
                            handled = already_handled(session, work.dedupe_key)
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
        sizes: Sequence[int | None],
        retry_of: int | None,
        vouched: bool = False,
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
                    for (raw, received_at), ahead, size in zip(items, parsed, sizes, strict=True):
                        work = _work(raw, received_at, session, retry_of, ahead, facts)
                        work.vouched = vouched
                        work.oversize = size
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
        events and outbox rows inserted together, what the database knows of it read once.
        No blob removal runs until the commit (`keeping`, store/blobs.py)."""
        with (
            self.services.blobs.keeping(),
            transaction(self.services.engine) as session,
            self.services.blobs.batch(),
            rows_later(session),
        ):
            yield session, BatchFacts.load(session, [p for p in parsed if p is not None])

    def parse_ahead(
        self, items: Sequence[tuple[bytes, datetime | None]], sizes: Sequence[int | None]
    ) -> list[ParsedEmail | None]:
        """Parse the batch before its transaction; None where parsing raised (the parse step
        then raises again inside the pipeline, where the failure is recorded)."""
        limits = Limits.of(self.services.config)
        return [
            parse_or_none(raw, limits, size) for (raw, _), size in zip(items, sizes, strict=True)
        ]

    def _run(self, work: Work) -> Outcome:
        for step in self.steps:
            outcome = step(work, self.services)
            if outcome is not None:
                return outcome
        raise RuntimeError("the processing steps ended without an outcome")

    def _log(self, outcome: Outcome) -> None:
        if isinstance(outcome, AlreadyHandled):
            log.debug("message already handled", extra=committed(outcome))
        elif not isinstance(outcome, Failed):  # a failure was logged as it happened
            log.info("message processed", extra=committed(outcome))

    def _failed(self, work: Work, exc: Exception) -> Outcome:
        trace = "".join(tb.format_exception(exc))
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        log.warning("message processing failed", extra={"error": error})
        log.debug("failure traceback\n%s", trace)
        try:
            return quarantine.record_failure(
                self.services,
                dedupe_key=work.dedupe_key,
                raw_sha256=work.raw_sha256 or hashlib.sha256(work.raw).hexdigest(),
                parsed=work.parsed,
                error=error,
                trace=trace,
            )
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


def retry_quarantined(services: Services, item_id: int, *, actor: Actor) -> Outcome:
    """Run a quarantined message through the pipeline again (`mailbridge quarantine retry`),
    e.g. after its sender was added to the directory; who asked, and what came of it, in
    the audit."""
    raw, received_at = quarantine.waiting_copy(services, item_id)
    outcome = Processor(services).process(raw, received_at, retry_of=item_id)
    quarantine.record_retry(services, item_id, actor, outcome)
    return outcome


def accept_quarantined(
    services: Services, item_id: int, as_: str = "contribution", *, actor: str
) -> Outcome:
    """A coordinator's `mailbridge quarantine accept`, after checking who wrote it; the
    acceptance on the case names them (`actor`).

    A message held because its sender was not proven, or as a flood, runs through the
    pipeline again vouched for: as if the gateway had proven its From and under the limit,
    and nothing else is waived (it does what its sender's role allows). Any other message
    is attached to the case it points at as `as_` (quarantine.accept).
    """
    item = quarantine.get_item(services, item_id)
    if acceptance(item) != VOUCHED:
        return CaseUpdated(quarantine.accept(services, item_id, as_, actor=actor), as_)
    raw, received_at = quarantine.waiting_copy(services, item_id)

    def accepted(work: Work, services: Services) -> Outcome:
        """The last step of an accepted message: its effect, and the acceptance on its case."""
        outcome = apply(work, services)
        assert work.retry_of is not None
        if isinstance(outcome, CaseOpened | CaseUpdated):
            quarantine.mark_accepted(work.session, work.retry_of, outcome.reference, actor=actor)
        return outcome

    steps = [accepted if s is apply else s for s in STEPS]
    outcome = Processor(services, steps).process(raw, received_at, retry_of=item_id, vouched=True)
    if isinstance(outcome, Failed):
        raise UserError(f"quarantined message {item_id} could not be accepted: {outcome.error}")
    return outcome


# What a coordinator's word answers: who sent it, and whether one person may open so many.
VOUCHABLE = frozenset({"sender_unauthenticated", floods.FLOOD})
VOUCHED = "vouched"


def acceptance(item: QuarantineItem) -> str | None:
    """What accepting `item` does, for a door to offer it: VOUCHED (it runs again as if its
    sender were proven and under the limit), one of quarantine.ACCEPT_AS (it joins the case
    it points at), or None (nothing: it points at no case; retry it after adding its sender)."""
    if item.reason_code in VOUCHABLE:
        return VOUCHED
    return quarantine.ACCEPT_AS[0] if item.case_id is not None else None


def pending_failures(services: Services) -> int:
    """Failures still to retry: the mailbox must be scanned in full to find them again."""
    limit = services.config.cases.max_processing_attempts
    with Session(services.engine) as session:
        rows = session.exec(
            select(ProcessingFailure.dedupe_key).where(ProcessingFailure.attempts < limit)
        ).all()
    return len(rows)
