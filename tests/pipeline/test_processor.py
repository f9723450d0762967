"""Batches: one transaction per batch, what the database knows read once, parses done ahead.

`Processor.process_batch` is driven directly with fixture mail; the last tests run the
daemon over a Maildir in batches of two with a real parse worker process.
"""

from __future__ import annotations

import logging
import mailbox
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func
from sqlmodel import Session, select

from mailbridge.cases import records
from mailbridge.delivery import outbox
from mailbridge.delivery.transports.factory import open_sender
from mailbridge.mail.parsing import MAX_PARTS, ParsedEmail, parse
from mailbridge.mailbox.base import Destination
from mailbridge.mailbox.maildir import MaildirSource, maildir_drop
from mailbridge.pipeline import steps
from mailbridge.pipeline.outcomes import AlreadyHandled, CaseOpened, Failed, Quarantined
from mailbridge.pipeline.parse import ParsePool, parse_or_none
from mailbridge.pipeline.processor import Processor
from mailbridge.pipeline.work import BatchFacts
from mailbridge.service.daemon import Daemon
from mailbridge.services import Services
from mailbridge.store.db import create_schema, make_engine, rows_later, transaction
from mailbridge.store.models import (
    Attachment,
    Case,
    Event,
    Message,
    OutboxMessage,
    ProcessingFailure,
)
from tests.factories import add_person, fixture_bytes, make_services, seed_directory
from tests.helpers.mail import many_parts

POTHOLE = "member_new_enquiry_pothole.eml"
DELEGATE = "delegate_writes_for_member.eml"
STRANGER = "unknown_sender_enquiry.eml"
LOOP = "our_own_acknowledgement_looped_back.eml"
LONG_NAMES = "attachment_very_long_filenames_rfc2231_continuations.eml"


# Fixture mail that opens a case once its sender is registered (named, not globbed: the
# corpus grows with mail that is meant to be refused). Left out: a reply (In-Reply-To) to
# one of these, which belongs to that case.
CASE_MAIL = [
    "attachment_filenames_path_traversal_and_control_chars.eml",
    "attachment_very_long_filenames_rfc2231_continuations.eml",
    "attachments_with_duplicate_filenames.eml",
    "delegate_writes_for_member.eml",
    "member_enquiry_8bit_body_without_charset.eml",
    "member_enquiry_base64_utf8_text_body.eml",
    "member_enquiry_html_only_body.eml",
    "member_enquiry_inline_images_related.eml",
    "member_enquiry_iso8859_1_8bit_thunderbird.eml",
    "member_enquiry_iso8859_1_label_with_windows1252_quotes.eml",
    "member_enquiry_unknown_8bit_charset.eml",
    "member_enquiry_windows1252_quoted_printable.eml",
    "member_enquiry_with_large_attachment.eml",
    "member_enquiry_with_photo_and_pdf.eml",
    "member_enquiry_without_message_id.eml",
    "member_forwards_resident_emails_as_attachments.eml",
    "member_new_enquiry_pothole.eml",
    "received_time_differs_from_date_header.eml",
    "subject_utf8_base64_encoded_words_folded.eml",
]


def register_fixture_senders(engine: Engine) -> None:
    """The councillors who wrote CASE_MAIL, so all of it opens cases."""
    senders = {parse(fixture_bytes(name)).from_address for name in CASE_MAIL}
    for address in sorted(a for a in senders if a and a.endswith("@members.example-county.gov.uk")):
        add_person(engine, "member", address, address)


def seeded(tmp_path: Path, engine: Engine, **sections: dict) -> Services:
    seed_directory(engine)
    register_fixture_senders(engine)
    return make_services(tmp_path, engine, **sections)


@pytest.fixture
def services(tmp_path: Path, engine: Engine) -> Services:
    return seeded(tmp_path, engine)


def items(*names: str) -> list[tuple[bytes, None]]:
    return [(fixture_bytes(name), None) for name in names]


def key_of(name: str) -> str:
    return parse(fixture_bytes(name)).dedupe_key


def parsed_of(*names: str) -> list[ParsedEmail]:
    return [parse(fixture_bytes(name)) for name in names]


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def event_kinds(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Event.kind)).all())


def event_details(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Event.detail)).all())


def references(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.exec(select(Case.reference)).all())


# --- one batch ------------------------------------------------------------------------


def test_the_same_message_twice_in_one_batch_opens_one_case(services: Services) -> None:
    outcomes = Processor(services).process_batch(items(POTHOLE, POTHOLE, DELEGATE))
    assert isinstance(outcomes[0], CaseOpened)
    assert outcomes[1] == AlreadyHandled(key_of(POTHOLE), Destination.PROCESSED)
    assert isinstance(outcomes[2], CaseOpened)
    # The duplicate's savepoint took nothing with it: references stay gap-free.
    assert references(services.engine) == ["MQ-2026-00001", "MQ-2026-00002"]
    assert [o.reference for o in outcomes if isinstance(o, CaseOpened)] == [
        "MQ-2026-00001",
        "MQ-2026-00002",
    ]
    assert count(services.engine, Case) == 2
    assert count(services.engine, OutboxMessage) == 2  # one acknowledgement per case
    with Session(services.engine) as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
    assert sorted(m.dedupe_key or "" for m in inbound) == sorted(
        [key_of(POTHOLE), key_of(DELEGATE)]
    )


def test_a_message_committed_by_an_earlier_batch_is_known_to_the_next(
    services: Services,
) -> None:
    first = Processor(services).process_batch(items(POTHOLE, STRANGER))
    assert isinstance(first[0], CaseOpened) and isinstance(first[1], Quarantined)

    with Session(services.engine) as session:
        facts = BatchFacts.load(session, parsed_of(POTHOLE, STRANGER, DELEGATE))
    assert facts.dispositions == {key_of(POTHOLE): "case", key_of(STRANGER): "quarantined"}
    assert facts.failing == frozenset()

    # Steps that stop at skip_handled: anything it does not recognise ends as a failure.
    chosen = [steps.store_raw, steps.parse, steps.skip_handled]
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(services.engine, "before_cursor_execute", record)
    try:
        again = Processor(services, chosen).process_batch(items(POTHOLE, STRANGER, POTHOLE))
    finally:
        event.remove(services.engine, "before_cursor_execute", record)
    assert again == [
        AlreadyHandled(key_of(POTHOLE), Destination.PROCESSED),
        AlreadyHandled(key_of(STRANGER), Destination.QUARANTINE),
        AlreadyHandled(key_of(POTHOLE), Destination.PROCESSED),
    ]
    # The batch asked once for all its keys and once for its Message-IDs, not per message.
    lookups = [s for s in statements if "disposition" in s and s.lstrip().startswith("SELECT")]
    assert len(lookups) == 2, lookups

    full = Processor(services).process_batch(items(POTHOLE, DELEGATE))
    assert isinstance(full[0], AlreadyHandled) and isinstance(full[1], CaseOpened)
    assert count(services.engine, Case) == 2


def explode(work: steps.Work, services: Services) -> None:
    raise RuntimeError("simulated bug in a processing step")


def test_a_failure_known_to_the_batch_is_forgotten_when_the_message_succeeds(
    services: Services,
) -> None:
    chosen = list(steps.STEPS)
    chosen.insert(chosen.index(steps.route), explode)
    [failed] = Processor(services, chosen).process_batch(items(POTHOLE))
    assert isinstance(failed, Failed) and failed.attempts == 1
    with Session(services.engine) as session:
        facts = BatchFacts.load(session, parsed_of(POTHOLE))
    assert facts.failing == {key_of(POTHOLE)}
    assert facts.dispositions == {}  # a failure is not a handled message

    outcomes = Processor(services).process_batch(items(DELEGATE, POTHOLE))
    assert [type(o) for o in outcomes] == [CaseOpened, CaseOpened]
    assert count(services.engine, ProcessingFailure) == 0


def explode_on_stranger(work: steps.Work, services: Services) -> None:
    if work.parsed is not None and work.parsed.dedupe_key == key_of(STRANGER):
        raise RuntimeError("simulated bug for one message")


def statements_of(engine: Engine) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement.lstrip().upper())

    return seen


def test_a_batch_without_errors_is_stored_without_a_savepoint_per_message(
    services: Services,
) -> None:
    statements = statements_of(services.engine)
    outcomes = Processor(services).process_batch(items(POTHOLE, STRANGER, DELEGATE))
    assert [type(o) for o in outcomes] == [CaseOpened, Quarantined, CaseOpened]
    assert not [s for s in statements if "SAVEPOINT" in s]
    assert references(services.engine) == ["MQ-2026-00001", "MQ-2026-00002"]


def test_one_failing_message_sends_the_batch_message_by_message(services: Services) -> None:
    """The first attempt rolls back whole; the second keeps the others' effects and records
    the failure, with references as if the first attempt had never been."""
    chosen = list(steps.STEPS)
    chosen.insert(chosen.index(steps.route), explode_on_stranger)
    statements = statements_of(services.engine)
    outcomes = Processor(services, chosen).process_batch(items(POTHOLE, STRANGER, DELEGATE))
    assert [type(o) for o in outcomes] == [CaseOpened, Failed, CaseOpened]
    assert [s for s in statements if s.startswith("SAVEPOINT")]  # the careful path ran
    assert references(services.engine) == ["MQ-2026-00001", "MQ-2026-00002"]
    assert count(services.engine, Case) == 2
    assert count(services.engine, OutboxMessage) == 2
    assert count(services.engine, ProcessingFailure) == 1
    assert services.blobs._pending is None  # the first attempt's blobs were not kept aside
    # Each case's events once: none left over from the rolled back first attempt.
    assert sorted(event_kinds(services.engine)) == sorted(
        ["case_opened", "acknowledgement_queued"] * 2
    )


def note_then_explode_on_stranger(work: steps.Work, services: Services) -> None:
    """A bug after the message already queued an event and an email of its own."""
    records.add_event(work.session, None, "probe", work.dedupe_key)
    outbox.enqueue(
        work.session,
        kind="probe",
        sender="enquiries@example.gov.uk",
        recipients=["member.support@example.gov.uk"],
        subject=work.dedupe_key,
        raw=b"Subject: probe\r\n\r\nprobe\r\n",
        message_id=f"probe.{work.dedupe_key.strip('<>')}",
    )
    explode_on_stranger(work, services)


def test_events_and_mail_of_a_failed_message_go_with_it(services: Services) -> None:
    """Events and outgoing mail wait to be inserted together; a failing message's waiting
    rows are dropped, the others' are committed with their cases."""
    chosen = list(steps.STEPS)
    chosen.insert(chosen.index(steps.route), note_then_explode_on_stranger)
    outcomes = Processor(services, chosen).process_batch(items(POTHOLE, STRANGER, DELEGATE))
    assert [type(o) for o in outcomes] == [CaseOpened, Failed, CaseOpened]
    expected = sorted([key_of(POTHOLE), key_of(DELEGATE)])
    with Session(services.engine) as session:
        probes = session.exec(select(Event.detail).where(Event.kind == "probe")).all()
        mails = session.exec(
            select(OutboxMessage.subject).where(OutboxMessage.kind == "probe")
        ).all()
    assert sorted(probes) == expected
    assert sorted(mails) == expected


def note_in_the_log_then_explode_on_stranger(work: steps.Work, services: Services) -> None:
    logging.getLogger("mailbridge.probe").info("noted", extra={"key": work.dedupe_key})
    explode_on_stranger(work, services)


def test_what_a_rolled_back_attempt_logged_is_not_logged(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole-batch attempt rolls back and the batch runs again message by message:
    each committed message's lines once, none for the message that failed."""
    chosen = list(steps.STEPS)
    chosen.insert(chosen.index(steps.route), note_in_the_log_then_explode_on_stranger)
    caplog.set_level(logging.INFO)
    outcomes = Processor(services, chosen).process_batch(items(POTHOLE, STRANGER, DELEGATE))
    assert [type(o) for o in outcomes] == [CaseOpened, Failed, CaseOpened]
    noted = [r.key for r in caplog.records if r.getMessage() == "noted"]  # type: ignore[attr-defined]
    assert noted == [key_of(POTHOLE), key_of(DELEGATE)]
    processed = [r for r in caplog.records if r.getMessage() == "message processed"]
    assert len(processed) == 2
    failed = [r for r in caplog.records if r.getMessage() == "message processing failed"]
    assert len(failed) == 1


def test_a_batch_that_commits_logs_its_lines_once_in_order(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = list(steps.STEPS)
    chosen.insert(chosen.index(steps.route), note_in_the_log_then_explode_on_stranger)
    caplog.set_level(logging.INFO)
    Processor(services, chosen).process_batch(items(POTHOLE, DELEGATE))
    noted = [r.key for r in caplog.records if r.getMessage() == "noted"]  # type: ignore[attr-defined]
    assert noted == [key_of(POTHOLE), key_of(DELEGATE)]


def test_a_full_disk_costs_no_attempt_and_quarantines_nothing(services: Services) -> None:
    """Blobs cannot be written: the batch is not committed, its mail stays in the inbox,
    no message is charged a failed attempt (three would quarantine every email that
    arrived while the disk was full), and all of it goes through once there is room."""
    services.blobs.put(b"seed")
    db = services.blobs._connection()
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.OperationalError, match="full"):  # fill what room is left
        for n in range(10_000):
            services.blobs.put(n.to_bytes(4, "big") * 256)
    for _ in range(3):
        outcomes = Processor(services).process_batch(items(POTHOLE, DELEGATE))
        assert [type(o) for o in outcomes] == [Failed, Failed]
        assert all("full" in o.error for o in outcomes if isinstance(o, Failed))
    assert count(services.engine, ProcessingFailure) == 0
    assert count(services.engine, Case) == 0
    db.execute("PRAGMA max_page_count = 1000000")  # room again
    outcomes = Processor(services).process_batch(items(POTHOLE, DELEGATE))
    assert [type(o) for o in outcomes] == [CaseOpened, CaseOpened]


def test_rows_later_wait_for_the_end_of_the_block(engine: Engine) -> None:
    with transaction(engine) as session:
        with rows_later(session):
            for n in range(3):
                records.add_event(session, None, "note", f"row {n}")
            records.add_event(session, None, "note", "with an actor", actor="coordinator")
            assert session.exec(select(func.count()).select_from(Event)).one() == 0
        assert session.exec(select(func.count()).select_from(Event)).one() == 4
        records.add_event(session, None, "note", "outside: at once")  # no block: inserted now
        assert session.exec(select(func.count()).select_from(Event)).one() == 5
    with pytest.raises(RuntimeError), transaction(engine) as session, rows_later(session):
        records.add_event(session, None, "note", "never")
        raise RuntimeError("the transaction fails")
    assert sorted(event_details(engine)) == [
        "outside: at once",
        "row 0",
        "row 1",
        "row 2",
        "with an actor",
    ]


# --- parses done ahead ----------------------------------------------------------------


def state(engine: Engine) -> dict[str, list[tuple]]:
    """What a batch left behind, free of ids and of orderings that depend on the database."""
    with Session(engine) as session:
        cases = session.exec(select(Case)).all()
        messages = session.exec(select(Message).where(Message.direction == "in")).all()
        outbox = session.exec(select(OutboxMessage)).all()
        found = {
            "cases": [
                (c.reference, c.subject, c.service_area, c.district, c.received_at, c.response_due)
                for c in cases
            ],
            "inbound": [
                (m.dedupe_key, m.disposition, m.sender, m.subject, m.received_at, m.raw_size)
                for m in messages
            ],
            "outbox": [(o.case_reference, o.kind, o.recipients, o.subject) for o in outbox],
        }
    return {name: sorted(rows, key=repr) for name, rows in found.items()}


def test_a_batch_parsed_ahead_ends_as_one_parsed_here(tmp_path: Path, engine: Engine) -> None:
    names = (POTHOLE, STRANGER, DELEGATE, POTHOLE, LOOP, LONG_NAMES)
    ahead = seeded(tmp_path / "ahead", engine)
    limit = ahead.config.storage.max_filename_length
    parsed = [parse_or_none(raw, limit) for raw, _ in items(*names)]
    parsed[2] = None  # a worker could not parse it: the pipeline parses it itself
    with_parse = Processor(ahead).process_batch(items(*names), parsed=parsed)

    other = make_engine(f"sqlite:///{tmp_path / 'here.db'}")
    create_schema(other)
    try:
        here = seeded(tmp_path / "here", other)
        without = Processor(here).process_batch(items(*names))
        assert with_parse == without
        assert state(engine) == state(other)
    finally:
        other.dispose()
    assert [type(o) for o in with_parse] == [
        CaseOpened, Quarantined, CaseOpened, AlreadyHandled, Quarantined, CaseOpened,
    ]  # fmt: skip


def test_a_parse_given_to_the_batch_is_the_one_used(services: Services) -> None:
    raw = fixture_bytes(LONG_NAMES)
    short = parse(raw, max_filename_length=16)  # not what this config would produce
    assert services.config.storage.max_filename_length > 16
    [outcome] = Processor(services).process_batch([(raw, None)], parsed=[short])
    assert isinstance(outcome, CaseOpened)
    with Session(services.engine) as session:
        names = session.exec(select(Attachment.filename)).all()
    assert names and sorted(names) == sorted(a.filename for a in short.attachments)
    assert all(len(name) <= 16 for name in names)


# --- the daemon, batch by batch with a parse worker -----------------------------------


def inbox(services: Services) -> Path:
    return Path(services.config.mailbox.url.split(":", 1)[1])


def folder_count(services: Services, folder: str | None) -> int:
    box = mailbox.Maildir(inbox(services), create=False)
    if folder is None:
        return len(box)
    return len(box.get_folder(folder)) if folder in box.list_folders() else 0


def pooled_daemon(services: Services, pool: ParsePool) -> Daemon:
    source = MaildirSource(inbox(services), batch_size=services.config.mailbox.batch_size)
    return Daemon(services, source, lambda: open_sender(services.config), parse_pool=pool)


def assert_one_case_per_message(services: Services, names: list[str]) -> None:
    with Session(services.engine) as session:
        inbound = session.exec(select(Message).where(Message.direction == "in")).all()
        cases = session.exec(select(Case)).all()
    assert sorted(m.dedupe_key or "" for m in inbound) == sorted({key_of(n) for n in names})
    assert all(m.disposition == "case" and m.case_id is not None for m in inbound)
    assert sorted(m.case_id for m in inbound) == sorted(c.id for c in cases)  # one each


@pytest.fixture
def batched(tmp_path: Path, engine: Engine) -> Services:
    return seeded(tmp_path, engine, mailbox={"batch_size": 2})


def test_the_daemon_with_a_parse_worker_opens_one_case_per_message(
    batched: Services, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [*CASE_MAIL, POTHOLE]:  # the pothole enquiry arrives twice
        raw = fixture_bytes(name)
        maildir_drop(inbox(batched), raw, parse(raw).received_at)
    pool = ParsePool(1, batched.config.storage.max_filename_length)
    report = pooled_daemon(batched, pool).run_once()

    assert pool._pool is None  # the worker was started and has been shut down again
    assert [r.message for r in caplog.records if r.name == "mailbridge.pipeline.parse"] == []
    assert (report.cases, report.duplicates) == (len(CASE_MAIL), 1)
    assert (report.quarantined, report.failed) == (0, 0)
    assert report.sent == count(batched.engine, OutboxMessage) >= len(CASE_MAIL)
    assert_one_case_per_message(batched, CASE_MAIL)
    assert folder_count(batched, None) == 0
    assert folder_count(batched, "Processed") == len(CASE_MAIL) + 1


def test_a_dead_parse_worker_is_replaced_at_the_next_pass(
    batched: Services, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = CASE_MAIL[:2], CASE_MAIL[2:4]
    for name in first:
        maildir_drop(inbox(batched), fixture_bytes(name))
    pool = ParsePool(1, batched.config.storage.max_filename_length)
    batched.engine.dispose()  # as the daemon does before it forks
    pool.start()
    daemon = pooled_daemon(batched, pool)
    try:
        assert pool._pool is not None
        [dead] = list(pool._pool._processes)  # type: ignore[attr-defined]
        os.kill(dead, signal.SIGKILL)
        daemon.run_pass(full_scan=True)  # parsed here meanwhile
        assert pool.broken
        for name in second:
            maildir_drop(inbox(batched), fixture_bytes(name))
        daemon.run_pass(full_scan=True)
        assert not pool.broken and pool._pool is not None
        [alive] = list(pool._pool._processes)  # type: ignore[attr-defined]
        assert alive != dead
    finally:
        pool.close()
    assert "parse workers restarted" in {r.message for r in caplog.records}
    assert_one_case_per_message(batched, first + second)


def test_a_dead_parse_worker_only_means_parsing_here(
    batched: Services, caplog: pytest.LogCaptureFixture
) -> None:
    names = CASE_MAIL[:5]
    for name in names:
        raw = fixture_bytes(name)
        maildir_drop(inbox(batched), raw, parse(raw).received_at)
    pool = ParsePool(1, batched.config.storage.max_filename_length)
    batched.engine.dispose()  # as the daemon does before it forks
    pool.start()
    try:
        assert pool._pool is not None
        [worker] = list(pool._pool._processes)  # type: ignore[attr-defined]
        os.kill(worker, signal.SIGKILL)
        report = pooled_daemon(batched, pool).run_once()
    finally:
        pool.close()
    # Noticed at submit (the pool already knew) or at result (the batch's parse failed).
    fallbacks = {r.message for r in caplog.records if r.name == "mailbridge.pipeline.parse"}
    assert fallbacks & {"parse workers unavailable", "parse worker failed; parsing here"}
    assert (report.cases, report.failed, report.quarantined) == (len(names), 0, 0)
    assert_one_case_per_message(batched, names)
    assert folder_count(batched, None) == 0


def test_a_message_built_to_stall_is_quarantined_and_its_batch_goes_on(
    services: Services,
) -> None:
    """20,000 parts from a known member: quarantined as too complex, read only up to the
    limit; the enquiries either side of it open their cases in the same batch."""
    batch = [*items(POTHOLE), (many_parts(20_000), None), *items(DELEGATE)]
    outcomes = Processor(services).process_batch(batch)
    assert [type(o) for o in outcomes] == [CaseOpened, Quarantined, CaseOpened]
    stalled = outcomes[1]
    assert isinstance(stalled, Quarantined)
    assert (stalled.code, stalled.reason) == (
        "too_complex",
        f"the message is more than mailbridge reads: more than {MAX_PARTS} MIME parts",
    )
