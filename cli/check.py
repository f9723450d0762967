"""`mailbridge check`: whether the configuration is ready to run, part by part."""

from __future__ import annotations

import typer
from rich.text import Text

from mailbridge.cli.context import ConfigOption, console, friendly, load
from mailbridge.service import checks
from mailbridge.service.checks import Status

_MARK = {
    Status.OK: ("ok", "green"),
    Status.WARNING: ("warning", "yellow"),
    Status.FAILED: ("FAILED", "bold red"),
}


def register(app: typer.Typer) -> None:
    app.command("check")(check)


@friendly
def check(config: ConfigOption = "config.toml") -> None:  # type: ignore[assignment]
    """See whether mailbridge is ready to run: database, data folder, mailbox, SMTP server.

    Logs in and looks as the service would, changing nothing: no mail is fetched, moved or
    sent, nothing is created. Exits with 1 when a part would stop mailbridge.
    Example: mailbridge check --config config.toml
    """
    cfg = load(config)
    findings = checks.check_all(cfg)
    for f in findings:
        word, style = _MARK[f.status]
        console.print(
            Text.assemble((f"{word:<8}", style), f"{f.part:<9}", (f.where, "bold")),
            highlight=False,
            soft_wrap=True,
        )
        console.print(Text(f"{'':17}{f.found}"), highlight=False, soft_wrap=True)
        for line in f.advice:
            console.print(Text(f"{'':17}→ {line}"), highlight=False, soft_wrap=True)
    failed = sum(f.status == Status.FAILED for f in findings)
    warned = sum(f.status == Status.WARNING for f in findings)
    if failed:
        console.print(
            f"{failed} of {len(findings)} parts would stop mailbridge: fix them and run "
            "mailbridge check again.",
            highlight=False,
        )
        raise typer.Exit(1)
    tail = f" ({warned} with a warning)" if warned else ""
    console.print(f"Ready to run{tail}.", highlight=False)
