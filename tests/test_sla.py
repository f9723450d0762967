"""Working days in England and Wales: the day of receipt is never counted."""

from datetime import UTC, date, datetime

import pytest

from mailbridge.sla import WorkingCalendar

CAL = WorkingCalendar("Europe/London", "GB", "ENG", closure_days=["2026-12-30"])


@pytest.mark.parametrize(
    ("start", "days", "expected", "why"),
    [
        (date(2026, 11, 24), 1, date(2026, 11, 25), "an ordinary Tuesday"),
        (date(2026, 11, 27), 1, date(2026, 11, 30), "Friday to Monday skips the weekend"),
        (date(2026, 11, 28), 1, date(2026, 11, 30), "received on a Saturday"),
        (date(2026, 4, 2), 1, date(2026, 4, 7), "Good Friday and Easter Monday 2026"),
        (date(2026, 8, 28), 1, date(2026, 9, 1), "the August bank holiday needs subdiv ENG"),
        (date(2026, 12, 24), 1, date(2026, 12, 29), "Boxing Day 2026 is a Saturday: 28th off"),
        (date(2026, 12, 24), 2, date(2026, 12, 31), "a configured closure day is skipped"),
        (date(2026, 11, 24), 10, date(2026, 12, 8), "the default response deadline"),
        (date(2026, 11, 24), 0, date(2026, 11, 24), "zero days is the same day"),
    ],
)
def test_add_working_days(start: date, days: int, expected: date, why: str) -> None:
    assert CAL.add_working_days(start, days) == expected, why


def test_without_subdivision_easter_monday_would_be_missed() -> None:
    national = WorkingCalendar("Europe/London", "GB", None)
    assert national.is_working_day(date(2026, 4, 6))
    assert not CAL.is_working_day(date(2026, 4, 6))


def test_receipt_date_is_the_council_local_date() -> None:
    # 23:30 UTC on 30 June is 00:30 on 1 July in London (BST).
    assert CAL.local_date(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == date(2026, 7, 1)
    assert CAL.due_date(datetime(2026, 6, 30, 23, 30, tzinfo=UTC), 1) == date(2026, 7, 2)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2026, 11, 24), date(2026, 11, 24), 0),
        (date(2026, 11, 24), date(2026, 12, 8), 10),
        (date(2026, 12, 8), date(2026, 11, 24), -10),
        (date(2026, 11, 27), date(2026, 11, 30), 1),
    ],
)
def test_working_days_between(start: date, end: date, expected: int) -> None:
    assert CAL.working_days_between(start, end) == expected
