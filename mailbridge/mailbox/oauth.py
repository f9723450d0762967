"""XOAUTH2 access tokens for IMAP and SMTP: MSAL client credentials or an operator command."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from mailbridge.config import OAuthConfig
from mailbridge.errors import LoginRefused, TransportError, Unreachable

TokenProvider = Callable[[], str]


def token_provider(
    oauth: OAuthConfig, client_secret: str | None, source: Path | None = None
) -> TokenProvider:
    """A callable returning a valid access token, refreshed by the library when needed."""
    if oauth.provider == "command":
        return _command_provider(list(oauth.command or []))
    return _msal_provider(oauth, client_secret or "")


def _command_provider(argv: list[str]) -> TokenProvider:
    def get() -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TransportError(f"OAuth token command {argv[0]!r} could not run: {exc}") from exc
        token = done.stdout.strip()
        if done.returncode != 0 or not token:
            raise TransportError(
                f"OAuth token command {argv[0]!r} failed (exit {done.returncode}): "
                f"{done.stderr.strip()[:200]}"
            )
        return token

    return get


def _msal_provider(oauth: OAuthConfig, client_secret: str) -> TokenProvider:
    import msal

    authority = oauth.authority or f"https://login.microsoftonline.com/{oauth.tenant_id}"
    lock = threading.Lock()
    app: list[msal.ConfidentialClientApplication] = []

    def get() -> str:
        with lock:
            try:
                if not app:
                    app.append(
                        msal.ConfidentialClientApplication(
                            oauth.client_id, client_credential=client_secret, authority=authority
                        )
                    )
                # MSAL keeps an in-memory token cache and calls the network only when expired.
                result = app[0].acquire_token_for_client(scopes=[oauth.scope])
            except Exception as exc:
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                raise Unreachable(
                    f"cannot get an OAuth token from {authority}: {reason} "
                    "(check [*.oauth] tenant_id, client_id and the network)"
                ) from exc
        if "access_token" not in result:  # invalid_client: the secret expired or is wrong
            raise LoginRefused(
                "Microsoft 365 refused the OAuth client credentials: "
                f"{result.get('error')}: {str(result.get('error_description', ''))[:200]}"
            )
        return str(result["access_token"])

    return get


def xoauth2_string(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), for logging nothing secret."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"
