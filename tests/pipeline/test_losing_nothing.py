"""Nothing lost, nothing doubled, when Message-IDs repeat (docs/architecture.md, invariant 1).

A second delivery of one email (the trace headers a relay adds, a re-encoded body) is
handled once; another email that reuses a Message-ID is processed as a new message and says
so on its case or in its quarantine reason. Keys stored before the key held the content
(the bare Message-ID) keep deduping after the upgrade.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from mailbridge.mail.parsing import parse
from mailbridge.pipeline.outcomes import AlreadyHandled, CaseOpened, CaseUpdated
from mailbridge.pipeline.processor import Processor, pending_failures
from mailbridge.store.models import Attachment, Case, Event, Message, ProcessingFailure
from tests.factories import fixture_bytes
from tests.helpers.council import Council, build_council

REUSED = "casenotes.outbox.0001@raj-iphone.local"
NOTE = f"Message-ID <{REUSED}> was used before by a different message"


@pytest.fixture
def council(tmp_path: Path, engine: Engine) -> Council:
    return build_council(tmp_path, engine)


def test_message_id_reused_with_different_body_opens_a_second_case_with_a_note(
    council: Council,
) -> None:
    first = council.deliver(fixture_bytes("message_id_reused_with_different_body_first.eml"))
    second = council.deliver(fixture_bytes("message_id_reused_with_different_body_second.eml"))
    assert (first.references, second.references) == (["MQ-2026-00001"], ["MQ-2026-00002"])
    assert second.duplicates == 0
    assert council.case("MQ-2026-00002").subject == "Overgrown verge at the Brabazon Road junction"
    [reused] = council.events("MQ-2026-00002", kind="message_id_reused")
    assert reused.detail == f"{NOTE}; this one was processed as a new message"
    assert reused.message_id is not None
    assert council.events("MQ-2026-00001", kind="message_id_reused") == []
    # Both acknowledged: Raj learns of both enquiries.
    assert [m["Subject"] for m in council.new_mail()] == [
        "[MQ-2026-00001] Enquiry received: Street light out on Gartree Road, Oadby",
        "[MQ-2026-00002] Enquiry received: Overgrown verge at the Brabazon Road junction",
    ]


def test_message_id_reused_within_one_batch_is_noted_too(council: Council) -> None:
    report = council.deliver(
        fixture_bytes("message_id_reused_with_different_body_first.eml"),
        fixture_bytes("message_id_reused_with_different_body_second.eml"),
    )
    assert (report.cases, report.duplicates) == (2, 0)
    assert len(council.events("MQ-2026-00002", kind="message_id_reused")) == 1
    assert council.events("MQ-2026-00001", kind="message_id_reused") == []


def test_a_reply_to_a_reused_message_id_stays_on_the_first_case(council: Council) -> None:
    council.deliver(fixture_bytes("message_id_reused_with_different_body_first.eml"))
    council.deliver(fixture_bytes("message_id_reused_with_different_body_second.eml"))
    chaser = (
        "From: Cllr Raj Patel <raj.patel@example.gov.uk>\nTo: enquiries@example.gov.uk\n"
        f"Subject: Re: street light\nMessage-ID: <chaser.1@example.gov.uk>\n"
        f"In-Reply-To: <{REUSED}>\nReferences: <{REUSED}>\n\nAny news on this one?\n"
    ).encode()
    assert isinstance(Processor(council.services).process(chaser), CaseUpdated)
    assert "update_requested" in council.kinds("MQ-2026-00001")
    assert "update_requested" not in council.kinds("MQ-2026-00002")


def test_message_id_reused_by_unknown_sender_is_quarantined_with_the_note(
    council: Council,
) -> None:
    council.deliver(fixture_bytes("message_id_reused_with_different_body_first.eml"))
    report = council.deliver(fixture_bytes("message_id_reused_by_unknown_sender.eml"))
    assert (report.quarantined, report.duplicates) == (1, 0)
    [item] = council.quarantined()
    assert item.reason_code == "unknown_sender"
    assert item.reason.endswith(f"; {NOTE}")


def test_same_message_delivered_twice_with_extra_received_is_handled_once(
    council: Council,
) -> None:
    first = council.deliver(
        fixture_bytes("same_message_delivered_twice_with_extra_received_first.eml")
    )
    second = council.deliver(
        fixture_bytes("same_message_delivered_twice_with_extra_received_second.eml")
    )
    assert (first.cases, second.cases, second.duplicates) == (1, 0, 1)
    assert council.count(Case) == 1
    assert [e for e in council.events(kind="message_id_reused")] == []
    assert len(council.new_mail()) == 1  # one acknowledgement


def _as_stored_before_the_upgrade(engine: Engine) -> None:
    """Every inbound key back to the bare Message-ID, as stored before keys held content."""
    with Session(engine) as session:
        session.exec(
            update(Message)  # type: ignore[call-overload]
            .where(col(Message.direction) == "in")
            .values(dedupe_key=Message.message_id)
        )
        session.commit()


@pytest.mark.parametrize(
    "again",
    [
        "same_message_delivered_twice_with_extra_received_first.eml",  # the same bytes
        "same_message_delivered_twice_with_extra_received_second.eml",  # a second delivery
    ],
)
def test_a_message_stored_under_the_old_key_is_still_handled_once(
    council: Council, again: str
) -> None:
    """An upgrade between the commit and the move, or a second delivery after it: the row
    keyed by the bare Message-ID is found, by its bytes or by its stored copy read again."""
    council.deliver(fixture_bytes("same_message_delivered_twice_with_extra_received_first.eml"))
    _as_stored_before_the_upgrade(council.engine)
    outcome = Processor(council.services).process(fixture_bytes(again))
    assert isinstance(outcome, AlreadyHandled)
    assert council.count(Case) == 1


def test_a_reuse_of_a_message_id_stored_under_the_old_key_is_a_new_message(
    council: Council,
) -> None:
    council.deliver(fixture_bytes("message_id_reused_with_different_body_first.eml"))
    _as_stored_before_the_upgrade(council.engine)
    second = fixture_bytes("message_id_reused_with_different_body_second.eml")
    assert isinstance(Processor(council.services).process(second), CaseOpened)
    assert len(council.events("MQ-2026-00002", kind="message_id_reused")) == 1


def test_a_failure_left_under_the_old_key_is_forgotten_when_the_message_succeeds(
    council: Council,
) -> None:
    """Else it would wait for a retry for ever, and every pass would scan the whole inbox."""
    parsed = parse(fixture_bytes("member_new_enquiry_pothole.eml"))
    with Session(council.engine) as session:
        old_key = parsed.message_id or ""
        session.add(ProcessingFailure(dedupe_key=old_key, raw_sha256=parsed.raw_sha256))
        session.commit()
    assert pending_failures(council.services) == 1
    council.deliver(fixture_bytes("member_new_enquiry_pothole.eml"))
    assert pending_failures(council.services) == 0


def test_gbk_text_labelled_gb2312_is_stored_as_written(council: Council) -> None:
    report = council.deliver(fixture_bytes("gb2312_label_with_gbk_characters.eml"))
    [reference] = report.references
    case = council.case(reference)
    assert case.subject == "路灯坏了 - 王喆先生, Gartree Road"  # its "Fwd:" taken off
    with Session(council.engine) as session:
        [body] = session.exec(
            select(Message.body_text).where(Message.case_id == case.id, Message.direction == "in")
        ).all()
    assert "邻居朱镕先生也这么说" in body


def test_a_damaged_utf8_filename_is_stored_with_its_good_characters(council: Council) -> None:
    council.deliver(fixture_bytes("raw_utf8_filename_with_damaged_last_byte.eml"))
    with Session(council.engine) as session:
        [name] = session.exec(select(Attachment.filename)).all()
        assert session.exec(select(Event).where(Event.kind == "attachment_refused")).all() == []
    assert name == "Fotos Straßenschäden Mühlenweg Br\ufffd.jpg"
