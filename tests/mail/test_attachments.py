"""Which attachments are held back from members and officers, and why: a table on the real
emails in tests/fixtures/mail, each named for the attack it carries; and Outlook's
winmail.dat taken apart, within bounds."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from mailbridge.mail.attachments import (
    MAX_TNEF_FILES,
    MAX_TNEF_OBJECTS,
    UNPACKED,
    TnefError,
    held_back,
    unpack_tnef,
)
from mailbridge.mail.parsing import ParsedAttachment, parse
from tests.factories import fixture_bytes
from tests.helpers.tnef import ATTACHMENT, attribute, winmail


def attachments(fixture: str) -> dict[str, ParsedAttachment]:
    return {a.filename: a for a in parse(fixture_bytes(fixture)).attachments}


# fixture -> attachments and their verdicts (None: may be sent on); any other: None
TABLE: dict[str, dict[str, str | None]] = {
    "attack_officer_reply_html_password_form.eml": {
        "Survey report - secure view.htm": "web page with a form",
        "Mill Lane survey.pdf": None,
    },
    "attack_member_exe_renamed_pdf.eml": {
        "Fly-tipping evidence.pdf": "program (MZ header)",
        "Letter from resident.pdf": None,
    },
    "attack_member_macro_office_docm_xlsm.eml": {
        "Precept 2027.xlsm": "Office file with macros (.xlsm)",
        "Minutes.docm": "Office file with macros (.docm)",
        "Notes.docx": "Office file with macros (word/vbaProject.bin)",  # renamed: sniffed
        "Agenda.docx": None,
    },
    "attack_member_lnk_shortcut.eml": {
        "Objection.pdf.lnk": "shortcut (.lnk)",
        "Site plan.jpg": "shortcut (Windows LNK header)",  # renamed: sniffed
    },
    "attack_member_iso_disc_image.eml": {"Flood photos.iso": "disc image (.iso)"},
    "outlook_rich_text_winmail_dat_tnef.eml": {
        "winmail.dat": UNPACKED,
        "Mill Lane survey.pdf": None,
        "Parking plan.docx": None,
        "Update.js": "script (.js)",
    },
    "attachment_filenames_path_traversal_and_control_chars.eml": {
        "passwd": None,
        "invoice.pdf.exe": "program (.exe)",
    },
    "member_enquiry_with_photo_and_pdf.eml": {
        "IMG_4521.jpg": None,
        "Letter from resident - 21 Station Road.pdf": None,
    },
    "member_forwards_resident_emails_as_attachments.eml": {
        "School bus didn’t turn up – again.eml": None,
        "Route 47 timetable from September.eml": None,
    },
}


@pytest.mark.parametrize("fixture", sorted(TABLE))
def test_every_fixture_attachment_gets_its_verdict(fixture: str) -> None:
    found = {name: a.held for name, a in attachments(fixture).items() if not a.inline}
    expected = TABLE[fixture]
    assert {name: found.get(name, "missing") for name in expected} == expected
    others = {name: held for name, held in found.items() if name not in expected}
    assert others == dict.fromkeys(others)


@pytest.mark.parametrize(
    ("fixture", "name", "sniffed"),
    [
        ("attack_member_exe_renamed_pdf.eml", "Fly-tipping evidence.pdf", "program (MZ header)"),
        ("attack_member_lnk_shortcut.eml", "Objection.pdf.lnk", "shortcut (Windows LNK header)"),
        ("attack_member_iso_disc_image.eml", "Flood photos.iso", "disc image (ISO 9660)"),
        ("attack_member_macro_office_docm_xlsm.eml", "Minutes.docm",
         "Office file with macros (word/vbaProject.bin)"),
        ("attack_officer_reply_html_password_form.eml", "Survey report - secure view.htm",
         "web page with a form"),
    ],
)  # fmt: skip
def test_the_content_is_judged_whatever_the_name_and_declared_type(
    fixture: str, name: str, sniffed: str
) -> None:
    """Renamed to a harmless name and declared as something harmless, still held back."""
    payload = attachments(fixture)[name].payload
    assert held_back("scan.txt", "application/octet-stream", payload) == sniffed


@pytest.mark.parametrize(
    ("name", "ctype", "payload", "verdict"),
    [
        ("minutes.html", "text/html", b"<html><body><p>Minutes</p></body></html>", None),
        ("page.html", "text/html", b"<html><body onload='go()'>Hi</body></html>",
         "web page with a script"),
        ("page.txt", "text/plain", b"<!DOCTYPE html><script>alert(1)</script>",
         "web page with a script"),
        ("link.htm", "text/html", b"<a href='javascript:steal()'>open</a>",
         "web page with a script"),
        ("notes.txt", "text/plain", b"Residents met on 3 December to discuss the form.", None),
        ("cleanup.ps1", "text/plain", b"Remove-Item C:\\ -Recurse", "script (.ps1)"),
        ("report", "application/x-msdownload", b"anything",
         "program (declared application/x-msdownload)"),
        ("open.hta ", "text/plain", b"x", "script (.hta)"),
        ("payroll.xls", "application/vnd.ms-excel.sheet.macroEnabled.12", b"x",
         "Office file with macros (declared application/vnd.ms-excel.sheet.macroenabled.12)"),
        ("tool.bin", "application/octet-stream", b"\x7fELF\x02\x01\x01" + b"\0" * 60,
         "program (ELF header)"),
    ],
)  # fmt: skip
def test_names_types_and_contents(name: str, ctype: str, payload: bytes, verdict: str) -> None:
    assert held_back(name, ctype, payload) == verdict


def test_a_zip_holding_a_program_is_held_and_its_inner_name_quoted_safely() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("minutes.pdf", b"%PDF-1.4")
        z.writestr("docs/\x1b]0;owned\x07run.exe", b"MZ")
    assert held_back("papers.zip", "application/zip", archive.getvalue()) == (
        "zip holding a program (]0;ownedrun.exe)"
    )


def test_an_attached_email_carrying_a_held_file_is_held_with_it() -> None:
    inner = fixture_bytes("attack_member_exe_renamed_pdf.eml")
    verdict = held_back("Fwd evidence.eml", "message/rfc822", inner)
    assert verdict == "attached email holding Fly-tipping evidence.pdf: program (MZ header)"
    plain = fixture_bytes("member_new_enquiry_pothole.eml")
    assert held_back("Pothole.eml", "message/rfc822", plain) is None


# --- winmail.dat ----------------------------------------------------------------------


def test_winmail_dat_files_become_ordinary_attachments_byte_exact() -> None:
    found = attachments("outlook_rich_text_winmail_dat_tnef.eml")
    assert list(found) == ["winmail.dat", "Mill Lane survey.pdf", "Parking plan.docx", "Update.js"]
    survey = attachments("attack_officer_reply_html_password_form.eml")["Mill Lane survey.pdf"]
    assert found["Mill Lane survey.pdf"].payload == survey.payload
    assert found["Mill Lane survey.pdf"].content_type == "application/pdf"
    assert found["winmail.dat"].content_type == "application/ms-tnef"
    assert [name for name, _ in unpack_tnef(found["winmail.dat"].payload)] == [
        "Mill Lane survey.pdf", "Parking plan.docx", "Update.js",
    ]  # fmt: skip


def _hostile(*attributes: bytes) -> bytes:
    return winmail([("a.txt", b"hello")]) + b"".join(attributes)


@pytest.mark.parametrize(
    ("tnef", "why"),
    [
        (b"not tnef at all", "not a TNEF file"),
        # tnefparse would loop four billion times over these counts, or fill the memory
        (_hostile(attribute(ATTACHMENT, 0x00069005, struct.pack("<I", 0xFFFFFFFF))),
         "a property count larger than the file"),
        (_hostile(attribute(ATTACHMENT, 0x00069005,
                            struct.pack("<IHHI", 1, 0x1002, 0x3705, 0xFFFFFFF0) + b"\0" * 64)),
         "a value count larger than the file"),
        (winmail([(f"f{i}.txt", b"x") for i in range(MAX_TNEF_OBJECTS // 5 + 1)]),
         f"more than {MAX_TNEF_OBJECTS} TNEF attributes"),
        (winmail([(f"f{i}.txt", b"x") for i in range(MAX_TNEF_FILES + 1)]),
         f"more than {MAX_TNEF_FILES} files"),
    ],
)  # fmt: skip
def test_a_hostile_winmail_dat_is_refused_not_unpacked(tnef: bytes, why: str) -> None:
    with pytest.raises(TnefError, match=why):
        unpack_tnef(tnef)
    verdict = held_back("winmail.dat", "application/ms-tnef", tnef)
    assert verdict == f"Outlook winmail.dat that could not be unpacked ({why})"


def test_a_damaged_winmail_dat_is_kept_whole_with_a_defect() -> None:
    raw = fixture_bytes("outlook_rich_text_winmail_dat_tnef.eml")
    damaged = raw.replace(b"eJ8+Ih5M", b"AAAAAAAA", 1)  # the TNEF signature, base64
    assert damaged != raw
    parsed = parse(damaged)
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert parsed.attachments[0].held == (
        "Outlook winmail.dat that could not be unpacked (not a TNEF file)"
    )
    assert "winmail.dat not unpacked: not a TNEF file" in parsed.defects
