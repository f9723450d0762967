"""The service through a database outage: PostgreSQL restarted under `mailbridge run`.

The database is reached through a relay the test stops and starts again, as a restart
for patching would; mail arrives in the Maildir inbox meanwhile. Nothing may be lost or
doubled, and the service must neither end nor hang.
"""

from __future__ import annotations

import mailbox
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mailbridge.cases.directory import import_members
from mailbridge.mailbox.maildir import maildir_drop
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.migrate import ensure_database
from tests.factories import NO_TRUST_TOML, QUIET_SERVICE_TOML, fixture_bytes
from tests.helpers.clock import python_command
from tests.servers.relay import Relay
from tests.servers.service import Lines, terminate

POTHOLE = "member_new_enquiry_pothole.eml"
MEMBER = {
    "name": "Cllr Jane Smith", "email": "cllr.jane.smith@example.gov.uk", "extra_emails": "",
    "division": "Bowden", "district": "Harborough", "party": "",
}  # fmt: skip


def cases(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text('SELECT count(*) FROM "case"')).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_database_restart_loses_nothing_and_ends_nothing(
    tmp_path: Path, pg_migrated_url: str
) -> None:
    pg_url = pg_migrated_url
    engine = ensure_database(pg_url)
    with transaction(engine) as session:
        import_members(session, [MEMBER])
    engine.dispose()
    relay = Relay(("127.0.0.1", make_url(pg_url).port or 5432))
    relay.start()
    via_relay = make_url(pg_url).set(port=relay.port).render_as_string(hide_password=False)
    inbox = tmp_path / "mailbox"
    mailbox.Maildir(inbox, create=True)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[mailbox]
url = "maildir:{inbox}"
poll_seconds = 0.5
[smtp]
url = "maildir:{tmp_path / "outbox"}"
from_address = "enquiries@example.gov.uk"
{NO_TRUST_TOML}
[database]
url = "{via_relay}"
[storage]
data_dir = "{tmp_path / "data"}"
{QUIET_SERVICE_TOML}""",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        python_command("mailbridge", "run", "--config", str(config)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = Lines(proc)
    outbox = tmp_path / "outbox" / "new"

    def wait_for(condition, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + seconds
        while not condition():
            assert proc.poll() is None, log.text
            assert time.monotonic() < deadline, log.text
            time.sleep(0.1)

    try:
        log.wait_for("mailbridge.service.daemon: started")
        maildir_drop(inbox, fixture_bytes(POTHOLE))
        wait_for(lambda: outbox.is_dir() and len(list(outbox.iterdir())) == 1)

        relay.stop()  # the database goes down for a restart
        second = fixture_bytes(POTHOLE).replace(b"Message-ID: <", b"Message-ID: <second-", 1)
        maildir_drop(inbox, second)
        # Passes fail meanwhile: wait until the service has said so twice (waiting 1 s, then
        # 2 s), and it is still running with the mail still in the inbox.
        log.wait_for("database unreachable; trying again", count=2, seconds=30)
        assert proc.poll() is None, log.text
        assert len(list((inbox / "new").iterdir())) + len(list((inbox / "cur").iterdir())) == 1
        relay.start()  # back

        wait_for(lambda: len(list(outbox.iterdir())) == 2)
        wait_for(lambda: not any((inbox / "new").iterdir()) and not any((inbox / "cur").iterdir()))
        assert cases(pg_url) == 2
    finally:
        code = terminate(proc, relay)
    assert code == 0, log.text
    assert "Traceback" not in log.text
    assert "database unreachable; trying again" in log.text
    assert "mailbridge.service.daemon: stopped" in log.text
