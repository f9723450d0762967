"""Who may see and do what to a case (cases/permissions.py): the standings read from the
records for every kind of person, what each allows, and the lists they get; on both
databases."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from mailbridge.cases.permissions import (
    Action,
    Standing,
    allows,
    may,
    standings,
    visible_clause,
)
from mailbridge.store.db import transaction
from mailbridge.store.models import Case, CaseMember, CaseOfficer, Person
from tests.factories import add_person

S = Standing
A = Action


@pytest.mark.parametrize(
    ("held", "action", "allowed"),
    [
        (frozenset(), A.SEE, False),
        ({S.MEMBER}, A.SEE, True),
        ({S.MEMBER}, A.REQUEST_UPDATE, True),
        ({S.MEMBER}, A.REOPEN, True),
        ({S.MEMBER}, A.SEE_INTERNAL, False),  # never internal notes or contributions
        ({S.MEMBER}, A.RESPOND, False),
        ({S.DELEGATE}, A.REQUEST_UPDATE, True),  # acts for their member
        ({S.DELEGATE}, A.SEE_INTERNAL, False),
        ({S.LEAD}, A.RESPOND, True),
        ({S.LEAD}, A.REQUEST_UPDATE, False),
        ({S.ADDITIONAL}, A.CONTRIBUTE, True),
        ({S.ADDITIONAL}, A.RESPOND, False),
        ({S.COORDINATOR}, A.MANAGE, True),
        ({S.API_READ}, A.NOTE, False),
        ({S.API_WRITE}, A.NOTE, True),
        ({S.LEAD, S.MEMBER}, A.REOPEN, True),  # any standing's allowance counts
    ],
)
def test_what_each_standing_allows(held: set[Standing], action: Action, allowed: bool) -> None:
    assert allows(frozenset(held), action) is allowed


@pytest.fixture
def people(engine: Engine) -> dict[str, int]:
    """One case raised by Jane, with Raj put on it, Priya leading, Sam additional; Tom is
    Jane's delegate, Uma Raj's; Ann an officer on no case; Lee a member on no case."""
    jane = add_person(engine, "member", "Jane", "jane@example.gov.uk")
    raj = add_person(engine, "member", "Raj", "raj@example.gov.uk")
    found = {
        "member": jane,
        "put_on_member": raj,
        "delegate": add_person(engine, "delegate", "Tom", "tom@example.gov.uk", delegate_for=jane),
        "put_on_delegate": add_person(
            engine, "delegate", "Uma", "uma@example.gov.uk", delegate_for=raj
        ),
        "lead": add_person(engine, "officer", "Priya", "priya@example.gov.uk"),
        "additional": add_person(engine, "officer", "Sam", "sam@example.gov.uk"),
        "unrelated_officer": add_person(engine, "officer", "Ann", "ann@example.gov.uk"),
        "other_member": add_person(engine, "member", "Lee", "lee@example.gov.uk"),
        "coordinator": add_person(engine, "coordinator", "Support", "support@example.gov.uk"),
        "officer_coordinator": add_person(
            engine, "officer", "Kim", "kim@example.gov.uk", coordinator=True
        ),
        "inactive_member": add_person(engine, "member", "Old", "old@example.gov.uk", active=False),
    }
    at = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
    with transaction(engine) as session:
        case = Case(
            reference="MQ-2026-00001",
            prefix="MQ",
            year=2026,
            seq=1,
            subject="Pothole",
            member_id=jane,
            submitter_id=jane,
            lead_officer_id=found["lead"],
            received_at=at,
            acknowledge_due=date(2026, 11, 26),
            response_due=date(2026, 12, 8),
        )
        session.add(case)
        session.flush()
        session.add(CaseMember(case_id=case.id, person_id=raj))
        session.add(CaseOfficer(case_id=case.id, person_id=found["lead"], role="lead"))
        session.add(CaseOfficer(case_id=case.id, person_id=found["additional"], role="additional"))
        # The inactive member raised it too, once: being inactive, they see nothing.
        session.add(CaseMember(case_id=case.id, person_id=found["inactive_member"]))
    return found


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("member", {S.MEMBER}),
        ("put_on_member", {S.MEMBER}),
        ("delegate", {S.DELEGATE}),
        ("put_on_delegate", {S.DELEGATE}),
        ("lead", {S.LEAD}),
        ("additional", {S.ADDITIONAL}),
        ("unrelated_officer", set()),
        ("other_member", set()),
        ("coordinator", {S.COORDINATOR}),
        ("officer_coordinator", {S.COORDINATOR}),
        ("inactive_member", set()),
    ],
)
def test_standings_are_read_from_the_records(
    engine: Engine, people: dict[str, int], who: str, expected: set[Standing]
) -> None:
    with Session(engine) as session:
        case = session.exec(select(Case)).one()
        person = session.get(Person, people[who])
        got = standings(session, person, case)
        listed = session.exec(select(Case.reference).where(visible_clause(person))).all()
        assert got == frozenset(expected)
        # The lists agree with the case: a case is listed to exactly those with a standing.
        assert listed == (["MQ-2026-00001"] if expected else [])
        assert may(session, person, case, A.SEE) is bool(expected)
        assert may(session, person, case, A.REQUEST_UPDATE) is bool(
            expected & {S.MEMBER, S.DELEGATE, S.COORDINATOR}
        )


def test_nobody_has_no_standing(engine: Engine, people: dict[str, int]) -> None:
    with Session(engine) as session:
        case = session.exec(select(Case)).one()
        assert standings(session, None, case) == frozenset()
        assert session.exec(select(col(Case.id)).where(visible_clause(None))).all() == []
