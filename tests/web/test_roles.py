"""Every route, as every role and as nobody: each route declares the role it needs, and the
answer is the page, 403, or a redirect to sign-in, never a page it should not be.

Then every route about one case (the councillors', the officers', the coordinators' and
the API's), as everyone who might ask for it: its lead and additional officers, an officer
not on it, the member who raised it, another member, the member's delegate and another
member's, a coordinator, a read, a write and a revoked API token, and nobody, each with
the exact answer they must get (the page, 400 for a form let in but refused for what it
says, 403, 404, 401 or a redirect to sign in). A case someone has no standing on is 404."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from mailbridge.cases import officer_actions
from mailbridge.cases.coordinator import Upload
from mailbridge.cases.records import version_of
from mailbridge.signin import api_tokens
from mailbridge.signin.roles import Role
from mailbridge.store.db import make_engine
from mailbridge.store.models import Case, QuarantineItem
from mailbridge.web.routing import ROLE_KEY
from tests.factories import add_person, fixture_bytes
from tests.helpers.council import ANN, JANE, PRIYA, RAJ, REF, SAM, new_email
from tests.servers.database import DATABASES, migrated_copy
from tests.web.case_helpers import SURVEY_PAGE, SURVEY_PDF, attachments_of, with_survey
from tests.web.conftest import ROLES, Web, make_web

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


# --- who may reach one case ----------------------------------------------------------
#
# Every route about one case, called as each person or token that might ask for it, with
# the exact answer each must get. Jane's pothole (REF): Priya leads, Sam is an additional
# officer, Ann is on no case; Tom is Jane's delegate; Raj is another member, with a
# delegate of his own. A form is sent as far as the authorisation and no further: it is
# refused for what it says (400, or 422 for the API) only once the sender was let in, so
# a 400 proves "allowed" and nothing on the case changes, whatever the order of the rows.

OK = "200"  # the page, or the file
INVALID = "400"  # let in; the form refused for what it says (nothing done)
FORBIDDEN = "403"
NOT_FOUND = "404"  # to them, no such case
SIGN_IN = "sign in"  # redirected to sign in, then back here
NO_TOKEN = "401"  # the API without a live token
UNPROCESSABLE = "422"  # the API let the token in; the body refused (nothing done)

# Who asks: a person signed in (by their key in the module's people), a token, or nobody.
SUBJECTS = (
    "lead",
    "additional",
    "unrelated_officer",
    "member",
    "other_member",
    "delegate",
    "other_delegate",
    "coordinator",
    "api_read",
    "api_write",
    "api_revoked",
    "nobody",
)
SESSIONS = SUBJECTS[:8]
TOKEN_SUBJECTS = {"api_read": "read", "api_write": "write", "api_revoked": "revoked"}

TOO_LONG = "x" * 5001  # over a member's request's 5,000 characters: refused once let in


def _answers(**given: str) -> dict[str, str]:
    """A row: the named subjects' answers; a person not named is refused by role (403),
    a token or nobody is sent to sign in (a bearer token is no session)."""
    row = {who: FORBIDDEN for who in SESSIONS}
    row |= {who: SIGN_IN for who in (*TOKEN_SUBJECTS, "nobody")}
    return row | given


def _member_route(yes: str) -> dict[str, str]:
    """A councillor's route: the member and their delegate `yes`; another member or theirs,
    nothing there (404); an officer or a coordinator, not their pages (403)."""
    return _answers(member=yes, delegate=yes, other_member=NOT_FOUND, other_delegate=NOT_FOUND)


def _officer_route(lead: str, additional: str) -> dict[str, str]:
    return _answers(lead=lead, additional=additional, unrelated_officer=NOT_FOUND)


def _coordinator_route(yes: str) -> dict[str, str]:
    return _answers(coordinator=yes)


def _api_route(read: str, write: str) -> dict[str, str]:
    row = {who: NO_TOKEN for who in SUBJECTS}  # a session cookie is no token; nor is nothing
    return row | {"api_read": read, "api_write": write}


# (method, route as the app declares it) -> (what a POST sends, each subject's answer).
# What an officer's POST sends: `version` is added (the case's, so the check passes), the
# text left empty so the lead or additional officer allowed to do it gets a 400.
CASE_ROUTES: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = {
    ("GET", "/enquiries/{reference}"): ({}, _member_route(OK)),
    ("GET", "/enquiries/{reference}/sent"): ({}, _member_route(OK)),
    ("GET", "/enquiries/{reference}/attachments/{attachment_id}"): ({}, _member_route(OK)),
    ("POST", "/enquiries/{reference}/update"): ({"text": TOO_LONG}, _member_route(INVALID)),
    ("POST", "/enquiries/{reference}/reopen"): ({"text": TOO_LONG}, _member_route(INVALID)),
    ("GET", "/my-cases/{reference}"): ({}, _officer_route(OK, OK)),
    ("GET", "/my-cases/{reference}/attachments/{attachment_id}"): ({}, _officer_route(OK, OK)),
    ("POST", "/my-cases/{reference}/respond"): (
        {"answer": "response", "text": ""},
        _officer_route(INVALID, FORBIDDEN),  # only the lead answers the member
    ),
    ("POST", "/my-cases/{reference}/extend"): (
        {"days": "5", "reason": "waiting", "text": ""},
        _officer_route(INVALID, FORBIDDEN),  # only the lead extends
    ),
    ("POST", "/my-cases/{reference}/note"): ({"text": ""}, _officer_route(INVALID, INVALID)),
    ("POST", "/my-cases/{reference}/contribute"): (
        {"text": ""},
        _officer_route(FORBIDDEN, INVALID),  # the lead answers; only the others contribute
    ),
    ("GET", "/cases/{reference}"): ({}, _coordinator_route(OK)),
    ("GET", "/cases/{reference}/attachments/{attachment_id}"): ({}, _coordinator_route(OK)),
    # The coordinators' actions, each refused without the case's version (nothing done).
    **{
        ("POST", f"/cases/{{reference}}/{name}"): ({}, _coordinator_route(INVALID))
        for name in (
            "assign",
            "reassign",
            "fields",
            "status",
            "pause",
            "resume",
            "extend",
            "note",
            "reply",
            "reopen",
            "link",
            "merge",
            "convert",
        )
    },
    ("GET", "/api/v1/cases/{reference}"): ({}, _api_route(OK, OK)),
    ("POST", "/api/v1/cases/{reference}/responses"): (
        {"text": ""},
        _api_route(FORBIDDEN, UNPROCESSABLE),
    ),
    ("POST", "/api/v1/cases/{reference}/notes"): (
        {"text": ""},
        _api_route(FORBIDDEN, UNPROCESSABLE),
    ),
}

# REF's other files, at each door that hands out files (the PDF sent to the member is the
# table's): the web page held back from sending on (mail/attachments.py) goes to the
# coordinators only; a file on an additional officer's contribution never to the member.
SITE_NOTES = "site notes.txt"
FILES: dict[str, dict[str, dict[str, str]]] = {
    "held": {
        "/enquiries/": _member_route(NOT_FOUND),
        "/my-cases/": _officer_route(NOT_FOUND, NOT_FOUND),
        "/cases/": _coordinator_route(OK),
    },
    "internal": {
        "/enquiries/": _member_route(NOT_FOUND),
        "/my-cases/": _officer_route(OK, OK),
        "/cases/": _coordinator_route(OK),
    },
}


@dataclass
class World:
    """The console over the cases above, built once per database for the module's tests."""

    web: Web
    reference: str
    theirs: str  # Raj's case
    files: dict[str, int]  # REF's files by kind: "sent" (the survey PDF), and FILES's
    their_attachment: int  # a file on Raj's case
    version: str  # REF's, to check that no row changed it
    tokens: dict[str, str]


def _with_file(raw: bytes) -> bytes:
    """The email with a small PDF attached."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    msg.add_attachment(b"%PDF-1.4 a photo", "application", "pdf", filename="photo.pdf")
    return msg.as_bytes()


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("case-roles")
    with migrated_copy(request, root) as url:
        yield from _world(root, url)


def _world(root: Path, url: str) -> Iterator[World]:
    """The two cases, their people, attachments and tokens the table is tried on."""
    engine = make_engine(url)
    web = make_web(root, engine)
    council = web.council
    council.open_pothole_case()
    council.assign(PRIYA, SAM)
    council.deliver(fixture_bytes("attack_officer_reply_html_password_form.eml"))
    officer_actions.contribute(
        council.services,
        REF,
        "Site notes for the lead.",
        [Upload(SITE_NOTES, b"Kerb cracked too.", SITE_NOTES)],
        officer_id=council.person_id(SAM),
        actor=SAM,
    )
    council.run()
    council.deliver(
        _with_file(new_email(RAJ, "Streetlight out on Hill Road", "Dark since Monday."))
    )
    council.new_mail()
    raj = council.person_id(RAJ)
    web.people |= {
        "lead": council.person_id(PRIYA),
        "additional": council.person_id(SAM),
        "unrelated_officer": council.person_id(ANN),
        "other_member": raj,
        "other_delegate": add_person(
            engine, "delegate", "Rita Hall", "rita.hall@example.gov.uk", delegate_for=raj
        ),
    }
    with Session(engine) as session:
        theirs = session.exec(select(Case.reference).where(Case.member_id == raj)).one()
    version = version_of(council.case(REF))
    tokens = {
        scope: api_tokens.create(engine, scope, scope, created_by="test").token
        for scope in ("read", "write")
    }
    tokens["revoked"] = api_tokens.create(engine, "gone", "write", created_by="test").token
    api_tokens.revoke(engine, "gone")
    yield World(
        web,
        REF,
        theirs,
        {
            "sent": attachments_of(web, REF)[SURVEY_PDF],
            "held": attachments_of(web, REF)[SURVEY_PAGE],
            "internal": attachments_of(web, REF)[SITE_NOTES],
        },
        attachments_of(web, theirs)["photo.pdf"],
        version,
        tokens,
    )
    for client in web.clients:
        client.close()
    engine.dispose()


def _client(world: World, who: str) -> tuple[TestClient, str]:
    """A client for `who`, and the CSRF token its forms carry."""
    if who in SESSIONS:
        return world.web.signed_in(who)
    client, csrf = world.web.anonymous()
    if who in TOKEN_SUBJECTS:
        client.headers["Authorization"] = f"Bearer {world.tokens[TOKEN_SUBJECTS[who]]}"
    return client, csrf


def _case_outcome(answer: Any, path: str) -> str:
    if answer.status_code == 303:
        assert answer.headers["location"] == f"/sign-in?next={quote(path, safe='/')}"
        return SIGN_IN
    assert answer.status_code in (200, 400, 401, 403, 404, 422), (answer.status_code, answer.text)
    return str(answer.status_code)


def _call(world: World, client: TestClient, csrf: str, method: str, path: str, body: dict) -> Any:
    if path.startswith("/api/"):
        return client.request(method, path, json=body if method == "POST" else None)
    if method == "GET":
        return client.get(path)
    sent = {"csrf": csrf, **body}
    if path.startswith("/my-cases/"):
        sent["version"] = world.version
    return client.post(path, data=sent)


def _case_routes(web: Web) -> set[tuple[str, str]]:
    return {(m, t) for m, t, _ in routes(web) if "{reference}" in t and "{action}" not in t}


@pytest.mark.parametrize("who", SUBJECTS)
def test_every_case_route_as_everyone_who_might_ask(world: World, who: str) -> None:
    assert _case_routes(world.web) == set(CASE_ROUTES), "every route about a case is in the table"
    client, csrf = _client(world, who)
    wrong = []
    for (method, template), (body, answers) in CASE_ROUTES.items():
        path = template.replace("{reference}", world.reference).replace(
            "{attachment_id}", str(world.files["sent"])
        )
        got = _case_outcome(_call(world, client, csrf, method, path, body), path)
        if got != answers[who]:
            wrong.append(f"{method} {template}: {got}, not {answers[who]}")
    for kind, doors in FILES.items():
        for door, answers in doors.items():
            path = f"{door}{world.reference}/attachments/{world.files[kind]}"
            got = _case_outcome(client.get(path), path)
            if got != answers[who]:
                wrong.append(f"GET {door}.../attachments/({kind} file): {got}, not {answers[who]}")
    assert not wrong, f"as {who}:\n" + "\n".join(wrong)
    assert version_of(world.web.council.case(REF)) == world.version, "nothing changed REF"


# The one with most standing on each door, asking for what is not theirs to find.
GUESSERS = {
    "/enquiries/": "member",
    "/my-cases/": "lead",
    "/cases/": "coordinator",
    "/api/v1/": "api_write",
}


@pytest.mark.parametrize("door", GUESSERS)
def test_a_guessed_reference_or_file_id_is_not_found(world: World, door: str) -> None:
    """A reference that does not exist, and a file of another case under this case's
    reference, are both "not found", whoever asks."""
    client, csrf = _client(world, GUESSERS[door])
    for (method, template), (body, _) in CASE_ROUTES.items():
        if not template.startswith(door) or (door, method) == ("/cases/", "POST"):
            continue  # the coordinators' actions refuse a form without a version first
        if door == "/api/v1/":
            body = {"text": "a note"}  # a body it takes, so the answer is about the case
        if "{attachment_id}" in template:
            path = template.replace("{reference}", world.reference)
            path = path.replace("{attachment_id}", str(world.their_attachment))
            assert _call(world, client, csrf, method, path, body).status_code == 404, path
        guessed = template.replace("{reference}", "MQ-2026-99999")
        guessed = guessed.replace("{attachment_id}", str(world.files["sent"]))
        assert _call(world, client, csrf, method, guessed, body).status_code == 404, guessed
