"""Driving the `mailbridge` command in-process: a config in the working folder, a run at a
known terminal width, and reading what it printed."""

from __future__ import annotations

import logging
import socket

from typer.testing import CliRunner, Result

from mailbridge.cli import context
from mailbridge.cli.app import app
from mailbridge.privacy.operators import os_account
from tests.factories import NO_TRUST_TOML

CONFIG = (
    """\
[council]
name = "Example County Council"

[mailbox]
url = "maildir:./mailbox"

[smtp]
url = "maildir:./outbox"
from_address = "enquiries@example.gov.uk"

[database]
url = "sqlite:///./mailbridge.db"

[storage]
data_dir = "./data"

[security]
signing_key_env = "MAILBRIDGE_TEST_SIGNING_KEY"

[schedule]
# The journey runs on the wall clock: no digest may join the counts it checks.
coordinator_digest_at = ""
member_digest_at = ""
management_summary_at = ""

[[service_areas]]
name = "Highways"
directorate = "Environment and Transport"
keywords = ["pothole", "road", "pavement", "street light", "gully"]

[[service_areas]]
name = "Adult Social Care"
directorate = "Adults and Health"
keywords = ["care package", "carer", "assessment"]

[[coordinators]]
name = "Member Support Team"
email = "member.support@example.gov.uk"
"""
    + NO_TRUST_TOML
)

runner = CliRunner()

# Who a command run by this test process is, without --as or an os_user mapping: its account.
ACCOUNT = os_account()
ORIGIN = f"{ACCOUNT}@{socket.gethostname()}"
CLI_ACTOR = f"os:{ACCOUNT} (cli, {ORIGIN})"


def invoke(*args: str, width: int = 300, env: dict[str, str | None] | None = None) -> Result:
    """Run one command in-process, at a known terminal width, leaving logging as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = context.console._width
    context.console._width = width  # no tty here: pin the width rich would guess (and help's)
    try:
        return runner.invoke(app, list(args), env={"COLUMNS": str(width), **(env or {})})
    finally:
        context.console._width = saved
        root.handlers[:] = handlers  # `run` points a handler at the runner's stderr
        root.setLevel(level)


def one_line_error(result: Result, exit_code: int, *fragments: str) -> str:
    """The command failed as designed: the exit code, one `error:` line, no traceback."""
    assert result.exit_code == exit_code, result.output
    # typer.Exit ends as SystemExit; a crash would leave the real exception here.
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception
    return result.stdout


def rows(table: str) -> dict[str, list[str]]:
    """Rows of a printed table keyed by their first cell (one line per row at our width)."""
    found: dict[str, list[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) > 1 and cells[0] and cells[0] not in ("Id", "Reference"):
            found[cells[0]] = cells[1:]
    return found
