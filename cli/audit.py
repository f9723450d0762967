"""`mailbridge audit`: who looked at what (mailbridge/privacy/access.py reads and records)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mailbridge.cli.context import ConfigOption, acting, console, friendly, opened, stdout
from mailbridge.deadlines.calendar import calendar_from_config
from mailbridge.errors import UserError
from mailbridge.privacy import access
from mailbridge.privacy.audit import Channel


class AuditFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


@friendly
def audit(
    case: Annotated[
        str | None, typer.Option("--case", help="Only records about this case reference.")
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Only this person: an address, or os:ACCOUNT."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="From this day (YYYY-MM-DD, the council's local day) or moment "
            "(ISO 8601, UTC if no zone).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="DATE",
            help="To the end of this day (YYYY-MM-DD, the council's local day) or up to "
            "this moment (ISO 8601, UTC if no zone).",
        ),
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(
            "--action",
            help="Only this action (repeat for several): sign-in, sign-in failed, sign-out, "
            "case.show, cases.list, dashboard, export, report, quarantine.show, "
            "quarantine.release, audit.read ...",
        ),
    ] = None,
    channel: Annotated[
        Channel | None, typer.Option("--channel", help="Only accesses through this door.")
    ] = None,
    format: Annotated[
        AuditFormat, typer.Option("--format", help="table for people; csv for a spreadsheet.")
    ] = AuditFormat.TABLE,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the CSV to this file (0600) instead."),
    ] = None,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Who read, exported, reported on or erased personal data, oldest first. Reading the
    audit is itself recorded.

    Example: mailbridge audit --case MQ-2026-00042 --since 2026-12-01

    Example: mailbridge audit --action "sign-in failed" --channel web --until 2026-12-06
    """
    if output is not None and format is AuditFormat.TABLE:
        raise UserError("--output writes CSV: add --format csv (the table prints to the screen)")
    with opened(config) as (cfg, engine):
        calendar = calendar_from_config(cfg.council, cfg.storage.data_dir)
        start = access.since_moment(since, calendar)
        end = access.until_moment(until, calendar)
        rows = access.read_audit(
            engine,  # type: ignore[arg-type]
            acting(cfg, engine),
            case_reference=case,
            who=actor,
            since=start,
            until=end,
            actions=action or (),
            channel=channel,
            fmt=format.value,
            output=output,
        )
    if output is not None:
        noun = "audit record" if len(rows) == 1 else "audit records"
        console.print(f"{len(rows):,} {noun} written to {output}", highlight=False)
    elif format is AuditFormat.CSV:
        access.write_audit_csv(rows, stdout())  # type: ignore[arg-type]
    else:
        noun = "audit record" if len(rows) == 1 else "audit records"
        table = Table(title=f"{len(rows):,} {noun}" if rows else "No audit records match")
        for heading in access.AUDIT_HEADINGS:
            table.add_column(heading, no_wrap=heading in ("When (UTC)", "Case"))
        for row in rows:
            table.add_row(*access.audit_cells(row))
        console.print(table)
