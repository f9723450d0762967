"""`mailbridge api-tokens`: the bearer tokens other council systems call the JSON API with."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailbridge.cli.context import ConfigOption, acting, console, friendly, opened
from mailbridge.signin import api_tokens

app = typer.Typer(help="Tokens of other council systems for the JSON API.", no_args_is_help=True)


@app.command()
@friendly
def create(
    name: Annotated[str, typer.Argument(help="Who calls with it, e.g. highways-crm.")],
    scope: Annotated[
        str, typer.Option("--scope", help="read: list and read cases; write: add to them too.")
    ] = "read",
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Make a token and print it once: only its hash is kept.

    Example: mailbridge api-tokens create highways-crm --scope write
    """
    with opened(config) as (cfg, engine):
        made = api_tokens.create(
            engine,  # type: ignore[arg-type]
            name,
            scope.strip().lower(),
            created_by=acting(cfg, engine).name,
        )
    console.print(
        f"API token {made.name} ({made.scope}); give it to that system now, it is not shown again:",
        highlight=False,
    )
    console.print(made.token, highlight=False, soft_wrap=True)


@app.command("list")
@friendly
def list_tokens(config: ConfigOption = "config.toml") -> None:  # type: ignore[assignment]
    """Every token: its scope, who made it and when, its last use, and whether it is revoked.

    Example: mailbridge api-tokens list
    """
    with opened(config) as (_cfg, engine):
        tokens = api_tokens.listed(engine)  # type: ignore[arg-type]
    table = Table(title=f"{len(tokens)} API tokens" if tokens else "No API tokens")
    for heading in ("Name", "Scope", "Created (UTC)", "By", "Last used (UTC)", "Revoked (UTC)"):
        table.add_column(heading)
    for t in tokens:
        table.add_row(
            t.name,
            t.scope,
            f"{t.created_at:%Y-%m-%d %H:%M}",
            t.created_by,
            f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    console.print(table)


@app.command()
@friendly
def revoke(
    name: Annotated[str, typer.Argument(help="The token's name (see api-tokens list).")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Refuse the token from its next call on; it stays listed as the record.

    Example: mailbridge api-tokens revoke highways-crm
    """
    with opened(config) as (_cfg, engine):
        token = api_tokens.revoke(engine, name)  # type: ignore[arg-type]
    console.print(f"API token {token.name} is revoked", highlight=False)
