"""A coordinator's changes to one case: `mailbridge case set|status|note|reply|reopen|link|
merge|convert|attachments|pause|resume|extend|hold|release`. The rules live in
mailbridge/cases/coordinator.py, mailbridge/deadlines/clock.py and
mailbridge/privacy/holds.py; this only prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from mailbridge.cases import coordinator, lifecycle
from mailbridge.cli.context import (
    ConfigOption,
    NowOption,
    acting,
    console,
    friendly,
    now_from,
    opened,
)
from mailbridge.errors import UserError
from mailbridge.privacy import holds
from mailbridge.privacy.audit import Actor
from mailbridge.services import Services
from mailbridge.store.models import CaseStatus

Reference = Annotated[str, typer.Argument(help="The case reference, e.g. MQ-2026-00042.")]
QUEUED = "  emails go out with the next pass of `mailbridge run`"


@contextmanager
def _services(config: Path) -> Iterator[tuple[Services, Actor]]:
    """What an action needs, and who acts (an unknown `--as` stops here, with nothing
    done); each action opens and commits its own transaction."""
    with opened(config) as (cfg, engine):
        yield Services.build(cfg, engine), acting(cfg, engine)  # type: ignore[arg-type]


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def set_(
    reference: Reference,
    service_area: Annotated[
        str | None, typer.Option(help="Service area (one of the service areas in the config).")
    ] = None,
    enquiry_type: Annotated[str | None, typer.Option(help="Enquiry type.")] = None,
    directorate: Annotated[str | None, typer.Option(help="Directorate.")] = None,
    district: Annotated[str | None, typer.Option(help="District.")] = None,
    contact: Annotated[
        str | None,
        typer.Option("--contact", help="The preferred contact method: email, phone or letter."),
    ] = None,
    sensitive: Annotated[
        bool | None,
        typer.Option("--sensitive/--not-sensitive", help="Mark or unmark the case sensitive."),
    ] = None,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Change a case's classification, preferred contact method or sensitive flag.

    Only the options given change; an empty value ("") clears one. Each change is logged
    with its old and new value.

    Example: mailbridge case set MQ-2026-00042 --service-area Highways --contact phone
    """
    with _services(config) as (services, who):
        done = coordinator.set_fields(
            services,
            reference,
            actor=who.shown,
            service_area=service_area,
            enquiry_type=enquiry_type,
            directorate=directorate,
            district=district,
            preferred_contact=contact,
            sensitive=sensitive,
        )
    if not done.changes:
        _say(f"{done.reference}: nothing changed (the values were already so)")
        return
    _say(f"{done.reference}:")
    for change in done.changes:
        _say(f"  {change}")


def status(
    reference: Reference,
    new_status: Annotated[
        str, typer.Argument(metavar="STATUS", help="new, in_progress or completed.")
    ],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Move a case to new, in_progress or completed.

    Completing sets the completion time. A completed case comes back with `case reopen`;
    a closed (merged or converted) case never changes; a case with a lead officer cannot
    be new again.

    Example: mailbridge case status MQ-2026-00042 completed
    """
    with _services(config) as (services, who):
        done = coordinator.set_status(services, reference, new_status, actor=who.shown)
    _say(f"{done.reference}: {_word(done.old)} → {_word(done.new)}")


def _word(status: str) -> str:
    return lifecycle.STATUS_WORDS.get(CaseStatus(status), status)


def note(
    reference: Reference,
    text: Annotated[str, typer.Argument(help="The note (quote it).")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Add an internal note to a case; nobody is emailed.

    Officers see it in the case history that their notices carry.

    Example: mailbridge case note MQ-2026-00042 "Spoke to the contractor: repair booked"
    """
    with _services(config) as (services, who):
        ref = coordinator.add_note(services, reference, text, actor=who.shown)
    _say(f"{ref}: note added (not sent to anyone)")


def reply(
    reference: Reference,
    text: Annotated[str, typer.Argument(help="What to tell the member (quote it).")],
    attach: Annotated[
        list[Path] | None,
        typer.Option("--attach", help="A file to attach; repeat for more."),
    ] = None,
    checked: Annotated[
        bool,
        typer.Option(
            "--checked",
            help="You checked the attached files: send one that is held back by type too.",
        ),
    ] = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Email the member — and every other member on the case — with the case tag.

    The reply is kept on the case and counts as a response; it does not complete the case.
    A file of a kind that can run code when opened (a program, a script, a web page with a
    form...) is refused unless you add --checked after checking it.

    Example: mailbridge case reply MQ-2026-00042 "The repair is booked." --attach plan.pdf
    """
    uploads = []
    for path in attach or []:
        if not path.is_file():
            raise UserError(f"--attach {path}: no such file")
        uploads.append(coordinator.Upload(path.name, path.read_bytes(), f"--attach {path}"))
    with _services(config) as (services, who):
        done = coordinator.reply(
            services, reference, text, uploads, actor=who.shown, checked=checked
        )
    _say(f"{done.reference}: reply queued for {', '.join(done.recipients)}")
    if done.attached:
        _say(f"  attached: {', '.join(done.attached)}")
    for address, why in done.withheld:
        _say(f"  not sent to {address}: {why}")
    _say(QUEUED)


def reopen(
    reference: Reference,
    reason: Annotated[str | None, typer.Option(help="Why it is reopened (for the log).")] = None,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Open a completed case again: in progress if it has a lead officer, else new.

    Example: mailbridge case reopen MQ-2026-00042 --reason "the repair failed"
    """
    with _services(config) as (services, who):
        done = coordinator.reopen(services, reference, reason, actor=who.shown)
    _say(f"{done.reference}: reopened, now {_word(done.new)}")


def link(
    reference: Reference,
    member: Annotated[str, typer.Option("--member", help="The other member's email.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Put another member on a case; responses and replies go to every member on it.

    For two councillors, or a councillor and an MP, raising the same issue.

    Example: mailbridge case link MQ-2026-00042 --member raj.patel@example.gov.uk
    """
    with _services(config) as (services, who):
        done = coordinator.link(services, reference, member, actor=who.shown)
    _say(f"{done.reference}: {done.member} added")
    _say(f"  responses now go to {', '.join(done.members)}")


def merge(
    reference: Reference,
    into: Annotated[str, typer.Option("--into", help="The case that carries on.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Close a case into another raising the same issue; its member joins the other case.

    The merged case keeps its history; mail on its thread still finds it.

    Example: mailbridge case merge MQ-2026-00043 --into MQ-2026-00042
    """
    with _services(config) as (services, who):
        done = coordinator.merge(services, reference, into, actor=who.shown)
    _say(f"{done.reference}: merged into {done.into} and closed")
    if done.members_added:
        _say(f"  now on {done.into}: {', '.join(done.members_added)}")


def convert(
    reference: Reference,
    to: Annotated[str, typer.Option("--to", help="complaint or service-request.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept on the case).")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Close a case here: it carries on as a complaint or service request.

    The reason is kept on the case, and so is its history.

    Example: mailbridge case convert MQ-2026-00042 --to complaint --reason "resident complaint"
    """
    with _services(config) as (services, who):
        done = coordinator.convert(services, reference, to, reason, actor=who.shown)
    _say(f"{done.reference}: converted to a {done.converted_to.replace('_', ' ')} and closed")


def attachments(
    reference: Reference,
    save: Annotated[Path, typer.Option("--save", help="The folder to write them into.")],
    force: Annotated[bool, typer.Option(help="Overwrite files already in the folder.")] = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Save a case's kept attachments into a folder, under safe, unique file names.

    Nothing is written if a file of the same name is there, unless --force.

    Example: mailbridge case attachments MQ-2026-00042 --save ./MQ-2026-00042
    """
    with _services(config) as (services, who):
        saved = coordinator.save_attachments(services, reference, save, force=force, actor=who)
    _say(f"{len(saved)} saved to {save}:")
    for item in saved:
        _say(f"  {item.path.name}  ({item.size:,} B)")


def pause(
    reference: Reference,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the clock stops (kept on the case).")
    ],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Stop a case's clock: no reminders, never overdue, until `case resume`.

    Resuming moves the deadline on by the working days the case was paused.

    Example: mailbridge case pause MQ-2026-00042 --reason "awaiting information from the councillor"
    """
    with _services(config) as (services, who):
        done = coordinator.pause(services, reference, reason, actor=who.shown, now=now_from(now))
    _say(f"{done.reference}: paused since {done.since:%a %d %b %Y} ({done.reason})")
    _say(f"  `mailbridge case resume {done.reference}` restarts the clock")


def resume(
    reference: Reference,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Restart a paused case's clock; its deadline moves on by the working days it was paused.

    Example: mailbridge case resume MQ-2026-00042
    """
    with _services(config) as (services, who):
        done = coordinator.resume(services, reference, actor=who.shown, now=now_from(now))
    old, new = done.response_due
    _say(
        f"{done.reference}: resumed after {done.paused_days} working days paused "
        f"({done.total_paused_days} in all)"
    )
    _say(f"  reply due {old:%a %d %b %Y} → {new:%a %d %b %Y}")
    if done.extended_due:
        old, new = done.extended_due
        _say(f"  extended to {old:%a %d %b %Y} → {new:%a %d %b %Y}")


def extend(
    reference: Reference,
    days: Annotated[int, typer.Option("--days", help="How many working days to add.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the deadline moves (kept on the case).")
    ],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Move a case's deadline on by working days, as an officer's `#extend N` does.

    The deadline in force (the extended one, if any) moves on; the original stays in the
    reports.

    Example: mailbridge case extend MQ-2026-00042 --days 5 --reason "awaiting the contractor"
    """
    with _services(config) as (services, who):
        done = coordinator.extend(services, reference, days, reason, actor=who.shown)
    _say(
        f"{done.reference}: deadline extended by {done.days} working days, "
        f"{done.old:%a %d %b %Y} → {done.new:%a %d %b %Y}"
    )


def hold(
    reference: Reference,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (a claim, a complaint, a request being answered).")
    ],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
    now: NowOption = None,
) -> None:
    """Put a case on legal hold: neither the retention policy nor a request erases its
    content until `case release`.

    Example: mailbridge case hold MQ-2026-00042 --reason "insurance claim CL-1234"
    """
    with _services(config) as (services, who):
        done = holds.hold(services, reference, reason, actor=who, now=now_from(now))
    _say(f"{done.reference}: on legal hold ({done.reason}); it will not be erased")
    _say(f"  `mailbridge case release {done.reference}` ends the hold")


def release(
    reference: Reference,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """End a case's legal hold: the retention policy applies to it again.

    Example: mailbridge case release MQ-2026-00042
    """
    with _services(config) as (services, who):
        done = holds.release(services, reference, actor=who)
    _say(f"{done.reference}: legal hold released (held since {done.since:%Y-%m-%d}: {done.reason})")


COMMANDS: dict[str, Callable[..., None]] = {
    "set": set_,
    "status": status,
    "note": note,
    "reply": reply,
    "reopen": reopen,
    "link": link,
    "merge": merge,
    "convert": convert,
    "attachments": attachments,
    "pause": pause,
    "resume": resume,
    "extend": extend,
    "hold": hold,
    "release": release,
}


def register(app: typer.Typer) -> None:
    """Add the commands to `mailbridge case`."""
    for name, command in COMMANDS.items():
        app.command(name)(friendly(command))
