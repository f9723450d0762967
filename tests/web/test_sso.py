"""Single sign-on against a real OpenID Connect provider on loopback (oidc-provider-mock):
Authlib fetches its discovery document and keys, sends the browser there with PKCE, and
exchanges the code for tokens over HTTP. The provider proves who signed in; the directory
decides whether they are anyone here."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlmodel import Session, select

from mailbridge.store.db import make_engine
from mailbridge.store.models import AuditRecord
from mailbridge.web.routing import SESSION_COOKIE
from tests.oidc import Provider, authorize, oidc_provider
from tests.web.conftest import Web, make_web

COORDINATOR = "member.support@example.gov.uk"
SECRET_ENV = "MAILBRIDGE_TEST_SSO_SECRET"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oidc_provider() as running:
        yield running


@pytest.fixture
def sites(
    tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Web]]:
    """Consoles whose [web.sso] names `issuer` (and any other key given), on each database."""
    monkeypatch.setenv(SECRET_ENV, "test-client-secret")
    engine = make_engine(migrated_db_url)
    made: list[Web] = []

    def make(issuer: str, **sso: str) -> Web:
        settings = {
            "provider": "oidc",
            "issuer": issuer,
            "client_id": "mailbridge-console",
            "client_secret_env": SECRET_ENV,
            **sso,
        }
        made.append(make_web(tmp_path, engine, web={"sso": settings}))
        return made[-1]

    yield make
    for web in made:
        for client in web.clients:
            client.close()
    engine.dispose()


@pytest.fixture
def web(sites: Callable[..., Web], provider: Provider) -> Web:
    return sites(provider.issuer)


def console_state(web: Web) -> Any:
    """The app's shared state (web/app.py Console), where its SSO client lives."""
    return web.app.state.console


def start(client: TestClient, csrf: str, next_path: str = "/") -> Response:
    return client.post("/sign-in/sso", data={"csrf": csrf, "next": next_path})


def sign_in_at_provider(authorize_url: str, sub: str) -> str:
    """Sign in at the provider as `sub`, as a person would: the callback path and query it
    sends the browser back to."""
    with httpx.Client(trust_env=False, timeout=10) as browser:
        location = authorize(browser, authorize_url, sub)
    back = urlsplit(location)
    assert f"{back.scheme}://{back.netloc}" == "http://127.0.0.1:8080"
    return f"{back.path}?{back.query}"


def round_trip(web: Web, sub: str) -> tuple[TestClient, Response]:
    client, csrf = web.anonymous()
    started = start(client, csrf)
    assert started.status_code == 303, started.text
    callback = sign_in_at_provider(started.headers["location"], sub)
    return client, client.get(callback)


def audit(web: Web, action: str) -> list[AuditRecord]:
    with Session(web.engine) as session:
        return list(session.exec(select(AuditRecord).where(AuditRecord.action == action)))


def s256(verifier: str) -> str:
    """The PKCE code challenge for a verifier (RFC 7636, S256)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def test_a_coordinator_signs_in_with_single_sign_on(
    web: Web, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.set_user("entra-object-id-1", {"email": COORDINATOR.upper(), "name": "Support"})
    # The provider accepts any code_verifier, so what the console sends it is watched
    # (and passed on unchanged): the verifier must be the one the challenge was made from.
    sso_client = console_state(web).sso.client
    exchanged: list[dict[str, Any]] = []
    fetch = sso_client.fetch_access_token

    async def watched(**params: Any) -> Any:
        exchanged.append(params)
        return await fetch(**params)

    monkeypatch.setattr(sso_client, "fetch_access_token", watched)
    client, csrf = web.anonymous()

    started = start(client, csrf, "/?status=new")

    assert started.status_code == 303  # as after every form: followed with a GET
    sent_to = urlsplit(started.headers["location"])
    assert f"{sent_to.scheme}://{sent_to.netloc}" == provider.issuer
    query = parse_qs(sent_to.query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43  # base64url of a SHA-256
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == ["http://127.0.0.1:8080/sign-in/sso/callback"]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}

    back = client.get(sign_in_at_provider(started.headers["location"], "entra-object-id-1"))

    assert back.status_code == 303, back.text
    assert back.headers["location"] == "/?status=new"
    [params] = exchanged
    assert s256(params["code_verifier"]) == query["code_challenge"][0]
    assert SESSION_COOKIE in back.headers["set-cookie"]
    home = client.get("/")
    assert home.status_code == 200
    assert "Member queries dashboard" in home.text
    [record] = audit(web, "sign-in")
    assert (record.actor, record.channel, record.detail) == (COORDINATOR, "web", "single sign-on")


def test_a_callback_with_another_browsers_state_signs_nobody_in(
    web: Web, provider: Provider
) -> None:
    """The code and state belong to the browser that started: replayed elsewhere they fail."""
    provider.set_user("entra-object-id-2", {"email": COORDINATOR})
    client, csrf = web.anonymous()
    callback = sign_in_at_provider(start(client, csrf).headers["location"], "entra-object-id-2")
    other, _ = web.anonymous()

    answer = other.get(callback)

    assert answer.status_code == 403
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert audit(web, "sign-in") == []
    [failed] = audit(web, "sign-in failed")
    assert failed.detail.startswith("single sign-on: the provider refused")


def test_someone_the_directory_does_not_know_is_refused(web: Web, provider: Provider) -> None:
    provider.set_user("stranger", {"email": "someone.else@example.gov.uk"})

    client, answer = round_trip(web, "stranger")

    assert answer.status_code == 403
    assert "your account is not one this service knows" in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert client.get("/").status_code == 303  # still signed out
    [failed] = audit(web, "sign-in failed")
    assert (failed.actor, failed.detail) == (
        "someone.else@example.gov.uk",
        "single sign-on: not in the directory",
    )


def test_a_provider_that_gives_no_address_signs_nobody_in(web: Web, provider: Provider) -> None:
    provider.set_user("no-mail", {"name": "Nobody Known", "preferred_username": COORDINATOR})

    _, answer = round_trip(web, "no-mail")

    assert answer.status_code == 403
    assert audit(web, "sign-in") == []
    [failed] = audit(web, "sign-in failed")
    assert failed.detail == "single sign-on: no email claim"


def test_the_preferred_username_claim_can_name_the_person(
    sites: Callable[..., Web], provider: Provider
) -> None:
    """Entra ID's sign-in name, for tenants whose tokens carry no email claim."""
    web = sites(provider.issuer, claim="preferred_username")
    provider.set_user("upn-only", {"preferred_username": COORDINATOR})

    client, answer = round_trip(web, "upn-only")

    assert answer.status_code == 303, answer.text
    assert "Member queries dashboard" in client.get("/").text
    [record] = audit(web, "sign-in")
    assert record.detail == "single sign-on"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_provider_that_does_not_answer_gets_one_line(sites: Callable[..., Web]) -> None:
    web = sites(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    client, csrf = web.anonymous()

    answer = start(client, csrf)

    assert answer.status_code == 502
    assert "Single sign-on is not answering just now" in answer.text
    assert "Traceback" not in answer.text


def test_entra_id_refuses_guests_and_other_tenants() -> None:
    """An Entra guest's email is its home tenant's word, not the council's (unit: the
    provider is Microsoft's, so no local provider plays it)."""
    from mailbridge.config import Config
    from mailbridge.signin.sso import Sso

    tenant = "11111111-2222-3333-4444-555555555555"
    config = Config.model_validate(
        {
            "web": {
                "sso": {
                    "provider": "entra",
                    "tenant_id": tenant,
                    "client_id": "x",
                    "client_secret_env": "PATH",
                }
            }
        }
    )
    sso = Sso(config)
    iss = f"https://login.microsoftonline.com/{tenant}/v2.0"
    own = {"email": "member.support@example.gov.uk", "tid": tenant, "iss": iss}
    assert sso.address(own) == "member.support@example.gov.uk"
    guest = own | {"idp": "https://sts.windows.net/99999999-0000-0000-0000-000000000000/"}
    assert sso.address(guest) is None
    assert sso.address(own | {"tid": "99999999-0000-0000-0000-000000000000"}) is None
    assert sso.address({k: v for k, v in own.items() if k != "tid"}) is None
