"""One active `mailbridge run` per mailbox, the others on standby (service/lease.py).

As an operator runs it: a second node for availability, a cron `run --once` overlapping the
service, several mailboxes on one database. The standby waits without touching the mailbox,
says who holds it, and takes over within 15 seconds of the active one dying; a backlog is
finished by whoever holds the lease, every message once.
"""

from __future__ import annotations

import mailbox
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mailbridge.cases.directory import import_members
from mailbridge.mailbox.maildir import maildir_drop
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from tests.factories import NO_TRUST_TOML, QUIET_SERVICE_TOML, fixture_bytes
from tests.helpers.clock import python_command
from tests.servers.dovecot import DovecotServer
from tests.servers.fleet import TAKEN_OVER, Fleet
from tests.servers.smtp import SmtpServer
from tests.service.test_daemon import MEMBERS, enquiry

POTHOLE = "member_new_enquiry_pothole.eml"
HOST = socket.gethostname()
# How soon a standby must take over from an active daemon that died (the bound;
# the machine's own figure is in the README, from bench/survive.py).
TAKEOVER_SECONDS = 15


def config_file(
    tmp_path: Path, *, mailbox_url: str, smtp_url: str, db_url: str, name: str = "config.toml"
) -> Path:
    """A config for one mailbox; the database gets the members when it is first made."""
    config = tmp_path / name
    config.write_text(
        f"""
[mailbox]
url = "{mailbox_url}"
password_env = "MB_TEST_IMAP_PASSWORD"
poll_seconds = 0.5
batch_size = 50
[smtp]
url = "{smtp_url}"
from_address = "enquiries@example.gov.uk"
{NO_TRUST_TOML}
[database]
url = "{db_url}"
[storage]
data_dir = "{tmp_path / "data"}"
{QUIET_SERVICE_TOML}[limits]
new_cases_per_sender_per_hour = 5000
new_cases_per_sender_per_day = 5000
[[service_areas]]
name = "Highways"
keywords = ["pothole", "road"]
""",
        encoding="utf-8",
    )
    engine = ensure_database(db_url)
    with transaction(engine) as session:
        if not session.execute(text("SELECT 1 FROM person LIMIT 1")).first():
            import_members(session, MEMBERS)
    engine.dispose()
    return config


def env(password: str = "unused") -> dict[str, str]:
    return {**os.environ, "MB_TEST_IMAP_PASSWORD": password, "COLUMNS": "200"}


def mailbridge(*args: str, password: str = "unused") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_command("mailbridge", *args),
        env=env(password),
        capture_output=True,
        text=True,
        timeout=60,
    )


def waiting(inbox: Path) -> int:
    return sum(1 for sub in ("new", "cur") for _ in (inbox / sub).iterdir())


def sent(outbox: Path) -> int:
    """Emails delivered to the Maildir outbox, by Message-ID: a kill that falls between a
    delivery and its record sends that email once more, with the same Message-ID."""
    if not (outbox / "new").is_dir():
        return 0
    ids = {
        message_from_bytes(path.read_bytes(), policy=policy.default)["Message-ID"]
        for path in (outbox / "new").iterdir()
    }
    return len(ids)


def wait_until(condition, fleet: Fleet, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, fleet.logs()
        time.sleep(0.05)


def count(db_url: str, sql: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.timeout(120)
def test_a_second_run_stands_by_says_who_is_active_and_takes_over_when_it_dies(
    tmp_path: Path,
) -> None:
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    mailbox.Maildir(inbox, create=True)
    db_url = f"sqlite:///{tmp_path / 'mailbridge.db'}"
    config = config_file(
        tmp_path, mailbox_url=f"maildir:{inbox}", smtp_url=f"maildir:{outbox}", db_url=db_url
    )
    fleet = Fleet(config, env())
    try:
        first, second = fleet.start(2)
        active = fleet.wait_for_holder()
        [standby] = [d for d in (first, second) if d is not active]
        standby.log.wait_for(f"standby: {HOST}:{active.pid} holds the mailbox")

        once = mailbridge("run", "--once", "--config", str(config))
        assert once.returncode == 0, once.stderr
        [line] = once.stdout.splitlines()
        assert line.startswith(f"another mailbridge run ({HOST}:{active.pid}, since ")
        assert line.endswith("is processing this mailbox; nothing done")

        check = mailbridge("check", "--config", str(config))
        assert f"held by {HOST}:{active.pid}, since" in check.stdout, check.stdout

        maildir_drop(inbox, fixture_bytes(POTHOLE))
        wait_until(lambda: waiting(inbox) == 0 and sent(outbox) == 1, fleet)
        assert "pass done" not in standby.log.text  # it fetched nothing

        taker, seconds = fleet.takeover(active)
        assert taker is standby
        assert seconds < TAKEOVER_SECONDS, f"took {seconds:.1f} s to take over"
        standby.log.wait_for(TAKEN_OVER)
        second_pothole = fixture_bytes(POTHOLE).replace(b"Message-ID: <", b"Message-ID: <2-", 1)
        maildir_drop(inbox, second_pothole)
        wait_until(lambda: waiting(inbox) == 0 and sent(outbox) == 2, fleet)
    finally:
        codes = fleet.stop()
    assert codes == [None, 0] or codes == [0, None], fleet.logs()
    assert "Traceback" not in fleet.logs()
    assert count(db_url, 'SELECT count(*) FROM "case"') == 2


def test_the_standby_takes_over_at_once_when_the_active_one_stops(tmp_path: Path) -> None:
    """A planned restart of the active node: SIGTERM lets go of the lease on the way out."""
    inbox = tmp_path / "inbox"
    mailbox.Maildir(inbox, create=True)
    config = config_file(
        tmp_path, mailbox_url=f"maildir:{inbox}", smtp_url=f"maildir:{tmp_path / 'out'}",
        db_url=f"sqlite:///{tmp_path / 'mailbridge.db'}",
    )  # fmt: skip
    fleet = Fleet(config, env())
    try:
        fleet.start(2)
        active = fleet.wait_for_holder()
        [standby] = fleet.standbys()
        standby.log.wait_for("standby:")
        active.proc.send_signal(signal.SIGTERM)
        assert active.proc.wait(timeout=30) == 0
        standby.log.wait_for(TAKEN_OVER, seconds=TAKEOVER_SECONDS)
        assert fleet.holder() is standby
    finally:
        codes = fleet.stop()
    assert codes == [0, 0], fleet.logs()


def maildir_backlog(tmp_path: Path, n: int) -> tuple[str, Path]:
    """A Maildir inbox with `n` enquiries waiting, on SQLite: the database URL and config."""
    inbox = tmp_path / "inbox"
    mailbox.Maildir(inbox, create=True)
    db_url = f"sqlite:///{tmp_path / 'mailbridge.db'}"
    config = config_file(
        tmp_path, mailbox_url=f"maildir:{inbox}", smtp_url=f"maildir:{tmp_path / 'out'}",
        db_url=db_url,
    )  # fmt: skip
    for i in range(n):
        raw = fixture_bytes(POTHOLE).replace(b"Message-ID: <", f"Message-ID: <{i}-".encode(), 1)
        maildir_drop(inbox, raw)
    return db_url, config


def test_run_once_holds_the_lease_while_it_works(tmp_path: Path) -> None:
    """A cron `run --once` overlapping the service: while one holds the mailbox, a second
    --once says so; after, the mailbox is free again."""
    _, config = maildir_backlog(tmp_path, 1000)  # several seconds of work
    log = tmp_path / "first.log"  # a pipe nobody reads while it works would fill and stop it
    with log.open("w") as err:
        first = subprocess.Popen(
            python_command("mailbridge", "run", "--once", "--config", str(config)),
            env=env(), stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    outputs = []
    while first.poll() is None:
        second = mailbridge("run", "--once", "--config", str(config))
        assert second.returncode == 0, second.stderr
        outputs.append(second.stdout)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, log.read_text()
    outputs.append(out)
    busy = [o for o in outputs if "is processing this mailbox; nothing done" in o]
    assert busy, "no run --once overlapped another: nothing was shown"
    assert all(len(o.splitlines()) == 1 for o in busy)
    # Whichever took the lease first did the work, all of it.
    assert sum("1000 new cases" in o for o in outputs) == 1, outputs
    again = mailbridge("run", "--once", "--config", str(config))
    assert again.returncode == 0 and again.stdout.startswith("0 new cases"), again.stdout


def test_a_service_that_waited_for_a_cron_run_once_has_taken_nothing_over(
    tmp_path: Path,
) -> None:
    """A restart or deploy overlapping the cron's `run --once`: the service stands by until
    the pass is done, then goes on without a takeover alert (nobody stopped or died)."""
    db_url, config = maildir_backlog(tmp_path, 1000)  # several seconds of work
    with (tmp_path / "once.log").open("w") as err:
        once = subprocess.Popen(
            python_command("mailbridge", "run", "--once", "--config", str(config)),
            env=env(), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    fleet = Fleet(config, env())
    try:
        wait_until(lambda: count(db_url, 'SELECT count(*) FROM "case"') > 0, fleet)
        [service] = fleet.start(1)
        service.log.wait_for("holds the mailbox")  # it stands by while the pass runs
        assert once.wait(timeout=120) == 0
        service.log.wait_for("run --once finished; the mailbox is ours")
        fleet.wait_for_holder()
    finally:
        codes = fleet.stop()
    assert codes == [0], fleet.logs()
    assert TAKEN_OVER not in fleet.logs()
    assert count(db_url, "SELECT count(*) FROM incident WHERE kind = 'takeover'") == 0


def test_two_mailboxes_on_one_database_each_have_their_own_lease(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'mailbridge.db'}"
    inboxes = [tmp_path / "highways", tmp_path / "schools"]
    configs = []
    for inbox in inboxes:
        mailbox.Maildir(inbox, create=True)
        outbox = f"maildir:{tmp_path / 'out'}"
        configs.append(
            config_file(
                tmp_path,
                mailbox_url=f"maildir:{inbox}",
                smtp_url=outbox,
                db_url=db_url,
                name=f"{inbox.name}.toml",
            )
        )
    fleets = [Fleet(config, env()) for config in configs]
    try:
        for fleet in fleets:
            fleet.start(1)
        for fleet in fleets:
            fleet.wait_for_holder()  # each active at once: neither waits for the other
        for n, inbox in enumerate(inboxes):
            raw = fixture_bytes(POTHOLE).replace(b"Message-ID: <", f"Message-ID: <{n}-".encode(), 1)
            maildir_drop(inbox, raw)
        for fleet, inbox in zip(fleets, inboxes, strict=True):
            wait_until(lambda inbox=inbox: waiting(inbox) == 0, fleet)
    finally:
        codes = [code for fleet in fleets for code in fleet.stop()]
    assert codes == [0, 0]
    logs = "".join(fleet.logs() for fleet in fleets)
    assert "standby:" not in logs and "Traceback" not in logs
    assert count(db_url, 'SELECT count(*) FROM "case"') == 2


@pytest.mark.timeout(120)
def test_a_lost_database_connection_is_a_lost_lease_and_fetching_stops(
    tmp_path: Path, pg_migrated_url: str
) -> None:
    """The lease's connection ended (a failover, a proxy's idle cut): another node may hold
    the mailbox now, so this one stops fetching at once and stands by; with nobody else
    there, it takes the lease again and goes on."""
    inbox = tmp_path / "inbox"
    mailbox.Maildir(inbox, create=True)
    config = config_file(
        tmp_path, mailbox_url=f"maildir:{inbox}", smtp_url=f"maildir:{tmp_path / 'out'}",
        db_url=pg_migrated_url,
    )  # fmt: skip
    fleet = Fleet(config, env())
    try:
        [daemon] = fleet.start(1)
        fleet.wait_for_holder()
        ended = count(
            pg_migrated_url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'mailbridge %' AND datname = current_database()",
        )
        assert ended == 1
        daemon.log.wait_for("lease lost: stopped fetching; standing by")
        fleet.wait_for_holder()
        maildir_drop(inbox, fixture_bytes(POTHOLE))
        wait_until(lambda: waiting(inbox) == 0, fleet)
    finally:
        codes = fleet.stop()
    assert codes == [0], fleet.logs()
    assert "Traceback" not in fleet.logs()


BACKLOG = 2000  # issue #15's backlog


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("database", "daemons"), [("sqlite", 2), ("postgres", 3)])
def test_a_backlog_is_finished_by_the_standby_when_the_active_daemon_is_killed(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    imap_mailbox: DovecotServer,
    smtp_server: SmtpServer,
    database: str,
    daemons: int,
) -> None:
    """The issue's run, at 2,000 emails: a backlog waiting, two or three daemons on one
    mailbox, the active one killed (its whole process group) mid-batch, once a quarter of the
    backlog is cases. The standby takes over within 15 s with mail still in the inbox, and
    finishes it: every message becomes exactly one case, every acknowledgement is accepted, a
    repeat only where the kill fell between the SMTP server's acceptance and its commit (with
    the same Message-ID), no traceback in any log."""
    if database == "postgres":
        db_url = request.getfixturevalue("pg_migrated_url")
    else:
        db_url = f"sqlite:///{tmp_path / 'mailbridge.db'}"
    imap = imap_mailbox
    config = config_file(
        tmp_path,
        mailbox_url=f"imap://{imap.user}@{imap.host}:{imap.port}/",
        smtp_url=f"smtp://{smtp_server.host}:{smtp_server.port}",
        db_url=db_url,
    )
    ids = []
    messages = []
    for n in range(BACKLOG):
        mid, raw = enquiry(n)
        ids.append(mid)
        messages.append({"msg": raw, "date": datetime.now(UTC)})  # on the test's clock
    with imap.client() as client:
        client.multiappend("INBOX", messages)
    fleet = Fleet(config, env(imap.password))
    try:
        fleet.start(daemons)
        active = fleet.wait_for_holder()
        assert len(imap.sessions()) <= 1  # standbys do not even log in
        wait_until(lambda: count(db_url, 'SELECT count(*) FROM "case"') >= BACKLOG // 4, fleet, 120)
        taker, seconds = fleet.takeover(active)
        assert seconds < TAKEOVER_SECONDS, f"took {seconds:.1f} s to take over"
        assert imap.uids("INBOX"), "the backlog was done before the kill: nothing was taken over"
        wait_until(lambda: not imap.uids("INBOX"), fleet, 300)
        wait_until(
            lambda: count(db_url, "SELECT count(*) FROM outbox WHERE status = 'sent'") == BACKLOG,
            fleet,
            120,
        )
    finally:
        codes = fleet.stop()
    assert codes.count(None) == 1 and set(codes) == {None, 0}, fleet.logs()
    assert "Traceback" not in fleet.logs()
    assert taker.log.text.count(TAKEN_OVER) == 1

    if database == "sqlite":
        with sqlite3.connect(tmp_path / "mailbridge.db") as db:
            inbound = Counter(
                r[0] for r in db.execute("SELECT message_id FROM message WHERE direction = 'in'")
            )
    else:
        engine = create_engine(db_url)
        with engine.connect() as conn:
            inbound = Counter(
                r[0]
                for r in conn.execute(text("SELECT message_id FROM message WHERE direction = 'in'"))
            )
        engine.dispose()
    assert sorted(inbound) == sorted(ids) and set(inbound.values()) == {1}
    assert count(db_url, 'SELECT count(*) FROM "case"') == BACKLOG
    received = Counter(
        message_from_bytes(m.content, policy=policy.default)["Message-ID"]
        for m in smtp_server.messages
    )
    assert len(received) == BACKLOG
    repeats = sum(received.values()) - len(received)
    assert repeats <= 1, f"{repeats} acknowledgements sent twice after one kill"
    assert len(imap.uids("Processed")) == BACKLOG
