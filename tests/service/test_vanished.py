"""A shared mailbox on a real Dovecot: people (and other daemons) move and delete mail while
mailbridge works on it. A message gone before mailbridge moved it is an ordinary event,
logged with what was committed for it; one dragged back into the inbox is only moved again.
Nothing crashes, nothing is doubled."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import Engine, text

from mailbridge.delivery.transports.factory import open_sender
from mailbridge.mailbox.imap import ImapSource
from mailbridge.mailbox.state import DbStateStore
from mailbridge.service.daemon import Daemon, PassReport
from mailbridge.services import Services
from mailbridge.store.db import make_engine
from tests.factories import make_services, seed_directory
from tests.helpers.person import THEIR_FOLDER, BusyPerson, delete, move_back, take_to_their_folder
from tests.servers.dovecot import DovecotServer
from tests.servers.service import terminate
from tests.servers.smtp import SmtpServer
from tests.service.test_daemon import (
    NO_FLOOD_LIMITS,
    backlog,
    count_cases,
    enquiry,
    env,
    inbound_message_ids,
    mailbridge,
    serve,
    write_config,
)

STRANGER = "someone@example.org"


def imap_source(server: DovecotServer, engine: Engine, batch_size: int = 200) -> ImapSource:
    return ImapSource(
        server.host,
        server.port,
        security="plain",
        username=server.user,
        password=server.password,
        state=DbStateStore(engine),
        timeout=15,
        batch_size=batch_size,
    )


def daemon_on(server: DovecotServer, services: Services, batch_size: int = 200) -> Daemon:
    """A daemon on the mailbox that queues mail and sends none."""
    source = imap_source(server, services.engine, batch_size)
    return Daemon(services, source, lambda: open_sender(services.config), deliver=False)


def reference_of(engine: Engine, message_id: str) -> str:
    query = text(
        'SELECT c.reference FROM message m JOIN "case" c ON c.id = m.case_id '
        "WHERE m.message_id = :mid AND m.direction = 'in'"
    )
    with engine.connect() as conn:
        return str(conn.execute(query, {"mid": message_id}).scalar_one())


def stranger_email() -> tuple[str, bytes]:
    mid, raw = enquiry(0)
    return mid, raw.replace(b"raj.patel@example.gov.uk", STRANGER.encode())


@pytest.mark.parametrize("meanwhile", [delete, take_to_their_folder])
@pytest.mark.parametrize(
    ("taken", "outcome"),
    [("enquiry", "case"), ("stranger", "quarantined"), ("second copy", "duplicate")],
)
def test_a_message_a_person_takes_before_the_move_keeps_what_was_committed_and_is_logged(
    tmp_path: Path,
    engine: Engine,
    imap_mailbox: DovecotServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: Callable[[IMAPClient, int], None],
    taken: str,
    outcome: str,
) -> None:
    """The person acts after the batch's commit and before its move: the pass goes on, the
    rest of the batch is moved, and one INFO line says what had been committed for it."""
    seed_directory(engine)
    services = make_services(tmp_path, engine)
    enquiries = [enquiry(n) for n in (1, 2)]
    extra = {
        "enquiry": enquiry(3),
        "stranger": stranger_email(),
        "second copy": enquiries[0],
    }[taken]
    uids = [imap_mailbox.append(raw) for _, raw in [*enquiries, extra]]
    daemon = daemon_on(imap_mailbox, services)
    source = daemon.source
    process = daemon.processor.process_batch
    with imap_mailbox.client() as person:
        person.select_folder("INBOX")

        def commit_then_the_person_acts(*args: object, **kwargs: object) -> list:
            outcomes = process(*args, **kwargs)  # type: ignore[arg-type]
            meanwhile(person, uids[-1])
            return outcomes

        monkeypatch.setattr(daemon.processor, "process_batch", commit_then_the_person_acts)
        source.open()
        try:
            with caplog.at_level(logging.INFO):
                report = daemon.run_pass(full_scan=True)
        finally:
            source.close()

    assert report.handled == 3 and report.failed == 0
    (gone,) = [r for r in caplog.records if r.getMessage() == "message gone before it was moved"]
    assert gone.levelno == logging.INFO and gone.name == "mailbridge.service.daemon"
    assert gone.outcome == outcome  # type: ignore[attr-defined]
    if outcome == "case":
        assert gone.case == reference_of(engine, extra[0])  # type: ignore[attr-defined]
    assert imap_mailbox.uids("INBOX") == []
    assert len(imap_mailbox.uids("Processed")) == 2  # the rest of the batch
    assert imap_mailbox.uids("Quarantine") == []
    with engine.connect() as conn:
        cases = conn.execute(text('SELECT count(*) FROM "case"')).scalar_one()
    assert cases == (3 if taken == "enquiry" else 2)  # the committed case stands


@pytest.mark.parametrize(
    ("sender", "folder"), [("raj.patel@example.gov.uk", "Processed"), (STRANGER, "Quarantine")]
)
def test_mail_a_person_drags_back_into_the_inbox_is_only_moved_again(
    tmp_path: Path,
    imap_mailbox: DovecotServer,
    smtp_server: SmtpServer,
    sender: str,
    folder: str,
) -> None:
    """Recognised by its dedupe key: no second case, no second acknowledgement (or reply
    to a stranger), and back where it was."""
    config = write_config(tmp_path, imap_mailbox, smtp_server)
    imap_mailbox.append(enquiry(1, sender)[1])
    run = mailbridge("run", "--once", "--config", str(config))

    def once() -> str:
        done = subprocess.run(
            run, env=env(imap_mailbox), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = once()
    assert imap_mailbox.uids("INBOX") == [] and len(imap_mailbox.uids(folder)) == 1
    sent = len(smtp_server.messages)
    assert sent == 1
    move_back(imap_mailbox, folder)
    assert len(imap_mailbox.uids("INBOX")) == 1

    again = once()

    assert "0 new cases, 0 updates, 0 quarantined" in again, again
    assert ("1 new cases" in first) == (folder == "Processed")
    assert len(smtp_server.messages) == sent
    assert imap_mailbox.uids("INBOX") == [] and len(imap_mailbox.uids(folder)) == 1


def folder_message_ids(server: DovecotServer, folder: str) -> list[str]:
    with server.client() as client:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        if not uids:
            return []
        heads = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    return [
        message_from_bytes(h[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])["Message-ID"].strip("<> ")
        for h in heads.values()
    ]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_person_working_in_the_inbox_during_a_backlog_crashes_nothing_and_doubles_nothing(
    tmp_path: Path, imap_mailbox: DovecotServer, smtp_server: SmtpServer
) -> None:
    """A backlog of 400 enquiries; from the first case on, a person in a thread of their
    own deletes or files away some 60 of the oldest waiting messages at random moments (the
    ones mailbridge is fetching, processing and moving). Every message ends as a case or
    untouched by mailbridge, none twice; every acknowledgement goes once."""
    config = write_config(
        tmp_path, imap_mailbox, smtp_server,
        mailbox_extra="batch_size = 40\npoll_seconds = 300", extra=NO_FLOOD_LIMITS,
    )  # fmt: skip
    total = 400
    ids = backlog(imap_mailbox, total)
    seed = time.time_ns() % 10_000
    print(f"person's seed {seed}")
    person = BusyPerson(imap_mailbox, seed)
    proc, log = serve(config, imap_mailbox)
    try:
        log.wait_for("message processed", seconds=30)
        person.start()
        deadline = time.monotonic() + 60
        while imap_mailbox.uids("INBOX") and time.monotonic() < deadline:
            assert proc.poll() is None, log.text  # it must not end
            time.sleep(0.1)
        person.stop()
        assert imap_mailbox.uids("INBOX") == [], "mailbridge left mail in the inbox"
        deadline = time.monotonic() + 30  # the acknowledgements of the last batch
        while len(smtp_server.messages) < count_cases(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        person.stop()
        code = terminate(proc)
    assert code == 0
    logged = log.text
    assert "Traceback" not in logged

    inbound = inbound_message_ids(tmp_path)
    with sqlite3.connect(tmp_path / "mailbridge.db") as db:
        refs = dict(
            db.execute(
                "select m.message_id, c.reference from message m "
                "join \"case\" c on c.id = m.case_id where m.direction = 'in'"
            )
        )
    assert set(inbound.values()) <= {1}  # at most one case per message
    processed = folder_message_ids(imap_mailbox, "Processed")
    theirs = folder_message_ids(imap_mailbox, THEIR_FOLDER)
    assert sorted(set(processed)) == sorted(processed) and sorted(set(theirs)) == sorted(theirs)
    assert set(processed) | set(theirs) <= set(ids)
    deleted = set(ids) - set(processed) - set(theirs)
    # When the person and mailbridge move the same message at the same moment, Dovecot may
    # carry out both: a copy in each folder. Mailbridge still made one case of it.
    both = set(processed) & set(theirs)
    assert set(processed) <= set(inbound)  # everything mailbridge moved is a case
    assert set(inbound) - set(processed) <= set(theirs) | deleted  # or the person took it
    untouched = (set(theirs) | deleted) - set(inbound)
    assert len(inbound) + len(untouched) == total  # a case, or never seen by mailbridge

    # A case whose message the person took before mailbridge moved it is logged as such.
    gone = [line for line in logged.splitlines() if "message gone before it was moved" in line]
    gone_refs = {refs[m] for m in inbound if m not in processed}
    assert {ref for ref in gone_refs if any(f'case="{ref}"' in line for line in gone)} == gone_refs

    acks = Counter(
        message_from_bytes(m.content, policy=policy.default)["Message-ID"]
        for m in smtp_server.messages
    )
    assert set(acks.values()) == {1} and len(acks) == len(inbound)
    print(
        f"{total} messages: {len(inbound)} cases, {len(theirs)} filed and {len(deleted)} deleted "
        f"by the person ({len(untouched)} before mailbridge saw them, {len(gone_refs)} after "
        f"their case was committed, {len(both)} moved by both at once), "
        f"{len(person.errors)} of their actions missed"
    )
    assert len(gone_refs) + len(untouched) > 0, "the person took nothing: nothing was proven"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_daemons_racing_on_one_mailbox_make_one_case_of_each_message(
    tmp_path: Path, db_url: str, engine: Engine, imap_mailbox: DovecotServer
) -> None:
    """Two passes in two threads, each with its own connection to the mailbox and the
    database, start on the same 200-message backlog at the same moment: both fetch every
    message, one commits each first and the other finds it handled; whichever moves second
    finds it gone. Neither raises; every message is one case with one acknowledgement."""
    seed_directory(engine)
    total = 200
    ids = backlog(imap_mailbox, total)
    limits = {"new_cases_per_sender_per_hour": 1000, "new_cases_per_sender_per_day": 1000}
    daemons = []
    for _ in range(2):
        services = make_services(tmp_path, make_engine(db_url), limits=limits)
        daemons.append(daemon_on(imap_mailbox, services, batch_size=25))
    together = threading.Barrier(2)
    errors: list[BaseException] = []
    reports: list[PassReport] = []

    def serve(daemon: Daemon) -> None:
        try:
            daemon.source.open()
            together.wait()
            reports.append(daemon.run_pass(full_scan=True))
            daemon.source.close()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(d,)) for d in daemons]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    for daemon in daemons:
        daemon.services.engine.dispose()

    assert errors == []
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT message_id FROM message WHERE direction = 'in'"))
        inbound = Counter(r[0] for r in rows)
        cases = conn.execute(text('SELECT count(*) FROM "case"')).scalar_one()
        acks = conn.execute(text("SELECT count(DISTINCT message_id) FROM outbox")).scalar_one()
    assert sorted(inbound) == sorted(ids) and set(inbound.values()) == {1}
    assert cases == total and acks == total
    assert imap_mailbox.uids("INBOX") == []
    processed = folder_message_ids(imap_mailbox, "Processed")
    assert set(processed) == set(ids)
    # Both moving one message at the same moment, Dovecot may carry out both: two copies.
    print(
        f"cases opened by each: {[r.cases for r in reports]}, found handled by the other: "
        f"{[r.duplicates for r in reports]}; {len(processed) - total} moved by both at once"
    )
    assert sum(r.duplicates for r in reports) > 0, "they never raced: nothing was proven"
