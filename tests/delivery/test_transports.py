"""Transports on a real aiosmtpd and a real Maildir: login, errors a person reads, config."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbridge.delivery.transports.base import PermanentDeliveryError, TemporaryDeliveryError
from mailbridge.delivery.transports.factory import open_sender
from mailbridge.delivery.transports.maildir import MaildirSender
from mailbridge.delivery.transports.smtp import SmtpSender
from mailbridge.errors import ConfigError, DeliveryError, TransportError
from tests.factories import make_config
from tests.servers.smtp import SmtpServer

FROM = "enquiries@example.gov.uk"
RAW = b"From: enquiries@example.gov.uk\r\nSubject: hi\r\n\r\nhello\r\n"


def login(server: SmtpServer, **kwargs: object) -> SmtpSender:
    return SmtpSender(server.host, server.port, security="plain", timeout=10,
                      username="mailbridge", **kwargs)  # type: ignore[arg-type]  # fmt: skip


def test_password_login_sends(smtp_auth_server: SmtpServer) -> None:
    with login(smtp_auth_server, password="smtp-secret") as sender:
        assert sender.send(RAW, FROM, ["a@example.org"]).refused == {}
        sender.send(RAW, FROM, ["b@example.org"])
        assert sender.connections == 1
    assert [m.rcpt_tos for m in smtp_auth_server.messages] == [["a@example.org"], ["b@example.org"]]


def test_without_login_the_auth_server_refuses(smtp_auth_server: SmtpServer) -> None:
    sender = SmtpSender(smtp_auth_server.host, smtp_auth_server.port, security="plain", timeout=10)
    with sender, pytest.raises(PermanentDeliveryError, match="530"):
        sender.send(RAW, FROM, ["a@example.org"])
    assert smtp_auth_server.messages == []


def test_wrong_password_is_one_clear_line(smtp_auth_server: SmtpServer) -> None:
    sender = login(smtp_auth_server, password="wrong")
    with sender, pytest.raises(PermanentDeliveryError) as err:
        sender.open()
    message = str(err.value)
    assert "\n" not in message
    assert f"SMTP login to 127.0.0.1:{smtp_auth_server.port} as mailbridge failed" in message
    assert "535" in message
    assert "[smtp] username" in message and "password_env" in message
    assert "wrong" not in message  # never the secret itself
    assert smtp_auth_server.messages == []


def test_xoauth2_login_sends(smtp_auth_server: SmtpServer) -> None:
    asked: list[int] = []

    def token() -> str:
        asked.append(1)
        return "token-123"

    with login(smtp_auth_server, token_provider=token) as sender:
        sender.send(RAW, FROM, ["a@example.org"])
    assert len(smtp_auth_server.messages) == 1 and asked == [1]


def test_xoauth2_with_a_bad_token_names_the_oauth_settings(smtp_auth_server: SmtpServer) -> None:
    sender = login(smtp_auth_server, token_provider=lambda: "expired-token")
    with sender, pytest.raises(PermanentDeliveryError) as err:
        sender.open()
    assert "535" in str(err.value) and "[smtp.oauth]" in str(err.value)
    assert smtp_auth_server.messages == []


def test_a_token_provider_failure_is_temporary(smtp_auth_server: SmtpServer) -> None:
    def token() -> str:
        raise TransportError("token endpoint unreachable")

    sender = login(smtp_auth_server, token_provider=token)
    with sender, pytest.raises(TemporaryDeliveryError, match="token endpoint unreachable"):
        sender.open()


def test_login_to_a_server_without_auth_says_so(smtp_server: SmtpServer) -> None:
    sender = login(smtp_server, token_provider=lambda: "token-123")
    with sender, pytest.raises(PermanentDeliveryError, match=r"XOAUTH2.*check \[smtp\]"):
        sender.open()


def test_an_idle_connection_closed_by_the_server_is_reopened(
    smtp_idle_server: SmtpServer,
) -> None:
    with SmtpSender(smtp_idle_server.host, smtp_idle_server.port, security="plain",
                    timeout=10) as sender:  # fmt: skip
        sender.send(RAW, FROM, ["a@example.org"])
        smtp_idle_server.wait_for_closed(1)  # the server hangs up after 0.3 s idle
        sender.send(RAW, FROM, ["b@example.org"])
        assert sender.connections == 2
    assert len(smtp_idle_server.messages) == 2


def test_temporary_and_permanent_replies_carry_the_servers_words(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.fail_next(452, "4.3.1 Insufficient system storage")
    smtp_server.fail_next(554, "5.6.0 Message content rejected")
    with SmtpSender(smtp_server.host, smtp_server.port, security="plain", timeout=10) as sender:
        with pytest.raises(
            TemporaryDeliveryError, match=r"452 4\.3\.1 Insufficient system storage"
        ):
            sender.send(RAW, FROM, ["a@example.org"])
        with pytest.raises(PermanentDeliveryError, match=r"554 5\.6\.0 Message content rejected"):
            sender.send(RAW, FROM, ["a@example.org"])
        sender.send(RAW, FROM, ["a@example.org"])  # the same connection carries on
        assert sender.connections == 1
    assert len(smtp_server.messages) == 1


def test_unreachable_server_is_temporary_and_names_it() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = SmtpSender("127.0.0.1", port, security="plain", timeout=2)
    with sender, pytest.raises(TemporaryDeliveryError) as err:
        sender.open()
    assert f"cannot reach SMTP server 127.0.0.1:{port}" in str(err.value)


def test_maildir_sender_writes_exact_bytes(tmp_path: Path) -> None:
    raws = [
        b"Subject: =?utf-8?q?=C2=A3?= exact\r\n\r\nbody\r\n",
        b"Subject: raw \xc2\xa3 bytes\r\nX: y\r\n\r\nno final newline",
    ]
    with MaildirSender(tmp_path / "outbox") as sender:
        for raw in raws:
            assert sender.send(raw, FROM, ["a@example.org"]).refused == {}
    written = sorted(p.read_bytes() for p in (tmp_path / "outbox" / "new").iterdir())
    assert written == sorted(raws)
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []


def test_maildir_that_cannot_be_written_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sender = MaildirSender(blocker / "outbox")
    with sender, pytest.raises(TemporaryDeliveryError, match=r"cannot open .*check \[smtp\] url"):
        sender.send(RAW, FROM, ["a@example.org"])


def test_maildir_parents_are_made(tmp_path: Path) -> None:
    with MaildirSender(tmp_path / "data" / "outbox") as sender:
        sender.send(RAW, FROM, ["a@example.org"])
    [written] = (tmp_path / "data" / "outbox" / "new").iterdir()
    assert written.read_bytes() == RAW


def test_open_sender_for_maildir(tmp_path: Path) -> None:
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'mb.db'}")
    sender = open_sender(config)
    assert isinstance(sender, MaildirSender) and sender.path == tmp_path / "outbox"


def test_open_sender_for_smtp_reads_the_password_and_default_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_auth_server: SmtpServer
) -> None:
    monkeypatch.setenv("MB_TEST_SMTP_PASSWORD", "smtp-secret")
    config = make_config(
        tmp_path, f"sqlite:///{tmp_path / 'mb.db'}",
        smtp={"url": f"smtp://mailbridge@127.0.0.1:{smtp_auth_server.port}",
              "password_env": "MB_TEST_SMTP_PASSWORD"},
    )  # fmt: skip
    sender = open_sender(config)
    assert isinstance(sender, SmtpSender)
    assert (sender.security, sender.username) == ("plain", "mailbridge")
    with sender:
        sender.send(RAW, FROM, ["a@example.org"])
    assert len(smtp_auth_server.messages) == 1
    starttls = make_config(tmp_path, f"sqlite:///{tmp_path / 'mb.db'}",
                           smtp={"url": "smtp+starttls://smtp.example.org"})  # fmt: skip
    assert open_sender(starttls).port == 587  # type: ignore[attr-defined]


def test_a_password_login_in_clear_text_off_this_machine_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_auth_server_off_loopback: SmtpServer
) -> None:
    """smtp:// to a server on this machine's network address (not loopback): the sender is
    never built, so the password never leaves; `allow_plaintext_login` lets it, for a
    network the council trusts. Used to be a warning in `check` while `run` sent it."""
    server = smtp_auth_server_off_loopback
    monkeypatch.setenv("MB_TEST_SMTP_PASSWORD", "smtp-secret")
    smtp = {"url": f"smtp://mailbridge@{server.host}:{server.port}",
            "password_env": "MB_TEST_SMTP_PASSWORD"}  # fmt: skip
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'mb.db'}", smtp=smtp)
    with pytest.raises(ConfigError) as err:
        open_sender(config)
    assert f"[smtp] url smtp://{server.host} would send the login unencrypted" in str(err.value)
    assert "smtps:// or smtp+starttls://" in str(err.value)
    assert "allow_plaintext_login = true" in str(err.value)
    assert server.handler.connections == 0  # nothing was said to the server

    allowed = make_config(tmp_path, f"sqlite:///{tmp_path / 'mb.db'}",
                          smtp={**smtp, "allow_plaintext_login": True})  # fmt: skip
    with open_sender(allowed) as sender:
        sender.send(RAW, FROM, ["a@example.org"])
    assert len(server.messages) == 1


def test_missing_smtp_password_is_a_config_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MB_NO_SUCH_PASSWORD", raising=False)
    config = make_config(
        tmp_path, f"sqlite:///{tmp_path / 'mb.db'}",
        smtp={"url": "smtp+starttls://me@smtp.example.org:587",
              "password_env": "MB_NO_SUCH_PASSWORD"},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="MB_NO_SUCH_PASSWORD") as err:
        open_sender(config)
    assert "\n" not in str(err.value)


def test_a_bad_ca_file_is_a_config_error(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, f"sqlite:///{tmp_path / 'mb.db'}",
        smtp={"url": "smtps://smtp.example.org", "tls_ca_file": str(tmp_path / "nope.pem")},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="tls_ca_file"):
        open_sender(config)


def test_a_non_ascii_address_goes_with_smtputf8(smtp_server: SmtpServer) -> None:
    with SmtpSender(smtp_server.host, smtp_server.port, security="plain", timeout=10) as sender:
        sender.send(RAW, FROM, ["jöhn@example.org", "john@example.org"])
    assert [m.rcpt_tos for m in smtp_server.messages] == [["jöhn@example.org", "john@example.org"]]


def test_a_non_ascii_address_without_smtputf8_is_permanent(smtp_ascii_server: SmtpServer) -> None:
    server = smtp_ascii_server
    with SmtpSender(server.host, server.port, security="plain", timeout=10) as sender:
        with pytest.raises(PermanentDeliveryError, match="SMTPUTF8"):
            sender.send(RAW, FROM, ["jöhn@example.org"])
        sender.send(RAW, FROM, ["john@example.org"])  # the connection is still usable
        assert sender.connections == 1
    assert [m.rcpt_tos for m in server.messages] == [["john@example.org"]]


def test_delivery_errors_are_transport_errors_a_person_reads() -> None:
    for error in (TemporaryDeliveryError, PermanentDeliveryError):
        assert issubclass(error, DeliveryError) and issubclass(error, TransportError)
