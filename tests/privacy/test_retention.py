"""The retention policy: what is due (a table), and runs over a council's real mail on each
database, with the clock given to the run: exactly what the policy says is erased, nothing
held or younger, the scrutiny report's figures stay, shared blobs survive, a rerun erases
nothing more, and the service runs it once a day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from mailbridge.cases import coordinator
from mailbridge.cases.correspondence import attachments_of
from mailbridge.config import RetentionConfig
from mailbridge.errors import UserError
from mailbridge.pipeline import quarantine
from mailbridge.privacy import audit, holds, retention
from mailbridge.privacy.erasure import ERASED, erase_case
from mailbridge.privacy.retention import CaseState, case_due, months_before
from mailbridge.store.db import transaction
from mailbridge.store.models import (
    Attachment,
    AutoMail,
    Case,
    Message,
    OutboxMessage,
    ProcessingFailure,
    QuarantineItem,
    ScheduledSend,
    utcnow,
)
from tests.factories import add_person, fixture_bytes
from tests.helpers.clock import clock_at
from tests.helpers.council import (
    GARETH,
    PRIYA,
    REF,
    Council,
    build_council,
    daemon_for,
    new_email,
    out_of_office,
    reply,
)
from tests.helpers.privacy import report_csv

pytestmark = pytest.mark.usefixtures("fixed_clock")

POLICY = RetentionConfig()
NOW = datetime(2029, 3, 15, 2, 30, tzinfo=UTC)
PHOTOS = "member_enquiry_with_photo_and_pdf.eml"
SECOND, THIRD = "MQ-2026-00002", "MQ-2026-00003"
STATUS = "reply_status_request_subject_only_empty_body.eml"


# --- what is due ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "count", "expected"),
    [
        (datetime(2029, 3, 15, 2, 30, tzinfo=UTC), 24, datetime(2027, 3, 15, 2, 30, tzinfo=UTC)),
        (datetime(2028, 2, 29, tzinfo=UTC), 12, datetime(2027, 2, 28, tzinfo=UTC)),
        (datetime(2029, 3, 31, tzinfo=UTC), 1, datetime(2029, 2, 28, tzinfo=UTC)),
        (datetime(2029, 1, 10, tzinfo=UTC), 2, datetime(2028, 11, 10, tzinfo=UTC)),
    ],
)
def test_months_before_counts_calendar_months(
    moment: datetime, count: int, expected: datetime
) -> None:
    assert months_before(moment, count) == expected


def _case(
    finished: datetime | None, status: str = "completed", held: bool = False, erased: bool = False
) -> CaseState:
    return CaseState("MQ-2027-00001", status, finished, held=held, erased=erased)


DAY = timedelta(days=1)
TWO_YEARS_AGO = datetime(2027, 3, 15, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("case", "due"),
    [
        (_case(TWO_YEARS_AGO - DAY), True),  # 24 months ago yesterday
        (_case(TWO_YEARS_AGO), True),  # 24 months ago to the minute
        (_case(TWO_YEARS_AGO + DAY), False),  # 24 months ago tomorrow
        (_case(TWO_YEARS_AGO - DAY, status="closed"), True),  # merged or converted
        # Reopened and completed again last year: the clock counts from then.
        (_case(datetime(2028, 6, 1, tzinfo=UTC)), False),
        (_case(TWO_YEARS_AGO - DAY, held=True), False),
        (_case(TWO_YEARS_AGO - DAY, erased=True), False),
        (_case(None, status="in_progress"), False),  # an open case, never
        (_case(TWO_YEARS_AGO - DAY, status="in_progress"), False),  # reopened since
        (_case(None, status="new"), False),
    ],
    ids=[
        "yesterday",
        "today",
        "tomorrow",
        "closed",
        "reopened-and-completed-again",
        "held",
        "erased-already",
        "open",
        "reopened-still-open",
        "new",
    ],
)
def test_a_cases_content_is_due_24_months_after_its_latest_completion(
    case: CaseState, due: bool
) -> None:
    assert case_due(case, NOW, POLICY) is due


@pytest.mark.parametrize(
    ("status", "age_days", "erased", "due"),
    [
        ("waiting", 31, False, True),
        ("waiting", 30, False, True),
        ("waiting", 29, False, False),
        ("retried", 31, False, True),
        ("released", 31, False, True),
        ("accepted", 400, False, False),  # part of its case now: goes with the case
        ("waiting", 31, True, False),
    ],
)
def test_quarantined_mail_is_due_30_days_after_it_arrived_unless_accepted(
    status: str, age_days: int, erased: bool, due: bool
) -> None:
    arrived = NOW - timedelta(days=age_days)
    assert retention.quarantine_due(status, arrived, erased, NOW, POLICY) is due


@pytest.mark.parametrize(
    ("status", "age_days", "erased", "due"),
    [
        ("sent", 91, False, True),
        ("sent", 90, False, True),
        ("sent", 89, False, False),
        ("pending", 200, False, False),
        ("failed", 200, False, False),
        ("sent", 200, True, False),
    ],
)
def test_a_sent_copy_is_due_90_days_after_sending(
    status: str, age_days: int, erased: bool, due: bool
) -> None:
    sent = NOW - timedelta(days=age_days)
    assert retention.sent_copy_due(status, sent, erased, NOW, POLICY) is due


@pytest.mark.parametrize(
    ("disposition", "case_id", "age_days", "erased", "due"),
    [
        ("handled", None, 31, False, True),  # a status request, an auto-reply, a bounce
        ("handled", None, 29, False, False),
        ("quarantined", None, 31, False, False),  # goes with its quarantine item
        ("case", 7, 400, False, False),  # goes with its case
        ("handled", None, 31, True, False),
    ],
)
def test_mail_outside_any_case_is_due_30_days_after_it_arrived(
    disposition: str, case_id: int | None, age_days: int, erased: bool, due: bool
) -> None:
    arrived = NOW - timedelta(days=age_days)
    assert retention.caseless_due(disposition, case_id, arrived, erased, NOW, POLICY) is due


@pytest.mark.parametrize(
    ("case_id", "age_days", "erased", "due"),
    [
        (None, 91, False, True),  # a status reply, a digest: as the copies of mail sent
        (None, 89, False, False),
        (None, 91, True, False),
        (7, 400, False, False),  # goes with its case
    ],
)
def test_mail_sent_on_no_case_is_due_90_days_after_it_went(
    case_id: int | None, age_days: int, erased: bool, due: bool
) -> None:
    went = NOW - timedelta(days=age_days)
    assert retention.caseless_due(None, case_id, went, erased, NOW, POLICY, outbound=True) is due


def test_the_periods_come_from_the_config() -> None:
    short = RetentionConfig(completed_case_months=6, sent_mail_days=7, failure_days=1)
    finished = NOW - timedelta(days=200)
    assert case_due(_case(finished), NOW, short) and not case_due(_case(finished), NOW, POLICY)
    assert retention.sent_copy_due("sent", NOW - 8 * DAY, False, NOW, short)
    assert retention.traceback_due(NOW - 2 * DAY, True, NOW, short)
    assert not retention.traceback_due(NOW - 2 * DAY, True, NOW, POLICY)


# --- a council's mail --------------------------------------------------------------------


def _photos_again(raw: bytes) -> bytes:
    """The same email with the same attachments, sent again as another enquiry."""
    return raw.replace(b"Message-ID: <LO2P265MB5173", b"Message-ID: <AGAIN2P265MB5173").replace(
        b"Subject: Pothole and broken kerb", b"Subject: Second pothole and broken kerb"
    )


@pytest.fixture
def council(tmp_path: Path, engine: Engine) -> Council:
    """REF (Jane's pothole) answered by Priya; SECOND and THIRD (Gareth's, the same photo
    and PDF on both) completed one and two months later; a stranger's mail quarantined; a
    status request from Raj."""
    council = build_council(tmp_path, engine)
    add_person(engine, "member", "Cllr Gareth Jones", GARETH, district="Harborough")
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "The pothole was filled this morning."))
    raw = fixture_bytes(PHOTOS)
    assert council.deliver(raw).references == [SECOND]
    assert council.deliver(_photos_again(raw)).references == [THIRD]
    council.deliver(new_email("someone@example.net", "Hello", "Please call me on 0116 496 0000"))
    assert len(council.quarantined()) == 1
    council.deliver(fixture_bytes(STATUS), at=utcnow())  # Raj asks for his dashboard: no case
    start = council.case(REF).completed_at
    assert start is not None
    for reference, months in ((SECOND, 1), (THIRD, 2)):
        with clock_at(start + timedelta(days=31 * months)):
            coordinator.set_status(council.services, reference, "completed", actor="test")
    council.new_mail()
    return council


def _completed(council: Council, reference: str) -> datetime:
    moment = council.case(reference).completed_at
    assert moment is not None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _digests(council: Council, reference: str) -> tuple[set[str], set[str]]:
    """The raw emails' and the attachments' blobs of a case."""
    with council.db() as session:
        case_id = council.case(reference).id
        raws = session.exec(select(Message.raw_sha256).where(Message.case_id == case_id)).all()
        files = session.exec(select(Attachment.sha256).where(Attachment.case_id == case_id)).all()
    return {d for d in raws if d}, {d for d in files if d}


def _run(council: Council, now: datetime, dry_run: bool = False) -> retention.Report:
    return retention.run(council.services, now, dry_run=dry_run, actor=audit.SERVICE)


def test_retention_erases_what_is_due_keeps_the_figures_and_shared_blobs(
    council: Council,
) -> None:
    blobs = council.services.blobs
    first_raw, first_files = _digests(council, REF)
    second_raw, second_files = _digests(council, SECOND)
    third_raw, third_files = _digests(council, THIRD)
    shared = second_files & third_files
    assert shared and second_files == third_files  # the same photo and PDF on both
    figures = report_csv(council)

    # 24 months after REF's completion, less a day: nothing; a dry run changes nothing.
    due_first = months_before(_completed(council, REF), -24)
    assert _run(council, due_first - DAY).cases == []
    dry = _run(council, due_first + DAY, dry_run=True)
    assert dry.cases == [REF]
    assert council.case(REF).content_erased_at is None

    done = _run(council, due_first + DAY)
    assert done.cases == [REF]
    first = council.case(REF)
    assert (first.subject, first.body_text) == (ERASED, ERASED)
    assert first.content_erased_at is not None
    assert first.status == "completed" and first.lead_officer_id is not None
    assert not any(blobs.exists(d) for d in first_raw | first_files)
    with council.db() as session:
        messages = session.exec(select(Message).where(Message.case_id == first.id)).all()
        copies = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == first.id))
        assert messages and all(m.erased_at and m.raw_sha256 is None for m in messages)
        assert all(m.subject == ERASED and m.body_text == ERASED for m in messages)
        assert all(c.raw == b"" and c.erased_at for c in copies)
    kinds = council.kinds(REF)
    assert kinds[-1] == "content_erased"
    assert all(e.detail == ERASED for e in council.events(REF)[:-1] if e.detail)
    assert council.events(REF)[-1].detail == "retention: 24 months after completion"
    assert council.case(SECOND).content_erased_at is None  # younger
    assert report_csv(council) == figures

    # SECOND is due a month later: its raw mail goes, the photo and PDF THIRD names stay.
    done = _run(council, months_before(_completed(council, SECOND), -24) + DAY)
    assert done.cases == [SECOND]
    assert not any(blobs.exists(d) for d in second_raw)
    assert all(blobs.exists(d) for d in shared)
    with council.db() as session:
        att = session.exec(
            select(Attachment).where(Attachment.case_id == council.case(SECOND).id)
        ).all()
        assert att and all(a.filename == ERASED and a.sha256 is None for a in att)
    assert report_csv(council) == figures

    # THIRD is held: a run past its time leaves it; released, the next run erases it and
    # the shared files with it.
    later = months_before(_completed(council, THIRD), -24) + DAY
    holds.hold(council.services, THIRD, "insurance claim CL-1", actor=audit.SERVICE, now=later)
    assert _run(council, later).cases == []
    assert council.case(THIRD).content_erased_at is None
    assert all(blobs.exists(d) for d in third_raw | shared)
    holds.release(council.services, THIRD, actor=audit.SERVICE)
    assert _run(council, later).cases == [THIRD]
    assert not any(blobs.exists(d) for d in third_raw | shared)
    assert report_csv(council) == figures

    # A rerun erases nothing more.
    again = _run(council, later + DAY)
    assert (again.cases, again.quarantined, again.sent_copies, again.tracebacks) == ([], 0, 0, 0)
    assert again.caseless == 0
    assert again.blobs_removed == 0
    with council.db() as session:
        records = [r.action for r in audit.records(session) if r.action.startswith("erase")]
    assert records == ["erase.case"] * 3


def test_mail_that_reaches_a_case_after_its_erasure_goes_at_the_next_run(
    tmp_path: Path, engine: Engine
) -> None:
    """An officer's late reply to a case erased already answers it again: its words go 24
    months after that, not never."""
    council = build_council(tmp_path, engine)
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "The pothole was filled this morning."))
    due = months_before(_completed(council, REF), -24) + DAY
    with clock_at(due):
        assert _run(council, due).cases == [REF]
        late = reply(mails[PRIYA], PRIYA, "PS: the resident at 12 Mill Lane rang again.")
        council.deliver(late)
    with council.db() as session:
        case_id = council.case(REF).id
        kept = session.exec(
            select(Message).where(Message.case_id == case_id, col(Message.erased_at).is_(None))
        ).all()
    assert kept and "12 Mill Lane" in kept[0].body_text
    # Her reply answered the case again: its 24 months count from then.
    again = months_before(_completed(council, REF), -24)
    assert _run(council, again - DAY).cases == []
    assert _run(council, again + DAY).cases == [REF]
    with council.db() as session:
        left = session.exec(
            select(Message).where(Message.case_id == case_id, col(Message.erased_at).is_(None))
        ).all()
    assert left == []
    assert _run(council, again + 2 * DAY).cases == []


def test_an_open_or_reopened_case_is_never_erased(council: Council) -> None:
    coordinator.reopen(council.services, REF, "the repair failed", actor="test")
    assert _run(council, datetime(2035, 1, 1, tzinfo=UTC)).cases == [SECOND, THIRD]
    assert council.case(REF).content_erased_at is None
    assert council.case(REF).subject == "Pothole on Mill Lane, Little Bowden"


def test_quarantined_mail_sent_copies_and_tracebacks_go_after_their_days(
    council: Council,
) -> None:
    [item] = council.quarantined()
    raw = item.raw_sha256
    arrived = item.created_at.replace(tzinfo=UTC)
    with council.db() as session:
        session.add(
            ProcessingFailure(
                dedupe_key="<failed@example.net>",
                raw_sha256=raw,
                traceback="Traceback: ... resident's text ...",
                last_failed_at=arrived,
            )
        )
        session.commit()
        sent = len(session.exec(select(OutboxMessage).where(OutboxMessage.status == "sent")).all())
    assert _run(council, arrived + timedelta(days=29)).quarantined == 0

    with council.db() as session:
        [status] = session.exec(select(Message).where(Message.disposition == "handled")).all()
        assert status.raw_sha256 and council.services.blobs.exists(status.raw_sha256)
    done = _run(council, arrived + timedelta(days=31))
    assert (done.quarantined, done.tracebacks, done.sent_copies, done.cases) == (1, 1, 0, [])
    assert done.caseless == 1
    with council.db() as session:
        erased = session.get(Message, status.id)
        assert erased is not None and erased.erased_at and erased.subject == ERASED
        assert erased.raw_sha256 is None
    assert not council.services.blobs.exists(status.raw_sha256)
    with council.db() as session:
        kept = session.get(QuarantineItem, item.id)
        assert kept is not None and kept.erased_at is not None
        assert (kept.sender, kept.subject, kept.raw_sha256) == (ERASED, ERASED, "")
        assert kept.reason_code == item.reason_code  # the counts stay
        failure = session.get(ProcessingFailure, "<failed@example.net>")
        assert failure is not None and failure.traceback == ""
    assert council.quarantined() == []  # nothing waits: nothing is left of it
    with pytest.raises(UserError, match=f"quarantined message {item.id} was erased on "):
        quarantine.waiting_copy(council.services, item.id or 0)
    # The failed message still names the raw mail: it stays until that row goes.
    assert council.services.blobs.exists(raw)

    done = _run(council, arrived + timedelta(days=91))
    assert done.sent_copies == sent and done.cases == []
    with council.db() as session:
        copies = session.exec(select(OutboxMessage)).all()
        assert all(c.raw == b"" and c.subject == ERASED and c.erased_at for c in copies)
        assert all(c.status == "sent" and c.recipients for c in copies)  # the record stays
    assert _run(council, arrived + timedelta(days=92)).sent_copies == 0


def test_a_held_cases_sent_copies_and_quarantined_mail_stay_past_their_days(
    tmp_path: Path, engine: Engine
) -> None:
    """A legal hold keeps everything of the case, the copies of its mail sent and the mail
    quarantined on it included, whatever the shorter periods say."""
    council = build_council(tmp_path, engine)
    mails = council.assigned_pothole()
    council.deliver(out_of_office(mails[PRIYA], "locum@example.net", "A Locum"))
    [item] = council.quarantined()
    with council.db() as session:
        case_id = council.case(REF).id
        assert item.case_id == case_id
        copies = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)).all()
        assert copies and all(c.status == "sent" for c in copies)
    holds.hold(council.services, REF, "claim CL-2", actor=audit.SERVICE, now=utcnow())
    done = _run(council, utcnow() + timedelta(days=400))
    assert (done.quarantined, done.sent_copies) == (0, 0)
    with council.db() as session:
        kept = session.get(QuarantineItem, item.id)
        assert kept is not None and kept.erased_at is None and kept.raw_sha256
        for copy in session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)):
            assert copy.erased_at is None and copy.raw
    assert council.services.blobs.exists(item.raw_sha256)


def test_mail_sent_on_no_case_goes_after_the_sent_mails_days(council: Council) -> None:
    """A status reply (or a digest) lists the subjects of many cases: its text goes with
    the copies of mail sent, not never."""
    outbound_on_no_case = (Message.direction == "out", col(Message.case_id).is_(None))
    with council.db() as session:
        sent = session.exec(select(Message).where(*outbound_on_no_case)).all()
    assert sent and all(m.body_text for m in sent)
    start = max(m.received_at.replace(tzinfo=UTC) for m in sent)
    _run(council, start + timedelta(days=31))
    with council.db() as session:
        assert not any(
            m.erased_at for m in session.exec(select(Message).where(*outbound_on_no_case))
        )
    done = _run(council, start + timedelta(days=91))
    assert done.caseless >= len(sent)
    with council.db() as session:
        for message in session.exec(select(Message).where(*outbound_on_no_case)):
            assert message.erased_at and (message.subject, message.body_text) == (ERASED, ERASED)


def test_the_service_runs_it_once_a_day_at_its_time(council: Council) -> None:
    when = months_before(_completed(council, REF), -24) + 2 * DAY
    night = datetime.combine(when.date(), datetime.min.time(), tzinfo=UTC)
    first, second = daemon_for(council.services), daemon_for(council.services)

    def tick(daemon: object, moment: datetime) -> None:
        daemon.clock = lambda: moment  # type: ignore[attr-defined]
        daemon.schedule_tick(daemon.run_pass(), force=True)  # type: ignore[attr-defined]

    def runs() -> list[str]:
        with council.db() as session:
            return list(
                session.exec(
                    select(ScheduledSend.key)
                    .where(ScheduledSend.kind == "retention")
                    .order_by(col(ScheduledSend.key))
                ).all()
            )

    tick(first, night + timedelta(hours=1))  # before 02:00 (GMT in winter and spring)
    assert runs() == [] and council.case(REF).content_erased_at is None
    tick(first, night + timedelta(hours=2, minutes=5))
    tick(second, night + timedelta(hours=3))  # another daemon, the same day
    tick(first, night + timedelta(hours=23))  # a restart, the same day
    day = night.date().isoformat()
    assert runs() == [f"retention:{day}"]
    assert council.case(REF).content_erased_at is not None
    with council.db() as session:
        done = [r for r in audit.records(session) if r.action == "retention.run"]
        assert len(done) == 1 and done[0].actor == "mailbridge" and done[0].channel == "service"
    tick(second, night + timedelta(days=1, hours=2))
    assert runs() == [f"retention:{day}", f"retention:{(night + DAY).date().isoformat()}"]


def test_no_daily_run_when_run_at_is_empty(tmp_path: Path, engine: Engine) -> None:
    council = build_council(tmp_path, engine, retention={"run_at": ""})
    assert retention.run_daily(council.services, NOW) is None
    assert council.count(ScheduledSend) == 0


def test_an_erased_enquiry_is_sent_on_without_its_files_and_says_so(council: Council) -> None:
    """A case erased while open (`erase person --erase-cases`) can still be assigned; its
    officers are told the files were erased, not given "(erased) (refused: None)"."""
    with transaction(council.engine) as session:
        case = session.exec(select(Case).where(Case.reference == SECOND)).one()
        enquiry = session.exec(select(Message).where(Message.case_id == case.id)).first()
        assert enquiry is not None and enquiry.id is not None
        before = attachments_of(session, council.services, enquiry.id, 10**9)
        assert len(before.files) == 2 and before.listed == []
        erase_case(session, case, why="request: DPO-7", actor=audit.SERVICE, now=utcnow())
        session.flush()
        after = attachments_of(session, council.services, enquiry.id, 10**9)
    assert (after.files, after.listed, after.held) == ([], ["2 attached file(s), since erased"], [])


def test_notes_of_automatic_mail_go_after_a_week(council: Council) -> None:
    """The limits on automatic mail look back a day; an address's notes are not kept longer
    than a week for them."""
    with council.db() as session:
        for days in (8, 6):
            session.add(AutoMail(address="x@example.net", kind="ack", at=NOW - days * DAY))
        session.commit()
        before = len(session.exec(select(AutoMail)).all())
    assert _run(council, NOW, dry_run=True).automatic_mail >= 1
    with council.db() as session:
        assert len(session.exec(select(AutoMail)).all()) == before
    done = _run(council, NOW)
    with council.db() as session:
        left = session.exec(select(AutoMail)).all()
    assert done.automatic_mail == before - len(left) >= 1
    assert [n.at.replace(tzinfo=UTC) for n in left] == [NOW - 6 * DAY]
    assert _run(council, NOW).automatic_mail == 0
