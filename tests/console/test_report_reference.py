"""The scrutiny report against its specification, on a few hundred random cases.

`reference` below is the definition, case by case in Python (the module docstring of
console/reports.py), written apart from the report's own reading and counting, which a
faster report must keep to the last digit. Every figure of every row and
slice must match it, on SQLite and on PostgreSQL, so the two databases agree with each other
too. The cases cover every status, extensions, holding replies, reopenings, answers before
receipt and long after the period, bank holidays, closure days, the clock changes (local
dates around midnight UTC in March and October) and both edges of the periods; some are
written through the ORM, some through Core, and some moments change after the insert.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from sqlmodel import Session, select

from mailbridge.console import reports
from mailbridge.console.reports import GroupStats, Ratio, Slice, Spread, build_report
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store.db import create_schema, make_engine, transaction
from mailbridge.store.models import Case, Event, Person

CALENDAR = WorkingCalendar(closure_days=["2026-04-07", "2026-10-26", "2026-12-24"])
TODAY = date(2026, 11, 20)
PERIODS = [  # (start, end, today): month by month and week by week, clock changes inside
    (date(2026, 3, 1), date(2026, 10, 31), TODAY),
    (date(2026, 3, 23), date(2026, 4, 12), TODAY),
    (date(2026, 10, 19), date(2026, 11, 8), date(2026, 10, 30)),
]
AREAS = [("Highways", "Environment"), ("Waste", "Environment"), ("Care", "Adults"), (None, None)]
STATUSES = ["new", "in_progress", "completed", "closed"]


def _moment(rng: random.Random, day: date) -> datetime:
    """Often within an hour or so of midnight UTC, where the local date differs."""
    hour = rng.choice([0, 0, 1, 22, 23, 23, rng.randrange(24)])
    return datetime(day.year, day.month, day.day, hour, rng.randrange(60), tzinfo=UTC)


def seed(engine: Engine, rng: random.Random) -> None:
    with transaction(engine) as session:
        members = [
            Person(kind="member", name=name, email=f"m{i}@example.gov.uk")
            for i, name in enumerate(["Cllr Ada", "Cllr ben", "Cllr Ada", "Cllr Cy"])
        ]
        session.add_all(members)
        session.flush()
        later: list[Case] = []
        for seq in range(1, 401):
            received = _moment(rng, date(2026, 2, 20) + timedelta(days=rng.randrange(280)))
            local = CALENDAR.local_date(received)
            area, directorate = rng.choice(AREAS)
            status = rng.choice(STATUSES)
            member = rng.choice(members)

            def after(days: int, received: datetime = received) -> datetime:
                """A later moment, now and then the day before (clocks disagree)."""
                return received + timedelta(days=rng.randrange(-1, days), hours=rng.randrange(24))

            answered = rng.random() < 0.7
            first = after(rng.choice([15, 30, 400])) if answered else None
            done = after(40) if status in ("completed", "closed") and rng.random() < 0.8 else None
            due = CALENDAR.add_working_days(local, rng.choice([5, 10, 20]))
            values: dict[str, Any] = {
                "reference": f"MQ-2026-{seq:05d}",
                "prefix": "MQ",
                "year": 2026,
                "seq": seq,
                "subject": f"case {seq}",
                "status": status,
                "member_id": member.id,
                "submitter_id": member.id,
                "service_area": area,
                "directorate": directorate,
                "received_at": received,
                "acknowledged_at": after(4) if rng.random() < 0.85 else None,
                "acknowledge_due": CALENDAR.add_working_days(local, 2),
                "response_due": due,
                "extended_due": CALENDAR.add_working_days(due, 5) if rng.random() < 0.2 else None,
                "first_response_at": first,
                "completed_at": done,
                "chase_count": rng.choice([0, 0, 1, 3]),
                "reopened_count": rng.choice([0, 0, 0, 1]),
                "satisfaction": rng.choice([None, None, 1, 4, 5]),
            }
            if seq % 3:
                case = Case(**values)
                session.add(case)
                session.flush()
                later.append(case)
                case_id = case.id
            else:
                case_id = (
                    session.connection()
                    .execute(insert(Case).values(**values))
                    .inserted_primary_key[0]
                )
            for kind in rng.sample(
                ["holding_reply", "deadline_extended", "note"], rng.randrange(3)
            ):
                session.add(Event(case_id=case_id, kind=kind, at=received))
        session.flush()
        for case in rng.sample(later, 60):  # moments that change after the insert
            if case.completed_at is not None:  # reopened
                case.completed_at = None
                case.status = "in_progress"
                case.reopened_count += 1
            elif case.first_response_at is None:
                case.first_response_at = case.received_at + timedelta(days=3, hours=5)
            else:
                case.received_at = case.received_at - timedelta(hours=1)


def _cases(engine: Engine) -> tuple[list[Case], Counter[tuple[int, str]], dict[int, str]]:
    """The cases as stored, their events by (case, kind), and the members' names."""
    with Session(engine) as session:
        cases = list(session.exec(select(Case)).all())
        events = Counter((e.case_id, e.kind) for e in session.exec(select(Event)).all())
        names = {p.id: p.name for p in session.exec(select(Person)).all()}
    return cases, events, names


def _order(value: str | None) -> tuple[bool, str]:
    return (value is None, (value or "").casefold())


def _spread(values: list[int]) -> Spread:
    ordered = sorted(values)
    return Spread(len(ordered), reports.percentile(ordered, 50), reports.percentile(ordered, 90))


def reference(
    stored: tuple[list[Case], Counter[tuple[int, str]], dict[int, str]],
    start: date,
    end: date,
    today: date,
) -> reports.PeriodReport:
    """The definition: every case of the period on its own, in Python."""
    cases, events, names = stored
    loc = CALENDAR.local_date
    rows: list[tuple[Case, dict[str, Any]]] = []
    for case in cases:
        received = loc(case.received_at)
        if not start <= received <= end:
            continue
        acked = loc(case.acknowledged_at) if case.acknowledged_at else None
        first = loc(case.first_response_at) if case.first_response_at else None
        done = loc(case.completed_at) if case.completed_at else None
        in_force = case.extended_due or case.response_due
        running = case.status != "closed"
        rows.append(
            (
                case,
                {
                    "received": received,
                    "ack_on_time": acked is not None and acked <= case.acknowledge_due,
                    "ack_assessed": acked is not None or (case.acknowledge_due < today and running),
                    "responded": first is not None,
                    "on_time": first is not None and first <= case.response_due,
                    "assessed": first is not None or (running and case.response_due < today),
                    "on_time_ext": first is not None and first <= in_force,
                    "assessed_ext": first is not None or (running and in_force < today),
                    "overdue": in_force < today and case.status in ("new", "in_progress"),
                    "first": None
                    if first is None
                    else CALENDAR.working_days_between(received, first),
                    "done": None if done is None else CALENDAR.working_days_between(received, done),
                    "holding": events[case.id, "holding_reply"],
                    "extensions": events[case.id, "deadline_extended"],
                },
            )
        )

    def stats(level: str, group: list[tuple[Case, dict[str, Any]]], **who: Any) -> GroupStats:
        def n(name: str) -> int:
            return sum(int(f[name]) for _, f in group)

        answers = [c.satisfaction for c, _ in group if c.satisfaction is not None]
        return GroupStats(
            level=level,
            directorate=who.get("directorate"),
            service_area=who.get("service_area"),
            member_id=who.get("member_id"),
            member=who.get("member"),
            received=len(group),
            acknowledged=Ratio(n("ack_on_time"), n("ack_assessed")),
            responded=Ratio(n("responded"), len(group)),
            on_time=Ratio(n("on_time"), n("assessed")),
            on_time_extended=Ratio(n("on_time_ext"), n("assessed_ext")),
            to_first_response=_spread([f["first"] for _, f in group if f["first"] is not None]),
            to_completion=_spread([f["done"] for _, f in group if f["done"] is not None]),
            overdue_now=n("overdue"),
            holding_replies=n("holding"),
            extensions=n("extensions"),
            reopened=sum(c.reopened_count for c, _ in group),
            chasers=sum(c.chase_count for c, _ in group),
            satisfaction=round(sum(answers) / len(answers), 2) if answers else None,
            satisfaction_answers=len(answers),
        )

    areas: list[GroupStats] = []
    for directorate in sorted({c.directorate for c, _ in rows}, key=_order):
        mine = [r for r in rows if r[0].directorate == directorate]
        areas.append(stats("directorate", mine, directorate=directorate))
        for area in sorted({c.service_area for c, _ in mine}, key=_order):
            part = [r for r in mine if r[0].service_area == area]
            areas.append(stats("service_area", part, directorate=directorate, service_area=area))
    ids = sorted({c.member_id for c, _ in rows}, key=lambda m: (names[m].casefold(), m))
    members = [
        stats("member", [r for r in rows if r[0].member_id == m], member_id=m, member=names[m])
        for m in ids
    ]
    step = reports.step_of(start, end)
    timeline = []
    for first in reports.slice_starts(start, end, step):
        part = [r for r in rows if reports.slice_start(r[1]["received"], step) == first]
        per: Counter[str | None] = Counter(c.directorate for c, _ in part)
        hits = sum(int(f["on_time"]) for _, f in part)
        timeline.append(
            Slice(
                first,
                {d: per[d] for d in sorted(per, key=_order)},
                Ratio(hits, sum(int(f["assessed"]) for _, f in part)),
            )
        )
    return reports.PeriodReport(
        start=start,
        end=end,
        total=stats("total", rows),
        areas=areas,
        members=members,
        step=step,
        timeline=timeline,
    )


def _built(engine: Engine, start: date, end: date, today: date) -> reports.Report:
    with Session(engine) as session:
        return build_report(session, CALENDAR, start, end, compare_previous=True, today=today)


def _assert_same(got: reports.PeriodReport, want: reports.PeriodReport) -> None:
    """Field by field, so a failure names the row and the figure."""
    assert (got.start, got.end, got.step) == (want.start, want.end, want.step)
    assert got.total == want.total
    assert [g.key for g in got.areas] == [w.key for w in want.areas]
    for g, w in zip(got.areas, want.areas, strict=True):
        assert g == w, g.key
    assert [g.key for g in got.members] == [w.key for w in want.members]
    for g, w in zip(got.members, want.members, strict=True):
        assert g == w, g.key
    assert got.timeline == want.timeline


def assert_definition(engine: Engine, periods: list[tuple[date, date, date]]) -> None:
    """Each period's report, and its previous period's, is the definition."""
    stored = _cases(engine)
    for start, end, today in periods:
        report = _built(engine, start, end, today)
        _assert_same(report.current, reference(stored, start, end, today))
        assert report.previous is not None
        before = reports.previous_period(start, end)
        _assert_same(report.previous, reference(stored, *before, today))


@pytest.mark.parametrize("seed_value", [7, 2026])
def test_the_report_is_its_definition_case_by_case(engine: Engine, seed_value: int) -> None:
    seed(engine, random.Random(seed_value))
    assert_definition(engine, PERIODS)


@pytest.mark.postgres
def test_sqlite_and_postgresql_give_the_same_report(pg_schema_url: str, tmp_path: Path) -> None:
    engines = [make_engine(f"sqlite:///{tmp_path / 'report.db'}"), make_engine(pg_schema_url)]
    try:
        built = []
        for engine in engines:
            create_schema(engine)
            seed(engine, random.Random(99))
            built.append([_built(engine, *period) for period in PERIODS])
        assert built[0] == built[1]
    finally:
        for engine in engines:
            engine.dispose()
