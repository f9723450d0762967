"""Every CSV and XLSX the command line writes, read back cell by cell: no cell begins with a
formula sign unquoted, though the directory and a case carry formulas in every text field
(a member named `=HYPERLINK(...)`, an officer with a full-width sign, a case subject...).

The check here is written out, not `spreadsheet.is_formula`, so a rule that forgot a sign
would fail it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook

from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Case, CaseOfficer, Person, PersonAddress
from tests.helpers.cli import CONFIG, invoke, ok
from tests.helpers.clock import FIXED_NOW
from tests.servers.database import SqliteTemplates

pytestmark = pytest.mark.usefixtures("fixed_clock")

EVIL = '=HYPERLINK("http://evil.example","x")'
MEMBER = {
    "name": EVIL,
    "division": "+44 116 305 0000",
    "district": "-Blaby",
    "party": "@SUM(1+1)*cmd|' /C calc'!A0",
}
OFFICER = {"name": '\uff1dHYPERLINK("http://evil.example")', "service_area": "\t=1+1"}
DELEGATE = {"name": "@Tom Baker"}
CASE = {
    "subject": EVIL,
    "enquiry_type": "@SUM(A1)",
    "service_area": "=cmd|' /C calc'!A0",
    "directorate": "+Directorate",
    "district": "-Blaby",
}
# What no cell may begin with (after spaces): the ASCII signs, their full-width forms, the
# controls.
SIGNS = tuple("=+-@\uff1d\uff0b\uff0d\uff20\t\r\n\x00")
YEAR = FIXED_NOW.year


def seed(url: str) -> None:
    engine = ensure_database(url)
    try:
        with transaction(engine) as session:

            def person(kind: str, email: str, **fields: object) -> int:
                p = Person(kind=kind, email=email, **fields)  # type: ignore[arg-type]
                session.add(p)
                session.flush()
                session.add(PersonAddress(email=email, person_id=p.id))  # type: ignore[arg-type]
                return p.id  # type: ignore[return-value]

            member = person("member", "evil.member@example.gov.uk", **MEMBER)
            person("delegate", "evil.delegate@example.gov.uk", delegate_for_id=member, **DELEGATE)
            officer = person("officer", "evil.officer@example.gov.uk", **OFFICER)
            received = FIXED_NOW - timedelta(days=3)
            case = Case(
                reference=f"MQ-{YEAR}-00001",
                prefix="MQ",
                year=YEAR,
                seq=1,
                body_text="Please look.",
                status="new",
                member_id=member,
                submitter_id=member,
                lead_officer_id=officer,
                received_at=received,
                acknowledge_due=received.date() + timedelta(days=2),
                response_due=received.date() + timedelta(days=10),
                created_at=received,
                updated_at=received,
                **CASE,  # type: ignore[arg-type]
            )
            session.add(case)
            session.flush()
            session.add(CaseOfficer(case_id=case.id, person_id=officer, role="lead"))  # type: ignore[arg-type]
    finally:
        engine.dispose()


@dataclass
class Folder:
    root: Path

    def cli(self, *args: str) -> str:
        return ok(invoke(*args, "--config", str(self.root / "config.toml")))


@pytest.fixture(scope="module")
def folder(
    sqlite_templates: SqliteTemplates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Folder]:
    root = tmp_path_factory.mktemp("spreadsheets")
    url = sqlite_templates.copy_to("migrated", root / "mailbridge.db")
    seed(url)
    (root / "config.toml").write_text(
        CONFIG.replace('url = "sqlite:///./mailbridge.db"', f'url = "{url}"'), encoding="utf-8"
    )
    yield Folder(root)


def csv_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]


def xlsx_cells(path: Path) -> list[object]:
    """Every cell of every sheet; a formula cell is returned as the formula it would run."""
    book = load_workbook(path)
    cells: list[object] = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{sheet.title}!{cell.coordinate}: {cell.value}"
                cells.append(cell.value)
    return cells


def day(offset: int) -> str:
    return (FIXED_NOW.date() + timedelta(days=offset)).isoformat()


def written(folder: Folder, command: str, tmp_path: Path) -> list[object]:
    """The cells one command writes, from the screen or from its file."""
    period = ("--from", day(-30), "--to", day(0))
    if command == "export csv":
        target = tmp_path / "cases.csv"
        folder.cli("export", "--format", "csv", "-o", str(target))
        return csv_cells(target.read_text(encoding="utf-8-sig"))
    if command == "export xlsx":
        target = tmp_path / "cases.xlsx"
        folder.cli("export", "--format", "xlsx", "-o", str(target))
        return xlsx_cells(target)
    if command == "report xlsx":
        target = tmp_path / "report.xlsx"
        folder.cli("report", *period, "--format", "xlsx", "-o", str(target))
        return xlsx_cells(target)
    if command == "report csv":
        return csv_cells(folder.cli("report", *period, "--format", "csv"))
    if command == "calendar show csv":
        return csv_cells(folder.cli("calendar", "show", str(YEAR), "--format", "csv"))
    return csv_cells(folder.cli(*command.split()[:2], "--format", "csv"))


# Each command, with the formula texts it carries (quoted): a check that finds none would
# prove nothing. The calendar carries no directory text; it is walked all the same.
COMMANDS = {
    "members list": [*MEMBER.values()],
    "officers list": [*OFFICER.values()],
    "delegates list": [*DELEGATE.values()],
    "cases list": [EVIL, OFFICER["name"], *CASE.values()],
    "export csv": [EVIL, OFFICER["name"], *CASE.values()],
    "export xlsx": [EVIL, OFFICER["name"], *CASE.values()],
    "report csv": [EVIL, CASE["service_area"], CASE["directorate"]],
    "report xlsx": [EVIL, CASE["service_area"], CASE["directorate"]],
    "calendar show csv": [],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_no_cell_runs_as_a_formula(folder: Folder, command: str, tmp_path: Path) -> None:
    cells = written(folder, command, tmp_path)
    assert cells
    texts = [c for c in cells if isinstance(c, str)]
    unquoted = [t for t in texts if t.lstrip(" \u00a0\u3000").startswith(SIGNS)]
    assert unquoted == []
    for text in COMMANDS[command]:
        assert "'" + text in texts, (text, texts)


def test_members_list_and_import_round_trip(folder: Folder, tmp_path: Path) -> None:
    """The list is the import format: the apostrophe comes off again, so nothing changes."""
    for group in ("members", "officers", "delegates"):
        target = tmp_path / f"{group}.csv"
        target.write_text(folder.cli(group, "list", "--format", "csv"), encoding="utf-8")
        out = folder.cli(group, "import", str(target))
        assert "0 created, 0 updated, 1 unchanged" in out, out
