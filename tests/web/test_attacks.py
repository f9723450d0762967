"""What an attacker would try against the console: hostile input on every route, open
redirects through `next`, sessions that outlive the rules that made them."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from mailbridge.signin import links, sessions
from mailbridge.store.db import transaction
from mailbridge.store.models import AuditRecord, Person, SigninLink
from mailbridge.web.headers import MAX_BODY
from mailbridge.web.routing import SESSION_COOKIE
from tests.oidc import Provider, authorize, oidc_provider
from tests.web.conftest import Web, make_web
from tests.web.test_roles import _fill, routes
from tests.web.test_signin import _ask, _link, _use

ODD = [
    "",
    "x" * 5000,
    "%00",
    "\x00",
    "%ff%fe",
    "\u202e\u0000",
    "<script>alert(1)</script>",
    "'; DROP TABLE person; --",
    "9" * 40,
    "-1",
    "2026-02-30",
    "0001-01-01",
    "9999-12-31",
]


def test_hostile_query_strings_and_forms_never_crash_a_route(web: Web) -> None:
    """Every route, as a coordinator and as nobody, answers odd input with < 500."""
    web.pothole()
    coordinator, csrf = web.signed_in("coordinator")
    nobody, anon_csrf = web.anonymous()
    for method, path, _role in routes(web):
        url = _fill(web, path)
        for client, token in ((coordinator, csrf), (nobody, anon_csrf)):
            for odd in ODD:
                fields = ("next", "from", "to", "format", "token", "compare", "email", "q")
                query = {name: odd for name in fields}
                if method == "GET":
                    answer = client.get(url, params=query)
                else:
                    answer = client.post(url, params=query, data={**query, "csrf": token})
                assert answer.status_code < 500, (method, url, odd, answer.status_code)
                assert "<script>alert" not in answer.text


HOSTILE_NEXT = [
    "//evil.example",
    "/\\evil.example",
    "/%2F%2Fevil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "/\r\nSet-Cookie: x=1",
    "/%0d%0aSet-Cookie:%20x=1",
    "https://evil.example",
    "/\x00//evil.example",
    " //evil.example",
    "/./\\/evil.example",
    "\\\\evil.example",
]


def _same_site(location: str) -> bool:
    parts = urlsplit(location)
    return (
        not parts.scheme
        and not parts.netloc
        and location.startswith("/")
        and not location.startswith("//")
        and "\\" not in location
        and not re.search(r"[\x00-\x20\x7f]", location)
    )


@pytest.mark.parametrize("hostile", HOSTILE_NEXT)
def test_next_never_leads_off_the_site(web: Web, hostile: str) -> None:
    client, _ = web.signed_in("coordinator")
    answer = client.get("/sign-in", params={"next": hostile})
    assert answer.status_code == 303
    assert _same_site(answer.headers["location"]), answer.headers["location"]
    assert "set-cookie: x" not in str(answer.headers).lower()


def test_next_through_an_emailed_link_never_leads_off_the_site(web: Web) -> None:
    for hostile in HOSTILE_NEXT:
        client, csrf = web.anonymous()
        client.post(
            "/sign-in/link",
            data={"email": "member.support@example.gov.uk", "csrf": csrf, "next": hostile},
        )
        _, answer = _use(web, _link(web))
        assert answer.status_code == 303
        assert _same_site(answer.headers["location"]), (hostile, answer.headers["location"])
        web.clock.advance(minutes=16)  # past the per-address limit's window


def test_a_kept_session_is_cut_short_once_its_officer_is_made_a_coordinator(web: Web) -> None:
    """Keep-me-logged-in is off for coordinators: flagging an officer as one must not leave
    them a 30-day session from before."""
    client, _ = web.signed_in("officer", keep=True)
    assert client.get("/my-cases").status_code == 200  # signed in: an officer's own page
    with transaction(web.engine) as session:
        person = session.get(Person, web.people["officer"])
        assert person is not None
        person.coordinator = True
    web.clock.advance(hours=13)  # past the absolute end of a coordinator's session
    answer = client.get("/")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/sign-in")


def test_one_link_posted_at_once_from_many_browsers_signs_in_only_one(web: Web) -> None:
    """Eight redemptions of one link released together, each in its own transaction: the
    conditional UPDATE lets exactly one through, on either database."""
    _ask(web, "member.support@example.gov.uk")
    signed = parse_qs(urlsplit(_link(web)).query)["token"][0]
    key = web.app.state.console.key
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def redeem() -> None:
        start.wait()
        try:
            with transaction(web.engine) as session:
                links.redeem(session, key, signed, minutes=15, now=web.clock())
            outcomes.append("signed in")
        except links.LinkRefused as refused:
            outcomes.append(str(refused))

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(set(outcomes)) == sorted({"signed in", links._USED})
    assert outcomes.count("signed in") == 1
    assert len(outcomes) == 8


@pytest.fixture
def sso_web(
    tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Web, Provider]]:
    from mailbridge.store.db import make_engine

    monkeypatch.setenv("MB_TEST_SSO_SECRET", "not-a-real-secret")
    engine = make_engine(migrated_db_url)
    with oidc_provider() as provider:
        sso = {
            "provider": "oidc",
            "issuer": provider.issuer,
            "client_id": "mailbridge",
            "client_secret_env": "MB_TEST_SSO_SECRET",
        }
        site = make_web(tmp_path, engine, web={"sso": sso})
        yield site, provider
        for client in site.clients:
            client.close()
    engine.dispose()


def _sso_round_trip(site: Web, provider: Provider, sub: str) -> tuple[TestClient, str]:
    """Press the SSO button, sign in at the provider as `sub`: the browser and the callback
    path it is sent back to."""
    client, csrf = site.anonymous()
    started = client.post("/sign-in/sso", data={"csrf": csrf, "next": "/"})
    assert started.status_code in (302, 303, 307), started.text
    with httpx.Client(trust_env=False, timeout=10) as http:
        back = authorize(http, started.headers["location"], sub)
    parts = urlsplit(back)
    return client, f"{parts.path}?{parts.query}"


def test_sso_refuses_an_address_the_provider_says_it_has_not_verified(
    sso_web: tuple[Web, Provider],
) -> None:
    site, provider = sso_web
    provider.set_user(
        "intruder", {"email": "member.support@example.gov.uk", "email_verified": False}
    )
    client, callback = _sso_round_trip(site, provider, "intruder")
    answer = client.get(callback)
    assert answer.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_sso_signs_in_a_verified_address_once_and_refuses_the_same_callback_again(
    sso_web: tuple[Web, Provider],
) -> None:
    site, provider = sso_web
    provider.set_user("support", {"email": "member.support@example.gov.uk", "email_verified": True})
    client, callback = _sso_round_trip(site, provider, "support")
    answer = client.get(callback)
    assert answer.status_code == 303, answer.text
    assert SESSION_COOKIE in client.cookies
    again = site.client()
    again.cookies.update(client.cookies)
    again.cookies.delete(SESSION_COOKIE)
    replay = again.get(callback)
    assert replay.status_code < 500
    assert SESSION_COOKIE not in again.cookies


@pytest.mark.parametrize(
    "query", ["", "?state=x&code=y", "?error=access_denied", "?code=" + "y" * 5000]
)
def test_a_forged_sso_callback_signs_nobody_in_and_never_crashes(
    sso_web: tuple[Web, Provider], query: str
) -> None:
    site, _ = sso_web
    client, _ = site.anonymous()
    answer = client.get("/sign-in/sso/callback" + query)
    assert 400 <= answer.status_code < 500
    assert SESSION_COOKIE not in client.cookies


def test_a_huge_upload_to_a_public_form_is_refused_before_it_is_stored(web: Web) -> None:
    """Forms take small fields; a body of many megabytes (multipart files are spooled to
    disk whatever their size) gets 413, with or without a Content-Length."""
    client, csrf = web.anonymous()
    huge = b"x" * (MAX_BODY + 1)
    answer = client.post(
        "/sign-in/link",
        data={"csrf": csrf, "email": "member.support@example.gov.uk"},
        files={"junk": ("junk.bin", huge)},
    )
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:
        yield f"csrf={csrf}&email=x%40example.gov.uk&junk=".encode()
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536

    streamed = client.post(
        "/sign-in/link",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert web.outbox("signin_link") == []


def test_requests_for_one_address_at_once_send_no_more_links_than_the_limit(web: Web) -> None:
    """Twelve requests released together for one address: the per-address limit holds on
    either database (counted and recorded under one lock), so nobody's inbox can be flooded
    by asking in parallel."""
    services = web.council.services
    key = web.app.state.console.key
    start = threading.Barrier(12)
    sent: list[bool] = []

    def ask(n: int) -> None:
        start.wait()
        with transaction(web.engine) as session:
            asked = links.request_link(
                session,
                services,
                key,
                address="member.support@example.gov.uk",
                client=f"203.0.113.{n}",
                keep=False,
                next_path="/",
                now=web.clock(),
            )
        sent.append(asked.sent)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(sent) == 12
    assert sent.count(True) == web.config.web.links_per_address
    assert len(web.outbox("signin_link")) == web.config.web.links_per_address


def test_addresses_typed_into_the_sign_in_form_are_not_kept_past_their_use(web: Web) -> None:
    """The form records every address typed into it, known or not (to count requests):
    once no count or link can need a row, it is gone."""
    _ask(web, "stranger@example.org")
    web.clock.advance(hours=2)
    _ask(web, "member.support@example.gov.uk")
    with Session(web.engine) as session:
        kept = session.exec(select(SigninLink.address)).all()
    assert list(kept) == ["member.support@example.gov.uk"]


def test_the_per_client_limit_counts_an_ipv6_network_not_each_of_its_addresses(web: Web) -> None:
    """Anyone with IPv6 holds a /64 (2^64 addresses): counting each address alone would
    set no limit at all."""
    services = web.council.services
    key = web.app.state.console.key
    sent = []
    for n in range(web.config.web.links_per_client + 2):
        with transaction(web.engine) as session:
            asked = links.request_link(
                session,
                services,
                key,
                address=f"someone{n}@example.org",
                client=f"2001:db8:1:2:{n:x}::{n + 1:x}",
                keep=False,
                next_path="/",
                now=web.clock(),
            )
        sent.append(asked.why)
    assert sent.count("too many from this client") == 2
    assert links.counted_as("::ffff:192.0.2.7") == "192.0.2.7"  # not one bucket for all IPv4
    assert links.counted_as("192.0.2.7") != links.counted_as("192.0.2.8")


def test_signing_in_again_in_one_browser_ends_the_session_it_held(web: Web) -> None:
    """A browser holds one session: signing in anew (as anyone) leaves no other alive
    behind it for whoever copied the old cookie."""
    client, session_csrf = web.signed_in("officer")
    old = client.cookies[SESSION_COOKIE]
    asked = client.post(
        "/sign-in/link", data={"email": "member.support@example.gov.uk", "csrf": session_csrf}
    )
    assert asked.status_code == 200
    landing = client.get(_link(web))
    token = re.search(r'name="token" value="([^"]+)"', landing.text)
    assert token
    csrf = re.search(r'name="csrf" value="([^"]+)"', landing.text)
    assert csrf
    answer = client.post("/sign-in/link/use", data={"token": token.group(1), "csrf": csrf.group(1)})
    assert answer.status_code == 303
    with Session(web.engine) as session:
        assert sessions.live(session, old, web.clock()) is None


def test_a_forged_sso_error_writes_no_control_characters_into_the_audit(
    sso_web: tuple[Web, Provider],
) -> None:
    """Anyone can call the callback with ?error=...&error_description=...: what reaches the
    audit (read in a terminal by `mailbridge audit`) is one printable line."""
    site, _ = sso_web
    client, _ = site.anonymous()
    answer = client.get(
        "/sign-in/sso/callback",
        params={"error": "access_denied", "error_description": "x\n\x1b[2J\r2026 sign-in ok"},
    )
    assert answer.status_code == 403
    with Session(site.engine) as session:
        details = session.exec(select(AuditRecord.detail)).all()
    assert details
    assert all(detail is None or detail.isprintable() for detail in details), details
