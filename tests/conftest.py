"""Shared fixtures. Server fixtures live in tests/servers/ as plugins, one per server.

The suite must pass on any date. To run it as if on another day, set MAILBRIDGE_TEST_NOW
to an ISO date or moment (a date alone means midday UTC); the whole session then travels
there, its clock ticking on from that moment:

    MAILBRIDGE_TEST_NOW=2027-01-04 .venv/bin/pytest -q
    MAILBRIDGE_TEST_NOW=2026-12-31T23:59:30+00:00 .venv/bin/pytest -q tests/cases/test_records.py

This moves the clock of the pytest process (datetime, date.today, time.time); a `mailbridge`
subprocess started with tests.helpers.clock.python_command follows it. The servers keep the
real time, so tests give them their moments (an INTERNALDATE, a Maildir file time).

Tests of code that reads the clock itself use `fixed_clock`, which runs them at one fixed
moment whatever the date (and whatever MAILBRIDGE_TEST_NOW says).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine

# Helpers assert too: pytest rewrites their asserts (to show the values) if told before
# they are first imported.
pytest.register_assert_rewrite("tests.factories", "tests.helpers")

from tests.factories import TEST_SIGNING_KEY, TEST_SIGNING_KEY_ENV  # noqa: E402
from tests.helpers.clock import FIXED_NOW, clock_at  # noqa: E402

pytest_plugins = [
    "tests.servers.dovecot",
    "tests.servers.smtp",
    "tests.servers.database",
]

TEST_NOW = "MAILBRIDGE_TEST_NOW"

# The signing key of the test configs (`[security] signing_key_env`), as `mailbridge keys
# generate` writes one; `mailbridge` subprocesses inherit it.
os.environ.setdefault(TEST_SIGNING_KEY_ENV, TEST_SIGNING_KEY)
_travel = pytest.StashKey[time_machine.travel]()


def as_if_now() -> datetime | None:
    """The moment MAILBRIDGE_TEST_NOW names, aware; None when it is not set."""
    text = os.environ.get(TEST_NOW, "").strip()
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    if len(text) == len("2027-01-04"):
        moment = moment.replace(hour=12)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    moment = as_if_now()
    if moment is not None:
        travel = time_machine.travel(moment, tick=True)
        travel.start()
        config.stash[_travel] = travel


def pytest_unconfigure(config: pytest.Config) -> None:
    travel = config.stash.get(_travel, None)
    if travel is not None:
        travel.stop()


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on them
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a server's fixture, directly or through another fixture, carries that
    server's marker: `-m "not postgres"` leaves out exactly the tests that need PostgreSQL.
    (Tests run on each database get `postgres` on their PostgreSQL run from the fixture's
    params, tests/servers/database.py.)"""
    from tests.servers.smtp import SERVER_FIXTURES as SMTP_SERVERS

    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "dovecot" in names:
            item.add_marker(pytest.mark.imap)
        if names & SMTP_SERVERS:
            item.add_marker(pytest.mark.smtp)
        if "pg_admin" in names:
            item.add_marker(pytest.mark.postgres)


def pytest_report_header(config: pytest.Config) -> str | None:
    moment = as_if_now()
    return f"clock: as if {moment.isoformat()} ({TEST_NOW})" if moment else None


@pytest.fixture
def fixed_clock() -> Iterator[datetime]:
    """The test's clock at FIXED_NOW, ticking on from there; yields FIXED_NOW."""
    with clock_at(FIXED_NOW):
        yield FIXED_NOW
