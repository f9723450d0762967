"""The coordinator console: `cases list` filters, `export`, `dashboard`, through CliRunner.

One seeded database per backend (SQLite and PostgreSQL), shared by the module: 40 cases
across five members, three officers, four service areas, four statuses and 40 days, with
deadlines placed around today (overdue, due today, due in 2 and 3 working days, next month)
and some extended. Expected results come from the seed list itself, filtered in Python by
the rules the issue states, and, for the dashboard, from counts worked out by hand.
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlmodel import Session

from mailbridge.console.dashboard import dashboard, deadline_counts
from mailbridge.console.filters import CaseFilter, FilterErrors, count_cases, from_query
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Case, CaseMember, CaseOfficer, Person, PersonAddress
from tests.helpers.cli import CONFIG, invoke, ok, one_line_error, rows
from tests.helpers.clock import FIXED_NOW
from tests.servers.database import DATABASES, migrated_copy

CAL = WorkingCalendar()  # the config's council: Europe/London, England's bank holidays
# The commands read the clock themselves ("today" in the lists and the dashboard): every test
# here runs at one fixed moment, and the seeds are placed around that day.
pytestmark = pytest.mark.usefixtures("fixed_clock")
TODAY = CAL.local_date(FIXED_NOW)
YEAR = TODAY.year

MEMBERS = [  # name, primary address, other addresses, district
    ("Cllr Jane Smith", "jane.smith@example.gov.uk", ["jane@home.example.org"], "Harborough"),
    ("Cllr Raj Patel", "raj.patel@example.gov.uk", [], "Oadby and Wigston"),
    ("Cllr Margaret Owen", "margaret.owen@example.gov.uk", [], "Blaby"),
    ("Cllr David Smithson", "david.smithson@example.gov.uk", [], "Melton"),
    ("Cllr Li Chen", "li.chen@example.gov.uk", ["lichen@home.example.org"], "Blaby"),
]
DELEGATE = ("Tom Baker", "tom.baker@example.gov.uk")  # writes for Jane Smith
OFFICERS = [
    ("Priya Shah", "priya.shah@example.gov.uk"),
    ("Gareth Lewis", "gareth.lewis@example.gov.uk"),
    ("Aisha Rahman", "aisha.rahman@example.gov.uk"),
]
AREAS = [  # service area, directorate, enquiry type, subject
    ("Highways", "Environment and Transport", "Pothole", "Pothole on Mill Lane"),
    ("School Transport", "Children's Services", "Eligibility", "School bus refused"),
    ("Adult Social Care", "Adults and Health", "Care review", "Care package review"),
    ("Waste", "Environment and Transport", "Missed collection", "Bins not collected"),
]
DISTRICTS = ["Harborough", "Blaby", "Melton", "Oadby and Wigston"]
STATUS_CYCLE = [
    "new",
    "in_progress",
    "completed",
    "new",
    "in_progress",
    "completed",
    "in_progress",
    "closed",
]
CONTACTS = ["email", "phone", "letter", None]
OPEN = ("new", "in_progress")
# Subjects a spreadsheet would run as formulas, on cases 30 to 35.
FORMULAS = [
    '=HYPERLINK("http://evil.example/x","Click me")',
    "+44 1234 567890 rang about the verge",
    "-1 lamp posts working on Station Road",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\tTabbed subject",
    "\rCarriage return subject",
]
N = 40


def due_for(i: int) -> date:
    """Deadlines around today: overdue, today, +2 and +3 working days, a month on."""
    k = i % 5
    if k == 0:
        return TODAY - timedelta(days=10)
    if k == 1:
        return TODAY
    if k == 2:
        return CAL.add_working_days(TODAY, 2)
    if k == 3:
        return CAL.add_working_days(TODAY, 3)
    return TODAY + timedelta(days=30)


@dataclass
class Seed:
    """One seeded case as the tests see it."""

    i: int
    reference: str
    member: int  # index into MEMBERS
    submitter: str  # the address it came from
    area: int
    district: str
    status: str
    created: datetime
    due: date
    extended: date | None
    lead: int | None  # index into OFFICERS
    others: list[int] = field(default_factory=list)  # additional officers
    members: list[int] = field(default_factory=list)  # other members on the case
    subject: str = ""
    body: str = ""
    contact: str | None = None

    @property
    def deadline(self) -> date:
        return self.extended or self.due

    @property
    def overdue(self) -> bool:
        return self.status in OPEN and self.deadline < TODAY

    def due_within(self, n: int) -> bool:
        last = CAL.add_working_days(TODAY, n)
        return self.status in OPEN and TODAY <= self.deadline <= last


def seeds() -> list[Seed]:
    out = []
    for i in range(N):
        area = i % 4
        member = i % 5
        subject = FORMULAS[i - 30] if 30 <= i < 36 else f"{AREAS[area][3]} ({i})"
        day = TODAY - timedelta(days=i)
        out.append(
            Seed(
                i=i,
                reference=f"MQ-{YEAR}-{i + 1:05d}",
                member=member,
                submitter=DELEGATE[1] if i in (5, 25) else MEMBERS[member][1],
                area=area,
                district=DISTRICTS[(i // 2) % 4],
                status=STATUS_CYCLE[i % 8],
                # 10:00 in the council's zone, one case a day going back from today
                created=datetime.combine(day, time(10), tzinfo=CAL.zone).astimezone(UTC),
                due=due_for(i),
                extended=CAL.add_working_days(TODAY, 1) if i % 10 == 0 else None,
                lead=None if i % 4 == 3 else i % 3,
                others=[2] if i % 6 == 0 and i % 3 != 2 else [],
                members=[4] if i in (7, 13) else [],
                subject=subject,
                body=("The gully is blocked again. " if i % 7 == 0 else "Please look into it. ")
                + f"Case number {i}.",
                contact=CONTACTS[i % 4],
            )
        )
    return out


SEEDS = seeds()
BY_REF = {s.reference: s for s in SEEDS}


def seed_database(url: str) -> None:
    engine = ensure_database(url)
    try:
        with transaction(engine) as session:
            ids: dict[str, int] = {}

            def person(kind: str, name: str, email: str, extra: list[str], **kw: object) -> int:
                p = Person(kind=kind, name=name, email=email, **kw)  # type: ignore[arg-type]
                session.add(p)
                session.flush()
                for address in (email, *extra):
                    session.add(PersonAddress(email=address, person_id=p.id))  # type: ignore[arg-type]
                ids[email] = p.id  # type: ignore[assignment]
                return p.id  # type: ignore[return-value]

            members = [person("member", n, e, x, district=d) for n, e, x, d in MEMBERS]
            person("delegate", *DELEGATE, [], delegate_for_id=members[0])
            officers = [person("officer", n, e, []) for n, e in OFFICERS]
            for s in SEEDS:
                area, directorate, etype, _ = AREAS[s.area]
                case = Case(
                    reference=s.reference,
                    prefix="MQ",
                    year=YEAR,
                    seq=s.i + 1,
                    subject=s.subject,
                    body_text=s.body,
                    status=s.status,
                    member_id=members[s.member],
                    submitter_id=ids[s.submitter],
                    lead_officer_id=officers[s.lead] if s.lead is not None else None,
                    service_area=area,
                    directorate=directorate,
                    enquiry_type=etype,
                    district=s.district,
                    received_at=s.created,
                    acknowledge_due=s.due,
                    response_due=s.due,
                    extended_due=s.extended,
                    completed_at=s.created if s.status == "completed" else None,
                    preferred_contact=s.contact,
                    created_at=s.created,
                    updated_at=s.created,
                )
                session.add(case)
                session.flush()
                if s.lead is not None:
                    session.add(
                        CaseOfficer(case_id=case.id, person_id=officers[s.lead], role="lead")  # type: ignore[arg-type]
                    )
                for o in s.others:
                    session.add(
                        CaseOfficer(case_id=case.id, person_id=officers[o], role="additional")  # type: ignore[arg-type]
                    )
                for m in s.members:
                    session.add(CaseMember(case_id=case.id, person_id=members[m]))  # type: ignore[arg-type]
    finally:
        engine.dispose()


@dataclass
class Console:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def cli(self, *args: str, width: int = 300):  # type: ignore[no-untyped-def]
        return invoke(*args, "--config", str(self.config), width=width)

    def refs(self, *args: str) -> list[str]:
        """References `cases list` gives as JSON for these options, in its order."""
        out = ok(self.cli("cases", "list", "--format", "json", "--limit", "100", *args))
        return [r["reference"] for r in json.loads(out)]


@pytest.fixture(scope="module", params=DATABASES)
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    root = tmp_path_factory.mktemp(f"console-{request.param}")
    with migrated_copy(request, root) as url:
        seed_database(url)
        (root / "config.toml").write_text(
            CONFIG.replace('url = "sqlite:///./mailbridge.db"', f'url = "{url}"'),
            encoding="utf-8",
        )
        yield Console(root)


def newest_first(selected: list[Seed]) -> list[str]:
    return [s.reference for s in sorted(selected, key=lambda s: s.created, reverse=True)]


def where(predicate) -> list[str]:  # type: ignore[no-untyped-def]
    return newest_first([s for s in SEEDS if predicate(s)])


# --- every filter alone ------------------------------------------------------------------


def addresses(m: int) -> set[str]:
    return {MEMBERS[m][1], *MEMBERS[m][2]}


FILTERS = [
    pytest.param(("--type", "care REVIEW"), lambda s: s.area == 2, id="type"),
    pytest.param(("--ref", "0001"), lambda s: "0001" in s.reference, id="ref-part"),
    pytest.param(("--ref", f"mq-{YEAR}-00012"), lambda s: s.i == 11, id="ref-whole"),
    pytest.param(("--service-area", "highways"), lambda s: s.area == 0, id="service-area"),
    # Smith is Jane's surname; David Smithson's does not end in "smith".
    pytest.param(("--surname", "SMITH"), lambda s: s.member == 0, id="surname"),
    pytest.param(
        ("--directorate", "Environment and Transport"),
        lambda s: s.area in (0, 3),
        id="directorate",
    ),
    # Her other address finds her cases, including those her delegate sent.
    pytest.param(("--email", "jane@home.example.org"), lambda s: s.member == 0, id="email-member"),
    pytest.param(
        ("--email", "TOM.BAKER@example.gov.uk"), lambda s: s.i in (5, 25), id="email-submitter"
    ),
    pytest.param(("--district", "blaby"), lambda s: s.district == "Blaby", id="district"),
    pytest.param(("--status", "in_progress"), lambda s: s.status == "in_progress", id="status"),
    pytest.param(("--status", "closed"), lambda s: s.status == "closed", id="status-closed"),
    pytest.param(
        ("--officer", "aisha.rahman@example.gov.uk"),
        lambda s: s.lead == 2 or 2 in s.others,
        id="officer-lead-or-additional",
    ),
    pytest.param(
        ("--member", "Li Chen"), lambda s: s.member == 4 or 4 in s.members, id="member-name"
    ),
    pytest.param(
        ("--member", "lichen@home.example.org"),
        lambda s: s.member == 4 or 4 in s.members,
        id="member-email",
    ),
    pytest.param(("--overdue",), lambda s: s.overdue, id="overdue"),
    pytest.param(("--due-within", "2"), lambda s: s.due_within(2), id="due-within-2"),
    pytest.param(("--due-within", "0"), lambda s: s.due_within(0), id="due-within-0"),
    pytest.param(
        ("--created-from", (TODAY - timedelta(days=5)).isoformat()),
        lambda s: s.i <= 5,
        id="created-from",
    ),
    pytest.param(
        ("--created-to", (TODAY - timedelta(days=35)).isoformat()),
        lambda s: s.i >= 35,
        id="created-to",
    ),
    pytest.param(("--search", "GULLY"), lambda s: s.i % 7 == 0, id="search-body"),
    pytest.param(
        ("--search", "bus refused"),
        lambda s: "bus refused" in s.subject.lower(),
        id="search-subject",
    ),
    pytest.param(("--search", "100%"), lambda s: False, id="search-wildcard-literal"),
]


@pytest.mark.parametrize(("options", "predicate"), FILTERS)
def test_each_filter_alone(console: Console, options: tuple[str, ...], predicate) -> None:  # type: ignore[no-untyped-def]
    expected = where(predicate)
    assert console.refs(*options) == expected
    if options[0] not in ("--search", "--ref"):
        assert expected, "the seed should give this filter something to find"


def test_the_seed_covers_what_the_filters_distinguish() -> None:
    """Guards the fixture: the cases that make the filters' edges are really there."""
    assert any(s.extended and s.due < TODAY and s.status in OPEN for s in SEEDS)  # rescued
    assert any(s.overdue for s in SEEDS)
    assert any(s.status in ("completed", "closed") and s.deadline < TODAY for s in SEEDS)
    assert any(s.others for s in SEEDS) and any(s.members for s in SEEDS)


def test_filters_combine(console: Console) -> None:
    got = console.refs(
        "--directorate", "environment and transport", "--status", "in_progress", "--overdue"
    )
    assert got == where(lambda s: s.area in (0, 3) and s.status == "in_progress" and s.overdue)
    got = console.refs(
        "--district",
        "Blaby",
        "--member",
        "smith",
        "--created-from",
        (TODAY - timedelta(days=30)).isoformat(),
    )
    expected = where(lambda s: s.district == "Blaby" and s.member in (0, 3) and s.i <= 30)
    assert got == expected and expected
    got = console.refs(
        "--officer", "priya.shah@example.gov.uk", "--due-within", "3", "--type", "pothole"
    )
    assert got == where(lambda s: s.lead == 0 and s.due_within(3) and s.area == 0)


def test_an_extension_moves_a_case_out_of_overdue(console: Console) -> None:
    rescued = [s for s in SEEDS if s.extended and s.due < TODAY and s.status in OPEN]
    overdue = set(console.refs("--overdue"))
    due_soon = set(console.refs("--due-within", "1"))
    for s in rescued:
        assert s.reference not in overdue
        assert s.reference in due_soon


# --- sort and paging ---------------------------------------------------------------------


def test_sort_by_due_then_descending(console: Console) -> None:
    got = console.refs("--sort", "due")
    assert [BY_REF[r].deadline for r in got] == sorted(s.deadline for s in SEEDS)
    got = console.refs("--sort", "due", "--desc")
    assert [BY_REF[r].deadline for r in got] == sorted((s.deadline for s in SEEDS), reverse=True)


def test_sort_by_reference_member_status_and_oldest_first(console: Console) -> None:
    assert console.refs("--sort", "reference") == [s.reference for s in SEEDS]
    assert console.refs("--sort", "reference", "--desc") == [s.reference for s in reversed(SEEDS)]
    names = [MEMBERS[BY_REF[r].member][0] for r in console.refs("--sort", "member")]
    assert names == sorted(names) and len(set(names)) == 5
    order = {"new": 0, "in_progress": 1, "completed": 2, "closed": 3}
    statuses = [BY_REF[r].status for r in console.refs("--sort", "status")]
    assert statuses == sorted(statuses, key=order.__getitem__)
    assert console.refs("--asc") == [s.reference for s in sorted(SEEDS, key=lambda s: s.created)]


def test_pages_partition_the_list(console: Console) -> None:
    everything = where(lambda s: True)
    pages = [
        json.loads(
            ok(console.cli("cases", "list", "--format", "json", "--limit", "15", "--page", str(p)))
        )
        for p in (1, 2, 3, 4)
    ]
    got = [[r["reference"] for r in page] for page in pages]
    assert got == [everything[:15], everything[15:30], everything[30:40], []]


def test_the_table_title_counts_every_page(console: Console) -> None:
    out = ok(console.cli("cases", "list", "--limit", "15", "--page", "2"))
    assert "Cases 16–30 of 40 (page 2 of 3)" in out
    assert list(rows(out)) == where(lambda s: True)[15:30]
    out = ok(console.cli("cases", "list", "--status", "closed"))
    assert out.lstrip().startswith("5 cases")
    out = ok(console.cli("cases", "list", "--page", "9"))
    assert "No cases on page 9: 40 cases make 1 pages" in out
    out = ok(console.cli("cases", "list", "--search", "nothing like this"))
    assert "No cases match" in out


def test_the_table_shows_member_status_deadline_and_officer(console: Console) -> None:
    listed = rows(ok(console.cli("cases", "list", "--limit", "100")))
    assert len(listed) == N
    for ref, cells in listed.items():
        s = BY_REF[ref]
        member, subject, area, status, _created, deadline, lead = cells
        assert member == MEMBERS[s.member][0]
        assert area == AREAS[s.area][0]
        assert (
            status
            == {
                "new": "New",
                "in_progress": "In progress",
                "completed": "Completed",
                "closed": "Closed",
            }[s.status]
        )
        assert deadline == f"{s.deadline:%a %d %b %Y}"
        assert lead == (OFFICERS[s.lead][0] if s.lead is not None else "-")
        if 30 <= s.i < 36:
            continue
        assert subject == s.subject


def test_overdue_deadlines_are_red_in_the_table(console: Console) -> None:
    import rich.console

    from mailbridge.cli import context

    saved = context.console
    context.console = rich.console.Console(
        markup=False, force_terminal=True, color_system="standard", width=300
    )
    try:
        import mailbridge.cli.cases as cases_cli

        cases_cli.console = context.console
        out = ok(console.cli("cases", "list", "--limit", "100"))
    finally:
        context.console = saved
        cases_cli.console = saved
    red = "\x1b[31m"
    for s in SEEDS:
        line = next(line for line in out.splitlines() if s.reference in line)
        stamp = f"{s.deadline:%a %d %b %Y}"
        assert (f"{red}{stamp}" in line) is s.overdue, (s.reference, line)


# --- formats -----------------------------------------------------------------------------


def test_csv_format_parses_back_with_every_column(console: Console) -> None:
    out = ok(console.cli("cases", "list", "--format", "csv", "--service-area", "Waste"))
    records = list(csv.DictReader(io.StringIO(out)))
    assert [r["Reference"] for r in records] == where(lambda s: s.area == 3)
    for r in records:
        s = BY_REF[r["Reference"]]
        assert r["Member"] == MEMBERS[s.member][0]
        assert r["Enquiry type"] == "Missed collection"
        assert r["Directorate"] == "Environment and Transport"
        assert r["District"] == s.district
        assert r["Deadline"] == s.deadline.isoformat()
        assert r["Overdue"] == ("yes" if s.overdue else "no")
        assert r["Created"] == f"{s.created.astimezone(CAL.zone):%Y-%m-%d} 10:00"
        assert (
            r["Preferred contact"]
            == {"email": "Email", "phone": "Phone", "letter": "Letter", None: ""}[s.contact]
        )


def test_json_format_carries_stored_values(console: Console) -> None:
    out = ok(console.cli("cases", "list", "--format", "json", "--ref", f"{YEAR}-00031"))
    [record] = json.loads(out)
    s = BY_REF[f"MQ-{YEAR}-00031"]
    assert record["subject"] == FORMULAS[0]  # JSON is data: not neutralised
    assert record["status"] == s.status
    assert record["deadline"] == s.deadline.isoformat()
    assert datetime.fromisoformat(record["created_at"]) == s.created
    assert record["lead_officer"] == (OFFICERS[s.lead][0] if s.lead is not None else None)


def neutralised(subject: str) -> str:
    return "'" + subject


def test_export_csv_neutralises_formulas(console: Console, tmp_path: Path) -> None:
    target = tmp_path / "out" / "cases.csv"
    out = ok(console.cli("export", "--output", str(target)))
    assert out == f"40 cases written to {target} (CSV)\n"
    with target.open(encoding="utf-8-sig", newline="") as stream:
        records = list(csv.DictReader(stream))
    assert len(records) == N
    subjects = {r["Reference"]: r["Subject"] for r in records}
    for k, formula in enumerate(FORMULAS):
        assert subjects[f"MQ-{YEAR}-{31 + k:05d}"] == neutralised(formula)
    assert subjects[f"MQ-{YEAR}-00001"] == SEEDS[0].subject  # ordinary text is untouched
    # No cell anywhere begins with a formula character.
    for r in records:
        for value in r.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_cases_list_csv_neutralises_formulas_too(console: Console) -> None:
    out = ok(console.cli("cases", "list", "--format", "csv", "--ref", f"{YEAR}-00031"))
    [record] = list(csv.DictReader(io.StringIO(out)))
    assert record["Subject"] == neutralised(FORMULAS[0])


def test_export_xlsx_reopens_with_bold_header_dates_and_plain_text(
    console: Console, tmp_path: Path
) -> None:
    target = tmp_path / "cases.xlsx"
    out = ok(
        console.cli("export", "--output", str(target), "--status", "new", "--sort", "reference")
    )
    expected = [s for s in SEEDS if s.status == "new"]
    assert out == f"{len(expected)} cases written to {target} (XLSX)\n"
    book = load_workbook(target)
    sheet = book["Cases"]
    values = list(sheet.iter_rows(values_only=True))
    header = values[0]
    assert header[:3] == ("Reference", "Member", "Subject")
    assert all(cell.font.bold for cell in sheet[1])
    assert sheet.column_dimensions["C"].width == 50
    body = values[1:]
    assert [r[0] for r in body] == [s.reference for s in expected]
    col = {h: i for i, h in enumerate(header)}
    for r in body:
        s = BY_REF[r[0]]
        assert r[col["Deadline"]] == datetime.combine(s.deadline, time(0))  # a real date
        assert r[col["Created"]] == s.created.astimezone(CAL.zone).replace(tzinfo=None)
        assert r[col["Status"]] == "New"
    # Every formula subject: a string with a leading quote, never a formula cell.
    target = tmp_path / "formulas.xlsx"
    ok(console.cli("export", "--format", "xlsx", "-o", str(target), "--ref", f"{YEAR}-0003"))
    sheet = load_workbook(target)["Cases"]
    cells = {row[0].value: row[2] for row in sheet.iter_rows(min_row=2)}
    for k, formula in enumerate(FORMULAS):
        cell = cells[f"MQ-{YEAR}-{31 + k:05d}"]
        assert cell.data_type == "s"
        # XML reads a stored carriage return back as a line feed: the quote still leads.
        assert cell.value == neutralised(formula).replace("\r", "\n")
    assert all(row[2].data_type != "f" for row in sheet.iter_rows(min_row=2))


def test_export_takes_the_same_filters(console: Console, tmp_path: Path) -> None:
    target = tmp_path / "blaby.csv"
    ok(console.cli("export", "-o", str(target), "--district", "Blaby", "--overdue"))
    with target.open(encoding="utf-8-sig", newline="") as stream:
        got = [r["Reference"] for r in csv.DictReader(stream)]
    assert got == where(lambda s: s.district == "Blaby" and s.overdue)


# --- dashboard ---------------------------------------------------------------------------


def test_dashboard_counts_by_hand(console: Console) -> None:
    out = ok(console.cli("dashboard"))
    # By position i % 8: new at 0, 3 (10 cases); in progress at 1, 4, 6 (15); completed at
    # 2, 5 (10); closed at 7 (5). Open means i % 8 in {0, 1, 3, 4, 6}.
    # Overdue: i % 5 == 0 without an extension (i % 10 == 5): i = 5, 15, 25, 35, i.e.
    # i % 8 = 5, 7, 1, 3: completed, closed, open, open -> 2.
    # Due within 2 working days (open only): extended to +1 (i % 10 == 0: 0, 10, 20, 30 ->
    # i % 8 = 0, 2, 4, 6 -> 3 open); due today (i % 5 == 1: 1, 6, 11, 16, 21, 26, 31, 36 ->
    # 5 open); due in 2 working days (i % 5 == 2: 2, 7, 12, 17, 22, 27, 32, 37 -> 5 open).
    assert sum(1 for s in SEEDS if s.due_within(2)) == 3 + 5 + 5
    counts = out.splitlines()
    line = next(line for line in counts if line.count("│") >= 6 and any(c.isdigit() for c in line))
    cells = [c.strip() for c in line.strip().strip("│").split("│")]
    assert cells == ["10", "15", "10", "2", "13"]
    assert "Due within 2 working days" in out


def test_dashboard_newest_cases_table(console: Console) -> None:
    out = ok(console.cli("dashboard", "--newest", "5"))
    table = rows(out.split("Newest cases", 1)[1])
    assert list(table) == where(lambda s: True)[:5]
    header = next(line for line in out.splitlines() if "Preferred contact method" in line)
    headings = [c.strip() for c in header.strip().strip("┃").split("┃")]
    assert headings == [
        "Id",
        "Name",
        "Enquiry type",
        "Preferred contact method",
        "Service area",
        "Created",
        "Status",
        "Deadline",
    ]
    first = table[f"MQ-{YEAR}-00001"]
    assert first[:4] == ["Cllr Jane Smith", "Pothole", "Email", "Highways"]
    assert first[5:] == ["New", f"{SEEDS[0].deadline:%a %d %b %Y}"]


# --- errors: one line ------------------------------------------------------------------


def test_a_bad_date_is_one_line_and_exit_1(console: Console) -> None:
    result = console.cli("cases", "list", "--created-from", "2026-13-01")
    line = one_line_error(result, 1, "--created-from", "'2026-13-01' is not a date", "YYYY-MM-DD")
    assert line.startswith("error: ")
    result = console.cli("export", "--created-to", "yesterday")
    one_line_error(result, 1, "--created-to", "'yesterday' is not a date")


def test_dates_in_the_wrong_order_and_an_unknown_sort_are_one_line(console: Console) -> None:
    result = console.cli(
        "cases", "list", "--created-from", "2026-02-01", "--created-to", "2026-01-01"
    )
    one_line_error(result, 1, "--created-from 2026-02-01 is after --created-to 2026-01-01")
    result = console.cli("cases", "list", "--sort", "colour")
    one_line_error(
        result, 1, "unknown sort key 'colour'", "created, due, reference, status, member"
    )


def test_a_bad_status_names_the_choices(console: Console) -> None:
    # A usage error (exit 2), as `cases list --status` has always been (tests/cli/test_cli.py).
    for command in (("cases", "list"), ("export",)):
        result = console.cli(*command, "--status", "open")
        assert result.exit_code == 2, result.output
        assert "new, in_progress, completed, closed" in result.stderr
        assert "Traceback" not in result.output


def test_the_filter_itself_rejects_bad_values_with_one_line() -> None:
    with pytest.raises(UserError, match=r"^--status: unknown status 'open'; use one of new, "):
        CaseFilter(status="open")
    with pytest.raises(UserError, match=r"^--created-to: '1/2/2026' is not a date"):
        CaseFilter(created_to="1/2/2026")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="--page: pages start at 1"):
        CaseFilter(page=0)
    with pytest.raises(UserError, match="--page: no list has more than 10,000,000 pages"):
        CaseFilter(page=10**30)  # an offset no database could take
    with pytest.raises(UserError, match="--due-within: give a number of working days from 0 to"):
        CaseFilter(due_within=10**9)  # a date past the calendar's end
    assert CaseFilter(status="In Progress").status == "in_progress"
    assert not CaseFilter().filtering and CaseFilter(overdue=True).filtering


def test_a_url_reads_as_the_options_would() -> None:
    """`from_query` (the web console's URL) makes the CaseFilter the same options make."""
    wanted = from_query(
        {
            "status": "In progress",
            "overdue": "yes",
            "due_within": " 2 ",
            "created_from": "2026-11-01",
            "type": " ",
            "sort": "due",
            "order": "desc",
            "page": "3",
            "colour": "red",  # not a filter: ignored
        },
        limit=25,
    )
    assert wanted == CaseFilter(
        status="in_progress",
        overdue=True,
        due_within=2,
        created_from=date(2026, 11, 1),
        sort="due",
        desc=True,
        page=3,
        limit=25,
    )
    assert from_query({}, limit=None) == CaseFilter(limit=None)
    assert not from_query({"overdue": "no"}, limit=None).overdue


def test_a_url_with_bad_values_names_each_field_at_once() -> None:
    bad = {"created_from": "31/02/2026", "due_within": "-1", "order": "up", "page": "x"}
    with pytest.raises(FilterErrors) as caught:
        from_query(bad, limit=25)
    errors = caught.value.errors
    assert [e.field for e in errors] == ["due_within", "created_from", "order", "page"]
    assert errors[1].problem == "'31/02/2026' is not a date; write it as YYYY-MM-DD"
    assert str(errors[1]) == "--created-from: '31/02/2026' is not a date; write it as YYYY-MM-DD"
    with pytest.raises(FilterErrors) as caught:
        from_query({"created_from": "2026-02-01", "created_to": "2026-01-01"}, limit=25)
    (error,) = caught.value.errors
    assert error.field == "created_to"
    assert str(error) == "--created-from 2026-02-01 is after --created-to 2026-01-01"


def test_dashboard_deadline_counts_read_the_index_alone(tmp_path: Path) -> None:
    """At a million cases, reading the open cases themselves took most of the dashboard's
    time (bench/web.py); the counts come from ix_case_running's entries alone (the plan is
    SQLite's; PostgreSQL's depends on its statistics)."""
    engine = ensure_database(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        query = deadline_counts(CAL, TODAY, 2).compile(
            engine, compile_kwargs={"literal_binds": True}
        )
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").all()
    finally:
        engine.dispose()
    steps = " / ".join(row[-1] for row in plan)
    assert "USING COVERING INDEX ix_case_running" in steps, steps


@pytest.mark.parametrize(
    ("query", "known"),
    [
        ({}, True),
        ({"status": "new"}, True),
        ({"status": "completed"}, True),
        ({"status": "new", "overdue": "yes"}, False),
        ({"service_area": "Highways"}, False),
    ],
)
def test_dashboard_counts_give_the_lists_total_only_when_they_can(
    console: Console, query: dict[str, str], known: bool
) -> None:
    """The web dashboard takes the list's total from its counts (no second count of a
    million rows) for no filter or a status alone; then it must equal the count."""
    url = tomllib.loads(console.config.read_text(encoding="utf-8"))["database"]["url"]
    engine = ensure_database(url)
    try:
        wanted = from_query(query, limit=25)
        with Session(engine) as session:
            board = dashboard(session, CAL, TODAY, newest=0)
            counted = count_cases(session, wanted, CAL, TODAY)
    finally:
        engine.dispose()
    assert board.total(wanted) == (counted if known else None)
