"""The JSON API for other council systems (issue #17, item 6): bearer tokens made, listed
and revoked by the command line, the dashboard's filters over JSON, a case read whole, a
response and a note through the functions a coordinator's own go through, every call in
the audit, and every refusal as one JSON line."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from mailbridge.cases import coordinator
from mailbridge.signin import api_tokens
from mailbridge.store.models import ApiToken, AuditRecord, Event
from mailbridge.web import api
from tests.factories import fixture_bytes
from tests.helpers.cli import CONFIG, invoke, ok, one_line_error, rows
from tests.helpers.council import JANE, POTHOLE_ID, POTHOLE_TEXT, PRIYA
from tests.web.conftest import Web, make_web

pytestmark = pytest.mark.usefixtures("fixed_clock")

SHOWN = "api:crm (api, testclient)"


def _token(web: Web, scope: str = "read", name: str = "crm") -> str:
    return api_tokens.create(web.engine, name, scope, created_by="test").token


def _caller(web: Web, token: str | None) -> TestClient:
    client = web.client()
    if token is not None:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


def _audit(web: Web, actor: str = "api:crm") -> list[tuple[str, str | None, str]]:
    with Session(web.engine) as session:
        found = session.exec(
            select(AuditRecord).where(AuditRecord.actor == actor).order_by(col(AuditRecord.id))
        ).all()
    assert all(r.channel == "api" and r.origin == "testclient" for r in found)
    return [(r.action, r.case_reference, r.detail) for r in found]


def _three_cases(web: Web) -> str:
    """Jane's pothole enquiry and two more copies of it (new Message-IDs): three cases."""
    reference = web.pothole()
    raw = fixture_bytes("member_new_enquiry_pothole.eml")
    for twin in ("two", "three"):
        web.council.deliver(raw.replace(POTHOLE_ID.encode(), f"<{twin}@example.gov.uk>".encode()))
    return reference


def _error(answer: Any, status: int, *fragments: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert list(body) == ["error"] and "\n" not in body["error"]
    for fragment in fragments:
        assert fragment in body["error"]
    return str(body["error"])


# --- list -----------------------------------------------------------------------------


def test_list_pages_through_the_cases_with_the_dashboards_filters(web: Web) -> None:
    _three_cases(web)
    client = _caller(web, _token(web))
    first = client.get("/api/v1/cases", params={"sort": "reference", "limit": "2"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [c["reference"] for c in body["cases"]] == ["MQ-2026-00001", "MQ-2026-00002"]
    assert (body["page"], body["limit"], body["total"]) == (1, 2, 3)
    assert body["cases"][0]["member"] == "Cllr Jane Smith"
    assert body["cases"][0]["status"] == "new"
    second = client.get(body["next"]).json()
    assert [c["reference"] for c in second["cases"]] == ["MQ-2026-00003"]
    assert second["next"] is None
    assert client.get("/api/v1/cases", params={"status": "completed"}).json()["total"] == 0
    searched = client.get("/api/v1/cases", params={"search": "tyres", "ref": "00002"}).json()
    assert [c["reference"] for c in searched["cases"]] == ["MQ-2026-00002"]
    listed = [a for a in _audit(web) if a[0] == "cases.list"]
    assert len(listed) == 4
    assert listed[0][2] == "filter: every case; page 1 (2 a page); 2 cases shown"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"limit": "101"}, "limit: give a number of cases from 1 to 100"),
        ({"limit": "0"}, "limit: give a number of cases from 1 to 100"),
        ({"limit": "ten"}, "limit: give a number of cases from 1 to 100"),
        ({"status": "lost"}, "status: unknown status 'lost'"),
        ({"created_from": "yesterday"}, "created_from: 'yesterday' is not a date"),
        ({"page": "0"}, "page: '0' is not a whole number of 1 or more"),
        ({"sort": "size"}, "sort: unknown sort key 'size'"),
    ],
)
def test_a_bad_filter_is_422_naming_it(web: Web, query: dict[str, str], fragment: str) -> None:
    client = _caller(web, _token(web))
    _error(client.get("/api/v1/cases", params=query), 422, fragment)


# --- read -----------------------------------------------------------------------------


def test_a_case_is_read_whole_and_the_read_is_audited(web: Web) -> None:
    reference = web.pothole()
    coordinator.add_note(web.council.services, reference, "Called the depot.", actor="support")
    answer = _caller(web, _token(web)).get(f"/api/v1/cases/{reference.lower()}")
    assert answer.status_code == 200, answer.text
    case = answer.json()
    assert case["reference"] == reference
    assert case["channel"] == "email"
    assert case["member"]["email"] == JANE
    assert POTHOLE_TEXT in case["enquiry"]
    assert case["deadlines"]["due"] == case["deadlines"]["response_due"]
    assert case["deadlines"]["extended_due"] is None
    # The enquiry, its acknowledgement (mail we sent has no role), the note.
    shown = [(m["direction"], m["role"]) for m in case["messages"]]
    assert shown == [("in", "enquiry"), ("out", None), ("in", "note")]
    assert case["messages"][2]["text"] == "Called the depot."
    assert [e["kind"] for e in case["events"]] == ["case_opened", "acknowledgement_queued", "note"]
    assert "token" not in answer.text.lower()
    assert _audit(web) == [("case.show", reference, "")]


def test_an_unknown_case_is_404_and_the_attempt_is_audited(web: Web) -> None:
    web.pothole()
    client = _caller(web, _token(web, "write"))
    _error(client.get("/api/v1/cases/MQ-2026-09999"), 404, "No case has reference MQ-2026-09999")
    _error(
        client.post("/api/v1/cases/MQ-2026-09999/notes", json={"text": "x"}),
        404,
        "MQ-2026-09999",
    )
    assert [a[0] for a in _audit(web)] == ["api.refused", "api.refused"]


# --- write ----------------------------------------------------------------------------


def test_a_response_goes_through_the_coordinators_reply_with_the_token_as_actor(
    web: Web,
) -> None:
    reference = web.pothole()
    before = len(web.outbox("reply"))
    client = _caller(web, _token(web, "write"))
    answer = client.post(
        f"/api/v1/cases/{reference}/responses", json={"text": "The gang is booked for Monday."}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"reference": reference, "recipients": [JANE]}
    replies = web.outbox("reply")
    assert len(replies) == before + 1
    assert b"The gang is booked for Monday." in replies[-1].raw
    with Session(web.engine) as session:
        event = session.exec(select(Event).where(Event.kind == "replied")).one()
    assert event.actor == SHOWN
    assert event.detail == f"reply sent to {JANE}"
    assert _audit(web) == [("api.respond", reference, "response queued")]


def test_a_note_is_added_and_nobody_is_mailed(web: Web) -> None:
    reference = web.pothole()
    mails = len(web.outbox())
    client = _caller(web, _token(web, "write"))
    answer = client.post(f"/api/v1/cases/{reference}/notes", json={"text": "CRM ticket 881."})
    assert answer.status_code == 201, answer.text
    assert len(web.outbox()) == mails
    with Session(web.engine) as session:
        event = session.exec(select(Event).where(Event.kind == "note")).one()
    assert event.actor == SHOWN
    read = client.get(f"/api/v1/cases/{reference}").json()
    assert read["messages"][-1] == {
        "at": read["messages"][-1]["at"],
        "direction": "in",
        "role": "note",
        "sender": SHOWN,
        "subject": f"Note on {reference}",
        "text": "CRM ticket 881.",
    }
    assert [a[0] for a in _audit(web)] == ["api.note", "case.show"]


def test_an_empty_or_missing_text_is_422_and_nothing_is_done(web: Web) -> None:
    reference = web.pothole()
    mails = len(web.outbox())
    client = _caller(web, _token(web, "write"))
    path = f"/api/v1/cases/{reference}/responses"
    _error(client.post(path, json={"text": ""}), 422, "text: String should have at least 1")
    _error(client.post(path, json={}), 422, "text: Field required")
    _error(client.post(path, content=b"not json"), 422, "see /api/v1/docs")
    _error(client.post(path, json={"text": "   "}), 422, "the reply is empty")
    assert len(web.outbox()) == mails


# --- refusals -------------------------------------------------------------------------


def test_no_token_a_wrong_one_and_a_session_cookie_are_401(web: Web) -> None:
    reference = web.pothole()
    _token(web)
    path = f"/api/v1/cases/{reference}"
    _error(_caller(web, None).get(path), 401, "Authorization: Bearer")
    _error(_caller(web, "mbt_guessed").get(path), 401, "mailbridge api-tokens create")
    signed_in, _csrf = web.signed_in("coordinator")
    _error(signed_in.get(path), 401)
    basic = web.client()
    basic.headers["Authorization"] = "Basic Y3JtOnNlY3JldA=="
    _error(basic.get(path), 401)
    assert _audit(web) == []


def test_a_revoked_token_is_refused_from_its_next_call(web: Web) -> None:
    reference = web.pothole()
    client = _caller(web, _token(web))
    assert client.get(f"/api/v1/cases/{reference}").status_code == 200
    api_tokens.revoke(web.engine, "crm")
    _error(client.get(f"/api/v1/cases/{reference}"), 401, "No live API token")


def test_a_read_token_cannot_write_403_and_nothing_is_done(web: Web) -> None:
    reference = web.pothole()
    mails = len(web.outbox())
    client = _caller(web, _token(web))
    for what in ("responses", "notes"):
        answer = client.post(f"/api/v1/cases/{reference}/{what}", json={"text": "Done."})
        _error(answer, 403, "ask for a write token")
    assert len(web.outbox()) == mails
    with Session(web.engine) as session:
        kinds = session.exec(select(Event.kind)).all()
    assert "note" not in kinds and "replied" not in kinds
    assert [a[0] for a in _audit(web)] == ["api.refused", "api.refused"]


def test_a_body_past_the_apis_cap_is_413(web: Web) -> None:
    reference = web.pothole()
    client = _caller(web, _token(web, "write"))
    text = "x" * (api.MAX_BODY + 1)  # a JSON body past the cap by its Content-Length
    answer = client.post(f"/api/v1/cases/{reference}/notes", json={"text": text})
    _error(answer, 413, "too large")


def test_the_api_sets_no_cookie_and_answers_unknown_addresses_in_json(web: Web) -> None:
    client = _caller(web, _token(web))
    answer = client.get("/api/v1/cases")
    assert answer.status_code == 200
    assert "set-cookie" not in answer.headers
    _error(client.get("/api/v1/nothing"), 404, "/api/v1/docs")


# --- a new enquiry --------------------------------------------------------------------

ENQUIRY = {
    "member": JANE,
    "subject": "Broken street light on Elm Road",
    "details": "The light outside number 4 has been out for a week.",
    "resident_name": "Mr A Resident",
    "preferred_contact": "phone",
}


def test_a_case_opened_for_a_member_is_the_case_her_email_would_open(web: Web) -> None:
    client = _caller(web, _token(web, "write"))
    acks = len(web.outbox("acknowledgement"))
    photo = base64.b64encode(b"%PDF-1.4 a survey").decode()
    answer = client.post(
        "/api/v1/cases",
        json={**ENQUIRY, "attachments": [{"filename": "survey.pdf", "content": photo}]},
    )
    assert answer.status_code == 201, answer.text
    opened = answer.json()
    assert opened["repeated"] is False
    case = client.get(f"/api/v1/cases/{opened['reference']}").json()
    assert case["channel"] == "api"
    assert case["service_area"] == "Highways"  # keyword routing: "street light"
    assert case["preferred_contact"] == "phone"
    assert case["member"]["email"] == JANE and case["submitter"]["email"] == JANE
    assert case["deadlines"]["response_due"] == opened["response_due"]
    assert "Resident: Mr A Resident" in case["enquiry"]
    assert [a["filename"] for a in case["attachments"]] == ["survey.pdf"]
    assert [e["kind"] for e in case["events"]][:2] == ["case_opened", "acknowledgement_queued"]
    assert len(web.outbox("acknowledgement")) == acks + 1
    assert ("api.open", opened["reference"], "case opened") in _audit(web)


def test_the_same_idempotency_key_never_opens_two_cases(web: Web) -> None:
    client = _caller(web, _token(web, "write"))
    first = client.post("/api/v1/cases", json=ENQUIRY, headers={"Idempotency-Key": "f-1"})
    again = client.post("/api/v1/cases", json=ENQUIRY, headers={"Idempotency-Key": "f-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "repeated": True}
    other = client.post("/api/v1/cases", json=ENQUIRY, headers={"Idempotency-Key": "f-2"})
    assert other.status_code == 201 and other.json()["reference"] != first.json()["reference"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"member": "bob@example.org"}, "member: bob@example.org is no member's address"),
        ({"member": PRIYA}, "is no member's address"),
        ({"subject": " "}, "subject: Enter a subject"),
        ({"service_area": "Parks"}, "service_area: Select a service area from the list"),
        ({"preferred_contact": "fax"}, "preferred_contact: Select email, phone or letter"),
        ({"attachments": [{"filename": "../a.pdf", "content": "YQ=="}]}, "files: ../a.pdf"),
        ({"attachments": [{"filename": "a.pdf", "content": "%%%"}]}, "a.pdf is not base64"),
    ],
)
def test_a_case_that_cannot_be_opened_is_422_and_nothing_is_opened(
    web: Web, change: dict[str, Any], fragment: str
) -> None:
    client = _caller(web, _token(web, "write"))
    _error(client.post("/api/v1/cases", json={**ENQUIRY, **change}), 422, fragment)
    assert client.get("/api/v1/cases").json()["total"] == 0


# --- tokens ---------------------------------------------------------------------------


def test_last_use_is_recorded_at_most_once_a_minute(web: Web) -> None:
    client = _caller(web, _token(web))

    def last_used() -> Any:
        with Session(web.engine) as session:
            return session.exec(select(ApiToken.last_used_at)).one()

    assert last_used() is None
    client.get("/api/v1/cases")
    first = last_used()
    assert first is not None
    web.clock.advance(seconds=59)
    client.get("/api/v1/cases")
    assert last_used() == first
    web.clock.advance(seconds=1)
    client.get("/api/v1/cases")
    assert last_used() > first


def test_a_token_is_stored_as_its_hash_only(web: Web) -> None:
    secret = _token(web, "write")
    assert secret.startswith("mbt_") and len(secret) > 40
    with Session(web.engine) as session:
        row = session.exec(select(ApiToken)).one()
    assert secret not in (row.token_hash, row.name) and len(row.token_hash) == 64
    assert (row.name, row.scope, row.created_by) == ("crm", "write", "test")


def _home(tmp_path: Path, web: Web) -> str:
    url = web.engine.url.render_as_string(hide_password=False)
    config = CONFIG.replace('url = "sqlite:///./mailbridge.db"', f'url = "{url}"')
    path = tmp_path / "cli" / "config.toml"
    path.parent.mkdir()
    path.write_text(config, encoding="utf-8")
    return str(path)


def test_api_tokens_are_made_listed_and_revoked_on_the_command_line(
    web: Web, tmp_path: Path
) -> None:
    reference = web.pothole()
    config = _home(tmp_path, web)
    made = ok(invoke("api-tokens", "create", "highways-crm", "--scope", "write", "-c", config))
    assert "API token highways-crm (write); give it to that system now" in made
    secret = made.strip().splitlines()[-1]
    client = _caller(web, secret)
    assert client.get(f"/api/v1/cases/{reference}").status_code == 200
    listing = rows(ok(invoke("api-tokens", "list", "-c", config)))
    cells = listing["highways-crm"]
    assert cells[0] == "write" and cells[3] != "never" and cells[4] == ""
    assert secret not in ok(invoke("api-tokens", "list", "-c", config))
    one_line_error(
        invoke("api-tokens", "create", "highways-crm", "-c", config), 1, "exists already"
    )
    one_line_error(
        invoke("api-tokens", "create", "crm", "--scope", "admin", "-c", config),
        1,
        "use read or write",
    )
    one_line_error(invoke("api-tokens", "create", "a b", "-c", config), 1, "not a token name")
    assert "is revoked" in ok(invoke("api-tokens", "revoke", "highways-crm", "-c", config))
    assert client.get(f"/api/v1/cases/{reference}").status_code == 401
    assert rows(ok(invoke("api-tokens", "list", "-c", config)))["highways-crm"][4] != ""
    one_line_error(invoke("api-tokens", "revoke", "nobody", "-c", config), 1, "api-tokens list")


# --- the description ------------------------------------------------------------------


def test_the_openapi_page_describes_every_route_and_its_bearer_auth(web: Web) -> None:
    client = web.client()
    document = client.get("/api/v1/openapi.json").json()
    assert sorted(document["paths"]) == [
        "/api/v1/cases",
        "/api/v1/cases/{reference}",
        "/api/v1/cases/{reference}/notes",
        "/api/v1/cases/{reference}/responses",
    ]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    listing = document["paths"]["/api/v1/cases"]["get"]
    assert {"status", "overdue", "search", "page", "limit"} <= {
        p["name"] for p in listing["parameters"]
    }
    assert listing["x-mailbridge-role"] == "api_read"
    assert "CaseOut" in document["components"]["schemas"]


def test_the_docs_page_loads_swagger_ui_from_this_site_only(web: Web) -> None:
    """Vendored files, never a CDN: every address the page names is this site's, its
    policy names no other origin and allows no inline script, and the files are served."""
    client = web.client()
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    named = re.findall(r'(?:src|href|data-openapi-url)="([^"]*)"', page.text)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in named
    assert "/static/swagger-ui/swagger-ui.css" in named
    assert all(url.startswith("/") and not url.startswith("//") for url in named), named
    assert "://" not in page.text  # no address of another site anywhere on the page
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None, "an inline script"
    csp = page.headers["content-security-policy"]
    assert "http" not in csp and "'unsafe-inline'" not in csp and "sha256-" not in csp
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    for url in [u for u in named if u.startswith("/static/")]:
        served = client.get(url)
        assert served.status_code == 200 and served.content, url
    bundle = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert "SwaggerUIBundle(" in client.get("/static/swagger-init.js").text
    assert "Apache License" in client.get("/static/swagger-ui/LICENSE").text
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_a_case_opened_and_answered_through_the_api_is_heard_by_webhooks(
    tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailbridge.store.db import make_engine
    from mailbridge.store.models import WebhookDelivery

    monkeypatch.setenv("MAILBRIDGE_TEST_API_HOOK", "a-receivers-shared-secret-of-some-length")
    hooks = [
        {"name": "crm", "url": "http://127.0.0.1:9/", "secret_env": "MAILBRIDGE_TEST_API_HOOK"}
    ]
    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, webhooks=hooks)
    try:
        client = _caller(site, _token(site, "write"))
        reference = client.post("/api/v1/cases", json=ENQUIRY).json()["reference"]
        answered = client.post(f"/api/v1/cases/{reference}/responses", json={"text": "Fixed."})
        assert answered.status_code == 201, answered.text
        with Session(engine) as session:
            rows = session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).all()
        heard = [(row.event, json.loads(row.body)["case"]["channel"]) for row in rows]
        assert heard == [("opened", "api"), ("responded", "api")]
    finally:
        for c in site.clients:
            c.close()
        engine.dispose()
