"""`mailbridge check` as a person setting mailbridge up uses it: each part looked at, with
what was found and what to do, and nothing changed (no file, folder, table or mail made,
fetched, moved or sent). Real Dovecot, aiosmtpd, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import ClassVar

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col
from typer.testing import CliRunner, Result

from mailbridge.cases.directory import import_members
from mailbridge.cli import context
from mailbridge.cli.app import app
from mailbridge.config import Config, TrustConfig, load_config, without_password
from mailbridge.delivery import outbox
from mailbridge.delivery.transports.base import PermanentDeliveryError
from mailbridge.privacy import audit, holds, retention
from mailbridge.probe import Probe, loopback
from mailbridge.service.checks import (
    Finding,
    Status,
    _look,
    check_database,
    check_delivery,
    check_files,
    check_mailbox,
    check_operators,
    check_retention,
    check_scanner,
    check_smtp,
    check_storage,
    check_trust,
    check_web,
    rate_limit_advice,
)
from mailbridge.store.db import transaction
from mailbridge.store.migrate import SCHEMA_HEAD, ensure_database
from mailbridge.store.models import OutboxMessage, as_utc
from tests.factories import NO_TRUST_TOML, fixture_bytes
from tests.helpers.cli import ACCOUNT
from tests.helpers.council import REF, build_council
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

runner = CliRunner()

MEMBER = {
    "name": "Cllr Jane Smith", "email": "cllr.jane.smith@example.gov.uk", "extra_emails": "",
    "division": "Bowden", "district": "Harborough", "party": "",
}  # fmt: skip


def write(home: Path, mailbox: str, smtp: str, database: str = "sqlite:///./mailbridge.db",
          extra: str = "", trust: str = NO_TRUST_TOML) -> Path:  # fmt: skip
    config = home / "config.toml"
    config.write_text(
        f"""
[mailbox]
url = "{mailbox}"
password_env = "MB_CHECK_IMAP_PASSWORD"
[smtp]
url = "{smtp}"
from_address = "enquiries@example.gov.uk"
{extra}
[database]
url = "{database}"
[storage]
data_dir = "./data"
[security]
signing_key_env = "MAILBRIDGE_TEST_SIGNING_KEY"
[[coordinators]]
name = "Member Support Team"
email = "member.support@example.gov.uk"
{trust}""",
        encoding="utf-8",
    )
    config.chmod(0o600)  # as a careful operator leaves it: check_files says otherwise
    return config


def on_servers(home: Path, imap: DovecotServer, smtp: SmtpServer) -> Path:
    return write(home, f"imap://{imap.user}@{imap.host}:{imap.port}/",
                 f"smtp://{smtp.host}:{smtp.port}")  # fmt: skip


def check(config: Path, **env: str) -> Result:
    saved = context.console._width
    context.console._width = 300
    try:
        return runner.invoke(app, ["check", "--config", str(config)], env=env)
    finally:
        context.console._width = saved


def with_members(config: Path) -> None:
    engine = ensure_database(load_config(config).database.url)
    with transaction(engine) as session:
        import_members(session, [MEMBER])
    engine.dispose()


# --- the embedded default ---------------------------------------------------------------


def test_a_fresh_embedded_default_is_ready_and_nothing_is_created(tmp_path: Path) -> None:
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    result = check(config)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Traceback" not in out
    assert "no database file yet" in out and "mailbridge db upgrade" in out
    assert "created at the first run" in out  # the data folder
    assert f"{tmp_path / 'mailbox'} does not exist yet" in out
    assert f"writes each email into {tmp_path / 'outbox'}" in out
    assert "mail is not sent: set [smtp] url" in out
    assert "senders are not authenticated" in out  # the demo's [trust]: every require none
    assert out.rstrip().endswith("Ready to run (4 with a warning).")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_after_a_run_it_counts_people_cases_and_waiting_mail(tmp_path: Path) -> None:
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    with_members(config)
    box = tmp_path / "mailbox"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.eml").write_bytes(fixture_bytes("member_new_enquiry_pothole.eml"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        done = runner.invoke(app, ["run", "--once", "--config", str(config)])
    finally:
        root.handlers[:] = handlers  # `run` points a handler at the runner's stderr
        root.setLevel(level)
    assert done.exit_code == 0, done.output
    (box / "new" / "2.eml").write_bytes(fixture_bytes("member_new_enquiry_pothole.eml"))

    result = check(config)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"schema {SCHEMA_HEAD} (current); 1 member, 0 delegates, 0 officers" in out
    assert "1 open case; 0 waiting in quarantine" in out
    assert "1 message waiting; Quarantine created at the first move" in out
    assert (box / "new" / "2.eml").exists()  # looked at, not taken


def test_no_members_is_a_warning_that_says_how_to_import_them(tmp_path: Path) -> None:
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    ensure_database(load_config(config).database.url).dispose()
    found = check_database(load_config(config))
    assert found.status is Status.WARNING
    assert "0 members" in found.found
    assert any("mailbridge members import" in a for a in found.advice)


# --- the database ---------------------------------------------------------------------


def test_database_on_sqlite_and_postgresql(tmp_path: Path, db_url: str) -> None:
    config = load_config(write(tmp_path, "maildir:./mailbox", "maildir:./outbox", db_url))
    if db_url.startswith("postgresql"):
        empty = check_database(config)  # a database the administrator made for us
        assert empty.status is Status.WARNING
        assert empty.found == "reachable, no mailbridge tables yet"
        assert "postgres@127.0.0.1" in empty.where
    engine = ensure_database(db_url)
    with transaction(engine) as session:
        import_members(session, [MEMBER])
    engine.dispose()
    found = check_database(config)
    assert found.status is Status.OK, found
    assert found.found.startswith(f"schema {SCHEMA_HEAD} (current); 1 member")


def test_an_unreachable_database_fails_with_what_to_check(tmp_path: Path) -> None:
    url = "postgresql+psycopg://mailbridge:s3cret@127.0.0.1:1/mailbridge"
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox", url)
    result = check(config)
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "FAILED  database postgresql+psycopg://mailbridge:***@127.0.0.1:1/mailbridge" in out
    assert "cannot open it:" in out
    assert "check [database] url and that the database server is running" in out
    assert "s3cret" not in out and "Traceback" not in out
    assert "1 of 11 parts would stop mailbridge" in out


@pytest.mark.parametrize(
    ("revision", "status", "words"),
    [
        ("0003", Status.WARNING, f"schema 0003, this mailbridge uses {SCHEMA_HEAD}"),
        ("0099", Status.FAILED, f"schema 0099 is newer than this mailbridge knows ({SCHEMA_HEAD})"),
    ],
)
def test_a_schema_other_than_ours_is_named(
    tmp_path: Path, revision: str, status: Status, words: str
) -> None:
    config = load_config(write(tmp_path, "maildir:./mailbox", "maildir:./outbox"))
    ensure_database(config.database.url).dispose()
    with sqlite3.connect(tmp_path / "mailbridge.db") as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    found = check_database(config)
    assert (found.status, found.found) == (status, words)
    with sqlite3.connect(tmp_path / "mailbridge.db") as db:  # and left as it was
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision,)]


# --- delivery ---------------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def outbox_row(engine: Engine, n: int, status: str, **times: datetime) -> None:
    """One outbox row in `status`, with its times set as given (UTC)."""
    with transaction(engine) as session:
        outbox.enqueue(
            session, kind="acknowledgement", sender="enquiries@example.gov.uk",
            recipients=["cllr.jane.smith@example.gov.uk"], subject=f"mail {n}", raw=b"x",
            message_id=f"m{n}@example.gov.uk", case_reference=f"MQ-2026-{n:05d}", now=NOW,
        )  # fmt: skip
    with transaction(engine) as session:
        session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.message_id) == f"m{n}@example.gov.uk")
            .values(status=status, **times)
        )


@pytest.mark.parametrize(
    ("rows", "status", "found", "advice"),
    [
        ([], Status.OK, "0 sent in the last 24 hours; 0 waiting; 0 refused in 7 days", ""),
        (  # due 20 minutes ago, nothing sent for an hour: nobody is delivering
            [
                ("sent", {"sent_at": NOW - timedelta(hours=1)}),
                ("pending", {"next_attempt_at": NOW - timedelta(minutes=20)}),
            ],
            Status.WARNING,
            "1 sent in the last 24 hours; 1 waiting; 0 refused in 7 days",
            "mail due since 26 Nov 11:40 UTC is still waiting: is mailbridge run running",
        ),
        (  # a rate limit working through a backlog: sent 5 minutes ago, so it moves
            [
                ("sent", {"sent_at": NOW - timedelta(minutes=5)}),
                ("pending", {"next_attempt_at": NOW - timedelta(minutes=20)}),
            ],
            Status.OK,
            "1 sent in the last 24 hours; 1 waiting; 0 refused in 7 days",
            "",
        ),
        (  # a retry due later is not stuck
            [("pending", {"next_attempt_at": NOW + timedelta(minutes=30)})],
            Status.OK,
            "0 sent in the last 24 hours; 1 waiting; 0 refused in 7 days",
            "",
        ),
        (
            [
                ("failed", {"created_at": NOW - timedelta(days=1)}),
                ("failed", {"created_at": NOW - timedelta(days=2)}),
                ("failed", {"created_at": NOW - timedelta(days=8)}),
            ],
            Status.WARNING,
            "0 sent in the last 24 hours; 0 waiting; 2 refused in 7 days",
            "2 emails could not be delivered (cases MQ-2026-00001, MQ-2026-00002): "
            "mailbridge case show REF",
        ),
    ],
    ids=["quiet", "stuck", "rate-limited", "retry-later", "refused"],
)
def test_delivery_from_the_outbox(
    tmp_path: Path,
    migrated_db_url: str,
    rows: list[tuple[str, dict[str, datetime]]],
    status: Status,
    found: str,
    advice: str,
) -> None:
    engine = ensure_database(migrated_db_url)
    for n, (state, times) in enumerate(rows, start=1):
        outbox_row(engine, n, state, **times)
    engine.dispose()
    config = load_config(write(tmp_path, "maildir:./mailbox", "maildir:./outbox", migrated_db_url))
    finding = check_delivery(config, now=NOW)
    assert (finding.status, finding.found) == (status, found)
    assert advice in " ".join(finding.advice)
    assert bool(finding.advice) is bool(advice)


# --- retention --------------------------------------------------------------------------


@pytest.mark.usefixtures("fixed_clock")
def test_retention_says_when_it_last_ran_and_which_cases_are_held(
    tmp_path: Path, migrated_db_url: str
) -> None:
    config = load_config(write(tmp_path, "maildir:./mailbox", "maildir:./outbox", migrated_db_url))
    assert check_retention(config).found.startswith("daily at 02:00; not run yet")
    engine = ensure_database(migrated_db_url)
    (tmp_path / "council").mkdir()
    council = build_council(tmp_path / "council", engine)
    council.open_pothole_case()
    later = as_utc(council.case(REF).created_at) + timedelta(days=2)

    late = check_retention(config, now=later)
    assert late.status is Status.WARNING
    assert late.advice == (
        "no retention run for over a day: is `mailbridge run` running? "
        "(`mailbridge retention run --dry-run` shows what is due)",
    )
    holds.hold(council.services, REF, "claim CL-1", actor=audit.SERVICE, now=later)
    retention.run(council.services, later, dry_run=False, actor=audit.SERVICE)
    found = check_retention(config, now=later + timedelta(hours=3))
    assert (found.status, found.found, found.advice) == (
        Status.OK,
        f"daily at 02:00; last run {later:%d %b %Y %H:%M} UTC; 1 case on legal hold",
        (),
    )
    engine.dispose()


def test_retention_warns_when_the_daily_run_is_off(tmp_path: Path) -> None:
    off = write(tmp_path, "maildir:./mailbox", "maildir:./outbox", extra='[retention]\nrun_at = ""')
    found = check_retention(load_config(off))
    assert (found.status, found.found) == (Status.WARNING, "nothing kept yet")
    assert found.advice[0].startswith('the daily run is off (run_at = ""): run `mailbridge')


# --- storage ----------------------------------------------------------------------------


def test_a_data_dir_under_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a folder")
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    text = config.read_text().replace('data_dir = "./data"', 'data_dir = "./blocker/data"')
    config.write_text(text)
    found = check_storage(load_config(config))
    assert found.status is Status.FAILED
    assert found.found == f"{tmp_path / 'blocker'} is not a folder"
    assert found.advice == ("check [storage] data_dir",)


def test_the_virus_scanner_is_looked_for_only_when_one_is_set(tmp_path: Path) -> None:
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    assert check_scanner(load_config(config)) is None
    text = config.read_text() + '[attachments]\nscan_command = ["no-such-clamdscan", "{path}"]\n'
    config.write_text(text)
    found = check_scanner(load_config(config))
    assert found is not None and found.status is Status.WARNING
    assert (found.where, found.found) == ("no-such-clamdscan", "the virus scanner is not there")
    config.write_text(text.replace("no-such-clamdscan", sys.executable))
    found = check_scanner(load_config(config))
    ok = Finding("scanner", sys.executable, Status.OK, f"virus scan by {sys.executable}")
    assert found == ok


def test_server_accounts_are_looked_at_only_when_a_coordinator_names_one(tmp_path: Path) -> None:
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    assert check_operators(load_config(config)) is None
    assert "os_user" not in check(config).stdout  # nothing said: no noise
    support = 'email = "member.support@example.gov.uk"\n'
    linked = config.read_text().replace(support, f'{support}os_user = "{ACCOUNT}"\n')
    config.write_text(linked)
    assert check_operators(load_config(config)) == Finding(
        "accounts",
        "[[coordinators]] os_user",
        Status.OK,
        f"server accounts linked: {ACCOUNT} as member.support@example.gov.uk",
    )
    config.write_text(
        linked
        + f"""
[[coordinators]]
name = "Duty"
email = "duty@example.gov.uk"
os_user = "{ACCOUNT}"
[[coordinators]]
name = "Typo"
email = "typo@example.gov.uk"
os_user = "no-such-account-here"
"""
    )
    found = check_operators(load_config(config))
    assert found is not None and found.status is Status.WARNING
    assert found.advice == (
        "no-such-account-here (typo@example.gov.uk) is not an account on this server: "
        "correct os_user",
        f"{ACCOUNT} is the os_user of 2 coordinators: give it to one",
    )
    assert "warning accounts [[coordinators]] os_user" in check(config).stdout


# --- who can read it on the server --------------------------------------------------------


def test_files_others_may_read_are_named_with_the_chmod_that_closes_them(tmp_path: Path) -> None:
    password = tmp_path / "imap password"  # a space: the advice quotes it for the shell
    password.write_text("s3cret")
    password.chmod(0o600)
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    config.write_text(config.read_text().replace(
        'password_env = "MB_CHECK_IMAP_PASSWORD"', 'password_file = "imap password"'))  # fmt: skip
    with_members(config)  # makes the database, private
    database, data = tmp_path / "mailbridge.db", tmp_path / "data"
    data.mkdir(mode=0o700)
    assert check_files(load_config(config)).status is Status.OK
    for path, mode in ((config, 0o644), (password, 0o640), (data, 0o755), (database, 0o604)):
        path.chmod(mode)
    found = check_files(load_config(config))
    assert (found.status, found.found) == (
        Status.WARNING,
        "4 of 4 can be read by others on this server",
    )
    assert found.advice == (
        f"{config} is 0644, open to group or others on this server: chmod 600 {config}",
        f"{password} is 0640, open to group or others on this server: chmod 600 '{password}'",
        f"{data} is 0755, open to group or others on this server: chmod 700 {data}",
        f"{database} is 0604, open to group or others on this server: chmod 600 {database}",
    )
    result = check(config)
    assert result.exit_code == 0 and "warning files" in result.stdout, result.output
    assert f"→ {data} is 0755, open to group or others on this server: chmod 700 {data}" in (
        result.stdout
    )
    for path, mode in ((config, 0o600), (password, 0o400), (data, 0o700), (database, 0o600)):
        path.chmod(mode)
    found = check_files(load_config(config))
    assert (found.status, found.found) == (Status.OK, "4 readable by mailbridge's user only")


# --- a real IMAP server and a real SMTP server -------------------------------------------


def test_imap_and_smtp_are_logged_into_and_left_as_they_were(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    imap_mailbox.append(fixture_bytes("member_new_enquiry_pothole.eml"))
    imap_mailbox.append(fixture_bytes("member_new_enquiry_pothole.eml"))
    config = on_servers(tmp_path, imap_mailbox, smtp_server)
    with_members(config)
    result = check(config, MB_CHECK_IMAP_PASSWORD=imap_mailbox.password)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert (
        f"logged in as {imap_mailbox.user} (password, no encryption); INBOX holds 2 messages; "
        "IDLE; Processed and Quarantine created at the first move"
    ) in out
    assert "connected without a login (no encryption)" in out
    assert out.rstrip().endswith("Ready to run (1 with a warning).")  # senders not proven
    assert len(imap_mailbox.uids("INBOX")) == 2
    assert imap_mailbox.uids("Processed") == [] and imap_mailbox.uids("Quarantine") == []
    with imap_mailbox.client() as client:
        assert not client.folder_exists("Processed")
    assert smtp_server.messages == []


@pytest.mark.parametrize("trusted", [True, False])
def test_imaps_with_and_without_the_servers_certificate(
    tmp_path: Path, imap_mailbox: DovecotServer, trusted: bool
) -> None:
    ca = f'tls_ca_file = "{imap_mailbox.cafile}"' if trusted else ""
    url = f"imaps://{imap_mailbox.user}@localhost:{imap_mailbox.tls_port}/"
    config = write(tmp_path, url, "maildir:./outbox")
    config.write_text(config.read_text().replace("[smtp]", f"{ca}\n[smtp]", 1))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MB_CHECK_IMAP_PASSWORD", imap_mailbox.password)
        found = check_mailbox(load_config(config))
    assert found.where == url
    if trusted:
        assert found.status is Status.OK, found
        assert found.found.startswith(f"logged in as {imap_mailbox.user} (password, TLS); ")
    else:
        assert found.status is Status.FAILED
        assert "certificate we do not trust" in found.found and "tls_ca_file" in found.found
        assert found.advice == ()  # the error says what to check already


def test_smtp_starttls_with_the_servers_certificate(
    tmp_path: Path, starttls_server: SmtpServer
) -> None:
    config = write(
        tmp_path,
        "maildir:./mailbox",
        f"smtp+starttls://localhost:{starttls_server.port}",
        extra=f'tls_ca_file = "{starttls_server.cafile}"',
    )
    found = check_smtp(load_config(config))
    assert found.status is Status.OK, found
    assert found.found.startswith("connected without a login (STARTTLS)")
    assert starttls_server.messages == []


def test_a_login_in_clear_text_off_this_machine_fails_the_check_before_connecting(
    tmp_path: Path,
) -> None:
    """It used to be a warning here while `run` sent the password anyway; now `run` refuses
    it and `check` says so, in the same words, without connecting (192.0.2.7 is never
    reached: TEST-NET-1)."""
    config = load_config(write(tmp_path, "imap://jane@192.0.2.7:143/", "smtp://jane@192.0.2.7:25"))
    for found, part in ((check_mailbox(config), "mailbox"), (check_smtp(config), "smtp")):
        assert found.status is Status.FAILED, found
        assert (
            f"[{part}] url {'imap' if part == 'mailbox' else 'smtp'}://192.0.2.7 would send "
            "the login unencrypted" in found.found
        )
        assert "allow_plaintext_login = true" in found.found


def test_a_wrong_imap_password_fails_the_mailbox_only(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    config = on_servers(tmp_path, imap_mailbox, smtp_server)
    result = check(config, MB_CHECK_IMAP_PASSWORD="not-the-password")
    assert result.exit_code == 1, result.output
    out = result.stdout
    server = f"{imap_mailbox.host}:{imap_mailbox.port}"
    assert f"IMAP login to {server} as {imap_mailbox.user} failed" in out
    assert "Check [mailbox] username and password_env" in out
    assert "not-the-password" not in out
    assert "ok      smtp" in out


def test_a_missing_secret_is_a_failed_part_not_a_crash(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    config = on_servers(tmp_path, imap_mailbox, smtp_server)
    found = check_mailbox(load_config(config))  # MB_CHECK_IMAP_PASSWORD is not set
    assert found.status is Status.FAILED
    assert "MB_CHECK_IMAP_PASSWORD" in found.found


@pytest.mark.parametrize(
    ("password", "status", "words"),
    [
        ("smtp-secret", Status.OK, "logged in as mailbridge (password, no encryption)"),
        ("wrong", Status.FAILED, "SMTP login to 127.0.0.1"),
    ],
)
def test_smtp_login_is_tried_as_delivery_would(
    tmp_path: Path,
    smtp_auth_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    status: Status,
    words: str,
) -> None:
    monkeypatch.setenv("MB_CHECK_SMTP_PASSWORD", password)
    config = write(
        tmp_path,
        "maildir:./mailbox",
        f"smtp://{smtp_auth_server.host}:{smtp_auth_server.port}",
        extra='username = "mailbridge"\npassword_env = "MB_CHECK_SMTP_PASSWORD"',
    )
    found = check_smtp(load_config(config))
    assert found.status is status, found
    assert words in found.found
    assert password not in found.found  # never the secret itself
    assert smtp_auth_server.messages == []


def test_smtp_xoauth2_from_a_token_command(tmp_path: Path, smtp_auth_server: SmtpServer) -> None:
    config = write(
        tmp_path,
        "maildir:./mailbox",
        f"smtp://{smtp_auth_server.host}:{smtp_auth_server.port}",
        extra='username = "mailbridge"\n[smtp.oauth]\nprovider = "command"\n'
        'command = ["echo", "token-123"]',
    )
    found = check_smtp(load_config(config))
    assert (found.status, found.found) == (
        Status.OK,
        "logged in as mailbridge (XOAUTH2, no encryption); takes messages up to 32 MB",
    )
    assert smtp_auth_server.messages == []


def test_an_unreachable_smtp_server_says_what_to_check(tmp_path: Path) -> None:
    config = write(tmp_path, "maildir:./mailbox", "smtp://127.0.0.1:1")
    found = check_smtp(load_config(config))
    assert found.status is Status.FAILED
    assert found.found.startswith("cannot reach SMTP server 127.0.0.1:1")
    assert found.advice == ("check [smtp] url, the login settings and that the server is running",)


def test_a_server_reply_over_several_lines_is_one_line_in_the_finding() -> None:
    """A delivery error quotes the server, whose reply may run over several lines: the
    finding keeps the first, as for any error not written by us, and says what to check."""

    class Refusing:
        def probe(self) -> Probe:
            raise PermanentDeliveryError("554 5.7.1 Service unavailable\n554 5.7.1 try later")

        def close(self) -> None:
            pass

    found = _look("smtp", "smtp://smtp.example.gov.uk", Refusing)
    assert found.status is Status.FAILED
    assert found.found == "554 5.7.1 Service unavailable"
    assert found.advice == ("check [smtp] url, the login settings and that the server is running",)


# --- the small pure pieces ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "limit", "advised"),
    [
        ("smtp+starttls://smtp.office365.com:587", 0, True),
        ("smtp+starttls://smtp.office365.com:587", 60, True),
        ("smtp+starttls://smtp.office365.com:587", 30, False),
        ("smtp+starttls://SMTP.Office365.com:587", 20, False),
        ("smtp+starttls://smtp-mail.outlook.com:587", 0, True),
        ("smtp+starttls://smtp.example.gov.uk:587", 0, False),
        ("maildir:./outbox", 0, False),
    ],
)
def test_exchange_online_rate_limit_advice(
    tmp_path: Path, url: str, limit: int, advised: bool
) -> None:
    config = write(tmp_path, "maildir:./mailbox", url, extra=f"rate_limit_per_minute = {limit}")
    advice = rate_limit_advice(load_config(config))
    assert bool(advice) is advised
    if advised:
        assert advice[0].endswith(
            "set [smtp] rate_limit_per_minute = 30 so mail is paced, not refused"
        )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("outlook.office365.com", False),
        ("10.0.0.5", False),
        ("mail.example.gov.uk", False),
    ],
)
def test_loopback(host: str, expected: bool) -> None:
    assert loopback(host) is expected


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        ("imaps://user@outlook.office365.com/", "imaps://user@outlook.office365.com/"),
        ("smtp://user:pw@mail.example.org:587", "smtp://user:***@mail.example.org:587"),
        ("maildir:./mailbox", "maildir:./mailbox"),
    ],
)
def test_without_password(url: str, printed: str) -> None:
    assert without_password(url) == printed


# --- whose From is proven ----------------------------------------------------------------


def test_the_production_default_without_a_gateway_says_everyone_would_be_quarantined(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox", trust="")
    result = check(config)
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "FAILED  trust    [trust] no gateway named" in out
    assert (
        "every email from officers, coordinators, members, delegates, delivery reports would "
        "be quarantined as sender_unauthenticated"
    ) in " ".join(out.split())


def test_a_named_gateway_and_policies_are_ready() -> None:
    trust = TrustConfig.model_validate({"authserv_ids": ["mx.example.gov.uk"]})
    found = check_trust(Config(trust=trust))
    assert found.status == Status.OK
    assert found.where == "[trust] mx.example.gov.uk"
    assert found.found == (
        "officers dmarc; coordinators dmarc; members aligned; delegates aligned; "
        "delivery reports dmarc"
    )


def test_microsoft365_without_its_auth_sources_warns_that_internal_senders_do_not_count() -> None:
    trust = TrustConfig.model_validate({"microsoft365": True, "members": {"require": "none"}})
    found = check_trust(Config(trust=trust))
    assert found.status == Status.WARNING
    assert "not authenticated: members" in found.found
    assert "microsoft365_auth_sources" in found.advice[0]


# --- the web console -------------------------------------------------------------------


class _Discovery(BaseHTTPRequestHandler):
    """An OpenID provider's discovery document, or a page that is not one."""

    document: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        if self.path != "/.well-known/openid-configuration":
            self.send_error(404)
            return
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_web_console_is_looked_at_only_when_configured(tmp_path: Path, monkeypatch) -> None:
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    base = config.read_text()
    assert check_web(load_config(config)) is None

    config.write_text(base + '[web]\nbase_url = "https://enquiries.example.gov.uk"\n')
    assert check_web(load_config(config)) == Finding(
        "web", "https://enquiries.example.gov.uk", Status.OK, "sign-in by emailed link"
    )

    config.write_text(base + '[web]\nbase_url = "http://enquiries.example.gov.uk"\n')
    found = check_web(load_config(config))
    assert found is not None and found.status is Status.WARNING
    assert "plain http on a network address" in found.advice[0]

    config.write_text(base + "[web]\nemail_links = false\n")
    found = check_web(load_config(config))
    assert found is not None and found.status is Status.FAILED
    assert found.found == "nobody can sign in: email_links = false and no [web.sso]"


def test_single_sign_on_is_checked_by_reading_the_providers_discovery_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    Thread(target=server.serve_forever, daemon=True).start()
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MB_TEST_SSO_SECRET", "s3cret")
    config = write(tmp_path, "maildir:./mailbox", "maildir:./outbox")
    base = config.read_text()
    sso = (
        f'[web]\n[web.sso]\nprovider = "oidc"\nissuer = "{issuer}"\nclient_id = "mailbridge"\n'
        'client_secret_env = "MB_TEST_SSO_SECRET"\n'
    )
    try:
        _Discovery.document = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks",
        }
        config.write_text(base + sso)
        found = check_web(load_config(config))
        assert found is not None and found.status is Status.OK, found
        assert found.found == f"single sign-on by {issuer} and emailed links"

        _Discovery.document = {"issuer": issuer}
        found = check_web(load_config(config))
        assert found is not None and found.status is Status.FAILED
        assert found.found == (
            "the provider's discovery document lacks authorization_endpoint, token_endpoint, "
            "jwks_uri"
        )

        monkeypatch.delenv("MB_TEST_SSO_SECRET")
        found = check_web(load_config(config))
        assert found is not None and found.status is Status.FAILED
        assert "MB_TEST_SSO_SECRET is not set" in found.found
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("MB_TEST_SSO_SECRET", "s3cret")
    found = check_web(load_config(config))  # the provider is gone
    assert found is not None and found.status is Status.FAILED
    assert found.found.startswith("the single sign-on provider's discovery document could not")
    shown = check(config)
    assert shown.exit_code == 1
    assert "discovery document could not be read" in shown.stdout
