"""Delivery beside ingest: the outbox is sent by its own process.

A slow or rate-limited SMTP server (Exchange Online takes 30 messages a minute) must never
hold up turning mail into cases, and the two kinds of work then use two CPU cores. The
courier and the ingest loop share the outbox table and a little shared memory: ingest
commits rows and wakes the courier; the courier claims rows under a lease and in its own
name, as any number of senders may (claims.py), and tells the daemon how SMTP is faring
(`SmtpHealth`), for the alerts and the health file. After each round of mail it sends a
bounded round of webhooks (webhooks.py), waking every IDLE_SECONDS for retries falling due.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from mailbridge import logs
from mailbridge.config import Config
from mailbridge.delivery import outbox, wake, webhooks
from mailbridge.delivery.claims import Claimer
from mailbridge.delivery.receipts import FOLD_SECONDS, Receipts
from mailbridge.delivery.transports.base import (
    PermanentDeliveryError,
    Sender,
    SmtpLoginRefused,
)
from mailbridge.delivery.transports.factory import open_sender
from mailbridge.errors import one_line
from mailbridge.store.db import make_engine

log = logging.getLogger(__name__)

# How long the courier sleeps with nothing to do before it looks for retries that fell due.
IDLE_SECONDS = 5.0
# After a failed round (the database restarting, say): wait this long, doubling to the most.
PAUSE_FIRST_SECONDS = 1.0
PAUSE_MAX_SECONDS = 60.0


@dataclass
class CourierTotals:
    sent: int = 0
    retried: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class SmtpHealth:
    """How delivery is faring, for alerts and the health file; never anything from a mail.

    `failing` is None while SMTP works, else what failed when the connection was opened:
    "login_refused", which needs a person (the server refused our login, and `detail` holds
    its words alone; or it lacks what the login settings ask for, STARTTLS or AUTH, and
    `detail` says which), or "unreachable" (no connection, a 4xx greeting, no OAuth token;
    `detail` says which). The next email the server accepts clears it.
    """

    last_send: datetime | None  # when the server last accepted an email
    failing: str | None
    failing_since: datetime | None
    detail: str


FAILURES = (None, "login_refused", "unreachable")
DETAIL_BYTES = 300


def failure_of(error: Exception) -> tuple[str, str]:
    """What kind of failure opening the transport is, and the words to keep for it."""
    if isinstance(error, SmtpLoginRefused):
        return "login_refused", error.words
    if isinstance(error, PermanentDeliveryError):
        return "login_refused", str(error)
    return "unreachable", str(error)


class HealthBoard:
    """SmtpHealth in shared memory, written by whoever delivers (the courier process, or
    the daemon itself) and read by the daemon.

    No lock a dying courier could keep: a sequence number, odd while a write is under way,
    tells the reader to read again; a writer killed mid-write leaves it odd, and the reader
    then takes what it finds after a few tries, until the next write puts it right.
    """

    def __init__(self, ctx: Any = multiprocessing) -> None:
        self._numbers = ctx.RawArray("d", 5)  # sequence, last send, failure, since, length
        self._detail = ctx.RawArray("c", DETAIL_BYTES)

    def sent(self, at: datetime) -> None:
        self._write(last_send=at.timestamp(), failure=0, since=0.0, detail=b"")

    def failed(self, error: Exception, at: datetime) -> None:
        kind, words = failure_of(error)
        code = FAILURES.index(kind)
        since = self._numbers[3] if self._numbers[2] == code else at.timestamp()
        detail = words.encode("utf-8", "replace")[:DETAIL_BYTES]
        self._write(last_send=self._numbers[1], failure=code, since=since, detail=detail)

    def record(self, report: outbox.DeliveryReport) -> None:
        """What one batch learned: an open that failed, or mail accepted."""
        if report.open_error is not None:
            self.failed(report.open_error, datetime.now(UTC))
        elif report.last_sent_at is not None:
            self.sent(report.last_sent_at)

    def read(self) -> SmtpHealth:
        for _ in range(100):
            sequence = self._numbers[0]
            numbers, detail = self._numbers[:], self._detail.raw
            if sequence % 2 == 0 and self._numbers[0] == sequence:
                break
            time.sleep(0.001)
        _, last_send, code, since, length = numbers
        return SmtpHealth(
            last_send=_moment(last_send),
            failing=FAILURES[int(code)] if 0 <= code < len(FAILURES) else None,
            failing_since=_moment(since),
            detail=detail[: int(length)].decode("utf-8", "replace"),
        )

    def _write(self, *, last_send: float, failure: int, since: float, detail: bytes) -> None:
        sequence = int(self._numbers[0])
        begun = sequence + 1 if sequence % 2 == 0 else sequence  # odd: a write under way
        self._numbers[0] = begun
        self._detail[: len(detail)] = detail
        self._numbers[1:] = [last_send, failure, since, len(detail)]
        self._numbers[0] = begun + 1


def _moment(stamp: float) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp else None


def deliver_until_idle(
    engine: Any,
    config: Config,
    sender_factory: Callable[[], Sender],
    rate_limit: outbox.RateLimiter,
    totals: CourierTotals,
    stopping: Callable[[], bool],
    receipts: Receipts | None = None,
    *,
    claimer: Claimer | None = None,
    health: HealthBoard | None = None,
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
                claimer=claimer,
            )
        if health is not None:
            health.record(result)
        totals.sent += result.sent
        totals.retried += result.retried
        totals.failed += result.failed
        if result.claimed < size:
            return


def claimer_for(config: Config) -> Claimer:
    """This process's name on the rows it claims (delivery/claims.py)."""
    return Claimer(config.database.url, config.storage.data_dir)


class Doorbell:
    """How the daemon wakes the courier and tells it to drain or stop: a byte on a pipe and
    two flags in shared memory, safe whichever side dies.

    multiprocessing's Event is not: a process killed while it waits on one leaves the
    Event's condition expecting it to wake, and the next `set()` blocks for ever, which hung
    the daemon after its courier was killed. Here ringing never blocks (a full pipe already
    holds a ring), nothing is locked, and a stop can be rung from a signal handler.
    """

    def __init__(self, ctx: Any) -> None:
        self._read, self._write = ctx.Pipe(duplex=False)
        os.set_blocking(self._write.fileno(), False)
        self._flags = ctx.RawArray("b", 2)  # drain, stop
        self._rung = False  # the courier's side: a ring read while it paused
        self._door: socket.socket | None = None  # rings from other processes (delivery/wake.py)

    # -- the daemon's side --------------------------------------------------------------

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._write.fileno(), b"\0")

    def drain(self) -> None:
        self._flags[0] = 1
        self.ring()

    def stop(self) -> None:
        self._flags[1] = 1
        self.ring()

    # -- the courier's side ----------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return bool(self._flags[0])

    @property
    def stopped(self) -> bool:
        return bool(self._flags[1])

    def clear(self) -> None:
        """Rings until now are answered by the round about to start."""
        self._rung = False
        while self._take(0):
            pass

    def wait(self, timeout: float) -> bool:
        """Until rung (True) or `timeout` seconds (False)."""
        if self._rung:
            self._rung = False
            return True
        return self._take(timeout)

    def pause(self, seconds: float) -> None:
        """Sleep, cut short only by a stop; a ring meanwhile is kept for the next `wait`."""
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            if self._take(left):
                self._rung = True

    def open_door(self, door: socket.socket | None) -> None:
        """The courier's side: also wake on a ring at this socket."""
        self._door = door

    def _take(self, timeout: float) -> bool:
        fd = self._read.fileno()
        watched = [fd] if self._door is None else [fd, self._door.fileno()]
        ready, _, _ = select.select(watched, [], [], max(0.0, timeout))
        if not ready:
            return False
        if fd in ready:
            os.read(fd, 4096)
        if self._door is not None and self._door.fileno() in ready:
            with contextlib.suppress(BlockingIOError):
                while self._door.recv(64):
                    pass
        return True


class Courier:
    """Starts, wakes and stops the delivery process; collects what it sent."""

    def __init__(self, config: Config, health: HealthBoard | None = None) -> None:
        """`health`: a board to write on, shared with an earlier courier this one replaces
        (the last send it saw stays known)."""
        # fork: the child shares the loaded modules and config, and starts in milliseconds.
        # It is started before any connection is open, and opens its own.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        self.config = config
        self.health = health or HealthBoard(ctx)
        self._bell = Doorbell(ctx)
        self._counts = ctx.RawArray("q", 3)  # no lock a dying courier could keep
        self._process = ctx.Process(
            target=_courier_main,
            args=(config, self._bell, self._counts, os.getpid(), self.health),
            name="mailbridge-courier",
        )

    def start(self) -> None:
        self._process.start()
        log.debug("courier started", extra={"pid": self._process.pid})

    def wake(self) -> None:
        """New mail was committed to the outbox."""
        self._bell.ring()

    def finish(self) -> CourierTotals:
        """Ingest is done: deliver everything due now, then stop (run --once)."""
        self._bell.drain()
        self._process.join()
        return self.totals()

    def stop(self, timeout: float = 60.0) -> CourierTotals:
        """Stop after the message in flight; a courier that hangs is ended after `timeout`."""
        self._bell.stop()
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


def _courier_main(
    config: Config, bell: Doorbell, counts: Any, parent_pid: int, health: HealthBoard
) -> None:
    """The delivery process: deliver, sleep until woken, repeat; leave when told or orphaned."""
    # Ctrl-C reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: bell.stop())  # as stop() does
    logs.setup(config.logging.level, config.logging.format)
    # Its commits only mark mail sent: no sync to disk per email (see db.py).
    engine = make_engine(config.database.url, durable=False)
    receipts = receipts_for(config)
    claimer = claimer_for(config)
    # A stop request cuts a rate-limit pause short.
    rate_limit = outbox.RateLimiter(config.smtp.rate_limit_per_minute, sleep=bell.pause)
    totals = CourierTotals()
    door = wake.listen(config)
    bell.open_door(door)

    def stopping() -> bool:
        return bell.stopped or os.getppid() != parent_pid

    pause = PAUSE_FIRST_SECONDS
    try:
        while not stopping():
            draining = bell.draining  # read first: rows committed before it are visible now
            bell.clear()
            try:
                send = partial(open_sender, config)
                deliver_until_idle(
                    engine, config, send, rate_limit, totals, stopping, receipts,
                    claimer=claimer, health=health,
                )  # fmt: skip
                # Then a bounded round of webhooks: they never hold up mail for long.
                webhooks.deliver_due(engine, config, stopping=stopping)
            except Exception as exc:
                if draining:  # run --once: say so and end, the rows stay queued
                    raise
                # The service goes on: queued mail waits, it is not lost, and a courier that
                # ended here would leave every later email undelivered until a restart.
                log.error(
                    "delivery paused; trying again",
                    extra={"error": one_line(exc), "retry_in_seconds": pause},
                )
                bell.pause(pause)
                pause = min(pause * 2, PAUSE_MAX_SECONDS)
                continue
            pause = PAUSE_FIRST_SECONDS
            counts[:] = [totals.sent, totals.retried, totals.failed]
            if draining:
                break
            # With receipts waiting, wake in time to mark them: the next round's claim does.
            bell.wait(receipts.wait_seconds(IDLE_SECONDS) if receipts else IDLE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - one line for a person; the rows stay queued
        log.error("delivery stopped", extra={"error": one_line(exc)})
        raise SystemExit(1) from None
    finally:
        counts[:] = [totals.sent, totals.retried, totals.failed]
        if receipts is not None:
            _leave(receipts, engine)
        claimer.release()
        wake.stop_listening(config, door)
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
