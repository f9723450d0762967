"""The scrutiny report against a small data set computed by hand, on SQLite and PostgreSQL.

The period is Mon 7 Dec 2026 to Sun 3 Jan 2027 (28 days); "today" is Mon 11 Jan 2027.
Non-working days in it: the weekends, Christmas Day (Fri 25 Dec) and Boxing Day's substitute
(Mon 28 Dec), and New Year's Day (Fri 1 Jan 2027). December is GMT, so UTC times are local.

    case  area / member          received        first response    completed   due (orig/ext)
    C1    Highways / Ada         Mon 07 Dec      Fri 11 Dec  (4)   11 Dec (4)  18 Dec
    C2    Highways / Ada         Thu 17 Dec      Wed 23 Dec  (4)   Tue 29 Dec (6, over Xmas)
                                                                               23 Dec / 7 Jan
    C3    Highways / Ben         Mon 21 Dec      Thu 31 Dec  (6)   31 Dec (6)  29 Dec / 4 Jan
    C4    Waste / Ben            Wed 23 Dec      -                 -           6 Jan (overdue)
    C5    Adult Social Care/Ada  Thu 24 Dec      -   (acknowledged late)       18 Jan (not due)
    C6    Adult Social Care/Ben  Sat 02 Jan      Mon 04 Jan  (1)   04 Jan (1)  8 Jan
    C7    (none) / Ada           Wed 30 Dec      -   closed (merged)           6 Jan
    C8    Highways / Ada         Fri 18 Dec 23:30 Thu 24 Dec (4)  open        8 Jan (overdue)

(n) = working days from the received date. Outside the period: C9 received Mon 4 Jan 00:30;
in the previous period (9 Nov - 6 Dec): P1 Highways/Ada 9 Nov -> 16 Nov (5 days, late) and
P2 Waste/Ben Sun 6 Dec 20:00 -> Mon 7 Dec (1 day, on time).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner, Result

from mailbridge.cli import context
from mailbridge.cli.app import app
from mailbridge.console import reports
from mailbridge.console.reports import Ratio, Spread, build_report, percentile
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Case, Event, Person
from tests.factories import NO_TRUST_TOML

CALENDAR = WorkingCalendar()
START, END, TODAY = date(2026, 12, 7), date(2027, 1, 3), date(2027, 1, 11)
ET, AH = "Environment and Transport", "Adults and Health"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# fmt: off
def seed(engine: Engine) -> dict[str, int]:  # the cases as rows, one call each: kept compact
    """The table above; returns the people's ids."""
    with transaction(engine) as session:
        ada = Person(kind="member", name="Cllr Ada Lovelace", email="ada@example.gov.uk")
        ben = Person(kind="member", name="Cllr Ben Jonson", email="ben@example.gov.uk")
        session.add_all([ada, ben])
        session.flush()
        ids = {"ada": ada.id, "ben": ben.id}
        seq = 0

        def add(member: Person, directorate: str | None, area: str | None, received: datetime,
                **fields: Any) -> Case:
            nonlocal seq
            seq += 1
            row = Case(
                reference=f"MQ-2026-{seq:05d}", prefix="MQ", year=2026, seq=seq,
                subject=f"case {seq}", member_id=member.id, submitter_id=member.id,
                directorate=directorate, service_area=area, received_at=received,
                **fields,
            )
            session.add(row)
            session.flush()
            return row

        def events(row: Case, *kinds: str) -> None:
            for kind in kinds:
                session.add(Event(case_id=row.id, kind=kind, at=row.received_at))

        c1 = add(ada, ET, "Highways", utc(2026, 12, 7, 10), status="completed",
                 acknowledged_at=utc(2026, 12, 7, 10, 5), acknowledge_due=date(2026, 12, 8),
                 response_due=date(2026, 12, 18), first_response_at=utc(2026, 12, 11, 14),
                 completed_at=utc(2026, 12, 11, 14))
        events(c1, "acknowledgement", "responded")
        c2 = add(ada, ET, "Highways", utc(2026, 12, 17, 9), status="completed",
                 acknowledged_at=utc(2026, 12, 17, 9, 1), acknowledge_due=date(2026, 12, 18),
                 response_due=date(2026, 12, 23), extended_due=date(2027, 1, 7),
                 first_response_at=utc(2026, 12, 23, 15), completed_at=utc(2026, 12, 29, 11),
                 chase_count=1)
        events(c2, "holding_reply", "deadline_extended", "update_requested", "responded")
        c3 = add(ben, ET, "Highways", utc(2026, 12, 21, 16), status="completed",
                 acknowledged_at=utc(2026, 12, 22, 9), acknowledge_due=date(2026, 12, 22),
                 response_due=date(2026, 12, 29), extended_due=date(2027, 1, 4),
                 first_response_at=utc(2026, 12, 31, 10), completed_at=utc(2026, 12, 31, 10),
                 chase_count=2, reopened_count=1)
        events(c3, "deadline_extended", "responded", "reopened", "responded")
        add(ben, ET, "Waste", utc(2026, 12, 23, 12), status="in_progress",
            acknowledged_at=utc(2026, 12, 23, 12, 1), acknowledge_due=date(2026, 12, 24),
            response_due=date(2027, 1, 6), chase_count=3)
        add(ada, AH, "Adult Social Care", utc(2026, 12, 24, 15), status="new",
            acknowledged_at=utc(2026, 12, 30, 9), acknowledge_due=date(2026, 12, 29),
            response_due=date(2027, 1, 18))
        add(ben, AH, "Adult Social Care", utc(2027, 1, 2, 10), status="completed",
            acknowledged_at=utc(2027, 1, 2, 10, 1), acknowledge_due=date(2027, 1, 5),
            response_due=date(2027, 1, 8), first_response_at=utc(2027, 1, 4, 9),
            completed_at=utc(2027, 1, 4, 9))
        add(ada, None, None, utc(2026, 12, 30, 10), status="closed",
            acknowledged_at=utc(2026, 12, 30, 10, 1), acknowledge_due=date(2026, 12, 31),
            response_due=date(2027, 1, 6))
        c8 = add(ada, ET, "Highways", utc(2026, 12, 18, 23, 30), status="in_progress",
                 acknowledged_at=utc(2026, 12, 18, 23, 31), acknowledge_due=date(2026, 12, 21),
                 response_due=date(2027, 1, 8), first_response_at=utc(2026, 12, 24, 9),
                 last_response_at=utc(2026, 12, 24, 9))
        events(c8, "holding_reply")
        # C9: the next day in London, outside the period.
        c9 = add(ada, ET, "Highways", utc(2027, 1, 4, 0, 30), status="new",
                 acknowledged_at=utc(2027, 1, 4, 0, 31), acknowledge_due=date(2027, 1, 5),
                 response_due=date(2027, 1, 25), chase_count=7)
        events(c9, "holding_reply", "deadline_extended")
        # The previous period.
        add(ada, ET, "Highways", utc(2026, 11, 9, 9), status="completed",
            acknowledged_at=utc(2026, 11, 9, 9, 1), acknowledge_due=date(2026, 11, 10),
            response_due=date(2026, 11, 13), first_response_at=utc(2026, 11, 16, 9),
            completed_at=utc(2026, 11, 16, 9))
        add(ben, ET, "Waste", utc(2026, 12, 6, 20), status="completed",
            acknowledged_at=utc(2026, 12, 6, 20, 1), acknowledge_due=date(2026, 12, 7),
            response_due=date(2026, 12, 11), first_response_at=utc(2026, 12, 7, 10),
            completed_at=utc(2026, 12, 7, 10))
    return ids
# fmt: on


@pytest.fixture
def seeded(engine: Engine) -> tuple[Engine, dict[str, int]]:
    return engine, seed(engine)


def build(engine: Engine, start: date = START, end: date = END, **kw: Any) -> reports.Report:
    with Session(engine) as session:
        return build_report(session, CALENDAR, start, end, today=TODAY, **kw)


def row(rows: list[reports.GroupStats], level: str, label: str) -> reports.GroupStats:
    [found] = [g for g in rows if g.level == level and g.label == label]
    return found


# ---------------------------------------------------------------------------------------------
# Method


def test_percentile_is_excel_percentile_inc() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 90) == 7
    assert percentile([1, 4, 4, 4, 6], 50) == 4
    assert percentile([1, 4, 4, 4, 6], 90) == 5.2
    assert percentile([4, 6], 50) == 5
    assert percentile([1, 6], 90) == 5.5
    assert percentile([1, 2, 3, 4], 50) == 2.5


def test_ratio_shows_counts_beside_the_percentage() -> None:
    assert str(Ratio(8, 10)) == "8/10 (80%)"
    assert str(Ratio(5, 8)) == "5/8 (63%)"  # 62.5 rounds up
    assert str(Ratio(0, 0)) == "0/0 (-)"
    assert Ratio(1, 3).percent == pytest.approx(33.333, abs=0.001)


# ---------------------------------------------------------------------------------------------
# Figures


def test_totals_match_the_hand_computed_figures(seeded: tuple[Engine, dict[str, int]]) -> None:
    engine, _ = seeded
    total = build(engine).current.total
    assert total.received == 8
    assert str(total.acknowledged) == "7/8 (88%)"  # C5 acknowledged the day after its target
    assert str(total.responded) == "5/8 (63%)"
    # C3 late against the original deadline; C4 overdue unanswered; C5 not due; C7 closed.
    assert str(total.on_time) == "4/6 (67%)"
    assert str(total.on_time_extended) == "5/6 (83%)"  # C3 within its extension
    assert total.to_first_response == Spread(5, 4, 5.2)  # [1, 4, 4, 4, 6]
    assert total.to_completion == Spread(4, 5, 6)  # [1, 4, 6, 6]
    assert total.overdue_now == 2  # C4 and C8 (a holding reply does not stop the clock)
    assert (total.holding_replies, total.extensions, total.reopened, total.chasers) == (2, 2, 1, 6)


def test_per_directorate_and_service_area(seeded: tuple[Engine, dict[str, int]]) -> None:
    engine, _ = seeded
    areas = build(engine).current.areas
    assert [(g.level, g.label) for g in areas] == [
        ("directorate", AH),
        ("service_area", "Adult Social Care"),
        ("directorate", ET),
        ("service_area", "Highways"),
        ("service_area", "Waste"),
        ("directorate", "(no directorate)"),
        ("service_area", "(no service area)"),
    ]
    highways = row(areas, "service_area", "Highways")
    assert highways.received == 4
    assert str(highways.on_time) == "3/4 (75%)"
    assert str(highways.on_time_extended) == "4/4 (100%)"
    assert highways.to_first_response == Spread(4, 4, 5.4)  # [4, 4, 4, 6]
    assert highways.to_completion == Spread(3, 6, 6)  # [4, 6, 6]
    assert (highways.overdue_now, highways.holding_replies, highways.extensions) == (1, 2, 2)
    assert (highways.reopened, highways.chasers) == (1, 3)
    waste = row(areas, "service_area", "Waste")
    assert (waste.received, str(waste.responded), str(waste.on_time)) == (1, "0/1 (0%)", "0/1 (0%)")
    assert waste.to_first_response == Spread(0, None, None)
    env = row(areas, "directorate", ET)
    assert (env.received, str(env.responded), str(env.on_time)) == (5, "4/5 (80%)", "3/5 (60%)")
    assert str(env.on_time_extended) == "4/5 (80%)"
    assert (env.overdue_now, env.chasers) == (2, 6)
    adults = row(areas, "directorate", AH)
    assert str(adults.acknowledged) == "1/2 (50%)"
    assert str(adults.on_time) == "1/1 (100%)"  # C5 is not due yet
    assert adults.to_first_response == Spread(1, 1, 1)  # Sat 2 Jan -> Mon 4 Jan
    none = row(areas, "directorate", "(no directorate)")
    assert (none.received, str(none.on_time), none.overdue_now) == (1, "0/0 (-)", 0)


def test_per_member(seeded: tuple[Engine, dict[str, int]]) -> None:
    engine, ids = seeded
    members = build(engine).current.members
    assert [m.label for m in members] == ["Cllr Ada Lovelace", "Cllr Ben Jonson"]
    ada, ben = members
    assert ada.member_id == ids["ada"]
    assert (ada.received, str(ada.acknowledged), str(ada.responded)) == (
        5,
        "4/5 (80%)",
        "3/5 (60%)",
    )
    assert (str(ada.on_time), str(ada.on_time_extended)) == ("3/3 (100%)", "3/3 (100%)")
    assert ada.to_first_response == Spread(3, 4, 4)
    assert ada.to_completion == Spread(2, 5, 5.8)  # [4, 6]
    assert (ada.overdue_now, ada.holding_replies, ada.extensions) == (1, 2, 1)
    assert (ada.reopened, ada.chasers) == (0, 1)
    assert (ben.received, str(ben.responded)) == (3, "2/3 (67%)")
    assert (str(ben.on_time), str(ben.on_time_extended)) == ("1/3 (33%)", "2/3 (67%)")
    assert ben.to_first_response == Spread(2, 3.5, 5.5)  # [1, 6]
    assert ben.to_completion == Spread(2, 3.5, 5.5)
    assert (ben.overdue_now, ben.holding_replies, ben.extensions) == (1, 0, 1)
    assert (ben.reopened, ben.chasers) == (1, 5)


def test_the_timeline_of_a_short_period_goes_week_by_week(
    seeded: tuple[Engine, dict[str, int]],
) -> None:
    engine, _ = seeded
    report = build(engine)
    period = report.current
    assert period.step == "week"
    assert [(s.start, s.received, str(s.on_time)) for s in period.timeline] == [
        (date(2026, 12, 7), {ET: 1}, "1/1 (100%)"),  # C1
        (date(2026, 12, 14), {ET: 2}, "2/2 (100%)"),  # C2, C8 (Fri 18 Dec 23:30)
        (date(2026, 12, 21), {AH: 1, ET: 2}, "0/2 (0%)"),  # C3 late, C4 overdue; C5 not due
        (date(2026, 12, 28), {AH: 1, None: 1}, "1/1 (100%)"),  # Sat 2 Jan: C6; C7 closed
    ]
    assert sum(s.total for s in period.timeline) == period.total.received
    assert (
        Ratio(
            sum(s.on_time.hit for s in period.timeline), sum(s.on_time.of for s in period.timeline)
        )
        == period.total.on_time
    )


def test_the_timeline_of_a_long_period_goes_month_by_month(
    seeded: tuple[Engine, dict[str, int]],
) -> None:
    engine, _ = seeded
    period = build(engine, date(2026, 10, 15), date(2027, 1, 31)).current
    assert period.step == "month"
    assert [(s.start, s.received, str(s.on_time)) for s in period.timeline] == [
        (date(2026, 10, 1), {}, "0/0 (-)"),
        (date(2026, 11, 1), {ET: 1}, "0/1 (0%)"),  # P1, answered late
        (date(2026, 12, 1), {AH: 1, ET: 6, None: 1}, "4/6 (67%)"),  # P2 on Sun 6 Dec 20:00
        (date(2027, 1, 1), {AH: 1, ET: 1}, "1/1 (100%)"),  # C9 not due yet
    ]


@pytest.mark.parametrize(
    ("start", "end", "step", "firsts"),
    [
        (date(2026, 1, 1), date(2026, 4, 2), "week", 14),  # 92 days: still weeks
        (date(2026, 1, 1), date(2026, 4, 3), "month", 4),
        (date(2026, 4, 1), date(2027, 3, 31), "month", 12),
        (date(2026, 1, 31), date(2026, 5, 31), "month", 5),  # from the 31st: none skipped
        (date(2026, 12, 9), date(2026, 12, 9), "week", 1),
    ],
)
def test_slices(start: date, end: date, step: str, firsts: int) -> None:
    assert reports.step_of(start, end) == step
    found = reports.slice_starts(start, end, step)
    assert len(found) == firsts
    assert found[0] <= start <= end and found[-1] <= end
    if step == "month":
        assert all(d.day == 1 for d in found)
        assert len({(d.year, d.month) for d in found}) == firsts
    else:
        assert all(d.weekday() == 0 for d in found)


def test_compare_previous(seeded: tuple[Engine, dict[str, int]]) -> None:
    engine, _ = seeded
    report = build(engine, compare_previous=True)
    previous = report.previous
    assert previous is not None
    assert (previous.start, previous.end) == (date(2026, 11, 9), date(2026, 12, 6))
    assert previous.total.received == 2
    assert str(previous.total.on_time) == "1/2 (50%)"  # P1 late, P2 on time
    assert previous.total.to_first_response == Spread(2, 3, 4.6)  # [1, 5]
    assert build(engine).previous is None
    pairs = report.paired("areas")
    waste = [(now, before) for now, before in pairs if now.label == "Waste"]
    assert [(now.received, before and before.received) for now, before in waste] == [(1, 1)]
    adults = [before for now, before in pairs if now.label == AH]
    assert adults == [None]  # no Adults and Health cases in the previous period
    members = report.paired("members")
    assert [(a.received, b.received if b else None) for a, b in members] == [(5, 1), (3, 1)]


def test_a_group_only_in_the_previous_period_is_still_shown(
    seeded: tuple[Engine, dict[str, int]],
) -> None:
    engine, _ = seeded
    # 28 Dec - 3 Jan; previous: 21 - 27 Dec, where Waste had C4 and this week has none.
    report = build(engine, date(2026, 12, 28), END, compare_previous=True)
    waste = [(a, b) for a, b in report.paired("areas") if b and b.label == "Waste"]
    assert [(a.received, b.received) for a, b in waste] == [(0, 1)]


def test_received_in_the_councils_time_zone(engine: Engine) -> None:
    """00:30 BST on 1 July is 23:30 UTC on 30 June: a July case; a 23:30 UTC acknowledgement
    on 1 July is 2 July in London, so it missed a 1 July target."""
    with transaction(engine) as session:
        ada = Person(kind="member", name="Ada", email="ada@example.gov.uk")
        session.add(ada)
        session.flush()
        session.add(
            Case(
                reference="MQ-2026-00001",
                prefix="MQ",
                year=2026,
                seq=1,
                subject="s",
                member_id=ada.id,
                submitter_id=ada.id,
                received_at=utc(2026, 6, 30, 23, 30),
                acknowledged_at=utc(2026, 7, 1, 23, 30),
                acknowledge_due=date(2026, 7, 1),
                response_due=date(2026, 7, 22),
                first_response_at=utc(2026, 7, 3, 23, 30),
            )
        )
    june = build(engine, date(2026, 6, 1), date(2026, 6, 30)).current.total
    july = build(engine, date(2026, 7, 1), date(2026, 7, 31)).current.total
    assert (june.received, july.received) == (0, 1)
    assert str(july.acknowledged) == "0/1 (0%)"
    # Wed 1 Jul -> Sat 4 Jul 00:30 (local): 2 working days; the UTC dates (30 Jun -> 3 Jul)
    # would say 3.
    assert july.to_first_response == Spread(1, 2, 2)


def test_an_empty_period(engine: Engine) -> None:
    total = build(engine).current.total
    assert (total.received, str(total.on_time), total.to_first_response) == (
        0,
        "0/0 (-)",
        Spread(0, None, None),
    )


def test_period_the_wrong_way_round(engine: Engine) -> None:
    with pytest.raises(reports.ReportError, match="before it starts"):
        build(engine, END, START)


# ---------------------------------------------------------------------------------------------
# The command, in every format

CONFIG = (
    """\
[council]
name = "Example County Council"

[mailbox]
url = "maildir:./mailbox"

[smtp]
url = "maildir:./outbox"
from_address = "enquiries@example.gov.uk"

[database]
url = "{url}"

[storage]
data_dir = "./data"
"""
    + NO_TRUST_TOML
)
ARGS = ("report", "--from", START.isoformat(), "--to", END.isoformat())


@pytest.fixture
def home(tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config and a migrated database holding the data set; the clock at 11 Jan 2027."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(url=migrated_db_url))
    engine = ensure_database(migrated_db_url)
    seed(engine)
    engine.dispose()
    monkeypatch.setattr(reports, "utcnow", lambda: utc(2027, 1, 11, 12))
    monkeypatch.chdir(tmp_path)
    return config


def cli(config: Path, *args: str) -> Result:
    # The console is made at import time, when COLUMNS may differ: pin its width for the run.
    saved = context.console._width
    context.console._width = 400
    try:
        return CliRunner().invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "400"})
    finally:
        context.console._width = saved


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception
    return result.stdout


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_table(home: Path) -> None:
    out = ok(cli(home, *ARGS))
    assert "07 Dec 2026 to 03 Jan 2027" in out
    for text in (
        "4/6 (67%)",
        "5/6 (83%)",
        "5/8 (63%)",
        "Cllr Ada Lovelace",
        "Highways",
        "3/3 (100%)",
        "5.2",
    ):
        assert text in out, text


def test_table_compare_previous(home: Path) -> None:
    out = ok(cli(home, *ARGS, "--compare-previous"))
    assert "09 Nov 2026 to 06 Dec 2026" in out
    assert "1/2 (50%)" in out  # the previous period's on-time figure, under this one's


def by_group(rows: list[dict[str, str]], level: str, name: str) -> dict[str, str]:
    column = {
        "total": "Directorate",
        "directorate": "Directorate",
        "service_area": "Service area",
        "member": "Member",
    }[level]
    [found] = [r for r in rows if r["Level"] == level and r[column] == name]
    return found


def test_csv_to_a_file_and_parsed_back(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    assert "Report written" in ok(cli(home, *ARGS, "--format", "csv", "--output", str(target)))
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    total = by_group(rows, "total", "(all)")
    assert total["Period"] == "07 Dec 2026 to 03 Jan 2027"
    assert (
        total["Received"],
        total["Responded within target"],
        total["Responded within target (of)"],
        total["Responded within target (%)"],
    ) == ("8", "4", "6", "66.7")
    assert total["Median working days to first response"] == "4"
    assert total["90th percentile working days to first response"] == "5.2"
    assert total["Median working days to completion"] == "5"
    assert (total["Overdue now"], total["Chasers"]) == ("2", "6")
    highways = by_group(rows, "service_area", "Highways")
    assert highways["Directorate"] == ET
    assert highways["90th percentile working days to first response"] == "5.4"
    ben = by_group(rows, "member", "Cllr Ben Jonson")
    assert (ben["Within extended target"], ben["Within extended target (of)"]) == ("2", "3")
    waste = by_group(rows, "service_area", "Waste")
    assert waste["Median working days to first response"] == ""  # no responses yet
    assert len(rows) == 1 + 7 + 2


def test_csv_to_stdout_with_the_previous_period(home: Path) -> None:
    out = ok(cli(home, *ARGS, "--format", "csv", "--compare-previous"))
    rows = list(csv.DictReader(io.StringIO(out)))
    total = by_group(rows, "total", "(all)")
    assert total["Previous period"] == "09 Nov 2026 to 06 Dec 2026"
    assert (total["Previous: Received"], total["Previous: Responded within target"]) == ("2", "1")
    assert total["Previous: 90th percentile working days to first response"] == "4.6"
    adults = by_group(rows, "directorate", AH)
    assert (adults["Received"], adults["Previous: Received"]) == ("2", "0")


def test_xlsx_reopened(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.xlsx"
    ok(cli(home, *ARGS, "--format", "xlsx", "--output", str(target), "--compare-previous"))
    book = load_workbook(target)
    assert book.sheetnames == ["Report", "Notes"]
    sheet = book["Report"]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(2)]
    total = rows[0]
    assert total["Level"] == "total"
    assert (
        total["Received"],
        total["Acknowledged within target"],
        total["Acknowledged within target (of)"],
    ) == (8, 7, 8)
    assert total["Acknowledged within target (%)"] == 87.5
    assert total["90th percentile working days to first response"] == 5.2
    assert total["Previous: Received"] == 2
    ada = next(r for r in rows if r["Member"] == "Cllr Ada Lovelace")
    assert ada["90th percentile working days to completion"] == 5.8
    notes = [row[0].value for row in book["Notes"].iter_rows()]
    assert "Previous period" in notes and "Time zone" in notes


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--from", "2026-13-01", "--to", "2027-01-03"), ("--from", "not a date")),
        (("--from", "2026-12-07", "--to", "yesterday"), ("--to", "not a date")),
        (("--from", "2027-01-03", "--to", "2026-12-07"), ("before --from",)),
        (("--from", "2026-12-07", "--to", "2027-01-03", "--format", "pdf"), ("table, csv",)),
        (("--from", "2026-12-07", "--to", "2027-01-03", "--format", "xlsx"), ("--output",)),
    ],
)
def test_errors_are_one_line(home: Path, args: tuple[str, ...], fragments: tuple[str]) -> None:
    one_line_error(cli(home, "report", *args), *fragments)


def test_an_unwritable_output_is_one_line(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.html"
    one_line_error(cli(home, *ARGS, "--format", "html", "--output", str(target)), "cannot write")
