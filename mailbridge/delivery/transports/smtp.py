"""Delivery over SMTP with aiosmtplib: one reused connection, password or XOAUTH2 login.

Callers stay synchronous: the sender owns an asyncio loop and one connection that it
reuses for a whole batch. A module of its own so that only the process that delivers
imports asyncio and aiosmtplib (~20 ms of every start of the ingest process).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence

import aiosmtplib

from mailbridge.delivery.transports.base import (
    Lifecycle,
    PermanentDeliveryError,
    Security,
    SendResult,
    SmtpLoginRefused,
    TemporaryDeliveryError,
)
from mailbridge.errors import MailbridgeError
from mailbridge.probe import Probe, loopback


def _words(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


class SmtpSender(Lifecycle):
    """SMTP submission with one reused connection; password or XOAUTH2 login."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        token_provider: Callable[[], str] | None = None,
        timeout: float = 60.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.token_provider = token_provider
        self.timeout = timeout
        self.tls_context = tls_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aiosmtplib.SMTP | None = None
        self.connections = 0  # how many times we connected: one per batch is the aim

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _run(self, coro):  # type: ignore[no-untyped-def]
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    async def _token(self) -> str:
        assert self.token_provider is not None
        return await asyncio.to_thread(self.token_provider)

    def open(self) -> None:
        if self._client is not None and self._client.is_connected:
            return
        kwargs: dict[str, object] = {}
        if self.username and self.token_provider is not None:
            kwargs = {"username": self.username, "oauth_token_generator": self._token}
        elif self.username:
            kwargs = {"username": self.username, "password": self.password}
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "ssl",
            start_tls=self.security == "starttls",
            timeout=self.timeout,
            tls_context=self.tls_context,
            **kwargs,  # type: ignore[arg-type]
        )
        try:
            self._run(client.connect())
        except aiosmtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.code < 500:  # "454 Temporary authentication failure": try again
                raise TemporaryDeliveryError(
                    f"SMTP server {self.where} said {_words(exc)}"
                ) from exc
            keys = (
                "[smtp] username and [smtp.oauth]"
                if self.token_provider is not None
                else "[smtp] username and password_env / password_file"
            )
            raise SmtpLoginRefused(
                f"SMTP login to {self.where} as {self.username} failed: {_words(exc)}; "
                f"check {keys}",
                _words(exc),
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise TemporaryDeliveryError(f"SMTP server {self.where} said {_words(exc)}") from exc
        except MailbridgeError as exc:
            # The token provider could not get a token (network, identity provider).
            raise TemporaryDeliveryError(
                f"no OAuth token for SMTP login to {self.where}: {exc}"
            ) from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise TemporaryDeliveryError(
                f"cannot reach SMTP server {self.where}: {exc or type(exc).__name__}"
            ) from exc
        except aiosmtplib.SMTPException as exc:
            # aiosmtplib's own checks: no AUTH, no XOAUTH2 or no STARTTLS on this server.
            raise PermanentDeliveryError(
                f"SMTP server {self.where}: {exc}; check [smtp] url and login settings"
            ) from exc
        except TimeoutError as exc:
            raise TemporaryDeliveryError(
                f"cannot reach SMTP server {self.where}: {exc or type(exc).__name__}"
            ) from exc
        self._client = client
        self.connections += 1

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult:
        rcpts = list(recipients)
        # A non-ASCII address needs SMTPUTF8; without it aiosmtplib cannot even encode it.
        ascii_only = sender.isascii() and all(r.isascii() for r in rcpts)
        options = [] if ascii_only else ["SMTPUTF8"]
        for attempt in (1, 2):
            self.open()
            assert self._client is not None
            try:
                errors, _ = self._run(
                    self._client.sendmail(sender, rcpts, raw, mail_options=options)
                )
            except aiosmtplib.SMTPServerDisconnected as exc:
                self._client = None
                if attempt == 2:
                    raise TemporaryDeliveryError(f"SMTP server {self.where} hung up") from exc
                continue  # reconnect once: the server may have closed an idle connection
            except aiosmtplib.SMTPRecipientsRefused as exc:
                words = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
                if all(r.code >= 500 for r in exc.recipients):
                    raise PermanentDeliveryError(words) from exc
                raise TemporaryDeliveryError(words) from exc
            except aiosmtplib.SMTPResponseException as exc:
                self._reset()
                if exc.code >= 500:
                    raise PermanentDeliveryError(_words(exc)) from exc
                raise TemporaryDeliveryError(_words(exc)) from exc
            except aiosmtplib.SMTPNotSupported as exc:
                # e.g. a non-ASCII address and no SMTPUTF8: trying again cannot help.
                self._reset()
                raise PermanentDeliveryError(f"SMTP server {self.where}: {exc}") from exc
            except UnicodeError as exc:
                self._reset()
                raise PermanentDeliveryError(f"cannot encode an address for SMTP: {exc}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._client = None
                raise TemporaryDeliveryError(
                    f"SMTP to {self.where} failed: {exc or type(exc).__name__}"
                ) from exc
            refused = {rcpt: f"{resp.code} {resp.message}" for rcpt, resp in errors.items()}
            return SendResult(refused=refused)
        raise AssertionError("unreachable")  # pragma: no cover

    def probe(self) -> Probe:
        """Log in as delivery does, then QUIT: what the server offers, no mail sent."""
        self.open()
        client = self._client
        assert client is not None
        if not client.esmtp_extensions:  # no TLS or login asked for it yet
            self._run(client.ehlo())
        extensions = client.esmtp_extensions
        channel = {"ssl": "TLS", "starttls": "STARTTLS", "plain": "no encryption"}[self.security]
        if self.username:
            login = "XOAUTH2" if self.token_provider is not None else "password"
            found = [f"logged in as {self.username} ({login}, {channel})"]
        else:
            found = [f"connected without a login ({channel})"]
        size = extensions.get("size", "").strip()
        if size.isdigit() and int(size) > 0:
            found.append(f"takes messages up to {int(size) / 1_048_576:.0f} MB")  # as 365 counts
        if "smtputf8" not in extensions:
            found.append("no SMTPUTF8, so no mail to addresses with non-ASCII letters")
        warnings = []
        if self.security == "plain" and self.username and not loopback(self.host):
            warnings.append(
                "the password crosses the network unencrypted: use smtps:// or smtp+starttls://"
            )
        self.close()
        return Probe("; ".join(found), tuple(warnings))

    def _reset(self) -> None:
        """After a refused transaction, RSET so the connection can carry the next message."""
        if self._client is None:
            return
        try:
            self._run(self._client.rset())
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._client = None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                self._run(self._client.quit())
            self._client = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
