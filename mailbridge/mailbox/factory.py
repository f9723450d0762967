"""Build the configured mailbox source from `[mailbox]`: the only place that reads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mailbridge.config import Config
from mailbridge.errors import ConfigError
from mailbridge.mailbox.base import MailboxSource, StateStore
from mailbridge.mailbox.imap import ImapSource, Security
from mailbridge.mailbox.login import login_for
from mailbridge.mailbox.maildir import MaildirSource

_SECURITY: dict[str, tuple[Security, int]] = {
    "imap": ("plain", 143),
    "imap+starttls": ("starttls", 143),
    "imaps": ("ssl", 993),
}


def open_source(
    config: Config, state: StateStore, token_provider: Callable[[], str] | None = None
) -> MailboxSource:
    """A source for `[mailbox] url`; secrets are resolved now so a missing one fails early."""
    box = config.mailbox
    if box.scheme == "maildir":
        return MaildirSource(
            Path(box.url.split(":", 1)[1]),
            processed_folder=box.processed_folder,
            quarantine_folder=box.quarantine_folder,
            batch_size=box.batch_size,
            max_message_bytes=box.max_message_bytes,
            max_batch_bytes=box.max_batch_bytes,
        )
    security, default_port = _SECURITY[box.scheme]
    parts = urlsplit(box.url)
    host = parts.hostname or ""
    port = parts.port or default_port
    username = box.login
    where = f"{config.source or 'config'}: [mailbox]"
    if not username:
        raise ConfigError(
            f"{where} url has no user name: set username or use {box.scheme}://user@{host}/"
        )
    login = login_for(config, box, "mailbox", username, token_provider)
    return ImapSource(
        host,
        port,
        security=security,
        username=username,
        password=login.password,
        token_provider=login.token_provider,
        folder=box.folder,
        processed_folder=box.processed_folder,
        quarantine_folder=box.quarantine_folder,
        batch_size=box.batch_size,
        max_message_bytes=box.max_message_bytes,
        max_batch_bytes=box.max_batch_bytes,
        state=state,
        idle=box.idle,
        idle_renew_seconds=box.idle_renew_seconds,
        timeout=box.timeout_seconds,
        ssl_context=login.tls_context,
        name=source_name(config),
    )


def source_name(config: Config) -> str:
    """The mailbox's name, which its lease and its UID mark go by: read from the config
    alone (no secret needed), so `mailbridge check` names the same mailbox as the service."""
    box = config.mailbox
    if box.scheme == "maildir":
        return f"maildir:{Path(box.url.split(':', 1)[1])}"
    _security, default_port = _SECURITY[box.scheme]
    parts = urlsplit(box.url)
    where = f"{parts.hostname or ''}:{parts.port or default_port}"
    return f"{box.scheme}://{box.login}@{where}/{box.folder}"
