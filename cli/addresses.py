"""`mailbridge addresses`: addresses that bounced, and clearing them after a check."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailbridge.cases import directory
from mailbridge.cli.context import ConfigOption, acting, console, friendly, opened
from mailbridge.privacy import access

app = typer.Typer(help="Addresses that bounced permanently.", no_args_is_help=True)


@app.command("list")
@friendly
def list_flags(config: ConfigOption = "config.toml") -> None:  # type: ignore[assignment]
    """Addresses mailbridge sends nothing to, after a permanent delivery failure.

    Example: mailbridge addresses list
    """
    with opened(config) as (cfg, engine):
        flags = access.flagged_addresses(engine, acting(cfg, engine))  # type: ignore[arg-type]
    table = Table(title=f"{len(flags)} flagged" if flags else "No flagged addresses")
    for heading in ("Address", "Since", "Why"):
        table.add_column(heading)
    for f in flags:
        table.add_row(f.email, f"{f.flagged_at:%Y-%m-%d %H:%M}", f.reason)
    console.print(table)


@app.command("clear")
@friendly
def clear(
    email: Annotated[str, typer.Argument(help="The address, after checking it with the person.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Allow mail to a flagged address again.

    Example: mailbridge addresses clear cllr.jones@example.gov.uk
    """
    with opened(config) as (_cfg, engine):
        flag = directory.clear_flag(engine, email)  # type: ignore[arg-type]
    console.print(f"{flag.email} is cleared; mailbridge will mail it again", highlight=False)
