"""`mailbridge schedule run-due|show`: scheduled mail from cron, or a look at what is due.

The rules live in mailbridge/deadlines/plan.py and the sending in
mailbridge/deadlines/run.py; this only parses the options and prints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from mailbridge.cli.context import ConfigOption, console, err_console, friendly, opened
from mailbridge.console import report_months
from mailbridge.deadlines import run
from mailbridge.deadlines.plan import DigestDue, Due, Escalation, Reminder, Stale
from mailbridge.delivery import outbox, webhooks
from mailbridge.delivery.courier import CourierTotals, claimer_for, deliver_until_idle
from mailbridge.delivery.transports.factory import open_sender
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.store import tally

app = typer.Typer(
    help="Reminders, escalations and digests: send what is due, or list it.",
    no_args_is_help=True,
)

NowOption = Annotated[
    str | None,
    typer.Option(
        "--now",
        hidden=True,
        help="Pretend it is this moment (ISO 8601; council time unless it has an offset).",
    ),
]


def _now(value: str | None, services: Services) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--now {value!r} is not a moment: use e.g. 2026-12-04T09:05") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=services.calendar.zone)


def _describe(item: Due) -> str:
    if isinstance(item, Reminder):
        when = "due today" if item.days_left == 0 else f"{item.days_left} working days left"
        return f"reminder    {item.case.reference}  {when}  to {', '.join(item.to)}"
    if isinstance(item, Escalation):
        told = ", ".join(item.to + item.cc) or "nobody"
        return f"escalation  {item.case.reference}  {item.days_over} working days over  to {told}"
    if isinstance(item, DigestDue):
        return f"digest      {item.kind} for {item.day.isoformat()}"
    return f"skip        {item.case.reference}  {item.key} (missed: {item.superseded_by})"


@app.command("show")
@friendly
def show(
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    all_stages: Annotated[
        bool,
        typer.Option("--all", help="Also list each missed stage that will be recorded unsent."),
    ] = False,
    now: NowOption = None,
) -> None:
    """List what is due now and not yet done, without sending anything.

    Reminders and escalations are due only on working days in sending hours
    ([schedule] send_at to send_until); digests from their configured times. Stages that
    passed while nothing ran are counted (listed with --all): they are recorded, never sent.
    Example: mailbridge schedule show
    """
    with opened(config) as (cfg, engine):
        services = Services.build(cfg, engine)  # type: ignore[arg-type]
        items = run.pending(services, _now(now, services))
    if not items:
        console.print("nothing is due now", highlight=False)
        return
    stale = [i for i in items if isinstance(i, Stale)]
    for item in items:
        if all_stages or not isinstance(item, Stale):
            console.print(_describe(item), highlight=False, soft_wrap=True)
    if stale and not all_stages:
        console.print(
            f"and {len(stale)} earlier stage(s) whose time passed unsent: recorded as skipped, "
            "never mailed (--all lists them)",
            highlight=False,
            soft_wrap=True,
        )


@app.command("run-due")
@friendly
def run_due(
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    no_deliver: Annotated[
        bool, typer.Option("--no-deliver", help="Leave the queued mail in the outbox.")
    ] = False,
    now: NowOption = None,
) -> None:
    """Send the reminders, escalations and digests due now, each once, then deliver them.

    For those who run `mailbridge run --once` from cron instead of the service (the service
    does this by itself every [schedule] tick_seconds). Running it twice sends nothing twice.
    Example: mailbridge schedule run-due
    """
    with opened(config) as (cfg, engine):
        services = Services.build(cfg, engine)  # type: ignore[arg-type]
        moment = _now(now, services)
        report = run.run_due(services, moment)
        tally.fold(engine)  # as the service's tick does (store/tally.py)
        totals = CourierTotals()
        if not no_deliver and report.done:
            claimer = claimer_for(cfg)
            try:
                deliver_until_idle(
                    engine,
                    cfg,
                    lambda: open_sender(cfg),
                    outbox.RateLimiter(cfg.smtp.rate_limit_per_minute),
                    totals,
                    lambda: False,
                    claimer=claimer,
                )
            finally:
                claimer.release()
        if not no_deliver and report.overdue:
            webhooks.deliver_due(engine, cfg)  # type: ignore[arg-type]
        # Last: only ahead-of-time counting (the report counts live without it), so its
        # time or a failure never holds back the mail queued above.
        report_months.refresh(engine, services.calendar, services.calendar.local_date(moment))
    for key, outcome in report.done:
        console.print(f"{outcome:<16}{key}", highlight=False, soft_wrap=True)
    outcomes = [o for _, o in report.done]
    console.print(
        f"{outcomes.count('queued')} queued, {outcomes.count('withheld')} withheld, "
        f"{outcomes.count('nothing_to_send')} with nothing to send, "
        f"{len(report.skipped)} skipped, {len(report.taken)} done elsewhere, "
        f"{len(report.moved)} left as their case changed, "
        f"{report.overdue} overdue webhooks queued; "
        f"{totals.sent} emails sent, {totals.retried} to retry, {totals.failed} failed",
        highlight=False,
        soft_wrap=True,
    )
    if report.failed:
        err_console.print(
            f"error: {len(report.failed)} scheduled item(s) failed and will be tried again "
            f"(see the log): {', '.join(report.failed)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
