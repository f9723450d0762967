"""The deadline policy as tables: when an email counts as received, the dates it gives, which
SLA applies, and how clock control (clock.plan) recounts them. Pure: no database, no clock.

2026 in England: Good Friday 3 Apr, Easter Monday 6 Apr, the August bank holiday Mon 31 Aug,
Christmas Day Fri 25 Dec, Boxing Day Sat 26 Dec with its substitute Mon 28 Dec, and New
Year's Day 2027 on a Friday. The council here is also closed 29-31 Dec. British Summer Time
runs 29 Mar - 25 Oct 2026 (local = UTC + 1); otherwise local = UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from mailbridge.config import Config
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.deadlines.clock import Planned, Reset, plan, reset_of
from mailbridge.deadlines.policy import Deadlines, Sla, deadlines, sla_for
from mailbridge.store.models import Case

CLOSURES = ["2026-12-29", "2026-12-30", "2026-12-31"]
CAL = WorkingCalendar(closure_days=CLOSURES, office_hours_end="17:00")
NO_CLOSURES = WorkingCalendar(office_hours_end="17:00")
NO_CUT_OFF = WorkingCalendar(closure_days=CLOSURES, office_hours_end=None)
DEFAULT = sla_for(Config(), None, None)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- what `holidays` says --------------------------------------------------------------


def test_boxing_day_2026_is_a_saturday_and_monday_28_is_its_substitute() -> None:
    named = dict(CAL.non_working_days(2026))
    assert named[date(2026, 12, 26)] == "Boxing Day"
    assert named[date(2026, 12, 28)] == "Boxing Day (observed)"
    assert named[date(2026, 12, 29)] == "Council closure"
    assert named[date(2026, 8, 31)] == "Late Summer Bank Holiday"
    assert (named[date(2026, 4, 3)], named[date(2026, 4, 6)]) == ("Good Friday", "Easter Monday")
    assert not CAL.is_working_day(date(2026, 12, 28))
    assert CAL.is_working_day(date(2027, 1, 4))  # a bank holiday in Scotland, not in England


# --- received_day: the cut-off, time zones and non-working days -----------------------


@pytest.mark.parametrize(
    ("moment", "expected", "why"),
    [
        # GMT (November): UTC is local time.
        (utc(2026, 11, 25, 16, 59), date(2026, 11, 25), "16:59 GMT is before the cut-off"),
        (utc(2026, 11, 25, 17, 0), date(2026, 11, 26), "17:00 GMT is the cut-off itself"),
        (utc(2026, 11, 25, 17, 1), date(2026, 11, 26), "17:01 GMT is after it"),
        # BST (July): 16:30 UTC is 17:30 in London.
        (utc(2026, 7, 15, 15, 59), date(2026, 7, 15), "16:59 BST"),
        (utc(2026, 7, 15, 16, 0), date(2026, 7, 16), "17:00 BST is 16:00 UTC"),
        (utc(2026, 7, 15, 16, 30), date(2026, 7, 16), "16:30 UTC in July is 17:30 local"),
        (utc(2026, 6, 30, 23, 30), date(2026, 7, 1), "23:30 UTC on 30 June is 00:30 on 1 July"),
        # Weekends.
        (utc(2026, 11, 28, 10, 0), date(2026, 11, 30), "Saturday counts as Monday"),
        (utc(2026, 11, 29, 23, 30), date(2026, 11, 30), "late Sunday counts as Monday"),
        (utc(2026, 11, 27, 17, 30), date(2026, 11, 30), "Friday after 17:00 counts as Monday"),
        (utc(2026, 11, 30, 0, 5), date(2026, 11, 30), "Monday just after midnight"),
        # Easter 2026.
        (utc(2026, 4, 2, 15, 59), date(2026, 4, 2), "Maundy Thursday 16:59 BST"),
        (utc(2026, 4, 2, 16, 1), date(2026, 4, 7), "Thursday 17:01 BST: over Easter to Tuesday"),
        (utc(2026, 4, 3, 9, 0), date(2026, 4, 7), "Good Friday"),
        (utc(2026, 4, 6, 9, 0), date(2026, 4, 7), "Easter Monday"),
        # The August bank holiday.
        (utc(2026, 8, 28, 16, 30), date(2026, 9, 1), "Friday 17:30 BST before the bank holiday"),
        (utc(2026, 8, 31, 9, 0), date(2026, 9, 1), "on the August bank holiday"),
        # Christmas: 25, 26 (Sat), 28 (substitute), closures 29-31, New Year's Day.
        (utc(2026, 12, 24, 16, 59), date(2026, 12, 24), "Christmas Eve before the cut-off"),
        (utc(2026, 12, 24, 17, 30), date(2027, 1, 4), "Christmas Eve after it: 4 January"),
        (utc(2026, 12, 28, 10, 0), date(2027, 1, 4), "on Boxing Day's substitute"),
        (utc(2026, 12, 30, 10, 0), date(2027, 1, 4), "on a closure day"),
    ],
)
def test_received_day(moment: datetime, expected: date, why: str) -> None:
    assert CAL.received_day(moment) == expected, why


@pytest.mark.parametrize(
    ("calendar", "moment", "expected", "why"),
    [
        (NO_CLOSURES, utc(2026, 12, 24, 17, 30), date(2026, 12, 29), "no closures: Tue 29"),
        (NO_CUT_OFF, utc(2026, 11, 25, 22, 0), date(2026, 11, 25), "no cut-off: that day"),
        (NO_CUT_OFF, utc(2026, 11, 28, 10, 0), date(2026, 11, 28), "no cut-off, a Saturday"),
        (
            WorkingCalendar(office_hours_end="16:00"),
            utc(2026, 11, 25, 16, 30),
            date(2026, 11, 26),
            "a configured 16:00 cut-off",
        ),
    ],
)
def test_received_day_with_another_calendar(
    calendar: WorkingCalendar, moment: datetime, expected: date, why: str
) -> None:
    assert calendar.received_day(moment) == expected, why


# --- deadlines: acknowledge (1 working day) and respond (10) ----------------------------


@pytest.mark.parametrize(
    ("calendar", "received", "acknowledge", "respond", "why"),
    [
        (CAL, utc(2026, 11, 24, 9, 15), date(2026, 11, 25), date(2026, 12, 8), "an ordinary week"),
        (CAL, utc(2026, 4, 2, 9, 0), date(2026, 4, 7), date(2026, 4, 20), "Easter is skipped"),
        (CAL, utc(2026, 4, 2, 16, 30), date(2026, 4, 8), date(2026, 4, 21), "after the cut-off"),
        (CAL, utc(2026, 8, 21, 9, 0), date(2026, 8, 24), date(2026, 9, 7), "August bank holiday"),
        (CAL, utc(2026, 12, 21, 10, 0), date(2026, 12, 22), date(2027, 1, 12), "Christmas closed"),
        (
            NO_CLOSURES,
            utc(2026, 12, 21, 10, 0),
            date(2026, 12, 22),
            date(2027, 1, 7),
            "Christmas without the closure days",
        ),
        (CAL, utc(2026, 11, 28, 10, 0), date(2026, 12, 1), date(2026, 12, 14), "weekend mail"),
    ],
)
def test_deadlines(
    calendar: WorkingCalendar,
    received: datetime,
    acknowledge: date,
    respond: date,
    why: str,
) -> None:
    assert deadlines(calendar, received, DEFAULT) == Deadlines(acknowledge, respond), why


def test_paused_working_days_move_only_the_response_deadline() -> None:
    got = deadlines(CAL, utc(2026, 11, 24, 9, 15), DEFAULT, paused_working_days=3)
    assert got == Deadlines(date(2026, 11, 25), date(2026, 12, 11))


# --- sla_for: which service level applies ---------------------------------------------

RULES = Config.model_validate(
    {
        "sla": {
            "acknowledge_working_days": 1,
            "response_working_days": 10,
            "reminder_working_days_before": [2, 0],
            "rules": [
                {"service_area": "Highways", "enquiry_type": "complaint",
                 "response_working_days": 5},
                {"enquiry_type": "complaint", "response_working_days": 20,
                 "acknowledge_working_days": 2},
                {"service_area": "Highways", "response_working_days": 15},
                {"service_area": "Adult Social Care", "reminder_working_days_before": [3]},
                {"service_area": "Waste", "response_working_days": 12},
                {"service_area": "Waste", "response_working_days": 8},
            ],
        }
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("area", "kind", "acknowledge", "respond", "reminders", "why"),
    [
        (None, None, 1, 10, (2, 0), "no area or type: the defaults"),
        ("Schools", None, 1, 10, (2, 0), "an area without a rule: the defaults"),
        ("Highways", None, 1, 15, (2, 0), "the area's rule"),
        ("highways", None, 1, 15, (2, 0), "names match whatever their case"),
        (None, "complaint", 2, 20, (2, 0), "the type's rule"),
        ("Schools", "complaint", 2, 20, (2, 0), "the type's rule in an area without one"),
        ("Highways", "complaint", 2, 5, (2, 0), "area+type beats area beats type; the ack "
         "the area+type rule leaves out comes from the type's rule"),
        ("Highways", "request", 1, 15, (2, 0), "another type: the area's rule"),
        ("Adult Social Care", None, 1, 10, (3,), "a rule naming only reminders keeps the rest"),
        ("Waste", None, 1, 8, (2, 0), "of two equal rules the later wins"),
    ],
)  # fmt: skip
def test_sla_for_precedence(
    area: str | None,
    kind: str | None,
    acknowledge: int,
    respond: int,
    reminders: tuple[int, ...],
    why: str,
) -> None:
    sla = sla_for(RULES, area, kind)
    assert (sla.acknowledge_days, sla.response_days, sla.reminders) == (
        acknowledge,
        respond,
        reminders,
    ), why


def test_sla_escalation_ladder_comes_sorted_from_the_defaults() -> None:
    assert [s.after_working_days for s in DEFAULT.escalation] == [1, 5]


# --- clock.plan: recounting a case's deadlines ----------------------------------------

POTHOLE = utc(2026, 11, 24, 9, 15)  # Tue 24 Nov: acknowledge 25 Nov, respond 8 Dec
TEN = Sla(acknowledge_days=1, response_days=10, reminders=(2, 0), escalation=())
TWENTY = Sla(acknowledge_days=1, response_days=20, reminders=(2, 0), escalation=())


@pytest.mark.parametrize(
    ("sla", "paused", "extended", "reset", "expected", "why"),
    [
        (TEN, 0, None, None, Planned(date(2026, 11, 25), date(2026, 12, 8), None), "as opened"),
        (TEN, 2, None, None, Planned(date(2026, 11, 25), date(2026, 12, 10), None),
         "two paused working days"),
        (TEN, 0, date(2026, 12, 15), None,
         Planned(date(2026, 11, 25), date(2026, 12, 8), date(2026, 12, 15)),
         "an extension beyond the deadline is kept as the officer set it"),
        (TWENTY, 0, date(2026, 12, 15), None,
         Planned(date(2026, 11, 25), date(2026, 12, 22), None),
         "an extension before the new deadline is dropped"),
        (TEN, 5, date(2026, 12, 15), None,
         Planned(date(2026, 11, 25), date(2026, 12, 15), None),
         "an extension on the new deadline extends nothing: dropped"),
        (TEN, 0, None, Reset(date(2026, 12, 3), 10),
         Planned(date(2026, 11, 25), date(2026, 12, 17), None),
         "a reset counts from the reset day"),
        (TWENTY, 0, None, Reset(date(2026, 12, 3), 10),
         Planned(date(2026, 11, 25), date(2026, 12, 17), None),
         "a reset keeps its own count whatever the SLA now says"),
        (TEN, 1, None, Reset(date(2026, 12, 3), 10),
         Planned(date(2026, 11, 25), date(2026, 12, 18), None),
         "days paused after a reset move it on"),
        (TEN, 0, None, Reset(date(2026, 12, 17), 10),
         Planned(date(2026, 11, 25), date(2027, 1, 8), None),
         "a reset counted over Christmas and the closure days"),
    ],
)  # fmt: skip
def test_plan(
    sla: Sla,
    paused: int,
    extended: date | None,
    reset: Reset | None,
    expected: Planned,
    why: str,
) -> None:
    got = plan(CAL, sla, POTHOLE, paused_working_days=paused, extended_due=extended, reset=reset)
    assert got == expected, why


def test_a_reset_is_read_from_the_case() -> None:
    case = Case(deadline_reset_on=date(2026, 12, 3), deadline_reset_days=10)
    assert reset_of(case) == Reset(date(2026, 12, 3), 10)
    assert reset_of(Case()) is None
