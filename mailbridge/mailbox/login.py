"""How mailbridge logs in to a mail server, the shared mailbox (IMAP) and the outgoing
server (SMTP) alike: an OAuth token or a password, and the certificate authority to trust.

Secrets are resolved here, when the source or sender is built, so a missing one stops
mailbridge at start-up with the config key that names it, not at the first login.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from mailbridge.config import Config, ServerConfig
from mailbridge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Login:
    password: str | None
    token_provider: Callable[[], str] | None
    tls_context: ssl.SSLContext | None


def login_for(
    config: Config,
    server: ServerConfig,
    section: str,
    username: str | None,
    token_provider: Callable[[], str] | None = None,
) -> Login:
    """What logging in to `server` ([`section`] of the config) takes: a token provider when
    OAuth is configured (or one is given), else the password; none without a user name.
    A login that would cross the network in clear text is refused here, before any
    connection, so neither `run` nor `check` ever sends it."""
    if refused := server.plaintext_login_refused(section):
        raise ConfigError(f"{config.source or 'config'}: {refused}")
    password: str | None = None
    if username and server.oauth is not None and token_provider is None:
        from mailbridge.mailbox.oauth import token_provider as make_token_provider

        secret = None
        if server.oauth.provider == "msal":
            secret = config.secret(f"[{section}.oauth] client_secret", server.oauth.client_secret)
        token_provider = make_token_provider(server.oauth, secret, config.source)
    if username and token_provider is None:
        password = config.secret(f"[{section}] password", server.password)
    context = None
    if server.tls_ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=str(server.tls_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{config.source or 'config'}: [{section}] tls_ca_file {server.tls_ca_file}: {exc}"
            ) from exc
    return Login(password, token_provider, context)
