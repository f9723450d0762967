"""mailbridge.mail.replies: the new text of a reply, staff keywords, status requests.

The fixtures in tests/fixtures/mail/ (`officer_reply_*`, `member_reply_*`, `reply_*`) are
replies on case MQ-2026-00042 as Outlook desktop, Outlook on the web, new Outlook (HTML
only), Gmail and Apple Mail send them, quoting our notification or acknowledgement with its
`Ref: MQ-2026-00042` footer. Each is parsed with mailbridge.parsing.parse and the exact new
text is asserted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailbridge.mail import replies
from mailbridge.mail.parsing import parse
from mailbridge.mail.replies import (
    DEFAULT_LANGUAGES,
    SUPPORTED_LANGUAGES,
    Keywords,
    extract_reply,
    find_keywords,
    is_status_request,
    strip_keywords,
)

MAIL = Path(__file__).parents[1] / "fixtures" / "mail"


@dataclass(frozen=True)
class Reply:
    fixture: str
    reply: str  # extract_reply(body_text)
    keywords: Keywords = field(default_factory=Keywords)
    to_member: str | None = None  # strip_keywords(reply), when it differs from reply
    status: bool = False


OUTLOOK_ANSWER = (
    "Dear Cllr Smith,\n\n"
    "Thank you for your enquiry. Our inspector visited Mill Lane this morning and found:\n\n"
    "- a pothole about 40cm across and 8cm deep outside number 14\n"
    "- a sunken gully cover two metres further on\n\n"
    "Both are category 1 defects. The pothole will be made safe within 24 hours and"
    " permanently repaired by 4 December; the gully cover is on the same works order.\n\n"
    "The resident can claim for the damage to her car at"
    " www.example-county.gov.uk/highways-claims."
)
HOLDING_ANSWER = (
    "Dear Cllr Smith,\n\n"
    "I have asked our term contractor to survey the retaining wall beside the pothole on"
    " Mill Lane before it is repaired. They cannot get there until next week, so I will write"
    " again by 9 December with their findings."
)
INTERNAL_NOTE = (
    "Note for Member Support: this is the same defect Cllr Patel reported in October"
    " (MQ-2026-00017). The works order covers both, so please link the cases. I’ll answer"
    " Cllr Smith today.\n\nPriya"
)

REPLIES = [
    # Top-posted answer; "- item" list lines and "Thank you for your enquiry." are the
    # answer, "Kind regards", the signature block, a disclaimer and the quoted
    # notification are not.
    Reply("officer_reply_outlook_desktop_top_posted.eml", OUTLOOK_ANSWER),
    Reply(
        "officer_reply_outlook_original_message_separator.eml",
        "Hi,\n\nUpdate: the temporary repair was done this morning. The permanent repair is"
        " booked for 4 December (works order WO-558812).",
    ),
    Reply(
        "officer_reply_owa_underscore_separator.eml",
        "Hello Cllr Smith,\n\nMill Lane is on the resurfacing programme for 2027/28, so the"
        " repair on 4 December is a temporary one. I have asked for the gully to be jetted at"
        " the same visit.",
    ),
    # Gmail wraps the attribution line: "... <enquiries@example.gov.uk>\nwrote:".
    Reply(
        "member_reply_gmail_chaser.eml",
        "Hi,\n\nAny update on this? The resident says the hole is getting bigger and another"
        " car was damaged last night.",
    ),
    # Apple Mail: "Sent from my iPhone", then the attribution line inside the quote. The
    # first line starts with "Thank you" and is not a sign-off.
    Reply(
        "member_reply_apple_mail_iphone.eml",
        "Thank you Priya, that’s really helpful. I’ll let the resident know about the claim"
        " form.\n\nJane",
    ),
    Reply(
        "officer_reply_holding_and_extend_keywords.eml",
        f"#holding\n#extend 5 waiting for contractor\n\n{HOLDING_ANSWER}",
        Keywords(holding=True, extend_days=5, extend_reason="waiting for contractor"),
        to_member=HOLDING_ANSWER,
    ),
    Reply(
        "officer_reply_extend_without_holding_keyword.eml",
        f"#extend 5 waiting for contractor\n\n{HOLDING_ANSWER}",
        Keywords(extend_days=5, extend_reason="waiting for contractor"),
        to_member=HOLDING_ANSWER,
    ),
    # More than 260 working days is not read as an extension: listed as not understood.
    Reply(
        "officer_reply_extend_beyond_a_year_of_working_days.eml",
        f"#extend 300 waiting for contractor\n\n{HOLDING_ANSWER}",
        Keywords(malformed=("#extend 300 waiting for contractor",)),
        to_member=HOLDING_ANSWER,
    ),
    # HTML only: parsing converts it; the <hr> before the header block is dropped too.
    Reply(
        "officer_reply_internal_note_html_only.eml",
        f"#internal\n\n{INTERNAL_NOTE}",
        Keywords(internal=True),
        to_member=INTERNAL_NOTE,
    ),
    # Outlook quotes without ">": the colleague's #holding and #extend lines are in the
    # history below the From:/Sent: block, and do not count.
    Reply(
        "officer_reply_holding_keyword_only_in_quoted_text.eml",
        "Priya, the contractor can survey the wall on Monday 7 December. I’ve booked it and"
        " copied you in on the order.\n\nSam",
    ),
    # No sign-off line: the name block stays (it is not over-stripped), the three
    # paragraphs of council disclaimer go.
    Reply(
        "officer_reply_long_council_disclaimer_no_sign_off.eml",
        "Cllr Smith,\n\nThe claim form has been sent to the resident today. Claims for vehicle"
        " damage are usually decided within 28 days of the form coming back.\n\n"
        "Lucy Brennan\nInsurance and Claims Officer\nCorporate Resources\n"
        "Example County Council\nCounty Hall, Glenfield, Leicester LE3 8RA\n"
        "www.example-county.gov.uk",
    ),
    Reply("reply_status_request_subject_only_empty_body.eml", "", status=True),
    # Nothing but a "-- " signature: what the sender wrote comes back rather than nothing.
    Reply(
        "reply_status_request_subject_status_question_mark.eml",
        "--\nCllr Jane Smith\nCounty Councillor, Bowden Division",
        status=True,
    ),
]


@pytest.mark.parametrize("case", REPLIES, ids=lambda c: c.fixture.removesuffix(".eml"))
def test_reply_fixture(case: Reply) -> None:
    parsed = parse((MAIL / case.fixture).read_bytes())
    reply = extract_reply(parsed.body_text)
    assert reply == case.reply
    assert find_keywords(parsed.body_text) == case.keywords
    assert find_keywords(reply) == case.keywords  # the extracted text gives the same answer
    assert strip_keywords(reply) == (case.reply if case.to_member is None else case.to_member)
    assert is_status_request(parsed.subject, parsed.body_text) is case.status


def test_fixtures_are_crlf_replies_on_case_mq_2026_00042() -> None:
    names = sorted(
        p.name
        for pattern in ("officer_reply_*.eml", "member_reply_*.eml", "reply_*.eml")
        for p in MAIL.glob(pattern)
    )
    assert names == sorted(c.fixture for c in REPLIES)
    for name in names:
        raw = (MAIL / name).read_bytes()
        assert b"\n" not in raw.replace(b"\r\n", b""), name
        parsed = parse(raw)
        assert parsed.defects == (), name
        if name.startswith("reply_status"):
            continue
        assert parsed.in_reply_to is not None, name
        assert any(ref.startswith("mb.MQ-2026-00042.") for ref in parsed.references), name


# --- quoted history in other clients and languages ---------------------------------------

HISTORY = [
    (
        "outlook_german",
        "Danke, erledigt.\n\nVon: Member Enquiries <enquiries@example.gov.uk>\n"
        "Gesendet: Dienstag, 24. November 2026 09:16\nAn: Priya Shah\n"
        "Betreff: [MQ-2026-00042] Pothole on Mill Lane\n\nNew member enquiry",
    ),
    (
        "gmail_german",
        "Danke, erledigt.\n\nAm Di., 24. Nov. 2026 um 09:16 Uhr schrieb Member Enquiries <\n"
        "enquiries@example.gov.uk>:\n\n> New member enquiry",
    ),
    (
        "gmail_french",
        "Danke, erledigt.\n\nLe mar. 24 nov. 2026 à 09:16, Member Enquiries"
        " <enquiries@example.gov.uk> a écrit :\n> New member enquiry",
    ),
    (
        "outlook_french",
        "Danke, erledigt.\n\nDe : Member Enquiries <enquiries@example.gov.uk>\n"
        "Envoyé : mardi 24 novembre 2026 09:16\nÀ : Priya Shah\n"
        "Objet : [MQ-2026-00042] Pothole on Mill Lane\n\nNew member enquiry",
    ),
    (
        "gmail_dutch",
        "Danke, erledigt.\n\nOp di 24 nov 2026 om 09:16 schreef Member Enquiries"
        " <enquiries@example.gov.uk>:\n> New member enquiry",
    ),
    (
        "gmail_spanish",
        "Danke, erledigt.\n\nEl mar, 24 nov 2026 a las 9:16, Member Enquiries"
        " (<enquiries@example.gov.uk>) escribió:\n> New member enquiry",
    ),
    (
        "gmail_italian",
        "Danke, erledigt.\n\nIl giorno mar 24 nov 2026 alle ore 09:16 Member Enquiries"
        " <enquiries@example.gov.uk> ha scritto:\n> New member enquiry",
    ),
    (
        "apple_swedish",
        "Danke, erledigt.\n\n> 24 nov. 2026 kl. 09:16 skrev Member Enquiries"
        " <enquiries@example.gov.uk>:\n>\n> New member enquiry",
    ),
    (
        "thunderbird",
        "Danke, erledigt.\n\nOn 24/11/2026 09:16, Member Enquiries wrote:\n> New member enquiry",
    ),
    (
        "outlook_original_message",
        "Danke, erledigt.\n\n-----Original Message-----\n"
        "From: Member Enquiries [mailto:enquiries@example.gov.uk]\nSent: 24 November 2026\n"
        "New member enquiry",
    ),
    (
        "forwarded_gmail",
        "Danke, erledigt.\n\n---------- Forwarded message ---------\n"
        "From: Member Enquiries <enquiries@example.gov.uk>\nDate: Tue, 24 Nov 2026 at 09:16\n"
        "Subject: [MQ-2026-00042] Pothole\nTo: <priya.shah@example.gov.uk>\n\nNew member enquiry",
    ),
    (
        "apple_forward",
        "Danke, erledigt.\n\nBegin forwarded message:\n\n> From: Member Enquiries"
        " <enquiries@example.gov.uk>\n> Date: 24 November 2026 at 09:16:00 GMT\n"
        "> Subject: [MQ-2026-00042] Pothole\n>\n> New member enquiry",
    ),
    (
        "gmail_german_forward",
        "Danke, erledigt.\n\n---------- Weitergeleitete Nachricht ---------\n"
        "Von: Member Enquiries <enquiries@example.gov.uk>\nDate: Di., 24. Nov. 2026 um 09:16\n"
        "Subject: [MQ-2026-00042] Pothole\nTo: <priya.shah@example.gov.uk>\n\nNew member enquiry",
    ),
    (
        "thunderbird_original_message",
        "Danke, erledigt.\n\n-------- Original Message --------\nSubject: Pothole\n"
        "Date: Tue, 24 Nov 2026 09:16:00 +0000\nFrom: Member Enquiries\n\nNew member enquiry",
    ),
    (
        "gmail_dutch_wrapped",
        "Danke, erledigt.\n\nOp di 24 nov 2026 om 09:16 schreef Member Enquiries <\n"
        "enquiries@example.gov.uk>:\n\n> New member enquiry",
    ),
    (
        "gmail_polish_attribution_not_known",
        "Danke, erledigt.\n\nwt., 24 lis 2026 o 09:16 Member Enquiries <enquiries@example.gov.uk>"
        "\nnapisał(a):\n\n> New member enquiry",
    ),
    (
        "quoted_without_attribution",
        "Danke, erledigt.\n\n> New member enquiry MQ-2026-00042\n> Ref: MQ-2026-00042\n",
    ),
]


@pytest.mark.parametrize(("name", "text"), HISTORY, ids=[n for n, _ in HISTORY])
def test_quoted_history_is_removed(name: str, text: str) -> None:
    assert extract_reply(text) == "Danke, erledigt."
    assert extract_reply(text.replace("\n", "\r\n")) == "Danke, erledigt."


def test_languages_decide_which_headers_are_known() -> None:
    text = HISTORY[0][1]  # German Outlook header block
    assert extract_reply(text, languages=("de",)) == "Danke, erledigt."
    only_english = extract_reply(text, languages=("en",))
    assert only_english.startswith("Danke, erledigt.\n\nVon: Member Enquiries")


def test_polish_is_not_a_default_language() -> None:
    # Its Outlook header needs one line starting "Data:" to cut the rest of the message.
    text = "Wyniki badania:\nData: 3 grudnia\nDrugi akapit."
    assert "pl" not in DEFAULT_LANGUAGES and "pl" in SUPPORTED_LANGUAGES
    assert extract_reply(text) == text
    assert extract_reply(text, languages=("pl",)) == "Wyniki badania:"


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="xx"):
        extract_reply("Hello", languages=("en", "xx"))


# --- signatures: cut at a sign-off, never into the answer ------------------------------------

SIGNATURES = [
    ("Done.\n\nKind regards\n\nPriya Shah\nHighways", "Done."),
    ("Done.\n\nMany thanks,\nPriya", "Done."),
    ("Done.\n\nThanks, Priya", "Done."),
    ("Done.\n\nBest wishes\nSam Whitaker", "Done."),
    ("Done.\n\nRegards\nPriya", "Done."),
    ("Done.\n\nYours sincerely,\n\nPriya Shah", "Done."),
    ("Done.\n\nMit freundlichen Grüßen\nPriya Shah", "Done."),
    ("Done.\n\nCordialement,\nPriya", "Done."),
    ("Done.\n\n-- \nPriya Shah\nHighways", "Done."),
    ("Done.\n\nSent from my iPhone", "Done."),
    ("Done.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Done."),
    # A sentence starting with a sign-off word is the answer, not a signature.
    (
        "Dear Cllr Smith,\n\nThanks, the contractor is booked for Monday.\n\nPriya",
        "Dear Cllr Smith,\n\nThanks, the contractor is booked for Monday.\n\nPriya",
    ),
    (
        "Hello,\n\nThank you for your patience.\nRegards to the residents too.",
        "Hello,\n\nThank you for your patience.\nRegards to the residents too.",
    ),
    (
        "Hello,\n\nAll the best options were considered.",
        "Hello,\n\nAll the best options were considered.",
    ),
    ("Hello,\n\nTake care on the bend.", "Hello,\n\nTake care on the bend."),  # Danish "Tak"
    # List lines are not signatures (the library's default rule would cut at "- a").
    ("Found:\n- a pothole\n- a gully\n\nRegards,\nPriya", "Found:\n- a pothole\n- a gully"),
    # The LAST sign-off: a "Thanks" quoted from a resident's letter does not cut the answer.
    (
        'The resident wrote:\n"Please fix it.\nThanks\nMrs Jones"\n\nIt is booked.\n\n'
        "Kind regards\nPriya",
        'The resident wrote:\n"Please fix it.\nThanks\nMrs Jones"\n\nIt is booked.',
    ),
    # A dashed heading over "Key: value" lines is the answer, not a forwarded header block.
    (
        "Booked.\n\n----- Details -----\nDate: 3 December\nPlace: Mill Lane",
        "Booked.\n\n----- Details -----\nDate: 3 December\nPlace: Mill Lane",
    ),
    # A "-- " delimiter comes before any sign-off inside the signature block.
    ("Booked.\n--\nPriya Shah\nKind regards from Highways", "Booked."),
    # The first line is never a signature: a one-word reply is a reply.
    ("Thanks!\n\nSent from my iPhone", "Thanks!"),
    ("Thanks, Priya", "Thanks, Priya"),
    # Inline answers between quoted questions stay; only trailing quoted lines go.
    (
        "> When will it be fixed?\n4 December.\n> Who pays?\nThe council.\n> Thanks\n> Jane",
        "> When will it be fixed?\n4 December.\n> Who pays?\nThe council.",
    ),
]


@pytest.mark.parametrize(("text", "expected"), SIGNATURES)
def test_signature(text: str, expected: str) -> None:
    assert extract_reply(text) == expected


# --- disclaimers and banners ----------------------------------------------------------------

DISCLAIMERS = [
    (
        "CAUTION: This email originated from outside of the organisation. Do not click links"
        " or open attachments unless you recognise the sender and know the content is safe."
        "\n\nAny update?\n\nJane",
        "Any update?\n\nJane",
    ),
    (
        "It is booked for Monday.\n\nPriya Shah\n"
        "If you are not the intended recipient of this email please delete it.",
        "It is booked for Monday.\n\nPriya Shah",
    ),
    (
        "It is booked for Monday.\n\nDISCLAIMER\nThe information in this message is private.",
        "It is booked for Monday.",
    ),
    (
        "It is booked for Monday.\n\nThe information contained in this email is confidential"
        " and may be legally privileged.",
        "It is booked for Monday.",
    ),
    (
        "It is booked for Monday.\n\nEmails sent to and from the council may be monitored.",
        "It is booked for Monday.",
    ),
    (
        "It is booked for Monday.\n\nPlease consider the environment before printing this email",
        "It is booked for Monday.",
    ),
    # Sentences that only resemble a disclaimer stay.
    (
        "It is booked for Monday.\n\nThis email is to confirm the closure dates.",
        "It is booked for Monday.\n\nThis email is to confirm the closure dates.",
    ),
    (
        "It is booked for Monday.\n\nThe disclaimer on the permit was wrong.",
        "It is booked for Monday.\n\nThe disclaimer on the permit was wrong.",
    ),
]


@pytest.mark.parametrize(("text", "expected"), DISCLAIMERS)
def test_disclaimers_and_banners(text: str, expected: str) -> None:
    assert extract_reply(text) == expected


# --- fallbacks and untrusted input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        (" \r\n \n", ""),
        # No new text at all: the whole text comes back, never nothing.
        (
            "On Tue, 24 Nov 2026 at 09:15, Member Enquiries <enquiries@example.gov.uk> wrote:"
            "\n> Ref: MQ-2026-00042",
            "On Tue, 24 Nov 2026 at 09:15, Member Enquiries <enquiries@example.gov.uk> wrote:"
            "\n> Ref: MQ-2026-00042",
        ),
        ("\n\n  Thanks!  \n\n", "Thanks!"),
        ("Line one\n\n\n\n\nLine two", "Line one\n\nLine two"),
    ],
)
def test_fallbacks(text: str, expected: str) -> None:
    assert extract_reply(text) == expected


def test_library_failure_keeps_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(text: str, rules: object) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(replies, "_new_fragment", boom)
    assert extract_reply("  Done.\r\n\r\nOn x wrote:\r\n> y  ") == "Done.\n\nOn x wrote:\n> y"
    # Without the split every unquoted line counts: keywords are still found.
    assert find_keywords("#holding\nOn x wrote:\n#internal\n> #member") == Keywords(
        holding=True, internal=True
    )


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    [
        "On " + " " * 60_000 + "x",  # minutes in the library's attribution pattern, unguarded
        ("On " + "a " * 2_000 + "\n") * 600,
        ("Warning: " + "a " * 5_000 + "\n") * 50,
        "x" * 2_000_000,
    ],
    ids=["long-attribution-line", "many-long-attribution-lines", "disclaimer-lines", "2MB"],
)
def test_hostile_bodies_do_not_hang(text: str) -> None:
    reply = extract_reply(text)
    assert reply == reply.strip() and len(reply) <= len(text)
    assert find_keywords(text) == Keywords()


def test_new_text_longer_than_the_probe_keeps_its_history() -> None:
    history = (
        "From: Member Enquiries <enquiries@example.gov.uk>\nSent: 24 November 2026 09:16\n"
        "To: Priya Shah\nSubject: [MQ-2026-00042] Pothole\n\nold"
    )
    long_answer = "\n".join(f"Line {i}" for i in range(600))
    kept = extract_reply(f"{long_answer}\n\n{history}")
    assert kept.endswith("Subject: [MQ-2026-00042] Pothole\n\nold")
    short_answer = "\n".join(f"Line {i}" for i in range(400))
    assert extract_reply(f"{short_answer}\n\n{history}") == short_answer


# --- keywords -----------------------------------------------------------------------------

KEYWORDS = [
    ("#holding", Keywords(holding=True)),
    ("#HOLDING", Keywords(holding=True)),
    ("   #Holding.  ", Keywords(holding=True)),
    ("#internal", Keywords(internal=True)),
    ("#member", Keywords(member=True)),
    ("#holding\n#internal\n#member", Keywords(holding=True, internal=True, member=True)),
    (
        "#extend 5 awaiting contractor survey",
        Keywords(extend_days=5, extend_reason="awaiting contractor survey"),
    ),
    ("#extend 5", Keywords(extend_days=5)),
    (
        "#Extend 10 working days: awaiting survey",
        Keywords(extend_days=10, extend_reason="awaiting survey"),
    ),
    (
        "#extend 5 days - awaiting  the   survey",
        Keywords(extend_days=5, extend_reason="awaiting the survey"),
    ),
    ("#extend 3days", Keywords(extend_days=3)),
    ("#extend: 3 waiting", Keywords(extend_days=3, extend_reason="waiting")),
    ("#extend 5 first\n#extend 9 second", Keywords(extend_days=5, extend_reason="first")),
    # Malformed #extend lines are reported, not silently ignored.
    ("#extend", Keywords(malformed=("#extend",))),
    ("#extend five days", Keywords(malformed=("#extend five days",))),
    ("#extend 0 nothing", Keywords(malformed=("#extend 0 nothing",))),
    ("#extend 1000 too many", Keywords(malformed=("#extend 1000 too many",))),
    (
        "#extend soon\n#extend 2 ok",
        Keywords(extend_days=2, extend_reason="ok", malformed=("#extend soon",)),
    ),
    # Not keywords: inside a sentence, other words, quoted.
    ("Please treat this as #holding for now", Keywords()),
    # Lines of our own assignment email (templates/assignment.txt.j2), if ever unquoted.
    ('#holding in your reply (add "#extend 5 waiting for the contractor" on its own', Keywords()),
    (
        "only #internal keeps your reply as an internal note that the councillor never sees.",
        Keywords(),
    ),
    ("#holdings", Keywords()),
    ("#holding reply", Keywords()),
    ("#extended", Keywords()),
    ("# holding", Keywords()),
    ("> #holding\n> #extend 5 x", Keywords()),
    ("Answer.\n\nOn Tue, 24 Nov 2026, Priya <p@example.gov.uk> wrote:\n#internal", Keywords()),
    # Below the sign-off, above the history: still the officer's own text.
    ("Answer.\n\nKind regards\nPriya\n#internal", Keywords(internal=True)),
]


@pytest.mark.parametrize(("text", "expected"), KEYWORDS)
def test_find_keywords(text: str, expected: Keywords) -> None:
    assert find_keywords(text) == expected


STRIP = [
    ("#holding\n#extend 5 waiting\n\nDear Cllr Smith,\n\nSoon.", "Dear Cllr Smith,\n\nSoon."),
    ("Dear Cllr Smith,\n\n#internal\n\nSoon.", "Dear Cllr Smith,\n\nSoon."),
    ("Soon.\n#MEMBER\n", "Soon."),
    ("Soon.\n#extend soon", "Soon."),  # malformed keyword lines never reach the member
    ("Soon.\n> #internal\n> note", "Soon.\n> note"),
    ("Treat as #holding please.", "Treat as #holding please."),
    ("Soon.\r\n#holding\r\n", "Soon."),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), STRIP)
def test_strip_keywords(text: str, expected: str) -> None:
    assert strip_keywords(text) == expected
    assert find_keywords(strip_keywords(text)) == Keywords()


# --- status requests ----------------------------------------------------------------------

STATUS = [
    ("status", "", True),
    ("Status?", "", True),
    ("STATUS!", "", True),
    ("status.", "", True),
    ("Status:", "", True),
    ("  status  ", "", True),
    ("RE: status", "", True),
    ("[EXTERNAL] Status", "", True),
    ("RE: [MQ-2026-00042] Status", "", True),
    ("", "status", True),
    ("Hello", "Status?\n\nSent from my iPhone", True),
    ("", "\n\n  STATUS  \nRaj", True),
    (
        "",
        "CAUTION: This email originated from outside of the organisation. Do not click links"
        " unless you recognise the sender.\n\nstatus",
        True,
    ),
    ("status update on Mill Lane", "", False),
    ("Statuses", "", False),
    ("What is the status?", "", False),
    ("[Highways] status", "", False),
    ("", "status please", False),
    ("", "What is the status of my enquiries?", False),
    ("", "Hello\nstatus", False),
    (
        "Re: [MQ-2026-00042] Pothole",
        "Any update?\n\nOn Tue, 24 Nov 2026, Member Enquiries <e@example.gov.uk> wrote:\n> status",
        False,
    ),
    ("", "", False),
]


@pytest.mark.parametrize(("subject", "text", "expected"), STATUS)
def test_is_status_request(subject: str, text: str, expected: bool) -> None:
    assert is_status_request(subject, text) is expected
