"""The on-line enquiry form (issue #17, item 3): it opens a case through the email's own
path, so the form and an email with the same content make the same case, events,
attachments and acknowledgement; a form sent twice opens one case; hostile input stores
nothing."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, func, select

from mailbridge.cases import submissions
from mailbridge.cases.submissions import Invalid, Problem, Submission, Upload, open_enquiry
from mailbridge.errors import UserError
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.store.models import (
    Attachment,
    Case,
    Direction,
    Event,
    FormSubmission,
    Message,
    OutboxMessage,
    utcnow,
)
from tests.helpers.clock import clock_at
from tests.helpers.council import JANE, MAILBOX, TOM
from tests.web.conftest import Web, make_web

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
FILES = (Upload("survey.pdf", PDF), Upload("photo of the road.jpg", JPEG))
MB2 = 2 * 1024 * 1024
SUBJECT = "Pothole outside 14 Mill Lane"
DETAILS = "A resident reports a deep pothole by the bus stop.\nTwo tyres burst this week."


def sample(**changes: Any) -> Submission:
    fields: dict[str, Any] = {
        "member_id": 0,
        "subject": SUBJECT,
        "details": DETAILS,
        "resident_name": "Mrs Ada Green",
        "resident_address": "14 Mill Lane\nNorthtown NT1 2AB",
        "uploads": FILES,
    }
    fields.update(changes)
    return Submission(**fields)


def as_person(web: Web, who: str) -> Actor:
    with Session(web.engine) as session:
        from mailbridge.store.models import Person

        person = session.get(Person, web.people[who])
        assert person is not None
        return Actor(person.email, Channel.WEB, "testclient", person.id)


def email_of(sender: str, submission: Submission) -> bytes:
    """The email a councillor writes with the same content, from their own mail client."""
    msg = EmailMessage()
    msg["From"] = formataddr(("Cllr Jane Smith", sender))
    msg["To"] = MAILBOX
    msg["Subject"] = submission.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain="example.gov.uk")
    msg.set_content(submissions.body_of(submission))
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="survey.pdf")
    msg.add_attachment(JPEG, maintype="image", subtype="jpeg", filename="photo of the road.jpg")
    return msg.as_bytes()


# --- what each door made ------------------------------------------------------------------

CASE_FIELDS = (
    "subject",
    "body_text",
    "status",
    "member_id",
    "submitter_id",
    "lead_officer_id",
    "service_area",
    "directorate",
    "district",
    "acknowledge_due",
    "response_due",
    "linked_case_id",
    "preferred_contact",
    "prefix",
    "year",
)


def made(web: Web, reference: str) -> dict[str, Any]:
    """Everything a new case is made of, with its own reference and the door's name taken
    out, so two doors' cases compare equal when they are the same case."""
    with Session(web.engine) as session:
        case = session.exec(select(Case).where(Case.reference == reference)).one()
        events = session.exec(
            select(Event).where(Event.case_id == case.id).order_by(col(Event.id))
        ).all()
        attachments = session.exec(
            select(Attachment).where(Attachment.case_id == case.id).order_by(col(Attachment.id))
        ).all()
        [message] = session.exec(
            select(Message).where(Message.case_id == case.id, Message.direction == Direction.IN)
        ).all()
        [ack] = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.case_id == case.id, OutboxMessage.kind == "acknowledgement"
            )
        ).all()

    def plain(text: str) -> str:
        text = text.replace(reference, "REF")
        text = re.sub(r"opened from (an email|the on-line form)", "opened from DOOR", text)
        return re.sub(r"as your (email|enquiry) arrived", "as your DOOR arrived", text)

    ack_mail = message_from_bytes(ack.raw, policy=policy.default)
    ack_text = ack_mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return {
        "case": {name: getattr(case, name) for name in CASE_FIELDS},
        "events": [(e.kind, e.actor, e.actor_id, plain(e.detail)) for e in events],
        "attachments": [
            (
                a.filename,
                a.content_type,
                a.size,
                a.sha256,
                a.inline,
                a.held_reason,
                a.refused_reason,
            )
            for a in attachments
        ],
        "message": (
            message.sender,
            message.recipients,
            message.subject,
            message.body_text,
            message.role,
        ),
        "ack": (ack.sender, ack.recipients, plain(ack.subject), plain(ack_text)),
        "channel": case.channel,
    }


# --- through the browser -------------------------------------------------------------------

TOKEN = re.compile(r'name="token" value="([^"]+)"')


def opened_form(client: TestClient) -> str:
    """The form as served: its one-use token."""
    answer = client.get("/enquiries/new")
    assert answer.status_code == 200, answer.text
    [token] = TOKEN.findall(answer.text)
    return token


def fields_of(submission: Submission, csrf: str, token: str) -> dict[str, str]:
    return {
        "csrf": csrf,
        "token": token,
        "service_area": submission.service_area or "",
        "subject": submission.subject,
        "details": submission.details,
        "resident_name": submission.resident_name,
        "resident_address": submission.resident_address,
        "resident_reference": submission.resident_reference,
        "preferred_contact": submission.preferred_contact or "",
    }


def post_form(client: TestClient, csrf: str, token: str, submission: Submission) -> Any:
    files = [
        ("files", (u.filename, u.data, "application/octet-stream")) for u in submission.uploads
    ]
    return client.post(
        "/enquiries/new", data=fields_of(submission, csrf, token), files=files or None
    )


def sent_reference(answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/enquiries/(MQ-\d{4}-\d{5})/sent", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


@pytest.mark.parametrize("who", ["member", "delegate"])
def test_the_form_and_an_email_with_the_same_content_make_the_same_case(web: Web, who: str) -> None:
    sender = JANE if who == "member" else TOM
    form = sample(member_id=web.people["member"])
    report = web.council.deliver(email_of(sender, form))
    [by_email] = report.references
    client, csrf = web.signed_in(who)
    by_form = sent_reference(post_form(client, csrf, opened_form(client), form))

    email_case, form_case = made(web, by_email), made(web, by_form)
    assert (email_case.pop("channel"), form_case.pop("channel")) == ("email", "web")
    assert form_case == email_case
    assert form_case["case"]["service_area"] == "Highways"  # "Not sure": the keywords chose
    assert [a[0] for a in form_case["attachments"]] == ["survey.pdf", "photo of the road.jpg"]
    assert form_case["ack"][1] == (JANE if who == "member" else f"{JANE}, {TOM}")


def test_the_confirmation_shows_the_reference_the_deadline_and_a_link(web: Web) -> None:
    client, csrf = web.signed_in("member")
    reference = sent_reference(
        post_form(client, csrf, opened_form(client), sample(member_id=web.people["member"]))
    )
    with Session(web.engine) as session:
        case = session.exec(select(Case).where(Case.reference == reference)).one()
    shown = client.get(f"/enquiries/{reference}/sent")
    assert shown.status_code == 200
    assert "govuk-panel--confirmation" in shown.text
    assert f"<strong>{reference}</strong>" in shown.text
    due = case.response_due
    assert f"{due:%a} {due.day} {due:%b %Y}" in shown.text
    assert f'href="/enquiries/{reference}"' in shown.text


def test_another_members_confirmation_is_not_found(web: Web) -> None:
    reference = web.pothole()  # Jane's
    raj = Actor("raj.patel@example.gov.uk", Channel.WEB)
    with Session(web.engine) as session:
        from mailbridge.store.models import Person

        raj_id = session.exec(select(Person.id).where(Person.email == raj.name)).one()
    assert raj_id is not None
    mine, _ = web.signed_in("delegate")
    assert mine.get(f"/enquiries/{reference}/sent").status_code == 200
    web.people["raj"] = raj_id
    theirs, _ = web.signed_in("raj")  # type: ignore[arg-type]
    assert theirs.get(f"/enquiries/{reference}/sent").status_code == 404
    assert theirs.get("/enquiries/MQ-2026-99999/sent").status_code == 404
    officer, _ = web.signed_in("officer")
    assert officer.get("/enquiries/new").status_code == 403


def test_a_refresh_or_second_click_shows_the_first_case(web: Web) -> None:
    client, csrf = web.signed_in("member")
    token = opened_form(client)
    form = sample(member_id=web.people["member"])
    first = sent_reference(post_form(client, csrf, token, form))
    again = sent_reference(post_form(client, csrf, token, form))
    edited = sent_reference(post_form(client, csrf, token, sample(member_id=0, subject="Other")))
    assert first == again == edited
    assert count(web, Case) == 1
    assert len(web.outbox("acknowledgement")) == 1


def test_concurrent_posts_of_one_form_open_one_case(web: Web) -> None:
    clients = [web.signed_in("member") for _ in range(3)]
    token = opened_form(clients[0][0])
    form = sample(member_id=web.people["member"])
    start = threading.Barrier(len(clients))
    answers: list[Any] = []

    def post(client: TestClient, csrf: str) -> None:
        start.wait()
        answers.append(post_form(client, csrf, token, form))

    threads = [threading.Thread(target=post, args=pair) for pair in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len({sent_reference(a) for a in answers}) == 1
    assert len(answers) == 3
    assert count(web, Case) == 1


def test_a_refused_form_shows_an_error_summary_keeps_the_input_and_stores_nothing(
    web: Web,
) -> None:
    client, csrf = web.signed_in("member")
    token = opened_form(client)
    bad = sample(member_id=0, subject="", service_area="Parks", uploads=(Upload(".htaccess", PDF),))
    answer = post_form(client, csrf, token, bad)
    assert answer.status_code == 400
    assert "govuk-error-summary" in answer.text
    for anchor in ("#service_area", "#subject", "#files"):
        assert f'href="{anchor}"' in answer.text
    assert "Mrs Ada Green" in answer.text  # what was typed is kept
    assert TOKEN.findall(answer.text) == [token]
    assert (count(web, Case), count(web, Message), count(web, FormSubmission)) == (0, 0, 0)
    fixed = sent_reference(post_form(client, csrf, token, sample(member_id=0)))
    assert fixed.startswith("MQ-")


def test_too_many_files_are_refused(web: Web) -> None:
    client, csrf = web.signed_in("member")
    many = sample(member_id=0, uploads=tuple(Upload(f"p{i}.pdf", PDF) for i in range(11)))
    answer = post_form(client, csrf, opened_form(client), many)
    assert answer.status_code == 400
    assert "Select 10 files or fewer" in answer.text
    assert count(web, Case) == 0


def test_an_oversize_body_is_refused_with_413(web: Web) -> None:
    from mailbridge.web.headers import MAX_BODY

    client, csrf = web.signed_in("member")
    huge = sample(member_id=0, uploads=(Upload("big.pdf", b"x" * (MAX_BODY + 1)),))
    answer = post_form(client, csrf, opened_form(client), huge)
    assert answer.status_code == 413
    assert (count(web, Case), count(web, FormSubmission)) == (0, 0)


def test_an_empty_file_input_is_no_file(web: Web) -> None:
    client, csrf = web.signed_in("member")
    fields = fields_of(sample(member_id=0), csrf, opened_form(client))
    answer = client.post(
        "/enquiries/new", data=fields, files=[("files", ("", b"", "application/octet-stream"))]
    )
    reference = sent_reference(answer)
    with Session(web.engine) as session:
        case = session.exec(select(Case).where(Case.reference == reference)).one()
        kept = session.exec(select(Attachment).where(Attachment.case_id == case.id)).all()
    assert kept == []


def test_the_preferred_contact_shows_on_the_coordinators_dashboard(web: Web) -> None:
    client, csrf = web.signed_in("member")
    form = sample(member_id=0, preferred_contact="letter")
    reference = sent_reference(post_form(client, csrf, opened_form(client), form))
    coordinator, _ = web.signed_in("coordinator")
    board = coordinator.get("/")
    row = board.text[board.text.index(reference) :]
    assert "Letter" in row[: row.index("</tr>")]


def test_a_chosen_area_and_contact_method_are_kept_on_the_case(web: Web) -> None:
    form = sample(
        member_id=web.people["member"],
        service_area="Adult Social Care",
        preferred_contact="phone",
        uploads=(),
    )
    done = open_enquiry(web.council.services, form, actor=as_person(web, "member"))
    with Session(web.engine) as session:
        case = session.get(Case, done.case_id)
        assert case is not None
        assert (case.service_area, case.directorate) == ("Adult Social Care", "Adults and Health")
        assert (case.preferred_contact, case.channel) == ("phone", "web")
        assert "Preferred contact: phone" in case.body_text
        opened = session.exec(
            select(Event.detail).where(Event.case_id == case.id, Event.kind == "case_opened")
        ).one()
    assert "service area given as Adult Social Care" in opened


def count(web: Web, model: type) -> int:
    with Session(web.engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_a_token_sent_twice_opens_one_case(web: Web) -> None:
    form = sample(member_id=web.people["member"], token=submissions.new_form_token())
    actor = as_person(web, "member")
    first = open_enquiry(web.council.services, form, actor=actor)
    again = open_enquiry(web.council.services, form, actor=actor)
    assert (again.reference, again.repeated) == (first.reference, True)
    assert count(web, Case) == 1
    assert count(web, FormSubmission) == 1


def test_concurrent_posts_of_one_token_open_one_case(web: Web) -> None:
    form = sample(member_id=web.people["member"], token=submissions.new_form_token())
    actor = as_person(web, "member")
    start = threading.Barrier(3)
    results: list[submissions.Submitted] = []
    errors: list[BaseException] = []

    def post() -> None:
        start.wait()
        try:
            results.append(open_enquiry(web.council.services, form, actor=actor))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({r.reference for r in results}) == 1
    assert sorted(r.repeated for r in results) == [False, True, True]
    assert count(web, Case) == 1


PROBLEMS = [
    ({"subject": "  "}, "subject", "Enter a subject"),
    ({"details": ""}, "details", "Enter the details of the enquiry"),
    ({"service_area": "Parks"}, "service_area", "Select a service area from the list, or Not sure"),
    ({"preferred_contact": "fax"}, "preferred_contact", "Select email, phone or letter"),
    ({"uploads": (Upload("x.pdf", PDF),) * 11}, "files", "Select 10 files or fewer"),
    (
        {"uploads": (Upload("empty.txt", b""),)},
        "files",
        "empty.txt is empty: select the file again",
    ),
    (
        {"uploads": (Upload("big.pdf", b"x" * (MB2 + 1)),)},
        "files",
        "big.pdf must be smaller than 2 MB",
    ),
    (
        {"resident_name": "x" * 201},
        "resident_name",
        "Resident's name must be 200 characters or fewer",
    ),
]


@pytest.mark.parametrize(("changes", "field", "text"), PROBLEMS)
def test_problems_name_the_field_and_what_to_do(
    changes: dict[str, Any], field: str, text: str
) -> None:
    areas = ["Highways", "Adult Social Care"]
    found = submissions.problems(sample(**changes), areas, max_bytes=MB2, max_filename_length=120)
    assert found == [Problem(field, text)]


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a\\b.txt", ".htaccess", "bell\x07.txt", "a" * 200 + ".pdf", ""]
)
def test_a_file_name_the_email_path_would_change_is_refused(name: str) -> None:
    found = submissions.problems(
        sample(uploads=(Upload(name, PDF),)), [], max_bytes=0, max_filename_length=120
    )
    assert [p.field for p in found] == ["files"]
    assert "rename the file" in found[0].text


def test_refused_input_stores_nothing(web: Web) -> None:
    form = sample(
        member_id=web.people["member"],
        subject="",
        uploads=(Upload("../x.pdf", PDF),),
        token=submissions.new_form_token(),
    )
    with pytest.raises(Invalid) as refused:
        open_enquiry(web.council.services, form, actor=as_person(web, "member"))
    assert [p.field for p in refused.value.problems] == ["subject", "files"]
    assert (count(web, Case), count(web, Message), count(web, FormSubmission)) == (0, 0, 0)


def test_after_hours_the_acknowledgement_says_the_enquiry_arrived_late(web: Web) -> None:
    client, csrf = web.signed_in("member")
    token = opened_form(client)
    with clock_at(datetime(2026, 12, 1, 19, 30, tzinfo=UTC)):
        sent_reference(post_form(client, csrf, token, sample(member_id=0)))
    [ack] = web.outbox("acknowledgement")
    text = message_from_bytes(ack.raw, policy=policy.default).get_body(("plain",))
    assert text is not None
    assert "as your enquiry arrived outside office hours" in " ".join(text.get_content().split())


@pytest.fixture
def limited(tmp_path: Path, migrated_db_url: str) -> Iterator[Web]:
    """The console with a limit of two new cases per sender an hour."""
    from mailbridge.store.db import make_engine

    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, limits={"new_cases_per_sender_per_hour": 2})
    yield site
    for client in site.clients:
        client.close()
    engine.dispose()


def test_the_email_limit_on_new_cases_holds_for_the_form_too(limited: Web) -> None:
    client, csrf = limited.signed_in("member")
    for _ in range(2):
        sent_reference(post_form(client, csrf, opened_form(client), sample(member_id=0)))
    answer = post_form(client, csrf, opened_form(client), sample(member_id=0))
    assert answer.status_code == 400
    assert "as many enquiries as the limit allows" in answer.text
    assert (count(limited, Case), count(limited, FormSubmission)) == (2, 2)


def test_an_uploaded_program_is_kept_and_held_back_as_in_an_email(web: Web) -> None:
    form = sample(
        member_id=web.people["member"], uploads=(Upload("tool.exe", b"MZ" + b"\0" * 200),)
    )
    done = open_enquiry(web.council.services, form, actor=as_person(web, "member"))
    with Session(web.engine) as session:
        [kept] = session.exec(select(Attachment).where(Attachment.case_id == done.case_id)).all()
        held = session.exec(
            select(Event.detail).where(
                Event.case_id == done.case_id, Event.kind == "attachment_held"
            )
        ).all()
    assert kept.sha256 is not None and kept.held_reason
    assert held == [f"tool.exe: held back from members and officers: {kept.held_reason}"]


def test_another_council_system_opens_a_case_for_a_member_in_its_own_name(web: Web) -> None:
    crm = Actor("customer-services-crm", Channel.API, "10.0.0.7")
    done = open_enquiry(
        web.council.services, sample(member_id=web.people["member"], uploads=()), actor=crm
    )
    with Session(web.engine) as session:
        case = session.get(Case, done.case_id)
        assert case is not None
        assert (case.channel, case.member_id, case.submitter_id) == (
            "api",
            *[web.people["member"]] * 2,
        )
        opened = session.exec(
            select(Event).where(Event.case_id == case.id, Event.kind == "case_opened")
        ).one()
    assert (opened.actor, opened.actor_id) == (crm.shown, None)
    assert opened.detail.startswith("opened from another council system by Cllr Jane Smith")


def test_a_person_may_raise_enquiries_only_for_the_member_they_act_for(web: Web) -> None:
    with Session(web.engine) as session:
        from mailbridge.store.models import Person

        raj = session.exec(
            select(Person.id).where(Person.email == "raj.patel@example.gov.uk")
        ).one()
    assert raj is not None
    with pytest.raises(UserError, match="only for yourself or the member you act for"):
        open_enquiry(
            web.council.services,
            sample(member_id=raj, uploads=()),
            actor=as_person(web, "delegate"),
        )
    assert count(web, Case) == 0


def test_the_form_queues_the_opened_webhook_as_an_email_does(
    tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailbridge.store.db import make_engine
    from mailbridge.store.models import WebhookDelivery

    monkeypatch.setenv("MAILBRIDGE_TEST_FORM_HOOK", "a-receivers-shared-secret-of-some-length")
    hooks = [
        {"name": "crm", "url": "http://127.0.0.1:9/", "secret_env": "MAILBRIDGE_TEST_FORM_HOOK"}
    ]
    engine = make_engine(migrated_db_url)
    site = make_web(tmp_path, engine, webhooks=hooks)
    try:
        form = sample(member_id=site.people["member"])
        [by_email] = site.council.deliver(email_of(JANE, form)).references
        client, csrf = site.signed_in("member")
        by_form = sent_reference(post_form(client, csrf, opened_form(client), form))
        with Session(engine) as session:
            rows = session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).all()
        bodies = {}
        for row in rows:
            body = json.loads(row.body)
            bodies[body["case"].pop("reference")] = (row.event, body["change"], body["case"])
        email_hook, form_hook = bodies[by_email], bodies[by_form]
        assert (email_hook[2].pop("channel"), form_hook[2].pop("channel")) == ("email", "web")
        for hook in (email_hook, form_hook):
            hook[2].pop("received_at")
        assert form_hook == email_hook
        assert form_hook[0] == "opened"
        assert len(rows) == 2
    finally:
        for c in site.clients:
            c.close()
        engine.dispose()
