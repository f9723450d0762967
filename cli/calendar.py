"""`mailbridge calendar show|recompute`: the working-day calendar and the deadlines it gives.

The rules live in mailbridge/deadlines/calendar.py (the calendar) and
mailbridge/deadlines/clock.py (recompute, through cases/coordinator.py).
"""

from __future__ import annotations

import csv
from typing import Annotated

import typer
from rich.table import Table

from mailbridge.cases import coordinator
from mailbridge.cli.context import (
    ConfigOption,
    NowOption,
    acting,
    console,
    friendly,
    load,
    now_from,
    opened,
)
from mailbridge.deadlines.calendar import calendar_from_config
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.spreadsheet import neutralise

app = typer.Typer(
    help="The working-day calendar: non-working days, and recounting open deadlines.",
    no_args_is_help=True,
)
FORMATS = ("table", "csv")


@app.command("show")
@friendly
def show(
    year: Annotated[int, typer.Argument(help="The year, e.g. 2026.", min=1970, max=2100)],
    all_days: Annotated[bool, typer.Option("--all", help="List plain weekends too.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table or csv.")] = "table",
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """The year's days that are not working days: bank holidays (by name) and the council's
    closure days; with --all, weekends too. Deadlines skip them all.

    Example: mailbridge calendar show 2026
    """
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    cfg = load(config)
    cal = calendar_from_config(cfg.council, cfg.storage.data_dir)
    days = [(day, why) for day, why in cal.non_working_days(year) if all_days or why != "Weekend"]
    cut_off = cfg.council.office_hours_end
    if fmt == "csv":
        writer = csv.writer(console.file, lineterminator="\n")
        writer.writerow(["date", "weekday", "why"])
        writer.writerows((d.isoformat(), f"{d:%A}", neutralise(why)) for d, why in days)
        return
    table = Table(title=f"Non-working days in {year}: {cfg.council.name}")
    for heading in ("Date", "Day", "Why"):
        table.add_column(heading)
    for day, why in days:
        table.add_row(day.isoformat(), f"{day:%A}", why)
    console.print(table)
    console.print(f"Time zone: {cfg.council.timezone}", highlight=False)
    if cut_off:
        console.print(
            f"Cut-off: mail from {cut_off} on (or on a non-working day) counts as received on "
            "the next working day",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("Cut-off: none (mail counts on the day it arrives)", highlight=False)


@app.command("recompute")
@friendly
def recompute(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the changes without making them.")
    ] = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Recount the deadlines of every open case with the calendar and SLA rules in the config
    now: run it after adding a closure day or changing [sla]. Each change is logged on its
    case; running it again changes nothing.

    Example: mailbridge calendar recompute --dry-run
    """
    with opened(config) as (cfg, engine):
        changed = coordinator.recompute_deadlines(
            Services.build(cfg, engine),  # type: ignore[arg-type]
            actor=acting(cfg, engine).shown,
            now=now_from(now),
            dry_run=dry_run,
        )
    for change in changed:
        console.print(f"{change.reference}: {'; '.join(change.changes)}", highlight=False)
    if dry_run:
        console.print(
            f"{len(changed)} open cases would change (dry run: nothing changed)", highlight=False
        )
    else:
        console.print(f"{len(changed)} open cases changed", highlight=False)
