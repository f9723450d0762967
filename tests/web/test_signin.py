"""Signing in by emailed link: single use, 15 minutes, rate-limited, revealing nobody;
sessions that end when idle, at their absolute end and at sign-out; CSRF on every form."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from sqlmodel import Session, select

from mailbridge.store.models import AuditRecord
from mailbridge.web.routing import SESSION_COOKIE
from tests.web.conftest import Web

COORDINATOR = "member.support@example.gov.uk"


def _link(web: Web) -> str:
    """The sign-in link in the newest sign-in email, as a path with its query."""
    sent = web.outbox("signin_link")
    assert sent, "no sign-in email queued"
    message = email.message_from_bytes(sent[-1].raw, policy=policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"http://127\.0\.0\.1:\d+(/sign-in/link\?token=\S+)", text)
    assert found, text
    return found.group(1)


def _ask(web: Web, address: str, *, keep: bool = False, client=None) -> str:
    if client is None:
        client, csrf = web.anonymous()
    else:
        csrf = client.cookies["mailbridge_csrf"]
    answer = client.post(
        "/sign-in/link",
        data={"email": address, "csrf": csrf, "next": "/", **({"keep": "yes"} if keep else {})},
    )
    assert answer.status_code == 200, answer.text
    assert "Check your email" in answer.text
    return answer.text


def _use(web: Web, path: str):
    client, csrf = web.anonymous()
    landing = client.get(path)
    assert landing.status_code == 200
    assert "Continue signing in" in landing.text
    token = re.search(r'name="token" value="([^"]+)"', landing.text)
    assert token
    return client, client.post("/sign-in/link/use", data={"token": token.group(1), "csrf": csrf})


def _audit(web: Web, action: str) -> list[AuditRecord]:
    with Session(web.engine) as session:
        return list(session.exec(select(AuditRecord).where(AuditRecord.action == action)))


def test_a_coordinator_signs_in_by_emailed_link_and_lands_on_the_dashboard(web: Web) -> None:
    _ask(web, COORDINATOR.upper())
    client, answer = _use(web, _link(web))
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "Max-Age" not in cookie  # not kept: ends with the browser
    home = client.get("/")
    assert home.status_code == 200
    assert "Member queries dashboard" in home.text
    [record] = _audit(web, "sign-in")
    assert record.actor == COORDINATOR and record.channel == "web"
    assert record.detail == "email link"


def test_a_link_works_once(web: Web) -> None:
    _ask(web, COORDINATOR)
    path = _link(web)
    _, first = _use(web, path)
    assert first.status_code == 303
    _, again = _use(web, path)
    assert again.status_code == 400
    assert "already been used" in again.text
    assert SESSION_COOKIE not in again.headers.get("set-cookie", "")
    assert [r.detail for r in _audit(web, "sign-in failed")] == [
        "email link: This sign-in link has already been used. Ask for a new one below."
    ]


def test_a_link_expires_after_15_minutes(web: Web) -> None:
    _ask(web, COORDINATOR)
    path = _link(web)
    web.clock.advance(minutes=15, seconds=1)
    _, answer = _use(web, path)
    assert answer.status_code == 400
    assert "expired" in answer.text


def test_an_edited_link_is_refused_before_anything_is_looked_up(web: Web) -> None:
    _ask(web, COORDINATOR)
    path = _link(web)
    client, _ = web.anonymous()
    answer = client.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
    assert answer.status_code == 400
    assert "not valid" in answer.text


def test_the_page_says_the_same_for_an_unknown_address_and_sends_nothing(web: Web) -> None:
    known = _ask(web, COORDINATOR)
    unknown = _ask(web, "someone.else@example.org")
    assert known.replace(COORDINATOR, "X") == unknown.replace("someone.else@example.org", "X")
    assert len(web.outbox("signin_link")) == 1


def test_links_are_rate_limited_per_address_and_per_client(web: Web) -> None:
    for _ in range(5):
        _ask(web, COORDINATOR)
    assert len(web.outbox("signin_link")) == web.config.web.links_per_address
    client, _ = web.anonymous()
    for n in range(12):
        _ask(web, f"nobody{n}@example.org", client=client)
    _ask(web, "priya.shah@example.gov.uk", client=client)  # one client, over its limit
    assert not [m for m in web.outbox("signin_link") if "priya" in m.recipients]
    web.clock.advance(minutes=16)
    _ask(web, COORDINATOR)
    assert len(web.outbox("signin_link")) == web.config.web.links_per_address + 1


def test_a_bad_address_is_one_clear_error_on_the_form(web: Web) -> None:
    client, csrf = web.anonymous()
    answer = client.post("/sign-in/link", data={"email": "not an address", "csrf": csrf})
    assert answer.status_code == 400
    assert "govuk-error-summary" in answer.text
    assert "Enter an email address in the correct format" in answer.text


@pytest.mark.parametrize("token", [None, "", "forged-token-forged-token"])
def test_a_form_without_its_csrf_token_does_nothing(web: Web, token: str | None) -> None:
    client, _ = web.anonymous()
    data = {"email": COORDINATOR} | ({"csrf": token} if token is not None else {})
    answer = client.post("/sign-in/link", data=data)
    assert answer.status_code == 400
    assert "Your form had expired" in answer.text
    assert web.outbox("signin_link") == []
    signed, _ = web.signed_in("coordinator")
    out = signed.post("/sign-out", data={"csrf": "wrong"})
    assert out.status_code == 400
    assert signed.get("/").status_code == 200  # still signed in


def test_a_session_ends_after_30_idle_minutes(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    for _ in range(3):
        web.clock.advance(minutes=29)
        assert client.get("/").status_code == 200
    web.clock.advance(minutes=31)
    answer = client.get("/?status=new")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=/%3Fstatus%3Dnew"


def test_a_session_ends_after_12_hours_however_busy(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    for _ in range(11 * 3):
        web.clock.advance(minutes=20)
        assert client.get("/").status_code == 200
    web.clock.advance(minutes=61)
    assert client.get("/").status_code == 303


def test_keep_me_logged_in_lasts_30_days_but_not_for_coordinators(web: Web) -> None:
    member, _ = web.signed_in("member", keep=True)
    coordinator, _ = web.signed_in("coordinator", keep=True)
    web.clock.advance(days=3)
    assert member.get("/enquiries").status_code == 200  # a member's home (/ sends them there)
    assert coordinator.get("/").status_code == 303
    web.clock.advance(days=27, minutes=1)
    assert member.get("/enquiries").headers["location"].startswith("/sign-in")


def test_keep_me_logged_in_sets_a_lasting_cookie_when_allowed(web: Web) -> None:
    client, csrf = web.anonymous()
    client.post(
        "/sign-in/link",
        data={"email": "cllr.jane.smith@example.gov.uk", "csrf": csrf, "keep": "yes"},
    )
    _, answer = _use(web, _link(web))
    assert f"Max-Age={30 * 24 * 3600}" in answer.headers["set-cookie"]
    _ask(web, COORDINATOR, keep=True)
    _, answer = _use(web, _link(web))
    assert "Max-Age" not in answer.headers["set-cookie"]


def test_signing_out_ends_the_session_on_the_server(web: Web) -> None:
    client, csrf = web.signed_in("coordinator")
    cookie = client.cookies[SESSION_COOKIE]
    out = client.post("/sign-out", data={"csrf": csrf})
    assert out.status_code == 303
    again = web.client()
    again.cookies.set(SESSION_COOKIE, cookie)
    assert again.get("/").status_code == 303
    assert [r.actor for r in _audit(web, "sign-out")] == [COORDINATOR]


def test_someone_removed_from_the_directory_is_signed_out_at_their_next_click(web: Web) -> None:
    from mailbridge.store.db import transaction
    from mailbridge.store.models import Person

    client, _ = web.signed_in("officer")
    assert client.get("/my-cases").status_code == 200  # an officer's own page
    with transaction(web.engine) as session:
        person = session.get(Person, web.people["officer"])
        assert person is not None
        person.active = False
    answer = client.get("/my-cases")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in")


def test_every_answer_carries_the_security_headers(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    for path in ("/", "/sign-in", "/static/mailbridge.css", "/no-such-page"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("trusted", [[], ["testclient"]])
def test_forwarded_addresses_are_believed_only_from_a_trusted_proxy(
    tmp_path, migrated_db_url: str, trusted: list[str]
) -> None:
    from mailbridge.store.db import make_engine
    from mailbridge.store.models import SigninLink
    from tests.web.conftest import make_web

    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, web={"trusted_proxies": trusted})
    try:
        client, csrf = site.anonymous()
        client.post(
            "/sign-in/link",
            data={"email": COORDINATOR, "csrf": csrf},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        with Session(engine) as session:
            [link] = session.exec(select(SigninLink)).all()
        assert link.client == ("203.0.113.9" if trusted else "testclient")
    finally:
        for c in site.clients:
            c.close()
        engine.dispose()


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [("https://mailbridge.example.gov.uk", True), ("http://127.0.0.1:8080", False)],
)
def test_cookies_are_secure_and_hsts_sent_unless_plain_http_on_loopback(
    tmp_path, migrated_db_url: str, base_url: str, secure: bool
) -> None:
    """Served over https: every cookie `Secure` and every answer `Strict-Transport-Security`;
    as plain http on loopback (the demo), neither, or the browser could not sign in."""
    from fastapi.testclient import TestClient

    from mailbridge.store.db import make_engine
    from tests.web.conftest import make_web

    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, web={"base_url": base_url})
    client = TestClient(site.app, base_url=base_url, follow_redirects=False)
    try:
        first = client.get("/sign-in")
        asked = client.post(
            "/sign-in/link",
            data={"email": COORDINATOR, "csrf": client.cookies["mailbridge_csrf"], "next": "/"},
        )
        assert asked.status_code == 200 and "Check your email" in asked.text
        message = email.message_from_bytes(
            site.outbox("signin_link")[-1].raw, policy=policy.default
        )
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found = re.search(re.escape(base_url) + r"(/sign-in/link\?token=\S+)", text)
        assert found, text
        landing = client.get(found.group(1))
        token = re.search(r'name="token" value="([^"]+)"', landing.text)
        assert token
        used = client.post(
            "/sign-in/link/use",
            data={"token": token.group(1), "csrf": client.cookies["mailbridge_csrf"]},
        )
        assert used.status_code == 303 and used.headers["location"] == "/"
        home = client.get("/")
        assert home.status_code == 200  # the session cookie came back
        cookies = {
            "csrf": first.headers["set-cookie"],
            "session": used.headers["set-cookie"],
        }
        assert cookies["session"].startswith(f"{SESSION_COOKIE}=")
        for name, cookie in cookies.items():
            flags = {flag.strip().lower() for flag in cookie.split(";")[1:]}
            assert ("secure" in flags) is secure, (name, cookie)
            assert "httponly" in flags and "samesite=lax" in flags, (name, cookie)
        for answer in (first, asked, landing, used, home):
            hsts = answer.headers.get("strict-transport-security")
            assert hsts == ("max-age=31536000" if secure else None), answer.request.url
    finally:
        client.close()
        for c in site.clients:
            c.close()
        engine.dispose()


def test_the_demo_names_the_button_the_link_page_shows(web: Web) -> None:
    """scripts/demo tells people which button to press on the page the link opens: the
    words must be that button's."""
    from pathlib import Path

    demo = (Path(__file__).parents[2] / "scripts" / "demo").read_text(encoding="utf-8")
    pressed = re.findall(r'press\s+"([^"]+)"', demo)
    assert pressed, "the demo says which button to press"
    _ask(web, COORDINATOR)
    landing = web.client().get(_link(web))
    buttons = [b.strip() for b in re.findall(r"<button[^>]*>([^<]*)</button>", landing.text)]
    assert buttons == ["Sign in"]
    for words in pressed:
        assert words in buttons, f'the demo says press "{words}"; the page shows {buttons}'
