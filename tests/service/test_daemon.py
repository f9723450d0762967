"""End to end on real servers: Dovecot in, `mailbridge run` in its own process, aiosmtpd out.

These are the stories an operator cares about: one pass, a long-running daemon woken by
IDLE and stopped by SIGTERM, and a daemon killed (SIGKILL) in the middle of a batch that,
once restarted, leaves every message exactly once as a case and every acknowledgement
delivered, any repeat carrying the same Message-ID.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import psutil
import pytest

from mailbridge.cases.directory import import_members
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from tests.factories import NO_TRUST_TOML, QUIET_SERVICE_TOML, fixture_bytes
from tests.helpers.clock import python_command
from tests.helpers.mail import large_attachment
from tests.servers.dovecot import DovecotServer
from tests.servers.relay import Relay
from tests.servers.service import Lines, terminate
from tests.servers.smtp import SmtpServer

MEMBERS = [
    {"name": "Cllr Jane Smith", "email": "cllr.jane.smith@example.gov.uk",
     "extra_emails": "", "division": "Bowden", "district": "Harborough", "party": ""},
    {"name": "Cllr Raj Patel", "email": "raj.patel@example.gov.uk",
     "extra_emails": "", "division": "Oadby", "district": "Oadby and Wigston", "party": ""},
]  # fmt: skip


def write_config(
    tmp_path: Path,
    imap: DovecotServer,
    smtp: SmtpServer,
    mailbox_extra: str = "",
    smtp_extra: str = "",
    extra: str = "",
    database_url: str | None = None,
) -> Path:
    """The config of a service on these servers, its database set up (SQLite beside it
    unless `database_url` names another) with the members in its directory."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[mailbox]
url = "imap://{imap.user}@{imap.host}:{imap.port}/"
password_env = "MB_TEST_IMAP_PASSWORD"
{mailbox_extra}
[smtp]
url = "smtp://{smtp.host}:{smtp.port}"
from_address = "enquiries@example.gov.uk"
{smtp_extra}
{NO_TRUST_TOML}
[database]
url = "{database_url or "sqlite:///./mailbridge.db"}"
[storage]
data_dir = "./data"
{QUIET_SERVICE_TOML}[[service_areas]]
name = "Highways"
keywords = ["pothole", "road"]
{extra}""",
        encoding="utf-8",
    )
    engine = ensure_database(database_url or f"sqlite:///{tmp_path / 'mailbridge.db'}")
    with transaction(engine) as session:
        import_members(session, MEMBERS)
    engine.dispose()
    return config


def env(imap: DovecotServer) -> dict[str, str]:
    return {**os.environ, "MB_TEST_IMAP_PASSWORD": imap.password, "COLUMNS": "200"}


def mailbridge(*args: str) -> list[str]:
    return python_command("mailbridge", *args)


def serve(config: Path, imap: DovecotServer) -> tuple[subprocess.Popen[str], Lines]:
    """`mailbridge run` as the service, its log read as it comes."""
    proc = subprocess.Popen(
        mailbridge("run", "--config", str(config)), env=env(imap),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, Lines(proc)


def count_cases(tmp_path: Path) -> int:
    try:
        with sqlite3.connect(tmp_path / "mailbridge.db", timeout=5) as db:
            return db.execute('select count(*) from "case"').fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def enquiry(n: int, sender: str = "raj.patel@example.gov.uk") -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = f"Cllr Raj Patel <{sender}>"
    msg["To"] = "enquiries@example.gov.uk"
    msg["Subject"] = f"Pothole number {n} on London Road"
    msg["Date"] = format_datetime(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = mid = make_msgid(f"e{n}", "mail.example.gov.uk")
    msg.set_content(f"Resident report {n}: a pothole on London Road near number {n}.\n")
    return mid.strip("<>"), msg.as_bytes()


# Lets one councillor open a whole backlog of cases at once: a flood (cases/floods.py)
# otherwise.
NO_FLOOD_LIMITS = (
    "[limits]\nnew_cases_per_sender_per_hour = 1000\nnew_cases_per_sender_per_day = 1000"
)


def backlog(imap: DovecotServer, total: int) -> list[str]:
    """`total` enquiries waiting in the inbox, received on the test's clock; their
    Message-IDs."""
    ids = []
    with imap.client() as client:
        for n in range(total):
            mid, raw = enquiry(n)
            ids.append(mid)
            client.append("INBOX", raw, msg_time=datetime.now(UTC))
    return ids


def inbound_message_ids(tmp_path: Path) -> Counter[str]:
    """How many times each Message-ID was stored as inbound mail."""
    with sqlite3.connect(tmp_path / "mailbridge.db") as db:
        rows = db.execute("select message_id from message where direction = 'in'")
        return Counter(r[0] for r in rows)


def test_run_once_turns_imap_mail_into_cases_and_acknowledgements(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer, fixed_clock: datetime
) -> None:
    config = write_config(tmp_path, imap_mailbox, smtp_server)
    imap_mailbox.append(fixture_bytes("member_new_enquiry_pothole.eml"))
    imap_mailbox.append(fixture_bytes("unknown_sender_enquiry.eml"))

    done = subprocess.run(
        mailbridge("run", "--once", "--config", str(config)),
        env=env(imap_mailbox), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 new cases, 0 updates, 1 quarantined" in done.stdout
    assert "2 emails sent" in done.stdout  # the acknowledgement, and one reply to the stranger

    [ack] = [m for m in smtp_server.messages if m.rcpt_tos != ["resident@example.org"]]
    assert ack.rcpt_tos == ["cllr.jane.smith@example.gov.uk"]
    msg = message_from_bytes(ack.content, policy=policy.default)
    assert msg["Subject"] == "[MQ-2026-00001] Enquiry received: Pothole on Mill Lane, Little Bowden"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<CAF1234567.pothole@mail.example.gov.uk>"
    assert msg["Message-ID"].startswith("<mb.MQ-2026-00001.")
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Received by the server today (INTERNALDATE, Tue 1 Dec 2026 on the test's clock, which
    # gives the reference its year): the deadline is 10 working days on.
    assert "working days" in body and "Reply due by" in body

    assert imap_mailbox.uids("INBOX") == []
    assert len(imap_mailbox.uids("Processed")) == 1
    assert len(imap_mailbox.uids("Quarantine")) == 1

    again = subprocess.run(
        mailbridge("run", "--once", "--config", str(config)),
        env=env(imap_mailbox), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0 and "0 new cases" in again.stdout
    assert len(smtp_server.messages) == 2  # nothing new: the acknowledgement and the reply


def test_daemon_wakes_on_idle_and_stops_cleanly_on_sigterm(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    config = write_config(tmp_path, imap_mailbox, smtp_server, "poll_seconds = 300")
    proc = subprocess.Popen(
        mailbridge("run", "--config", str(config)), env=env(imap_mailbox),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # It has connected, scanned the empty inbox and is in IDLE (its process at the
        # server says so): mail appended now can only be noticed through IDLE.
        imap_mailbox.wait_until_idling()
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        _, raw = enquiry(1)
        imap_mailbox.append(raw)
        deadline = time.monotonic() + 20  # IDLE wake-up is ~0.5 s on Dovecot; allow plenty
        while not smtp_server.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        # With poll_seconds = 300, only IDLE can have woken it this soon.
        assert len(smtp_server.messages) == 1
        assert count_cases(tmp_path) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    logged = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in logged
    # An operator reading the journal sees where it is connected, never a password.
    started = next(
        line for line in logged.splitlines() if "mailbridge.service.daemon: started" in line
    )
    mailbox = f"imap://{imap_mailbox.user}@{imap_mailbox.host}:{imap_mailbox.port}/"
    assert f'mailbox="{mailbox}"' in started
    assert f'smtp="smtp://{smtp_server.host}:{smtp_server.port}"' in started
    assert 'database="sqlite:///' in started and "version=" in started
    assert imap_mailbox.password not in logged
    assert "mailbridge.service.daemon: stopped" in logged


def serve_while_down(
    home: Path, imap: DovecotServer, smtp: SmtpServer, relay: Relay
) -> tuple[subprocess.Popen[str], Lines]:
    """`mailbridge run` pointed at the relay's port, where nothing listens until it starts."""
    config = write_config(home, replace(imap, port=relay.port), smtp, "poll_seconds = 300")
    proc = subprocess.Popen(
        mailbridge("run", "--config", str(config)), env=env(imap),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, Lines(proc)


@pytest.mark.slow
def test_the_service_waits_out_an_unreachable_mailbox(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    """Started while the mail server is down, `mailbridge run` keeps trying (1, 2, 4 … s
    apart) and serves the mailbox once it is back: an outage is not the end of the service."""
    relay = Relay((imap_mailbox.host, imap_mailbox.port))  # nothing listens there yet
    proc, log = serve_while_down(tmp_path, imap_mailbox, smtp_server, relay)
    try:
        log.wait_for("mailbox unreachable; trying again", count=2)
        assert proc.poll() is None
        _, raw = enquiry(1)
        imap_mailbox.append(raw)
        relay.start()  # the server is back
        deadline = time.monotonic() + 30
        while not smtp_server.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(smtp_server.messages) == 1, "".join(log.lines)
        assert count_cases(tmp_path) == 1
    finally:
        code = terminate(proc, relay)
    assert code == 0
    waits = [line for line in log.lines if "mailbox unreachable" in line]
    assert "retry_in_seconds=1.0" in waits[0] and "retry_in_seconds=2.0" in waits[1]
    assert f"cannot connect to IMAP server 127.0.0.1:{relay.port}" in waits[0]
    assert "Traceback" not in "".join(log.lines)


@pytest.mark.slow
def test_sigterm_ends_the_wait_for_an_unreachable_mailbox(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    relay = Relay((imap_mailbox.host, imap_mailbox.port))  # never started
    proc, log = serve_while_down(tmp_path, imap_mailbox, smtp_server, relay)
    try:
        log.wait_for("mailbox unreachable; trying again", count=3)  # waiting 4 s now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=3) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log.wait_for("mailbridge.service.daemon: stopped")


def test_a_killed_delivery_process_is_replaced(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    """The courier killed (out of memory, an operator's mistake): the service starts a new
    one at its next delivery, so acknowledgements keep going out."""
    extra = "poll_seconds = 300\nparse_workers = 0"  # the courier is the only child
    config = write_config(tmp_path, imap_mailbox, smtp_server, extra)
    proc, log = serve(config, imap_mailbox)
    try:
        log.wait_for("mailbridge.service.daemon: started")
        deadline = time.monotonic() + 10
        while not (children := psutil.Process(proc.pid).children()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (courier,) = children
        courier.kill()
        while courier.is_running() and courier.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.02)  # dead; the daemon reaps it when it next looks
        _, raw = enquiry(1)
        imap_mailbox.append(raw)
        deadline = time.monotonic() + 20
        while not smtp_server.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(smtp_server.messages) == 1, "".join(log.lines)
        assert [c.pid for c in psutil.Process(proc.pid).children()] != [courier.pid]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0
    log.wait_for("delivery process ended; starting a new one")
    assert "exit_code=-9" in "".join(log.lines)


@pytest.mark.slow
def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    config = write_config(
        tmp_path, imap_mailbox, smtp_server,
        mailbox_extra="batch_size = 25", smtp_extra="lease_seconds = 1\nbatch_size = 10",
        extra=NO_FLOOD_LIMITS,
    )  # fmt: skip
    total = 200
    ids = backlog(imap_mailbox, total)

    kills = 0
    # Kill when the case count passes these marks, and once during delivery.
    for mark in (20, 75, 130):
        proc = subprocess.Popen(
            mailbridge("run", "--once", "--config", str(config)), env=env(imap_mailbox),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while count_cases(tmp_path) < mark and proc.poll() is None:
            assert time.monotonic() < deadline, "the daemon made no progress"
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    proc = subprocess.Popen(
        mailbridge("run", "--once", "--config", str(config)), env=env(imap_mailbox),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sent_before = len(smtp_server.messages)
    deadline = time.monotonic() + 60
    while len(smtp_server.messages) < sent_before + 5 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        kills += 1
    proc.wait()

    assert kills >= 3, "the daemon finished before it could be killed: nothing was proven"
    time.sleep(1.2)  # let the leases of the killed senders expire
    done = subprocess.run(
        mailbridge("run", "--once", "--config", str(config)),
        env=env(imap_mailbox), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    inbound = inbound_message_ids(tmp_path)
    with sqlite3.connect(tmp_path / "mailbridge.db") as db:
        outbox = {r[0]: r[1] for r in db.execute("select message_id, status from outbox")}
        cases = db.execute('select count(*) from "case"').fetchone()[0]
    assert cases == total
    assert sorted(inbound) == sorted(ids)  # every message exactly once
    assert set(inbound.values()) == {1}
    assert len(outbox) == total and set(outbox.values()) == {"sent"}

    received = Counter(
        message_from_bytes(m.content, policy=policy.default)["Message-ID"].strip("<>")
        for m in smtp_server.messages
    )
    assert set(received) == set(outbox)  # every acknowledgement delivered at least once
    repeats = sum(received.values()) - len(received)
    print(f"{kills} kills, {repeats} repeated acknowledgements")
    assert repeats <= kills, f"{repeats} repeats for {kills} kills"

    assert imap_mailbox.uids("INBOX") == []
    assert len(imap_mailbox.uids("Processed")) == total


def test_run_once_on_imap_quarantines_a_too_large_email_by_its_header(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer, fixed_clock: datetime
) -> None:
    """Over [mailbox] max_message_bytes on a real Dovecot: only its header is fetched, it is
    quarantined too_large and moved whole to Quarantine, and the councillor who sent it is
    told once (nothing of their email repeated); the enquiry beside it opens its case."""
    config = write_config(tmp_path, imap_mailbox, smtp_server, "max_message_bytes = 1000000")
    big = large_attachment(3_000_000, sender="raj.patel@example.gov.uk")
    imap_mailbox.append(big)
    imap_mailbox.append(enquiry(1)[1])
    run = mailbridge("run", "--once", "--config", str(config))
    done = subprocess.run(run, env=env(imap_mailbox), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 new cases, 0 updates, 1 quarantined" in done.stdout

    notices = [m for m in smtp_server.messages if b"too large" in m.content]
    [notice] = notices
    assert notice.rcpt_tos == ["raj.patel@example.gov.uk"]
    msg = message_from_bytes(notice.content, policy=policy.default)
    assert msg["Subject"] == "Your email was too large to be logged"
    assert msg["Auto-Submitted"] == "auto-replied"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "2.9 MB, more than the 1.0 MB this mailbox takes" in text
    assert "Survey photos" not in text  # nothing of theirs repeated

    assert imap_mailbox.uids("INBOX") == []
    with imap_mailbox.client() as client:
        client.select_folder("Quarantine", readonly=True)
        [kept] = client.fetch(client.search("ALL"), ["BODY.PEEK[]"]).values()
    assert kept[b"BODY[]"] == big  # the mailbox keeps the original

    again = subprocess.run(run, env=env(imap_mailbox), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "0 new cases, 0 updates, 0 quarantined" in again.stdout
    assert len(smtp_server.messages) == 2  # the acknowledgement and the notice, once each
