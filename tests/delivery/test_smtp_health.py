"""SMTP health as the daemon sees it (`Daemon.smtp_health`), learned from whoever delivers:
its own delivery, or the courier process through shared memory. On real aiosmtpd servers:
one that requires AUTH and refuses our password, and one that has stopped.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from mailbridge.delivery.courier import Courier
from mailbridge.delivery.transports.smtp import SmtpSender
from mailbridge.mailbox.maildir import MaildirSource
from mailbridge.service.daemon import Daemon, PassReport
from mailbridge.store.models import utcnow
from tests.factories import make_services
from tests.helpers.outbox import MEMBER, queue, rows
from tests.servers.smtp import Handler, SmtpServer

pytestmark = pytest.mark.timeout(90)


def test_a_refused_login_is_reported_with_the_servers_words_until_a_send_succeeds(
    tmp_path: Path, engine: Engine, smtp_auth_server: SmtpServer
) -> None:
    password = ["not-the-password"]
    services = make_services(tmp_path, engine)
    server = smtp_auth_server
    daemon = Daemon(
        services,
        MaildirSource(tmp_path / "mailbox"),
        lambda: SmtpSender(
            server.host, server.port, security="plain", username="mailbridge", password=password[0]
        ),
        courier=None,
    )
    assert daemon.smtp_health().failing is None  # nothing tried yet
    queue(engine)
    before = utcnow()
    daemon.deliver(PassReport())
    health = daemon.smtp_health()
    assert health.failing == "login_refused"
    assert health.detail.startswith("535 ")  # the server's words, and nothing else
    assert "mailbridge" not in health.detail and MEMBER not in health.detail
    assert health.failing_since is not None and health.failing_since >= before
    assert health.last_send is None
    since = health.failing_since

    queue(engine)  # the first waits for its retry; this one is due now
    daemon.deliver(PassReport())
    assert daemon.smtp_health().failing_since == since, "one failure, still going on"

    password[0] = "smtp-secret"
    queue(engine)
    daemon.deliver(PassReport())
    health = daemon.smtp_health()
    assert (health.failing, health.failing_since, health.detail) == (None, None, "")
    assert health.last_send is not None and health.last_send >= since
    assert len(smtp_auth_server.messages) == 1
    assert [r.claimed_by for r in rows(engine)][:2] == [None, None]  # retries name no sender


@pytest.mark.smtp  # an aiosmtpd of its own, started and stopped here
def test_a_stopped_smtp_server_is_unreachable_as_the_courier_tells_the_daemon(
    tmp_path: Path, engine: Engine
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    controller.stop()  # the server has stopped: nothing listens on its port
    services = make_services(tmp_path, engine, smtp={"url": f"smtp://127.0.0.1:{port}"})
    engine.dispose()  # no pooled connection crosses into the courier
    daemon = Daemon(
        services,
        MaildirSource(tmp_path / "mailbox"),
        lambda: SmtpSender("127.0.0.1", port, security="plain", timeout=10),
        courier=Courier(services.config),
    )
    queue(engine)
    before = utcnow()
    report = daemon.run_once()
    assert report.retried >= 1  # the courier tried, in its own process
    health = daemon.smtp_health()
    assert health.failing == "unreachable"
    assert health.failing_since is not None and health.failing_since >= before
    assert f"cannot reach SMTP server 127.0.0.1:{port}" in health.detail
    assert health.last_send is None


def test_a_server_without_what_the_login_settings_ask_for_needs_a_person_too(
    tmp_path: Path, engine: Engine, smtp_server: SmtpServer
) -> None:
    """smtp+starttls:// to a server that offers no STARTTLS: no mail can go until a person
    changes the settings, as with a refused login; `detail` says what is missing."""
    services = make_services(tmp_path, engine)
    daemon = Daemon(
        services,
        MaildirSource(tmp_path / "mailbox"),
        lambda: SmtpSender(smtp_server.host, smtp_server.port, security="starttls"),
        courier=None,
    )
    queue(engine)
    daemon.deliver(PassReport())
    health = daemon.smtp_health()
    assert health.failing == "login_refused"
    assert "STARTTLS" in health.detail and MEMBER not in health.detail
    assert smtp_server.messages == []
