"""`mailbridge report`: the scrutiny panel's report over a period."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from mailbridge.cli.context import ConfigOption, acting, console, friendly, opened, stdout
from mailbridge.console import report_render
from mailbridge.deadlines.calendar import calendar_from_config
from mailbridge.errors import UserError
from mailbridge.privacy import access


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"{option} {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-04-01"
        ) from None


@friendly
def report(
    start: Annotated[
        str, typer.Option("--from", help="First day of the period (YYYY-MM-DD), included.")
    ],
    end: Annotated[
        str, typer.Option("--to", help="Last day of the period (YYYY-MM-DD), included.")
    ],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    compare_previous: Annotated[
        bool,
        typer.Option(
            "--compare-previous", help="Beside each figure, the same-length period just before."
        ),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, xlsx or html.")] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write (needed for xlsx; csv and html print to the screen without it).",
        ),
    ] = None,
) -> None:
    """Scrutiny report on cases received in a period, per directorate and service area and
    per member: received, acknowledged and responded within target (the original deadline,
    and with extensions), median and 90th-percentile working days to first response and to
    completion, overdue now, holding replies, extensions, reopened cases and chasers.
    The html leads with the key figures, what they say and two charts, for a scrutiny panel,
    and prints on A4.

    Example: mailbridge report --from 2026-04-01 --to 2027-03-31 --format html -o panel.html
    """
    first = _day(start, "--from")
    last = _day(end, "--to")
    if last < first:
        raise UserError(f"--to {last.isoformat()} is before --from {first.isoformat()}")
    if fmt not in report_render.FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(report_render.FORMATS)}")
    if fmt == "xlsx" and output is None:
        raise UserError("--format xlsx needs --output FILE.xlsx")
    if fmt == "table" and output is not None:
        raise UserError("--output is for csv, xlsx and html; the table prints to the screen")
    with opened(config) as (cfg, engine):
        calendar = calendar_from_config(cfg.council, cfg.storage.data_dir)
        try:
            done = access.report(
                engine,  # type: ignore[arg-type]
                calendar,
                (first, last),
                fmt,
                output,
                acting(cfg, engine),
                compare_previous=compare_previous,
                target_percent=cfg.report.on_time_target_percent,
            )
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    text = done.text
    if fmt == "table":
        console.print(report_render.render_table(done.report))
    elif text is not None:
        stdout().write(text)
    else:
        console.print(f"Report written to {output}")
