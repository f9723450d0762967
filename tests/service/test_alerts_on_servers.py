"""Alerts as an operator meets them, on real Dovecot, aiosmtpd and SQLite: the mailbox
password expiring under the running service, a stopped SMTP server, a mailbox nothing is
fetched from. One alert each and one all-clear, counted where they arrive, never a storm.

The service runs in this process (`Daemon.run_forever` in the main thread, where its signal
handlers work) with its schedule's clock in the test's hands; a second thread plays the
operator and the servers, and ends the service with SIGTERM as systemd would.
"""

from __future__ import annotations

import mailbox
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from imapclient.exceptions import LoginError
from typer.testing import CliRunner

from mailbridge.cases.directory import import_members
from mailbridge.cli.app import app
from mailbridge.config import Config
from mailbridge.delivery.transports.factory import open_sender
from mailbridge.mailbox.factory import open_source
from mailbridge.mailbox.maildir import maildir_drop
from mailbridge.mailbox.state import DbStateStore
from mailbridge.service.alerts import CLEAR_AFTER, read_health
from mailbridge.service.daemon import Daemon, PassReport
from mailbridge.services import Services
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import utcnow
from tests.factories import NO_TRUST_TOML, fixture_bytes, make_config
from tests.helpers.clock import clock_at, python_command
from tests.servers.dovecot import DovecotServer
from tests.servers.fleet import TAKEN_OVER, Fleet
from tests.servers.relay import Relay
from tests.servers.smtp import SmtpServer
from tests.service.test_standby import config_file
from tests.service.test_standby import env as standby_env

OFF = {"coordinator_digest_at": "", "member_digest_at": "", "management_summary_at": ""}
MEMBER = {
    "name": "Cllr Jane Smith", "email": "cllr.jane.smith@example.gov.uk", "extra_emails": "",
    "division": "Bowden", "district": "Harborough", "party": "",
}  # fmt: skip


class Clock:
    """The schedule's now: the real time, moved on when the test says."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.ahead


def daemon_for(tmp_path: Path, config: Config) -> tuple[Daemon, Clock]:
    engine = ensure_database(config.database.url)
    with transaction(engine) as session:
        import_members(session, [MEMBER])
    services = Services.build(config, engine)
    source = open_source(config, DbStateStore(engine))
    daemon = Daemon(services, source, lambda: open_sender(config), courier=None)
    clock = Clock()
    daemon.clock = clock
    return daemon, clock


def subjects(smtp: SmtpServer, start: str) -> list[str]:
    found = []
    for received in list(smtp.messages):
        subject = str(message_from_bytes(received.content, policy=policy.default)["Subject"])
        if subject.startswith(start):
            found.append(subject)
    return found


def wait_until(condition: Callable[[], Any], seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def serve(daemon: Daemon, operator: Callable[[], None]) -> None:
    """Run the service here until the operator (in a thread) is done; its failure is ours."""
    failed: list[BaseException] = []

    def play() -> None:
        try:
            operator()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    daemon.run_forever()
    thread.join(10)
    if failed:
        raise failed[0]


def set_password(server: DovecotServer, password: str) -> None:
    """Change the user's password in Dovecot's passwd-file, as an expiry would, and wait
    until Dovecot goes by it (it reads the file again within a second)."""
    path = server.root / "passwd"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    mine = f"{server.user}:"
    path.write_text(
        "".join(f"{mine}{{PLAIN}}{password}::::::\n" if line.startswith(mine) else line
                for line in lines),
        encoding="utf-8",
    )  # fmt: skip

    def in_force() -> bool:
        try:
            with server.client():  # logs in with the original password
                return password == server.password
        except LoginError:
            return password != server.password

    wait_until(in_force, 10, "Dovecot to read its passwd-file again")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_expired_mailbox_password_alerts_once_and_clears_once(
    tmp_path: Path,
    imap_mailbox: DovecotServer,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MB_TEST_IMAP_PASSWORD", imap_mailbox.password)
    config = make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'mailbridge.db'}",
        mailbox={
            "url": f"imap://{imap_mailbox.user}@{imap_mailbox.host}:{imap_mailbox.port}/",
            "password_env": "MB_TEST_IMAP_PASSWORD",
            "poll_seconds": 0.5,
        },
        smtp={"url": f"smtp://{smtp_server.host}:{smtp_server.port}"},
        schedule={**OFF, "tick_seconds": 0.2},
        alerts={"recipients": ["it.ops@example.gov.uk"]},
    )
    daemon, clock = daemon_for(tmp_path, config)

    def operator() -> None:
        imap_mailbox.wait_until_idling()
        set_password(imap_mailbox, "renewed-by-someone-else")
        imap_mailbox.kick()  # the service must log in again, and is refused
        wait_until(lambda: subjects(smtp_server, "mailbridge alert:"), what="the alert")
        time.sleep(1.5)  # the service tries again meanwhile, refused each time
        set_password(imap_mailbox, imap_mailbox.password)  # put right
        wait_until(lambda: daemon.watch.last_fetch is not None and daemon.watch._refused is None,
                   what="a fetch after the password was put right")  # fmt: skip
        time.sleep(0.5)  # a tick sees it gone...
        clock.ahead = CLEAR_AFTER + timedelta(minutes=1)  # ...and it stays gone
        wait_until(lambda: subjects(smtp_server, "mailbridge all clear:"), what="the all-clear")
        time.sleep(1)  # ticks go on: nothing more may come

    serve(daemon, operator)
    assert subjects(smtp_server, "mailbridge alert:") == [
        "mailbridge alert: the mail server refuses mailbridge's login to the shared mailbox"
    ]
    [clear] = subjects(smtp_server, "mailbridge all clear:")
    assert "the mail server refuses mailbridge's login" in clear
    alert, _ = smtp_server.messages  # nothing else was sent
    body = message_from_bytes(alert.content, policy=policy.default).get_body(("plain",))
    text = body.get_content()  # type: ignore[union-attr]
    assert "Authentication failed" in text and "renew it" in text
    assert f"{imap_mailbox.user}@{imap_mailbox.host}" in text  # which mailbox
    for sent in smtp_server.messages:  # the operators, and the coordinators by default
        assert sorted(sent.rcpt_tos) == ["it.ops@example.gov.uk", "member.support@example.gov.uk"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_mailbox_nothing_is_fetched_from_alerts_once_and_clears_once(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """The service runs but no pass goes through (a hung server, an outage): after
    no_fetch_minutes, one alert; passes again, and the all-clear."""
    inbox = tmp_path / "mailbox"
    config = make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'mailbridge.db'}",
        mailbox={"url": f"maildir:{inbox}", "poll_seconds": 0.2},
        smtp={"url": f"smtp://{smtp_server.host}:{smtp_server.port}"},
        schedule={**OFF, "tick_seconds": 0.2},
        alerts={"no_fetch_minutes": 30},
    )
    daemon, clock = daemon_for(tmp_path, config)
    daemon.watching = True
    start = clock()
    daemon.run_pass(full_scan=True)
    for minutes in (10, 29, 30, 31, 45, 59):  # nothing fetched after the first pass
        clock.ahead = timedelta(minutes=minutes)
        daemon.schedule_tick(PassReport(), force=True)
    assert len(subjects(smtp_server, "mailbridge alert:")) == 1
    health = read_health(config.storage.data_dir)
    assert health is not None
    [problem] = health["mailboxes"][f"maildir:{inbox}"]["problems"]
    assert problem["kind"] == "no_fetch"
    assert problem["since"] == start.isoformat(timespec="seconds")

    for minutes in (60, 61, 66, 67, 90):  # fetching again
        clock.ahead = timedelta(minutes=minutes)
        daemon.schedule_tick(daemon.run_pass(), force=True)
    assert len(subjects(smtp_server, "mailbridge alert:")) == 1
    [clear] = subjects(smtp_server, "mailbridge all clear:")
    assert clear.endswith("(over after 1 hour 6 minutes)")  # from the last fetch to 66


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stopped_smtp_server_shows_in_health_json_and_check_fails(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """SMTP itself is the failure, so the alert cannot go by email: health.json and
    `mailbridge check` say it; once the server is back the alert and its all-clear arrive."""
    relay = Relay((smtp_server.host, smtp_server.port))  # not started: the server is down
    inbox = tmp_path / "mailbox"
    config_file = tmp_path / "config.toml"
    config = make_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'mailbridge.db'}",
        mailbox={"url": f"maildir:{inbox}", "poll_seconds": 0.2},
        smtp={"url": f"smtp://127.0.0.1:{relay.port}", "retry_base_seconds": 0.1,
              "retry_max_seconds": 0.1},
        schedule={**OFF, "tick_seconds": 0.2},
        alerts={"outbox_stuck_minutes": 30},
    )  # fmt: skip
    daemon, _ = daemon_for(tmp_path, config)
    daemon.clock = utcnow  # the whole process's clock moves: the outbox's times with it
    daemon.watching = True
    start = utcnow()

    def passes(*minutes: int) -> None:
        for n in minutes:
            with clock_at(start + timedelta(minutes=n)):
                daemon.schedule_tick(daemon.run_pass(), force=True)

    maildir_drop(inbox, fixture_bytes("member_new_enquiry_pothole.eml"))
    try:
        passes(0, 10, 31, 40)
        assert smtp_server.messages == []
        health = read_health(config.storage.data_dir)
        assert health is not None and health["state"] == "failing"
        [problem] = health["mailboxes"][f"maildir:{inbox}"]["problems"]
        assert (problem["kind"], problem["scope"]) == ("outbox_stuck", "outbox")

        write_config(config_file, config)
        with clock_at(start + timedelta(minutes=40)):
            checked = CliRunner().invoke(app, ["check", "--config", str(config_file)])
        assert checked.exit_code == 1, checked.output
        assert "FAILED  health" in checked.stdout
        assert "mail is waiting in the outbox and is not being sent since" in checked.stdout

        relay.start()  # the server is back
        passes(41, 42, 48, 49)
    finally:
        relay.stop()
    assert len(subjects(smtp_server, "mailbridge alert:")) == 1
    assert len(subjects(smtp_server, "mailbridge all clear:")) == 1
    assert len(subjects(smtp_server, "[MQ-")) == 1  # the acknowledgement, once
    health = read_health(config.storage.data_dir)
    assert health is not None and health["state"] == "ok"


def write_config(path: Path, config: Config) -> None:
    """The config as a file, for the command line (the parts `check` reads)."""
    lines = [
        f'[mailbox]\nurl = "{config.mailbox.url}"',
        f'[smtp]\nurl = "{config.smtp.url}"\nfrom_address = "{config.smtp.from_address}"',
        f'[database]\nurl = "{config.database.url}"',
        f'[storage]\ndata_dir = "{config.storage.data_dir}"',
        '[security]\nsigning_key_env = "MAILBRIDGE_TEST_SIGNING_KEY"',
        NO_TRUST_TOML,
        '[[coordinators]]\nname = "Member Support"\nemail = "member.support@example.gov.uk"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_run_once_with_a_refused_login_exits_non_zero_with_one_line(
    tmp_path: Path, imap_mailbox: DovecotServer
) -> None:
    """Only the service waits a refused login out; a single pass says it and stops."""
    config = tmp_path / "config.toml"
    mailbox = f"imap://{imap_mailbox.user}@{imap_mailbox.host}:{imap_mailbox.port}/"
    config.write_text(
        f'[mailbox]\nurl = "{mailbox}"\npassword_env = "MB_TEST_IMAP_PASSWORD"\n'
        f'[smtp]\nurl = "maildir:{tmp_path / "outbox"}"\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "mailbridge.db"}"\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        '[security]\nsigning_key_env = "MAILBRIDGE_TEST_SIGNING_KEY"\n' + NO_TRUST_TOML,
        encoding="utf-8",
    )
    done = subprocess.run(
        python_command("mailbridge", "run", "--once", "--config", str(config)),
        env={**os.environ, "MB_TEST_IMAP_PASSWORD": "expired", "COLUMNS": "300"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: IMAP login to {imap_mailbox.host}:{imap_mailbox.port} as ")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_standby_taking_over_sends_one_alert_and_no_all_clear(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    inbox = tmp_path / "inbox"
    mailbox.Maildir(inbox, create=True)
    config = config_file(
        tmp_path,
        mailbox_url=f"maildir:{inbox}",
        smtp_url=f"smtp://{smtp_server.host}:{smtp_server.port}",
        db_url=f"sqlite:///{tmp_path / 'mailbridge.db'}",
    )
    config.write_text(config.read_text() + '[alerts]\nrecipients = ["it.ops@example.gov.uk"]\n')
    fleet = Fleet(config, standby_env())
    try:
        both = fleet.start(2)
        active = fleet.wait_for_holder()
        [standby] = [d for d in both if d is not active]
        standby.log.wait_for(f"standby: {socket.gethostname()}:{active.pid} holds the mailbox")
        taker, _ = fleet.takeover(active)  # SIGKILL, as a power cut
        taker.log.wait_for(TAKEN_OVER)
        deadline = time.monotonic() + 30
        while not subjects(smtp_server, "mailbridge alert:"):
            assert time.monotonic() < deadline, fleet.logs()
            time.sleep(0.05)
        time.sleep(2)  # the service goes on: nothing more may come
    finally:
        fleet.stop()
    assert subjects(smtp_server, "mailbridge alert:") == [
        "mailbridge alert: a standby mailbridge has taken the mailbox over"
    ], fleet.logs()
    assert subjects(smtp_server, "mailbridge all clear:") == []
    [alert] = smtp_server.messages
    text = message_from_bytes(alert.content, policy=policy.default).get_body(("plain",))
    assert f"took over from {socket.gethostname()}:{active.pid}" in text.get_content()  # type: ignore[union-attr]
    assert "Traceback" not in fleet.logs()
