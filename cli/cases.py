"""`mailbridge cases list`, `mailbridge case show` and assigning officers to a case."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mailbridge.cases import assignment
from mailbridge.cli.context import (
    ConfigOption,
    NowOption,
    acting,
    console,
    friendly,
    now_from,
    opened,
    stdout,
)
from mailbridge.cli.filters import with_case_filter
from mailbridge.console import export, views
from mailbridge.console.filters import CaseFilter, CaseListRow
from mailbridge.deadlines.calendar import calendar_from_config
from mailbridge.privacy import access
from mailbridge.services import Services

cases_app = typer.Typer(help="Lists of cases.", no_args_is_help=True)
case_app = typer.Typer(help="One case.", no_args_is_help=True)

STATUS_LABEL = export.STATUS_LABELS


class ListFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def deadline_text(row: CaseListRow) -> Text:
    """The deadline as a person reads it: red when the case is overdue, marked when paused."""
    paused = " (paused)" if row.paused else ""
    return Text(f"{row.deadline:%a %d %b %Y}{paused}", style="red" if row.overdue else "")


@cases_app.command("list")
@friendly
@with_case_filter
def list_cases(
    chosen: dict[str, Any],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    limit: Annotated[int, typer.Option(min=1, help="How many cases per page.")] = 50,
    page: Annotated[int, typer.Option(min=1, help="Which page of cases.")] = 1,
    format: Annotated[
        ListFormat, typer.Option("--format", help="table for people; csv or json for tools.")
    ] = ListFormat.TABLE,
) -> None:
    """Cases, newest first; the filters combine (every one given must hold).

    Examples: mailbridge cases list --status new;
    mailbridge cases list --service-area Highways --overdue --sort due;
    mailbridge cases list --member "Jane Smith" --created-from 2026-01-01 --format csv
    """
    wanted = CaseFilter(
        **chosen,
        limit=limit,
        page=page,
    )
    with opened(config) as (cfg, engine):
        cal = calendar_from_config(cfg.council, cfg.storage.data_dir)
        listed = access.list_cases(engine, wanted, cal, acting(cfg, engine))  # type: ignore[arg-type]
    rows, total = listed.rows, listed.total
    if format is ListFormat.CSV:
        export.write_csv(rows, stdout(), cal)
        return
    if format is ListFormat.JSON:
        export.write_json(rows, stdout())
        return
    if rows:
        first = wanted.offset + 1
        pages = -(-total // limit)
        title = (
            f"{total} cases"
            if pages == 1
            else (f"Cases {first}–{first + len(rows) - 1} of {total} (page {page} of {pages})")
        )
    elif total:
        title = f"No cases on page {page}: {total} cases make {-(-total // limit)} pages"
    else:
        title = "No cases match" if wanted.filtering else "No cases yet"
    table = Table(title=title)
    # The reference is what a person types next (`case show REF`): never cut or wrapped.
    widest = max((len(r.reference) for r in rows), default=len("Reference"))
    table.add_column("Reference", no_wrap=True, min_width=widest)
    for heading in ("Member", "Subject", "Service area", "Status", "Created", "Deadline"):
        table.add_column(heading)
    table.add_column("Lead officer")
    for r in rows:
        table.add_row(
            r.reference,
            r.member,
            r.subject[:60],
            r.service_area or "-",
            STATUS_LABEL.get(r.status, r.status),
            f"{r.created_at.astimezone(cal.zone):%Y-%m-%d %H:%M}",
            deadline_text(r),
            r.lead_officer or "-",
        )
    console.print(table)


@case_app.command("show")
@friendly
def show(
    reference: Annotated[str, typer.Argument(help="The case reference, e.g. MQ-2026-00042.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Everything about one case: fields, deadline, attachments and timeline.

    Example: mailbridge case show MQ-2026-00042
    """
    with opened(config) as (cfg, engine):
        cal = calendar_from_config(cfg.council, cfg.storage.data_dir)
        d = access.show_case(engine, reference, cal, acting(cfg, engine))  # type: ignore[arg-type]
    c = d.case
    console.print(Text.assemble((c.reference, "bold"), "  ", c.subject), highlight=False)
    for label, value in views.summary(d, cal):
        console.print(f"  {label:<15} {value}", highlight=False)
    if c.body_text:
        console.print()
        console.print("Enquiry", style="bold")
        console.print(c.body_text.strip()[:4000], highlight=False)
    if d.attachments:
        table = Table(title="Attachments")
        for h in ("File", "Type", "Size", "Note"):
            table.add_column(h)
        for a in d.attachments:
            table.add_row(
                a.filename,
                a.content_type,
                f"{a.size:,} B",
                views.attachment_note(a),
            )
        console.print(table)
    table = Table(title="Timeline")
    for h in ("When (UTC)", "What", "Who", "Detail"):
        table.add_column(h)
    for t in d.timeline:
        table.add_row(f"{t.at:%Y-%m-%d %H:%M}", t.kind, t.who, t.text[:300])
    console.print(table)


AlsoOption = Annotated[
    list[str] | None,
    typer.Option("--also", help="An additional officer's email; repeat for more."),
]
LeadOption = Annotated[str, typer.Option("--lead", help="The lead officer's email.")]


def _assign(
    reference: str,
    lead: str,
    also: list[str] | None,
    config: Path,
    reassign: bool,
    reset_deadline: bool = False,
    now: str | None = None,
) -> None:
    with opened(config) as (cfg, engine):
        done = assignment.assign(
            Services.build(cfg, engine),  # type: ignore[arg-type]
            reference,
            lead,
            also or [],
            actor=acting(cfg, engine).shown,
            reassign=reassign,
            reset_deadline=reset_deadline,
            now=now_from(now),
        )
    console.print(
        f"{done.reference}: lead officer {done.lead}"
        + (f", also {', '.join(done.additional)}" if done.additional else ""),
        highlight=False,
    )
    if done.deadline_reset:
        console.print(f"  {done.deadline_reset}", highlight=False)
    if done.emailed:
        console.print(f"  the enquiry is queued for {', '.join(done.emailed)}", highlight=False)
    if done.member_told:
        console.print("  the member is told who the lead officer is", highlight=False)
    console.print("  emails go out with the next pass of `mailbridge run`", highlight=False)


@case_app.command("assign")
@friendly
def assign(
    reference: Annotated[str, typer.Argument(help="The case reference, e.g. MQ-2026-00042.")],
    lead: LeadOption,
    also: AlsoOption = None,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Give a new case its lead officer (and any additional officers); they get the enquiry.

    Example: mailbridge case assign MQ-2026-00042 --lead j.bloggs@example.gov.uk
    """
    _assign(reference, lead, also, config, reassign=False)


@case_app.command("reassign")
@friendly
def reassign(
    reference: Annotated[str, typer.Argument(help="The case reference, e.g. MQ-2026-00042.")],
    lead: LeadOption,
    also: AlsoOption = None,
    reset_deadline: Annotated[
        bool,
        typer.Option(
            "--reset-deadline",
            help="Count the reply deadline afresh from today (and clear any extension); "
            "without it the case keeps its deadline.",
        ),
    ] = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Replace a case's officers; only officers new to the case are sent the enquiry.

    The case keeps its deadline unless --reset-deadline.

    Example: mailbridge case reassign MQ-2026-00042 --lead a.khan@example.gov.uk
    """
    _assign(reference, lead, also, config, reassign=True, reset_deadline=reset_deadline, now=now)
