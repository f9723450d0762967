"""XOAUTH2 tokens: from an operator's command, with clear errors when it fails."""

from __future__ import annotations

import json
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mailbridge.config import OAuthConfig
from mailbridge.errors import LoginRefused, TransportError
from mailbridge.mailbox.oauth import token_provider, xoauth2_string
from tests.servers import make_self_signed_cert


def test_command_provider_returns_the_token_printed_on_stdout() -> None:
    oauth = OAuthConfig(provider="command", command=[sys.executable, "-c", "print('tok-42')"])
    assert token_provider(oauth, None)() == "tok-42"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([sys.executable, "-c", "import sys; sys.exit(3)"], "failed (exit 3)"),
        ([sys.executable, "-c", "print('')"], "failed (exit 0)"),
        (["/nonexistent/get-token"], "could not run"),
    ],
)
def test_command_provider_failures_are_one_clear_line(argv: list[str], expected: str) -> None:
    provider = token_provider(OAuthConfig(provider="command", command=argv), None)
    with pytest.raises(TransportError, match=re.escape(expected)) as err:
        provider()
    assert "\n" not in str(err.value)


def test_msal_provider_unreachable_authority_is_one_clear_line() -> None:
    # An authority on a closed loopback port: MSAL cannot reach it, and we say so plainly.
    oauth = OAuthConfig(
        provider="msal",
        tenant_id="00000000-0000-0000-0000-000000000000",
        client_id="client",
        client_secret_env="UNUSED",
        authority="https://127.0.0.1:9/tenant",
    )
    provider = token_provider(oauth, "secret")
    with pytest.raises(TransportError, match=r"cannot get an OAuth token from https://127") as err:
        provider()
    assert "\n" not in str(err.value)


def test_xoauth2_string_is_the_sasl_initial_response() -> None:
    assert xoauth2_string("a@b", "T") == "user=a@b\x01auth=Bearer T\x01\x01"


class _TokenEndpoint(BaseHTTPRequestHandler):
    """An Entra ID (ADFS-style) authority whose token endpoint rejects the client secret,
    as it does once the secret has expired: 401 invalid_client."""

    def do_GET(self) -> None:  # the authority's metadata, which MSAL reads first
        base = f"https://127.0.0.1:{self.server.server_port}/adfs"
        self._answer(200, {"authorization_endpoint": f"{base}/oauth2/authorize",
                           "token_endpoint": f"{base}/oauth2/token", "issuer": base})  # fmt: skip

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(401, {"error": "invalid_client",
                           "error_description": "AADSTS7000222: The provided client secret "
                           "keys for app 'client' are expired."})  # fmt: skip

    def _answer(self, code: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads the answers, not a log."""


def test_an_expired_client_secret_is_a_refused_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classic silent failure: Entra ID rejects the secret. It is LoginRefused (a person
    must renew it; the service waits and alerts), not Unreachable (try again later)."""
    cert, key = make_self_signed_cert(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # MSAL speaks HTTPS through requests
    oauth = OAuthConfig(
        provider="msal",
        tenant_id="adfs",
        client_id="client",
        client_secret_env="UNUSED",
        authority=f"https://127.0.0.1:{server.server_port}/adfs",
    )
    try:
        with pytest.raises(LoginRefused, match="refused the OAuth client credentials") as err:
            token_provider(oauth, "expired-secret")()
    finally:
        server.shutdown()
        server.server_close()
    assert "invalid_client: AADSTS7000222" in str(err.value)
    assert "expired-secret" not in str(err.value) and "\n" not in str(err.value)
