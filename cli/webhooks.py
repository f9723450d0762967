"""`mailbridge webhooks list|retry`: what the webhooks' outbox holds undelivered, and queueing
the failed ones again. The sending lives in mailbridge/delivery/webhooks.py."""

from __future__ import annotations

from typing import Annotated

import typer

from mailbridge.cli.context import ConfigOption, console, friendly, opened
from mailbridge.delivery import webhooks
from mailbridge.errors import UserError
from mailbridge.store.models import as_utc

app = typer.Typer(
    help="Webhooks to other council systems: list those not delivered, retry the failed.",
    no_args_is_help=True,
)


@app.command("list")
@friendly
def list_undelivered(config: ConfigOption = "config.toml") -> None:  # type: ignore[assignment]
    """The webhooks waiting to be sent or given up on, oldest first, with the last error.

    Example: mailbridge webhooks list
    """
    with opened(config) as (_cfg, engine):
        rows = webhooks.undelivered(engine)  # type: ignore[arg-type]
    if not rows:
        console.print("every webhook has been delivered", highlight=False)
        return
    for row in rows:
        when = ""
        if row.status == "pending":
            when = f"next {as_utc(row.next_attempt_at):%d %b %H:%M} UTC"
        console.print(
            f"{row.id:>6}  {row.status:<8} {row.receiver:<16} {row.event:<10} "
            f"{row.reference or '-':<14} {row.attempts} tries  {when}  {row.last_error or ''}",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
@friendly
def retry(
    receiver: Annotated[
        str | None, typer.Option("--receiver", help="Only this [[webhooks]] name's.")
    ] = None,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Queue the failed webhooks again: the running service sends them within seconds.

    Example: mailbridge webhooks retry --receiver highways
    """
    with opened(config) as (cfg, engine):
        names = [w.name for w in cfg.webhooks]
        if receiver is not None and receiver not in names:
            known = ", ".join(names) or "(none configured)"
            raise UserError(f"no [[webhooks]] entry is named {receiver}: use one of {known}")
        count = webhooks.retry_failed(engine, receiver)  # type: ignore[arg-type]
    console.print(f"{count} failed webhooks queued again", highlight=False)
