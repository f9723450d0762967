"""`mailbridge dashboard` and `mailbridge export`: the coordinator's overview and spreadsheets."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mailbridge.cli.cases import STATUS_LABEL, deadline_text
from mailbridge.cli.context import ConfigOption, acting, console, friendly, opened
from mailbridge.cli.filters import with_case_filter
from mailbridge.console import export as exporting
from mailbridge.console.filters import CaseFilter
from mailbridge.deadlines.calendar import calendar_from_config
from mailbridge.privacy import access
from mailbridge.store.models import utcnow


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
    app.command("export")(export)


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


@friendly
def dashboard(
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    newest: Annotated[int, typer.Option(min=1, help="How many of the newest cases to show.")] = 15,
) -> None:
    """Counts by status, overdue and nearly due cases, and the newest cases.

    Example: mailbridge dashboard --newest 30
    """
    with opened(config) as (cfg, engine):
        cal = calendar_from_config(cfg.council, cfg.storage.data_dir)
        d = access.dashboard(engine, cal, acting(cfg, engine), newest=newest)  # type: ignore[arg-type]
    counts = Table(title=f"{cfg.council.name}, {d.today:%A %d %B %Y}")
    headings = (
        "New",
        "In progress",
        "Completed",
        "Overdue",
        f"Due within {d.due_soon_days} working days",
    )
    for heading in headings:
        counts.add_column(heading, justify="right")
    counts.add_row(
        f"{d.new:,}",
        f"{d.in_progress:,}",
        f"{d.completed:,}",
        Text(f"{d.overdue:,}", style="bold red" if d.overdue else ""),
        f"{d.due_soon:,}",
    )
    console.print(counts)
    table = Table(title="Newest cases" if d.newest else "No cases yet")
    widest = max((len(r.reference) for r in d.newest), default=len("Id"))
    table.add_column("Id", no_wrap=True, min_width=widest)
    for heading in (
        "Name",
        "Enquiry type",
        "Preferred contact method",
        "Service area",
        "Created",
        "Status",
        "Deadline",
    ):
        table.add_column(heading)
    for r in d.newest:
        table.add_row(
            r.reference,
            r.member,
            r.enquiry_type or "-",
            exporting.contact_label(r.preferred_contact) or "-",
            r.service_area or "-",
            f"{r.created_at.astimezone(cal.zone):%Y-%m-%d %H:%M}",
            STATUS_LABEL.get(r.status, r.status),
            deadline_text(r),
        )
    console.print(table)


@friendly
@with_case_filter
def export(
    chosen: dict[str, Any],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The file to write (by default cases-YYYY-MM-DD.csv or .xlsx here).",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            help="csv or xlsx (by default from the output file's name, else csv).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Every case the filters select, as a CSV or XLSX file for a spreadsheet.

    Text that a spreadsheet would run as a formula (=, +, -, @ at the start) is written
    with a leading ' so it shows as text.

    Example: mailbridge export --format xlsx --output overdue.xlsx --overdue --district Blaby
    """
    wanted = CaseFilter(
        **chosen,
        limit=None,  # every matching case
    )
    if format is None:
        suffix = output.suffix.lower().lstrip(".") if output else ""
        format = ExportFormat(suffix) if suffix in ("csv", "xlsx") else ExportFormat.CSV
    with opened(config) as (cfg, engine):
        cal = calendar_from_config(cfg.council, cfg.storage.data_dir)
        who = acting(cfg, engine)
        path = output or Path(exporting.file_name(cal.local_date(utcnow()), format.value))
        written = access.export(engine, wanted, path, format.value, cal, who)  # type: ignore[arg-type]
    noun = "case" if written == 1 else "cases"
    console.print(f"{written:,} {noun} written to {path} ({format.value.upper()})", highlight=False)
