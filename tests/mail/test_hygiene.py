"""mailbridge.mail.hygiene: loops, bounces and auto-replies told apart from mail a person wrote.

Every fixture in tests/fixtures/mail/ is classified: those in AUTOMATIC must get the verdict
given there, every other one (the ordinary enquiries, replies and forwards) must get None.
A new fixture of an automatic kind therefore has to be added to AUTOMATIC. The bounce and
auto-reply fixtures are written as Exchange Online, Gmail, Postfix, Exim, Dovecot
Pigeonhole, Mailman 3 and HCL Notes send them; our own outgoing messages inside them have
the headers compose.py writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import Header
from functools import cache
from pathlib import Path

import pytest

from mailbridge.mail.hygiene import (
    DIAGNOSTIC_LIMIT,
    AutoReply,
    Bounce,
    FailedRecipient,
    Loop,
    classify,
    may_answer_automatically,
)
from mailbridge.mail.parsing import ParsedEmail, parse
from tests.helpers.corpus import corpus_dir, corpus_files

MAIL = Path(__file__).parents[1] / "fixtures" / "mail"
OWN = ("enquiries@example.gov.uk", "member.enquiries@example-county.gov.uk")

# Our outgoing messages that come back in the fixtures (tokens.new_message_id's shape).
ACK = "mb.MQ-2026-00042.5d2c9e1f0a3b4c6d.7e1f2a9b3c@example.gov.uk"  # to the member
LEAD = "mb.MQ-2026-00042.a41f07c2e9d35b18.0c6e9d2f41@example.gov.uk"  # to the lead officer
INPUT = "mb.MQ-2026-00042.c3e5a7f9b1d2046e.9a8b7c6d5e@example.gov.uk"  # to a contributor
DELAYED = "mb.MQ-2026-00043.0f9e8d7c6b5a4392.1a2b3c4d5e@example.gov.uk"
EXIM = "mb.MQ-2026-00044.7b6a5f4e3d2c1b0a.e5d4c3b2a1@example.gov.uk"


@cache
def load(name: str) -> bytes:
    return (MAIL / name).read_bytes()


@cache
def parsed(name: str) -> ParsedEmail:
    return parse(load(name))


@dataclass(frozen=True)
class Want:
    verdict: type
    reason: str  # a fragment the reason must contain
    kind: str | None = None  # AutoReply
    original: str | None = None  # Bounce
    failures: tuple[tuple[str, str | None, bool], ...] = ()  # (address, status, permanent)
    permanent: bool = True


AUTOMATIC = {
    "our_own_acknowledgement_looped_back.eml": Want(Loop, "our own loop header"),
    # Outlook out-of-office through Exchange Online: "Automatic reply:", Auto-Submitted:
    # auto-generated, and the Inbox Rules Loop header the OOF agent adds.
    "exchange_out_of_office_automatic_reply.eml": Want(
        AutoReply, "X-MS-Exchange-Inbox-Rules-Loop", kind="out_of_office"
    ),
    # Gmail's vacation responder: only Auto-Submitted: auto-replied marks it, and its
    # subject is whatever the member typed, so it cannot be told from other auto-replies.
    "gmail_vacation_responder_reply.eml": Want(
        AutoReply, "Auto-Submitted: auto-replied", kind="auto_reply"
    ),
    "rfc3834_helpdesk_auto_reply.eml": Want(
        AutoReply, "Auto-Submitted: auto-replied", kind="auto_reply"
    ),
    "sieve_vacation_auto_submitted_vacation.eml": Want(
        AutoReply, "auto-replied (vacation)", kind="out_of_office"
    ),
    # HCL Notes writes no RFC 3834 header: the subject alone gives it away.
    "german_abwesenheitsnotiz_without_auto_headers.eml": Want(
        AutoReply, "out-of-office subject", kind="out_of_office"
    ),
    # From a known member, but to a list: List-Id wins.
    "mailing_list_message_list_id.eml": Want(AutoReply, "list-id", kind="list"),
    "bulk_precedence_planning_weekly_list.eml": Want(AutoReply, "Precedence: bulk", kind="bulk"),
    "outlook_read_receipt_disposition_notification.eml": Want(
        AutoReply, "read receipt", kind="auto_reply"
    ),
    "postfix_bounce_returns_our_notification.eml": Want(
        Bounce, "delivery status report", original=LEAD,
        failures=(("j.bloggs@highways-contractor.example", "5.1.1", True),),
    ),
    "exchange_ndr_undeliverable_with_returned_message.eml": Want(
        Bounce, "Exchange's non-delivery report marker", original=ACK,
        failures=(("cllr.hayes@example.gov.uk", "5.1.10", True),),
    ),
    "gmail_bounce_rfc822_headers_only.eml": Want(
        Bounce, "sent by mailer-daemon@googlemail.com", original=INPUT,
        failures=(("clerk@littlebowden-pc.example", "5.1.1", True),),
    ),
    # A delay notice is a bounce too, but not a permanent one: delivery goes on.
    "exchange_delivery_delayed_dsn_4_4_7.eml": Want(
        Bounce, "delivery delayed", original=DELAYED, permanent=False,
        failures=(("m.okonjo@street-lighting.example", "4.4.7", False),),
    ),
    # An outsider's server "reporting" the councillor's address failed: it is a bounce in
    # shape; whether it is believed is the trust policy's question (mail/authentication.py).
    "attack_forged_dsn_from_outsider.eml": Want(
        Bounce, "sent by mailer-daemon@mx.evil.example",
        original="mb.MQ-2026-00001.0f3a9c2e71d84b56.5e2c8a1f47@example.gov.uk",
        failures=(("cllr.jane.smith@example.gov.uk", "5.1.1", True),),
    ),
    # Exim's plain-text bounce: X-Failed-Recipients, and our message quoted in the body.
    "exim_bounce_x_failed_recipients_plain_text.eml": Want(
        Bounce, "X-Failed-Recipients", original=EXIM,
        failures=(("s.hughes@care-provider.example", "5.1.1", True),),
    ),
}  # fmt: skip
ALL_FIXTURES = sorted(p.name for p in MAIL.glob("*.eml"))


def test_every_automatic_fixture_is_on_disk() -> None:
    assert sorted(set(AUTOMATIC) - set(ALL_FIXTURES)) == []
    assert len(ALL_FIXTURES) > len(AUTOMATIC)  # the ordinary ones are checked too


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_fixture_gets_its_verdict(name: str) -> None:
    verdict = classify(parsed(name), OWN)
    want = AUTOMATIC.get(name)
    if want is None:
        assert verdict is None, f"{name} is mail a person wrote, but: {verdict}"
        return
    assert type(verdict) is want.verdict, verdict
    assert want.reason in verdict.reason, verdict.reason
    if isinstance(verdict, AutoReply):
        assert verdict.kind == want.kind
    if isinstance(verdict, Bounce):
        assert verdict.original_message_id == want.original
        got = tuple((f.address, f.status, f.permanent) for f in verdict.failures)
        assert got == want.failures
        assert verdict.permanent is want.permanent
        for address, _status, _permanent in want.failures:
            assert address in verdict.reason


# --- loops --------------------------------------------------------------------------------


def edit_headers(raw: bytes, *add: str, drop: tuple[str, ...] = ()) -> bytes:
    """The message with the named headers (and their folded lines) removed and `add` put
    on top, keeping its line endings."""
    sep = b"\r\n" if b"\r\n" in raw else b"\n"
    head, _, body = raw.partition(sep + sep)
    lines: list[bytes] = []
    dropping = False
    for line in head.split(sep):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                lines.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode()
        dropping = name in {d.lower() for d in drop}
        if not dropping:
            lines.append(line)
    new = [a.encode() for a in add]
    return sep.join(new + lines) + sep + sep + body


def test_our_address_in_from_is_a_loop_without_the_loop_header() -> None:
    raw = edit_headers(load("our_own_acknowledgement_looped_back.eml"), drop=("X-Mailbridge-Loop",))
    assert b"X-Mailbridge-Loop" not in raw
    verdict = classify(parse(raw), ["Enquiries@Example.gov.uk"])  # compared case-insensitively
    assert verdict == Loop("the message is from our own address enquiries@example.gov.uk")
    # Nothing else marks it as a loop: without our address it is an ordinary auto-reply.
    assert isinstance(classify(parse(raw), ["someone.else@example.gov.uk"]), AutoReply)


# --- bounces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "postfix_bounce_returns_our_notification.eml",
        "exchange_ndr_undeliverable_with_returned_message.eml",
        "gmail_bounce_rfc822_headers_only.eml",
        "exim_bounce_x_failed_recipients_plain_text.eml",
    ],
)
def test_a_bounce_is_recognised_before_its_auto_submitted_header(name: str) -> None:
    """Bounces carry Auto-Submitted: auto-replied; our returned message inside them carries
    our loop header. Neither may hide the bounce."""
    message = parsed(name)
    assert message.headers["auto-submitted"] == "auto-replied"
    assert b"X-Mailbridge-Loop: example.gov.uk" in load(name)
    assert "x-mailbridge-loop" not in message.headers
    assert isinstance(classify(message, OWN), Bounce)


@pytest.mark.parametrize(
    ("name", "original"),
    [
        ("exchange_ndr_undeliverable_with_returned_message.eml", ACK),  # message/rfc822
        ("gmail_bounce_rfc822_headers_only.eml", INPUT),  # text/rfc822-headers
        ("exchange_delivery_delayed_dsn_4_4_7.eml", DELAYED),  # text/rfc822-headers
    ],
)
def test_the_bounced_message_is_found_in_the_returned_part(name: str, original: str) -> None:
    raw = edit_headers(load(name), drop=("In-Reply-To", "References"))
    raw = raw.replace(b"X-Original-Message-ID:", b"X-Ignored:")
    message = parse(raw)
    assert message.in_reply_to is None and message.references == ()
    verdict = classify(message, OWN)
    assert isinstance(verdict, Bounce) and verdict.original_message_id == original


def test_without_a_returned_part_only_an_id_of_ours_in_the_thread_headers_is_taken() -> None:
    raw = load("exim_bounce_x_failed_recipients_plain_text.eml")
    quoted = f"Message-ID: <{EXIM}>".encode()
    assert quoted in raw
    raw = raw.replace(quoted, b"Message-ID: <removed@relay2.example.gov.uk>")
    found = classify(parse(edit_headers(raw, f"References: <{LEAD}>")), OWN)
    assert isinstance(found, Bounce) and found.original_message_id == LEAD
    other_domain = LEAD.replace("@example.gov.uk", "@elsewhere.example")
    for thread in ("References: <CAF1234567.pothole@mail.example.gov.uk>",
                   f"In-Reply-To: <{other_domain}>"):  # fmt: skip
        foreign = classify(parse(edit_headers(raw, thread)), OWN)
        assert isinstance(foreign, Bounce) and foreign.original_message_id is None, thread


def test_server_diagnostics_are_read_from_the_report_and_from_plain_text() -> None:
    postfix = classify(parsed("postfix_bounce_returns_our_notification.eml"), OWN)
    exim = classify(parsed("exim_bounce_x_failed_recipients_plain_text.eml"), OWN)
    assert isinstance(postfix, Bounce) and isinstance(exim, Bounce)
    assert postfix.failures == (
        FailedRecipient(
            "j.bloggs@highways-contractor.example", "5.1.1",
            "550 5.1.1 <j.bloggs@highways-contractor.example>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
            "failed",
        ),
    )  # fmt: skip
    # Exim has no report part: the reply is read from the text under the address.
    assert exim.failures == (
        FailedRecipient(
            "s.hughes@care-provider.example", "5.1.1",
            "550 5.1.1 <s.hughes@care-provider.example>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
            "failed",
        ),
    )  # fmt: skip


def test_a_temporary_delivery_report_is_a_bounce_that_is_not_permanent() -> None:
    verdict = classify(parsed("exchange_delivery_delayed_dsn_4_4_7.eml"), OWN)
    assert isinstance(verdict, Bounce)
    assert verdict.delayed and not verdict.permanent
    (failure,) = verdict.failures
    assert (failure.action, failure.status) == ("delayed", "4.4.7")
    assert failure.diagnostic == "400 4.4.7 Message delayed"


def dsn(recipients: str, *, subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    return (
        "Return-Path: <>\r\n"
        "From: MAILER-DAEMON@relay.example.gov.uk (Mail Delivery System)\r\n"
        "To: enquiries@example.gov.uk\r\n"
        f"Subject: {subject}\r\n"
        "Message-Id: <20261124110509.4Cz8@relay.example.gov.uk>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
        "\r\n--b\r\nContent-Type: text/plain\r\n\r\nReport.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.example.gov.uk\r\n\r\n"
        f"{recipients}\r\n--b--\r\n"
    ).encode()


def test_a_report_of_one_failed_and_one_delayed_recipient_is_permanent() -> None:
    raw = dsn(
        "Final-Recipient: rfc822; a@one.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
        "Final-Recipient: rfc822; <B@Two.example>\r\nAction: failed\r\n"
        "Status: 5.2.2 (over quota)\r\n\r\n"
        "Final-Recipient: rfc822; c@three.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n"
    )
    verdict = classify(parse(raw), OWN)
    assert isinstance(verdict, Bounce) and verdict.permanent and not verdict.delayed
    assert [(f.address, f.status, f.permanent) for f in verdict.failures] == [
        ("a@one.example", "4.4.1", False),
        ("b@two.example", "5.2.2", True),  # the delivered recipient is not a failure
    ]


def test_a_report_that_everything_was_delivered_is_no_bounce() -> None:
    raw = dsn(
        "Final-Recipient: rfc822; a@one.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n",
        subject="Delivery Status Notification (Success)",
    )
    verdict = classify(parse(raw), OWN)
    assert verdict == AutoReply("auto_reply", "a delivery report saying the message was delivered")


def test_a_diagnostic_is_one_line_and_capped() -> None:
    words = "\r\n    ".join(["The recipient's mailbox is not accepting messages"] * 30)
    raw = dsn(
        "Final-Recipient: rfc822; a@one.example\r\nAction: failed\r\nStatus: 5.2.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.2.1 {words}\r\n"
    )
    verdict = classify(parse(raw), OWN)
    assert isinstance(verdict, Bounce)
    diagnostic = verdict.failures[0].diagnostic
    assert diagnostic is not None and diagnostic.startswith("550 5.2.1 The recipient's mailbox")
    assert len(diagnostic) == DIAGNOSTIC_LIMIT and diagnostic.endswith("…")
    assert "\n" not in diagnostic and "  " not in diagnostic


@pytest.mark.parametrize(
    ("status", "diagnostic", "action", "permanent"),
    [
        ("5.1.1", None, None, True),
        ("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", "failed", True),
        ("4.4.7", None, None, False),
        ("4.4.7", "400 4.4.7 Message delayed", "delayed", False),
        ("5.2.2", None, "delayed", False),  # still being tried: not final, whatever the code
        # Given up after retrying (Exchange "message expired"): the message did not arrive,
        # but nothing says the address is bad, so it is not flagged.
        ("4.4.7", "500 4.4.7 Message expired", "failed", False),
        (None, "451 4.4.0 DNS query failed", "failed", False),
        (None, "550 5.1.1 User unknown", None, True),
        (None, "550 User unknown in local recipient table", None, True),
        (None, "452 4.2.2 Mailbox full", None, False),
        (None, "421 Service not available", None, False),
        (None, None, "failed", True),
        (None, None, None, False),  # nothing says it is final
        (None, "Recipient address rejected", None, False),
    ],
)
def test_failed_recipient_permanent(
    status: str | None, diagnostic: str | None, action: str | None, permanent: bool
) -> None:
    assert FailedRecipient("a@one.example", status, diagnostic, action).permanent is permanent


def test_bounce_permanent() -> None:
    failed = FailedRecipient("a@one.example", "5.1.1", None, "failed")
    delayed = FailedRecipient("b@two.example", "4.4.7", None, "delayed")
    assert Bounce((failed, delayed), None, "r").permanent
    assert not Bounce((delayed,), None, "r", delayed=True).permanent
    # No recipient could be read: final unless the notice says delivery goes on.
    assert Bounce((), None, "r").permanent
    assert not Bounce((), None, "r", delayed=True).permanent


@pytest.mark.parametrize(
    ("subject", "extra", "is_bounce"),
    [
        ("Undeliverable: Pothole on Mill Lane", "Return-Path: <>", True),
        ("Returned mail: see transcript for details", "Auto-Submitted: auto-replied", True),
        ("Mail delivery failed: returning message to sender", "Return-Path: <>", True),
        # A person's message with such a subject, and nothing else machine-like, is mail.
        ("Undeliverable: parcels left at the Kibworth depot", "", False),
        ("FW: Undeliverable: Pothole on Mill Lane", "", False),
    ],
)
def test_a_bounce_subject_needs_a_second_sign(subject: str, extra: str, is_bounce: bool) -> None:
    add = [f"Subject: {subject}", *([extra] if extra else [])]
    raw = edit_headers(
        load("member_new_enquiry_pothole.eml"), *add, drop=("Subject", "Return-Path")
    )
    verdict = classify(parse(raw), OWN)
    assert isinstance(verdict, Bounce) is is_bounce, verdict


def test_mailer_daemon_and_postmaster_senders_are_bounces() -> None:
    for sender in ("MAILER-DAEMON@mx.example.org", "postmaster@mx.example.org"):
        raw = edit_headers(
            load("member_new_enquiry_pothole.eml"), f"From: {sender}", drop=("From",)
        )
        verdict = classify(parse(raw), OWN)
        assert isinstance(verdict, Bounce) and sender.lower() in verdict.reason


# --- auto-replies -------------------------------------------------------------------------


def with_headers(*headers: str, drop: tuple[str, ...] = ()) -> ParsedEmail:
    """The ordinary pothole enquiry from a member, with some headers added."""
    return parse(edit_headers(load("member_new_enquiry_pothole.eml"), *headers, drop=drop))


def test_x_auto_response_suppress_alone_does_not_make_mail_automatic() -> None:
    """Decision: X-Auto-Response-Suppress is not a sign of an auto-reply by itself.

    It asks the receiver not to auto-reply ([MS-OXCMAIL] 2.1.3.2.20); it does not say the
    message is one. Ordinary Outlook mail carries it ("DR, OOF, AutoReply" is among its
    commonest values), and helpdesks that filtered on it lost real mail. A councillor's
    enquiry with it must open a case. Only with X-MS-Exchange-Inbox-Rules-Loop, which
    Exchange's out-of-office agent adds, does it mark an out-of-office notice.
    """
    fixture = parsed("member_enquiry_with_x_auto_response_suppress_header.eml")
    assert fixture.headers["x-auto-response-suppress"] == "DR, OOF, AutoReply"
    assert classify(fixture, OWN) is None
    assert classify(with_headers("X-Auto-Response-Suppress: All"), OWN) is None
    oof = with_headers(
        "X-Auto-Response-Suppress: All", "X-MS-Exchange-Inbox-Rules-Loop: cllr@example.gov.uk"
    )
    assert classify(oof, OWN) == AutoReply(
        "out_of_office",
        "an Exchange out-of-office notice (X-Auto-Response-Suppress with "
        "X-MS-Exchange-Inbox-Rules-Loop)",
    )


def test_an_exchange_out_of_office_is_found_by_its_headers_whatever_its_subject() -> None:
    raw = edit_headers(
        load("exchange_out_of_office_automatic_reply.eml"),
        "Subject: Annual leave",
        drop=("Subject", "Auto-Submitted"),
    )
    verdict = classify(parse(raw), OWN)
    assert isinstance(verdict, AutoReply) and verdict.kind == "out_of_office"


OUT_OF_OFFICE_SUBJECTS = [
    "Automatic reply: [MQ-2026-00042] For your reply: Pothole on Mill Lane",
    "Out of Office",
    "Out of Office: back on 7 December",
    "Out of the office until Monday",
    "Out of Office AutoReply: Pothole on Mill Lane",
    "Autoreply: Pothole on Mill Lane",
    "Auto-Reply: Pothole on Mill Lane",
    "Auto Response - Pothole on Mill Lane",
    "[OOO] Pothole on Mill Lane",
    "Abwesenheitsnotiz: Pothole on Mill Lane",
    "Automatische Antwort: Pothole on Mill Lane",
    "Réponse automatique : Pothole on Mill Lane",
    "Absence du bureau : Pothole on Mill Lane",
    "Risposta automatica: Pothole on Mill Lane",
    "Respuesta automática: Pothole on Mill Lane",
    "Automatisch antwoord: Pothole on Mill Lane",
    "Afwezig: Pothole on Mill Lane",
    "Frånvaro: Pothole on Mill Lane",
    "Autosvar: Pothole on Mill Lane",
    "Automatisk svar: Pothole on Mill Lane",
    "Ateb awtomatig: Pothole on Mill Lane",
]
ENQUIRY_SUBJECTS = [
    "Out of office hours noise from the Kibworth depot",
    "Out of office online booking for the tip is down",
    "RE: Automatic reply: [MQ-2026-00042] For your reply: Pothole on Mill Lane",
    "Auto-enrolment letters sent to the wrong addresses",
    "Delivery of salt bins to Great Glen",
    "Absence of street lighting on Station Road",
]


@pytest.mark.parametrize("subject", OUT_OF_OFFICE_SUBJECTS + ENQUIRY_SUBJECTS)
def test_out_of_office_subjects(subject: str) -> None:
    encoded = Header(subject, "utf-8").encode() if not subject.isascii() else subject
    verdict = classify(with_headers(f"Subject: {encoded}", drop=("Subject",)), OWN)
    if subject in ENQUIRY_SUBJECTS:
        assert verdict is None
    else:
        assert isinstance(verdict, AutoReply) and verdict.kind == "out_of_office", verdict


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("Auto-Submitted: auto-replied", "auto_reply"),
        ("Auto-Submitted: auto-generated", "auto_reply"),
        ("Auto-Submitted: auto-notified", "auto_reply"),
        ("Auto-Submitted: auto-replied (zimbra; vacation)", "out_of_office"),
        ('Auto-Submitted: auto-replied; owner-email="cllr@example.gov.uk"', "out_of_office"),
        ("Auto-Submitted: no", None),
        ("Auto-Submitted: No", None),
        ("X-Autoreply: yes", "auto_reply"),
        ("X-Autorespond: Out of office", "auto_reply"),
        ("X-AutoReply-From: cllr@example.gov.uk", "auto_reply"),
        ("X-Mail-Autoreply: yes", "auto_reply"),
        ("X-Autogenerated: Reply", "auto_reply"),
        ("X-Autoreply: no", None),
        ("Precedence: auto_reply", "auto_reply"),
        ("X-Precedence: auto_reply", "auto_reply"),
        ("Precedence: list", "list"),
        ("List-Id: <highways.lists.example.gov.uk>", "list"),
        ("List-Unsubscribe: <mailto:leave@lists.example.gov.uk>", "list"),
        ("Precedence: bulk", "bulk"),
        ("Precedence: junk", "bulk"),
        ("X-Precedence: bulk", "bulk"),
        ("Precedence: first-class", None),
        ("Return-Path: <>", "auto_reply"),
    ],
)
def test_auto_reply_headers(header: str, kind: str | None) -> None:
    message = with_headers(header, drop=("Return-Path",))
    verdict = classify(message, OWN)
    if kind is None:
        assert verdict is None
    else:
        assert isinstance(verdict, AutoReply) and verdict.kind == kind, verdict


def test_list_headers_win_over_precedence_bulk() -> None:
    verdict = classify(with_headers("Precedence: bulk", "List-Id: <x.lists.example>"), OWN)
    assert isinstance(verdict, AutoReply) and verdict.kind == "list"


# --- may we answer automatically? ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        (None, False),
        ("", False),
        ("   ", False),
        ("not-an-address", False),
        ("noreply@planning.example.gov.uk", False),
        ("no-reply@example.org", False),
        ("No_Reply@example.org", False),
        ("donotreply@example.org", False),
        ("do-not-reply@example.org", False),
        ("noreply-alerts@example.org", False),
        ("MAILER-DAEMON@relay.example.gov.uk", False),
        ("Mail Delivery System <Mailer-Daemon@relay2.example.gov.uk>", False),
        ("postmaster@example.org", False),
        ("bounce@example.org", False),
        ("bounces@example.org", False),
        ("bounces+4211=example.gov.uk@mailer.example", False),
        ("highways-liaison-bounces@lists.example.gov.uk", False),
        ("highways-liaison-request@lists.example.gov.uk", False),
        ("owner-highways@lists.example.gov.uk", False),
        ("MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@example.gov.uk", False),
        ("cllr.jane.smith@example.gov.uk", True),
        ("Cllr Jane Smith <cllr.jane.smith@example.gov.uk>", True),
        ("noreen.postle@example.gov.uk", True),
        ("requests@example.gov.uk", True),
        ("highways.requests@example.gov.uk", True),
    ],
)
def test_may_answer_automatically(address: str | None, allowed: bool) -> None:
    assert may_answer_automatically(address) is allowed


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("member_new_enquiry_pothole.eml", True),
        ("member_enquiry_with_x_auto_response_suppress_header.eml", True),
        ("exchange_out_of_office_automatic_reply.eml", False),
        ("gmail_vacation_responder_reply.eml", False),
        ("mailing_list_message_list_id.eml", False),
        ("bulk_precedence_planning_weekly_list.eml", False),
        ("postfix_bounce_returns_our_notification.eml", False),
        ("our_own_acknowledgement_looped_back.eml", False),  # the loop header is enough
    ],
)
def test_may_answer_automatically_looks_at_the_message_too(name: str, allowed: bool) -> None:
    # A person's address, so only the message can refuse.
    assert may_answer_automatically("cllr.jane.smith@example.gov.uk", parsed(name)) is allowed


def test_a_null_return_path_alone_forbids_an_automatic_answer() -> None:
    message = with_headers("Return-Path: <>", drop=("Return-Path",))
    assert message.return_path == ""
    assert not may_answer_automatically("cllr.jane.smith@example.gov.uk", message)


# --- what parsing gives hygiene -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Return-Path: <>", ""),
        ("Return-Path: < >", ""),
        (
            "Return-Path: <Bounces+X=example.org@Mailer.Example>",
            "bounces+x=example.org@mailer.example",
        ),
        ("Return-Path: <@relay.example:user@host.example>", "user@host.example"),
        ("Return-Path: cllr.jane.smith@example.gov.uk", "cllr.jane.smith@example.gov.uk"),
        ("Return-Path: <MAILER-DAEMON>", "mailer-daemon"),
        (None, None),
    ],
)
def test_return_path_is_normalised(header: str | None, expected: str | None) -> None:
    message = with_headers(*([header] if header else []), drop=("Return-Path",))
    assert message.return_path == expected


def test_the_topmost_return_path_is_the_one_read() -> None:
    assert parsed("member_new_enquiry_pothole.eml").return_path == "cllr.jane.smith@example.gov.uk"
    message = with_headers("Return-Path: <>")  # on top of the original one
    assert message.return_path == ""


def test_delivery_status_fields_are_parsed_without_changing_the_body() -> None:
    message = parsed("postfix_bounce_returns_our_notification.eml")
    per_message, recipient = message.delivery_status
    assert per_message["reporting-mta"] == "dns; relay.example.gov.uk"
    assert recipient["final-recipient"] == "rfc822; j.bloggs@highways-contractor.example"
    assert recipient["diagnostic-code"] == (
        "smtp; 550 5.1.1 <j.bloggs@highways-contractor.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert message.body_text.startswith("This is the mail system at host relay.example.gov.uk.")
    assert "Reporting-MTA" not in message.body_text
    assert [a.content_type for a in message.attachments] == ["message/rfc822"]


def test_global_delivery_status_is_read_too() -> None:
    raw = dsn(
        "Final-Recipient: rfc822; a@one.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: rfc822; b@two.example\r\nAction: failed\r\nStatus: 5.1.2\r\n"
    ).replace(b"message/delivery-status", b"message/global-delivery-status")
    message = parse(raw)
    assert [b.get("final-recipient") for b in message.delivery_status] == [
        None, "rfc822; a@one.example", "rfc822; b@two.example",
    ]  # fmt: skip
    verdict = classify(message, OWN)
    assert isinstance(verdict, Bounce)
    assert [f.status for f in verdict.failures] == ["5.1.1", "5.1.2"]


def test_ordinary_mail_has_no_delivery_status() -> None:
    assert parsed("member_enquiry_with_photo_and_pdf.eml").delivery_status == ()


# --- the real-world corpus ----------------------------------------------------------------


def test_classify_never_raises_on_the_real_world_corpus() -> None:
    files = corpus_files()
    bounces = []
    for path in files:
        message = parse(path.read_bytes())
        verdict = classify(message, OWN)  # must not raise
        may_answer_automatically(message.from_address, message)
        if re.search(r"(^|/)multipart_report_emails/", str(path.relative_to(corpus_dir()))):
            bounces.append((path.name, verdict))
    # The corpus's own delivery reports are bounces with their recipients read.
    assert len(bounces) >= 3
    for name, verdict in bounces:
        assert isinstance(verdict, Bounce) and verdict.failures, (name, verdict)
