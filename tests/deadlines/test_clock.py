"""Clock control through the command line, on SQLite and PostgreSQL: `calendar show`,
`calendar recompute`, `case pause|resume`, `case set` moving the deadline, `case reassign
--reset-deadline`, and what the lists, the dashboard and the reports make of them.

Jane's pothole enquiry (REF) was received Tue 24 Nov 2026 09:15 GMT: acknowledge by Wed 25
Nov, reply due Tue 8 Dec (10 working days). The CLI's config closes the council 29-31 Dec and
makes complaints 20 working days; "now" is given with the hidden --now option.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from mailbridge.cli.app import app
from mailbridge.console import reports
from mailbridge.console.dashboard import dashboard
from mailbridge.console.filters import CaseFilter, count_cases, list_cases
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.deadlines.clock import is_paused
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Case, Event
from tests.factories import AREAS, ok_lines, one_error
from tests.helpers.cli import CLI_ACTOR
from tests.helpers.clock import FIXED_NOW
from tests.helpers.council import (
    PRIYA,
    RAJ,
    REF,
    SAM,
    Council,
    build_council,
    new_email,
    only,
    reply,
    text_of,
    write_council_config,
)

runner = CliRunner()
CAL = WorkingCalendar(closure_days=["2026-12-29", "2026-12-30", "2026-12-31"])
SETTINGS = """\
[council]
closure_days = ["2026-12-29", "2026-12-30", "2026-12-31"]
[[sla.rules]]
enquiry_type = "complaint"
response_working_days = 20
""" + "".join(
    f'[[service_areas]]\nname = "{a["name"]}"\ndirectorate = "{a["directorate"]}"\n' for a in AREAS
)

# Where a command takes no --now it reads the clock itself: one fixed moment.
pytestmark = pytest.mark.usefixtures("fixed_clock")


@dataclass
class Desk:
    config: Path
    council: Council
    tmp: Path
    db_url: str

    def cli(self, *args: str) -> Result:
        return runner.invoke(app, [*args, "--config", str(self.config)], env={"COLUMNS": "300"})

    def case(self, reference: str = REF) -> Case:
        return self.council.case(reference)

    def events(self, kind: str) -> list[Event]:
        return self.council.events(REF, kind)

    def reconfigure(self, settings: str) -> None:
        write_council_config(self.tmp, self.db_url, settings)

    def update(self, **fields: object) -> None:
        with transaction(self.council.engine) as session:
            case = session.exec(select(Case).where(Case.reference == REF)).one()
            for name, value in fields.items():
                setattr(case, name, value)
            session.add(case)


@pytest.fixture
def desk(tmp_path: Path, migrated_db_url: str) -> Iterator[Desk]:
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine)
    config = write_council_config(tmp_path, migrated_db_url, SETTINGS)
    council.open_pothole_case()
    yield Desk(config, council, tmp_path, migrated_db_url)
    engine.dispose()


def dates(case: Case) -> tuple[str, str, str | None]:
    return (
        case.acknowledge_due.isoformat(),
        case.response_due.isoformat(),
        case.extended_due.isoformat() if case.extended_due else None,
    )


def extend(desk: Desk, text: str) -> None:
    """Priya, the lead officer, sends a holding reply with `#extend`."""
    desk.council.assign(PRIYA)
    lead = only(desk.council.new_mail(), PRIYA)
    desk.council.deliver(reply(lead, PRIYA, f"#holding\n{text}\n\nDear Cllr Smith, soon."))
    desk.council.new_mail()


# --- calendar show --------------------------------------------------------------------


def test_calendar_show_lists_bank_holidays_by_name_and_closures_not_plain_weekends(
    desk: Desk,
) -> None:
    out = "\n".join(ok_lines(desk.cli("calendar", "show", "2026")))
    rows = re.findall(r"│ (\d{4}-\d\d-\d\d) │ (\w+)\s*│ ([^│]+?)\s*│", out)
    assert rows == [
        ("2026-01-01", "Thursday", "New Year's Day"),
        ("2026-04-03", "Friday", "Good Friday"),
        ("2026-04-06", "Monday", "Easter Monday"),
        ("2026-05-04", "Monday", "May Day"),
        ("2026-05-25", "Monday", "Spring Bank Holiday"),
        ("2026-08-31", "Monday", "Late Summer Bank Holiday"),
        ("2026-12-25", "Friday", "Christmas Day"),
        ("2026-12-26", "Saturday", "Boxing Day"),
        ("2026-12-28", "Monday", "Boxing Day (observed)"),
        ("2026-12-29", "Tuesday", "Council closure"),
        ("2026-12-30", "Wednesday", "Council closure"),
        ("2026-12-31", "Thursday", "Council closure"),
    ]
    assert "Time zone: Europe/London" in out
    assert "Cut-off: mail from 17:00 on (or on a non-working day) counts as received on the " \
        "next working day" in out  # fmt: skip


def test_calendar_show_all_as_csv_includes_the_weekends(desk: Desk) -> None:
    lines = ok_lines(desk.cli("calendar", "show", "2026", "--all", "--format", "csv"))
    assert lines[0] == "date,weekday,why"
    assert "2026-01-03,Saturday,Weekend" in lines
    assert "2026-08-31,Monday,Late Summer Bank Holiday" in lines
    # 104 weekend days in 2026, Boxing Day among them; 8 weekday holidays; 3 closure days.
    assert len(lines) - 1 == 104 + 8 + 3


def test_calendar_show_refuses_an_unknown_format(desk: Desk) -> None:
    one_error(desk.cli("calendar", "show", "2026", "--format", "xml"), "--format 'xml': use one "
              "of table, csv")  # fmt: skip


# --- pause and resume -----------------------------------------------------------------


def test_pause_then_resume_moves_the_deadline_by_the_paused_working_days(desk: Desk) -> None:
    lines = ok_lines(
        desk.cli("case", "pause", REF, "--reason", "awaiting information from the councillor",
                 "--now", "2026-12-01T10:00:00Z")
    )  # fmt: skip
    assert lines[0] == f"{REF}: paused since Tue 01 Dec 2026 (awaiting information from the " \
        "councillor)"  # fmt: skip
    case = desk.case()
    assert is_paused(case) and case.paused_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert case.pause_reason == "awaiting information from the councillor"
    shown = "\n".join(ok_lines(desk.cli("case", "show", REF)))
    assert "Paused          since Tue 01 Dec 2026 (awaiting information from the councillor)" \
        in shown  # fmt: skip
    assert "paused: the deadline moves on when the case resumes" in shown

    # Resumed on Friday: Wed, Thu and Fri were paused working days.
    lines = ok_lines(desk.cli("case", "resume", REF, "--now", "2026-12-04T15:00:00Z"))
    assert lines == [
        f"{REF}: resumed after 3 working days paused (3 in all)",
        "  reply due Tue 08 Dec 2026 → Fri 11 Dec 2026",
    ]
    case = desk.case()
    assert (case.paused_at, case.pause_reason, case.paused_working_days) == (None, None, 3)
    assert dates(case) == ("2026-11-25", "2026-12-11", None)
    [paused] = desk.events("paused")
    assert paused.detail.startswith("clock paused on 2026-12-01: awaiting information")
    [resumed] = desk.events("resumed")
    assert resumed.detail == (
        "clock resumed after 3 working days paused (3 in all): reply due 2026-12-08 → 2026-12-11"
    )
    assert resumed.actor == CLI_ACTOR
    shown = "\n".join(ok_lines(desk.cli("case", "show", REF)))
    assert "Paused days     3 working days added to the deadline" in shown
    # What resume did is what a recompute counts: nothing to change.
    assert ok_lines(desk.cli("calendar", "recompute"))[-1] == "0 open cases changed"


def test_a_pause_over_christmas_counts_only_working_days(desk: Desk) -> None:
    ok_lines(desk.cli("case", "pause", REF, "--reason", "waiting", "--now", "2026-12-23T12:00Z"))
    # Thu 24 Dec, then (25, 28 bank holidays; 29-31 closed; 1 Jan) Mon 4 and Tue 5 Jan.
    ok_lines(desk.cli("case", "resume", REF, "--now", "2027-01-05T09:00Z"))
    case = desk.case()
    assert case.paused_working_days == 3
    assert case.response_due == CAL.add_working_days(date(2026, 12, 8), 3) == date(2026, 12, 11)


def test_resume_moves_an_officers_extension_too(desk: Desk) -> None:
    extend(desk, "#extend 5 waiting for the contractor")
    assert dates(desk.case()) == ("2026-11-25", "2026-12-08", "2026-12-15")
    ok_lines(desk.cli("case", "pause", REF, "--reason", "waiting", "--now", "2026-12-07T10:00Z"))
    lines = ok_lines(desk.cli("case", "resume", REF, "--now", "2026-12-09T10:00Z"))
    assert lines[1:] == [
        "  reply due Tue 08 Dec 2026 → Thu 10 Dec 2026",
        "  extended to Tue 15 Dec 2026 → Thu 17 Dec 2026",
    ]
    case = desk.case()
    assert dates(case) == ("2026-11-25", "2026-12-10", "2026-12-17")
    assert case.extension_reason == "waiting for the contractor"
    assert ok_lines(desk.cli("calendar", "recompute"))[-1] == "0 open cases changed"


def test_pause_and_resume_refuse_in_one_line(desk: Desk) -> None:
    one_error(desk.cli("case", "resume", REF), f"{REF} is not paused (`mailbridge case pause "
              f'{REF} --reason "..."` stops its clock)')  # fmt: skip
    one_error(
        desk.cli("case", "pause", REF, "--reason", "  "),
        '--reason is empty: say why the clock stops, e.g. --reason "awaiting information from '
        'the councillor"',
    )
    ok_lines(desk.cli("case", "pause", REF, "--reason", "waiting", "--now", "2026-12-01T10:00Z"))
    one_error(
        desk.cli("case", "pause", REF, "--reason", "again"),
        f"{REF} is already paused since 2026-12-01 (waiting); `mailbridge case resume {REF}` "
        "restarts its clock",
    )
    ok_lines(desk.cli("case", "resume", REF, "--now", "2026-12-01T11:00Z"))
    assert desk.case().paused_working_days == 0  # paused and resumed the same day
    ok_lines(desk.cli("case", "status", REF, "completed"))
    one_error(desk.cli("case", "pause", REF, "--reason", "x"), f"{REF} is completed; only an "
              f"open case can be paused (`mailbridge case reopen {REF}` first)")  # fmt: skip
    desk.update(status="closed")
    one_error(desk.cli("case", "pause", REF, "--reason", "x"), f"{REF} is closed; a closed "
              "case cannot be paused")  # fmt: skip
    one_error(desk.cli("case", "pause", "MQ-2026-99999", "--reason", "x"),
              "no case has reference MQ-2026-99999 (see `mailbridge cases list`)")  # fmt: skip
    one_error(desk.cli("case", "resume", REF, "--now", "yesterday"),
              "--now 'yesterday' is not a moment like 2026-12-01T10:00:00Z")  # fmt: skip


def test_a_paused_case_is_neither_overdue_nor_due_soon(desk: Desk) -> None:
    late = date(2026, 12, 10)  # two days after the deadline
    soon = date(2026, 12, 7)  # the day before it

    def counts() -> tuple[int, int, int, bool]:
        with Session(desk.council.engine) as session:
            board = dashboard(session, CAL, late)
            [row] = list_cases(session, CaseFilter(), CAL, late)
            return (
                board.overdue,
                count_cases(session, CaseFilter(overdue=True), CAL, late),
                count_cases(session, CaseFilter(due_within=2), CAL, soon),
                row.overdue,
            )

    assert counts() == (1, 1, 1, True)
    ok_lines(desk.cli("case", "pause", REF, "--reason", "waiting", "--now", "2026-12-01T10:00Z"))
    assert counts() == (0, 0, 0, False)
    with Session(desk.council.engine) as session:
        [row] = list_cases(session, CaseFilter(), CAL, late)
    assert row.paused
    listed = "\n".join(ok_lines(desk.cli("cases", "list")))
    assert "Tue 08 Dec 2026 (paused)" in listed


# --- recompute ------------------------------------------------------------------------


def test_recompute_after_a_new_closure_day_dry_run_then_once(desk: Desk) -> None:
    report = desk.council.deliver(new_email(RAJ, "School bus late", "The bus was late again."))
    [other] = report.references
    desk.council.new_mail()
    ok_lines(desk.cli("case", "status", other, "completed"))
    before_other = dates(desk.case(other))
    desk.reconfigure(SETTINGS.replace('"2026-12-29"', '"2026-12-02", "2026-12-29"'))

    lines = ok_lines(desk.cli("calendar", "recompute", "--dry-run"))
    assert lines == [
        f"{REF}: reply due 2026-12-08 → 2026-12-09",
        "1 open cases would change (dry run: nothing changed)",
    ]
    assert dates(desk.case()) == ("2026-11-25", "2026-12-08", None)
    assert desk.events("deadline_recomputed") == []

    lines = ok_lines(desk.cli("calendar", "recompute"))
    assert lines == [f"{REF}: reply due 2026-12-08 → 2026-12-09", "1 open cases changed"]
    assert dates(desk.case()) == ("2026-11-25", "2026-12-09", None)
    assert dates(desk.case(other)) == before_other  # completed: its deadlines are history
    [event] = desk.events("deadline_recomputed")
    assert event.detail == (
        "deadlines recounted (calendar recompute): reply due 2026-12-08 → 2026-12-09"
    )
    assert ok_lines(desk.cli("calendar", "recompute")) == ["0 open cases changed"]
    assert len(desk.events("deadline_recomputed")) == 1


def test_recompute_keeps_an_extension_unless_it_no_longer_extends(desk: Desk) -> None:
    extend(desk, "#extend 2 survey")
    assert dates(desk.case()) == ("2026-11-25", "2026-12-08", "2026-12-10")
    # One closure day: the deadline moves to the 9th; the extension (10th) still extends it.
    desk.reconfigure(SETTINGS.replace('"2026-12-29"', '"2026-12-02", "2026-12-29"'))
    ok_lines(desk.cli("calendar", "recompute"))
    assert dates(desk.case()) == ("2026-11-25", "2026-12-09", "2026-12-10")
    # Two more: the deadline is the 11th, after the extension, which is dropped.
    desk.reconfigure(
        SETTINGS.replace('"2026-12-29"', '"2026-12-02", "2026-12-03", "2026-12-04", "2026-12-29"')
    )
    lines = ok_lines(desk.cli("calendar", "recompute"))
    assert lines[0] == f"{REF}: reply due 2026-12-09 → 2026-12-11; extended to 2026-12-10 → (none)"
    case = desk.case()
    assert (dates(case), case.extension_reason) == (("2026-11-25", "2026-12-11", None), None)
    assert desk.events("deadline_recomputed")[-1].detail.endswith(
        "(the extension no longer extends the deadline, so it is dropped)"
    )


# --- case set -------------------------------------------------------------------------


def test_a_new_enquiry_type_moves_the_deadline_to_its_sla(desk: Desk) -> None:
    lines = ok_lines(desk.cli("case", "set", REF, "--enquiry-type", "complaint"))
    assert lines == [
        f"{REF}:",
        "  enquiry type: (none) → complaint",
        "  reply due 2026-12-08 → 2026-12-22",
    ]
    assert dates(desk.case()) == ("2026-11-25", "2026-12-22", None)
    [event] = desk.events("deadline_recomputed")
    assert event.detail == (
        "deadlines recounted (service area or enquiry type changed): reply due 2026-12-08 → "
        "2026-12-22"
    )
    # Another change that leaves the SLA as it is moves nothing.
    assert ok_lines(desk.cli("case", "set", REF, "--district", "Blaby"))[1:] == [
        "  district: Harborough → Blaby"
    ]
    ok_lines(desk.cli("case", "set", REF, "--enquiry-type", ""))
    assert dates(desk.case()) == ("2026-11-25", "2026-12-08", None)


def test_a_completed_case_keeps_its_deadline_when_its_type_changes(desk: Desk) -> None:
    ok_lines(desk.cli("case", "status", REF, "completed"))
    lines = ok_lines(desk.cli("case", "set", REF, "--enquiry-type", "complaint"))
    assert lines == [f"{REF}:", "  enquiry type: (none) → complaint"]
    assert dates(desk.case()) == ("2026-11-25", "2026-12-08", None)


# --- reassignment ---------------------------------------------------------------------


def test_reassignment_keeps_the_deadline_and_the_extension(desk: Desk) -> None:
    extend(desk, "#extend 2 survey")
    lines = ok_lines(desk.cli("case", "reassign", REF, "--lead", SAM, "--now", "2026-12-03T10:00Z"))
    assert not any("deadline" in line for line in lines)
    assert dates(desk.case()) == ("2026-11-25", "2026-12-08", "2026-12-10")
    assert desk.events("deadline_reset") == []


def test_reassignment_with_reset_deadline_counts_afresh_from_today(desk: Desk) -> None:
    extend(desk, "#extend 2 survey")
    # As if the case had been paused a day: the deadline and the extension moved on by one.
    desk.update(
        paused_working_days=1, response_due=date(2026, 12, 9), extended_due=date(2026, 12, 11)
    )
    lines = ok_lines(
        desk.cli("case", "reassign", REF, "--lead", SAM, "--reset-deadline",
                 "--now", "2026-12-03T10:00Z")
    )  # fmt: skip
    detail = (
        "deadline reset: reply due 2026-12-09 → 2026-12-17 (10 working days from 2026-12-03); "
        "extension to 2026-12-11 cleared"
    )
    assert f"  {detail}" in lines
    case = desk.case()
    assert dates(case) == ("2026-11-25", "2026-12-17", None)
    assert (case.extension_reason, case.paused_working_days) == (None, 0)
    assert (case.deadline_reset_on, case.deadline_reset_days) == (date(2026, 12, 3), 10)
    [event] = desk.events("deadline_reset")
    assert event.detail == detail
    # Sam's notice carries the new deadline.
    desk.council.run()
    [notice] = [m for m in desk.council.new_mail() if SAM in m["To"]]
    assert "17 December 2026" in " ".join(text_of(notice).split())

    # A recompute counts from the reset day; a new type's SLA does not move a reset deadline.
    assert ok_lines(desk.cli("calendar", "recompute")) == ["0 open cases changed"]
    lines = ok_lines(desk.cli("case", "set", REF, "--enquiry-type", "complaint"))
    assert lines == [f"{REF}:", "  enquiry type: (none) → complaint"]
    # A closure day after the reset day does.
    desk.reconfigure(SETTINGS.replace('"2026-12-29"', '"2026-12-10", "2026-12-29"'))
    assert ok_lines(desk.cli("calendar", "recompute")) == [
        f"{REF}: reply due 2026-12-17 → 2026-12-18",
        "1 open cases changed",
    ]


def test_reset_while_paused_counts_the_pause_from_the_reset(desk: Desk) -> None:
    desk.council.assign(PRIYA)
    ok_lines(desk.cli("case", "pause", REF, "--reason", "waiting", "--now", "2026-11-26T10:00Z"))
    ok_lines(
        desk.cli("case", "reassign", REF, "--lead", SAM, "--reset-deadline",
                 "--now", "2026-12-03T10:00Z")
    )  # fmt: skip
    assert desk.case().paused_at == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    ok_lines(desk.cli("case", "resume", REF, "--now", "2026-12-04T10:00Z"))
    case = desk.case()
    assert (case.paused_working_days, case.response_due) == (1, date(2026, 12, 18))
    assert ok_lines(desk.cli("calendar", "recompute")) == ["0 open cases changed"]


def test_completing_a_paused_case_ends_its_pause_as_a_resume_would(desk: Desk) -> None:
    desk.council.assign(PRIYA)
    ok_lines(desk.cli("case", "pause", REF, "--reason", "waiting", "--now", "2026-11-24T16:00Z"))
    ok_lines(desk.cli("case", "status", REF, "completed"))
    case = desk.case()
    assert case.status == "completed" and case.paused_at is None and case.pause_reason is None
    # Paused from 24 November until today (Tue 1 Dec, the fixed clock): the deadline moved
    # on by those working days.
    days = CAL.working_days_between(date(2026, 11, 24), CAL.local_date(FIXED_NOW))
    assert days == 5
    assert case.paused_working_days == days
    assert case.response_due == CAL.add_working_days(date(2026, 12, 8), days)
    [resumed] = desk.events("resumed")
    assert resumed.detail.startswith(f"pause ended as the case closed after {days} working days")


# --- reports --------------------------------------------------------------------------


def test_reports_count_on_time_against_the_original_and_the_extended_deadline(
    desk: Desk,
) -> None:
    extend(desk, "#extend 5 waiting for the contractor")
    # Answered on Thu 10 Dec: after the original (8 Dec), before the extension (15 Dec).
    desk.update(first_response_at=datetime(2026, 12, 10, 11, 0, tzinfo=UTC))
    with Session(desk.council.engine) as session:
        built = reports.build_report(
            session, CAL, date(2026, 11, 1), date(2026, 11, 30), today=date(2026, 12, 20)
        )
    total = built.current.total
    assert (total.on_time.hit, total.on_time.of) == (0, 1)
    assert (total.on_time_extended.hit, total.on_time_extended.of) == (1, 1)


@pytest.mark.parametrize(
    ("command", "example"),
    [
        (["case", "pause"], "Example: mailbridge case pause MQ-2026-00042 --reason"),
        (["case", "resume"], "Example: mailbridge case resume MQ-2026-00042"),
        (["case", "reassign"], "--reset-deadline"),
        (["calendar", "show"], "Example: mailbridge calendar show 2026"),
        (["calendar", "recompute"], "Example: mailbridge calendar recompute --dry-run"),
    ],
)
def test_every_clock_command_explains_itself(command: list[str], example: str) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert example in result.stdout
    assert "--now" not in result.stdout  # for tests, hidden
