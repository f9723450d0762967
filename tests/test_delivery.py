"""Outgoing mail against a real aiosmtpd: queue in the transaction, deliver, retry, give up.

Every test queues rows with `outbox.enqueue` in a transaction, as the case code does,
and delivers with `outbox.deliver_due` over a real SMTP connection.
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbridge import compose, outbox
from mailbridge.db import transaction
from mailbridge.errors import ConfigError
from mailbridge.models import Event, OutboxMessage, utcnow
from mailbridge.senders import (
    MaildirSender,
    PermanentDeliveryError,
    SmtpSender,
    open_sender,
)
from tests.factories import make_config
from tests.servers.smtp import SmtpServer

pytestmark = pytest.mark.smtp

FROM = "enquiries@example.gov.uk"


def queue(engine: Engine, n: int = 1, to: tuple[str, ...] = ("member@example.org",)) -> list[str]:
    ids = []
    with transaction(engine) as session:
        for i in range(n):
            mid = compose.new_message_id("example.gov.uk")
            raw = compose.compose(
                sender=FROM, sender_name="Member Enquiries", to=list(to),
                subject=f"Test {i}", text=f"Body {i}", html=None, message_id=mid,
            )  # fmt: skip
            outbox.enqueue(session, kind="test", sender=FROM, recipients=list(to),
                           subject=f"Test {i}", raw=raw, message_id=mid)  # fmt: skip
            ids.append(mid)
    return ids


def sender_for(server: SmtpServer) -> SmtpSender:
    return SmtpSender(server.host, server.port, security="plain", timeout=10)


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


def received_ids(server: SmtpServer) -> Counter[str]:
    return Counter(
        message_from_bytes(m.content, policy=policy.default)["Message-ID"].strip("<>")
        for m in server.messages
    )


def test_rolled_back_transaction_queues_nothing(engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as session:
        outbox.enqueue(session, kind="test", sender=FROM, recipients=["a@example.org"],
                       subject="x", raw=b"x", message_id="m1@example.gov.uk")  # fmt: skip
        raise RuntimeError("the case change failed")
    assert rows(engine) == []


def test_batch_is_delivered_over_one_connection(engine: Engine, smtp_server: SmtpServer) -> None:
    ids = queue(engine, 5)
    with sender_for(smtp_server) as sender:
        report = outbox.deliver_due(engine, sender)
        assert sender.connections == 1
    assert (report.sent, report.retried, report.failed) == (5, 0, 0)
    assert smtp_server.handler.connections == 1
    assert set(received_ids(smtp_server)) == set(ids)
    assert all(r.status == "sent" and r.sent_at is not None for r in rows(engine))
    with sender_for(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender).claimed == 0  # nothing sent twice


def test_temporary_failure_retries_with_backoff_then_delivers(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    [mid] = queue(engine)
    smtp_server.fail_next(451, "4.3.0 Try again later", times=2)
    start = utcnow()
    clock = [start]
    with sender_for(smtp_server) as sender:
        first = outbox.deliver_due(engine, sender, retry_base_seconds=60, now=lambda: clock[0])
    [row] = rows(engine)
    assert first.retried == 1 and row.status == "pending" and row.attempts == 1
    assert "451" in (row.last_error or "") and "Try again later" in (row.last_error or "")
    assert row.next_attempt_at - start == timedelta(seconds=60)

    clock[0] = start + timedelta(seconds=61)
    with sender_for(smtp_server) as sender:
        outbox.deliver_due(engine, sender, retry_base_seconds=60, now=lambda: clock[0])
    [row] = rows(engine)
    assert row.attempts == 2 and row.next_attempt_at - clock[0] == timedelta(seconds=120)

    clock[0] += timedelta(seconds=121)
    with sender_for(smtp_server) as sender:
        last = outbox.deliver_due(engine, sender, retry_base_seconds=60, now=lambda: clock[0])
    assert last.sent == 1
    assert received_ids(smtp_server) == Counter({mid: 1})


def test_permanent_failure_is_recorded_with_the_servers_words(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    queue(engine)
    smtp_server.fail_next(550, "5.7.1 Message rejected as spam")
    with sender_for(smtp_server) as sender:
        report = outbox.deliver_due(engine, sender)
    assert report.failed == 1
    [row] = rows(engine)
    assert row.status == "failed"
    assert row.last_error == "550 5.7.1 Message rejected as spam"
    with Session(engine) as session:
        event = session.exec(select(Event).where(Event.kind == "delivery_failed")).one()
    assert "550 5.7.1 Message rejected as spam" in event.detail


def test_one_refused_recipient_of_two_is_sent_and_noted(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    queue(engine, to=("member@example.org", "gone@example.org"))
    smtp_server.refuse_recipient("gone@example.org", 550, "5.1.1 No such user")
    with sender_for(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender).sent == 1
    assert smtp_server.messages[0].rcpt_tos == ["member@example.org"]
    with Session(engine) as session:
        event = session.exec(select(Event).where(Event.kind == "delivery_partially_failed")).one()
    assert "gone@example.org" in event.detail and "No such user" in event.detail


def test_claim_of_a_dead_sender_is_resent_after_its_lease_with_the_same_message_id(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    [mid] = queue(engine)
    now = utcnow()
    assert outbox.claim(engine, batch_size=10, lease_seconds=300, now=now)  # then "dies"
    with sender_for(smtp_server) as sender:
        assert outbox.deliver_due(engine, sender, now=lambda: now).claimed == 0
        later = now + timedelta(seconds=301)
        assert outbox.deliver_due(engine, sender, now=lambda: later).sent == 1
    assert received_ids(smtp_server) == Counter({mid: 1})


def test_two_senders_at_once_never_send_a_row_twice(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    ids = queue(engine, 60)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with sender_for(smtp_server) as sender:
                while outbox.deliver_due(engine, sender, batch_size=7).claimed:
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = received_ids(smtp_server)
    assert set(got) == set(ids) and set(got.values()) == {1}


def test_unreachable_server_defers_everything_and_loses_nothing(engine: Engine) -> None:
    queue(engine, 3)
    with SmtpSender("127.0.0.1", 9, security="plain", timeout=2) as sender:
        report = outbox.deliver_due(engine, sender)
    assert (report.sent, report.retried, report.failed) == (0, 3, 0)
    assert all(r.status == "pending" and "cannot reach" in (r.last_error or "")
               for r in rows(engine))  # fmt: skip


def test_mail_failing_for_longer_than_the_limit_is_given_up(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    queue(engine)
    smtp_server.fail_next(421, "4.7.0 Too busy")
    later = utcnow() + timedelta(hours=73)
    with sender_for(smtp_server) as sender:
        report = outbox.deliver_due(engine, sender, give_up_after_hours=72, now=lambda: later)
    assert report.failed == 1
    [row] = rows(engine)
    assert row.status == "failed" and "gave up after 72 hours" in (row.last_error or "")


def test_rate_limiter_waits_instead_of_exceeding_the_limit() -> None:
    clock = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = outbox.RateLimiter(30, clock=lambda: clock[0], sleep=sleep)
    for _ in range(30):
        limiter.acquire()
    assert slept == []
    limiter.acquire()
    assert slept == [60.0]
    assert outbox.RateLimiter(0, clock=lambda: 0.0, sleep=sleep).acquire() is None


def test_password_login_and_a_wrong_password(smtp_auth_server: SmtpServer) -> None:
    good = SmtpSender(smtp_auth_server.host, smtp_auth_server.port, security="plain",
                      username="mailbridge", password="smtp-secret")  # fmt: skip
    with good:
        good.send(b"Subject: hi\r\n\r\nhello\r\n", FROM, ["a@example.org"])
    assert len(smtp_auth_server.messages) == 1
    bad = SmtpSender(smtp_auth_server.host, smtp_auth_server.port, security="plain",
                     username="mailbridge", password="wrong")  # fmt: skip
    with pytest.raises(PermanentDeliveryError, match=r"SMTP login to 127\.0\.0\.1") as err, bad:
        bad.open()
    assert "[smtp] username and password_env" in str(err.value)


def test_xoauth2_login(smtp_auth_server: SmtpServer) -> None:
    sender = SmtpSender(smtp_auth_server.host, smtp_auth_server.port, security="plain",
                        username="mailbridge", token_provider=lambda: "token-123")  # fmt: skip
    with sender:
        sender.send(b"Subject: hi\r\n\r\nhello\r\n", FROM, ["a@example.org"])
    assert len(smtp_auth_server.messages) == 1


def test_maildir_sender_writes_exact_bytes(tmp_path: Path) -> None:
    raw = b"Subject: \xc2\xa3 exact\r\n\r\nbody\r\n"
    with MaildirSender(tmp_path / "outbox") as sender:
        sender.send(raw, FROM, ["a@example.org"])
    [written] = list((tmp_path / "outbox" / "new").iterdir())
    assert written.read_bytes() == raw


def test_missing_smtp_password_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MB_NO_SUCH_PASSWORD", raising=False)
    config = make_config(
        tmp_path, f"sqlite:///{tmp_path / 'mb.db'}",
        smtp={"url": "smtp+starttls://me@smtp.example.org:587",
              "password_env": "MB_NO_SUCH_PASSWORD"},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="MB_NO_SUCH_PASSWORD is not set"):
        open_sender(config)


def test_compose_headers_round_trip() -> None:
    key = b"signing-key"
    mid = compose.new_message_id("example.gov.uk", "MQ-2026-00042", key)
    assert compose.verify_message_id(mid, key) == "MQ-2026-00042"
    assert compose.verify_message_id(mid, b"other-key") is None
    tampered = mid.replace("MQ-2026-00042", "MQ-2026-00043")
    assert compose.verify_message_id(tampered, key) is None
    raw = compose.compose(
        sender=FROM, sender_name="Member Enquiries – County", to=["a@example.org"],
        cc=["b@example.org"], subject="[MQ-2026-00042] Réponse “quoted”", text="£5 fee",
        html="<p>£5 fee</p>", message_id=mid, in_reply_to="orig@example.org",
        references=["first@example.org", "orig@example.org"],
        attachments=[("plan.pdf", "application/pdf", b"%PDF-1.4")],
    )  # fmt: skip
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "[MQ-2026-00042] Réponse “quoted”"
    assert msg["From"].addresses[0].display_name == "Member Enquiries – County"
    assert msg["Cc"] == "b@example.org"
    assert msg["Message-ID"] == f"<{mid}>"
    assert msg["In-Reply-To"] == "<orig@example.org>"
    assert msg["References"] == "<first@example.org> <orig@example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailbridge-Loop"] == "example.gov.uk"
    assert msg.get_body(("plain",)).get_content().strip() == "£5 fee"  # type: ignore[union-attr]
    assert "£5 fee" in msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "plan.pdf" and att.get_content() == b"%PDF-1.4"
    manual = compose.compose(
        sender=FROM,
        sender_name="x",
        to=["a@example.org"],
        subject="s",
        text="t",
        html=None,
        message_id="m@x",
        auto_submitted=None,
    )
    parsed = message_from_bytes(manual, policy=policy.default)
    assert parsed["Auto-Submitted"] is None and parsed["X-Mailbridge-Loop"] == "example.gov.uk"


def test_implicit_tls_smtps(engine: Engine, smtps_server: SmtpServer) -> None:
    [mid] = queue(engine)
    context = ssl.create_default_context(cafile=str(smtps_server.cafile))
    with SmtpSender(smtps_server.host, smtps_server.port, security="ssl",
                    tls_context=context, timeout=10) as sender:  # fmt: skip
        assert outbox.deliver_due(engine, sender).sent == 1
    assert received_ids(smtps_server) == Counter({mid: 1})


def test_starttls_and_an_untrusted_certificate(engine: Engine, starttls_server: SmtpServer) -> None:
    [mid] = queue(engine)
    context = ssl.create_default_context(cafile=str(starttls_server.cafile))
    with SmtpSender(starttls_server.host, starttls_server.port, security="starttls",
                    tls_context=context, timeout=10) as sender:  # fmt: skip
        assert outbox.deliver_due(engine, sender).sent == 1
    assert received_ids(starttls_server) == Counter({mid: 1})
    # Without trusting the test CA, the certificate is refused and the mail waits.
    queue(engine)
    with SmtpSender(starttls_server.host, starttls_server.port, security="starttls",
                    timeout=10) as sender:  # fmt: skip
        report = outbox.deliver_due(engine, sender)
    assert report.retried == 1
    assert any("CERTIFICATE_VERIFY_FAILED" in (r.last_error or "") for r in rows(engine))
