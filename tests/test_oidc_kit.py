"""The OpenID Connect provider of the sign-in tests works: discovery answers, the
authorization form issues a code for the subject, and that code buys an ID token carrying
the claims set for the subject."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc import authorize, oidc_provider

CLIENT_ID = "mailbridge-console"
CLIENT_SECRET = "any secret will do"
REDIRECT = "http://127.0.0.1:8080/sign-in/sso/callback"


def _authorize_url(endpoint: str, state: str, nonce: str) -> str:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile",
        "state": state,
        "nonce": nonce,
    }
    return f"{endpoint}?{urlencode(query)}"


def test_discovery_and_a_code_for_the_subject_that_buys_their_id_token() -> None:
    with oidc_provider() as provider, httpx.Client(trust_env=False, timeout=10) as http:
        found = provider.discovery()
        assert found["issuer"] == provider.issuer
        assert "code" in found["response_types_supported"]
        provider.set_user(
            "jo-1", {"email": "jo.bloggs@council.example", "preferred_username": "jbloggs"}
        )
        state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)

        url = _authorize_url(found["authorization_endpoint"], state, nonce)
        back = authorize(http, url, "jo-1")

        parts = urlsplit(back)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT
        query = parse_qs(parts.query)
        assert query["state"] == [state]
        (code,) = query["code"]
        tokens = http.post(
            found["token_endpoint"],
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert tokens.status_code == 200, tokens.text
        keys = KeySet.import_key_set(http.get(found["jwks_uri"]).json())
        claims = jwt.decode(tokens.json()["id_token"], keys).claims
        jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
        assert claims["iss"] == provider.issuer
        assert claims["aud"] == [CLIENT_ID]
        assert claims["nonce"] == nonce
        assert (claims["sub"], claims["email"], claims["preferred_username"]) == (
            "jo-1",
            "jo.bloggs@council.example",
            "jbloggs",
        )
        again = http.post(
            found["token_endpoint"],
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert again.status_code == 400, "a code is good for one exchange only"


def test_a_subject_nobody_described_has_their_sub_as_email() -> None:
    with oidc_provider() as provider, httpx.Client(trust_env=False, timeout=10) as http:
        endpoint = provider.discovery()["authorization_endpoint"]
        back = authorize(http, _authorize_url(endpoint, "s", "n"), "someone@council.example")
        assert "code" in parse_qs(urlsplit(back).query)
        assert parse_qs(urlsplit(back).query)["state"] == ["s"]
