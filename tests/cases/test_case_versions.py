"""Optimistic concurrency: an action taken on a case as a page showed it (`expecting` its
version) is refused, with nothing done, when the case changed since; taken on the version
it is at, it works and moves the version. Every coordinator action, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from mailbridge.cases import assignment, coordinator, lifecycle
from mailbridge.cases.records import CaseChanged, expecting, find_case, version_of
from mailbridge.errors import UserError
from mailbridge.privacy import holds
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import (
    AuditRecord,
    Case,
    CaseMember,
    CaseOfficer,
    Event,
    Message,
    OutboxMessage,
    utcnow,
)
from tests.factories import add_person, fixture_bytes
from tests.helpers.council import GARETH, PRIYA, RAJ, REF, SAM, Council, build_council, new_email

pytestmark = pytest.mark.usefixtures("fixed_clock")

COORDINATOR = "Casey Coordinator <member.support@example.gov.uk>"
OTHER = "Alex Other <member.support@example.gov.uk>"
WEB = Actor("member.support@example.gov.uk", Channel.WEB, "203.0.113.7")
CHANGED = re.compile(
    r"^(MQ-\d{4}-\d{5}) changed since you opened it \(at (\d\d \w{3} \d{4} )?\d\d:\d\d UTC "
    r"by (.+)\); nothing was done — reload it and try again$"
)


@dataclass
class Desk:
    council: Council
    tmp: Path
    other: str  # Raj's case about the same pothole

    @property
    def services(self) -> Services:
        return self.council.services

    def version(self, reference: str) -> str:
        with self.council.db() as session:
            return version_of(find_case(session, reference))


@pytest.fixture
def desk(tmp_path: Path, migrated_db_url: str) -> Iterator[Desk]:
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine)
    council.open_pothole_case()
    [other] = council.deliver(
        new_email(RAJ, "Pothole outside 14 Main Street", "Residents report a deep pothole.")
    ).references
    yield Desk(council, tmp_path, other)
    engine.dispose()


# --- the actions: how to get the case ready for each, and the action itself ------------

Act = Callable[[Desk, str], object]


def _gareth_case(desk: Desk) -> str:
    """Gareth's enquiry with a photo and a PDF: a case with kept attachments."""
    add_person(desk.council.engine, "member", "Cllr Gareth Jones", GARETH, district="Harborough")
    [reference] = desk.council.deliver(
        fixture_bytes("member_enquiry_with_photo_and_pdf.eml")
    ).references
    return reference


def _completed(desk: Desk) -> str:
    coordinator.set_status(desk.services, REF, "completed", actor=COORDINATOR)
    return REF


def _paused(desk: Desk) -> str:
    coordinator.pause(desk.services, REF, "awaiting a photo", actor=COORDINATOR, now=utcnow())
    return REF


def _assigned(desk: Desk) -> str:
    assignment.assign(desk.services, REF, PRIYA, actor=COORDINATOR)
    return REF


def _held(desk: Desk) -> str:
    holds.hold(desk.services, REF, "claim HX-1", actor=WEB, now=utcnow())
    return REF


def _ref(desk: Desk) -> str:
    return REF


@dataclass(frozen=True)
class Action:
    """One action: `ready` brings a case to where the action applies and names it; `act`
    acts on it; `expect` names the case whose version the page carried (the merged-into
    case for the second merge); `moves` is False for an action that changes no case."""

    ready: Callable[[Desk], str]
    act: Act
    expect: Callable[[Desk, str], str] = lambda desk, reference: reference
    moves: bool = True


ACTIONS: dict[str, Action] = {
    "set_fields": Action(
        _ref,
        lambda d, r: coordinator.set_fields(d.services, r, actor=COORDINATOR, district="Blaby"),
    ),
    "set_status": Action(
        _ref, lambda d, r: coordinator.set_status(d.services, r, "completed", actor=COORDINATOR)
    ),
    "add_note": Action(
        _ref, lambda d, r: coordinator.add_note(d.services, r, "Rang Jane.", actor=COORDINATOR)
    ),
    "reply": Action(
        _ref, lambda d, r: coordinator.reply(d.services, r, "On its way.", actor=COORDINATOR)
    ),
    "reopen": Action(
        _completed, lambda d, r: coordinator.reopen(d.services, r, "not fixed", actor=COORDINATOR)
    ),
    "link": Action(_ref, lambda d, r: coordinator.link(d.services, r, RAJ, actor=COORDINATOR)),
    "merge": Action(
        _ref, lambda d, r: coordinator.merge(d.services, r, d.other, actor=COORDINATOR)
    ),
    "merge_into": Action(
        _ref,
        lambda d, r: coordinator.merge(d.services, r, d.other, actor=COORDINATOR),
        expect=lambda d, r: d.other,
    ),
    "convert": Action(
        _ref,
        lambda d, r: coordinator.convert(
            d.services, r, "complaint", "about the service", actor=COORDINATOR
        ),
    ),
    "save_attachments": Action(
        _gareth_case,
        lambda d, r: coordinator.save_attachments(d.services, r, d.tmp / "saved", actor=WEB),
        moves=False,  # a copy taken changes nothing on the case
    ),
    "pause": Action(
        _ref,
        lambda d, r: coordinator.pause(
            d.services, r, "awaiting a photo", actor=COORDINATOR, now=utcnow()
        ),
    ),
    "resume": Action(
        _paused, lambda d, r: coordinator.resume(d.services, r, actor=COORDINATOR, now=utcnow())
    ),
    "assign": Action(_ref, lambda d, r: assignment.assign(d.services, r, PRIYA, actor=COORDINATOR)),
    "reassign": Action(
        _assigned,
        lambda d, r: assignment.assign(d.services, r, SAM, actor=COORDINATOR, reassign=True),
    ),
    "hold": Action(
        _ref, lambda d, r: holds.hold(d.services, r, "claim HX-1", actor=WEB, now=utcnow())
    ),
    "release": Action(_held, lambda d, r: holds.release(d.services, r, actor=WEB)),
}


def _state(desk: Desk, *references: str) -> dict[str, Any]:
    """Everything an action could write: the cases' rows and how many rows each table has."""
    with desk.council.db() as session:
        rows = {
            ref: session.exec(select(Case).where(Case.reference == ref)).one().model_dump()
            for ref in references
        }
        counts = {
            model.__name__: session.exec(select(func.count()).select_from(model)).one()
            for model in (Event, OutboxMessage, Message, CaseOfficer, CaseMember, AuditRecord)
        }
    return {"cases": rows, "rows": counts}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_a_stale_version_is_refused_with_nothing_done_and_the_current_one_works(
    desk: Desk, name: str
) -> None:
    action = ACTIONS[name]
    reference = action.ready(desk)
    expected = action.expect(desk, reference)
    opened = desk.version(expected)
    # Someone else changes the case after the page showed it.
    coordinator.add_note(desk.services, expected, "Spoke to the depot.", actor=OTHER)
    now_at = desk.version(expected)
    assert now_at != opened
    before = _state(desk, reference, desk.other)
    versions = {ref: desk.version(ref) for ref in (reference, desk.other)}

    with pytest.raises(CaseChanged) as refused, expecting(expected, opened):
        action.act(desk, reference)

    said = CHANGED.match(str(refused.value))
    assert said, str(refused.value)
    assert (said[1], said[3]) == (expected, OTHER)
    assert isinstance(refused.value, UserError)
    assert _state(desk, reference, desk.other) == before, "a refused action changes nothing"
    assert not (desk.tmp / "saved").exists()

    with expecting(expected, now_at):
        action.act(desk, reference)

    after = _state(desk, reference, desk.other)
    assert after["rows"]["Event"] > before["rows"]["Event"], "the action was done"
    moved = {ref for ref, version in versions.items() if desk.version(ref) != version}
    if not action.moves:
        assert moved == set()
    elif name.startswith("merge"):
        assert moved == {reference, desk.other}, "a merge changes both cases"
    else:
        assert moved == {reference}


def test_expecting_one_case_leaves_others_and_the_command_line_as_they_were(desk: Desk) -> None:
    opened = desk.version(REF)
    coordinator.add_note(desk.services, REF, "Spoke to the depot.", actor=OTHER)
    with expecting(desk.other, desk.version(desk.other)):
        # A stale version of another case is no reason to refuse this one.
        with expecting(REF.lower(), desk.version(REF)):
            coordinator.add_note(desk.services, REF, "Rang Jane.", actor=COORDINATOR)
        with pytest.raises(CaseChanged), expecting(f" {REF.lower()} ", opened):
            coordinator.add_note(desk.services, REF, "Rang Jane.", actor=COORDINATOR)
    # Outside any expectation (the command line), the action acts on the case as it is now.
    coordinator.add_note(desk.services, REF, "Rang Jane again.", actor=COORDINATOR)
    notes = [e.actor for e in desk.council.events(REF, "note")]
    assert notes == [OTHER, COORDINATOR, COORDINATOR]


def test_the_check_and_the_change_cannot_be_split_by_another_writer(desk: Desk) -> None:
    """While one action that found the case at the version it expected is still running,
    a second one expecting the same version waits, then sees the first one's change and is
    refused (the row lock on PostgreSQL, the write lock on SQLite): never both done."""
    seen = desk.version(REF)
    second: list[BaseException | None] = []

    def act_second() -> None:
        try:
            with expecting(REF, seen):
                coordinator.add_note(desk.services, REF, "Second.", actor=OTHER)
            second.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            second.append(exc)

    other = threading.Thread(target=act_second)
    with transaction(desk.services.engine) as session, expecting(REF, seen):
        case = find_case(session, REF)
        other.start()
        time.sleep(0.5)  # time enough for the second action to look at the case, if it could
        case.district = "Blaby"
        lifecycle.touch(case, utcnow())
        session.add(case)
    other.join(timeout=60)
    assert not other.is_alive()
    assert len(second) == 1 and isinstance(second[0], CaseChanged), second
    assert [e.actor for e in desk.council.events(REF, "note")] == []
