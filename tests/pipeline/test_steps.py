"""The journey of an email on the embedded default: Maildir in, SQLite/PostgreSQL, Maildir out.

Each test tells a story: mail is dropped into the shared mailbox, one pass of the daemon
runs, and we look at cases, the outbox Maildir and the mailbox folders.
"""

from __future__ import annotations

import mailbox
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import get_args

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from mailbridge.cases.decisions import Decision
from mailbridge.mail.parsing import parse
from mailbridge.mailbox.maildir import maildir_drop
from mailbridge.pipeline import apply, quarantine, steps
from mailbridge.pipeline.outcomes import AlreadyHandled, CaseOpened, Failed, Quarantined
from mailbridge.pipeline.processor import Processor, retry_quarantined
from mailbridge.privacy.audit import SERVICE
from mailbridge.services import Services
from mailbridge.store.models import (
    Attachment,
    Case,
    Event,
    Message,
    OutboxMessage,
    ProcessingFailure,
    QuarantineItem,
)
from tests.factories import add_person, fixture_bytes, make_services, seed_directory
from tests.helpers.council import daemon_for


@pytest.fixture
def services(tmp_path: Path, engine: Engine) -> Services:
    seed_directory(engine)
    return make_services(tmp_path, engine)


def drop(services: Services, *names: str) -> None:
    root = Path(services.config.mailbox.url.split(":", 1)[1])
    for name in names:
        raw = fixture_bytes(name)
        # As if the MTA delivered it when its Received header says, so deadlines are fixed.
        maildir_drop(root, raw, parse(raw).received_at)


def folder_count(services: Services, folder: str | None) -> int:
    root = Path(services.config.mailbox.url.split(":", 1)[1])
    box = mailbox.Maildir(root, create=False)
    if folder is None:
        return len(box)
    return len(box.get_folder(folder)) if folder in box.list_folders() else 0


def sent_messages(services: Services) -> list[EmailMessage]:
    root = Path(services.config.smtp.url.split(":", 1)[1])
    if not root.exists():
        return []
    box = mailbox.Maildir(root, create=False)
    return [message_from_bytes(bytes(m), policy=policy.default) for m in box]  # type: ignore[misc]


def test_member_email_becomes_case_with_acknowledgement(services: Services) -> None:
    drop(services, "member_new_enquiry_pothole.eml")
    report = daemon_for(services).run_pass(full_scan=True)

    assert (report.cases, report.quarantined, report.sent) == (1, 0, 1)
    with Session(services.engine) as session:
        case = session.exec(select(Case)).one()
        assert case.reference == "MQ-2026-00001"
        assert case.subject == "Pothole on Mill Lane, Little Bowden"
        assert case.service_area == "Highways"
        assert case.directorate == "Environment and Transport"
        assert case.district == "Harborough"
        # Received 09:15 on Tuesday 24 November 2026 (server time from Received header).
        assert str(case.acknowledge_due) == "2026-11-25"
        assert str(case.response_due) == "2026-12-08"
        kinds = session.exec(select(Event.kind).where(Event.case_id == case.id)).all()
        assert {"case_opened", "acknowledgement_queued"} <= set(kinds)
        outgoing = session.exec(select(OutboxMessage)).one()
        assert outgoing.status == "sent"

    [ack] = sent_messages(services)
    assert ack["Subject"].startswith("[MQ-2026-00001] ")
    assert ack["To"] == "cllr.jane.smith@example.gov.uk"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<CAF1234567.pothole@mail.example.gov.uk>"
    assert "<CAF1234567.pothole@mail.example.gov.uk>" in ack["References"]
    assert ack["Message-ID"] == f"<{outgoing.message_id}>"
    text = ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Tuesday 8 December 2026" in text
    assert "counted from" not in text  # received in office hours: counted from that day
    assert "MQ-2026-00001" in text and "status" in text
    html = ack.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<strong>Tuesday 8 December 2026</strong>" in html

    assert folder_count(services, None) == 0
    assert folder_count(services, "Processed") == 1


def test_an_email_after_the_cut_off_is_counted_from_the_next_working_day(
    services: Services,
) -> None:
    # Friday 27 November 2026, 17:40: after the 17:00 cut-off, so Monday 30 November counts
    # as the day of receipt (not counted) and the reply is due ten working days later.
    raw = (
        fixture_bytes("member_new_enquiry_pothole.eml")
        .replace(b"Tue, 24 Nov 2026 09:15", b"Fri, 27 Nov 2026 17:40")
        .replace(b"Tue, 24 Nov 2026 09:14:55", b"Fri, 27 Nov 2026 17:39:55")
    )
    root = Path(services.config.mailbox.url.split(":", 1)[1])
    maildir_drop(root, raw, parse(raw).received_at)
    daemon_for(services).run_pass(full_scan=True)
    with Session(services.engine) as session:
        case = session.exec(select(Case)).one()
    assert (str(case.acknowledge_due), str(case.response_due)) == ("2026-12-01", "2026-12-14")
    [ack] = sent_messages(services)
    text = " ".join(ack.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert "Received: Friday 27 November 2026" in text
    assert (
        "Reply due by: Monday 14 December 2026 (10 working days) counted from Monday 30 "
        "November 2026, the next working day, as your email arrived outside office hours"
    ) in text


def test_delegate_opens_case_for_their_member_and_both_are_acknowledged(
    services: Services,
) -> None:
    drop(services, "delegate_writes_for_member.eml")
    daemon_for(services).run_pass(full_scan=True)
    with Session(services.engine) as session:
        case = session.exec(select(Case)).one()
        ids = seed_ids(session)
        assert case.member_id == ids["cllr.jane.smith@example.gov.uk"]
        assert case.submitter_id == ids["tom.baker@example.gov.uk"]
        assert case.service_area == "School Transport"
    [ack] = sent_messages(services)
    assert ack["To"] == "cllr.jane.smith@example.gov.uk"
    assert ack["Cc"] == "tom.baker@example.gov.uk"


def seed_ids(session: Session) -> dict[str, int]:
    from mailbridge.store.models import Person

    return {p.email: p.id for p in session.exec(select(Person)).all()}  # type: ignore[misc]


def test_unknown_sender_and_our_own_loop_are_quarantined_with_reasons(
    services: Services,
) -> None:
    drop(services, "unknown_sender_enquiry.eml", "our_own_acknowledgement_looped_back.eml")
    report = daemon_for(services).run_pass(full_scan=True)
    # The stranger gets one polite reply; our own mail coming back gets nothing.
    assert (report.cases, report.quarantined, report.sent) == (0, 2, 1)
    items = {i.reason_code: i for i in quarantine.list_items(services)}
    assert set(items) == {"unknown_sender", "loop"}
    assert "resident@example.org is not a registered member" in items["unknown_sender"].reason
    assert folder_count(services, "Quarantine") == 2
    assert folder_count(services, None) == 0
    [reply] = sent_messages(services)
    assert reply["To"] == "resident@example.org"
    assert reply["Subject"].startswith("This address is for county councillors")
    assert reply["Auto-Submitted"] == "auto-replied"


def test_redelivered_message_opens_one_case(services: Services) -> None:
    drop(services, "member_new_enquiry_pothole.eml", "member_new_enquiry_pothole.eml")
    report = daemon_for(services).run_pass(full_scan=True)
    assert (report.cases, report.duplicates) == (1, 1)
    drop(services, "member_new_enquiry_pothole.eml")
    report = daemon_for(services).run_pass(full_scan=True)
    assert (report.cases, report.duplicates) == (0, 1)
    with Session(services.engine) as session:
        assert session.exec(select(func.count()).select_from(Case)).one() == 1
        assert session.exec(select(func.count()).select_from(OutboxMessage)).one() == 1
    assert folder_count(services, "Processed") == 3


def test_crash_after_commit_before_move_is_moved_next_time_without_a_second_case(
    services: Services,
) -> None:
    raw = fixture_bytes("member_new_enquiry_pothole.eml")
    assert isinstance(Processor(services).process(raw), CaseOpened)  # committed, never moved
    drop(services, "member_new_enquiry_pothole.eml")
    report = daemon_for(services).run_pass(full_scan=True)
    assert (report.cases, report.duplicates) == (0, 1)
    assert folder_count(services, "Processed") == 1


def test_oversized_attachment_is_refused_and_noted_but_case_opens(
    tmp_path: Path, engine: Engine
) -> None:
    seed_directory(engine)
    services = make_services(tmp_path, engine, storage={"max_attachment_bytes": 5000})
    drop(services, "member_enquiry_with_large_attachment.eml")
    daemon_for(services).run_pass(full_scan=True)
    with Session(services.engine) as session:
        case = session.exec(select(Case)).one()
        assert case.service_area == "Adult Social Care"
        atts = {a.filename: a for a in session.exec(select(Attachment)).all()}
        assert atts["scanned-letter.pdf"].refused_reason
        assert atts["scanned-letter.pdf"].sha256 is None
        assert atts["scanned-letter.pdf"].size == 10240
        assert atts["note.txt"].refused_reason is None
        assert services.blobs.get(atts["note.txt"].sha256 or "").startswith(b"Visits were cut")
        refused = session.exec(select(Event).where(Event.kind == "attachment_refused")).one()
        assert "scanned-letter.pdf" in refused.detail
    [ack] = sent_messages(services)
    assert "scanned-letter.pdf" in ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_raw_message_is_kept_content_addressed(services: Services) -> None:
    raw = fixture_bytes("member_new_enquiry_pothole.eml")
    Processor(services).process(raw)
    with Session(services.engine) as session:
        message = session.exec(select(Message).where(Message.direction == "in")).one()
    assert services.blobs.get(message.raw_sha256 or "") == raw


def explode_on_mill_lane(work: steps.Work, services: Services) -> None:
    if work.parsed and "Mill Lane" in work.parsed.subject:
        raise RuntimeError("simulated bug in a processing step")


def test_poison_message_is_retried_then_quarantined_while_others_go_on(
    services: Services,
) -> None:
    chosen = list(steps.STEPS)
    chosen.insert(chosen.index(steps.route), explode_on_mill_lane)
    drop(services, "member_new_enquiry_pothole.eml", "delegate_writes_for_member.eml")

    first = daemon_for(services, chosen).run_pass(full_scan=True)
    assert (first.cases, first.failed) == (1, 1)
    assert folder_count(services, None) == 1  # the poison message stays in the inbox
    with Session(services.engine) as session:
        failure = session.exec(select(ProcessingFailure)).one()
        assert failure.attempts == 1
        assert "simulated bug" in failure.traceback

    second = daemon_for(services, chosen).run_pass()
    assert second.failed == 1
    third = daemon_for(services, chosen).run_pass()
    assert (third.failed, third.quarantined) == (0, 1)
    assert folder_count(services, None) == 0
    assert folder_count(services, "Quarantine") == 1
    [item] = quarantine.list_items(services)
    assert item.reason_code == "processing_failed"
    assert "failed 3 times" in item.reason and "simulated bug" in item.reason
    assert item.traceback and "explode_on_mill_lane" in item.traceback

    # Once the bug is fixed, a coordinator retries it from the stored raw bytes.
    outcome = retry_quarantined(services, item.id or 0, actor=SERVICE)
    assert isinstance(outcome, CaseOpened)
    assert quarantine.list_items(services) == []


def test_quarantined_stranger_can_be_retried_after_being_registered(
    services: Services,
) -> None:
    drop(services, "unknown_sender_enquiry.eml")
    daemon_for(services).run_pass(full_scan=True)
    [item] = quarantine.list_items(services)
    again = retry_quarantined(services, item.id or 0, actor=SERVICE)
    assert isinstance(again, Quarantined)  # still unknown: quarantined again, not lost
    [item2] = quarantine.list_items(services)
    add_person(services.engine, "member", "Cllr New Member", "resident@example.org")
    outcome = retry_quarantined(services, item2.id or 0, actor=SERVICE)
    assert isinstance(outcome, CaseOpened)
    with Session(services.engine) as session:
        # The enquiry, its acknowledgement, and one reply to the stranger: the retry while
        # still unknown got none (one a day at most).
        assert session.exec(select(func.count()).select_from(Message)).one() == 3
        statuses = session.exec(select(QuarantineItem.status)).all()
    assert sorted(statuses) == ["retried", "retried"]


def test_processor_never_raises_on_garbage(services: Services) -> None:
    for raw in (b"", b"\x00\xff" * 100, b"From: \r\n\r\n", b"Subject: x\n\n" + b"\x80" * 1000):
        outcome = Processor(services).process(raw)
        assert isinstance(outcome, (Quarantined, AlreadyHandled, Failed))
        assert not isinstance(outcome, Failed), outcome


def test_reference_sequence_continues_per_year(services: Services) -> None:
    drop(
        services,
        "member_new_enquiry_pothole.eml",
        "delegate_writes_for_member.eml",
        "member_enquiry_with_large_attachment.eml",
    )
    daemon_for(services).run_pass(full_scan=True)
    with Session(services.engine) as session:
        refs = sorted(session.exec(select(Case.reference)).all())
    assert refs == ["MQ-2026-00001", "MQ-2026-00002", "MQ-2026-00003"]


def test_every_kind_of_decision_has_its_effect_in_the_one_table() -> None:
    """Routing can only choose what apply can carry out: a new kind of decision without a
    row in EFFECTS would raise KeyError on the first email that needed it."""
    assert set(apply.EFFECTS) == set(get_args(Decision))
