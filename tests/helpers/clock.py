"""The clock of a test: a fixed moment, for code that reads the time itself.

Most of mailbridge takes `now=`; a test passes a fixed moment there. Where the code reads the
clock itself (a pass of the daemon, `case show`, an assignment), the `fixed_clock` fixture in
tests/conftest.py moves the test's clock to FIXED_NOW and lets it tick on from there, so
what the test sees does not depend on the day it runs. Mail a test delivers is stamped on
that clock too: a Maildir file time or an IMAP INTERNALDATE set by the test, never the
server's own, which keeps the real time.

A `mailbridge` subprocess does not share the pytest process's clock: `python_command` starts
it at the same moment, ticking on, whenever the test's clock has been moved.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import time_machine

# Tue 1 Dec 2026, 10:00 GMT (UTC in winter): a working day a week after the fixtures'
# pothole enquiry (received Tue 24 Nov 09:15, reply due Tue 8 Dec), in the weeks the
# conversation tests are set in.
FIXED_NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """The process's clock at `moment`, ticking on, until the block ends."""
    with time_machine.travel(moment, tick=True):
        yield


def now() -> datetime:
    """The test's now (aware UTC), wherever its clock has been moved."""
    return datetime.now(UTC)


# Run in the child: start its clock where the parent's is, then be `python -m <module>`.
_ON_THE_TESTS_CLOCK = """\
import runpy, sys
from datetime import datetime
import time_machine
time_machine.travel(datetime.fromisoformat(sys.argv[1]), tick=True).start()
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def python_command(module: str, *args: str) -> list[str]:
    """`python -m module args`; on the test's clock when that has been moved."""
    if not time_machine.escape_hatch.is_travelling():
        return [sys.executable, "-m", module, *args]
    return [sys.executable, "-c", _ON_THE_TESTS_CLOCK, now().isoformat(), module, *args]
