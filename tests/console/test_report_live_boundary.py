"""The kept months' day (console/report_months.py) at its edge: cases whose last deadline is
just before, on or just after the day their month was counted, of every status, the latest
deadline being each of the three in turn, with and without an extension, received late in
the evening UTC (the next local day), against the definition on that day, on days after it,
on the day before it (counted live), and after later ticks have counted the month again.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, insert
from sqlmodel import Session, select

from mailbridge.console.report_months import kept, refresh
from mailbridge.store.db import transaction
from mailbridge.store.models import Case, Event, Person, ReportMonth
from tests.console.test_report_reference import CALENDAR, assert_definition, seed

D = date(2026, 11, 20)  # the day the months are counted on
STATUSES = [  # (status, acknowledged, answered)
    ("new", False, False),
    ("in_progress", True, False),
    ("in_progress", True, True),
    ("completed", False, True),
    ("completed", True, False),
    ("completed", True, True),
    ("closed", False, False),
    ("closed", True, True),
]


def _edge_cases(engine: Engine) -> None:
    with transaction(engine) as session:
        member = Person(kind="member", name="Cllr Edge", email="edge@example.gov.uk")
        session.add(member)
        session.flush()
        seq = 20000
        old = D - timedelta(days=10)
        for day, (status, acked, answered), latest, offset, extended in itertools.product(
            (1, 6, 16, 30),
            STATUSES,
            ("ack", "due", "ext"),
            (-2, -1, 0, 1, 3),
            (False, True),
        ):
            received = datetime(2026, 10, day, 23, 30, tzinfo=UTC)  # local: the next day
            ack_due = due = old
            ext = old - timedelta(days=1) if extended else None
            moved = D + timedelta(days=offset)
            if latest == "ack":
                ack_due = moved
            elif latest == "due":
                due = moved
            else:
                ext = moved
            seq += 1
            case_id = (
                session.connection()
                .execute(
                    insert(Case).values(
                        reference=f"MQ-2026-{seq:05d}",
                        prefix="MQ",
                        year=2026,
                        seq=seq,
                        subject="edge",
                        status=status,
                        member_id=member.id,
                        submitter_id=member.id,
                        service_area="Edges",
                        directorate="Review",
                        received_at=received,
                        acknowledged_at=received + timedelta(days=1) if acked else None,
                        acknowledge_due=ack_due,
                        response_due=due,
                        extended_due=ext,
                        first_response_at=received + timedelta(days=2) if answered else None,
                        completed_at=received + timedelta(days=3)
                        if status in ("completed", "closed")
                        else None,
                        chase_count=seq % 3,
                    )
                )
                .inserted_primary_key[0]
            )
            if seq % 4 == 0:
                session.add(Event(case_id=case_id, kind="holding_reply", at=received))


def _periods(today: date) -> list[tuple[date, date, date]]:
    return [
        (date(2026, 10, 1), date(2026, 10, 31), today),  # October kept, whole
        (date(2026, 10, 5), date(2026, 10, 25), today),  # kept, less both edges
        (date(2026, 9, 1), date(2026, 10, 31), today),
        (date(2026, 10, 2), date(2026, 11, 19), today),
    ]


def test_cases_around_the_counting_day_are_their_definition_on_every_day_after(
    engine: Engine,
) -> None:
    seed(engine, random.Random(11))
    _edge_cases(engine)
    assert date(2026, 10, 1) in refresh(engine, CALENDAR, D, seconds=60)
    with engine.connect() as conn:
        assert date(2026, 10, 1) in kept(conn, CALENDAR, date(2026, 10, 1), date(2026, 10, 1), D)
    for later in (0, 1, 2, 3, 4, 40, 400):
        assert_definition(engine, _periods(D + timedelta(days=later)))
    assert_definition(engine, _periods(D - timedelta(days=1)))  # before the count: live
    # Later ticks count the months again once their live cases have settled.
    for later in (2, 4, 5):
        refresh(engine, CALENDAR, D + timedelta(days=later), seconds=60)
        with Session(engine) as session:
            october = session.exec(
                select(ReportMonth).where(ReportMonth.month == date(2026, 10, 1))
            ).one()
        assert october.day <= D + timedelta(days=later)
        for after in (0, 1, 30):
            assert_definition(engine, _periods(D + timedelta(days=later + after)))
