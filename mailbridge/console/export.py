"""Cases as CSV, JSON and XLSX, for `cases list --format` and `mailbridge export`.

Subjects and names come from email: a subject such as `=HYPERLINK("http://evil", "Click")`
must never run as a formula in the spreadsheet a coordinator opens. Every cell goes through
`spreadsheet.neutralise`, in CSV and in XLSX alike. JSON is data, not a spreadsheet: it
carries the values as stored.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from mailbridge.console.filters import CaseListRow
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.files import private_folder, private_open
from mailbridge.spreadsheet import neutralise

STATUS_LABELS = {
    "new": "New",
    "in_progress": "In progress",
    "completed": "Completed",
    "closed": "Closed",
}
CONTACT_LABELS = {"email": "Email", "phone": "Phone", "letter": "Letter"}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def contact_label(contact: str | None) -> str:
    return CONTACT_LABELS.get(contact, contact) if contact else ""


@dataclass(frozen=True, slots=True)
class Column:
    heading: str
    key: str  # the JSON key
    value: Callable[[CaseListRow, WorkingCalendar], Any]  # a person's value (CSV, XLSX)
    width: int  # XLSX column width, in characters


def _local(moment: datetime, calendar: WorkingCalendar) -> datetime:
    """A stored UTC moment as the council's wall-clock time, without a zone (spreadsheets)."""
    return moment.astimezone(calendar.zone).replace(tzinfo=None)


COLUMNS = (
    Column("Reference", "reference", lambda r, _: r.reference, 16),
    Column("Member", "member", lambda r, _: r.member, 24),
    Column("Subject", "subject", lambda r, _: r.subject, 50),
    Column("Enquiry type", "enquiry_type", lambda r, _: r.enquiry_type or "", 18),
    Column(
        "Preferred contact",
        "preferred_contact",
        lambda r, _: contact_label(r.preferred_contact),
        12,
    ),
    Column("Service area", "service_area", lambda r, _: r.service_area or "", 22),
    Column("Directorate", "directorate", lambda r, _: r.directorate or "", 26),
    Column("District", "district", lambda r, _: r.district or "", 20),
    Column("Status", "status", lambda r, _: status_label(r.status), 12),
    Column("Created", "created_at", lambda r, cal: _local(r.created_at, cal), 17),
    Column("Deadline", "deadline", lambda r, _: r.deadline, 12),
    Column("Overdue", "overdue", lambda r, _: "yes" if r.overdue else "no", 8),
    Column("Lead officer", "lead_officer", lambda r, _: r.lead_officer or "", 24),
)
HEADINGS = [c.heading for c in COLUMNS]


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def csv_lines(rows: Iterable[CaseListRow], calendar: WorkingCalendar) -> Iterator[str]:
    """The header, then one CSV line per case as it is read: the one layout of a file, a
    pipe and the web console's streamed download."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def taken() -> str:
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    writer.writerow(HEADINGS)
    yield taken()
    for row in rows:
        writer.writerow([neutralise(_text(c.value(row, calendar))) for c in COLUMNS])
        yield taken()


def write_csv(rows: Iterable[CaseListRow], stream: IO[str], calendar: WorkingCalendar) -> int:
    """Write a header and one line per case; returns the number of cases."""
    count = -1  # the header is no case
    for line in csv_lines(rows, calendar):
        stream.write(line)
        count += 1
    return count


def json_record(row: CaseListRow) -> dict[str, Any]:
    """A case as JSON: stored values, ISO dates, the creation time in UTC."""
    return {
        "reference": row.reference,
        "member": row.member,
        "subject": row.subject,
        "enquiry_type": row.enquiry_type,
        "preferred_contact": row.preferred_contact,
        "service_area": row.service_area,
        "directorate": row.directorate,
        "district": row.district,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        "deadline": row.deadline.isoformat(),
        "overdue": row.overdue,
        "lead_officer": row.lead_officer,
    }


def write_json(rows: Iterable[CaseListRow], stream: IO[str]) -> int:
    records = [json_record(r) for r in rows]
    json.dump(records, stream, ensure_ascii=False, indent=2)
    stream.write("\n")
    return len(records)


def write_xlsx(rows: Iterable[CaseListRow], path: Path, calendar: WorkingCalendar) -> int:
    """One sheet "Cases": a bold header, sized columns, real dates; returns the count."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)  # streams rows: an export of every case stays small
    sheet = book.create_sheet("Cases")
    for i, column in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = column.width
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for heading in HEADINGS:
        cell = WriteOnlyCell(sheet, value=heading)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    count = 0
    for row in rows:
        cells: list[Any] = []
        for column in COLUMNS:
            value = column.value(row, calendar)
            if isinstance(value, datetime):
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "yyyy-mm-dd hh:mm"
                cells.append(cell)
            elif isinstance(value, date):
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "yyyy-mm-dd"
                cells.append(cell)
            else:
                # Control characters other than tab, LF and CR cannot be stored in XLSX.
                cells.append(neutralise(ILLEGAL_CHARACTERS_RE.sub("", value)))
        sheet.append(cells)
        count += 1
    private_folder(path.parent)
    with private_open(path, "wb") as stream:
        book.save(stream)
    return count


FORMATS = ("csv", "xlsx")
# With a byte-order mark, Excel reads a CSV file as UTF-8 (names, en dashes, accents).
CSV_ENCODING = "utf-8-sig"
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def file_name(today: date, fmt: str) -> str:
    """What an export is called unless a person names it: cases-2026-12-06.csv."""
    return f"cases-{today.isoformat()}.{fmt}"


def export(rows: Iterable[CaseListRow], path: Path, fmt: str, calendar: WorkingCalendar) -> int:
    """Write the cases to a file in the format; returns how many were written."""
    if fmt == "xlsx":
        return write_xlsx(rows, path, calendar)
    private_folder(path.parent)
    with private_open(path, "w", encoding=CSV_ENCODING, newline="") as stream:
        return write_csv(rows, stream, calendar)
