"""Build the sender that `[smtp] url` and its login settings name.

smtp.py is imported only when an SMTP sender is built, so that only the process that
delivers imports asyncio and aiosmtplib (~20 ms of every start of the ingest process).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mailbridge.config import Config
from mailbridge.delivery.transports.base import Security, Sender
from mailbridge.delivery.transports.maildir import MaildirSender
from mailbridge.errors import ConfigError

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
    from mailbridge.delivery.transports.smtp import SmtpSender  # only where mail is sent

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
