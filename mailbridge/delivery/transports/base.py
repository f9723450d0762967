"""Transports for outgoing mail: SMTP (smtp.py) or a local Maildir. Delivery only.

Errors carry the server's own words, sorted into temporary (retry later) and permanent
(give up and tell a person). The SMTP sender lives in smtp.py, imported only by the
process that delivers: asyncio and aiosmtplib stay out of the ingest process's start-up.
"""

from __future__ import annotations

import mailbox
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self
from urllib.parse import urlsplit

from mailbridge.config import Config
from mailbridge.errors import ConfigError
from mailbridge.probe import Probe

Security = Literal["ssl", "starttls", "plain"]


class TemporaryDeliveryError(Exception):
    """Try again later: a 4xx reply, a timeout or a lost connection."""


class PermanentDeliveryError(Exception):
    """Do not try again: a 5xx reply. The message holds the server's words."""


@dataclass(frozen=True, slots=True)
class SendResult:
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> server's words


class Sender(Protocol):
    def open(self) -> None: ...

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult: ...

    def close(self) -> None: ...

    def probe(self) -> Probe:
        """Connect and log in as delivery would, send nothing, and say what the server
        takes; raises TemporaryDeliveryError or PermanentDeliveryError as delivery would."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _Lifecycle:
    """Context-manager plumbing shared by the senders."""

    def open(self) -> None:  # pragma: no cover - overridden
        pass

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MaildirSender(_Lifecycle):
    """The embedded default: each message is written, byte for byte, into a Maildir."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def open(self) -> None:
        if self._box is not None:
            return
        try:
            # Maildir() makes only the last folder; a fresh data dir lacks its parents too.
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._box = mailbox.Maildir(self.path, create=True)
        except OSError as exc:
            raise TemporaryDeliveryError(
                f"cannot open the outgoing Maildir {self.path}: {exc.strerror}; check [smtp] url"
            ) from exc

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult:
        self.open()
        assert self._box is not None
        try:
            self._box.add(raw)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to {self.path}: {exc.strerror}") from exc
        return SendResult()

    def close(self) -> None:
        self._box = None

    def probe(self) -> Probe:
        """Where the mail goes, without creating it: the first delivery does."""
        there = next((p for p in (self.path, *self.path.parents) if p.exists()), None)
        if there is None or not there.is_dir() or not os.access(there, os.W_OK | os.X_OK):
            raise TemporaryDeliveryError(
                f"cannot write the outgoing Maildir {self.path}: check [smtp] url and "
                "that the user running mailbridge may write there"
            )
        return Probe(
            f"writes each email into {self.path}",
            ("mail is not sent: set [smtp] url to your mail server to deliver it",),
        )


_SMTP_SECURITY: dict[str, tuple[Security, int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("ssl", 465),
}


def open_sender(config: Config, token_provider: Callable[[], str] | None = None) -> Sender:
    """The configured transport; secrets are resolved now so a missing one fails early."""
    smtp = config.smtp
    if smtp.scheme == "maildir":
        return MaildirSender(Path(smtp.url.split(":", 1)[1]))
    security, default_port = _SMTP_SECURITY[smtp.scheme]
    parts = urlsplit(smtp.url)
    username = smtp.login
    password = None
    if username and smtp.oauth is not None and token_provider is None:
        from mailbridge.mailbox.oauth import token_provider as make_token_provider

        secret = None
        if smtp.oauth.provider == "msal":
            secret = config.secret("[smtp.oauth] client_secret", smtp.oauth.client_secret)
        token_provider = make_token_provider(smtp.oauth, secret, config.source)
    if username and token_provider is None:
        password = config.secret("[smtp] password", smtp.password)
    context = None
    if smtp.tls_ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=str(smtp.tls_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{config.source or 'config'}: [smtp] tls_ca_file {smtp.tls_ca_file}: {exc}"
            ) from exc
    from mailbridge.delivery.transports.smtp import SmtpSender

    return SmtpSender(
        parts.hostname or "",
        parts.port or default_port,
        security=security,
        username=username,
        password=password,
        token_provider=token_provider,
        timeout=smtp.timeout_seconds,
        tls_context=context,
    )
