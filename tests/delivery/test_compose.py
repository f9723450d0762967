"""Outgoing mail as bytes: what we write must parse back, with the stdlib, as we meant it."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.policy import compat32

import pytest

from mailbridge.delivery import compose
from mailbridge.mail import tokens

FROM = "enquiries@example.gov.uk"
KEY = b"signing-key"


def build(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "sender": FROM,
        "sender_name": "Member Enquiries",
        "to": ["cllr.jane.smith@example.gov.uk"],
        "subject": "[MQ-2026-00042] Pothole on Main Street",
        "text": "Thank you for your enquiry.",
        "html": None,
        "message_id": "mb.x@example.gov.uk",
    }
    args.update(overrides)
    return compose.compose(**args)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(part: EmailMessage) -> str:
    """The decoded text with the wire's CRLF turned back into the newlines we passed in."""
    return part.get_content().replace("\r\n", "\n").rstrip()


def test_lines_end_in_crlf_and_headers_are_short() -> None:
    raw = build(subject="word " * 60, references=[f"r{i}@example.org" for i in range(30)])
    lines = raw.split(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in lines) <= 998  # RFC 5322 hard limit


def test_from_to_cc_and_display_names_parse_back() -> None:
    msg = parse(
        build(
            sender_name="Member Enquiries – Example County",
            to=["a@example.org", "jane@example.org"],
            cc=["b@example.org"],
        )
    )
    [sender] = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Member Enquiries – Example County", FROM)
    assert [a.addr_spec for a in msg["To"].addresses] == ["a@example.org", "jane@example.org"]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["b@example.org"]
    assert parse(build())["Cc"] is None


def test_display_name_with_specials_is_quoted() -> None:
    [sender] = parse(build(sender_name='Smith, "Jane" (Cllr)'))["From"].addresses
    assert sender.display_name == 'Smith, "Jane" (Cllr)' and sender.addr_spec == FROM


@pytest.mark.parametrize(
    "subject",
    [
        "[MQ-2026-00042] Réponse “quoted” – £5 fee 🚧",
        " ".join(["Ελληνικά και русский"] * 8),  # long enough to fold across encoded words
        "Plain ASCII subject",
    ],
)
def test_subject_round_trips(subject: str) -> None:
    assert parse(build(subject=subject))["Subject"] == subject


def test_line_breaks_in_a_subject_cannot_add_headers() -> None:
    # A subject copied from incoming mail can carry CR/LF through an encoded word.
    for subject in ("Re: hi\r\nBcc: evil@example.org", "Ré: hi\nBcc: evil@example.org"):
        msg = parse(build(subject=subject, extra_headers={"X-Case": "MQ\r\nX-Evil: 1"}))
        assert msg["Bcc"] is None and msg["X-Evil"] is None
        assert "Bcc: evil@example.org" in msg["Subject"]
        assert msg["X-Case"] == "MQ X-Evil: 1"


def test_message_ids_carry_one_pair_of_angle_brackets() -> None:
    msg = parse(
        build(
            message_id="mb.1@example.gov.uk",
            in_reply_to="orig@example.org",
            references=["first@example.org", "orig@example.org", "first@example.org", ""],
        )
    )
    assert msg["Message-ID"] == "<mb.1@example.gov.uk>"
    assert msg["In-Reply-To"] == "<orig@example.org>"
    assert msg["References"] == "<first@example.org> <orig@example.org>"
    # Callers that already hold bracketed ids get the same result, not <<id>>.
    again = parse(
        build(
            message_id="<mb.1@example.gov.uk>",
            in_reply_to="<orig@example.org>",
            references=["<first@example.org>", "orig@example.org"],
        )
    )
    assert again["Message-ID"] == "<mb.1@example.gov.uk>"
    assert again["In-Reply-To"] == "<orig@example.org>"
    assert again["References"] == "<first@example.org> <orig@example.org>"


def test_no_threading_headers_without_a_parent() -> None:
    msg = parse(build())
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_automatic_mail_is_marked_and_manual_mail_is_not() -> None:
    auto = parse(build())
    assert auto["Auto-Submitted"] == "auto-replied"
    assert auto["X-Auto-Response-Suppress"] == "All"
    assert auto["X-Mailbridge-Loop"] == "example.gov.uk"
    generated = parse(build(auto_submitted="auto-generated"))
    assert generated["Auto-Submitted"] == "auto-generated"
    manual = parse(build(auto_submitted=None))
    assert manual["Auto-Submitted"] is None and manual["X-Auto-Response-Suppress"] is None
    assert manual["X-Mailbridge-Loop"] == "example.gov.uk"  # loop guard is always there


def test_date_is_the_given_moment() -> None:
    moment = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert parse(build(date=moment))["Date"].datetime == moment


def test_text_only_is_a_single_part() -> None:
    msg = parse(build(text="£5 fee\nsecond line"))
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    assert text_of(msg) == "£5 fee\nsecond line"


def test_text_and_html_are_alternatives() -> None:
    long_line = "word " * 100  # longer than a line may be: quoted-printable soft breaks
    msg = parse(build(text=f"£5 fee\n{long_line}", html="<p>£5 fee</p>"))
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert text_of(plain) == f"£5 fee\n{long_line}".rstrip()
    assert text_of(html) == "<p>£5 fee</p>"
    assert list(msg.iter_attachments()) == []


def test_attachments_follow_the_body() -> None:
    pdf = b"%PDF-1.4\x00\xff binary"
    msg = parse(
        build(
            html="<p>see attached</p>",
            attachments=[
                ("plan.pdf", "application/pdf", pdf),
                ("naïve list.csv", "text/csv", b"a,b\r\n1,2\r\n"),
                ("blob", "not-a-type", b"\x01\x02"),
            ],
        )
    )
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("html", "plain"))
    assert body is not None and body.get_content_type() == "text/html"
    got = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
           for a in msg.iter_attachments()]  # fmt: skip
    assert got == [
        ("plan.pdf", "application/pdf", pdf),
        ("naïve list.csv", "text/csv", b"a,b\r\n1,2\r\n"),
        ("blob", "application/octet-stream", b"\x01\x02"),
    ]


def test_signed_message_id_names_its_case() -> None:
    mid = tokens.new_message_id("example.gov.uk", "MQ-2026-00042", KEY)
    assert mid.endswith("@example.gov.uk") and "<" not in mid
    assert tokens.verify_message_id(mid, (KEY,)) == "MQ-2026-00042"
    assert tokens.verify_message_id(f"<{mid}>", (KEY,)) == "MQ-2026-00042"
    assert tokens.new_message_id("example.gov.uk", "MQ-2026-00042", KEY) != mid


def test_references_past_99999_still_verify() -> None:
    mid = tokens.new_message_id("example.gov.uk", "MQ-2026-100000", KEY)
    assert tokens.verify_message_id(mid, (KEY,)) == "MQ-2026-100000"


def test_tampered_or_foreign_message_ids_are_rejected() -> None:
    mid = tokens.new_message_id("example.gov.uk", "MQ-2026-00042", KEY)
    assert tokens.verify_message_id(mid, (b"other-key",)) is None
    assert tokens.verify_message_id(mid.replace("00042", "00043"), (KEY,)) is None
    local, _, domain = mid.partition("@")
    flipped = local[:-1] + ("0" if local[-1] != "0" else "1")
    assert tokens.verify_message_id(f"{flipped}@{domain}", (KEY,)) is None
    assert tokens.verify_message_id("CAF=abc@mail.gmail.com", (KEY,)) is None
    assert tokens.verify_message_id("", (KEY,)) is None


def test_without_a_key_the_id_is_unsigned() -> None:
    mid = tokens.new_message_id("example.gov.uk", "MQ-2026-00042")
    local, _, domain = mid.partition("@")
    assert local.startswith("mb.MQ-2026-00042.") and local.count(".") == 2  # no signature
    assert domain == "example.gov.uk"
    assert tokens.verify_message_id(mid, (KEY,)) is None
    bare = tokens.new_message_id("example.gov.uk")
    assert bare.startswith("mb.") and bare.endswith("@example.gov.uk")
    assert tokens.verify_message_id(bare, (KEY,)) is None


HEADER_VALUES = [
    "Pothole on Mill Lane",
    "[MQ-2026-00042] RE: School transport for a pupil in Market Harborough",
    "x" * 70,  # just fits beside a short name
    "x" * 71,
    "word " * 30,  # long: folded
    "two  spaces   inside",
    " leading and trailing ",
    "tab\tinside",
    "<a@b> <c@d> <e@f>",
    "Café in Oadby",  # non-ASCII: encoded words
    "",
]


@pytest.mark.parametrize("value", HEADER_VALUES)
def test_short_headers_are_written_exactly_as_compat32_folds_them(value: str) -> None:
    # The fast path for one-line headers must give compat32's own bytes.
    msg = MIMEText("body", "plain", "utf-8")
    msg["Subject"] = value
    msg["X-Long-Header-Name-For-The-Edge"] = value
    msg["References"] = value
    reference = compat32.clone(linesep="\r\n", max_line_length=78)
    assert msg.as_bytes(policy=compose._CRLF) == msg.as_bytes(policy=reference)


BODIES = [
    "Thank you for your enquiry.\nYour reference is MQ-2026-00042.\n",
    "£5 fee\nsecond line",  # non-ASCII: quoted-printable
    "word " * 250,  # one line longer than 998 characters: quoted-printable
    "x" * 998,  # exactly the limit: 7bit
    '<table style="width:100%"><tr><td>a=b</td></tr></table>',  # '=' needs no escape in 7bit
    "CR only\rand CRLF\r\nand LF\nend",
    "trailing spaces   \nand a tab\t\n",
    ".a line starting with a dot\nFrom the ward\n",
    "",
]


def seven_bit(body: str) -> bool:
    """ASCII with no line over RFC 5322's 998 characters goes as it is."""
    return body.isascii() and max(len(line) for line in body.splitlines() or [""]) <= 998


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("subtype", ["plain", "html"])
def test_a_text_part_reads_back_as_the_text_it_was_given(body: str, subtype: str) -> None:
    raw = build(text=body, html=None) if subtype == "plain" else build(html=body)
    part = parse(raw).get_body((subtype,))
    assert part is not None
    expected = "7bit" if seven_bit(body) else "quoted-printable"
    assert part["Content-Transfer-Encoding"] == expected
    assert part.get_content_charset() == "utf-8"
    sent = part.get_content().replace("\r\n", "\n")
    assert sent.rstrip() == body.replace("\r\n", "\n").replace("\r", "\n").rstrip()


@pytest.mark.parametrize("body", [b for b in BODIES if not seven_bit(b)])
def test_quoted_printable_parts_are_what_mimetext_writes(body: str) -> None:
    """Built header by header for speed, a part must still be MIMEText's own bytes."""
    from email.charset import QP, Charset

    charset = Charset("utf-8")
    charset.body_encoding = QP
    ours = compose._text_part(body, "plain")
    reference = compat32.clone(linesep="\r\n", max_line_length=78)
    theirs = MIMEText(body, "plain", charset).as_bytes(policy=reference)
    assert ours.as_bytes(policy=reference) == theirs


@pytest.mark.parametrize("body", BODIES)
def test_whole_messages_are_the_bytes_the_stdlib_generator_writes(body: str) -> None:
    """The generator that writes a payload's lines in one call changes no byte."""
    pdf = ("a.pdf", "application/pdf", b"%PDF")
    raw = build(text=body, html=f"<p>{body}</p>", attachments=[pdf])
    msg = message_from_bytes(raw, policy=compat32)
    reference = compat32.clone(linesep="\r\n", max_line_length=78)
    assert compose._as_bytes(msg) == msg.as_bytes(policy=reference)
