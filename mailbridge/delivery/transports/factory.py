"""Build the sender that `[smtp] url` and its login settings name.

smtp.py is imported only when an SMTP sender is built, so that only the process that
delivers imports asyncio and aiosmtplib (~20 ms of every start of the ingest process).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mailbridge.config import Config
from mailbridge.delivery.transports.base import Security, Sender
from mailbridge.delivery.transports.maildir import MaildirSender
from mailbridge.mailbox.login import login_for

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
    login = login_for(config, smtp, "smtp", username, token_provider)
    from mailbridge.delivery.transports.smtp import SmtpSender  # only where mail is sent

    return SmtpSender(
        parts.hostname or "",
        parts.port or default_port,
        security=security,
        username=username,
        password=login.password,
        token_provider=login.token_provider,
        timeout=smtp.timeout_seconds,
        tls_context=login.tls_context,
    )
