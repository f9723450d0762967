"""Issue #17's portal attacked (review17): a hostile councillor, delegate, officer, API
client or visitor, through the real app on both databases. Each test is named for the
attack it shows refused."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from mailbridge.cases import permissions, submissions
from mailbridge.cases.submissions import Submission, Upload
from mailbridge.store.db import transaction
from mailbridge.store.models import Attachment, Case, Message, Person
from tests.helpers.council import JANE, PRIYA, RAJ, REF
from tests.web.case_helpers import SURVEY_PDF, with_survey
from tests.web.conftest import Web
from tests.web.test_api import _audit, _caller, _token
from tests.web.test_enquiry_form import as_person


def _deactivate(web: Web, address: str) -> None:
    """The member leaves the council: the directory import marks them inactive."""
    with transaction(web.engine) as session:
        person = session.get(Person, web.council.person_id(address))
        assert person is not None
        person.active = False
        session.add(person)


def test_a_delegate_whose_member_was_deactivated_no_longer_reaches_their_cases(
    web: Web,
) -> None:
    """The email door stops a delegate acting for an inactive member (directory.identify);
    the portal must too: no list, no enquiry page, no files, no update request."""
    web.pothole()
    delegate, csrf = web.signed_in("delegate")
    assert delegate.get(f"/enquiries/{REF}").status_code == 200
    _deactivate(web, JANE)
    assert REF not in delegate.get("/enquiries").text
    assert delegate.get(f"/enquiries/{REF}").status_code == 404
    answer = delegate.post(f"/enquiries/{REF}/update", data={"csrf": csrf, "text": "any news?"})
    assert answer.status_code == 404
    assert delegate.get("/enquiries/new").status_code == 404
    with Session(web.engine) as session:
        tom = session.get(Person, web.people["delegate"])
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        assert permissions.standings(session, tom, case) == frozenset()
        assert session.exec(select(Case.id).where(permissions.visible_clause(tom))).all() == []


# --- a NUL character: PostgreSQL refuses it in text, so it must never reach a query ------


def test_a_nul_in_a_portal_address_or_query_is_refused_not_a_crash(web: Web) -> None:
    web.pothole()
    member, _ = web.signed_in("member")
    officer, _ = web.signed_in("officer")
    for client, url in (
        (member, "/enquiries?q=%00"),
        (member, f"/enquiries/{REF}%00"),
        (member, "/enquiries/%00/sent"),
        (member, f"/enquiries/{REF}%00/attachments/1"),
        (officer, "/my-cases/%00"),
        (officer, f"/my-cases/{REF}%00/attachments/1"),
    ):
        answer = client.get(url)
        assert answer.status_code == 400, (url, answer.status_code)
        assert "NUL" in answer.text


def test_a_nul_in_a_portal_form_is_refused_and_nothing_is_recorded(web: Web) -> None:
    web.pothole()
    member, csrf = web.signed_in("member")
    answer = member.post(f"/enquiries/{REF}/update", data={"csrf": csrf, "text": "any\x00news"})
    assert answer.status_code == 400
    assert "NUL" in answer.text
    with Session(web.engine) as session:
        roles = session.exec(select(Message.role).join(Case).where(Case.reference == REF)).all()
    assert "chaser" not in roles


def test_a_nul_in_an_api_call_is_a_json_422_not_a_crash(web: Web) -> None:
    web.pothole()
    client = _caller(web, _token(web, "write"))
    for method, url, body in (
        ("GET", "/api/v1/cases?search=%00", None),
        ("GET", "/api/v1/cases?service_area=%00", None),
        ("GET", "/api/v1/cases/%00", None),
        ("POST", f"/api/v1/cases/{REF}/notes", {"text": "a\x00b"}),
        ("POST", f"/api/v1/cases/{REF}/responses", {"text": "a\x00b"}),
        ("POST", "/api/v1/cases", {"member": "\x00", "subject": "s", "details": "d"}),
    ):
        answer = client.request(method, url, json=body)
        assert answer.status_code in (400, 422), (url, answer.status_code)
        assert list(answer.json()) == ["error"] and "NUL" in answer.json()["error"]


# --- numbers past what a database holds -------------------------------------------------


def test_a_page_number_past_any_list_is_a_400_not_a_crash(web: Web) -> None:
    web.pothole()
    member, _ = web.signed_in("member")
    officer, _ = web.signed_in("officer")
    for client, url in ((member, "/enquiries"), (officer, "/my-cases")):
        answer = client.get(url, params={"page": "9" * 30})
        assert answer.status_code == 400, (url, answer.status_code)
        assert "Page:" in answer.text


def test_an_attachment_id_past_any_integer_is_not_found_not_a_crash(web: Web) -> None:
    web.pothole()
    member, _ = web.signed_in("member")
    officer, _ = web.signed_in("officer")
    coordinator, _ = web.signed_in("coordinator")
    for client, url in (
        (member, f"/enquiries/{REF}/attachments/{'9' * 20}"),
        (officer, f"/my-cases/{REF}/attachments/{'9' * 20}"),
        (coordinator, f"/cases/{REF}/attachments/{'9' * 20}"),
    ):
        assert client.get(url).status_code in (400, 404), url


# --- a download started by another site --------------------------------------------------


def test_no_download_route_serves_a_file_to_a_request_another_site_started(web: Web) -> None:
    """A download writes an event and an audit record in the viewer's name: another site's
    link must not make one (Sec-Fetch-Site: cross-site), on any of the three doors."""
    file_id = with_survey(web)[SURVEY_PDF]
    member, _ = web.signed_in("member")
    officer, _ = web.signed_in("officer")
    coordinator, _ = web.signed_in("coordinator")
    for client, path in (
        (member, f"/enquiries/{REF}/attachments/{file_id}"),
        (officer, f"/my-cases/{REF}/attachments/{file_id}"),
        (coordinator, f"/cases/{REF}/attachments/{file_id}"),
    ):
        refused = client.get(path, headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403, (path, refused.status_code)
        served = client.get(path, headers={"Sec-Fetch-Site": "same-origin"})
        assert served.status_code == 200, (path, served.status_code)


# --- file names that show as something they are not ---------------------------------------


@pytest.mark.parametrize(
    "name", ["invoice\u202efdp.exe", "report\u2067.pdf", "a\u200fb.pdf", "x\u061c.doc"]
)
def test_a_file_name_with_a_direction_control_is_refused_at_the_form_and_the_api(
    name: str,
) -> None:
    """U+202E and its kin make "invoice<RLO>fdp.exe" show as "invoiceexe.pdf" on the pages
    that list the case's files: the person is asked to rename it, as for a control character."""
    found = submissions.problems(
        Submission(member_id=1, subject="s", details="d", uploads=(Upload(name, b"%PDF"),)),
        [],
        max_bytes=0,
        max_filename_length=120,
    )
    assert [p.field for p in found] == ["files"]
    assert "rename the file" in found[0].text


def test_the_form_refuses_a_file_named_to_hide_its_type(web: Web) -> None:
    member, csrf = web.signed_in("member")
    form = member.get("/enquiries/new").text
    token = form.split('name="token" value="', 1)[1].split('"', 1)[0]
    answer = member.post(
        "/enquiries/new",
        data={"csrf": csrf, "token": token, "subject": "Bins", "details": "Not collected"},
        files=[("files", ("invoice\u202efdp.exe", b"MZ", "application/octet-stream"))],
    )
    assert answer.status_code == 400
    assert "rename the file" in answer.text


# --- a double click on the councillors' buttons -------------------------------------------


def test_reopen_clicked_twice_at_once_reopens_the_case_once(web: Web) -> None:
    """Two posts of Reopen at the same moment (a double click, two tabs): one reopens the
    case, the other finds it open; never two reopenings, two emails or a 500."""
    with_survey(web)
    web.council.new_mail()
    _completed(web, 1)
    clients = [web.signed_in("member"), web.signed_in("delegate"), web.signed_in("member")]
    start = threading.Barrier(len(clients))
    answers: list[int] = []

    def post(client: TestClient, csrf: str) -> None:
        start.wait()
        sent = {"csrf": csrf, "text": "Still broken"}
        answers.append(client.post(f"/enquiries/{REF}/reopen", data=sent).status_code)

    threads = [threading.Thread(target=post, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == [303, 400, 400]
    with Session(web.engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        roles = session.exec(select(Message.role).where(Message.case_id == case.id)).all()
    assert (case.status, case.reopened_count, roles.count("reopened")) == ("in_progress", 1, 1)
    assert [e.kind for e in web.council.events(REF)].count("reopened") == 1


def _completed(web: Web, working_days_ago: int) -> None:
    with transaction(web.engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        calendar = web.council.services.calendar
        today = calendar.local_date(web.clock())
        day = today
        for _ in range(working_days_ago):
            day -= timedelta(days=1)
            while not calendar.is_working_day(day):
                day -= timedelta(days=1)
        case.status = "completed"
        case.completed_at = web.clock() - (today - day)
        session.add(case)


# --- files asked for by id ------------------------------------------------------------------


def test_a_held_back_or_other_cases_file_is_not_found_by_its_id(web: Web) -> None:
    """Ids typed into the download URLs: a program held back from members and officers, and
    another case's file asked for through a case the viewer is on."""
    survey = with_survey(web)[SURVEY_PDF]  # on REF: Jane's pothole, Priya leads
    program = Submission(
        member_id=web.people["member"],
        subject="Fly-tipping on Elm Road",
        details="Bags dumped by the gate.",
        uploads=(Upload("tool.exe", b"MZ" + b"\0" * 200),),
    )
    second = submissions.open_enquiry(web.council.services, program, actor=as_person(web, "member"))
    web.council.assign(PRIYA, reference=second.reference)
    with Session(web.engine) as session:
        held = session.exec(select(Attachment.id).where(Attachment.case_id == second.case_id)).one()
    member, _ = web.signed_in("member")
    priya, _ = web.signed_in("officer")
    for client, door in ((member, "enquiries"), (priya, "my-cases")):
        for file_id in (held, survey):
            path = f"/{door}/{second.reference}/attachments/{file_id}"
            assert client.get(path).status_code == 404, path
        assert client.get(f"/{door}/{REF}/attachments/{survey}").status_code == 200


def test_the_last_date_there_is_as_a_filter_is_no_crash(web: Web) -> None:
    """created_to=9999-12-31: the day after it, the end of the range, is past what a date
    holds; it means no upper bound (the API and the coordinators' dashboard)."""
    web.pothole()
    client = _caller(web, _token(web))
    answer = client.get("/api/v1/cases", params={"created_to": "9999-12-31"})
    assert answer.status_code == 200, answer.text
    assert [c["reference"] for c in answer.json()["cases"]] == [REF]
    coordinator, _ = web.signed_in("coordinator")
    assert coordinator.get("/", params={"created_to": "9999-12-31"}).status_code == 200


def test_an_idempotency_key_reused_for_another_member_opens_nothing_and_says_so(
    web: Web,
) -> None:
    """A key finds only the case it opened for the same member; another token's same key is
    its own (the token's name is part of it)."""
    client = _caller(web, _token(web, "write"))
    body = {"member": JANE, "subject": "Bins", "details": "Not collected on Monday."}
    first = client.post("/api/v1/cases", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201
    again = client.post(
        "/api/v1/cases", json={**body, "member": RAJ}, headers={"Idempotency-Key": "k1"}
    )
    error = again.json()["error"]
    assert again.status_code == 422 and "Idempotency-Key" in error and "form" not in error
    other = _caller(web, _token(web, "write", name="other"))
    theirs = other.post("/api/v1/cases", json=body, headers={"Idempotency-Key": "k1"})
    assert theirs.status_code == 201
    assert theirs.json()["reference"] != first.json()["reference"]


def test_an_api_call_refused_as_not_understood_is_in_the_audit_too(web: Web) -> None:
    """Every API call is an audit event (issue #17, item 6): a write the case or the body
    refuses (422) as much as one that succeeds, naming the call but not what was sent."""
    web.pothole()
    client = _caller(web, _token(web, "write"))
    assert client.post(f"/api/v1/cases/{REF}/notes", json={"text": ""}).status_code == 422
    assert client.get("/api/v1/cases", params={"status": "nope"}).status_code == 422
    sent = {"member": RAJ + ".invalid", "subject": "Bins", "details": "Not collected"}
    assert client.post("/api/v1/cases", json=sent).status_code == 422
    refused = [d for action, _ref, d in _audit(web) if action == "api.refused"]
    assert refused == [
        f"POST /api/v1/cases/{REF}/notes: refused (422)",
        "GET /api/v1/cases: refused (422)",
        "POST /api/v1/cases: refused (422)",
    ]


def test_a_form_token_cannot_take_an_api_clients_idempotency_key(web: Web) -> None:
    """The form's token is the browser's to send: one written as an API client's key
    ("api:<token name>:<key>") must not claim that key before the client uses it."""
    member, csrf = web.signed_in("member")
    sent = {"csrf": csrf, "subject": "Bins", "details": "Not collected on Monday."}
    answer = member.post("/enquiries/new", data={**sent, "token": "api:crm:record-42"})
    assert answer.status_code == 303
    client = _caller(web, _token(web, "write"))
    body = {"member": JANE, "subject": "Dog fouling", "details": "On the school path."}
    opened = client.post("/api/v1/cases", json=body, headers={"Idempotency-Key": "record-42"})
    assert opened.status_code == 201, opened.text
    assert opened.json()["repeated"] is False
