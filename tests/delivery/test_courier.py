"""The courier: delivery in its own forked process, on a real database and a real aiosmtpd.

The courier opens its own engine from `[database] url`, so the config always names the
database the test's engine uses. Stops are checked for liveness with generous bounds,
never for speed; the rate limiter and `deliver_due` are also driven directly.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import Engine, update
from sqlalchemy.engine import make_url

from mailbridge.config import Config
from mailbridge.delivery import outbox
from mailbridge.delivery.courier import IDLE_SECONDS, Courier
from mailbridge.delivery.transports.smtp import SmtpSender
from mailbridge.store.db import create_schema, make_engine, transaction
from mailbridge.store.models import OutboxMessage, utcnow
from tests.factories import make_config
from tests.helpers.outbox import queue, received, rows
from tests.servers.relay import Relay
from tests.servers.smtp import SmtpServer

# A courier that deadlocks must fail its test, not hang the run.
pytestmark = pytest.mark.timeout(90)


def ignored_signals(pid: int) -> set[signal.Signals]:
    """The signals a process ignores, as the kernel records them (SigIgn in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    [mask] = [
        int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigIgn:")
    ]
    return {s for s in signal.Signals if mask & (1 << (s.value - 1))}


def courier_config(tmp_path: Path, engine: Engine, server: SmtpServer, **smtp: object) -> Config:
    url = engine.url.render_as_string(hide_password=False)
    return make_config(
        tmp_path,
        url,
        smtp={"url": f"smtp://{server.host}:{server.port}", "timeout_seconds": 10, **smtp},
    )


def wait_for(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def started() -> Iterator[list[Courier]]:
    """Couriers a test started; any still running at the end are stopped."""
    couriers: list[Courier] = []
    yield couriers
    for courier in couriers:
        if courier.exitcode is None:
            courier.stop(timeout=10)


def start(couriers: list[Courier], config: Config, engine: Engine) -> Courier:
    engine.dispose()  # no pooled connection crosses the fork
    courier = Courier(config)
    couriers.append(courier)
    courier.start()
    return courier


# --- the courier process ----------------------------------------------------------------


def test_courier_delivers_what_was_queued_before_and_after_it_started(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer, started: list[Courier]
) -> None:
    before = queue(engine, 3)
    courier = start(started, courier_config(tmp_path, engine, smtp_server), engine)
    assert wait_for(lambda: len(smtp_server.messages) == 3)
    after = queue(engine, 2)
    courier.wake()
    assert wait_for(lambda: len(smtp_server.messages) == 5)  # while it runs, not on finish
    last = queue(engine, 1)  # committed before finish(): drained before it exits
    totals = courier.finish()

    assert courier.exitcode == 0
    assert (totals.sent, totals.retried, totals.failed) == (6, 0, 0)
    assert received(smtp_server) == Counter({mid: 1 for mid in before + after + last})
    assert [r.status for r in rows(engine)] == ["sent"] * 6
    assert all(r.attempts == 1 for r in rows(engine))


def test_the_courier_waits_out_a_database_outage(
    tmp_path: Path,
    pg_schema_url: str,
    smtp_server: SmtpServer,
    started: list[Courier],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A PostgreSQL restart must not end delivery: the courier says so, tries again 1, 2,
    4 … s apart, and sends what was queued once the database is back."""
    pg_url = pg_schema_url
    engine = make_engine(pg_url)
    ids = queue(engine, 2)
    relay = Relay(("127.0.0.1", make_url(pg_url).port or 5432))  # not started: "down"
    via_relay = make_url(pg_url).set(port=relay.port).render_as_string(hide_password=False)
    config = make_config(
        tmp_path, via_relay, smtp={"url": f"smtp://{smtp_server.host}:{smtp_server.port}"}
    )
    courier = start(started, config, engine)
    try:
        assert wait_for(lambda: "delivery paused; trying again" in capfd.readouterr().err)
        # Its next try fails too (a second pause, logged): it is still running, sent nothing.
        assert wait_for(lambda: "delivery paused; trying again" in capfd.readouterr().err)
        assert courier.exitcode is None and smtp_server.messages == []
        relay.start()  # the database is back
        assert wait_for(lambda: len(smtp_server.messages) == 2, 20)
        totals = courier.stop(timeout=10)
    finally:
        relay.stop()
        engine.dispose()
    assert courier.exitcode == 0
    assert totals.sent == 2
    assert received(smtp_server) == Counter({mid: 1 for mid in ids})


def test_finish_with_nothing_queued_returns_zero_totals(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer, started: list[Courier]
) -> None:
    courier = start(started, courier_config(tmp_path, engine, smtp_server), engine)
    totals = courier.finish()
    assert courier.exitcode == 0
    assert (totals.sent, totals.retried, totals.failed) == (0, 0, 0)
    assert smtp_server.messages == []


def test_stop_cuts_a_rate_limit_wait_short_and_hands_the_rest_back(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer, started: list[Courier]
) -> None:
    ids = queue(engine, 3)
    config = courier_config(tmp_path, engine, smtp_server, rate_limit_per_minute=1)
    courier = start(started, config, engine)
    assert wait_for(lambda: len(smtp_server.messages) == 1)
    # The first row is marked sent right after the server took it; then the courier waits
    # ~60 s for the next slot.
    assert wait_for(lambda: rows(engine)[0].status == "sent")
    # The limit is in force: without it the second email follows the first at once, before
    # the stop below; the totals and rows after the stop are the record that it never went.
    assert len(smtp_server.messages) == 1

    began = time.monotonic()
    totals = courier.stop(timeout=30)
    elapsed = time.monotonic() - began

    assert elapsed < 10, f"stop took {elapsed:.1f} s: the rate-limit wait was not cut short"
    assert courier.exitcode == 0  # it left by itself; it was not terminated
    assert (totals.sent, totals.retried, totals.failed) == (1, 0, 0)
    assert received(smtp_server) == Counter({ids[0]: 1})
    first, *rest = rows(engine)
    assert (first.status, first.attempts) == ("sent", 1)
    now = utcnow()
    for row in rest:
        assert row.status == "pending"
        assert row.attempts == 0  # the claim that was handed back is not an attempt
        assert row.next_attempt_at <= now  # due again now, not after the 300 s lease
        assert row.sent_at is None


def test_sigint_is_ignored_and_sigterm_stops_the_courier(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer, started: list[Courier]
) -> None:
    queue(engine, 2)
    config = courier_config(tmp_path, engine, smtp_server, rate_limit_per_minute=1)
    courier = start(started, config, engine)
    assert wait_for(lambda: rows(engine)[0].status == "sent")
    pid = courier._process.pid
    assert pid is not None
    # Ctrl-C reaches the process group; the parent decides: the courier ignores SIGINT (the
    # kernel discards it), so it is still there for the SIGTERM below, and leaves with 0
    # (a SIGINT acted on would end it with -2, or 1 from a KeyboardInterrupt).
    assert signal.SIGINT in ignored_signals(pid)
    os.kill(pid, signal.SIGINT)
    assert courier.exitcode is None
    began = time.monotonic()
    os.kill(pid, signal.SIGTERM)  # e.g. systemd stopping the whole service
    courier._process.join(10)
    elapsed = time.monotonic() - began
    stuck = courier.exitcode is None
    if stuck:  # a stuck courier holds the stop Event's lock: stop() would block on it
        os.kill(pid, signal.SIGKILL)
        courier._process.join(5)
    assert not stuck, "SIGTERM during a rate-limit wait did not stop the courier"
    assert courier.exitcode == 0
    # Not a speed check: a courier that only noticed after its idle pause took >= 5 s.
    assert elapsed < IDLE_SECONDS - 1, f"SIGTERM took {elapsed:.1f} s to stop the courier"
    assert courier.totals().sent == 1
    [_, second] = rows(engine)
    assert (second.status, second.attempts) == ("pending", 0)
    assert second.next_attempt_at <= utcnow()


# --- deliver_due and the rate limiter, driven directly ----------------------------------


def test_deliver_due_stopping_after_the_first_send_releases_the_rest(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = queue(engine, 4)
    with transaction(engine) as session:  # as if each had been tried twice before
        session.execute(update(OutboxMessage).values(attempts=2))
    with SmtpSender(smtp_server.host, smtp_server.port, security="plain", timeout=10) as sender:
        report = outbox.deliver_due(
            engine, sender, lease_seconds=300, stopping=lambda: len(smtp_server.messages) >= 1
        )
    assert (report.sent, report.retried, report.failed) == (1, 0, 0)
    assert received(smtp_server) == Counter({ids[0]: 1})
    first, *rest = rows(engine)
    assert (first.status, first.attempts) == ("sent", 3)
    now = utcnow()
    for row in rest:
        assert (row.status, row.attempts, row.sent_at) == ("pending", 2, None)
        assert row.next_attempt_at <= now

    # Released rows are due at once: the next sender takes them, each once.
    with SmtpSender(smtp_server.host, smtp_server.port, security="plain", timeout=10) as sender:
        assert outbox.deliver_due(engine, sender).sent == 3
    assert received(smtp_server) == Counter({mid: 1 for mid in ids})
    assert [r.attempts for r in rows(engine)] == [3, 3, 3, 3]


def test_deliver_due_already_stopping_sends_nothing_and_keeps_attempts(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    queue(engine, 2)
    with SmtpSender(smtp_server.host, smtp_server.port, security="plain", timeout=10) as sender:
        report = outbox.deliver_due(engine, sender, stopping=lambda: True)
    assert report.claimed == 0
    assert smtp_server.messages == []
    now = utcnow()
    for row in rows(engine):
        assert (row.status, row.attempts) == ("pending", 0)
        assert row.next_attempt_at <= now


class StuckClock:
    """Time that never moves: a limiter that ignored `stopping` would wait forever."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> float:
        return 1000.0

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if len(self.slept) > 3:
            raise AssertionError("acquire kept waiting although stopping() was true")


def test_rate_limiter_returns_at_once_when_already_stopping() -> None:
    clock = StuckClock()
    limiter = outbox.RateLimiter(1, clock=clock.now, sleep=clock.sleep)
    limiter.acquire(lambda: False)  # takes the only slot
    limiter.acquire(lambda: True)
    assert clock.slept == []
    assert len(limiter.sent) == 1  # returning for a stop takes no slot


def test_rate_limiter_stops_waiting_when_stopping_turns_true_during_a_wait() -> None:
    clock = StuckClock()
    stop = [False]

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        stop[0] = True  # e.g. SIGTERM arrived during the wait

    limiter = outbox.RateLimiter(1, clock=clock.now, sleep=sleep)
    limiter.acquire(lambda: stop[0])
    limiter.acquire(lambda: stop[0])
    assert clock.slept == [60.0]
    assert len(limiter.sent) == 1


def test_rate_limiter_wait_on_an_event_ends_when_the_event_is_set() -> None:
    stop = threading.Event()
    limiter = outbox.RateLimiter(1, sleep=stop.wait)  # as the courier builds it
    limiter.acquire(stop.is_set)
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    began = time.monotonic()
    try:
        limiter.acquire(stop.is_set)  # would wait ~60 s for the slot
    finally:
        timer.cancel()
    assert time.monotonic() - began < 10
    assert stop.is_set() and len(limiter.sent) == 1


# --- an orphaned courier ----------------------------------------------------------------


def _start_courier_and_vanish(config: Config, pid_out: object) -> None:
    """Runs in a child: start a courier, report its pid, then die without stopping it."""
    courier = Courier(config)
    courier.start()
    pid_out.send(courier._process.pid)  # type: ignore[attr-defined]
    time.sleep(0.5)  # let the courier settle into its idle wait
    os._exit(0)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_a_courier_whose_parent_died_exits_by_itself(tmp_path: Path) -> None:
    # One database is enough here: what is tested is the process, not the storage.
    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    config = make_config(tmp_path, url)

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    parent = ctx.Process(target=_start_courier_and_vanish, args=(config, send))
    parent.start()
    assert receive.poll(15), "the child did not report its courier"
    courier_pid = receive.recv()
    parent.join(15)
    assert parent.exitcode == 0
    try:
        assert psutil.pid_exists(courier_pid)
        # Orphaned: it notices at the latest when its idle wait ends.
        assert wait_for(lambda: gone(courier_pid), IDLE_SECONDS + 10), (
            "the orphaned courier kept running"
        )
    finally:
        if not gone(courier_pid):
            os.kill(courier_pid, signal.SIGKILL)
