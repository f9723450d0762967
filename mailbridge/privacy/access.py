"""What the doors read of residents' personal data, each read recorded (invariant 9).

Every function here reads through the console's read models (which stay pure: the digests
and the status reply use them too, and are not a person looking) and then adds one audit
record before it returns. Nothing reaches the screen or a file that is not recorded: if the
record cannot be written the function raises, and a file it wrote is removed. The command
line calls these with its Actor (`cli.context.actor_of`); the web console and the API call
the same functions with theirs (channel web or api, origin the client's address).

The record goes in a short transaction of its own after the read, not around it: on SQLite
a writing transaction holds the database's one write lock, and an export of years of cases
must not stop the daemon for as long as the file takes to write.

A new kind of access (a subject access export, an erasure) follows the same shape:
read or change, then `audit.record(session, actor, "<what>", case_reference=..., detail=...)`
in the transaction that commits the change, or as here after a read.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO

from sqlalchemy import Engine
from sqlmodel import Session

from mailbridge.cases import directory
from mailbridge.console import dashboard as board
from mailbridge.console import export as exporting
from mailbridge.console import filters, report_render, reports, views
from mailbridge.console.filters import CaseFilter, CaseListRow
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.files import private_folder, private_open
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.spreadsheet import neutralise
from mailbridge.store.db import transaction
from mailbridge.store.models import AddressFlag, AuditRecord, utcnow


def _record(
    engine: Engine,
    actor: Actor,
    action: str,
    *,
    detail: str = "",
    case_reference: str | None = None,
) -> None:
    with transaction(engine) as session:
        audit.record(session, actor, action, case_reference=case_reference, detail=detail)


def _record_or_remove(
    path: Path | None,
    engine: Engine,
    actor: Actor,
    action: str,
    *,
    detail: str,
    case_reference: str | None = None,
) -> None:
    """Record the access that wrote `path`; when that fails the file goes, unrecorded."""
    try:
        _record(engine, actor, action, detail=detail, case_reference=case_reference)
    except BaseException:
        if path is not None:
            path.unlink(missing_ok=True)
        raise


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _where(path: Path | None) -> str:
    return f"to {path.resolve()}" if path is not None else "on screen"


# --- cases ----------------------------------------------------------------------------


def show_case(
    engine: Engine,
    reference: str,
    calendar: WorkingCalendar,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> views.CaseDetail:
    """`case show` and the console's case page: a case's whole story (its working days
    left counted from `now`, the console's clock)."""
    with Session(engine) as session:
        today = calendar.local_date(now or utcnow())
        detail = views.case_detail(session, reference, calendar, today)
    _record(engine, actor, "case.show", case_reference=detail.case.reference)
    return detail


@dataclass(frozen=True, slots=True)
class Listed:
    rows: list[CaseListRow]
    total: int  # every page together


def list_cases(
    engine: Engine,
    wanted: CaseFilter,
    calendar: WorkingCalendar,
    actor: Actor,
    *,
    today: date | None = None,
    known_total: int | None = None,
) -> Listed:
    """`cases list` and the web console's dashboard: one page of the cases a filter selects,
    and how many there are (`today` from the caller's clock, else the council's today;
    `known_total` when the caller's counts already say, which saves counting them again)."""
    today = today or calendar.local_date(utcnow())
    with Session(engine) as session:
        rows = filters.list_cases(session, wanted, calendar, today)
        limit = wanted.limit or len(rows)
        if known_total is not None:
            total = known_total
        elif len(rows) < limit and (rows or wanted.page == 1):
            total = len(rows) + wanted.offset
        else:
            total = filters.count_cases(session, wanted, calendar, today)
    page = f"page {wanted.page} ({wanted.limit} a page)" if wanted.limit else "every page"
    detail = f"filter: {wanted.given}; {page}; {_plural(len(rows), 'case')} shown"
    _record(engine, actor, "cases.list", detail=detail)
    return Listed(rows, total)


def dashboard(
    engine: Engine, calendar: WorkingCalendar, actor: Actor, *, newest: int
) -> board.Dashboard:
    """`dashboard`: the counts, and the newest cases with their members' names."""
    with Session(engine) as session:
        shown = board.dashboard(session, calendar, calendar.local_date(utcnow()), newest=newest)
    detail = f"counts and the newest {newest}; {_plural(len(shown.newest), 'case')} shown"
    _record(engine, actor, "dashboard", detail=detail)
    return shown


def flagged_addresses(engine: Engine, actor: Actor) -> list[AddressFlag]:
    """`addresses list`: residents' addresses that bounced, and the mail server's words."""
    with Session(engine) as session:
        flags = directory.flagged_addresses(session)
    _record(engine, actor, "addresses.list", detail=f"bounced addresses: {len(flags):,} shown")
    return flags


def _export_detail(wanted: CaseFilter, written: int, fmt: str, where: str) -> str:
    return f"filter: {wanted.given}; {_plural(written, 'case')}; {fmt} {where}"


def export(
    engine: Engine,
    wanted: CaseFilter,
    path: Path,
    fmt: str,
    calendar: WorkingCalendar,
    actor: Actor,
    *,
    today: date | None = None,
    download: bool = False,
) -> int:
    """`export`: every case the filter selects, written to a file; how many. A `download`
    is a file the web console sends and removes: the record says so instead of its path."""
    today = today or calendar.local_date(utcnow())
    with Session(engine) as session:
        written = exporting.export(
            filters.iter_cases(session, wanted, calendar, today), path, fmt, calendar
        )
    where = "download" if download else _where(path)
    _record_or_remove(
        path, engine, actor, "export", detail=_export_detail(wanted, written, fmt, where)
    )
    return written


CHUNK_BYTES = 64 * 1024


def export_csv_download(
    engine: Engine,
    wanted: CaseFilter,
    calendar: WorkingCalendar,
    actor: Actor,
    *,
    today: date | None = None,
) -> Iterator[bytes]:
    """The web console's CSV export: the bytes `export --format csv` writes to its file, in
    chunks as the cases are read, so memory stays flat however many there are.

    The record is written before the last chunk goes: when it cannot be written the
    download ends unfinished and the browser keeps nothing. A download that stops early
    (the person went away, the database failed) is recorded with the cases read by then.
    """
    today = today or calendar.local_date(utcnow())
    encoder = codecs.getincrementalencoder(exporting.CSV_ENCODING)()
    written = -1  # the header is no case
    chunk: list[bytes] = []
    size = 0
    finished = False
    try:
        with Session(engine) as session:
            rows = filters.iter_cases(session, wanted, calendar, today)
            for line in exporting.csv_lines(rows, calendar):
                data = encoder.encode(line)
                written += 1
                chunk.append(data)
                size += len(data)
                if size >= CHUNK_BYTES:
                    yield b"".join(chunk)
                    chunk.clear()
                    size = 0
        finished = True
        _record(engine, actor, "export", detail=_export_detail(wanted, written, "csv", "download"))
        yield b"".join(chunk)
    finally:
        if not finished:
            stopped = f"download stopped after {_plural(max(written, 0), 'case')} read"
            _record(engine, actor, "export", detail=f"filter: {wanted.given}; csv {stopped}")


# --- the scrutiny report --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reported:
    report: reports.Report
    text: str | None  # csv or html to print, when no file was given


def report(
    engine: Engine,
    calendar: WorkingCalendar,
    period: tuple[date, date],
    fmt: str,
    output: Path | None,
    actor: Actor,
    *,
    compare_previous: bool = False,
    target_percent: float | None = None,
    shown: str | None = None,
) -> Reported:
    """`report`: the scrutiny report over a period, in a format, printed or to a file.
    Format "page" builds it only (the web console lays it out); `shown` says where it went
    when that is not a file or the screen (the audit's words)."""
    first, last = period
    with Session(engine) as session:
        built = reports.build_report(
            session,
            calendar,
            first,
            last,
            compare_previous=compare_previous,
            target_percent=target_percent,
        )
    text = None if fmt in ("table", "page") else report_render.write(built, fmt, output)
    compared = ", with the period before" if compare_previous else ""
    detail = (
        f"scrutiny report {first.isoformat()} to {last.isoformat()}{compared}; "
        f"{fmt} {shown or _where(output)}"
    )
    _record_or_remove(output, engine, actor, "report", detail=detail)
    return Reported(built, text)


# --- the audit itself -------------------------------------------------------------------


def since_moment(
    text: str | None, calendar: WorkingCalendar, option: str = "--since"
) -> datetime | None:
    """`--since` (or the `option` named): a day (YYYY-MM-DD, from the council's local
    midnight) or an ISO moment (UTC when it names no zone), as an aware UTC moment."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return datetime.combine(day, time(), calendar.zone).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"{option} {value!r} is not a date or a moment: "
            "write 2026-12-01 or 2026-12-01T09:30:00Z"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def until_moment(text: str | None, calendar: WorkingCalendar) -> datetime | None:
    """`--until`: a day (to the end of that local day, the day included) or an ISO moment
    (up to it), as the aware UTC moment the audit's records come before."""
    if text is None or not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return since_moment(text, calendar, "--until")
    return datetime.combine(day + timedelta(days=1), time(), calendar.zone).astimezone(UTC)


AUDIT_HEADINGS = ("When (UTC)", "Who", "Channel", "From", "Action", "Case", "Detail")


def audit_cells(row: AuditRecord) -> tuple[str, ...]:
    """One record as the audit's table and CSV show it."""
    return (
        f"{row.at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
        row.actor,
        row.channel,
        row.origin,
        row.action,
        row.case_reference or "",
        row.detail,
    )


def write_audit_csv(rows: Iterable[AuditRecord], stream: IO[str]) -> None:
    writer = csv.writer(stream)
    writer.writerow(AUDIT_HEADINGS)
    for row in rows:
        writer.writerow([neutralise(cell) for cell in audit_cells(row)])


def read_audit(
    engine: Engine,
    actor: Actor,
    *,
    case_reference: str | None = None,
    who: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    actions: Sequence[str] = (),
    channel: Channel | None = None,
    fmt: str = "table",
    output: Path | None = None,
) -> list[AuditRecord]:
    """`mailbridge audit`: the records a filter selects, oldest first, written to `output`
    as CSV when given. Reading the audit is itself recorded (`audit.read`)."""
    reference = case_reference.strip().upper() if case_reference else None
    wanted_actions = [a.strip().lower() for a in actions if a.strip()]
    if since is not None and until is not None and until <= since:
        raise UserError("--until must come after --since")
    with Session(engine) as session:
        rows = audit.records(
            session,
            case_reference=reference,
            actor=who.strip() if who else None,
            since=since,
            until=until,
            actions=wanted_actions,
            channel=channel,
        )
    if output is not None:
        private_folder(output.parent)
        with private_open(output, "w", encoding="utf-8-sig", newline="") as stream:
            write_audit_csv(rows, stream)
    wanted = [
        f"{name}={value}"
        for name, value in (
            ("case", reference),
            ("actor", who),
            ("since", since.isoformat() if since else None),
            ("until", until.isoformat() if until else None),
            ("action", ",".join(wanted_actions)),
            ("channel", channel.value if channel else None),
        )
        if value
    ]
    detail = (
        f"filter: {' '.join(wanted) or 'every record'}; {_plural(len(rows), 'record')}; "
        f"{fmt} {_where(output)}"
    )
    _record_or_remove(output, engine, actor, "audit.read", detail=detail, case_reference=reference)
    return rows
