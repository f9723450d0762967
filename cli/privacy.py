"""`mailbridge retention run` and `mailbridge erase case|person`: the retention policy and
erasure on request. The rules live in mailbridge/privacy/; this only prints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from mailbridge.cli.context import (
    ConfigOption,
    NowOption,
    acting,
    console,
    friendly,
    now_from,
    opened,
)
from mailbridge.privacy import requests, retention
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services

retention_app = typer.Typer(
    help="Erase what the retention policy says is due.", no_args_is_help=True
)
erase_app = typer.Typer(
    help="Erase personal data on request (a case, or a person).", no_args_is_help=True
)

DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Only say what would be erased; change nothing.")
]
Reason = Annotated[
    str,
    typer.Option(
        "--reason",
        help="Why: the request's reference, say (kept on the case and in the audit; "
        "no resident's details).",
    ),
]


@contextmanager
def _services(config: Path) -> Iterator[tuple[Services, Actor]]:
    with opened(config) as (cfg, engine):
        yield Services.build(cfg, engine), acting(cfg, engine)  # type: ignore[arg-type]


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


@retention_app.command("run")
@friendly
def run(
    dry_run: DryRun = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Erase what the retention policy says is due now (the service does this once a day).

    Completed cases' content after completed_case_months in the config's retention
    section, quarantined mail after quarantine_days, mail outside any case after
    caseless_mail_days, copies of sent mail after sent_mail_days, failure tracebacks after
    failure_days. Cases on legal hold are left alone.

    Example: mailbridge retention run --dry-run
    """
    with _services(config) as (services, actor):
        done = retention.run(services, now_from(now), dry_run=dry_run, actor=actor)
    verb = "would erase" if dry_run else "erased"
    _say(f"Retention {'(dry run, nothing changed)' if dry_run else 'run'}: {verb}")
    listed = f" ({', '.join(done.cases)})" if done.cases else ""
    _say(f"  cases' content: {len(done.cases)}{listed}")
    _say(f"  quarantined messages: {done.quarantined}")
    _say(f"  emails outside any case: {done.caseless}")
    _say(f"  copies of sent mail: {done.sent_copies}")
    _say(f"  processing tracebacks: {done.tracebacks}")
    _say(f"  notes of automatic mail sent (for its limits): {done.automatic_mail}")
    if not dry_run:
        _say(f"  stored files removed: {done.blobs_removed}")
    if done.skipped:
        _say(f"  left alone (held or changed meanwhile): {', '.join(done.skipped)}")


def _print(outcome: requests.Outcome) -> None:
    _say("Dry run: nothing was changed. It would erase:" if outcome.dry_run else "Erased:")
    for line in outcome.done:
        _say(f"  {line}")
    _say("What remains afterwards:")
    for line in outcome.remains:
        _say(f"  - {line}")


@erase_app.command("case")
@friendly
def erase_case(
    reference: Annotated[str, typer.Argument(help="The case reference, e.g. MQ-2026-00042.")],
    reason: Reason,
    dry_run: DryRun = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Erase one case's content now, keeping the figures the reports count.

    A case on legal hold is refused. The output lists what was erased and what remains.

    Example: mailbridge erase case MQ-2026-00042 --reason "erasure request ER-17" --dry-run
    """
    with _services(config) as (services, actor):
        done = requests.erase_case(
            services, reference, reason, actor=actor, now=now_from(now), dry_run=dry_run
        )
    _print(done)


@erase_app.command("person")
@friendly
def erase_person(
    email: Annotated[str, typer.Option("--email", help="The person's email address.")],
    reason: Reason,
    successor: Annotated[
        str | None,
        typer.Option(
            "--successor",
            help="A councillor who left office: the member their open cases go to.",
        ),
    ] = None,
    erase_cases: Annotated[
        bool,
        typer.Option(
            "--erase-cases",
            help="A councillor who left office: erase their open cases' content too.",
        ),
    ] = False,
    dry_run: DryRun = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Erase what is held about one person.

    A councillor who left office: completed cases' content erased, open ones handed to
    --successor (or, with --erase-cases, erased), their directory entry deactivated.
    Anyone else in the directory: deactivated. Any other address (a resident): every email
    from or to it erased. The output lists what was erased and what remains.

    Example: mailbridge erase person --email cllr.old@example.gov.uk
    --successor cllr.new@example.gov.uk --reason "left office, May 2027"
    """
    with _services(config) as (services, actor):
        done = requests.erase_person(
            services,
            email,
            reason,
            successor=successor,
            erase_cases=erase_cases,
            actor=actor,
            now=now_from(now),
            dry_run=dry_run,
        )
    _print(done)
