"""Conversations on the embedded default: Maildir in, SQLite/PostgreSQL, Maildir out.

Every reply here answers mail mailbridge really sent: the test reads what went out to the
outbox Maildir and writes back to it the way a mail client does (In-Reply-To/References,
"RE: " + subject, new text above the quoted original), from the person the table of the
conversations issue is about. Then one pass of the daemon runs, and we look at the case,
its events and messages, and at what was sent next.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select
from typer.testing import Result

from mailbridge.cases import assignment, directory
from mailbridge.cases.assignment import Assigned
from mailbridge.config import write_signing_key
from mailbridge.errors import UserError
from mailbridge.mail.tokens import verify_message_id
from mailbridge.mailbox.maildir import maildir_drop
from mailbridge.pipeline import quarantine
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import (
    AddressFlag,
    Attachment,
    AutoMail,
    Case,
    CaseOfficer,
    QuarantineItem,
    utcnow,
)
from tests.factories import (
    add_person,
    fixture_bytes,
    make_services,
    ok_lines,
    one_error,
)
from tests.helpers.cli import CLI_ACTOR
from tests.helpers.clock import FIXED_NOW
from tests.helpers.council import (
    ANN,
    GARETH,
    JANE,
    JANE_HOME,
    POTHOLE_ID,
    POTHOLE_TEXT,
    PRIYA,
    RAJ,
    REF,
    SAM,
    SUPPORT,
    TOM,
    Council,
    assert_threaded,
    attachment_names,
    bounce,
    build_council,
    council_cli,
    council_first,
    html_of,
    id_of,
    msgid,
    new_email,
    only,
    out_of_office,
    outbox_raw,
    recipients,
    reply,
    text_of,
    thread_root,
    write_council_config,
)

# Assignments, replies and a pass of the daemon read the clock themselves (deadlines in
# the mail, "working days from today"): every test here runs at one fixed moment.
pytestmark = pytest.mark.usefixtures("fixed_clock")


@pytest.fixture
def council(tmp_path: Path, engine: Engine) -> Council:
    return build_council(tmp_path, engine)


# --- assignment -----------------------------------------------------------------------


def test_assign_sends_officers_the_enquiry_and_tells_the_member_the_lead(
    council: Council,
) -> None:
    council.open_pothole_case()
    done = council.assign(PRIYA, SAM)
    assert done == Assigned(REF, PRIYA, (SAM,), (PRIYA, SAM), True)

    case = council.case()
    assert case.status == "in_progress"
    assert case.lead_officer_id == council.person_id(PRIYA)
    assert case.assigned_at is not None
    with council.db() as session:
        roles = {
            r.person_id: r.role
            for r in session.exec(select(CaseOfficer).where(CaseOfficer.case_id == case.id))
        }
    assert roles == {council.person_id(PRIYA): "lead", council.person_id(SAM): "additional"}
    [assigned] = council.events(kind="assigned")
    assert assigned.detail == "lead officer Priya Shah; also Sam Whitaker"
    assert assigned.actor == "coordinator (test)"

    mails = council.new_mail()
    assert sorted(recipients(m)[0] for m in mails) == sorted([PRIYA, SAM, JANE])
    assert all(len(recipients(m)) == 1 for m in mails)
    lead, helper, member = only(mails, PRIYA), only(mails, SAM), only(mails, JANE)

    subject = "Pothole on Mill Lane, Little Bowden"
    assert lead["Subject"] == f"[{REF}] For your reply: {subject}"
    assert helper["Subject"] == f"[{REF}] For your input: {subject}"
    for officer_mail in (lead, helper):
        assert_threaded(officer_mail, REF, POTHOLE_ID)
        assert officer_mail["Auto-Submitted"] == "auto-generated"
        body = text_of(officer_mail)
        assert POTHOLE_TEXT in body  # the member's own words
        assert "Reply due by:  Tuesday 8 December 2026" in body
        assert "HOW TO REPLY: reply to this email" in body
        assert f"Ref: {REF}" in body
    today = council.services.calendar.local_date(FIXED_NOW)  # Tue 1 Dec 2026
    left = council.services.calendar.working_days_between(today, case.response_due)
    assert left == 5
    body = text_of(lead)
    assert f"by Tuesday 8 December 2026 ({left} working days from today)" in body
    assert "#holding" in body and "#internal" in body and "#extend 5" in body
    assert "not to the councillor" in text_of(helper)
    assert "#holding" not in text_of(helper)

    assert member["Subject"] == f"[{REF}] Your enquiry has been assigned: {subject}"
    assert_threaded(member, REF, POTHOLE_ID)
    words = " ".join(text_of(member).split())
    assert "has been assigned to Priya Shah (Highways), who will reply by Tuesday 8 December" in (
        words
    )
    assert "Dear Cllr Jane Smith," in text_of(member)
    assert "<strong>Priya Shah</strong>" in html_of(member)


def test_assignment_attaches_the_members_files_up_to_the_cap_and_names_the_rest(
    tmp_path: Path, engine: Engine
) -> None:
    council = build_council(tmp_path, engine, cases={"officer_attachments_max_bytes": 400})
    add_person(engine, "member", "Cllr Gareth Jones", GARETH, district="Harborough")
    council.deliver(fixture_bytes("member_enquiry_with_photo_and_pdf.eml"))
    council.new_mail()
    done = council.assign(PRIYA)
    assert done.emailed == (PRIYA,)
    lead = only(council.new_mail(), PRIYA)
    # The 159-byte photo fits under the 400-byte cap; the 634-byte letter does not.
    assert attachment_names(lead) == ["IMG_4521.jpg"]
    [photo] = list(lead.iter_attachments())
    assert photo.get_content_type() == "image/jpeg"
    with council.db() as session:
        stored = {a.filename: a for a in session.exec(select(Attachment)).all()}
    letter = "Letter from resident - 21 Station Road.pdf"
    assert set(stored) == {"IMG_4521.jpg", letter}
    assert (stored[letter].size, stored["IMG_4521.jpg"].size) == (634, 159)
    assert photo.get_content() == council.services.blobs.get(stored["IMG_4521.jpg"].sha256 or "")
    body = " ".join(text_of(lead).split())
    assert (
        "Not attached (too large for email; kept on the case): - "
        "Letter from resident - 21 Station Road.pdf (634 bytes, kept on the case)"
    ) in body
    assert "her elderly mother has already tripped on the kerb" in body


def test_assign_twice_is_refused_and_reassign_emails_only_newcomers(council: Council) -> None:
    council.assigned_pothole()
    with pytest.raises(UserError) as refused:
        assignment.assign(council.services, REF, SAM, actor="x")
    assert str(refused.value) == (
        f"{REF} is already assigned; use `mailbridge case reassign` to change its officers"
    )
    assert council.case().lead_officer_id == council.person_id(PRIYA)

    # Sam becomes the lead; Priya stays on as an additional officer and is not sent it again.
    done = council.assign(SAM, PRIYA, reassign=True)
    assert done == Assigned(REF, SAM, (PRIYA,), (SAM,), True)
    mails = council.new_mail()
    assert sorted(recipients(m)[0] for m in mails) == [JANE, SAM]
    assert only(mails, SAM)["Subject"].startswith(f"[{REF}] For your reply: ")
    assert "assigned to Sam Whitaker" in " ".join(text_of(only(mails, JANE)).split())
    case = council.case()
    assert case.lead_officer_id == council.person_id(SAM)
    with council.db() as session:
        roles = {
            r.person_id: r.role
            for r in session.exec(select(CaseOfficer).where(CaseOfficer.case_id == case.id))
        }
    assert roles == {council.person_id(SAM): "lead", council.person_id(PRIYA): "additional"}
    [reassigned] = council.events(kind="reassigned")
    assert reassigned.detail == "lead officer Sam Whitaker; also Priya Shah"

    # Same lead, Ann added: only Ann is emailed, and the member hears nothing new.
    done = council.assign(SAM, PRIYA, ANN, reassign=True)
    assert (done.emailed, done.member_told) == ((ANN,), False)
    [to_ann] = council.new_mail()
    assert recipients(to_ann) == [ANN]
    assert to_ann["Subject"].startswith(f"[{REF}] For your input: ")


@pytest.mark.parametrize(
    ("lead", "also", "message"),
    [
        (
            "nobody@example.gov.uk",
            (),
            "--lead nobody@example.gov.uk: nobody in the directory has this address",
        ),
        (PRIYA, (JANE,), f"--also {JANE} is a member, not an officer"),
        (SUPPORT, (), f"--lead {SUPPORT} is a coordinator, not an officer"),
    ],
)
def test_assign_refuses_addresses_that_are_not_officers(
    council: Council, lead: str, also: tuple[str, ...], message: str
) -> None:
    council.open_pothole_case()
    with pytest.raises(UserError) as refused:
        assignment.assign(council.services, REF, lead, also, actor="x")
    assert str(refused.value).startswith(message)
    case = council.case()
    assert (case.status, case.lead_officer_id) == ("new", None)
    assert council.count(CaseOfficer) == 0
    council.run()
    assert council.new_mail() == []


def test_assign_refuses_unknown_and_completed_cases(council: Council) -> None:
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "Repaired this morning.", name="Priya Shah"))
    assert council.case().status == "completed"
    with pytest.raises(UserError) as completed:
        assignment.assign(council.services, REF, SAM, actor="x", reassign=True)
    assert str(completed.value) == (
        f"{REF} is completed; it reopens if the member replies within 5 working days"
    )
    with pytest.raises(UserError) as unknown:
        assignment.assign(council.services, "mq-2026-00999", SAM, actor="x")
    assert str(unknown.value) == (
        "no case has reference mq-2026-00999 (see `mailbridge cases list`)"
    )
    assert council.case().lead_officer_id == council.person_id(PRIYA)


# --- the lead officer's reply ---------------------------------------------------------

PRIYA_ANSWER = (
    "Dear Cllr Smith,\n\n"
    "Our inspector visited Mill Lane this morning. The pothole outside number 12 will be\n"
    "made safe within 24 hours and permanently repaired by 4 December."
)
PRIYA_SIGNATURE = "Kind regards\n\nPriya Shah\nHighways Inspector (Harborough)\nTel: 0116 305 0000"


def test_lead_officer_reply_is_relayed_to_the_member_and_completes_the_case(
    council: Council,
) -> None:
    mails = council.assigned_pothole()
    answer = reply(
        mails[PRIYA], "Priya.Shah@example.gov.uk", f"{PRIYA_ANSWER}\n\n{PRIYA_SIGNATURE}",
        name="Priya Shah",
    )  # fmt: skip
    before = utcnow()
    report = council.deliver(answer)
    after = utcnow()
    assert (report.updates, report.cases, report.quarantined) == (1, 0, 0)

    case = council.case()
    assert case.status == "completed"
    # The reply's receipt time (the Maildir file's, to the second), not the processing time.
    assert case.completed_at is not None
    assert before.replace(microsecond=0) <= case.completed_at <= after
    assert case.first_response_at == case.last_response_at == case.completed_at
    reply_id = id_of(answer)
    stored = council.inbound(reply_id)
    assert (stored.role, stored.case_id, stored.disposition) == ("response", case.id, "case")
    assert stored.reply_text == PRIYA_ANSWER
    [responded] = council.events(kind="responded")
    assert (responded.actor, responded.message_id) == (PRIYA, stored.id)

    [relayed] = council.new_mail()
    assert recipients(relayed) == [JANE]
    subject = "Pothole on Mill Lane, Little Bowden"
    assert relayed["Subject"] == f"[{REF}] Response to your enquiry: {subject}"
    assert_threaded(relayed, REF, POTHOLE_ID)
    body = text_of(relayed)
    assert body.startswith(PRIYA_ANSWER + "\n\nPriya Shah, Highways\n")
    assert "This completes your enquiry" in body
    window = "within 5 working days and it will be reopened"  # [cases] reopen_working_days
    assert window in " ".join(body.split()) and window in " ".join(html_of(relayed).split())
    for leaked in ("Highways Inspector", "0116 305 0000", "Kind regards", "From: Member",
                   POTHOLE_TEXT, "HOW TO REPLY", "#holding"):  # fmt: skip
        assert leaked not in body and leaked not in html_of(relayed), leaked

    # The same reply delivered again (a re-fetch, a second copy) is not relayed twice.
    again = council.deliver(answer)
    assert (again.duplicates, again.updates) == (1, 0)
    assert council.new_mail() == []
    assert council.kinds().count("responded") == 1


def with_attachment(raw: bytes, filename: str, payload: bytes, mime: str) -> bytes:
    """The same email with a file attached, as a mail client adds one."""
    msg = message_from_bytes(raw, policy=policy.default)
    maintype, _, subtype = mime.partition("/")
    msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)  # type: ignore[attr-defined]
    return msg.as_bytes()


SURVEY = b"%PDF-1.4\n% survey of Mill Lane\n" + b"0" * 300 + b"\n%%EOF\n"


def test_officer_files_are_kept_on_the_case_and_sent_on(council: Council) -> None:
    """The officer's attached survey reaches the member; the additional officer's, the lead."""
    mails = council.assigned_pothole(SAM)
    raw = with_attachment(
        reply(mails[SAM], SAM, "Survey photos from this morning."),
        "gully.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg",
    )  # fmt: skip
    council.deliver(raw)
    [forwarded] = council.new_mail()
    assert recipients(forwarded) == [PRIYA, SUPPORT]
    assert attachment_names(forwarded) == ["gully.jpg"]

    raw = with_attachment(
        reply(mails[PRIYA], PRIYA, "The survey is attached; repairs start Monday."),
        "Mill Lane survey.pdf", SURVEY, "application/pdf",
    )  # fmt: skip
    council.deliver(raw)
    [relayed] = council.new_mail()
    assert recipients(relayed) == [JANE]
    [survey] = list(relayed.iter_attachments())
    assert (survey.get_filename(), survey.get_content()) == ("Mill Lane survey.pdf", SURVEY)
    stored = council.inbound(id_of(raw))
    with council.db() as session:
        kept = session.exec(select(Attachment).where(Attachment.message_id == stored.id)).one()
    assert (kept.case_id, kept.size, kept.filename) == (
        council.case().id,
        len(SURVEY),
        "Mill Lane survey.pdf",
    )
    assert council.services.blobs.get(kept.sha256 or "") == SURVEY


def test_holding_reply_is_sent_and_keeps_the_case_open(council: Council) -> None:
    mails = council.assigned_pothole()
    text = "#holding\n\nDear Cllr Smith,\n\nThe contractor is booked for next week."
    council.deliver(reply(mails[PRIYA], PRIYA, f"{text}\n\n{PRIYA_SIGNATURE}", style="gmail"))
    case = council.case()
    assert (case.status, case.completed_at, case.extended_due) == ("in_progress", None, None)
    assert case.first_response_at is not None
    assert case.first_response_at == case.last_response_at
    assert council.kinds()[-1] == "holding_reply"
    [relayed] = council.new_mail()
    assert recipients(relayed) == [JANE]
    assert relayed["Subject"].startswith(f"[{REF}] Update on your enquiry: ")
    body = text_of(relayed)
    assert body.startswith("Dear Cllr Smith,\n\nThe contractor is booked for next week.\n")
    assert "stays open, with a full reply\ndue by Tuesday 8 December 2026" in body
    assert "#" not in body and "#holding" not in html_of(relayed)


def test_holding_reply_with_extend_moves_the_deadline_over_the_bank_holidays(
    council: Council,
) -> None:
    # Received Friday 11 December 2026: ten working days, skipping Christmas Day (Fri 25)
    # and Boxing Day's substitute (Mon 28), end on Tuesday 29 December.
    council.deliver(
        fixture_bytes("member_new_enquiry_pothole.eml"),
        at=datetime(2026, 12, 11, 10, 0, tzinfo=UTC),
    )
    council.new_mail()
    council.assign(PRIYA)
    lead = only(council.new_mail(), PRIYA)
    assert str(council.case().response_due) == "2026-12-29"
    text = (
        "#holding\n#extend 5 waiting for the contractor's survey\n\n"
        "Dear Cllr Smith,\n\nThe retaining wall needs a survey before the repair."
    )
    council.deliver(reply(lead, PRIYA, text))
    case = council.case()
    # Five working days after the deadline in force: New Year's Day (Fri 1 Jan) is a bank
    # holiday in England; Monday 4 January is not (in Scotland it is).
    assert str(case.extended_due) == "2027-01-06"
    assert str(case.response_due) == "2026-12-29"  # the original stays for the reports
    assert case.extension_reason == "waiting for the contractor's survey"
    assert (case.status, case.completed_at) == ("in_progress", None)
    [extended] = council.events(kind="deadline_extended")
    assert extended.detail == (
        "deadline extended by 5 working days to 2027-01-06 (the original, 2026-12-29, stays "
        "in reports): waiting for the contractor's survey"
    )
    assert extended.actor == PRIYA
    assert council.kinds()[-1] == "holding_reply"
    [relayed] = council.new_mail()
    body = text_of(relayed)
    assert body.startswith("Dear Cllr Smith,\n\nThe retaining wall needs a survey")
    assert "due by Wednesday 6 January 2027" in " ".join(body.split())
    for keyword in ("#holding", "#extend", "contractor's survey"):
        assert keyword not in body and keyword not in html_of(relayed)

    # A second extension counts from the extended deadline, never from the original.
    council.deliver(reply(lead, PRIYA, "#holding\n#extend 2 survey report late\n\nSorry."))
    case = council.case()
    assert (str(case.extended_due), str(case.response_due)) == ("2027-01-08", "2026-12-29")
    assert case.extension_reason == "survey report late"


def test_internal_note_is_kept_on_the_case_and_sent_to_nobody(council: Council) -> None:
    mails = council.assigned_pothole()
    raw = reply(mails[PRIYA], PRIYA, "#internal\nThe resident has claimed before; check 2024.")
    council.deliver(raw)
    stored = council.inbound(id_of(raw))
    assert (stored.role, stored.reply_text) == (
        "internal",
        "The resident has claimed before; check 2024.",
    )
    [note] = council.events(kind="internal_note")
    assert (note.actor, note.message_id) == (PRIYA, stored.id)
    case = council.case()
    assert (case.status, case.first_response_at, case.completed_at) == ("in_progress", None, None)
    assert council.new_mail() == []


# --- additional officers and coordinators ---------------------------------------------


def test_additional_officer_reply_goes_to_the_lead_and_coordinators_only(
    council: Council,
) -> None:
    mails = council.assigned_pothole(SAM)
    raw = reply(
        mails[SAM], SAM, "The gully cover is on our works order for Thursday.\n\nThanks,\nSam",
        name="Sam Whitaker",
    )  # fmt: skip
    council.deliver(raw)
    stored = council.inbound(id_of(raw))
    assert (stored.role, stored.case_id) == ("contribution", council.case().id)
    assert stored.reply_text == "The gully cover is on our works order for Thursday."
    assert council.kinds()[-1] == "contribution"
    case = council.case()
    assert (case.status, case.first_response_at) == ("in_progress", None)
    [forwarded] = council.new_mail()
    assert recipients(forwarded) == [PRIYA, SUPPORT]
    assert JANE not in recipients(forwarded) and JANE_HOME not in recipients(forwarded)
    assert forwarded["Subject"] == (
        f"[{REF}] Contribution from Sam Whitaker: Pothole on Mill Lane, Little Bowden"
    )
    assert_threaded(forwarded, REF, id_of(raw))
    assert "The gully cover is on our works order for Thursday." in text_of(forwarded)
    assert "(not sent to the councillor)" in text_of(forwarded)


def test_coordinator_reply_is_a_note_and_with_member_keyword_goes_to_the_member(
    council: Council,
) -> None:
    mails = council.assigned_pothole()
    ack_like = mails[JANE]
    council.deliver(reply(ack_like, JANE, "Any news?", style="gmail"))
    notice = only(council.new_mail(), SUPPORT)  # the chase notice the coordinators got

    plain = reply(notice, SUPPORT, "Chased Highways by phone.", name="Member Support")
    council.deliver(plain)
    stored = council.inbound(id_of(plain))
    assert (stored.role, stored.reply_text) == ("note", "Chased Highways by phone.")
    assert council.kinds()[-1] == "note"
    assert council.new_mail() == []

    to_member = reply(
        notice, SUPPORT, "#member\nHighways have promised a date by Friday.", name="Member Support"
    )
    council.deliver(to_member)
    assert council.kinds()[-1] == "note_to_member"
    stored = council.inbound(id_of(to_member))
    assert stored.reply_text == "Highways have promised a date by Friday."
    [note] = council.new_mail()
    assert recipients(note) == [JANE]
    assert note["Subject"] == f"[{REF}] Note on your enquiry: Pothole on Mill Lane, Little Bowden"
    assert_threaded(note, REF, POTHOLE_ID)
    assert text_of(note).startswith("Highways have promised a date by Friday.\n")
    assert "#member" not in text_of(note) and "#member" not in html_of(note)
    assert council.case().status == "in_progress"


# --- the member writes again ----------------------------------------------------------


def test_member_reply_on_an_open_case_is_a_chaser_with_the_history(council: Council) -> None:
    mails = council.assigned_pothole()
    # From her home address, answering the "assigned" email in Gmail.
    raw = reply(mails[JANE], JANE_HOME, "Any update? Another car was damaged last night.",
                name="Jane Smith", style="gmail")  # fmt: skip
    council.deliver(raw)
    case = council.case()
    assert (case.chase_count, case.status) == (1, "in_progress")
    stored = council.inbound(id_of(raw))
    assert (stored.role, stored.reply_text) == (
        "chaser",
        "Any update? Another car was damaged last night.",
    )
    [chased] = council.events(kind="update_requested")
    assert chased.detail == "update requested (1 so far)"
    assert chased.actor == JANE_HOME
    [notice] = council.new_mail()
    assert recipients(notice) == [PRIYA, SUPPORT]
    assert notice["Subject"] == (
        f"[{REF}] Update requested (1): Pothole on Mill Lane, Little Bowden"
    )
    assert_threaded(notice, REF, POTHOLE_ID)
    assert thread_root(notice) == thread_root(mails[PRIYA]) == thread_root(mails[JANE])
    assert notice["Auto-Submitted"] == "auto-replied"
    body = text_of(notice)
    assert "Lead officer: Priya Shah" in body
    history = body.split("History (oldest first):", 1)[1]
    assert POTHOLE_TEXT in history  # the enquiry, first
    assert history.index("enquiry from " + JANE) < history.index("chaser from " + JANE_HOME)
    assert "Another car was damaged last night." in history

    # Her delegate chases too: it counts on her case.
    council.deliver(reply(mails[JANE], TOM, "Still waiting, says the resident.", style="gmail"))
    assert council.case().chase_count == 2
    [second] = council.new_mail()
    assert second["Subject"].startswith(f"[{REF}] Update requested (2): ")
    assert council.events(kind="update_requested")[-1].actor == TOM


def test_member_reply_after_completion_reopens_then_later_opens_a_linked_case(
    council: Council,
) -> None:
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "Repaired this morning.\n\nPriya"))
    [response] = council.new_mail()
    assert council.case().status == "completed"

    council.deliver(reply(response, JANE, "It has opened up again.", style="gmail"))
    case = council.case()
    assert (case.status, case.completed_at, case.reopened_count) == ("in_progress", None, 1)
    assert case.chase_count == 0
    assert council.kinds()[-1] == "reopened"
    [notice] = council.new_mail()
    assert recipients(notice) == [PRIYA, SUPPORT]
    assert notice["Subject"].startswith(f"[{REF}] Reopened by the councillor: ")
    assert "It has opened up again." in text_of(notice)

    # Completed again, and this time the member writes three weeks later.
    council.deliver(reply(mails[PRIYA], PRIYA, "Re-repaired.\n\nPriya"))
    council.new_mail()
    with transaction(council.engine) as session:
        row = session.exec(select(Case).where(Case.reference == REF)).one()
        row.completed_at = utcnow() - timedelta(days=21)
        session.add(row)
    late = reply(response, JANE, "Now there is a new hole next to it.", style="gmail")
    report = council.deliver(late)
    assert report.references == ["MQ-2026-00002"]
    old, new = council.case(), council.case("MQ-2026-00002")
    assert (old.status, old.reopened_count) == ("completed", 1)
    assert new.linked_case_id == old.id
    assert (new.status, new.member_id) == ("new", old.member_id)
    assert "follows up case id" in council.events("MQ-2026-00002", "case_opened")[0].detail
    assert council.inbound(id_of(late)).case_id == new.id
    [ack] = council.new_mail()
    assert ack["Subject"].startswith("[MQ-2026-00002] Enquiry received: ")
    assert recipients(ack) == [JANE]


# --- a tag in the subject alone -------------------------------------------------------


def test_subject_tag_alone_threads_for_a_party_to_the_case(council: Council) -> None:
    council.assigned_pothole()
    # No In-Reply-To or References; the brackets were lost on the way.
    council.deliver(new_email(JANE_HOME, f"Fwd: {REF.lower()} pothole", "Photos to follow."))
    case = council.case()
    assert case.chase_count == 1
    [notice] = council.new_mail()
    assert recipients(notice) == [PRIYA, SUPPORT]
    # And the lead officer's new email with the tag is her response.
    council.deliver(new_email(PRIYA, f"[{REF}] Mill Lane", "Repaired today."))
    assert council.case().status == "completed"
    [relayed] = council.new_mail()
    assert recipients(relayed) == [JANE]
    assert text_of(relayed).startswith("Repaired today.\n")


@pytest.mark.parametrize(
    ("sender", "who"),
    [("someone@elsewhere.example", "someone@elsewhere.example"), (RAJ, f"member {RAJ}")],
)
def test_subject_tag_from_a_stranger_or_another_member_is_quarantined_unanswered(
    council: Council, sender: str, who: str
) -> None:
    council.assigned_pothole()
    raw = new_email(sender, f"RE: [{REF}] Pothole", "Please add me to this case.")
    report = council.deliver(raw)
    assert (report.quarantined, report.updates, report.cases) == (1, 0, 0)
    [item] = council.quarantined()
    case = council.case()
    assert (item.reason_code, item.case_id, item.sender) == ("not_party_to_case", case.id, sender)
    assert item.reason.startswith(f"{who} wrote on {REF} but is not its member")
    assert council.new_mail() == []  # no stranger reply, nobody told
    assert (case.chase_count, case.status) == (0, "in_progress")
    stored = council.inbound(id_of(raw))
    assert (stored.case_id, stored.disposition) == (None, "quarantined")


def test_tag_for_a_case_that_does_not_exist_is_quarantined(council: Council) -> None:
    council.open_pothole_case()
    council.deliver(new_email(JANE, "RE: [MQ-2026-00999] Pothole", "Any news?"))
    [item] = council.quarantined()
    assert item.reason_code == "unknown_reference"
    assert item.reason == "the message refers to MQ-2026-00999, and there is no such case"
    assert item.case_id is None
    assert council.count(Case) == 1
    assert council.new_mail() == []


def test_signed_reply_address_threads_a_reply_whose_headers_and_tag_were_lost(
    tmp_path: Path, engine: Engine
) -> None:
    key = tmp_path / "signing.key"
    key.write_text("a-long-random-test-signing-key-of-40-bytes\n", encoding="utf-8")
    council = build_council(
        tmp_path,
        engine,
        security={
            "signing_key_env": None,
            "signing_key_file": str(key),
            "signed_reply_address": True,
        },
    )
    lead = council.assigned_pothole()[PRIYA]
    assert re.fullmatch(
        r"<mb\.MQ-2026-00001\.[0-9a-f]{16}\.[0-9a-f]{10}@example\.gov\.uk>", msgid(lead)
    )
    signed = str(lead["Reply-To"])
    assert re.fullmatch(r"enquiries\+MQ-2026-00001\.[0-9a-f]{10}@example\.gov\.uk", signed)

    # A provider rewrote the ids and the subject lost its tag: only the address is left.
    council.deliver(new_email(PRIYA, "Mill Lane", "Repaired today.", to=signed))
    assert council.case().status == "completed"
    [relayed] = council.new_mail()
    assert recipients(relayed) == [JANE]

    # A guessed signature proves nothing: the officer's email belongs to no case.
    forged = re.sub(r"\.[0-9a-f]{10}@", ".0123456789@", signed)
    assert forged != signed and forged.endswith("00001.0123456789@example.gov.uk")
    council.deliver(new_email(PRIYA, "Mill Lane again", "Another one.", to=forged))
    [item] = council.quarantined()
    assert (item.reason_code, item.case_id) == ("not_linked_to_case", None)
    assert council.new_mail() == []


def test_after_a_key_rotation_a_reply_signed_with_the_previous_key_still_threads(
    tmp_path: Path, engine: Engine
) -> None:
    """`previous_signing_keys` are checked when a reply comes back, never used to sign: an
    officer answering mail sent before the rotation reaches the case through its signed
    reply address alone, and mail sent after it is signed with the new key only."""
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    write_signing_key(old)
    write_signing_key(new)
    security = {"signing_key_env": None, "signing_key_file": str(old), "signed_reply_address": True}
    council = build_council(tmp_path, engine, security=security)
    signed_before = str(council.assigned_pothole()[PRIYA]["Reply-To"])

    rotated = {**security, "signing_key_file": str(new), "previous_signing_keys": [str(old)]}
    council.services = make_services(tmp_path, engine, security=rotated)
    assert council.services.verifying_keys == (
        new.read_text().strip().encode(),
        old.read_text().strip().encode(),
    )
    # A provider rewrote the ids and the subject lost its tag: only the address is left.
    council.deliver(new_email(PRIYA, "Mill Lane", "Repaired today.", to=signed_before))
    assert council.case().status == "completed"
    [relayed] = council.new_mail()
    assert recipients(relayed) == [JANE]
    keys = council.services.verifying_keys
    assert verify_message_id(msgid(relayed), keys[:1]) == REF  # signed with the new key
    assert verify_message_id(msgid(relayed), keys[1:]) is None


def test_delegates_case_copies_the_delegate_on_mail_to_the_member(council: Council) -> None:
    council.deliver(fixture_bytes("delegate_writes_for_member.eml"))
    [ack] = council.new_mail()
    [reference] = re.findall(r"\[(MQ-2026-\d{5})\]", str(ack["Subject"]))
    council.assign(PRIYA, reference=reference)
    mails = council.new_mail()
    told = only(mails, JANE)
    assert (told["To"], told["Cc"]) == (JANE, TOM)
    council.deliver(reply(only(mails, PRIYA), PRIYA, "The school bus pass is renewed."))
    [relayed] = council.new_mail()
    assert (relayed["To"], relayed["Cc"]) == (JANE, TOM)
    assert council.case(reference).status == "completed"


# --- status requests ------------------------------------------------------------------


def test_status_request_lists_only_that_members_cases_for_member_and_delegate(
    council: Council,
) -> None:
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "#holding\nSurvey booked."))
    council.deliver(new_email(JANE, "Street light out on Church Street", "Dark for a week."))
    council.deliver(new_email(RAJ, "Care package for Mr Evans", "His carer visits were cut."))
    council.new_mail()
    assert council.count(Case) == 3
    responded = council.case().last_response_at
    assert responded is not None
    last = council.services.calendar.local_date(responded)

    council.deliver(new_email(JANE, "status", ""))
    [dashboard] = council.new_mail()
    assert recipients(dashboard) == [JANE]
    assert dashboard["Subject"] == "Your enquiries: 2 open, 0 completed"
    assert dashboard["In-Reply-To"] is None and not str(dashboard["Subject"]).startswith("[")
    assert dashboard["Auto-Submitted"] == "auto-replied"
    body = text_of(dashboard)
    assert "These are your enquiries as of" in body
    assert "New: 1   In progress: 1   Completed: 0" in body
    pothole = body.split(f"{REF}  Pothole on Mill Lane, Little Bowden", 1)[1].split("MQ-")[0]
    assert "Status:         In progress" in pothole
    assert "Lead officer:   Priya Shah" in pothole
    assert "Reply due by:   Tuesday 8 December 2026" in pothole
    assert f"Last response:  {last:%A} {last.day} {last:%B %Y}" in pothole
    light = body.split("MQ-2026-00002  Street light out on Church Street", 1)[1]
    assert "Status:         New" in light and "not yet assigned" in light
    assert "Last response:  none yet" in light
    assert "MQ-2026-00003" not in body and "Care package" not in body
    assert "MQ-2026-00003" not in html_of(dashboard)
    assert council.count(Case) == 3  # no case opened

    # Tom writes for Jane: the same two cases, to him, named as hers.
    raw = new_email(TOM, "Status?", "")
    council.deliver(raw)
    [for_tom] = council.new_mail()
    assert recipients(for_tom) == [TOM]
    text = text_of(for_tom)
    assert "Dear Tom Baker," in text
    assert "These are the enquiries of Cllr Jane Smith" in text
    assert REF in text and "MQ-2026-00002" in text and "MQ-2026-00003" not in text
    stored = council.inbound(id_of(raw))
    assert (stored.role, stored.disposition, stored.case_id) == ("status_request", "handled", None)

    # Raj's own status request (Outlook, subject only, empty body): his case alone.
    council.deliver(fixture_bytes("reply_status_request_subject_only_empty_body.eml"))
    [for_raj] = council.new_mail()
    assert recipients(for_raj) == [RAJ]
    text = text_of(for_raj)
    assert "MQ-2026-00003  Care package for Mr Evans" in text
    assert REF not in text and "MQ-2026-00002" not in text and "Pothole" not in text
    assert council.count(Case) == 3


# --- strangers ------------------------------------------------------------------------


def test_unknown_sender_is_quarantined_and_answered_once_a_day(council: Council) -> None:
    first = fixture_bytes("unknown_sender_enquiry.eml")
    council.deliver(first)
    [item] = council.quarantined()
    assert (item.reason_code, item.case_id) == ("unknown_sender", None)
    [answer] = council.new_mail()
    assert recipients(answer) == ["resident@example.org"]
    assert answer["Subject"] == "This address is for county councillors"
    assert answer["Auto-Submitted"] == "auto-replied"
    assert "you will not receive another one today" in text_of(answer)
    assert "Thread-Index" not in answer

    council.deliver(new_email("Resident@Example.org", "Bins again", "Still not collected."))
    assert len(council.quarantined()) == 2
    assert council.new_mail() == []
    with council.db() as session:
        kinds = session.exec(select(AutoMail.kind, AutoMail.address)).all()
    assert kinds == [("stranger_reply", "resident@example.org")]
    assert council.count(Case) == 0


@pytest.mark.parametrize(
    ("sender", "code"),
    [
        ("no-reply@parcels.example.com", "unknown_sender"),
        ("noreply+alerts@bank.example", "unknown_sender"),
        ("MAILER-DAEMON@mx.example", "bounce_unmatched"),  # a bounce sign on its own
    ],
)
def test_robot_senders_are_quarantined_and_never_answered(
    council: Council, sender: str, code: str
) -> None:
    council.deliver(new_email(sender, "Your delivery", "Your parcel is on its way."))
    [item] = council.quarantined()
    assert item.reason_code == code
    assert council.new_mail() == []
    assert council.count(AutoMail) == 0
    assert council.count(Case) == 0


# --- auto-replies ---------------------------------------------------------------------


def test_out_of_office_from_the_lead_officer_is_logged_and_coordinators_told(
    council: Council,
) -> None:
    mails = council.assigned_pothole()
    before = council.case()
    raw = out_of_office(mails[PRIYA], "Priya.Shah@example.gov.uk", "Priya Shah")
    report = council.deliver(raw)
    assert (report.updates, report.quarantined) == (1, 0)
    stored = council.inbound(id_of(raw))
    assert (stored.role, stored.case_id) == ("auto_reply", before.id)
    assert stored.reply_text is None
    assert council.kinds()[-2:] == ["auto_reply_received", "officer_away"]
    [away] = council.events(kind="officer_away")
    assert away.detail == f"{PRIYA} is away: consider reassigning"
    [notice] = council.new_mail()
    assert recipients(notice) == [SUPPORT]
    assert notice["Subject"] == f"[{REF}] Officer away: Pothole on Mill Lane, Little Bowden"
    assert "annual leave until Monday 7 December" in text_of(notice)
    assert f"mailbridge case reassign {REF} --lead EMAIL" in " ".join(text_of(notice).split())
    after = council.case()
    for name in ("status", "chase_count", "first_response_at", "completed_at", "updated_at",
                 "lead_officer_id", "extended_due"):  # fmt: skip
        assert getattr(after, name) == getattr(before, name), name


def test_members_out_of_office_on_the_response_never_reopens_the_case(council: Council) -> None:
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "Repaired this morning."))
    [response] = council.new_mail()
    completed = council.case()
    raw = out_of_office(response, JANE, "Cllr Jane Smith")
    council.deliver(raw)
    case = council.case()
    assert (case.status, case.reopened_count, case.completed_at) == (
        "completed",
        0,
        completed.completed_at,
    )
    assert council.inbound(id_of(raw)).role == "auto_reply"
    assert council.kinds()[-1] == "auto_reply_received"
    assert "officer_away" not in council.kinds()
    assert council.new_mail() == []


def test_out_of_office_from_an_unrelated_sender_is_quarantined_unanswered(
    council: Council,
) -> None:
    mails = council.assigned_pothole()
    raw = out_of_office(mails[PRIYA], "j.bloggs@contractor.example", "Joe Bloggs")
    report = council.deliver(raw)
    assert (report.quarantined, report.updates) == (1, 0)
    [item] = council.quarantined()
    assert (item.reason_code, item.case_id) == ("out_of_office", council.case().id)
    assert "nothing was sent in reply" in item.reason
    assert council.new_mail() == []
    assert "officer_away" not in council.kinds()


# --- bounces --------------------------------------------------------------------------


def test_bounce_of_an_acknowledgement_flags_the_address_until_cleared(
    council: Council,
) -> None:
    ack = council.open_pothole_case()
    dsn = bounce(outbox_raw(council, ack), JANE)
    report = council.deliver(dsn)
    assert (report.updates, report.quarantined, report.cases) == (1, 0, 0)
    case = council.case()
    [failed] = council.events(kind="delivery_failed")
    assert failed.detail.startswith(f"permanent failure: {JANE}: 5.1.1 ")
    stored = council.inbound(id_of(dsn))
    assert (stored.role, stored.case_id, failed.message_id) == ("bounce", case.id, stored.id)
    with council.db() as session:
        [flag] = directory.flagged_addresses(session)
    assert (flag.email, flag.case_id) == (JANE, case.id)
    assert flag.reason.startswith("5.1.1 ")
    [notice] = council.new_mail()
    assert recipients(notice) == [SUPPORT]
    assert notice["Subject"] == f"[{REF}] Email not delivered: Pothole on Mill Lane, Little Bowden"
    assert f"{JANE}: 5.1.1" in text_of(notice)
    assert "mailbridge addresses clear EMAIL" in text_of(notice)
    assert case.status == "new" and council.count(Case) == 1

    # Her next enquiry opens a case, but its acknowledgement is withheld.
    council.deliver(new_email(JANE, "Street light out", "Dark for a week."))
    second = council.case("MQ-2026-00002")
    [withheld] = council.events("MQ-2026-00002", "mail_withheld")
    assert withheld.detail.startswith(
        f"acknowledgement not sent to {JANE}: the address bounced permanently (5.1.1 "
    )
    assert "acknowledgement_queued" not in council.kinds("MQ-2026-00002")
    assert second.status == "new"
    assert council.new_mail() == []

    # A coordinator checked the address: mail goes to it again.
    cleared = directory.clear_flag(council.engine, " Cllr.Jane.Smith@example.gov.uk ")
    assert cleared.email == JANE
    with council.db() as session:
        assert directory.flagged_addresses(session) == []
    council.deliver(new_email(JANE, "Blocked drain", "Flooding on School Lane."))
    [ack3] = council.new_mail()
    assert recipients(ack3) == [JANE]
    assert ack3["Subject"].startswith("[MQ-2026-00003] ")
    with pytest.raises(UserError, match=f"^{JANE} is not flagged"):
        directory.clear_flag(council.engine, JANE)


def test_a_forged_bounce_naming_people_our_email_never_went_to_flags_nobody(
    council: Council,
) -> None:
    """Anyone who got one email of ours can quote its Message-ID in a fake delivery report
    naming the councillor, an officer or the coordinators: only an address that email went
    to can have bounced, so the others keep getting their mail."""
    ack = council.open_pothole_case()  # went to Jane only
    for victim in (PRIYA, SUPPORT, RAJ):
        council.deliver(bounce(outbox_raw(council, ack), victim))
    with council.db() as session:
        assert directory.flagged_addresses(session) == []
    not_believed = council.events(kind="bounce_not_believed")
    assert [e.detail for e in not_believed] == [
        f"{victim} was not a recipient of that email; not flagged"
        for victim in (PRIYA, SUPPORT, RAJ)
    ]
    assert council.new_mail() == []  # no notice to the coordinators of a report not believed
    council.deliver(new_email(RAJ, "Street light out", "Dark for a week."))
    [ack2] = council.new_mail()
    assert recipients(ack2) == [RAJ]


def test_a_bounce_flags_the_address_for_the_rest_of_its_own_batch(council: Council) -> None:
    """The flags are read once per transaction: one written in it counts at once."""
    ack = council.open_pothole_case()
    start = utcnow() - timedelta(minutes=3)
    batch = [  # oldest first: Raj's acknowledgement reads the flags before the bounce
        new_email(RAJ, "Bus shelter damaged", "The glass is broken."),
        bounce(outbox_raw(council, ack), JANE),
        new_email(JANE, "Street light out", "Dark for a week."),
    ]
    for minute, raw in enumerate(batch):
        maildir_drop(council.inbox, raw, start + timedelta(minutes=minute))
    report = council.run()
    assert (report.updates, report.cases) == (1, 2)
    assert council.events("MQ-2026-00002", "mail_withheld") == []
    [withheld] = council.events("MQ-2026-00003", "mail_withheld")
    assert withheld.detail.startswith(
        f"acknowledgement not sent to {JANE}: the address bounced permanently (5.1.1 "
    )
    assert [recipients(m) for m in council.new_mail()] == [[RAJ], [SUPPORT]]


def test_delayed_delivery_is_logged_but_flags_nobody(council: Council) -> None:
    ack = council.open_pothole_case()
    council.deliver(bounce(outbox_raw(council, ack), JANE, status="4.4.1", action="delayed"))
    [failed] = council.events(kind="delivery_failed")
    assert failed.detail.startswith(f"temporary failure: {JANE}: 4.4.1 ")
    assert council.count(AddressFlag) == 0
    [notice] = council.new_mail()
    assert recipients(notice) == [SUPPORT]
    assert "yet (the server will keep trying)" in text_of(notice)
    assert "addresses clear" not in text_of(notice)


def test_bounce_for_a_message_we_never_sent_is_quarantined_and_flags_nobody(
    council: Council,
) -> None:
    ack = council.open_pothole_case()
    forged = outbox_raw(council, ack).replace(
        msgid(ack).encode(), b"<mb.MQ-2026-00001.0123456789abcdef@example.gov.uk>"
    )
    council.deliver(bounce(forged, JANE))
    [item] = council.quarantined()
    assert item.reason_code == "bounce_unmatched"
    assert item.reason.startswith("a delivery failure report for a message mailbridge did not")
    assert council.count(AddressFlag) == 0
    assert council.events(kind="delivery_failed") == []
    assert council.new_mail() == []


# --- limits on automatic mail ---------------------------------------------------------


def test_automatic_mail_over_the_hourly_limit_is_withheld(tmp_path: Path, engine: Engine) -> None:
    council = build_council(tmp_path, engine, automatic_mail={"per_address_per_hour": 3})
    # A burst arriving together, processed in one batch.
    report = council.deliver(*(new_email(RAJ, "status", f"request {n}") for n in range(5)))
    assert (report.updates, report.sent) == (5, 3)
    assert [recipients(m) for m in council.new_mail()] == [[RAJ]] * 3
    with council.db() as session:
        assert (
            session.exec(
                select(func.count()).where(AutoMail.address == RAJ, AutoMail.kind == "status")
            ).one()
            == 3
        )
    withheld = council.events(None, "mail_withheld")
    assert [e.detail for e in withheld] == [
        f"status not sent to {RAJ}: automatic mail limit reached: "
        "3 in the last hour (the limit is 3)"
    ] * 2
    # An hour later the limit has room again.
    with transaction(council.engine) as session:
        for row in session.exec(select(AutoMail)).all():
            row.at = row.at - timedelta(minutes=61)
            session.add(row)
    council.deliver(new_email(RAJ, "status", "again"))
    [dashboard] = council.new_mail()
    assert recipients(dashboard) == [RAJ]


def test_acknowledgements_are_not_limited(tmp_path: Path, engine: Engine) -> None:
    council = build_council(tmp_path, engine, automatic_mail={"per_address_per_hour": 2})
    raws = [new_email(JANE, f"Enquiry {n}", f"Problem number {n}.") for n in range(4)]
    report = council.deliver(*raws)
    assert report.cases == 4
    acks = council.new_mail()
    assert [recipients(a) for a in acks] == [[JANE]] * 4
    assert council.events(None, "mail_withheld") == []
    assert council.count(AutoMail) == 0  # they do not count against her status replies
    council.deliver(new_email(JANE, "status", ""))
    [dashboard] = council.new_mail()
    assert dashboard["Subject"] == "Your enquiries: 4 open, 0 completed"


# --- accepting a quarantined reply ----------------------------------------------------


def test_quarantined_colleague_reply_is_accepted_as_a_contribution(council: Council) -> None:
    mails = council.assigned_pothole()
    # Priya forwarded the enquiry to Ann, who is on no case; Ann replies to it.
    raw = reply(mails[PRIYA], ANN, "The drainage survey from 2023 is attached to our file.",
                name="Ann Other")  # fmt: skip
    council.deliver(raw)
    [item] = council.quarantined()
    case = council.case()
    assert (item.reason_code, item.case_id) == ("not_party_to_case", case.id)
    assert council.new_mail() == []

    assert quarantine.accept(council.services, item.id or 0, "contribution", actor=SUPPORT) == REF
    with council.db() as session:
        entry = session.get(QuarantineItem, item.id)
        assert entry is not None
        assert (entry.status, entry.message_id) == ("accepted", None)
        assert entry.resolved_at is not None
    stored = council.inbound(id_of(raw))
    assert (stored.role, stored.case_id, stored.disposition) == ("contribution", case.id, "case")
    assert stored.reply_text == "The drainage survey from 2023 is attached to our file."
    assert council.kinds()[-2:] == ["contribution", "quarantine_accepted"]
    assert council.events(kind="quarantine_accepted")[0].actor == SUPPORT
    council.run()
    [forwarded] = council.new_mail()
    assert recipients(forwarded) == [PRIYA, SUPPORT]
    assert forwarded["Subject"].startswith(f"[{REF}] Contribution from Ann Other: ")
    assert "The drainage survey from 2023" in text_of(forwarded)

    with pytest.raises(UserError, match=f"^quarantined message {item.id} was already accepted"):
        quarantine.accept(council.services, item.id or 0, "contribution", actor=SUPPORT)
    with pytest.raises(UserError, match=r"^--as must be one of: contribution$"):
        quarantine.accept(council.services, item.id or 0, "response", actor=SUPPORT)
    assert council.kinds().count("contribution") == 1


def test_accept_refuses_a_message_that_points_at_no_case(council: Council) -> None:
    council.deliver(fixture_bytes("unknown_sender_enquiry.eml"))
    [item] = council.quarantined()
    with pytest.raises(UserError, match="does not point at a case"):
        quarantine.accept(council.services, item.id or 0, actor=SUPPORT)
    assert council.quarantined()[0].status == "waiting"


# --- the command line -----------------------------------------------------------------


@dataclass
class Home:
    config: Path
    council: Council

    def cli(self, *args: str) -> Result:
        return council_cli(self.config, *args)


@pytest.fixture
def home(tmp_path: Path, migrated_db_url: str) -> Iterator[Home]:
    """A config.toml on a migrated database of each kind, with the pothole case assigned-ready."""
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine)
    config = write_council_config(tmp_path, migrated_db_url)
    council.open_pothole_case()
    yield Home(config, council)
    engine.dispose()


def test_cli_case_assign_and_reassign(home: Home) -> None:
    lines = ok_lines(home.cli("case", "assign", REF, "--lead", PRIYA, "--also", SAM))
    assert lines == [
        f"{REF}: lead officer {PRIYA}, also {SAM}",
        f"  the enquiry is queued for {PRIYA}, {SAM}",
        "  the member is told who the lead officer is",
        "  emails go out with the next pass of `mailbridge run`",
    ]
    assert home.council.case().status == "in_progress"
    one_error(
        home.cli("case", "assign", REF, "--lead", SAM),
        f"{REF} is already assigned; use `mailbridge case reassign` to change its officers",
    )
    one_error(
        home.cli("case", "reassign", REF, "--lead", "ghost@example.gov.uk"),
        "--lead ghost@example.gov.uk: nobody in the directory has this address (import "
        "officers with `mailbridge officers import officers.csv`)",
    )
    lines = ok_lines(home.cli("case", "reassign", REF.lower(), "--lead", ANN))
    assert lines[:2] == [f"{REF}: lead officer {ANN}", f"  the enquiry is queued for {ANN}"]
    assert home.council.case().lead_officer_id == home.council.person_id(ANN)
    [reassigned] = home.council.events(kind="reassigned")
    assert reassigned.actor == CLI_ACTOR


def test_cli_addresses_list_and_clear(home: Home) -> None:
    assert "No flagged addresses" in "\n".join(ok_lines(home.cli("addresses", "list")))
    ack = council_first(home.council, JANE)
    home.council.deliver(bounce(outbox_raw(home.council, ack), JANE))
    listing = "\n".join(ok_lines(home.cli("addresses", "list")))
    assert "1 flagged" in listing
    [row] = [line for line in listing.splitlines() if JANE in line]
    assert "5.1.1" in row
    assert ok_lines(home.cli("addresses", "clear", JANE)) == [
        f"{JANE} is cleared; mailbridge will mail it again"
    ]
    assert home.council.count(AddressFlag) == 0
    one_error(
        home.cli("addresses", "clear", JANE),
        f"{JANE} is not flagged (see `mailbridge addresses list`)",
    )


def test_cli_quarantine_accept(home: Home) -> None:
    home.council.assign(PRIYA)
    to_priya = council_first(home.council, PRIYA)
    home.council.deliver(reply(to_priya, ANN, "Survey attached.", name="Ann Other"))
    [item] = home.council.quarantined()
    one_error(
        home.cli("quarantine", "accept", str(item.id), "--as", "note"),
        "--as must be one of: contribution",
    )
    assert ok_lines(home.cli("quarantine", "accept", str(item.id), "--as", "contribution")) == [
        f"message {item.id} is now a contribution on {REF}; the lead officer and "
        "coordinators get it with the next pass of `mailbridge run`"
    ]
    assert "contribution" in home.council.kinds()
    one_error(
        home.cli("quarantine", "accept", str(item.id)),
        f"quarantined message {item.id} was already accepted",
    )
    one_error(
        home.cli("quarantine", "accept", "999"),
        "no quarantined message has id 999 (see `mailbridge quarantine list`)",
    )


@pytest.mark.parametrize(
    ("from_header", "code"),
    [
        # The reader sees Priya's address; mail servers and DMARC see the attacker's.
        ("=?utf-8?q?priya.shah=40example.gov.uk?= <attacker@evil.example>", "sender_ambiguous"),
        (f"{PRIYA}, attacker@evil.example", "sender_ambiguous"),
        # Priya's name on an outside address: a stranger, whatever Reply-To says.
        ("Priya Shah <attacker@evil.example>", "not_party_to_case"),
    ],
)
def test_a_forged_lead_officer_reply_changes_nothing_and_reaches_nobody(
    council: Council, from_header: str, code: str
) -> None:
    """The attack that completed a case and mailed the attacker's text (and a deadline moved
    by #extend) to the councillor from the council's own address, signed with the officer's
    name: now it is quarantined, the case stays as it was, and nobody is mailed."""
    mails = council.assigned_pothole()
    before = council.case()
    forged = message_from_bytes(
        reply(mails[PRIYA], PRIYA, "#holding #extend 60\nDone. Log in at http://evil.example/"),
        policy=policy.default,
    )
    del forged["From"]
    forged["From"] = from_header
    forged["Reply-To"] = PRIYA
    council.deliver(forged.as_bytes())
    [item] = council.quarantined()
    assert (item.reason_code, item.case_id) == (code, before.id)
    after = council.case()
    assert (after.status, after.extended_due, after.first_response_at) == (
        before.status,
        before.extended_due,
        before.first_response_at,
    )
    assert council.new_mail() == []
    assert [e.kind for e in council.events(kind="responded")] == []


def test_the_reply_to_a_stranger_repeats_nothing_of_their_email(council: Council) -> None:
    """With a forged From, the stranger reply delivered the sender's words from the council's
    own address: 200 such replies read "This address is for county councillors: Your
    mailbox is full - re-validate at http://evil.example/..."."""
    phishing = "Your mailbox is full - re-validate at http://evil.example/login"
    council.deliver(new_email("victim@example.org", phishing, "Click http://evil.example/x"))
    [answer] = council.new_mail()
    assert recipients(answer) == ["victim@example.org"]
    assert answer["Subject"] == "This address is for county councillors"
    assert "evil.example" not in answer.as_string() and "mailbox is full" not in text_of(answer)
