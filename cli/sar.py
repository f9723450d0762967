"""`mailbridge sar export`: a subject access request answered in one zip. The gathering, the
zip and its audit live in mailbridge/privacy/subject_access.py; this only prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailbridge.cli.context import ConfigOption, acting, console, friendly, opened
from mailbridge.privacy import subject_access
from mailbridge.services import Services


def say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


app = typer.Typer(help="Subject access requests: everything held about one person.")


@app.command("export")
@friendly
def export(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The zip file to write, e.g. sar-2026-0042.zip.")
    ],
    email: Annotated[
        str | None,
        typer.Option(
            "--email",
            help="The person's email address (every address of theirs in "
            "the directory is looked for).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="A name to look for in the text of cases and emails (a text "
            "search: review what it finds).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the zip file if it is there already.")
    ] = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Every case, email, attachment, event and audit record that concerns one person, as a
    zip with an index (index.html to read, index.csv for a spreadsheet). Review it, and take
    out other people's data, before sending it. The export is recorded in the audit.

    Example: mailbridge sar export --email resident@example.org --out sar-2026-0042.zip
    """
    search = subject_access.Search.of(email, name)
    with opened(config) as (cfg, engine):
        done = subject_access.export(
            Services.build(cfg, engine),  # type: ignore[arg-type]
            search,
            out,
            actor=acting(cfg, engine),
            force=force,
        )
    c = done.counts
    say(f"Subject access export for {search.described} written to {done.path}")
    if done.people:
        say(f"  in the directory: {'; '.join(done.people)}")
    elif not search.by_name:
        say("  nobody in the directory has this address: emails from and to it were looked for")
    if c.nothing:
        say("  nothing found: the zip says so")
    say(f"  {c.text()}")
    if search.by_name:
        say("  a name search is a text search: it can miss spellings and include namesakes")
    say("Review it, and take out other people's personal data, before you send it.")
