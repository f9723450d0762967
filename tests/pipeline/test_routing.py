"""The routing table of the conversations issue, on real `.eml` fixtures (pure)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from mailbridge.cases import decisions
from mailbridge.cases.facts import CaseFacts
from mailbridge.mail import hygiene, replies
from mailbridge.mail.authentication import UNPROVEN, VOUCHED, Evidence
from mailbridge.mail.parsing import parse
from mailbridge.pipeline import routing, threading
from mailbridge.pipeline.threading import Match
from tests.factories import fixture_bytes
from tests.helpers.routing import (
    CASE,
    COMPLETED_LONG_AGO,
    COMPLETED_RECENTLY,
    DELEGATE,
    MEMBER,
    OWN,
    PEOPLE,
)


@dataclass(frozen=True)
class Row:
    fixture: str
    sender: str
    case: CaseFacts | None
    expected: type
    detail: dict[str, object] | None = None


ROWS = [
    # Members and delegates.
    Row("member_new_enquiry_pothole.eml", "member", None, decisions.OpenCase),
    Row("delegate_writes_for_member.eml", "delegate", None, decisions.OpenCase),
    Row("member_reply_gmail_chaser.eml", "member", CASE, decisions.Chase),
    Row("member_reply_gmail_chaser.eml", "delegate", CASE, decisions.Chase),
    Row("member_reply_gmail_chaser.eml", "member", COMPLETED_RECENTLY, decisions.Reopen),
    Row(
        "member_reply_gmail_chaser.eml",
        "member",
        COMPLETED_LONG_AGO,
        decisions.OpenCase,
        {"linked_case_id": 42},
    ),
    Row(
        "member_reply_gmail_chaser.eml",
        "other member",
        CASE,
        decisions.Quarantine,
        {"code": "not_party_to_case", "case_id": 42},
    ),
    Row(
        "reply_status_request_subject_only_empty_body.eml",
        "member",
        None,
        decisions.StatusRequest,
        {"member_id": MEMBER},
    ),
    Row(
        "reply_status_request_subject_only_empty_body.eml",
        "delegate",
        None,
        decisions.StatusRequest,
        {"member_id": MEMBER, "requester_id": DELEGATE},
    ),
    Row(
        "reply_status_request_subject_status_question_mark.eml",
        "member",
        None,
        decisions.StatusRequest,
    ),
    # Officers.
    Row(
        "officer_reply_outlook_desktop_top_posted.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
        {"kind": "response"},
    ),
    Row(
        "officer_reply_holding_and_extend_keywords.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
        {"kind": "holding", "extend_days": 5},
    ),
    # An extension means the answer is not final: a holding reply without the #holding.
    Row(
        "officer_reply_extend_without_holding_keyword.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
        {"kind": "holding", "extend_days": 5, "extend_reason": "waiting for contractor"},
    ),
    # More than a year of working days cannot be read: held, not final, and the officer told.
    Row(
        "officer_reply_extend_beyond_a_year_of_working_days.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
        {
            "kind": "holding",
            "extend_days": None,
            "malformed": ("#extend 300 waiting for contractor",),
        },
    ),
    Row(
        "officer_reply_holding_keyword_only_in_quoted_text.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
        {"kind": "response"},
    ),
    Row(
        "officer_reply_internal_note_html_only.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
        {"kind": "internal"},
    ),
    Row("officer_reply_outlook_desktop_top_posted.eml", "helper", CASE, decisions.Contribution),
    Row(
        "officer_reply_outlook_desktop_top_posted.eml",
        "other officer",
        CASE,
        decisions.Quarantine,
        {"code": "not_party_to_case"},
    ),
    Row(
        "officer_reply_outlook_desktop_top_posted.eml",
        "coordinator",
        CASE,
        decisions.CoordinatorNote,
        {"to_member": False},
    ),
    Row(
        "officer_reply_outlook_desktop_top_posted.eml",
        "lead",
        None,
        decisions.Quarantine,
        {"code": "not_linked_to_case"},
    ),
    # Strangers.
    Row(
        "unknown_sender_enquiry.eml",
        "stranger",
        None,
        decisions.Quarantine,
        {"code": "unknown_sender", "answer_stranger": True},
    ),
    Row(
        "member_reply_gmail_chaser.eml",
        "stranger",
        CASE,
        decisions.Quarantine,
        {"code": "not_party_to_case", "answer_stranger": False, "case_id": 42},
    ),
    Row(
        "outlook_reply_tag_lost_references_kept.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
        {"kind": "response"},
    ),
    Row("subject_only_reply_behind_external_banner.eml", "member", CASE, decisions.Chase),
    Row(
        "officer_forwards_chain_to_colleague_who_replies.eml",
        "other officer",
        CASE,
        decisions.Quarantine,
        {"code": "not_party_to_case", "case_id": 42},
    ),
    Row(
        "stranger_quotes_a_real_reference.eml",
        "stranger",
        CASE,
        decisions.Quarantine,
        {"code": "not_party_to_case", "case_id": 42, "answer_stranger": False},
    ),
    # Hygiene first: never a case, never a reopen, never a response.
    Row(
        "our_own_acknowledgement_looped_back.eml",
        "member",
        None,
        decisions.Quarantine,
        {"code": "loop"},
    ),
    Row(
        "exchange_out_of_office_automatic_reply.eml",
        "lead",
        CASE,
        decisions.NoteAutoReply,
        {"officer_away": True},
    ),
    Row(
        "exchange_out_of_office_automatic_reply.eml",
        "member",
        COMPLETED_RECENTLY,
        decisions.NoteAutoReply,
        {"officer_away": False},
    ),
    Row(
        "gmail_vacation_responder_reply.eml",
        "stranger",
        None,
        decisions.Quarantine,
        {"code": "auto_reply", "answer_stranger": False},
    ),
    Row(
        "mailing_list_message_list_id.eml",
        "stranger",
        None,
        decisions.Quarantine,
        {"code": "list", "answer_stranger": False},
    ),
    Row("postfix_bounce_returns_our_notification.eml", "stranger", None, decisions.NoteBounce),
    # A From that shows one sender to people and another to mail servers grants nothing,
    # even were the directory to know the address the reader sees (here: the lead officer).
    *(
        Row(
            fixture, "lead", CASE, decisions.Quarantine, {"code": "sender_ambiguous", "case_id": 42}
        )
        for fixture in (
            "attack_from_encoded_word_shows_officer_address.eml",
            "attack_from_display_name_is_officer_address.eml",
            "attack_two_from_headers_officer_and_attacker.eml",
            "attack_from_names_officer_and_attacker_mailboxes.eml",
        )
    ),
    # Sender and Reply-To name the officer; From, the only header that counts, a stranger.
    Row(
        "attack_reply_to_and_sender_name_officer_from_stranger.eml",
        "stranger",
        CASE,
        decisions.Quarantine,
        {"code": "not_party_to_case", "case_id": 42},
    ),
    # An honest Outlook "Surname, Forename" name with an accent, and a name that is the
    # sender's own address: both are the officer's reply.
    Row(
        "outlook_encoded_display_name_surname_comma_forename.eml",
        "lead",
        CASE,
        decisions.OfficerReply,
    ),
    Row("display_name_is_the_senders_own_address.eml", "lead", CASE, decisions.OfficerReply),
]


def _decide(row: Row) -> decisions.Decision:
    parsed = parse(fixture_bytes(row.fixture))
    sender = PEOPLE[row.sender]
    verdict = hygiene.classify(parsed, OWN)
    text = replies.extract_reply(parsed.body_text) if row.case else parsed.body_text
    return routing.decide(
        parsed,
        sender,
        verdict,
        Match(row.case, "signed" if row.case else None),
        replies.find_keywords(text),
        replies.is_status_request(parsed.subject, text),
        routing.Policy(reopen_working_days=5),
    )


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.sender}:{r.fixture}:{r.expected.__name__}")
def test_routing_table(row: Row) -> None:
    decision = _decide(row)
    assert type(decision) is row.expected, decision
    for field, value in (row.detail or {}).items():
        assert getattr(decision, field) == value, (field, decision)


def test_a_reference_that_names_no_case_is_quarantined() -> None:
    parsed = parse(fixture_bytes("member_reply_gmail_chaser.eml"))
    decision = routing.decide(
        parsed, PEOPLE["member"], None, Match(None, missing_reference="MQ-2026-00042"),
        replies.Keywords(), False, routing.Policy(),
    )  # fmt: skip
    assert isinstance(decision, decisions.Quarantine)
    assert decision.code == "unknown_reference" and "MQ-2026-00042" in decision.reason


# --- matching ---------------------------------------------------------------------------

KEY = b"test-signing-key"


def test_candidates_read_ids_markers_and_tags_in_order() -> None:
    parsed = parse(fixture_bytes("member_reply_gmail_chaser.eml"))
    found = threading.candidates(parsed, (), "MQ")
    assert found.message_ids[0] == parsed.in_reply_to
    assert set(found.message_ids) == {parsed.in_reply_to, *parsed.references}
    assert found.tagged == ("MQ-2026-00042",)
    assert found.signed == ()  # no key: signatures are not checked at all


def test_a_valid_signature_proves_the_case_and_a_forged_one_does_not() -> None:
    from mailbridge.mail import tokens

    real = tokens.new_message_id("example.gov.uk", "MQ-2026-00042", KEY)
    forged = tokens.new_message_id("example.gov.uk", "MQ-2026-00042", b"someone else")
    for message_id, expected in ((real, ("MQ-2026-00042",)), (forged, ())):
        raw = (
            f"From: a@example.org\r\nTo: enquiries@example.gov.uk\r\nSubject: hello\r\n"
            f"In-Reply-To: <{message_id}>\r\nMessage-ID: <x@example.org>\r\n\r\nbody\r\n"
        ).encode()
        assert threading.candidates(parse(raw), (KEY,), "MQ").signed == expected


def test_a_signature_by_a_previous_key_counts_only_while_that_key_is_listed() -> None:
    from mailbridge.mail import tokens

    old, new = b"o" * 32, b"n" * 32
    message_id = tokens.new_message_id("example.gov.uk", "MQ-2026-00042", old)
    raw = (
        f"From: a@example.org\r\nTo: enquiries@example.gov.uk\r\nSubject: hello\r\n"
        f"In-Reply-To: <{message_id}>\r\nMessage-ID: <x@example.org>\r\n\r\nbody\r\n"
    ).encode()
    assert threading.candidates(parse(raw), (new,), "MQ").signed == ()
    assert threading.candidates(parse(raw), (new, old), "MQ").signed == ("MQ-2026-00042",)


def test_signed_reply_address_counts_as_a_signature() -> None:
    from mailbridge.mail import tokens

    address = tokens.reply_address("enquiries@example.gov.uk", "MQ-2026-00042", KEY)
    raw = (
        f"From: a@example.org\r\nTo: {address}\r\nSubject: hello\r\n"
        "Message-ID: <y@example.org>\r\n\r\nbody\r\n"
    ).encode()
    assert threading.candidates(parse(raw), (KEY,), "MQ").signed == ("MQ-2026-00042",)
    assert tokens.verify_reply_address(address.replace("00042", "00043"), (KEY,)) is None


OTHER = replace(CASE, id=43, reference="MQ-2026-00043")


@pytest.mark.parametrize(
    ("found", "by_id", "expected_ref", "how", "missing"),
    [
        (threading.Candidates(signed=("MQ-2026-00043",), tagged=("MQ-2026-00042",)), {},
         "MQ-2026-00043", "signed", None),
        (threading.Candidates(message_ids=("m1", "m2"), tagged=("MQ-2026-00042",)),
         {"m2": 43}, "MQ-2026-00043", "message_id", None),
        (threading.Candidates(marker="MQ-2026-00043", tagged=("MQ-2026-00042",)), {},
         "MQ-2026-00043", "marker", None),
        (threading.Candidates(tagged=("MQ-2026-00099", "MQ-2026-00042")), {},
         "MQ-2026-00042", "subject", None),
        (threading.Candidates(tagged=("MQ-2026-00099",)), {}, None, None, "MQ-2026-00099"),
        (threading.Candidates(message_ids=("unknown",)), {}, None, None, None),
    ],
)  # fmt: skip
def test_choose_applies_the_rules_in_order(
    found: threading.Candidates,
    by_id: dict[str, int],
    expected_ref: str | None,
    how: str | None,
    missing: str | None,
) -> None:
    cases = {c.reference: c for c in (CASE, OTHER)}
    match = threading.choose(found, {c.id: c for c in (CASE, OTHER)}, by_id, cases)
    assert (match.case.reference if match.case else None) == expected_ref
    assert match.how == how and match.missing_reference == missing


OUR_ID = "mb.MQ-2026-00042.4c7e19a05b3d2f86.9a1f3c7e52@example.gov.uk"


@pytest.mark.parametrize(
    ("fixture", "message_ids", "marker", "tagged"),
    [
        # Outlook dropped the tag; the headers and the quoted footer still name the case.
        ("outlook_reply_tag_lost_references_kept.eml", {OUR_ID}, "MQ-2026-00042", ()),
        # Only the subject: behind an external-sender banner and a chain of prefixes.
        ("subject_only_reply_behind_external_banner.eml", set(), None, ("MQ-2026-00042",)),
        # A forwarded chain replied to by a colleague: our id is still in References.
        (
            "officer_forwards_chain_to_colleague_who_replies.eml",
            {OUR_ID},
            "MQ-2026-00042",
            ("MQ-2026-00042",),
        ),
        # Brackets lost: the bare reference still counts (routing decides who may use it).
        ("stranger_quotes_a_real_reference.eml", set(), None, ("MQ-2026-00042",)),
    ],
)
def test_candidates_on_real_reply_shapes(
    fixture: str, message_ids: set[str], marker: str | None, tagged: tuple[str, ...]
) -> None:
    found = threading.candidates(parse(fixture_bytes(fixture)), (), "MQ")
    assert message_ids <= set(found.message_ids)
    assert found.marker == marker
    assert found.tagged == tagged


def test_a_forwarded_chain_threads_by_the_stored_id_even_without_a_tag() -> None:
    found = threading.candidates(
        parse(fixture_bytes("outlook_reply_tag_lost_references_kept.eml")), (), "MQ"
    )
    match = threading.choose(found, {CASE.id: CASE}, {OUR_ID: CASE.id}, {})
    assert match.case == CASE and match.how == "message_id"


# --- who sent it, proven ------------------------------------------------------------------

STRICT = routing.Policy(
    reopen_working_days=5,
    trust=routing.Trust(
        {"officer": "dmarc", "coordinator": "dmarc", "member": "aligned", "delegate": "aligned"},
        checks_senders=True,
    ),
)


def _decide_with(row: Row, policy: routing.Policy, auth: Evidence) -> decisions.Decision:
    parsed = parse(fixture_bytes(row.fixture))
    text = replies.extract_reply(parsed.body_text) if row.case else parsed.body_text
    return routing.decide(
        parsed,
        PEOPLE[row.sender],
        hygiene.classify(parsed, OWN),
        Match(row.case, "signed" if row.case else None),
        replies.find_keywords(text),
        replies.is_status_request(parsed.subject, text),
        policy,
        auth=auth,
    )


# Every row where a person with a role would be granted something: a case opened, a chase,
# a reopen, a status reply, an officer's reply, a contribution, a coordinator's note, an
# out-of-office noted, or a quarantine for another reason.
GRANTED = [
    r
    for r in ROWS
    if PEOPLE[r.sender].kind is not None
    and r.expected is not decisions.NoteBounce
    and (r.detail or {}).get("code") not in ("loop", "sender_ambiguous")
]


@pytest.mark.parametrize("row", GRANTED, ids=lambda r: f"{r.sender}:{r.fixture}")
def test_an_unproven_sender_opens_nothing_and_changes_nothing(row: Row) -> None:
    decision = _decide_with(row, STRICT, UNPROVEN)
    assert decision == decisions.Quarantine(
        "sender_unauthenticated", decision.reason, case_id=row.case.id if row.case else None
    ), decision
    assert f"{PEOPLE[row.sender].kind} " in decision.reason
    # Proven (or vouched for by a coordinator), the same email does what it did before.
    assert type(_decide_with(row, STRICT, VOUCHED)) is row.expected


def test_aligned_is_enough_for_members_and_not_for_officers() -> None:
    aligned = Evidence(aligned=True, seen="Authentication-Results by mx.example.gov.uk: …")
    chase = Row("member_reply_gmail_chaser.eml", "member", CASE, decisions.Chase)
    assert type(_decide_with(chase, STRICT, aligned)) is decisions.Chase
    reply = Row("officer_reply_outlook_desktop_top_posted.eml", "lead", CASE, decisions.Quarantine)
    decision = _decide_with(reply, STRICT, aligned)
    assert isinstance(decision, decisions.Quarantine)
    assert decision.reason == (
        "officer priya.shah@example.gov.uk not proven: the officer policy asks for DMARC pass "
        "for the From domain (or Microsoft 365 internal authentication); "
        "Authentication-Results by mx.example.gov.uk: …"
    )


def test_a_stranger_is_answered_only_when_the_gateway_proved_the_from() -> None:
    row = Row("unknown_sender_enquiry.eml", "stranger", None, decisions.Quarantine)
    unproven = _decide_with(row, STRICT, UNPROVEN)
    assert isinstance(unproven, decisions.Quarantine)
    assert (unproven.code, unproven.answer_stranger) == ("unknown_sender", False)
    proven = _decide_with(row, STRICT, Evidence(aligned=True))
    assert isinstance(proven, decisions.Quarantine) and proven.answer_stranger


@pytest.mark.parametrize(
    ("fixture", "doubt"),
    [
        ("postfix_bounce_returns_our_notification.eml", None),
        ("attack_forged_dsn_from_outsider.eml", "it comes from mailer-daemon@mx.evil.example"),
        ("exim_bounce_x_failed_recipients_plain_text.eml", "it is not a multipart/report"),
    ],
)
def test_a_delivery_report_is_noted_with_the_reason_it_is_not_believed(
    fixture: str, doubt: str | None
) -> None:
    policy = routing.Policy(trust=routing.Trust(report_domains=("example.gov.uk",)))
    row = Row(fixture, "stranger", None, decisions.NoteBounce)
    decision = _decide_with(row, policy, UNPROVEN)
    assert isinstance(decision, decisions.NoteBounce)
    if doubt is None:
        assert decision.doubt is None
    else:
        assert decision.doubt is not None and decision.doubt.startswith(doubt)
