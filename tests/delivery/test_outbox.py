"""The transactional outbox on a real database and a real aiosmtpd: queue, claim, deliver.

Rows are queued with `outbox.enqueue` inside a transaction, as the case code does, and
delivered with `outbox.deliver_due`. The clock is moved with `now=`, never by sleeping.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbridge.delivery import outbox
from mailbridge.delivery.transports.smtp import SmtpSender
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.models import Case, Event, Message, utcnow
from tests.factories import add_person
from tests.helpers.outbox import FROM, MEMBER, queue, received, rows, smtp
from tests.servers.smtp import SmtpServer


def make_case(engine: Engine) -> int:
    member = add_person(engine, "member", "Cllr Jane Smith", MEMBER)
    with transaction(engine) as session:
        case = Case(
            reference="MQ-2026-00042", prefix="MQ", year=2026, seq=42, subject="Pothole",
            member_id=member, submitter_id=member, received_at=utcnow(),
            acknowledge_due=date(2026, 1, 2), response_due=date(2026, 1, 20),
        )  # fmt: skip
        session.add(case)
        session.flush()
        return case.id  # type: ignore[return-value]


def events(engine: Engine, kind: str) -> list[Event]:
    with Session(engine) as session:
        return list(session.exec(select(Event).where(Event.kind == kind)).all())


def clock(start: datetime) -> tuple[list[datetime], Callable[[], datetime]]:
    moment = [start]
    return moment, lambda: moment[0]


def test_rolled_back_transaction_queues_nothing(engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as session:
        outbox.enqueue(session, kind="acknowledgement", sender=FROM, recipients=[MEMBER],
                       subject="x", raw=b"x", message_id="m1@example.gov.uk")  # fmt: skip
        session.flush()  # the rows reached the database inside the transaction
        raise RuntimeError("the case change failed")
    assert rows(engine) == []
    with Session(engine) as session:
        assert session.exec(select(Message)).all() == []


def test_committed_enqueue_is_a_pending_row_and_an_outgoing_message(engine: Engine) -> None:
    [mid] = queue(engine, to=(MEMBER, "tom.baker@example.gov.uk"))
    [row] = rows(engine)
    assert (row.status, row.attempts, row.sent_at, row.message_id) == ("pending", 0, None, mid)
    assert row.recipients == f"{MEMBER}, tom.baker@example.gov.uk"
    with Session(engine) as session:
        [message] = session.exec(select(Message)).all()
    assert message.direction == "out" and message.message_id == mid


def test_a_batch_is_sent_over_one_connection_and_marked_sent(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = queue(engine, 5)
    before = utcnow()
    with smtp(smtp_server) as sender:
        report = outbox.deliver_due(engine, sender)
        assert sender.connections == 1
    assert (report.sent, report.retried, report.failed) == (5, 0, 0)
    assert smtp_server.handler.connections == 1
    assert received(smtp_server) == Counter({mid: 1 for mid in ids})
    assert [m.rcpt_tos for m in smtp_server.messages] == [[MEMBER]] * 5
    assert all(m.mail_from == FROM for m in smtp_server.messages)
    for row in rows(engine):
        assert row.status == "sent" and row.last_error is None
        assert row.sent_at is not None and row.sent_at >= before
    # The bytes on the wire are the bytes queued (SMTP ends DATA with a line break).
    assert {m.content.replace(b"\r\n", b"\n").rstrip() for m in smtp_server.messages} == {
        r.raw.replace(b"\r\n", b"\n").rstrip() for r in rows(engine)
    }
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender).claimed == 0  # nothing goes twice


def test_batch_size_limits_one_call(engine: Engine, smtp_server: SmtpServer) -> None:
    queue(engine, 5)
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender, batch_size=2).sent == 2
        assert outbox.deliver_due(engine, sender, batch_size=10).sent == 3
    assert len(smtp_server.messages) == 5


def test_rows_not_yet_due_wait(engine: Engine, smtp_server: SmtpServer) -> None:
    later = utcnow() + timedelta(minutes=5)
    queue(engine, now=later)
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender).claimed == 0
        assert outbox.deliver_due(engine, sender, now=lambda: later).sent == 1


def test_temporary_failure_backs_off_then_delivers_with_the_same_message_id(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    [mid] = queue(engine)
    smtp_server.fail_next(451, "4.3.0 Try again later", times=2)
    start = utcnow()
    moment, now = clock(start)
    options = {"retry_base_seconds": 60.0, "retry_max_seconds": 3600.0, "now": now}
    with smtp(smtp_server) as sender:
        first = outbox.deliver_due(engine, sender, **options)  # type: ignore[arg-type]
        [row] = rows(engine)
        assert (first.retried, row.status, row.attempts) == (1, "pending", 1)
        assert row.last_error == "451 4.3.0 Try again later"
        assert row.next_attempt_at - start == timedelta(seconds=60)

        moment[0] = start + timedelta(seconds=30)  # not yet due
        assert outbox.deliver_due(engine, sender, **options).claimed == 0  # type: ignore[arg-type]

        moment[0] = start + timedelta(seconds=60)
        second = outbox.deliver_due(engine, sender, **options)  # type: ignore[arg-type]
        [row] = rows(engine)
        assert (second.retried, row.attempts) == (1, 2)
        assert row.next_attempt_at - moment[0] == timedelta(seconds=120)  # doubled

        moment[0] += timedelta(seconds=120)
        last = outbox.deliver_due(engine, sender, **options)  # type: ignore[arg-type]
    [row] = rows(engine)
    assert last.sent == 1 and row.status == "sent" and row.attempts == 3
    assert row.last_error is None and row.sent_at == moment[0]
    assert received(smtp_server) == Counter({mid: 1})


def test_backoff_is_capped(engine: Engine, smtp_server: SmtpServer) -> None:
    queue(engine)
    start = utcnow()
    moment, now = clock(start)
    smtp_server.fail_next(451, "4.3.0 busy", times=6)
    with smtp(smtp_server) as sender:
        for _ in range(6):
            outbox.deliver_due(engine, sender, retry_base_seconds=60, retry_max_seconds=300,
                               now=now)  # fmt: skip
            [row] = rows(engine)
            assert row.next_attempt_at - moment[0] <= timedelta(seconds=300)
            moment[0] = row.next_attempt_at
    assert row.next_attempt_at - start == timedelta(seconds=60 + 120 + 240 + 300 + 300 + 300)


def test_permanent_failure_marks_the_row_failed_with_an_event_on_the_case(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    case_id = make_case(engine)
    queue(engine, case_id=case_id)
    smtp_server.fail_next(550, "5.7.1 Message rejected as spam")
    with smtp(smtp_server) as sender:
        report = outbox.deliver_due(engine, sender)
    assert (report.sent, report.retried, report.failed) == (0, 0, 1)
    [row] = rows(engine)
    assert row.status == "failed" and row.sent_at is None
    assert row.last_error == "550 5.7.1 Message rejected as spam"
    [event] = events(engine, "delivery_failed")
    assert event.case_id == case_id
    assert "550 5.7.1 Message rejected as spam" in event.detail and MEMBER in event.detail
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender).claimed == 0  # failed rows stay failed


def test_a_failure_does_not_stop_the_rest_of_the_batch(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = queue(engine, 3)
    smtp_server.fail_next(550, "5.7.1 rejected")  # only the first DATA
    with smtp(smtp_server) as sender:
        report = outbox.deliver_due(engine, sender)
        assert sender.connections == 1  # RSET, not a new connection
    assert (report.sent, report.failed) == (2, 1)
    assert set(received(smtp_server)) == set(ids[1:])
    assert [r.status for r in rows(engine)] == ["failed", "sent", "sent"]
    [event] = events(engine, "delivery_failed")
    assert event.case_id is None


def test_one_refused_recipient_of_two_is_sent_and_noted(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    case_id = make_case(engine)
    queue(engine, to=(MEMBER, "gone@example.org"), case_id=case_id)
    smtp_server.refuse_recipient("gone@example.org", 550, "5.1.1 No such user")
    moment, now = clock(utcnow())
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender, now=now).sent == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [[MEMBER]]
    [row] = rows(engine)
    assert row.status == "sent"
    [event] = events(engine, "delivery_partially_failed")
    assert event.case_id == case_id and event.at == moment[0]
    assert "gone@example.org" in event.detail and "550 5.1.1 No such user" in event.detail
    assert events(engine, "delivery_failed") == []


def test_every_recipient_refused_is_a_failure(engine: Engine, smtp_server: SmtpServer) -> None:
    queue(engine, to=("gone@example.org",))
    smtp_server.refuse_recipient("gone@example.org", 550, "5.1.1 No such user")
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender).failed == 1
    [row] = rows(engine)
    assert row.status == "failed" and "550 5.1.1 No such user" in (row.last_error or "")
    assert smtp_server.messages == []


def test_a_crashed_claim_is_resent_only_after_its_lease_with_the_same_message_id(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    [mid] = queue(engine)
    start = utcnow()
    assert outbox.claim(engine, batch_size=10, lease_seconds=300, now=start)  # then dies
    with smtp(smtp_server) as sender:
        during = start + timedelta(seconds=299)
        assert outbox.deliver_due(engine, sender, now=lambda: during).claimed == 0
        assert smtp_server.messages == []
        after = start + timedelta(seconds=300)
        assert outbox.deliver_due(engine, sender, now=lambda: after).sent == 1
    assert received(smtp_server) == Counter({mid: 1})
    [row] = rows(engine)
    assert row.status == "sent" and row.attempts == 2


def test_claim_takes_each_row_once(engine: Engine) -> None:
    queue(engine, 3)
    now = utcnow()
    first = outbox.claim(engine, batch_size=2, lease_seconds=60, now=now)
    second = outbox.claim(engine, batch_size=10, lease_seconds=60, now=now)
    assert len(first) == 2 and len(second) == 1 and not set(first) & set(second)
    assert outbox.claim(engine, batch_size=10, lease_seconds=60, now=now) == []


def test_two_senders_at_once_never_send_a_row_twice(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = queue(engine, 60)
    url = engine.url.render_as_string(hide_password=False)
    errors: list[BaseException] = []
    reports: list[outbox.DeliveryReport] = []
    start = threading.Barrier(2)

    def work() -> None:
        own = make_engine(url)  # its own pool, as a second process would have
        try:
            with smtp(smtp_server) as sender:
                start.wait()
                while (report := outbox.deliver_due(own, sender, batch_size=5)).claimed:
                    reports.append(report)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    got = received(smtp_server)
    assert set(got) == set(ids)
    assert [mid for mid, n in got.items() if n > 1] == []
    assert sum(r.sent for r in reports) == 60
    assert all(r.status == "sent" for r in rows(engine))


def test_mail_failing_for_longer_than_the_limit_is_given_up(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    start = utcnow()
    queue(engine, now=start)
    smtp_server.fail_next(421, "4.7.0 Too busy", times=2)
    with smtp(smtp_server) as sender:
        inside = start + timedelta(hours=71)
        early = outbox.deliver_due(engine, sender, give_up_after_hours=72, now=lambda: inside)
        assert early.retried == 1 and rows(engine)[0].status == "pending"
        later = start + timedelta(hours=73)
        report = outbox.deliver_due(engine, sender, give_up_after_hours=72, now=lambda: later)
    assert report.failed == 1
    [row] = rows(engine)
    assert row.status == "failed"
    assert "gave up after 72 hours" in (row.last_error or "") and "421" in (row.last_error or "")
    assert len(events(engine, "delivery_failed")) == 1


def test_unreachable_server_defers_everything_and_loses_nothing(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = queue(engine, 3)
    # A port nobody listens on: bind one, then close it.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    start = utcnow()
    with SmtpSender("127.0.0.1", closed_port, security="plain", timeout=2) as sender:
        report = outbox.deliver_due(engine, sender, retry_base_seconds=60, now=lambda: start)
    assert (report.sent, report.retried, report.failed) == (0, 3, 0)
    for row in rows(engine):
        assert row.status == "pending" and row.attempts == 1
        assert f"cannot reach SMTP server 127.0.0.1:{closed_port}" in (row.last_error or "")
        assert row.next_attempt_at == start + timedelta(seconds=60)
    # Once the server is back, every row goes, once.
    later = start + timedelta(seconds=60)
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender, now=lambda: later).sent == 3
    assert received(smtp_server) == Counter({mid: 1 for mid in ids})


class FakeClock:
    """A clock whose sleeps are recorded and advance time at once."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_limit_is_applied_per_message(engine: Engine, smtp_server: SmtpServer) -> None:
    queue(engine, 4)
    clock = FakeClock(0.0)
    limiter = outbox.RateLimiter(3, clock=clock, sleep=clock.sleep)
    with smtp(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender, rate_limit=limiter).sent == 4
    assert clock.slept == [60.0]


def test_rate_limiter_waits_when_more_than_n_in_a_minute() -> None:
    clock = FakeClock(1000.0)
    slept = clock.slept
    limiter = outbox.RateLimiter(3, clock=clock, sleep=clock.sleep)
    for step in (0.0, 10.0, 10.0):  # three sends at t = 0, 10, 20
        clock.now += step
        limiter.acquire()
    assert slept == []
    limiter.acquire()  # a fourth at t = 20 waits until the first is 60 s old
    assert slept == [40.0] and clock.now == 1060.0
    clock.now += 30.0  # t = 90: the sends at 10 and 20 have aged out
    limiter.acquire()
    limiter.acquire()
    assert slept == [40.0]
    limiter.acquire()  # now four in the window (60, 90, 90 and this): wait
    assert len(slept) == 2


def test_rate_limit_zero_never_waits() -> None:
    def sleep(seconds: float) -> None:
        raise AssertionError("must not sleep")

    limiter = outbox.RateLimiter(0, clock=lambda: 0.0, sleep=sleep)
    for _ in range(1000):
        limiter.acquire()


def test_an_unsendable_address_fails_its_row_and_not_the_batch(
    engine: Engine, smtp_ascii_server: SmtpServer
) -> None:
    queue(engine, to=("jöhn@example.org",))  # this server has no SMTPUTF8
    [ok] = queue(engine)
    with smtp(smtp_ascii_server) as sender:
        report = outbox.deliver_due(engine, sender)
    assert (report.sent, report.failed) == (1, 1)
    assert received(smtp_ascii_server) == Counter({ok: 1})
    bad = rows(engine)[0]
    assert bad.status == "failed" and "SMTPUTF8" in (bad.last_error or "")
