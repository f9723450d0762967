"""A dead sender's claims are taken over at once; a living one's are not (issue #15).

Each "other sender" is a real process forked for the test: it claims rows in its own name
under its own lock and then waits, or is killed with SIGKILL, as a courier is. Real
database (SQLite and PostgreSQL), real aiosmtpd, real locks (store/locks.py).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from mailbridge.delivery import outbox
from mailbridge.delivery.claims import ALIVE_SECONDS, Claimer, sender_name
from mailbridge.delivery.receipts import Receipts
from mailbridge.delivery.transports.base import SendResult
from mailbridge.delivery.transports.smtp import SmtpSender
from mailbridge.store.db import make_engine
from mailbridge.store.locks import holder_of
from mailbridge.store.models import utcnow
from tests.helpers.outbox import queue, received, rows, smtp
from tests.servers.smtp import SmtpServer

# A sender that deadlocks must fail its test, not hang the run.
pytestmark = pytest.mark.timeout(60)


def _sender(url: str, data_dir: Path, receipted: int, pipe: Connection) -> None:
    """Runs in a forked child: claim every due row in this process's name, note the first
    `receipted` as accepted in a receipts file of its own, report, then wait to be killed."""
    engine = make_engine(url)
    receipts = Receipts(data_dir / "receipts")
    claimer = Claimer(url, data_dir)
    ids = outbox.claim(
        engine, batch_size=100, lease_seconds=300, now=utcnow(), receipts=receipts, claimer=claimer
    )
    for row_id in ids[:receipted]:
        receipts.record(row_id, utcnow())
    pipe.send((claimer.name, ids))
    pipe.recv()  # never comes: the test kills us


class OtherSender:
    """Another sending process on the same database and data folder."""

    def __init__(self, engine: Engine, data_dir: Path, receipted: int = 0) -> None:
        self.url = engine.url.render_as_string(hide_password=False)
        self.data_dir = data_dir
        engine.dispose()  # no pooled connection crosses the fork
        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe()
        self._pipe = ours
        self.process = ctx.Process(target=_sender, args=(self.url, data_dir, receipted, theirs))
        self.process.start()
        assert ours.poll(30), "the other sender never claimed"
        self.name, self.claimed = ours.recv()

    def kill(self) -> None:
        """SIGKILL, then wait until its lock is gone (PostgreSQL ends the backend of a closed
        connection a moment after the kernel closes it): an event, not a duration."""
        self.process.kill()
        self.process.join(10)
        deadline = time.monotonic() + 10
        while holder_of(self.url, self.data_dir, self.name) is not None:
            assert time.monotonic() < deadline, f"{self.name} still holds its lock"
            time.sleep(0.02)


@pytest.fixture
def others() -> Iterator[list[OtherSender]]:
    started: list[OtherSender] = []
    yield started
    for other in started:
        if other.process.is_alive():
            other.process.kill()
            other.process.join(10)


class Clock:
    """The claimer's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claimer_of(engine: Engine, data_dir: Path, clock: Clock | None = None) -> Claimer:
    url = engine.url.render_as_string(hide_password=False)
    return Claimer(url, data_dir, "sender:test:1", clock=clock or Clock())


def test_rows_of_a_living_sender_wait_and_a_dead_ones_are_taken_at_once(
    engine: Engine,
    tmp_path: Path,
    smtp_server: SmtpServer,
    others: list[OtherSender],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mids = queue(engine, 3)
    other = OtherSender(engine, tmp_path / "data")
    others.append(other)
    assert len(other.claimed) == 3
    assert {r.claimed_by for r in rows(engine)} == {other.name}
    clock = Clock()
    ours = claimer_of(engine, tmp_path / "data", clock)

    report = outbox.deliver_due(engine, smtp(smtp_server), claimer=ours)
    assert report.claimed == 0, "its sender lives: the rows are its own to send"

    other.kill()
    report = outbox.deliver_due(engine, smtp(smtp_server), claimer=ours)
    assert report.claimed == 0, "seen alive a moment ago: not asked again so soon"
    clock.now += ALIVE_SECONDS
    caplog.set_level(logging.INFO, logger="mailbridge.delivery.claims")
    report = outbox.deliver_due(engine, smtp(smtp_server), claimer=ours)
    assert report.sent == 3, "well within the 300 s lease: taken over at once"
    assert received(smtp_server) == {mid: 1 for mid in mids}
    after = rows(engine)
    assert {r.status for r in after} == {"sent"}
    assert {r.attempts for r in after} == {1}, "the claim that died counts no attempt"
    assert {r.claimed_by for r in after} == {ours.name}
    [line] = [r for r in caplog.records if "took over" in r.getMessage()]
    assert line.getMessage() == "took over 3 emails claimed by a sender that died"
    assert line.dead_sender == other.name  # type: ignore[attr-defined]
    ours.release()


def test_what_a_dead_courier_noted_as_accepted_is_marked_sent_not_sent_again(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer, others: list[OtherSender]
) -> None:
    """The receipts in the folder are marked before the takeover, in one transaction: the
    two emails the server had accepted from the dead courier do not go a second time."""
    mids = queue(engine, 3)
    other = OtherSender(engine, tmp_path / "data", receipted=2)
    others.append(other)
    other.kill()
    ours = claimer_of(engine, tmp_path / "data")
    receipts = Receipts(tmp_path / "data" / "receipts")

    report = outbox.deliver_due(engine, smtp(smtp_server), receipts=receipts, claimer=ours)
    assert report.sent == 1
    assert received(smtp_server) == {mids[2]: 1}
    receipts.fold(engine)
    assert {r.status for r in rows(engine)} == {"sent"}
    receipts.close()
    ours.release()


def test_a_retry_waiting_is_not_taken_for_a_dead_senders_lease(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """A deferred row names no sender: the backoff stands even after its sender died."""
    queue(engine)
    first = claimer_of(engine, tmp_path / "data")
    smtp_server.fail_next(451, "try later")
    assert outbox.deliver_due(engine, smtp(smtp_server), claimer=first).retried == 1
    [row] = rows(engine)
    assert row.claimed_by is None
    first.release()  # as its death would

    second = Claimer(engine.url.render_as_string(hide_password=False), tmp_path / "data")
    assert outbox.deliver_due(engine, smtp(smtp_server), claimer=second).claimed == 0
    later = lambda: utcnow() + timedelta(minutes=5)  # noqa: E731 - past the 60 s backoff
    assert outbox.deliver_due(engine, smtp(smtp_server), claimer=second, now=later).sent == 1
    second.release()
    locks = tmp_path / "data" / "locks"  # SQLite's: a sender that let go leaves no file
    assert not locks.exists() or list(locks.iterdir()) == []


def test_a_senders_name_fits_the_column_and_keeps_its_pid() -> None:
    assert sender_name("relay-01:4242") == "sender:relay-01:4242"
    long = sender_name(f"{'h' * 100}.council.example.gov.uk:4194304")
    assert len(long) == 64 and long.endswith(":4194304") and long.startswith("sender:hhh")


def test_a_sender_that_lost_its_lock_stops_sending_and_hands_its_rows_back(
    pg_migrated_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """Its database session was cut (a failover, an idle killer): to the others it is dead
    and its rows theirs, so it sends none of the rest and they go back to the outbox."""
    engine = make_engine(pg_migrated_url)
    queue(engine, 5)
    ticks = itertools.count(step=10)  # every look at our own lock is a fresh one
    claimer = Claimer(pg_migrated_url, tmp_path, clock=lambda: float(next(ticks)))

    class CutAfterFirst(SmtpSender):
        def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult:
            result = super().send(raw, sender, recipients)
            with engine.connect() as conn:  # the lock's session ends, as in a failover
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'mailbridge %' "
                        "AND datname = current_database()"
                    )
                )
            return result

    cut = CutAfterFirst(smtp_server.host, smtp_server.port, security="plain", timeout=10)
    with cut:
        report = outbox.deliver_due(engine, cut, lease_seconds=300, claimer=claimer)
    assert report.sent == 1
    assert len(received(smtp_server)) == 1
    left = [r for r in rows(engine) if r.status == "pending"]
    assert len(left) == 4
    assert all(r.claimed_by is None and r.attempts == 0 for r in left)
    assert all(r.next_attempt_at <= utcnow() for r in left)  # due now, for whoever is alive
    engine.dispose()
