"""mailbridge.mail.subjects: reply prefixes, external banners, case tags and references.

Table tests on subject lines as mail clients and gateways write them. Where a subject comes
from a real .eml fixture in tests/fixtures/mail/, it is parsed from that file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbridge.mail.parsing import parse
from mailbridge.mail.subjects import (
    find_body_marker,
    find_references,
    normalise,
    tag,
    without_tags,
)

MAIL = Path(__file__).parents[1] / "fixtures" / "mail"
NBSP = "\xa0"

NORMALISE = [
    # Outlook: each hop adds RE:, the gateway adds its banner in the middle of the chain.
    ("RE: [EXTERNAL] RE: [MQ-2026-00042] Pothole", "[MQ-2026-00042] Pothole"),
    ("RE: FW: Re: Pothole on Mill Lane", "Pothole on Mill Lane"),
    ("Re: Fwd: Pothole on Mill Lane", "Pothole on Mill Lane"),  # Gmail
    ("FW: Pothole", "Pothole"),
    ("AW: WG: Schlagloch in der Mühlgasse", "Schlagloch in der Mühlgasse"),  # German Outlook
    ("SV: SV: Pothole", "Pothole"),  # Swedish, Norwegian, Danish
    ("VB: Pothole", "Pothole"),  # Swedish forward
    ("VS: Pothole", "Pothole"),  # Finnish reply, Danish forward
    ("R: RIF: Buca in via Roma", "Buca in via Roma"),  # Italian
    ("RES: ENC: Buraco na rua", "Buraco na rua"),  # Portuguese (Brazil) Outlook
    ("RV: Bache en la calle", "Bache en la calle"),  # Spanish forward
    (f"TR{NBSP}: RE{NBSP}: Nid-de-poule", "Nid-de-poule"),  # French: NBSP before the colon
    ("TR : RE : Nid-de-poule", "Nid-de-poule"),
    ("Antw: Doorst: Kuil in de weg", "Kuil in de weg"),  # Dutch Outlook
    # Counters, full-width colons, case, missing spaces.
    ("Re[2]: Pothole", "Pothole"),
    ("RE(3): Pothole", "Pothole"),
    ("Re [12]: Re(2):Pothole", "Pothole"),
    ("RE\uff1a Pothole", "Pothole"),
    ("re: rE: Re:Pothole", "Pothole"),
    ("RE:RE:RE:Pothole", "Pothole"),
    # Gateway banners, only the well-known spellings.
    ("[EXTERNAL] Pothole", "Pothole"),
    ("[External] RE: Pothole", "Pothole"),
    ("[EXT] Re: Pothole", "Pothole"),
    ("*EXTERNAL* RE: Pothole", "Pothole"),
    ("**EXTERNAL** Pothole", "Pothole"),
    ("EXT: RE: Pothole", "Pothole"),
    ("External: RE: Pothole", "Pothole"),
    ("[External Email] Pothole", "Pothole"),
    ("[EXTERNAL SENDER] Fwd: Pothole", "Pothole"),
    ("(EXTERNAL) Pothole", "Pothole"),
    ("[EXTERNAL]: RE: Pothole", "Pothole"),
    # Our tag is never stripped, wherever it is; the chain goes on past it.
    ("[MQ-2026-00042] RE: Pothole", "[MQ-2026-00042] Pothole"),
    ("RE: Pothole [MQ-2026-00042]", "Pothole [MQ-2026-00042]"),
    ("Fwd: [mq-2026-00042] Pothole", "[mq-2026-00042] Pothole"),
    ("RE: [MQ-2026-00042] RE: [MQ-2026-00050] Pothole", "[MQ-2026-00042] [MQ-2026-00050] Pothole"),
    ("RE: [CE-2026-00007] Pothole", "[CE-2026-00007] Pothole"),  # another prefix's tag
    ("RE: [MQ-2026-123456] Pothole", "[MQ-2026-123456] Pothole"),
    # Not a prefix: only a leading chain of known prefixes followed by a colon goes.
    ("Pothole - re: Mill Lane", "Pothole - re: Mill Lane"),
    ("Rest: area closed", "Rest: area closed"),
    ("Reply needed: gritting", "Reply needed: gritting"),
    ("Re-surfacing of Mill Lane", "Re-surfacing of Mill Lane"),
    ("Trees: overhanging branches", "Trees: overhanging branches"),
    ("Encampment: Mill Lane", "Encampment: Mill Lane"),
    ("FYI: Pothole", "FYI: Pothole"),
    ("External wall collapse, Mill Lane", "External wall collapse, Mill Lane"),
    ("Extension: planning application", "Extension: planning application"),
    ("RE Pothole", "RE Pothole"),  # no colon
    ("[Highways] RE: Pothole", "[Highways] RE: Pothole"),  # an unknown bracket ends the chain
    # Whitespace: folding, tabs and NBSPs collapse; CR/LF cannot survive.
    (f"  RE:\tFW:  Pothole \r\n on  Mill{NBSP}Lane ", "Pothole on Mill Lane"),
    ("RE:", ""),
    ("RE: [EXTERNAL]", ""),
    ("", ""),
]


@pytest.mark.parametrize(("subject", "expected"), NORMALISE)
def test_normalise(subject: str, expected: str) -> None:
    assert normalise(subject) == expected


@pytest.mark.parametrize(("subject", "expected"), NORMALISE)
def test_normalise_is_idempotent(subject: str, expected: str) -> None:
    assert normalise(normalise(subject)) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("RE: [MQ-2026-00042] status", "status"),
        ("Status? [MQ-2026-00042]", "Status?"),
        ("[EXTERNAL] RE: [MQ-2026-00042] [CE-2026-00001] Pothole", "Pothole"),
        ("RE: Ref MQ-2026-00042", "Ref MQ-2026-00042"),  # only bracketed tags go
        ("[Highways] status", "[Highways] status"),
    ],
)
def test_without_tags(subject: str, expected: str) -> None:
    assert without_tags(subject) == expected


REFERENCES = [
    ("RE: [MQ-2026-00042] Pothole", ["MQ-2026-00042"]),
    ("RE: [EXTERNAL] RE: [MQ-2026-00042] Pothole", ["MQ-2026-00042"]),
    # Brackets lost or replaced, any case.
    ("RE: MQ-2026-00042 Pothole", ["MQ-2026-00042"]),
    ("Pothole (MQ-2026-00042)", ["MQ-2026-00042"]),
    ("re: [mq-2026-00042] pothole", ["MQ-2026-00042"]),
    ("Ref:MQ-2026-00042.", ["MQ-2026-00042"]),
    ("Pothole #MQ-2026-00042", ["MQ-2026-00042"]),
    ("{MQ-2026-00042}", ["MQ-2026-00042"]),
    # Typographic dashes a word processor or phone keyboard puts in place of the hyphen.
    ("Pothole MQ\u20132026\u201300042", ["MQ-2026-00042"]),  # en dash
    ("Pothole MQ\u20112026\u201100042", ["MQ-2026-00042"]),  # non-breaking hyphen
    # Sequences keep counting past 99999; digits are kept as written.
    ("[MQ-2026-123456] Pothole", ["MQ-2026-123456"]),
    ("MQ-2026-000421", ["MQ-2026-000421"]),
    # Several, in order, without repeats.
    (
        "[MQ-2026-00042] same as MQ-2026-00017 and mq-2026-00042",
        ["MQ-2026-00042", "MQ-2026-00017"],
    ),
    ("MQ-2026-00042/MQ-2027-00001", ["MQ-2026-00042", "MQ-2027-00001"]),
    # Strangers that only look like references.
    ("XMQ-2026-000421", []),
    ("ABC-MQ-2026-00042", []),
    ("file_MQ-2026-00042", []),
    ("MQ-2026-00042X", []),
    ("MQ-2026-00042-3", []),
    ("MQ-2026-00042_draft", []),
    ("MQX-2026-00042", []),
    ("MQ-26-00042", []),
    ("MQ-20260-00042", []),
    ("MQ-2026-0042", []),
    ("MQ 2026 00042", []),  # spaces: not accepted (see the module docstring)
    ("MQ202600042", []),  # no separator: not accepted
    ("MQ_2026_00042", []),
    ("MQ--2026-00042", []),
    ("CE-2026-00042", []),  # another prefix
    ("Invoice 2026-00042", []),
    ("Tel 0116 2026 00042", []),
    ("", []),
]


@pytest.mark.parametrize(("subject", "expected"), REFERENCES)
def test_find_references(subject: str, expected: list[str]) -> None:
    assert find_references(subject) == expected


@pytest.mark.parametrize(
    ("subject", "prefix", "expected"),
    [
        ("RE: [CE-2026-00042] Pothole", "CE", ["CE-2026-00042"]),
        ("RE: [CE-2026-00042] Pothole", "ce", ["CE-2026-00042"]),
        ("RE: [MQ-2026-00042] Pothole", "CE", []),
        ("RE: [COUNCILQ-2026-00001] x", "COUNCILQ", ["COUNCILQ-2026-00001"]),  # 8 letters
        ("RE: [XCOUNCILQ-2026-00001] x", "COUNCILQ", []),
        ("A-2026-00001 and BA-2026-00002", "A", ["A-2026-00001"]),
    ],
)
def test_find_references_with_configured_prefix(
    subject: str, prefix: str, expected: list[str]
) -> None:
    assert find_references(subject, prefix) == expected


@pytest.mark.parametrize("prefix", ["", "M-Q", "MQ1", "TOOLONGXX", "M Q", "MQ.*"])
def test_find_references_refuses_a_prefix_that_is_not_1_to_8_letters(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        find_references("[MQ-2026-00042]", prefix)


MARKERS = [
    ("Thanks\n\nRef: MQ-2026-00042", "MQ-2026-00042"),
    ("Thanks\n\n> Ref: MQ-2026-00042\n>", "MQ-2026-00042"),
    ("Thanks\n\n>> > Ref: MQ-2026-00042", "MQ-2026-00042"),
    ("Thanks\n\n   Ref:   MQ-2026-00042   \n", "MQ-2026-00042"),
    ("Thanks\n\n>\u00a0Ref:\u00a0MQ-2026-00042", "MQ-2026-00042"),
    ("Thanks\n\nREF: mq-2026-00042", "MQ-2026-00042"),
    ("Thanks\r\n\r\n> Ref: MQ-2026-00042\r\n", "MQ-2026-00042"),
    # The first: the message answered is quoted above the older history it quotes.
    ("Yes\n> Ref: MQ-2026-00050\n> > Ref: MQ-2026-00042", "MQ-2026-00050"),
    # Not our footer line.
    ("Please quote Ref: MQ-2026-00042 when you call", None),
    ("Our ref: MQ-2026-00042", None),
    ("Ref: MQ-2026-00042 and MQ-2026-00043", None),
    ("Ref: XMQ-2026-00042", None),
    ("Ref: MQ-2026-0042", None),
    ("Ref: CE-2026-00042", None),
    ("Ref MQ-2026-00042", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), MARKERS)
def test_find_body_marker(text: str, expected: str | None) -> None:
    assert find_body_marker(text) == expected


def test_find_body_marker_with_configured_prefix() -> None:
    assert find_body_marker("> Ref: CE-2026-00042", "CE") == "CE-2026-00042"
    assert find_body_marker("> Ref: MQ-2026-00042", "CE") is None


@pytest.mark.parametrize(
    "fixture",
    [
        "officer_reply_outlook_desktop_top_posted.eml",
        "officer_reply_outlook_original_message_separator.eml",
        "officer_reply_owa_underscore_separator.eml",
        "officer_reply_internal_note_html_only.eml",  # HTML only: converted by parsing
        "member_reply_gmail_chaser.eml",
        "member_reply_apple_mail_iphone.eml",
        "officer_reply_holding_keyword_only_in_quoted_text.eml",
    ],
)
def test_replies_carry_our_footer_and_tag(fixture: str) -> None:
    parsed = parse((MAIL / fixture).read_bytes())
    assert find_body_marker(parsed.body_text) == "MQ-2026-00042"
    assert find_references(parsed.subject) == ["MQ-2026-00042"]
    assert normalise(parsed.subject).startswith("[MQ-2026-00042] ")


def test_outlook_reply_subject_from_fixture() -> None:
    parsed = parse((MAIL / "officer_reply_outlook_desktop_top_posted.eml").read_bytes())
    assert parsed.subject == "RE: [MQ-2026-00042] Pothole on Mill Lane"
    assert normalise(parsed.subject) == "[MQ-2026-00042] Pothole on Mill Lane"
    assert tag(parsed.subject, "MQ-2026-00042") == "[MQ-2026-00042] Pothole on Mill Lane"


TAGS = [
    ("Pothole on Mill Lane", "[MQ-2026-00042] Pothole on Mill Lane"),
    ("RE: [MQ-2026-00042] Pothole", "[MQ-2026-00042] Pothole"),
    ("RE: [EXTERNAL] RE: [mq-2026-00042] Pothole", "[MQ-2026-00042] Pothole"),
    ("Pothole [MQ-2026-00042]", "[MQ-2026-00042] Pothole"),
    ("Pothole [ MQ-2026-00042 ] on Mill Lane", "[MQ-2026-00042] Pothole on Mill Lane"),
    ("[MQ-2026-00017] Pothole", "[MQ-2026-00042] [MQ-2026-00017] Pothole"),
    ("Pothole MQ-2026-00042", "[MQ-2026-00042] Pothole MQ-2026-00042"),  # running text stays
    ("Re: Pothole\r\nBcc: x@example.invalid", "[MQ-2026-00042] Pothole Bcc: x@example.invalid"),
    ("", "[MQ-2026-00042]"),
    ("RE:", "[MQ-2026-00042]"),
]


@pytest.mark.parametrize(("subject", "expected"), TAGS)
def test_tag(subject: str, expected: str) -> None:
    assert tag(subject, "MQ-2026-00042") == expected


@pytest.mark.parametrize("subject", [s for s, _ in NORMALISE + TAGS])
def test_tag_is_idempotent_and_found_again(subject: str) -> None:
    tagged = tag(subject, "MQ-2026-00042")
    assert tag(tagged, "MQ-2026-00042") == tagged
    assert tag(f"RE: [EXTERNAL] Fwd: {tagged}", "MQ-2026-00042") == tagged
    assert tagged.count("[MQ-2026-00042]") == 1
    assert find_references(tagged)[0] == "MQ-2026-00042"
    assert "\n" not in tagged and "\r" not in tagged
