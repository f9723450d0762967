"""Every route, as every role and as nobody: each route declares the role it needs, and the
answer is the page, 403, or a redirect to sign-in, never a page it should not be."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from sqlmodel import Session, select

from mailbridge.signin import api_tokens
from mailbridge.signin.roles import Role
from mailbridge.store.models import QuarantineItem
from mailbridge.web.routing import ROLE_KEY
from tests.helpers.council import JANE, new_email
from tests.web.case_helpers import SURVEY_PDF, with_survey
from tests.web.conftest import ROLES, Web

# What a route's {parameter} is filled with: something that exists, so the answer is about
# the role and not about a missing thing.
SAMPLES: dict[str, Callable[[Web], str]] = {
    "reference": lambda web: web.pothole(),
    "attachment_id": lambda web: str(with_survey(web)[SURVEY_PDF]),
    "item_id": lambda web: _quarantined(web),
}


def _quarantined(web: Web) -> str:
    """The id of a message quarantined by a real pass (a stranger's), made once."""
    with Session(web.engine) as session:
        found = session.exec(select(QuarantineItem.id)).first()
    if found is None:
        web.council.deliver(new_email("bob@example.org", "Bins not collected", "Missed again."))
        return _quarantined(web)
    return str(found)


# The JSON API's roles: held by a bearer token (web/api.py), never by a person's session.
API_ROLES = {Role.API_READ, Role.API_WRITE}
# What each kind of token holds: a write token reads too; a revoked one holds nothing.
TOKENS: dict[str, set[Role]] = {
    "read": {Role.API_READ},
    "write": {Role.API_READ, Role.API_WRITE},
    "revoked": set(),
}

# What an API route's POST sends, so a token that may call it gets its answer (a note's or
# a response's text unless named here).
API_BODIES: dict[str, dict[str, str]] = {
    "/api/v1/cases": {"member": JANE, "subject": "Checking who may", "details": "A test."},
}

# Who holds which role (signin/roles.py), by the keys of tests/web/conftest.ROLES.
HOLDS: dict[str, set[Role]] = {
    "coordinator": {Role.COORDINATOR},
    "officer": {Role.OFFICER},
    "member": {Role.MEMBER, Role.COUNCILLOR},
    "delegate": {Role.DELEGATE, Role.COUNCILLOR},
    "officer_coordinator": {Role.OFFICER, Role.COORDINATOR},
}


def _api_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every APIRoute, inside included routers too (FastAPI keeps those wrapped)."""
    found: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix, route))
        elif hasattr(route, "original_router"):
            inner = prefix + route.include_context.prefix
            found += _api_routes(route.original_router.routes, inner)
    return found


def routes(web: Web) -> list[tuple[str, str, Role]]:
    found = []
    for prefix, route in _api_routes(web.app.router.routes):
        extra: dict[str, Any] = route.openapi_extra or {}
        assert ROLE_KEY in extra, f"{prefix + route.path} declares no role"
        for method in route.methods:
            found.append((method, prefix + route.path, Role(extra[ROLE_KEY])))
    return found


def _fill(web: Web, path: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        assert name in SAMPLES, f"add a sample for {{{name}}} to SAMPLES"
        return SAMPLES[name](web)

    return re.sub(r"\{([^}]+)\}", value, path)


def _expected(role: Role, who: str | None) -> str:
    if role == Role.PUBLIC:
        return "answered"
    if who is None:
        return "sign in"
    if role == Role.SIGNED_IN or role in HOLDS[who]:
        return "answered"
    return "forbidden"


def _outcome(answer: Any) -> str:
    if answer.status_code == 303 and answer.headers["location"] == "/sign-in?out=1":
        return "answered"  # signed out
    if answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?"):
        return "sign in"
    if answer.status_code == 303 and answer.headers["location"] == "/sign-in":
        return "sign in"
    if answer.status_code == 403:
        return "forbidden"
    assert answer.status_code < 500, answer.text
    return "answered"


def test_every_route_as_every_role_and_as_nobody(web: Web) -> None:
    table = routes(web)
    assert len(table) >= 8  # the sign-in pages and the coordinators' console at least
    seen: list[tuple[Role, str | None, str]] = []
    for who in (None, *ROLES):
        if who is None:
            client, csrf = web.anonymous()
        else:
            client, csrf = web.signed_in(who)
        for method, template, role in table:
            if (method, template) == ("POST", "/sign-out"):
                continue  # would end this client's session: the last call below
            path = _fill(web, template)
            if role in API_ROLES:  # a session cookie is no API token
                answer = client.request(method, path, json={"text": "x"})
                assert answer.status_code == 401, f"{method} {template} as {who}: {answer}"
                continue
            answer = client.request(method, path, data={"csrf": csrf} if method == "POST" else None)
            got = _outcome(answer)
            want = _expected(role, who)
            if role == Role.PUBLIC and who is not None and answer.status_code == 303:
                got = "answered"  # a signed-in visitor to a sign-in page goes on to the console
            seen.append((role, who, got))
            assert got == want, f"{method} {template} as {who or 'nobody'}: {got}, not {want}"
        out = client.post("/sign-out", data={"csrf": csrf})
        assert _outcome(out) == _expected(Role.SIGNED_IN, who)
    # Each role's routes refuse exactly those who do not hold it.
    for needed, refusers in (
        (Role.COORDINATOR, {"officer", "member", "delegate"}),
        (Role.OFFICER, {"coordinator", "member", "delegate"}),
        (Role.COUNCILLOR, {"coordinator", "officer", "officer_coordinator"}),
    ):
        if any(role == needed for _, _, role in table):
            refused = {who for role, who, got in seen if role == needed and got == "forbidden"}
            assert refused == refusers, needed


def test_a_route_without_a_declared_role_is_caught(web: Web) -> None:
    from fastapi import APIRouter

    router = APIRouter()
    router.add_api_route("/undeclared", lambda: "x", methods=["GET"])
    web.app.include_router(router)
    try:
        routes(web)
    except AssertionError as exc:
        assert "/undeclared declares no role" in str(exc)
    else:
        raise AssertionError("an undeclared route passed")


def _api_expected(role: Role, token: str | None) -> int:
    if token is None or not TOKENS[token]:
        return 401
    return 403 if role not in TOKENS[token] else 200


def test_every_api_route_with_every_kind_of_token_and_none(web: Web) -> None:
    table = [(m, t, r) for m, t, r in routes(web) if r in API_ROLES]
    assert {r for _, _, r in table} == API_ROLES
    secrets = {
        scope: api_tokens.create(web.engine, scope, scope, created_by="test").token
        for scope in ("read", "write")
    }
    secrets["revoked"] = api_tokens.create(web.engine, "gone", "write", created_by="test").token
    api_tokens.revoke(web.engine, "gone")
    for token in (None, *TOKENS):
        client = web.client()
        if token is not None:
            client.headers["Authorization"] = f"Bearer {secrets[token]}"
        for method, template, role in table:
            body = API_BODIES.get(template, {"text": "x"})
            answer = client.request(method, _fill(web, template), json=body)
            got = 200 if answer.status_code in (200, 201) else answer.status_code
            want = _api_expected(role, token)
            assert got == want, f"{method} {template} with {token or 'no'} token: {got}, not {want}"
