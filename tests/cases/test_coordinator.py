"""A coordinator's changes to a case through the command line, on SQLite and PostgreSQL.

Each test runs `mailbridge case ...` with Typer's CliRunner against a config.toml on a
migrated database where Jane's pothole enquiry (REF) has just been opened, then looks at the
case row, its events and messages, and at the mail one pass of the daemon sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from typer.testing import CliRunner, Result

from mailbridge.cases.correspondence import history
from mailbridge.cli.app import app
from mailbridge.console.views import case_detail
from mailbridge.deadlines.calendar import calendar_from_config
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import (
    Attachment,
    Case,
    CaseMember,
    Event,
    Message,
    OutboxMessage,
)
from tests.factories import add_person, fixture_bytes, ok_lines, one_error
from tests.helpers.cli import CLI_ACTOR
from tests.helpers.council import (
    GARETH,
    JANE,
    PRIYA,
    RAJ,
    REF,
    SAM,
    TOM,
    Council,
    attachment_names,
    build_council,
    new_email,
    only,
    recipients,
    reply,
    text_of,
    write_council_config,
)

# Case work reads the clock itself (deadlines, "today" in the lists): one fixed moment.
pytestmark = pytest.mark.usefixtures("fixed_clock")

runner = CliRunner()


@dataclass
class Desk:
    config: Path
    council: Council
    tmp: Path

    def cli(self, *args: str) -> Result:
        return runner.invoke(app, [*args, "--config", str(self.config)], env={"COLUMNS": "300"})

    def events(self, reference: str = REF, kind: str | None = None) -> list[Event]:
        return self.council.events(reference, kind)

    def outbox_count(self) -> int:
        return self.council.count(OutboxMessage)


@pytest.fixture
def desk(tmp_path: Path, migrated_db_url: str) -> Iterator[Desk]:
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine)
    config = write_council_config(
        tmp_path,
        migrated_db_url,
        """\
[[service_areas]]
name = "Highways"
directorate = "Environment and Transport"
keywords = ["pothole", "road", "pavement"]
[[service_areas]]
name = "School Transport"
directorate = "Children's Services"
keywords = ["school transport", "school bus"]
""",
    )
    council.open_pothole_case()
    yield Desk(config, council, tmp_path)
    engine.dispose()


def raj_case(desk: Desk) -> str:
    """Raj raises the same pothole in his own email: a second case."""
    report = desk.council.deliver(
        new_email(RAJ, "Pothole outside 14 Main Street", "Residents report a deep pothole.")
    )
    [reference] = report.references
    desk.council.new_mail()
    return reference


# --- help -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    ["set", "status", "note", "reply", "reopen", "link", "merge", "convert", "attachments"],
)
def test_every_command_explains_itself_with_an_example(command: str) -> None:
    result = runner.invoke(app, ["case", command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Example: mailbridge case {command} MQ-2026-" in result.stdout


# --- set ------------------------------------------------------------------------------


def test_set_changes_only_the_given_fields_and_logs_old_and_new(desk: Desk) -> None:
    before = desk.council.case()
    assert before.service_area == "Highways" and before.district == "Harborough"
    lines = ok_lines(
        desk.cli(
            "case", "set", REF.lower(), "--service-area", "school transport",
            "--contact", "phone", "--sensitive", "--enquiry-type", "Pothole",
        )
    )  # fmt: skip
    assert lines == [
        f"{REF}:",
        "  service area: Highways → School Transport",
        "  enquiry type: (none) → Pothole",
        "  preferred contact: (none) → phone",
        "  sensitive: no → yes",
    ]
    case = desk.council.case()
    assert (case.service_area, case.enquiry_type, case.preferred_contact, case.sensitive) == (
        "School Transport",
        "Pothole",
        "phone",
        True,
    )
    assert (case.directorate, case.district) == (before.directorate, before.district)
    [event] = desk.events(kind="fields_changed")
    assert event.detail == (
        "service area: Highways → School Transport; enquiry type: (none) → Pothole; "
        "preferred contact: (none) → phone; sensitive: no → yes"
    )
    assert event.actor == CLI_ACTOR
    # The same values again change nothing and log nothing; "" clears a field.
    assert ok_lines(desk.cli("case", "set", REF, "--contact", "phone")) == [
        f"{REF}: nothing changed (the values were already so)"
    ]
    assert ok_lines(desk.cli("case", "set", REF, "--district", "", "--not-sensitive")) == [
        f"{REF}:",
        "  district: Harborough → (none)",
        "  sensitive: yes → no",
    ]
    assert len(desk.events(kind="fields_changed")) == 2
    case = desk.council.case()
    assert (case.district, case.sensitive) == (None, False)


def test_set_refuses_what_it_cannot_do(desk: Desk) -> None:
    one_error(
        desk.cli("case", "set", REF, "--contact", "fax"),
        "--contact must be one of: email, phone, letter",
    )
    one_error(
        desk.cli("case", "set", REF, "--service-area", "Parks"),
        "--service-area 'Parks' is not a service area in the config "
        "(one of: Highways, School Transport)",
    )
    one_error(
        desk.cli("case", "set", REF),
        "nothing to change: give at least one of --service-area, --enquiry-type, "
        "--directorate, --district, --contact, --sensitive/--not-sensitive",
    )
    one_error(
        desk.cli("case", "set", "MQ-2026-09999", "--district", "Blaby"),
        "no case has reference MQ-2026-09999 (see `mailbridge cases list`)",
    )
    assert desk.events(kind="fields_changed") == []
    assert desk.council.case().preferred_contact is None


# --- status ---------------------------------------------------------------------------


def test_status_allows_only_the_transitions_that_make_sense(desk: Desk) -> None:
    assert ok_lines(desk.cli("case", "status", REF, "in_progress")) == [f"{REF}: new → in progress"]
    # No lead officer yet: it may go back to new.
    assert ok_lines(desk.cli("case", "status", REF, "new")) == [f"{REF}: in progress → new"]
    one_error(desk.cli("case", "status", REF, "new"), f"{REF} is already new")
    one_error(
        desk.cli("case", "status", REF, "done"),
        "status must be one of: new, in_progress, completed",
    )
    one_error(
        desk.cli("case", "status", REF, "closed"),
        "a case is closed by `mailbridge case merge` or `mailbridge case convert`, "
        "not by a status change",
    )
    desk.council.assign(PRIYA)
    one_error(
        desk.cli("case", "status", REF, "new"),
        f"{REF} has a lead officer, so it cannot be new again; "
        "use `mailbridge case reassign` to change its officers",
    )
    assert desk.council.case().completed_at is None
    assert ok_lines(desk.cli("case", "status", REF, "completed")) == [
        f"{REF}: in progress → completed"
    ]
    case = desk.council.case()
    assert case.status == "completed" and case.completed_at is not None
    one_error(
        desk.cli("case", "status", REF, "in_progress"),
        f"{REF} is completed; use `mailbridge case reopen {REF}` to open it again",
    )
    details = [e.detail for e in desk.events(kind="status_changed")]
    assert details == [
        "status new → in progress",
        "status in progress → new",
        "status in progress → completed",
    ]
    assert all(e.actor == CLI_ACTOR for e in desk.events(kind="status_changed"))


# --- note -----------------------------------------------------------------------------


def test_note_is_internal_kept_on_the_case_and_mailed_to_nobody(desk: Desk) -> None:
    mail_before = desk.outbox_count()
    text = "Spoke to the contractor: repair booked for Monday."
    assert ok_lines(desk.cli("case", "note", REF, text)) == [
        f"{REF}: note added (not sent to anyone)"
    ]
    assert desk.outbox_count() == mail_before
    [event] = desk.events(kind="note")
    assert event.detail == "internal note" and event.actor == CLI_ACTOR
    with desk.council.db() as session:
        message = session.get(Message, event.message_id)
        assert message is not None
        assert (message.direction, message.role, message.body_text) == ("in", "note", text)
        assert message.case_id == desk.council.case().id
        notes = [h for h in history(session, message.case_id or 0) if h["role"] == "note"]
    assert [n["text"] for n in notes] == [text]
    one_error(desk.cli("case", "note", REF, "   "), "the note is empty")


# --- link and reply -------------------------------------------------------------------


def test_link_puts_another_member_on_the_case_and_officer_responses_reach_both(
    desk: Desk,
) -> None:
    lines = ok_lines(desk.cli("case", "link", REF, "--member", RAJ.upper()))
    assert lines == [
        f"{REF}: Cllr Raj Patel <{RAJ}> added",
        f"  responses now go to {JANE}, {RAJ}",
    ]
    with desk.council.db() as session:
        rows = session.exec(select(CaseMember)).all()
    assert [(r.case_id, r.person_id) for r in rows] == [
        (desk.council.case().id, desk.council.person_id(RAJ))
    ]
    [event] = desk.events(kind="member_linked")
    assert RAJ in event.detail and event.actor == CLI_ACTOR
    one_error(
        desk.cli("case", "link", REF, "--member", RAJ),
        f"Cllr Raj Patel <{RAJ}> is already on {REF}",
    )
    one_error(
        desk.cli("case", "link", REF, "--member", JANE),
        f"Cllr Jane Smith <{JANE}> is the member who raised {REF}",
    )
    one_error(
        desk.cli("case", "link", REF, "--member", PRIYA),
        f"--member {PRIYA} is an officer, not a member",
    )
    one_error(
        desk.cli("case", "link", REF, "--member", "ghost@example.org"),
        "--member ghost@example.org: nobody in the directory has this address "
        "(import members with `mailbridge members import members.csv`)",
    )
    # The lead officer answers by email: the response goes to Jane and Raj, Tom is not
    # on it (Jane wrote herself).
    desk.council.assign(PRIYA)
    to_priya = only(desk.council.new_mail(), PRIYA)
    desk.council.deliver(reply(to_priya, PRIYA, "The pothole is repaired.", name="Priya Shah"))
    [response] = desk.council.new_mail()
    assert sorted(recipients(response)) == sorted([JANE, RAJ])
    assert "The pothole is repaired." in text_of(response)
    assert TOM not in recipients(response)


def test_reply_mails_every_member_with_the_tag_and_counts_as_a_response(desk: Desk) -> None:
    ok_lines(desk.cli("case", "link", REF, "--member", RAJ))
    plan = desk.tmp / "repair plan.pdf"
    plan.write_bytes(b"%PDF-1.4 repair plan")
    assert desk.council.case().first_response_at is None
    lines = ok_lines(
        desk.cli("case", "reply", REF, "The repair is booked for Monday.", "--attach", str(plan))
    )
    assert lines == [
        f"{REF}: reply queued for {JANE}, {RAJ}",
        "  attached: repair plan.pdf",
        "  emails go out with the next pass of `mailbridge run`",
    ]
    case = desk.council.case()
    assert case.first_response_at is not None
    assert case.last_response_at == case.first_response_at
    assert case.status == "new", "a reply does not complete the case"
    desk.council.run()
    [sent] = desk.council.new_mail()
    assert recipients(sent) == [JANE, RAJ]
    assert str(sent["Subject"]) == (f"[{REF}] Reply on your enquiry: {case.subject}")
    assert "The repair is booked for Monday." in text_of(sent)
    assert attachment_names(sent) == ["repair plan.pdf"]
    [event] = desk.events(kind="replied")
    assert event.detail == f"reply sent to {JANE}, {RAJ}; attached repair plan.pdf"
    assert event.actor == CLI_ACTOR
    with desk.council.db() as session:
        out = session.get(Message, event.message_id)
        assert out is not None and (out.direction, out.role) == ("out", "reply")
        [kept] = session.exec(select(Attachment).where(Attachment.message_id == out.id)).all()
    assert (kept.filename, kept.size, kept.case_id) == ("repair plan.pdf", 20, case.id)
    assert desk.council.services.blobs.get(kept.sha256 or "") == b"%PDF-1.4 repair plan"
    # A second reply moves last_response_at only.
    ok_lines(desk.cli("case", "reply", REF, "Update: the crew is on site."))
    again = desk.council.case()
    assert again.first_response_at == case.first_response_at
    assert again.last_response_at is not None
    assert again.last_response_at > (case.last_response_at or again.last_response_at)


def test_reply_refuses_a_missing_file_an_empty_text_and_a_closed_case(desk: Desk) -> None:
    mail_before = desk.outbox_count()
    missing = desk.tmp / "nope.pdf"
    one_error(
        desk.cli("case", "reply", REF, "See attached.", "--attach", str(missing)),
        f"--attach {missing}: no such file",
    )
    one_error(desk.cli("case", "reply", REF, "  "), "the reply is empty")
    ok_lines(desk.cli("case", "convert", REF, "--to", "complaint", "--reason", "Unhappy"))
    one_error(
        desk.cli("case", "reply", REF, "Hello"),
        f"{REF} is closed (converted to a complaint); reply on the case that carries on from it",
    )
    assert desk.outbox_count() == mail_before
    assert desk.events(kind="replied") == []
    assert desk.council.case().first_response_at is None


# --- reopen ---------------------------------------------------------------------------


def test_reopen_brings_a_completed_case_back(desk: Desk) -> None:
    one_error(
        desk.cli("case", "reopen", REF),
        f"{REF} is new; only a completed case can be reopened",
    )
    ok_lines(desk.cli("case", "status", REF, "completed"))
    assert ok_lines(desk.cli("case", "reopen", REF, "--reason", "the repair failed")) == [
        f"{REF}: reopened, now new"
    ]
    case = desk.council.case()
    assert (case.status, case.completed_at, case.reopened_count) == ("new", None, 1)
    [event] = desk.events(kind="reopened")
    assert event.detail == (
        "reopened by a coordinator (1 times so far); now new: the repair failed"
    )
    assert event.actor == CLI_ACTOR
    # With a lead officer it goes back to in progress.
    desk.council.assign(PRIYA)
    ok_lines(desk.cli("case", "status", REF, "completed"))
    assert ok_lines(desk.cli("case", "reopen", REF)) == [f"{REF}: reopened, now in progress"]
    case = desk.council.case()
    assert (case.status, case.reopened_count) == ("in_progress", 2)


# --- merge ----------------------------------------------------------------------------


def test_merge_closes_one_case_into_the_other_and_copies_its_member(desk: Desk) -> None:
    other = raj_case(desk)
    lines = ok_lines(desk.cli("case", "merge", other, "--into", REF))
    assert lines == [
        f"{other}: merged into {REF} and closed",
        f"  now on {REF}: Cllr Raj Patel <{RAJ}>",
    ]
    merged, kept = desk.council.case(other), desk.council.case(REF)
    assert (merged.status, merged.merged_into_id, merged.closed_reason) == (
        "closed",
        kept.id,
        f"merged into {REF}",
    )
    assert kept.status == "new"
    with desk.council.db() as session:
        members = session.exec(select(CaseMember.person_id).where(CaseMember.case_id == kept.id))
        assert list(members) == [desk.council.person_id(RAJ)]
    [on_merged] = desk.events(other, kind="merged")
    [on_kept] = desk.events(REF, kind="merged_in")
    assert on_merged.detail.startswith(f"merged into {REF} (was new); closed here")
    assert (
        on_kept.detail == f"{other} merged into this case; Cllr Raj Patel <{RAJ}> now on this case"
    )
    assert on_merged.actor == CLI_ACTOR and on_kept.actor == CLI_ACTOR
    # The merged case keeps its history; the kept one shows where things came from.
    with Session(desk.council.engine) as session:
        cal = calendar_from_config(desk.council.services.config.council)
        kept_view = case_detail(session, REF, cal, date(2026, 11, 25))
        merged_view = case_detail(session, other, cal, date(2026, 11, 25))
    assert kept_view.merged_from == [other]
    assert [p.email for p in kept_view.other_members] == [RAJ]
    assert merged_view.merged_into == REF
    assert any(t.kind == "email in" for t in merged_view.timeline)
    # Impossible merges.
    one_error(
        desk.cli("case", "merge", REF, "--into", REF),
        f"{REF} cannot be merged into itself",
    )
    one_error(
        desk.cli("case", "merge", other, "--into", REF),
        f"{other} is closed (merged into {REF}) and cannot change",
    )
    one_error(
        desk.cli("case", "merge", REF, "--into", other),
        f"--into {other} is closed (merged into {REF}); merge into an open case",
    )
    one_error(
        desk.cli("case", "status", other, "in_progress"),
        f"{other} is closed (merged into {REF}) and cannot change",
    )
    # From now on replies on the kept case reach both councillors.
    ok_lines(desk.cli("case", "reply", REF, "One case now covers both enquiries."))
    desk.council.run()
    [sent] = desk.council.new_mail()
    assert recipients(sent) == [JANE, RAJ]


# --- convert --------------------------------------------------------------------------


def test_convert_closes_the_case_here_with_the_reason_and_keeps_history(desk: Desk) -> None:
    ok_lines(desk.cli("case", "note", REF, "Resident wants to complain."))
    assert ok_lines(
        desk.cli("case", "convert", REF, "--to", "service-request", "--reason", "Routine repair")
    ) == [f"{REF}: converted to a service request and closed"]
    case = desk.council.case()
    assert (case.status, case.converted_to, case.closed_reason) == (
        "closed",
        "service_request",
        "Routine repair",
    )
    [event] = desk.events(kind="converted")
    assert event.detail == "converted to a service request (was new); closed here: Routine repair"
    assert "note" in desk.council.kinds(), "history kept"
    one_error(
        desk.cli("case", "convert", REF, "--to", "complaint", "--reason", "again"),
        f"{REF} is closed (converted to a service request) and cannot change",
    )
    one_error(
        desk.cli("case", "reopen", REF),
        f"{REF} is closed (converted to a service request) and cannot change",
    )


def test_convert_refuses_an_unknown_kind_or_an_empty_reason(desk: Desk) -> None:
    one_error(
        desk.cli("case", "convert", REF, "--to", "petition", "--reason", "x"),
        "--to must be one of: complaint, service-request",
    )
    one_error(
        desk.cli("case", "convert", REF, "--to", "complaint", "--reason", " "),
        "--reason is empty: say why the case is converted",
    )
    assert desk.council.case().status == "new"
    assert desk.events(kind="converted") == []


# --- attachments ----------------------------------------------------------------------


def test_attachments_save_writes_unique_names_and_never_overwrites_unasked(desk: Desk) -> None:
    add_person(desk.council.engine, "member", "Cllr Gareth Jones", GARETH, district="Harborough")
    [gareth_ref] = desk.council.deliver(
        fixture_bytes("member_enquiry_with_photo_and_pdf.eml")
    ).references
    letter = "Letter from resident - 21 Station Road.pdf"
    # A coordinator's reply attaches a second file called IMG_4521.jpg.
    photo2 = desk.tmp / "IMG_4521.jpg"
    photo2.write_bytes(b"another photo")
    ok_lines(desk.cli("case", "reply", gareth_ref, "A newer photo.", "--attach", str(photo2)))
    target = desk.tmp / "saved"
    lines = ok_lines(desk.cli("case", "attachments", gareth_ref, "--save", str(target)))
    assert lines == [
        f"3 saved to {target}:",
        "  IMG_4521.jpg  (159 B)",
        f"  {letter}  (634 B)",
        "  IMG_4521 (2).jpg  (13 B)",
    ]
    with desk.council.db() as session:
        rows = session.exec(
            select(Attachment)
            .where(Attachment.case_id == desk.council.case(gareth_ref).id)
            .order_by(col(Attachment.id))
        ).all()
    blobs = desk.council.services.blobs
    assert (target / "IMG_4521.jpg").read_bytes() == blobs.get(rows[0].sha256 or "")
    assert (target / letter).read_bytes() == blobs.get(rows[1].sha256 or "")
    assert (target / "IMG_4521 (2).jpg").read_bytes() == b"another photo"
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["IMG_4521.jpg", letter, "IMG_4521 (2).jpg"]
    )
    # Again: refused, and nothing touched.
    (target / letter).write_bytes(b"edited by hand")
    one_error(
        desk.cli("case", "attachments", gareth_ref, "--save", str(target)),
        f"{target} already has IMG_4521.jpg, {letter}, IMG_4521 (2).jpg; nothing saved "
        "(use --force to overwrite)",
    )
    assert (target / letter).read_bytes() == b"edited by hand"
    ok_lines(desk.cli("case", "attachments", gareth_ref, "--save", str(target), "--force"))
    assert (target / letter).read_bytes() == blobs.get(rows[1].sha256 or "")
    saves = desk.events(gareth_ref, kind="attachments_saved")
    assert len(saves) == 2 and saves[0].actor == CLI_ACTOR
    one_error(
        desk.cli("case", "attachments", REF, "--save", str(desk.tmp / "none")),
        f"{REF} has no kept attachments",
    )
    assert not (desk.tmp / "none").exists()


def test_case_detail_lists_officers_and_members(desk: Desk) -> None:
    desk.council.assign(PRIYA, SAM)
    ok_lines(desk.cli("case", "link", REF, "--member", RAJ))
    with Session(desk.council.engine) as session:
        cal = calendar_from_config(desk.council.services.config.council)
        view = case_detail(session, REF, cal, date(2026, 11, 25))
    assert [(p.email, role) for p, role in view.officers] == [(PRIYA, "lead"), (SAM, "additional")]
    assert [p.email for p in view.other_members] == [RAJ]
    assert (view.merged_into, view.merged_from, view.converted_to, view.chasers) == (
        None,
        [],
        None,
        0,
    )
    assert isinstance(view.case, Case)


def test_a_merged_case_cannot_be_assigned(desk: Desk) -> None:
    other = raj_case(desk)
    ok_lines(desk.cli("case", "merge", other, "--into", REF))
    result = desk.cli("case", "assign", other, "--lead", PRIYA)
    one_error(result, f"{other} is closed (merged into {REF}) and cannot change")
    assert desk.events(other, kind="assigned") == []


def test_mail_on_a_merged_case_goes_to_the_case_it_was_merged_into(desk: Desk) -> None:
    report = desk.council.deliver(
        new_email(RAJ, "Pothole outside 14 Main Street", "Residents report a deep pothole.")
    )
    [other] = report.references
    [ack] = desk.council.new_mail()
    ok_lines(desk.cli("case", "merge", other, "--into", REF))
    answer = reply(ack, RAJ, "Any news on this?", name="Cllr Raj Patel")
    desk.council.deliver(answer)
    with desk.council.db() as session:
        [row] = session.exec(
            select(Message).where(Message.sender == RAJ, Message.role == "chaser")
        ).all()
    # Raj is a member of the case his was merged into: his chaser counts there.
    assert row.case_id == desk.council.case(REF).id
    assert desk.council.case(REF).chase_count == 1
    assert desk.council.case(other).status == "closed"
    assert desk.council.case(other).chase_count == 0


def show_fields(desk: Desk, reference: str) -> dict[str, str]:
    """`case show`'s field block as label -> value."""
    fields = {}
    for line in ok_lines(desk.cli("case", "show", reference)):
        if line.startswith("  ") and len(line) > 18 and line[17] == " " and line[2] != " ":
            fields[line[2:17].strip()] = line[18:].strip()
    return fields


def test_case_show_names_other_members_merges_and_conversions(desk: Desk) -> None:
    other = raj_case(desk)
    ok_lines(desk.cli("case", "merge", other, "--into", REF))
    kept = show_fields(desk, REF)
    assert kept["Also members"] == f"Cllr Raj Patel <{RAJ}>"
    assert kept["Merged in"] == other
    merged = show_fields(desk, other)
    assert (merged["Status"], merged["Merged into"]) == ("Closed", REF)
    assert "Closed because" not in merged  # the merge line says it all
    ok_lines(desk.cli("case", "convert", REF, "--to", "complaint", "--reason", "Formal complaint"))
    converted = show_fields(desk, REF)
    assert (converted["Converted to"], converted["Closed because"]) == (
        "complaint",
        "Formal complaint",
    )
