"""The service loop: fetch, process, move after commit, deliver the outbox; stop cleanly.

Holds no business rule: decisions live in the pipeline (ingest.py), delivery in outbox.py.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from mailbridge import outbox
from mailbridge.ingest import (
    AlreadyHandled,
    CaseOpened,
    Failed,
    Outcome,
    Processor,
    Quarantined,
    pending_failures,
)
from mailbridge.mailbox.base import Destination, MailboxSource
from mailbridge.senders import Sender
from mailbridge.services import Services

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised out of a blocking wait when SIGTERM/SIGINT arrives."""


@dataclass
class PassReport:
    cases: int = 0
    quarantined: int = 0
    duplicates: int = 0
    failed: int = 0
    sent: int = 0
    retried: int = 0
    delivery_failed: int = 0
    references: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        if isinstance(outcome, CaseOpened):
            self.cases += 1
            self.references.append(outcome.reference)
        elif isinstance(outcome, Quarantined):
            self.quarantined += 1
        elif isinstance(outcome, AlreadyHandled):
            self.duplicates += 1
        elif isinstance(outcome, Failed):
            self.failed += 1

    @property
    def handled(self) -> int:
        return self.cases + self.quarantined + self.duplicates + self.failed


class Daemon:
    def __init__(
        self,
        services: Services,
        source: MailboxSource,
        sender_factory: Callable[[], Sender],
        *,
        deliver: bool = True,
    ) -> None:
        self.services = services
        self.source = source
        self.sender_factory = sender_factory
        self.deliver_enabled = deliver
        self.processor = Processor(services)
        self.stopping = False
        self._waiting = False
        self._last_full_scan = 0.0
        smtp = services.config.smtp
        self.rate_limit = outbox.RateLimiter(smtp.rate_limit_per_minute)

    # -- one pass ---------------------------------------------------------------------

    def run_pass(self, *, full_scan: bool = False) -> PassReport:
        """Process what waits in the mailbox, batch by batch, delivering after each batch."""
        report = PassReport()
        reconcile = self.services.config.mailbox.reconcile_seconds
        if time.monotonic() - self._last_full_scan > reconcile or pending_failures(self.services):
            full_scan = True
        if full_scan:
            self._last_full_scan = time.monotonic()
        for batch in self.source.fetch(full_scan=full_scan):
            moves: dict[Destination, list[str]] = {d: [] for d in Destination}
            outcomes = self.processor.process_batch([(m.raw, m.received_at) for m in batch])
            for mail, outcome in zip(batch, outcomes, strict=True):
                report.count(outcome)
                if outcome.destination is not None:
                    moves[outcome.destination].append(mail.key)
            # Only now, after each message's transaction committed, does mail leave the inbox.
            for destination, keys in moves.items():
                if keys:
                    self.source.move(keys, destination)
            self.deliver(report)
            if self.stopping:
                break
        self.deliver(report)
        if report.handled or report.sent:
            log.info(
                "pass done",
                extra={
                    "cases": report.cases,
                    "quarantined": report.quarantined,
                    "duplicates": report.duplicates,
                    "failed": report.failed,
                    "sent": report.sent,
                },
            )
        return report

    def deliver(self, report: PassReport) -> None:
        if not self.deliver_enabled or self.stopping:
            return
        smtp = self.services.config.smtp
        while True:
            with self.sender_factory() as sender:
                result = outbox.deliver_due(
                    self.services.engine,
                    sender,
                    batch_size=smtp.batch_size,
                    lease_seconds=smtp.lease_seconds,
                    retry_base_seconds=smtp.retry_base_seconds,
                    retry_max_seconds=smtp.retry_max_seconds,
                    give_up_after_hours=smtp.give_up_after_hours,
                    rate_limit=self.rate_limit,
                )
            report.sent += result.sent
            report.retried += result.retried
            report.delivery_failed += result.failed
            if result.sent + result.retried + result.failed < smtp.batch_size or self.stopping:
                return

    # -- forever ----------------------------------------------------------------------

    def run_forever(self) -> None:
        poll = self.services.config.mailbox.poll_seconds
        with self._signals():
            self.source.open()
            try:
                self.run_pass(full_scan=True)
                while not self.stopping:
                    try:
                        self._waiting = True
                        self.source.wait(poll)
                    except StopRequested:
                        break
                    finally:
                        self._waiting = False
                    if not self.stopping:
                        self.run_pass()
            finally:
                self.source.close()
        log.info("stopped")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        self.stopping = True
        if self._waiting:
            raise StopRequested

    @contextmanager
    def _signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def build(services: Services) -> Daemon:
    """Wire the configured mailbox and sender to the pipeline."""
    from mailbridge.mailbox.factory import open_source
    from mailbridge.mailbox.state import DbStateStore
    from mailbridge.senders import open_sender

    config = services.config
    source = open_source(config, DbStateStore(services.engine))
    return Daemon(services, source, lambda: open_sender(config))
