"""What is due when: reminders, escalations and digests on a clock the test sets.

Times are written as the council's local time (Europe/London) and turned into aware UTC,
the way the daemon passes `now`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailbridge.config import Config
from mailbridge.deadlines import plan
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.deadlines.plan import CaseClock, DigestDue, Escalation, Reminder, Stale

LONDON = ZoneInfo("Europe/London")
CAL = WorkingCalendar("Europe/London", "GB", "ENG", closure_days=["2026-12-30"])
LEAD = "priya.shah@example.gov.uk"
HELPER = "sam.whitaker@example.gov.uk"
CONTACT = "highways.manager@example.gov.uk"
HEAD = "director.environment@example.gov.uk"
SUPPORT = "member.support@example.gov.uk"

CONFIG = Config.model_validate(
    {
        "service_areas": [
            {
                "name": "Highways",
                "directorate": "Environment and Transport",
                "escalation_contact": CONTACT,
            }
        ],
        "directorates": [
            {"name": "Environment and Transport", "head_name": "Dana Head", "head_email": HEAD}
        ],
        "coordinators": [{"name": "Member Support", "email": SUPPORT}],
    }
)


def at(day: date, clock: str = "09:05") -> datetime:
    """`clock` on `day` in London, as aware UTC."""
    hour, minute = (int(p) for p in clock.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=LONDON).astimezone(UTC)


def case(deadline: date, **changes: object) -> CaseClock:
    base = CaseClock(
        case_id=1,
        reference="MQ-2026-00001",
        status="in_progress",
        lead_officer=LEAD,
        additional_officers=(HELPER,),
        service_area="Highways",
        directorate=None,
        enquiry_type=None,
        deadline=deadline,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def sent(items: list[plan.Due]) -> list[str]:
    return [i.key for i in items if isinstance(i, Reminder | Escalation)]


def stale(items: list[plan.Due]) -> list[str]:
    return [i.key for i in items if isinstance(i, Stale)]


def due_for(c: CaseClock, now: datetime, config: Config = CONFIG) -> list[plan.Due]:
    return [i for i in plan.due(config, CAL, now, [c]) if not isinstance(i, DigestDue)]


EASTER_DEADLINE = date(2026, 4, 8)  # Wednesday after Easter Monday
AUGUST_DEADLINE = date(2026, 9, 1)  # Tuesday after the August bank holiday
FRIDAY_DEADLINE = date(2026, 11, 27)


def r(offset: int, deadline: date) -> str:
    return plan.reminder_key("MQ-2026-00001", offset, deadline)


def e(after: int, deadline: date) -> str:
    return plan.escalation_key("MQ-2026-00001", after, deadline)


@pytest.mark.parametrize(
    ("deadline", "now", "expected", "why"),
    [
        (EASTER_DEADLINE, at(date(2026, 4, 1)), [], "three working days before: nothing yet"),
        (
            EASTER_DEADLINE,
            at(date(2026, 4, 2)),
            [r(2, EASTER_DEADLINE)],
            "two working days before skips Good Friday and Easter Monday: Maundy Thursday",
        ),
        (EASTER_DEADLINE, at(date(2026, 4, 3), "10:00"), [], "never on Good Friday"),
        (EASTER_DEADLINE, at(date(2026, 4, 6), "10:00"), [], "never on Easter Monday"),
        (
            EASTER_DEADLINE,
            at(date(2026, 4, 8), "09:00"),
            [r(0, EASTER_DEADLINE)],
            "on the day, from send_at",
        ),
        (
            AUGUST_DEADLINE,
            at(date(2026, 8, 27)),
            [r(2, AUGUST_DEADLINE)],
            "two working days before a Tuesday after the August bank holiday is Thursday",
        ),
        (AUGUST_DEADLINE, at(date(2026, 8, 31), "11:00"), [], "never on the bank holiday"),
        (
            AUGUST_DEADLINE,
            at(date(2026, 9, 1), "16:59"),
            [r(0, AUGUST_DEADLINE)],
            "the last minute before send_until",
        ),
        (AUGUST_DEADLINE, at(date(2026, 9, 1), "17:00"), [], "not from send_until"),
        (AUGUST_DEADLINE, at(date(2026, 9, 1), "00:00"), [], "never at midnight"),
        (AUGUST_DEADLINE, at(date(2026, 9, 1), "08:59"), [], "not before send_at"),
        (
            FRIDAY_DEADLINE,
            at(date(2026, 11, 25)),
            [r(2, FRIDAY_DEADLINE)],
            "a Friday deadline is reminded on the Wednesday",
        ),
        (FRIDAY_DEADLINE, at(date(2026, 11, 28), "10:00"), [], "never at a weekend"),
        (
            date(2026, 12, 31),
            at(date(2026, 12, 28), "10:00"),
            [],
            "the substitute day for Boxing Day (a Saturday in 2026) is not a working day",
        ),
        (
            date(2026, 12, 31),
            at(date(2026, 12, 24)),
            [r(2, date(2026, 12, 31))],
            "two working days before 31 December: the 29th, the 28th and the 30th (a closure) are "
            "off, so the 24th; reminded on Christmas Eve",
        ),
    ],
)
def test_reminders_in_working_hours_only(
    deadline: date, now: datetime, expected: list[str], why: str
) -> None:
    assert sent(due_for(case(deadline), now)) == expected, why


def test_reminder_names_the_lead_and_the_days_left() -> None:
    [item] = due_for(case(FRIDAY_DEADLINE), at(date(2026, 11, 25)))
    assert isinstance(item, Reminder)
    assert (item.to, item.offset, item.days_left) == ((LEAD,), 2, 2)


def test_escalation_after_one_and_five_working_days() -> None:
    c = case(FRIDAY_DEADLINE)
    monday = due_for(c, at(date(2026, 11, 30)))
    assert sent(monday) == [e(1, FRIDAY_DEADLINE)]
    assert stale(monday) == [r(2, FRIDAY_DEADLINE), r(0, FRIDAY_DEADLINE)]
    first = monday[-1]
    assert isinstance(first, Escalation)
    assert first.to == (LEAD, CONTACT) and first.cc == (SUPPORT,) and first.days_over == 1
    friday = due_for(c, at(date(2026, 12, 4)))
    assert sent(friday) == [e(5, FRIDAY_DEADLINE)]
    assert e(1, FRIDAY_DEADLINE) in stale(friday)
    fifth = friday[-1]
    assert isinstance(fifth, Escalation)
    assert fifth.to == (HEAD,) and fifth.cc == (SUPPORT,) and fifth.days_over == 5
    assert sent(due_for(c, at(date(2026, 12, 3)))) == [e(1, FRIDAY_DEADLINE)], "still +1"


def test_escalation_target_without_an_address_is_named_and_coordinators_get_it() -> None:
    no_head = CONFIG.model_copy(update={"directorates": []})
    [*_, fifth] = due_for(case(FRIDAY_DEADLINE), at(date(2026, 12, 4)), no_head)
    assert isinstance(fifth, Escalation)
    assert fifth.to == () and fifth.cc == (SUPPORT,)
    assert fifth.unresolved == ("directorate_head",)


def test_escalation_to_additional_officers() -> None:
    ladder = Config.model_validate(
        {
            **CONFIG.model_dump(),
            "sla": {"escalation": [{"after_working_days": 2, "notify": ["additional"]}]},
        }
    )
    [*_, item] = due_for(case(FRIDAY_DEADLINE), at(date(2026, 12, 1)), ladder)
    assert isinstance(item, Escalation) and item.to == (HELPER,)


def test_an_extension_moves_the_keys() -> None:
    original = case(FRIDAY_DEADLINE)
    extended = case(date(2026, 12, 4))
    wednesday = at(date(2026, 11, 25))
    assert sent(due_for(original, wednesday)) == [r(2, FRIDAY_DEADLINE)]
    assert due_for(extended, wednesday) == [], "five working days left: nothing due"
    assert sent(due_for(extended, at(date(2026, 12, 2)))) == [r(2, date(2026, 12, 4))]
    assert due_for(extended, at(date(2026, 11, 30))) == [], "no escalation on the old deadline"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"paused": True}, "paused: the clock is stopped"),
        ({"status": "completed"}, "completed"),
        ({"status": "closed"}, "closed"),
        ({"lead_officer": None}, "no lead officer: the coordinators' digest lists it"),
    ],
)
def test_silent_cases(changes: dict[str, object], why: str) -> None:
    c = case(FRIDAY_DEADLINE, **changes)
    for day in (date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30), date(2026, 12, 4)):
        assert due_for(c, at(day)) == [], why


def simulate(
    c: CaseClock, start: datetime, end: datetime, down: tuple[datetime, datetime] | None = None
) -> tuple[list[tuple[datetime, str]], set[str]]:
    """A daemon ticking every 10 minutes (not while `down`): what it mails, what it skips.
    Done keys are never acted on again, as scheduled_send makes the runner do."""
    done: set[str] = set()
    mailed: list[tuple[datetime, str]] = []
    skipped: set[str] = set()
    now = start
    while now < end:
        if down is None or not down[0] <= now < down[1]:
            for item in due_for(c, now):
                if item.key in done:
                    continue
                done.add(item.key)
                if isinstance(item, Stale):
                    skipped.add(item.key)
                else:
                    mailed.append((now, item.key))
        now += timedelta(minutes=10)
    return mailed, skipped


def test_each_stage_once_on_its_working_morning() -> None:
    mailed, skipped = simulate(
        case(FRIDAY_DEADLINE), at(date(2026, 11, 20), "00:00"), at(date(2026, 12, 12), "00:00")
    )
    assert mailed == [
        (at(date(2026, 11, 25), "09:00"), r(2, FRIDAY_DEADLINE)),
        (at(date(2026, 11, 27), "09:00"), r(0, FRIDAY_DEADLINE)),
        (at(date(2026, 11, 30), "09:00"), e(1, FRIDAY_DEADLINE)),
        (at(date(2026, 12, 4), "09:00"), e(5, FRIDAY_DEADLINE)),
    ]
    assert skipped == set()


def test_catch_up_after_downtime_sends_one_mail_the_latest_stage() -> None:
    down = (at(date(2026, 11, 24), "18:00"), at(date(2026, 11, 30), "14:17"))
    mailed, skipped = simulate(
        case(FRIDAY_DEADLINE), at(date(2026, 11, 20), "00:00"), at(date(2026, 12, 1), "00:00"), down
    )
    assert mailed == [(at(date(2026, 11, 30), "14:20"), e(1, FRIDAY_DEADLINE))]
    assert skipped == {r(2, FRIDAY_DEADLINE), r(0, FRIDAY_DEADLINE)}


def test_back_overnight_waits_for_the_working_morning() -> None:
    down = (at(date(2026, 11, 24), "18:00"), at(date(2026, 11, 25), "02:00"))
    mailed, _ = simulate(
        case(FRIDAY_DEADLINE),
        at(date(2026, 11, 24), "12:00"),
        at(date(2026, 11, 26), "00:00"),
        down,
    )
    assert mailed == [(at(date(2026, 11, 25), "09:00"), r(2, FRIDAY_DEADLINE))]


def test_reminder_left_over_after_the_deadline_is_stale_not_sent() -> None:
    no_ladder = Config.model_validate({**CONFIG.model_dump(), "sla": {"escalation": []}})
    items = due_for(case(FRIDAY_DEADLINE), at(date(2026, 11, 30)), no_ladder)
    assert sent(items) == []
    assert stale(items) == [r(2, FRIDAY_DEADLINE), r(0, FRIDAY_DEADLINE)]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        plan.due(CONFIG, CAL, datetime(2026, 11, 25, 9, 5), [])


# --- digests ----------------------------------------------------------------------------


def digests(now: datetime, config: Config = CONFIG) -> list[tuple[str, str, date]]:
    return [(d.key, d.kind, d.day) for d in plan.digests_due(config, CAL, now)]


MON = date(2026, 11, 23)  # ISO week 2026-W48


@pytest.mark.parametrize(
    ("now", "expected", "why"),
    [
        (at(MON, "07:59"), [], "before every digest time"),
        (
            at(MON, "08:00"),
            [
                ("digest:members:2026-W48", "member_digest", MON),
                ("summary:2026-W48", "management_summary", MON),
            ],
            "the weekly ones at 08:00 on Monday",
        ),
        (
            at(MON, "08:30"),
            [
                ("digest:coordinators:2026-11-23", "coordinator_digest", MON),
                ("digest:members:2026-W48", "member_digest", MON),
                ("summary:2026-W48", "management_summary", MON),
            ],
            "and the daily one at 08:30",
        ),
        (
            at(date(2026, 11, 24), "23:59"),
            [("digest:coordinators:2026-11-24", "coordinator_digest", date(2026, 11, 24))],
            "Tuesday: the daily digest only; Monday's weekly ones are not made up",
        ),
        (at(date(2026, 11, 28), "10:00"), [], "no digest at a weekend"),
        (at(date(2026, 4, 6), "10:00"), [], "nothing on Easter Monday"),
        (
            at(date(2026, 4, 7), "08:30"),
            [
                ("digest:coordinators:2026-04-07", "coordinator_digest", date(2026, 4, 7)),
                ("digest:members:2026-W15", "member_digest", date(2026, 4, 6)),
                ("summary:2026-W15", "management_summary", date(2026, 4, 6)),
            ],
            "Easter Monday's weekly digests go on the Tuesday, the first working day",
        ),
    ],
)
def test_digest_periods(now: datetime, expected: list[tuple[str, str, date]], why: str) -> None:
    assert digests(now) == expected, why


def test_empty_time_turns_a_digest_off() -> None:
    off = Config.model_validate(
        {
            "schedule": {
                "coordinator_digest_at": "",
                "member_digest_at": "",
                "management_summary_at": "",
            }
        }
    )
    assert digests(at(MON, "12:00"), off) == []


@pytest.mark.parametrize(
    ("weekday", "now", "expected"),
    [
        ("friday", at(date(2026, 4, 3), "12:00"), []),
        ("friday", at(date(2026, 4, 6), "12:00"), []),
        # Good Friday, then the weekend and Easter Monday: the Tuesday, for week 14.
        ("friday", at(date(2026, 4, 7), "12:00"), [("digest:members:2026-W14", date(2026, 3, 30))]),
        ("friday", at(date(2026, 4, 8), "12:00"), []),
        (
            "sunday",
            at(date(2026, 11, 23), "12:00"),
            [("digest:members:2026-W47", date(2026, 11, 16))],
        ),
        ("wednesday", at(date(2026, 11, 25), "08:00"), [("digest:members:2026-W48", MON)]),
    ],
)
def test_weekly_digest_on_the_first_working_day_from_its_weekday(
    weekday: str, now: datetime, expected: list[tuple[str, date]]
) -> None:
    config = Config.model_validate({"schedule": {"member_digest_day": weekday}})
    found = [
        (d.key, d.day) for d in plan.digests_due(config, CAL, now) if d.kind == "member_digest"
    ]
    assert found == expected
