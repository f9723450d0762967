"""`mailbridge run`: the service loop, or one pass with --once."""

from __future__ import annotations

from typing import Annotated

import typer

from mailbridge import logs
from mailbridge.cases.directory import adopt_coordinators
from mailbridge.cli.context import ConfigOption, console, friendly, load, opened
from mailbridge.config import check_secrets
from mailbridge.service import daemon
from mailbridge.services import Services


def register(app: typer.Typer) -> None:
    app.command("run")(run)


@friendly
def run(
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    once: Annotated[
        bool, typer.Option("--once", help="Process what is waiting, deliver, and exit.")
    ] = False,
    no_deliver: Annotated[
        bool, typer.Option("--no-deliver", help="Leave queued mail in the outbox.")
    ] = False,
) -> None:
    """Watch the shared mailbox: turn each email into a case and send acknowledgements.

    Runs until SIGTERM or Ctrl-C, finishing the current message first. While another
    `mailbridge run` processes the same mailbox, this one waits as its standby and takes
    over when that one stops or dies (--once says so and exits).
    Example: mailbridge run --once --config config.toml
    """
    check_secrets(load(config))  # a missing secret stops us before the database is touched
    with opened(config) as (cfg, engine):
        logs.setup(cfg.logging.level, cfg.logging.format)
        services = Services.build(cfg, engine)  # type: ignore[arg-type]
        adopt_coordinators(services.engine, cfg.coordinators)
        service = daemon.build(services)
        service.deliver_enabled = not no_deliver
        if not once:
            service.run_forever()
            return
        try:
            report = service.run_once()
        except daemon.MailboxHeld as held:  # the service is at work: nothing to do here
            console.print(str(held), highlight=False)
            return
        console.print(
            f"{report.cases} new cases, {report.updates} updates, "
            f"{report.quarantined} quarantined, "
            f"{report.duplicates} already handled, {report.failed} failed (will retry); "
            f"{report.scheduled} reminders, escalations and digests queued; "
            f"{report.sent} emails sent, {report.retried} to retry, "
            f"{report.delivery_failed} failed"
        )
