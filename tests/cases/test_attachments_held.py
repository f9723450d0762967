"""Nothing dangerous is sent on: each attack a real email (tests/fixtures/mail, named for
it) delivered to a council on the embedded default; what went out read back from the
outbox Maildir, and what the coordinators have from `mailbridge case show` and
`case attachments --save`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from mailbridge.mail.attachments import UNPACKED
from mailbridge.mail.parsing import ParsedAttachment, parse
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Attachment
from tests.factories import fixture_bytes, ok_lines, one_error
from tests.helpers.council import (
    JANE,
    PRIYA,
    REF,
    SAM,
    SUPPORT,
    Council,
    attachment_names,
    build_council,
    council_cli,
    html_of,
    only,
    recipients,
    reply,
    text_of,
    write_council_config,
)

pytestmark = pytest.mark.usefixtures("fixed_clock")

SCANNER = str(Path(__file__).parents[1] / "helpers" / "eicar_scanner.py")


@dataclass
class Desk:
    """A council, and its config for `mailbridge` commands (`case show`, `case reply`)."""

    council: Council
    config: Path

    def cli(self, *args: str) -> list[str]:
        return ok_lines(council_cli(self.config, *args))

    def rows(self) -> dict[str, Attachment]:
        with self.council.db() as session:
            found = session.exec(select(Attachment).order_by(col(Attachment.id))).all()
            return {a.filename: a for a in found}


def _desk(tmp_path: Path, url: str, **sections: dict[str, object]) -> Desk:
    engine = ensure_database(url)
    council = build_council(tmp_path, engine, **sections)
    return Desk(council, write_council_config(tmp_path, url))


@pytest.fixture
def desk(tmp_path: Path, migrated_db_url: str) -> Iterator[Desk]:
    yield _desk(tmp_path, migrated_db_url)


def attachments(fixture: str) -> dict[str, ParsedAttachment]:
    return {a.filename: a for a in parse(fixture_bytes(fixture)).attachments}


def held_lines(mail: EmailMessage) -> list[str]:
    """The names the email gives under "Held back", one per line."""
    lines = text_of(mail).splitlines()
    start = next(i for i, line in enumerate(lines) if "can run code when opened" in line)
    out = []
    for line in lines[start + 1 :]:
        if line.startswith("  - "):
            out.append(line[4:])
        elif out and not line.strip():
            break
    return out


def enquiry_to_lead(desk: Desk, fixture: str) -> tuple[EmailMessage, EmailMessage]:
    """Jane's enquiry in the fixture opens a case, assigned to Priya: (ack, Priya's email)."""
    report = desk.council.deliver(fixture_bytes(fixture))
    [reference] = report.references
    [ack] = desk.council.new_mail()
    desk.council.assign(PRIYA, reference=reference)
    return ack, only(desk.council.new_mail(), PRIYA)


# --- the officer's reply --------------------------------------------------------------


def test_officer_reply_with_a_password_form_reaches_the_member_without_it(desk: Desk) -> None:
    """The attack: a lead officer's (or forged) #holding reply carrying an HTML sign-in page
    that posts a password elsewhere. The member gets the survey and the text, not the page."""
    desk.council.assigned_pothole()
    desk.council.deliver(fixture_bytes("attack_officer_reply_html_password_form.eml"))
    to_member = only(desk.council.new_mail(), JANE)
    assert attachment_names(to_member) == ["Mill Lane survey.pdf"]
    assert held_lines(to_member) == ["Survey report - secure view.htm: web page with a form"]
    assert "Survey report - secure view.htm: web page with a form" in html_of(to_member)
    assert "member support" in text_of(to_member)

    rows = desk.rows()
    page = rows["Survey report - secure view.htm"]
    assert (page.held_reason, rows["Mill Lane survey.pdf"].held_reason) == (
        "web page with a form",
        None,
    )
    [event] = desk.council.events(kind="attachment_held")
    assert event.detail == (
        "Survey report - secure view.htm: held back from members and officers: web page with a form"
    )
    shown = "\n".join(desk.cli("case", "show", REF))
    assert "held back: web page with a form" in shown

    # The coordinators have the page itself, byte for byte, to check.
    saved = desk.config.parent / "saved"
    desk.cli("case", "attachments", REF, "--save", str(saved))
    original = attachments("attack_officer_reply_html_password_form.eml")
    kept = (saved / "Survey report - secure view.htm").read_bytes()
    assert kept == original["Survey report - secure view.htm"].payload


def test_an_additional_officers_program_does_not_reach_the_lead(desk: Desk) -> None:
    """Contributions go to the lead officer and the coordinators: held back there too."""
    mails = desk.council.assigned_pothole(SAM)
    exe = attachments("attack_member_exe_renamed_pdf.eml")["Fly-tipping evidence.pdf"].payload
    msg = reply(mails[SAM], SAM, "The contractor's evidence is attached.")
    with_file = _attach(msg, "contractor evidence.pdf", exe, "application/pdf")
    desk.council.deliver(with_file)
    [forwarded] = desk.council.new_mail()
    assert recipients(forwarded) == [PRIYA, SUPPORT]
    assert attachment_names(forwarded) == []
    assert held_lines(forwarded) == ["contractor evidence.pdf: program (MZ header)"]


def _attach(raw: bytes, name: str, payload: bytes, mime: str) -> bytes:
    from email import message_from_bytes, policy

    msg = message_from_bytes(raw, policy=policy.default)
    maintype, _, subtype = mime.partition("/")
    msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=name)  # type: ignore[attr-defined]
    return msg.as_bytes()


def test_a_coordinator_sends_a_held_file_on_only_after_checking_it(desk: Desk) -> None:
    """The way to send a held-back file on by hand: save it, check it, reply with --checked."""
    desk.council.assigned_pothole()
    desk.council.deliver(fixture_bytes("attack_officer_reply_html_password_form.eml"))
    desk.council.new_mail()
    saved = desk.config.parent / "saved"
    desk.cli("case", "attachments", REF, "--save", str(saved))
    page = saved / "Survey report - secure view.htm"
    one_error(
        council_cli(desk.config, "case", "reply", REF, "The page.", "--attach", str(page)),
        f"--attach {page}: held back as web page with a form; if you have checked it and "
        "mean to send it, add --checked",
    )
    assert desk.council.new_mail() == []
    desk.cli("case", "reply", REF, "The page.", "--attach", str(page), "--checked")
    desk.council.run()
    [sent] = desk.council.new_mail()
    assert attachment_names(sent) == ["Survey report - secure view.htm"]
    [event] = desk.council.events(kind="replied")
    assert event.detail.endswith(
        "; checked by the coordinator: Survey report - secure view.htm (web page with a form)"
    )


# --- the member's enquiry -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "sent_on", "held"),
    [
        ("attack_member_exe_renamed_pdf.eml", ["Letter from resident.pdf"],
         ["Fly-tipping evidence.pdf: program (MZ header)"]),
        ("attack_member_macro_office_docm_xlsm.eml", ["Agenda.docx"],
         ["Precept 2027.xlsm: Office file with macros (.xlsm)",
          "Minutes.docm: Office file with macros (.docm)",
          "Notes.docx: Office file with macros (word/vbaProject.bin)"]),
        ("attack_member_lnk_shortcut.eml", [],
         ["Objection.pdf.lnk: shortcut (.lnk)", "Site plan.jpg: shortcut (Windows LNK header)"]),
        ("attack_member_iso_disc_image.eml", [], ["Flood photos.iso: disc image (.iso)"]),
    ],
)  # fmt: skip
def test_a_members_dangerous_files_stay_with_the_coordinators(
    desk: Desk, fixture: str, sent_on: list[str], held: list[str]
) -> None:
    ack, lead = enquiry_to_lead(desk, fixture)
    assert attachment_names(lead) == sent_on
    assert held_lines(lead) == held
    assert held_lines(ack) == held  # the member is told too, and why
    rows = desk.rows()
    assert all(rows[line.split(": ", 1)[0]].sha256 for line in held)  # kept on the case
    shown = "\n".join(desk.cli("case", "show", "MQ-2026-00001"))
    for line in held:
        assert f"held back: {line.split(': ', 1)[1]}" in shown


def test_a_file_kept_before_the_rule_existed_is_judged_as_it_goes(desk: Desk) -> None:
    """An upgraded database: its attachments have no verdict stored; the rule is asked again
    of every file about to be sent on."""
    desk.council.deliver(fixture_bytes("attack_member_exe_renamed_pdf.eml"))
    desk.council.new_mail()
    with transaction(desk.council.engine) as session:
        session.execute(update(Attachment).values(held_reason=None))
    desk.council.assign(PRIYA)
    lead = only(desk.council.new_mail(), PRIYA)
    assert attachment_names(lead) == ["Letter from resident.pdf"]
    assert held_lines(lead) == ["Fly-tipping evidence.pdf: program (MZ header)"]


def test_the_files_in_winmail_dat_reach_the_officer(desk: Desk) -> None:
    """Outlook's rich text mail: the files inside winmail.dat go on one by one, each judged;
    the winmail.dat is kept on the case but not sent, nor named as held back."""
    _ack, lead = enquiry_to_lead(desk, "outlook_rich_text_winmail_dat_tnef.eml")
    assert attachment_names(lead) == ["Mill Lane survey.pdf", "Parking plan.docx"]
    assert held_lines(lead) == ["Update.js: script (.js)"]
    survey = next(p for p in lead.iter_attachments() if p.get_filename() == "Mill Lane survey.pdf")
    original = attachments("attack_officer_reply_html_password_form.eml")["Mill Lane survey.pdf"]
    assert survey.get_content() == original.payload
    assert survey.get_content_type() == "application/pdf"
    rows = desk.rows()
    assert list(rows) == ["winmail.dat", "Mill Lane survey.pdf", "Parking plan.docx", "Update.js"]
    assert rows["winmail.dat"].held_reason == UNPACKED and rows["winmail.dat"].sha256


# --- the virus scan -------------------------------------------------------------------


def test_the_virus_scan_verdict_is_kept_and_an_infected_file_held_back(
    tmp_path: Path, migrated_db_url: str
) -> None:
    desk = _desk(
        tmp_path, migrated_db_url, attachments={"scan_command": [sys.executable, SCANNER, "{path}"]}
    )
    _ack, lead = enquiry_to_lead(desk, "attack_member_eicar_test_virus.eml")
    assert attachment_names(lead) == ["Letter from resident.pdf"]
    [line] = held_lines(lead)
    assert line.startswith("Surgery notes.txt: virus scan: infected: ")
    assert line.endswith(": Eicar-Test-Signature FOUND")
    rows = desk.rows()
    assert rows["Letter from resident.pdf"].scan_result == "clean"
    assert rows["Surgery notes.txt"].scan_result.startswith("infected: ")  # type: ignore[union-attr]
    shown = "\n".join(desk.cli("case", "show", "MQ-2026-00001"))
    assert "held back: virus scan: infected" in shown and "scan: clean" in shown
    assert not list((tmp_path / "data" / "scan").iterdir())  # nothing left behind


@pytest.mark.parametrize(
    ("command", "verdict"),
    [
        # the bytes on standard input when no {path} is given
        ([sys.executable, SCANNER], "infected: stream: Eicar-Test-Signature FOUND"),
        (["/nonexistent/clamdscan", "{path}"], "scan failed: /nonexistent/clamdscan: "),
        ([sys.executable, "-c", "import sys; sys.exit(2)", "{path}"],
         "scan failed: exit code 2"),
        ([sys.executable, "-c", "import time; time.sleep(30)"],
         "scan failed: no verdict within 1 s"),
    ],
)  # fmt: skip
def test_a_scan_that_gives_no_clean_verdict_holds_the_file_back(
    tmp_path: Path, migrated_db_url: str, command: list[str], verdict: str
) -> None:
    desk = _desk(
        tmp_path,
        migrated_db_url,
        attachments={"scan_command": command, "scan_timeout_seconds": 1},
    )
    desk.council.deliver(fixture_bytes("attack_member_eicar_test_virus.eml"))
    notes = desk.rows()["Surgery notes.txt"]
    assert (notes.scan_result or "").startswith(verdict)
    assert notes.held_reason == f"virus scan: {notes.scan_result}"
