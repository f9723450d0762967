"""Build the configured mailbox source from `[mailbox]`: the only place that reads it."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mailbridge.config import Config
from mailbridge.errors import ConfigError
from mailbridge.mailbox.base import MailboxSource, StateStore
from mailbridge.mailbox.imap import ImapSource, Security
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
    password: str | None = None
    if box.oauth is not None and token_provider is None:
        from mailbridge.mailbox.oauth import token_provider as make_token_provider

        secret = None
        if box.oauth.provider == "msal":
            secret = config.secret("[mailbox.oauth] client_secret", box.oauth.client_secret)
        token_provider = make_token_provider(box.oauth, secret, config.source)
    if token_provider is None:
        password = config.secret("[mailbox] password", box.password)
    context = None
    if box.tls_ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=str(box.tls_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where} tls_ca_file {box.tls_ca_file}: {exc}") from exc
    return ImapSource(
        host,
        port,
        security=security,
        username=username,
        password=password,
        token_provider=token_provider,
        folder=box.folder,
        processed_folder=box.processed_folder,
        quarantine_folder=box.quarantine_folder,
        batch_size=box.batch_size,
        state=state,
        idle=box.idle,
        idle_renew_seconds=box.idle_renew_seconds,
        timeout=box.timeout_seconds,
        ssl_context=context,
        name=f"{box.scheme}://{username}@{host}:{port}/{box.folder}",
    )
