"""The `mailbridge` command: sub-commands are small modules beside this one."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Annotated, NoReturn

import typer

from mailbridge.cli import (
    addresses,
    api_tokens,
    audit,
    calendar,
    cases,
    casework,
    check,
    console,
    db,
    keys,
    privacy,
    quarantine,
    report,
    run,
    sar,
    schedule,
    web,
    webhooks,
)
from mailbridge.cli.context import claim
from mailbridge.cli.directory import delegates_app, members_app, officers_app
from mailbridge.files import PRIVATE_UMASK

app = typer.Typer(
    name="mailbridge",
    help="Email-first case management for council member enquiries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _everyone(
    acting_as: Annotated[
        str | None,
        typer.Option(
            "--as",
            envvar="MAILBRIDGE_AS",
            help="Your address as a coordinator, when the server account is shared: what you "
            "do and read is recorded as yours. Checked against the directory's coordinators.",
        ),
    ] = None,
) -> None:
    claim(acting_as)


app.add_typer(db.app, name="db")
app.add_typer(members_app, name="members")
app.add_typer(officers_app, name="officers")
app.add_typer(delegates_app, name="delegates")
app.add_typer(cases.cases_app, name="cases")
app.add_typer(cases.case_app, name="case")
casework.register(cases.case_app)
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(addresses.app, name="addresses")
app.add_typer(calendar.app, name="calendar")
app.add_typer(schedule.app, name="schedule")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(keys.app, name="keys")
app.add_typer(privacy.retention_app, name="retention")
app.add_typer(privacy.erase_app, name="erase")
app.add_typer(sar.app, name="sar")
app.add_typer(api_tokens.app, name="api-tokens")
run.register(app)
check.register(app)
console.register(app)  # dashboard, export
report.register(app)
audit.register(app)
web.register(app)


def main() -> None:
    # Every file any command or the service makes holds, or sits beside, residents'
    # personal data: readable by mailbridge's user only (SQLite's -wal and -shm included).
    os.umask(PRIVATE_UMASK)
    try:
        app()
    except SystemExit as done:
        leave(done.code)
    leave(0)


def leave(code: int | str | None) -> NoReturn:
    """End the process without the interpreter's teardown.

    Every command has closed what it opened by now (transactions committed, workers joined,
    files written); tearing down SQLAlchemy's and pydantic's object graphs module by module
    then only costs time: ~170 ms after every command (bench/ingest.py, the coordinators'
    own commands alike). Output and logs are flushed first. Under a profiler (`bench/ingest.py
    --profile`) the interpreter exits normally, so the profile is written.
    """
    if sys.getprofile() is not None:
        raise SystemExit(code)
    if isinstance(code, str):  # sys.exit("message"): Python prints it and exits with 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or its reader has gone
            stream.flush()
    logging.shutdown()
    os._exit(code or 0)
