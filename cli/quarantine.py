"""`mailbridge quarantine`: messages kept aside, with their reasons."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailbridge.cli.context import ConfigOption, acting, console, friendly, opened
from mailbridge.pipeline import quarantine as q
from mailbridge.pipeline.outcomes import (
    CaseOpened,
    CaseUpdated,
    Failed,
    Handled,
    Outcome,
    Quarantined,
)
from mailbridge.pipeline.processor import accept_quarantined, retry_quarantined
from mailbridge.services import Services

app = typer.Typer(help="Messages that opened no case, and why.", no_args_is_help=True)


@app.command("list")
@friendly
def list_items(
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    all_items: Annotated[bool, typer.Option("--all", help="Include retried ones.")] = False,
) -> None:
    """Quarantined messages waiting for a coordinator, newest first.

    Example: mailbridge quarantine list
    """
    with opened(config) as (cfg, engine):
        services = Services.build(cfg, engine)  # type: ignore[arg-type]
        which = q.Listing.ALL if all_items else q.Listing.WAITING
        items = q.shown_items(services, acting(cfg, engine), which=which).items
    table = Table(title=f"{len(items)} quarantined" if items else "Quarantine is empty")
    for h in ("Id", "Received", "From", "Subject", "Reason", "Status"):
        table.add_column(h)
    for i in items:
        table.add_row(
            str(i.id),
            f"{i.created_at:%Y-%m-%d %H:%M}",
            i.sender,
            i.subject[:50],
            i.reason,
            i.status,
        )
    console.print(table)


@app.command("show")
@friendly
def show(
    item_id: Annotated[int, typer.Argument(help="Id from `mailbridge quarantine list`.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """One quarantined message: its reason, its header fields, text and attachments and,
    for failures, the traceback.

    Example: mailbridge quarantine show 3
    """
    with opened(config) as (cfg, engine):
        shown = q.shown_item(Services.build(cfg, engine), item_id, acting(cfg, engine))  # type: ignore[arg-type]
    i, letter = shown.item, shown.letter
    for label, value in (
        ("Id", i.id),
        ("From", i.sender),
        ("Subject", i.subject),
        ("Reason", i.reason),
        ("Status", i.status),
        ("Case", shown.case_reference),
        ("Stored as", i.raw_sha256),
    ):
        if value is not None:
            console.print(f"  {label:<10} {value}", highlight=False)
    if letter.unreadable:
        console.print(f"\nOnly its record is shown: {letter.unreadable}.", highlight=False)
    if letter.header_only:
        console.print(f"\nOnly its header was read: {letter.header_only}.", highlight=False)
    if letter.headers:
        console.print("\nHeader", highlight=False)
        for name, text in letter.headers:
            console.print(f"  {name}: {text}", highlight=False)
    for name, kind, size in letter.attachments:
        console.print(f"  Attachment: {name} ({kind}, {size:,} bytes)", highlight=False)
    if letter.text:
        console.print(f"\n{letter.text}", highlight=False)
    if i.traceback:
        console.print(i.traceback, highlight=False)


@app.command("retry")
@friendly
def retry(
    item_id: Annotated[int, typer.Argument(help="Id from `mailbridge quarantine list`.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Process a quarantined message again (for example after adding its sender).

    Example: mailbridge quarantine retry 3
    """
    with opened(config) as (cfg, engine):
        services = Services.build(cfg, engine)  # type: ignore[arg-type]
        outcome = retry_quarantined(services, item_id, actor=acting(cfg, engine))
    _report(item_id, outcome)


@app.command("accept")
@friendly
def accept(
    item_id: Annotated[int, typer.Argument(help="Id from `mailbridge quarantine list`.")],
    as_: Annotated[
        str, typer.Option("--as", help="What the message is on its case: contribution.")
    ] = "contribution",
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Accept a quarantined message after checking who wrote it.

    One held as sender_unauthenticated or as a flood runs through the pipeline again as if
    its sender had been proven and under the limit (a flood item opens its case; `--as`
    does not apply to them): check with its sender first. Any other joins the case it
    points at.

    Example: mailbridge quarantine accept 7 --as contribution
    """
    with opened(config) as (cfg, engine):
        services = Services.build(cfg, engine)  # type: ignore[arg-type]
        outcome = accept_quarantined(services, item_id, as_, actor=acting(cfg, engine).shown)
    _report(item_id, outcome, as_)
    if isinstance(outcome, Quarantined):
        raise typer.Exit(1)


@app.command("release")
@friendly
def release(
    item_id: Annotated[int, typer.Argument(help="Id from `mailbridge quarantine list`.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Let a quarantined message go: nothing is done with it (a circular, a stranger's
    mistake). It leaves the list and the digest, and is erased with the rest of the
    quarantine after `quarantine_days`.

    Example: mailbridge quarantine release 3
    """
    with opened(config) as (cfg, engine):
        q.release(Services.build(cfg, engine), item_id, actor=acting(cfg, engine))  # type: ignore[arg-type]
    console.print(f"message {item_id} released; nothing was done with it")


def _report(item_id: int, outcome: Outcome, as_: str = "") -> None:
    """What a retry or an acceptance (`as_`) did to the message, in one line."""
    if isinstance(outcome, CaseOpened):
        console.print(
            f"message {item_id} opened case {outcome.reference}; its acknowledgement is "
            "queued and goes out with the next pass of `mailbridge run`",
            highlight=False,
        )
    elif isinstance(outcome, CaseUpdated) and outcome == CaseUpdated(outcome.reference, as_):
        console.print(
            f"message {item_id} is now a {as_} on {outcome.reference}; the lead "
            "officer and coordinators get it with the next pass of `mailbridge run`",
            highlight=False,
        )
    elif isinstance(outcome, CaseUpdated):
        console.print(
            f"message {item_id} was applied to {outcome.reference}; any mail it causes goes "
            "out with the next pass of `mailbridge run`",
            highlight=False,
        )
    elif isinstance(outcome, Handled):
        console.print(f"message {item_id} was handled; it concerned no case")
    elif isinstance(outcome, Quarantined):
        # Recorded under a new id; the old one is closed as "retried".
        console.print(
            f"message {item_id} is quarantined again as message {outcome.quarantine_id}: "
            f"{outcome.reason}",
            highlight=False,
        )
    elif isinstance(outcome, Failed):
        console.print(f"message {item_id} failed again: {outcome.error}")
        raise typer.Exit(1)
    else:
        console.print(f"message {item_id} was already handled")
