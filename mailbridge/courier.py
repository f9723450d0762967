"""Delivery beside ingest: the outbox is sent by its own process.

A slow or rate-limited SMTP server (Exchange Online takes 30 messages a minute) must never
hold up turning mail into cases, and the two kinds of work then use two CPU cores. The
courier and the ingest loop share nothing but the outbox table: ingest commits rows and
wakes the courier; the courier claims rows under a lease, as any number of senders may.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from typing import Any

from mailbridge import logs, outbox
from mailbridge.config import Config
from mailbridge.db import make_engine
from mailbridge.receipts import FOLD_SECONDS, Receipts
from mailbridge.senders import Sender, open_sender

log = logging.getLogger(__name__)

# How long the courier sleeps with nothing to do before it looks for retries that fell due.
IDLE_SECONDS = 5.0


@dataclass
class CourierTotals:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def deliver_until_idle(
    engine: Any,
    config: Config,
    sender_factory: Callable[[], Sender],
    rate_limit: outbox.RateLimiter,
    totals: CourierTotals,
    stopping: Callable[[], bool],
    receipts: Receipts | None = None,
) -> None:
    """Deliver batch after batch until a batch comes back short (nothing more is due)."""
    smtp = config.smtp
    size = outbox.claim_size(smtp.batch_size, smtp.rate_limit_per_minute, smtp.lease_seconds)
    while not stopping():
        with sender_factory() as sender:
            result = outbox.deliver_due(
                engine,
                sender,
                batch_size=size,
                lease_seconds=smtp.lease_seconds,
                retry_base_seconds=smtp.retry_base_seconds,
                retry_max_seconds=smtp.retry_max_seconds,
                give_up_after_hours=smtp.give_up_after_hours,
                rate_limit=rate_limit,
                stopping=stopping,
                receipts=receipts,
            )
        totals.sent += result.sent
        totals.retried += result.retried
        totals.failed += result.failed
        if result.claimed < size:
            return


class Courier:
    """Starts, wakes and stops the delivery process; collects what it sent."""

    def __init__(self, config: Config) -> None:
        # fork: the child shares the loaded modules and config, and starts in milliseconds.
        # It is started before any connection is open, and opens its own.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        self.config = config
        self._wake = ctx.Event()
        self._drain = ctx.Event()
        self._stop = ctx.Event()
        self._counts = ctx.Array("q", 3)
        self._process = ctx.Process(
            target=_courier_main,
            args=(config, self._wake, self._drain, self._stop, self._counts, os.getpid()),
            name="mailbridge-courier",
        )

    def start(self) -> None:
        self._process.start()
        log.debug("courier started", extra={"pid": self._process.pid})

    def wake(self) -> None:
        """New mail was committed to the outbox."""
        self._wake.set()

    def finish(self) -> CourierTotals:
        """Ingest is done: deliver everything due now, then stop (run --once)."""
        self._drain.set()
        self._wake.set()
        self._process.join()
        return self.totals()

    def stop(self, timeout: float = 60.0) -> CourierTotals:
        """Stop after the message in flight; a courier that hangs is ended after `timeout`."""
        self._stop.set()
        self._wake.set()
        self._process.join(timeout)
        if self._process.is_alive():
            log.warning("courier did not stop in time; ending it", extra={"timeout": timeout})
            self._process.terminate()
            self._process.join(5)
        return self.totals()

    def totals(self) -> CourierTotals:
        sent, retried, failed = self._counts[:]
        return CourierTotals(sent, retried, failed)

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode


def _set_from_signal_handler(*events: EventType) -> None:
    """Set `events` from another thread: never inside the signal handler itself.

    The handler runs in the main thread, which may be waiting in `stop.wait()` (a
    rate-limit pause). A multiprocessing Event's `set()` waits for its sleepers to wake,
    so setting it from that same thread deadlocks the courier, and the parent's `stop()`
    then blocks on the Event's lock for ever.
    """

    def set_all() -> None:
        for event in events:
            event.set()

    threading.Thread(target=set_all, name="courier-sigterm", daemon=True).start()


def _courier_main(
    config: Config,
    wake: EventType,
    drain: EventType,
    stop: EventType,
    counts: Any,
    parent_pid: int,
) -> None:
    """The delivery process: deliver, sleep until woken, repeat; leave when told or orphaned."""
    # Ctrl-C reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # As stop() does, wake too: the request must not wait out an idle pause.
    signal.signal(signal.SIGTERM, lambda *_: _set_from_signal_handler(stop, wake))
    logs.setup(config.logging.level, config.logging.format)
    # Its commits only mark mail sent: no sync to disk per email (see db.py).
    engine = make_engine(config.database.url, durable=False)
    receipts = receipts_for(config)
    # A stop request cuts a rate-limit pause short.
    rate_limit = outbox.RateLimiter(config.smtp.rate_limit_per_minute, sleep=stop.wait)
    totals = CourierTotals()

    def stopping() -> bool:
        return stop.is_set() or os.getppid() != parent_pid

    try:
        while not stopping():
            draining = drain.is_set()  # read first: rows committed before it are visible now
            wake.clear()
            deliver_until_idle(
                engine, config, lambda: open_sender(config), rate_limit, totals, stopping, receipts
            )
            counts[:] = [totals.sent, totals.retried, totals.failed]
            if draining:
                break
            # With receipts waiting, wake in time to mark them: the next round's claim does.
            wake.wait(receipts.wait_seconds(IDLE_SECONDS) if receipts else IDLE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - one line for a person; the rows stay queued
        log.error("delivery stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        raise SystemExit(1) from None
    finally:
        counts[:] = [totals.sent, totals.retried, totals.failed]
        if receipts is not None:
            _leave(receipts, engine)
        engine.dispose()


def _leave(receipts: Receipts, engine: Any) -> None:
    """Mark what was sent before leaving; if the database is away, the file stays behind
    for the next courier, which marks it before it claims anything."""
    try:
        receipts.fold(engine)
    except Exception as exc:  # noqa: BLE001
        log.warning("receipts left for the next courier", extra={"error": str(exc)})
    receipts.close()


def receipts_for(config: Config) -> Receipts | None:
    """SQLite has a single writer, which ingest holds for a batch at a time: there the
    courier keeps receipts and marks mail sent in bulk. PostgreSQL marks each at once.

    A receipt is marked well within the lease of its row (a quarter of it at most): once
    the lease ends, another sender may take the row for abandoned and send it again.
    """
    if not config.database.url.startswith("sqlite"):
        return None
    fold = min(FOLD_SECONDS, config.smtp.lease_seconds / 4)
    return Receipts(config.storage.data_dir / "receipts", fold_seconds=fold)
