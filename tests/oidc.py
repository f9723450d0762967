"""A real OpenID Connect provider on loopback for the sign-in tests: oidc-provider-mock
(Flask + Authlib) in a thread of the test process.

What it does, read from its source (version 0.3.4):

- Clients: no registration is needed. Any client id and secret are accepted at the token
  endpoint, with any redirect URI (`require_client_registration=False`, its default).
  `oidc_provider(require_client_registration=True)` makes it insist on clients registered at
  `registration_endpoint` (RFC 7591), which then answers with their id and secret.
- Users: its authorization page is a form with one text field, `sub`, posted back to the
  same URL (query string and all); posting it issues a code for that subject and redirects to
  the client's redirect_uri with `?code=...&state=...`. `authorize` below does what a person
  would. A subject nobody described gets the claims `{"email": sub}`; `set_user` describes one
  beforehand (`PUT /users/<sub>` with the claims as JSON, e.g. email, preferred_username,
  name). Claims go into the ID token and userinfo by scope ("email", "profile"...).
- ID tokens are signed RS256 with a key made at start (`jwks_uri`); `iss` is the URL the
  request came to, so use `issuer` as given here (http://localhost:PORT).
- PKCE: the code_challenge is accepted but not checked (no Authlib CodeChallenge extension
  is registered), so the provider cannot prove a client's PKCE: a test of PKCE has to look at
  what the client sends (the authorize URL's code_challenge and the token request's
  code_verifier).
- A nonce is optional unless `require_nonce=True`.
- Plain http on loopback: Authlib treats http://localhost as a secure transport (RFC 8252),
  so neither side needs AUTHLIB_INSECURE_TRANSPORT.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import oidc_provider_mock

FORM_FIELD = 'name="sub"'


@dataclass(frozen=True, slots=True)
class Provider:
    """The running provider: its issuer URL (discovery at /.well-known/openid-configuration)."""

    issuer: str

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.issuer, trust_env=False, timeout=10)

    def discovery(self) -> dict[str, Any]:
        """The provider's OpenID configuration document."""
        with self._client() as http:
            answer = http.get("/.well-known/openid-configuration")
        answer.raise_for_status()
        return dict(answer.json())

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        """Describe the person `sub` signs in as (email, preferred_username, name...)."""
        with self._client() as http:
            answer = http.put(f"/users/{quote(sub, safe='')}", json=claims)
        assert answer.status_code == 204, f"PUT /users/{sub}: {answer.status_code} {answer.text}"


@contextmanager
def oidc_provider(**options: Any) -> Iterator[Provider]:
    """A fresh provider (its own users, codes and signing key) for the block; `options` go
    to `oidc_provider_mock.run_server_in_thread` (require_nonce, user_claims...)."""
    with oidc_provider_mock.run_server_in_thread(**options) as server:
        yield Provider(f"http://localhost:{server.server_port}")


def authorize(http_client: httpx.Client, authorize_url: str, sub: str) -> str:
    """Sign in at the provider as `sub`, as a person would: open the authorization page the
    client sent them to, fill in its form, and return the redirect back to the client (its
    redirect_uri with ?code=...&state=..., or ?error=... when the request was refused)."""
    page = http_client.get(authorize_url, follow_redirects=False)
    assert page.status_code == 200 and FORM_FIELD in page.text, (
        f"the provider's authorization page did not show its form: {page.status_code} "
        f"{page.text[:300]}"
    )
    answer = http_client.post(authorize_url, data={"sub": sub}, follow_redirects=False)
    assert answer.is_redirect, (
        f"the provider did not redirect back after sign-in: {answer.status_code} "
        f"{answer.text[:300]}"
    )
    return answer.headers["location"]
