"""The report's months counted ahead of time (console/report_months.py): a report that uses
them says exactly what its definition says, on the day they were counted and any day after;
a change to any case or event it reads, through any door, sets the month aside until it is
counted again; and a month is counted again once its cases live then have all settled.

The cases are test_report_reference.py's (every status, extensions, holding replies,
reopenings, bank holidays, closure days, the clock changes, both edges of the periods), and
`reference` there is the definition, case by case.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, text, update
from sqlmodel import Session, select

from mailbridge.console import report_months
from mailbridge.console.report_counts import Tally
from mailbridge.console.report_months import Pass, kept, plan, refresh
from mailbridge.console.reports import build_report
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.models import Case, Event, ReportMonth
from tests.console.test_report_reference import (
    CALENDAR,
    _built,
    _cases,
    assert_definition,
    reference,
    seed,
)

COUNTED_ON = date(2026, 11, 20)  # the past months: February to October 2026
MONTHS = [date(2026, m, 1) for m in range(2, 11)]
PERIODS = [  # (start, end, today)
    (date(2026, 3, 1), date(2026, 10, 31), COUNTED_ON),  # whole months only
    (date(2026, 3, 4), date(2026, 9, 27), COUNTED_ON),  # less each edge's few days
    (date(2026, 3, 23), date(2026, 4, 12), COUNTED_ON),  # edges counted live
    (date(2026, 10, 19), date(2026, 11, 8), date(2026, 10, 30)),  # before the count: live
    (date(2026, 2, 1), date(2026, 12, 6), date(2026, 12, 6)),  # days on: November live
]


def _kept(
    engine: Engine, calendar: WorkingCalendar = CALENDAR, today: date = COUNTED_ON
) -> set[date]:
    with engine.connect() as conn:
        return set(kept(conn, calendar, date(2000, 1, 1), date(2100, 1, 1), today))


def _months(engine: Engine) -> dict[date, ReportMonth]:
    with Session(engine) as session:
        return {m.month: m for m in session.exec(select(ReportMonth)).all()}


def _check(engine: Engine, periods: list[tuple[date, date, date]] = PERIODS) -> None:
    assert_definition(engine, periods)


@pytest.fixture
def counted(engine: Engine) -> Engine:
    seed(engine, random.Random(7))
    assert refresh(engine, CALENDAR, COUNTED_ON, seconds=60) == MONTHS
    assert _kept(engine) == set(MONTHS)
    return engine


def test_a_report_on_counted_months_is_its_definition(counted: Engine) -> None:
    _check(counted)
    assert refresh(counted, CALENDAR, COUNTED_ON) == []  # nothing changed: nothing to count


def test_a_period_uses_whole_months_less_or_plus_its_edges() -> None:
    day, later = COUNTED_ON, COUNTED_ON + timedelta(days=9)
    months = dict.fromkeys(MONTHS, day) | {date(2026, 8, 1): later}
    used, passes = plan(months, date(2026, 3, 4), date(2026, 9, 27))
    assert used == [date(2026, m, 1) for m in range(3, 10)]
    assert passes == [  # one live pass for the months counted on the same day
        Pass(date(2026, 3, 4), date(2026, 7, 31), "live", 1, day),
        Pass(date(2026, 8, 1), date(2026, 8, 31), "live", 1, later),
        Pass(date(2026, 9, 1), date(2026, 9, 27), "live", 1, day),
        Pass(date(2026, 3, 1), date(2026, 3, 3), "settled", -1, day),
        Pass(date(2026, 9, 28), date(2026, 9, 30), "settled", -1, day),
    ]
    del months[date(2026, 5, 1)]
    used, passes = plan(months, date(2026, 4, 20), date(2026, 6, 30))
    assert used == [date(2026, 6, 1)]  # April: 11 days of 30, cheaper counted live
    assert passes == [
        Pass(date(2026, 4, 20), date(2026, 5, 31), "all", 1),
        Pass(date(2026, 6, 1), date(2026, 6, 30), "live", 1, day),
    ]


def test_a_month_holds_its_cases_settled_on_the_day_it_was_counted(counted: Engine) -> None:
    """Closed; completed with an acknowledgement and a first response; or still running
    with every deadline before that day (an open case long overdue: counted ahead)."""
    cases, _, _ = _cases(counted)
    months = _months(counted)
    held: Counter[date] = Counter()
    overdue = 0
    for case in cases:
        month = CALENDAR.local_date(case.received_at).replace(day=1)
        running = case.status in ("new", "in_progress") or (
            case.status == "completed"
            and (case.acknowledged_at is None or case.first_response_at is None)
        )
        deadlines = [case.acknowledge_due, case.response_due, case.extended_due]
        last = max(d for d in deadlines if d is not None)
        if month in months and (not running or last < months[month].day):
            held[month] += 1
            overdue += running
    assert overdue > 20  # the open cases past their deadlines are not read live
    for month, row in months.items():
        assert row.day == COUNTED_ON
        figures = Tally.from_json(row.figures)
        assert sum(counts[0] for counts, _, _ in figures.areas.values()) == held[month], month


def test_a_month_counted_later_than_a_report_s_today_is_not_used(counted: Engine) -> None:
    assert _kept(counted, today=COUNTED_ON - timedelta(days=1)) == set()
    _check(counted, [(date(2026, 3, 1), date(2026, 10, 31), date(2026, 11, 19))])


def test_a_month_is_counted_again_once_its_live_cases_have_settled(counted: Engine) -> None:
    """Until then the report reads its cases live on the day it was counted, settled or not
    since; after it, none."""
    later = date(2027, 1, 11)
    _check(counted, [(date(2026, 3, 1), date(2026, 10, 31), later)])
    before = _months(counted)
    due = [m for m in MONTHS if before[m].live_until and before[m].live_until < later]
    assert due and len(due) < len(MONTHS)  # some months had live cases, some none
    assert refresh(counted, CALENDAR, later, seconds=60) == [
        *due,
        date(2026, 11, 1),
        date(2026, 12, 1),
    ]
    after = _months(counted)
    assert {after[m].day for m in due} == {later}
    assert all(after[m].live_until is None for m in due)
    _check(counted, [(date(2026, 3, 1), date(2026, 10, 31), later)])


def _first_case(session: Session, month: date) -> Case:
    lo = datetime(month.year, month.month, 10, 12, tzinfo=UTC)
    later = select(Case).where(Case.received_at >= lo).order_by(Case.received_at)  # type: ignore[arg-type]
    return session.exec(later).first()  # type: ignore[arg-type,return-value]


def _orm(change: Callable[[Case], None]) -> Callable[[Session], None]:
    def run(session: Session) -> None:
        change(_first_case(session, date(2026, 6, 1)))

    return run


def _core(**values: object) -> Callable[[Session], None]:
    def run(session: Session) -> None:
        case = _first_case(session, date(2026, 6, 1))
        session.execute(update(Case).where(Case.id == case.id).values(**values))  # type: ignore[arg-type]

    return run


def _reopen(case: Case) -> None:
    case.status = "in_progress" if case.status != "in_progress" else "completed"
    case.reopened_count += 1


def _event(kind: str) -> Callable[[Session], None]:
    def run(session: Session) -> None:
        session.add(Event(case_id=_first_case(session, date(2026, 6, 1)).id, kind=kind))

    return run


def _retyped_event(session: Session) -> None:
    case = _first_case(session, date(2026, 6, 1))
    note = Event(case_id=case.id, kind="note")
    session.add(note)
    session.flush()
    note.kind = "deadline_extended"


def _events_removed(session: Session) -> None:
    june = datetime(2026, 6, 1, tzinfo=UTC)
    ids = select(Case.id).where(Case.received_at >= june, Case.received_at < june + timedelta(30))
    session.execute(
        delete(Event).where(Event.kind == "holding_reply", Event.case_id.in_(ids))  # type: ignore[attr-defined]
    )


def _case_removed(session: Session) -> None:
    case = _first_case(session, date(2026, 6, 1))
    session.execute(delete(Event).where(Event.case_id == case.id))  # type: ignore[arg-type]
    session.delete(case)


def _late_case(session: Session) -> None:
    """A case recorded now for a June email (an import, a message held up)."""
    values = {
        c: getattr(_first_case(session, date(2026, 6, 1)), c)
        for c in ("member_id", "submitter_id", "acknowledge_due", "response_due")
    }
    session.execute(
        insert(Case).values(
            reference="MQ-2026-09999",
            prefix="MQ",
            year=2026,
            seq=9999,
            subject="late",
            status="completed",
            received_at=datetime(2026, 6, 15, 9, tzinfo=UTC),
            acknowledged_at=datetime(2026, 6, 15, 10, tzinfo=UTC),
            first_response_at=datetime(2026, 6, 16, 10, tzinfo=UTC),
            completed_at=datetime(2026, 6, 16, 10, tzinfo=UTC),
            **values,
        )
    )


CHANGES: dict[str, Callable[[Session], None]] = {
    "reopened": _orm(_reopen),
    "answered the satisfaction question": _orm(lambda c: setattr(c, "satisfaction", 2)),
    "moved to another area": _orm(lambda c: setattr(c, "service_area", "Libraries")),
    "its directorate": _core(directorate="Resources"),
    "another member's": _orm(lambda c: setattr(c, "member_id", c.submitter_id + 1)),
    "chased (Core)": _core(chase_count=Case.chase_count + 1),
    "acknowledged later (Core)": _core(acknowledged_at=datetime(2026, 7, 1, tzinfo=UTC)),
    "answered later": _orm(
        lambda c: setattr(c, "first_response_at", datetime(2026, 8, 1, tzinfo=UTC))
    ),
    "completed later (Core)": _core(completed_at=datetime(2026, 8, 3, tzinfo=UTC)),
    "a new deadline": _core(response_due=date(2026, 7, 30)),
    "extended": _core(extended_due=date(2026, 9, 1)),
    "a new acknowledgement target": _core(acknowledge_due=date(2026, 6, 20)),
    "closed": _core(status="closed"),
    "a holding reply": _event("holding_reply"),
    "an extension's event": _event("deadline_extended"),
    "a note retyped as an extension": _retyped_event,
    "holding replies erased (Core)": _events_removed,
    "the case erased": _case_removed,
    "a June case recorded late": _late_case,
}


def test_every_change_sets_its_month_aside_until_counted_again(counted: Engine) -> None:
    """One change after another to June's cases (one database each: seeding takes time)."""
    for change, make in CHANGES.items():
        with transaction(counted) as session:
            make(session)
        assert _kept(counted) == set(MONTHS) - {date(2026, 6, 1)}, change
        _check(counted, PERIODS[1:2])  # June counted live meanwhile, the other months kept
        live = _built(counted, *PERIODS[1])
        assert refresh(counted, CALENDAR, COUNTED_ON) == [date(2026, 6, 1)], change
        assert _kept(counted) == set(MONTHS), change
        assert _built(counted, *PERIODS[1]) == live, change


def test_a_case_moved_to_another_month_sets_both_aside(counted: Engine) -> None:
    with transaction(counted) as session:
        case = _first_case(session, date(2026, 6, 1))
        case.received_at = datetime(2026, 9, 12, 8, tzinfo=UTC)
    assert _kept(counted) == set(MONTHS) - {date(2026, 6, 1), date(2026, 9, 1)}
    _check(counted)


def test_changes_the_report_does_not_read_keep_the_months(counted: Engine) -> None:
    with transaction(counted) as session:
        case = _first_case(session, date(2026, 6, 1))
        case.subject = "renamed"
        case.next_stage_at = datetime(2026, 12, 9, tzinfo=UTC)
        session.add(Event(case_id=case.id, kind="note"))
    assert _kept(counted) == set(MONTHS)


def test_other_working_days_set_every_month_aside(counted: Engine) -> None:
    closed = WorkingCalendar(closure_days=[*CALENDAR.closures, date(2026, 5, 5)])
    assert _kept(counted, closed) == set()
    assert refresh(counted, closed, COUNTED_ON, seconds=60) == MONTHS
    assert _kept(counted, closed) == set(MONTHS)
    assert _kept(counted) == set()  # and the old calendar's are gone


def test_refresh_counts_past_months_oldest_first_a_few_at_a_time(engine: Engine) -> None:
    seed(engine, random.Random(2026))
    assert refresh(engine, CALENDAR, date(2026, 5, 25), seconds=0) == [date(2026, 2, 1)]
    assert refresh(engine, CALENDAR, date(2026, 5, 25), seconds=0) == [date(2026, 3, 1)]
    assert refresh(engine, CALENDAR, date(2026, 5, 31), seconds=60) == [date(2026, 4, 1)]
    assert max(_months(engine)) == date(2026, 4, 1)  # never the month not yet over


@pytest.mark.postgres
def test_a_change_committed_while_its_month_is_counted_is_not_lost(
    pg_schema_url: str,
) -> None:
    """PostgreSQL: a change made before the count but committed after it keeps its row."""
    engine = make_engine(pg_schema_url)
    try:
        seed(engine, random.Random(7))
        writer = Session(engine)
        case = _first_case(writer, date(2026, 6, 1))
        case.satisfaction = 1
        writer.flush()  # the trigger's row written, not committed
        counting = threading.Thread(
            target=report_months.count_month,
            args=(engine, CALENDAR, date(2026, 6, 1), COUNTED_ON),
        )
        counting.start()
        counting.join(timeout=30)
        assert not counting.is_alive()
        writer.commit()
        writer.close()
        assert date(2026, 6, 1) not in _kept(engine)
        _check(engine)
    finally:
        engine.dispose()


def test_the_migration_makes_the_triggers(migrated_db_url: str) -> None:
    engine = make_engine(migrated_db_url)
    try:
        seed(engine, random.Random(3))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM report_change")).scalar()
        assert rows and rows >= 400  # a row for each case inserted at least
    finally:
        engine.dispose()


def test_a_case_settled_while_a_report_reads_is_counted_once(
    counted: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case settled (or unsettled) by a writer that commits after the report has read which
    months are kept but before its live passes: PostgreSQL's READ COMMITTED shows each
    statement the newest commits, so the kept month (without the case, unsettled when
    counted) and the live pass of unsettled cases (without it, settled now) both missed it."""
    start, end, today = PERIODS[0]
    with Session(counted) as session:
        june = datetime(2026, 6, 1, tzinfo=UTC)
        case = session.exec(
            select(Case)
            .where(Case.received_at >= june, Case.received_at < june + timedelta(days=29))
            .where(Case.status == "in_progress")
            .order_by(Case.id)  # type: ignore[arg-type]
        ).first()
        assert case is not None
    moment = case.received_at + timedelta(days=2)
    before = _cases(counted)
    real = report_months.count
    written: list[bool] = []

    def count(*args: object, **kwargs: object) -> object:
        if not written:
            written.append(True)
            with transaction(counted) as writer:
                writer.execute(
                    update(Case)
                    .where(Case.id == case.id)  # type: ignore[arg-type]
                    .values(
                        status="completed",
                        acknowledged_at=case.acknowledged_at or moment,
                        first_response_at=case.first_response_at or moment,
                        completed_at=moment,
                    )
                )
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(report_months, "count", count)
    with Session(counted) as session:
        got = build_report(session, CALENDAR, start, end, today=today).current
    assert written
    # SQLite's reader keeps its snapshot (the case as it was); PostgreSQL's sees the write.
    assert got in (
        reference(before, start, end, today),
        reference(_cases(counted), start, end, today),
    )
