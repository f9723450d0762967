"""The coordinators' actions on the case page: each has exactly the effect of the function
the command line calls (the same events and the same queued mail), with the signed-in person
as the actor; a case that changed since the page was loaded is refused with nothing done;
a mistake re-renders the page with an error summary."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from sqlmodel import Session, col, select

from mailbridge.cases import assignment, coordinator
from mailbridge.services import Services
from mailbridge.store.models import Event, OutboxMessage, utcnow
from tests.factories import fixture_bytes
from tests.helpers.council import POTHOLE_ID, PRIYA, RAJ, SAM
from tests.web.conftest import Web

pytestmark = pytest.mark.usefixtures("fixed_clock")

SHOWN = "member.support@example.gov.uk (web, testclient)"
TWIN, THIRD = "MQ-2026-00002", "MQ-2026-00003"
Direct = Callable[[Services, str, str, datetime], Any]


def _twin_cases(web: Web) -> str:
    """Jane's pothole enquiry twice (the same text, received at the same moment), so an
    action on each gives the same deadlines and words; and a third case to merge into."""
    reference = web.pothole()
    raw = fixture_bytes("member_new_enquiry_pothole.eml")
    web.council.deliver(raw.replace(POTHOLE_ID.encode(), b"<CAF1234567.twin@mail.example.gov.uk>"))
    web.council.deliver(raw.replace(POTHOLE_ID.encode(), b"<CAF1234567.third@mail.example.gov.uk>"))
    web.council.new_mail()
    return reference


def _version(page: str) -> str:
    found = re.search(r'name="version" value="([^"]+)"', page)
    assert found, "the page's forms carry the case's version"
    return found.group(1)


def _since(web: Web, reference: str, events: int, mails: int) -> tuple[list, list]:
    """The case's events and queued mail after the first `events` and `mails`."""
    case_id = web.council.case(reference).id
    with Session(web.engine) as session:
        found = session.exec(
            select(Event).where(Event.case_id == case_id).order_by(col(Event.id))
        ).all()
        queued = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.case_id == case_id)
            .order_by(col(OutboxMessage.id))
        ).all()
    return (
        [(e.kind, e.detail.replace(reference, "REF"), e.actor) for e in found[events:]],
        [(m.kind, m.recipients) for m in queued[mails:]],
    )


def _counts(web: Web, reference: str) -> tuple[int, int]:
    events, mails = _since(web, reference, 0, 0)
    return len(events), len(mails)


@dataclass
class Case:
    """One action: what the form sends, the same call made directly, and what must be
    true of both cases first."""

    action: str
    form: dict[str, Any]
    direct: Direct
    before: Callable[[Services, str], Any] | None = None
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)


def _assigned(services: Services, ref: str) -> None:
    assignment.assign(services, ref, PRIYA, actor="desk")


def _paused(services: Services, ref: str) -> None:
    coordinator.pause(services, ref, "awaiting the councillor", actor="desk", now=utcnow())


def _completed(services: Services, ref: str) -> None:
    coordinator.set_status(services, ref, "completed", actor="desk")


ACTIONS = [
    Case(
        "assign",
        {"lead": PRIYA, "also": ["", SAM, ""]},
        lambda s, r, a, n: assignment.assign(s, r, PRIYA, [SAM], actor=a, now=n),
    ),
    Case(
        "reassign",
        {"lead": SAM, "also": [PRIYA], "reset_deadline": "yes"},
        lambda s, r, a, n: assignment.assign(
            s, r, SAM, [PRIYA], actor=a, reassign=True, reset_deadline=True, now=n
        ),
        before=_assigned,
    ),
    Case(
        "fields",
        {
            "service_area": "School Transport",
            "enquiry_type": "Pothole",
            "directorate": "Environment and Transport",
            "district": "Harborough",
            "preferred_contact": "phone",
            "sensitive": "yes",
        },
        lambda s, r, a, n: coordinator.set_fields(
            s,
            r,
            actor=a,
            service_area="School Transport",
            enquiry_type="Pothole",
            directorate="Environment and Transport",
            district="Harborough",
            preferred_contact="phone",
            sensitive=True,
        ),
    ),
    Case(
        "status",
        {"status": "completed"},
        lambda s, r, a, n: coordinator.set_status(s, r, "completed", actor=a),
        before=_assigned,
    ),
    Case(
        "pause",
        {"reason": "awaiting information from the councillor"},
        lambda s, r, a, n: coordinator.pause(
            s, r, "awaiting information from the councillor", actor=a, now=n
        ),
    ),
    Case(
        "resume",
        {},
        lambda s, r, a, n: coordinator.resume(s, r, actor=a, now=n),
        before=_paused,
    ),
    Case(
        "extend",
        {"days": "5", "reason": "awaiting the contractor"},
        lambda s, r, a, n: coordinator.extend(s, r, 5, "awaiting the contractor", actor=a, now=n),
    ),
    Case(
        "note",
        {"text": "Spoke to the contractor: repair booked"},
        lambda s, r, a, n: coordinator.add_note(
            s, r, "Spoke to the contractor: repair booked", actor=a
        ),
    ),
    Case(
        "reply",
        {"text": "The repair is booked for Monday."},
        lambda s, r, a, n: coordinator.reply(
            s,
            r,
            "The repair is booked for Monday.",
            [coordinator.Upload("repair plan.pdf", b"%PDF-1.4 plan", "repair plan.pdf")],
            actor=a,
        ),
        files={"files": ("repair plan.pdf", b"%PDF-1.4 plan", "application/x-whatever")},
    ),
    Case(
        "reopen",
        {"reason": "the repair failed"},
        lambda s, r, a, n: coordinator.reopen(s, r, "the repair failed", actor=a),
        before=_completed,
    ),
    Case(
        "link",
        {"member": RAJ},
        lambda s, r, a, n: coordinator.link(s, r, RAJ, actor=a),
    ),
    Case(
        "merge",
        {"into": THIRD},
        lambda s, r, a, n: coordinator.merge(s, r, THIRD, actor=a),
    ),
    Case(
        "convert",
        {"to": "complaint", "reason": "a resident's complaint"},
        lambda s, r, a, n: coordinator.convert(
            s, r, "complaint", "a resident's complaint", actor=a
        ),
    ),
]


@pytest.mark.parametrize("case", ACTIONS, ids=[c.action for c in ACTIONS])
def test_an_action_does_what_the_clis_function_does_with_the_viewer_as_actor(
    web: Web, case: Case
) -> None:
    reference = _twin_cases(web)
    services = web.council.services
    if case.before is not None:
        case.before(services, reference)
        case.before(services, TWIN)
    client, csrf = web.signed_in("coordinator")
    web_counts, twin_counts = _counts(web, reference), _counts(web, TWIN)
    page = client.get(f"/cases/{reference}").text
    assert f'action="/cases/{reference}/{case.action}"' in page, "the page offers the action"
    answer = client.post(
        f"/cases/{reference}/{case.action}",
        data={**case.form, "csrf": csrf, "version": _version(page)},
        files={name: value for name, value in case.files.items()} or None,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(f"/cases/{reference}?done=")
    banner = client.get(answer.headers["location"])
    assert "govuk-notification-banner--success" in banner.text
    case.direct(services, TWIN, SHOWN, web.clock())
    by_web = _since(web, reference, *web_counts)
    direct = _since(web, TWIN, *twin_counts)
    assert by_web[0], "the action is an event on the case"
    assert {actor for _, _, actor in by_web[0]} == {SHOWN}
    assert by_web == direct


def test_a_case_changed_since_the_page_was_loaded_is_not_overwritten(web: Web) -> None:
    reference = web.pothole()
    client, csrf = web.signed_in("coordinator")
    version = _version(client.get(f"/cases/{reference}").text)
    coordinator.add_note(web.council.services, reference, "A colleague's note", actor="Ann")
    before = _counts(web, reference)
    answer = client.post(
        f"/cases/{reference}/pause",
        data={"reason": "awaiting the councillor", "csrf": csrf, "version": version},
    )
    assert answer.status_code == 409
    assert "govuk-error-summary" in answer.text
    assert f"{reference} changed since you opened it" in answer.text
    assert "nothing was done" in answer.text
    assert f'<a href="/cases/{reference}">Reload {reference}</a>' in answer.text
    assert 'value="awaiting the councillor"' in answer.text, "what they typed is kept"
    assert _counts(web, reference) == before
    assert web.council.case(reference).paused_at is None
    # The page they now see carries the new version: the same form goes through.
    again = client.post(
        f"/cases/{reference}/pause",
        data={"reason": "awaiting the councillor", "csrf": csrf, "version": _version(answer.text)},
    )
    assert again.status_code == 303
    assert web.council.case(reference).paused_at is not None


def test_an_unknown_officer_is_a_clear_error_and_nothing_changes(web: Web) -> None:
    reference = web.pothole()
    client, csrf = web.signed_in("coordinator")
    version = _version(client.get(f"/cases/{reference}").text)
    before = _counts(web, reference)
    answer = client.post(
        f"/cases/{reference}/assign",
        data={"lead": "nobody@example.gov.uk", "csrf": csrf, "version": version},
    )
    assert answer.status_code == 400
    assert "There is a problem" in answer.text
    assert (
        '<a href="#assign-lead">--lead nobody@example.gov.uk: nobody in the directory has this '
        "address"
    ) in answer.text
    assert _counts(web, reference) == before
    assert web.council.case(reference).lead_officer_id is None
    assert web.outbox("assignment") == []


def test_an_assignment_through_the_page_queues_the_enquiry_for_the_officer(web: Web) -> None:
    reference = web.pothole()
    client, csrf = web.signed_in("coordinator")
    version = _version(client.get(f"/cases/{reference}").text)
    answer = client.post(
        f"/cases/{reference}/assign",
        data={"lead": PRIYA, "also": "", "csrf": csrf, "version": version},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/cases/{reference}?done=assigned"
    [sent] = web.outbox("assignment")
    assert sent.recipients == PRIYA
    [event] = web.council.events(reference, "assigned")
    assert (event.detail, event.actor) == ("lead officer Priya Shah", SHOWN)
    page = client.get(answer.headers["location"]).text
    assert "Officers assigned: the enquiry is queued for them" in page


def test_the_banner_is_chosen_from_a_fixed_set(web: Web) -> None:
    reference = web.pothole()
    client, _ = web.signed_in("coordinator")
    page = client.get(f"/cases/{reference}?done=<b>hacked</b>").text
    assert "hacked" not in page
    assert "govuk-notification-banner" not in page


def test_a_form_without_a_version_does_nothing(web: Web) -> None:
    reference = web.pothole()
    client, csrf = web.signed_in("coordinator")
    before = _counts(web, reference)
    answer = client.post(f"/cases/{reference}/note", data={"text": "hello", "csrf": csrf})
    assert answer.status_code == 400
    assert "reload it" in answer.text
    assert _counts(web, reference) == before


def test_a_held_back_upload_needs_the_checked_box(web: Web) -> None:
    reference = web.pothole()
    client, csrf = web.signed_in("coordinator")
    page = b"<html><form><input type=password></form></html>"
    said = []
    for checked, status in (({}, 400), ({"checked": "yes"}, 303)):
        version = _version(client.get(f"/cases/{reference}").text)
        answer = client.post(
            f"/cases/{reference}/reply",
            data={"text": "The page.", "csrf": csrf, "version": version, **checked},
            files={"files": ("survey.htm", page, "application/pdf")},
        )
        assert answer.status_code == status, answer.text
        said.append(answer.text)
    assert "survey.htm: held back as web page with a form" in said[0]
    [event] = web.council.events(reference, "replied")
    assert event.detail.endswith("checked by the coordinator: survey.htm (web page with a form)")


MISTAKES = {
    "assign": ({"lead": ""}, "--lead : nobody in the directory has this address"),
    "reassign": ({"lead": RAJ, "also": [SAM]}, f"--lead {RAJ} is a member, not an officer"),
    "fields": ({"service_area": "Nowhere"}, "--service-area 'Nowhere' is not a service area"),
    "status": ({"status": "closed"}, "a case is closed by `mailbridge case merge`"),
    "pause": ({"reason": " "}, "--reason is empty: say why the clock stops"),
    "resume": ({}, "is not paused"),
    "extend": ({"days": "five", "reason": "x"}, "Enter the working days to add as a whole"),
    "note": ({"text": ""}, "the note is empty"),
    "reply": ({"text": "  "}, "the reply is empty"),
    "reopen": ({"reason": "why not"}, "only a completed case can be reopened"),
    "link": ({"member": PRIYA}, f"--member {PRIYA} is an officer, not a member"),
    "merge": ({"into": "MQ-2026-09999"}, "no case has reference MQ-2026-09999"),
    "convert": ({"to": "letter", "reason": "x"}, "--to must be one of: complaint, service-request"),
}


@pytest.mark.parametrize("action", list(MISTAKES))
def test_a_mistake_in_any_action_shows_the_page_again_with_the_problem(
    web: Web, action: str
) -> None:
    reference = web.pothole()
    client, csrf = web.signed_in("coordinator")
    version = _version(client.get(f"/cases/{reference}").text)
    before = _counts(web, reference)
    form, said = MISTAKES[action]
    answer = client.post(
        f"/cases/{reference}/{action}", data={**form, "csrf": csrf, "version": version}
    )
    assert answer.status_code == 400, answer.text
    assert "There is a problem" in answer.text
    summary = re.search(r'<ul class="govuk-list govuk-error-summary__list">(.*?)</ul>',
                        answer.text, re.S)  # fmt: skip
    assert summary and said in summary.group(1).replace("&#39;", "'"), answer.text
    assert answer.text.startswith("<!DOCTYPE html>")
    assert _counts(web, reference) == before
