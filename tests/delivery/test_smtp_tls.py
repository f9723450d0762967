"""Outgoing mail over TLS against a real aiosmtpd with a throwaway certificate.

Plain SMTP delivery, retries and login are in test_outbox.py and test_transports.py.
"""

from __future__ import annotations

import ssl
from collections import Counter
from email import message_from_bytes, policy

from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbridge.delivery import compose, outbox
from mailbridge.delivery.transports.smtp import SmtpSender
from mailbridge.mail import tokens
from mailbridge.store.db import transaction
from mailbridge.store.models import OutboxMessage
from tests.servers.smtp import SmtpServer

FROM = "enquiries@example.gov.uk"


def queue(engine: Engine, n: int = 1, to: tuple[str, ...] = ("member@example.org",)) -> list[str]:
    ids = []
    with transaction(engine) as session:
        for i in range(n):
            mid = tokens.new_message_id("example.gov.uk")
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
