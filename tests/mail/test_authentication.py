"""Who sent it, proven: the gateway's results on the real shapes Gmail and Exchange Online
write, and forged ones below them (pure, mail/authentication.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mailbridge.mail.authentication import Gateway, evidence, report_doubt
from mailbridge.mail.parsing import parse
from tests.factories import fixture_bytes

GMAIL = Gateway(frozenset({"mx.google.com"}))
M365 = Gateway(frozenset(), microsoft365=True, auth_sources=("gbrp265.prod.outlook.example",))
POSTFIX = Gateway(frozenset({"mx.example.gov.uk"}))


@dataclass(frozen=True)
class Row:
    fixture: str
    gateway: Gateway
    proven: str  # "dmarc", "aligned", "internal" or "nothing"
    seen: str  # what the evidence quotes


ROWS = [
    # Gmail (Google Workspace): authserv-id mx.google.com.
    Row(
        "gmail_authentication_results_member_dmarc_pass.eml",
        GMAIL,
        "dmarc",
        "Authentication-Results by mx.google.com: dkim=pass header.i=@home.example.org, "
        "spf=pass smtp.mailfrom=jane.smith@home.example.org, dmarc=pass "
        "header.from=home.example.org",
    ),
    Row(
        "attack_member_from_forged_outside_gmail_dmarc_fail.eml",
        GMAIL,
        "nothing",
        "dmarc=fail header.from=home.example.org",
    ),
    Row(
        "gmail_authentication_results_member_none.eml",
        GMAIL,
        "nothing",
        "Authentication-Results by mx.google.com: spf=none",
    ),
    # The sender's own "dmarc=pass" field right below Gmail's, with Gmail's id: never read.
    Row(
        "attack_forged_authentication_results_below_gmails.eml",
        GMAIL,
        "nothing",
        "dmarc=fail header.from=home.example.org",
    ),
    # Exchange Online writes no authserv-id; its own AuthAs stamp proves internal senders.
    Row(
        "exchange_online_authentication_results_member_dmarc_pass.eml",
        M365,
        "dmarc",
        "Authentication-Results by Microsoft 365: spf=pass smtp.mailfrom=home.example.org, "
        "dkim=pass header.d=home.example.org, dmarc=pass header.from=home.example.org",
    ),
    Row(
        "exchange_online_authentication_results_member_none.eml",
        M365,
        "nothing",
        "dmarc=none header.from=home.example.org",
    ),
    Row(
        "attack_forged_officer_reply_plain_from_outside_exchange_online.eml",
        M365,
        "nothing",
        "X-MS-Exchange-Organization-AuthAs: Anonymous",
    ),
    Row(
        "attack_forged_authentication_results_below_exchange_onlines.eml",
        M365,
        "nothing",
        "dmarc=fail header.from=example.gov.uk",
    ),
    Row(
        "exchange_online_internal_officer_reply_authas_internal.eml",
        M365,
        "internal",
        "X-MS-Exchange-Organization-AuthAs: Internal",
    ),
    # The tenant's stamp counts only from the tenant's own servers.
    Row(
        "exchange_online_internal_officer_reply_authas_internal.eml",
        Gateway(frozenset(), True, ("eurprd09.prod.outlook.example",)),
        "nothing",
        "AuthAs: Internal (AuthSource lo2p265mb4012.gbrp265.prod.outlook.example)",
    ),
    # Outside Microsoft 365 anyone can write Exchange's stamp: it proves nothing.
    Row(
        "attack_forged_exchange_authas_internal_via_gmail.eml",
        GMAIL,
        "nothing",
        "dmarc=fail header.from=example.gov.uk",
    ),
    # The wrong gateway's results are no results.
    Row(
        "gmail_authentication_results_member_dmarc_pass.eml",
        POSTFIX,
        "nothing",
        "no Authentication-Results by mx.example.gov.uk",
    ),
    Row(
        "exchange_online_authentication_results_member_dmarc_pass.eml",
        GMAIL,
        "nothing",
        "no Authentication-Results by mx.google.com",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.fixture}:{r.proven}")
def test_evidence_on_real_gateway_shapes(row: Row) -> None:
    found = evidence(parse(fixture_bytes(row.fixture)), row.gateway)
    proven = (
        "internal"
        if found.internal
        else "dmarc"
        if found.dmarc
        else "aligned"
        if found.aligned
        else "nothing"
    )
    assert proven == row.proven, found
    assert row.seen in found.seen, found.seen


def test_aligned_is_relaxed_alignment_by_organisational_domain() -> None:
    raw = fixture_bytes("member_reply_gmail_chaser.eml")
    # DKIM signed by the parent domain of the From; SPF for another organisation's domain.
    field = (
        b"Authentication-Results: mx.example.gov.uk; dkim=pass header.d=example.org "
        b"header.s=s1; spf=pass smtp.mailfrom=bounces@mailer.example.net; "
        b"dmarc=none header.from=home.example.org\r\n"
    )
    found = evidence(parse(field + raw), POSTFIX)
    assert (found.aligned, found.dmarc) == (True, False)
    elsewhere = field.replace(b"header.d=example.org", b"header.d=example.net")
    assert not evidence(parse(elsewhere + raw), POSTFIX).aligned
    # A public suffix is no organisation: gov.uk signs for nobody under it.
    public = field.replace(b"header.d=example.org", b"header.d=org")
    assert not evidence(parse(public + raw), POSTFIX).aligned


def test_without_a_gateway_nothing_is_proven() -> None:
    found = evidence(parse(fixture_bytes("gmail_authentication_results_member_dmarc_pass.eml")),
                     Gateway())  # fmt: skip
    assert not (found.dmarc or found.aligned or found.internal)
    assert found.seen == "no mail gateway is named in [trust]"


@pytest.mark.parametrize(
    ("fixture", "doubt"),
    [
        ("postfix_bounce_returns_our_notification.eml", None),
        ("exchange_ndr_undeliverable_with_returned_message.eml", None),
        ("exchange_delivery_delayed_dsn_4_4_7.eml", None),
        ("attack_forged_dsn_from_outsider.eml", "it comes from mailer-daemon@mx.evil.example"),
        ("gmail_bounce_rfc822_headers_only.eml", "it comes from mailer-daemon@googlemail.com"),
        (
            "exim_bounce_x_failed_recipients_plain_text.eml",
            "it is not a multipart/report with a delivery-status part",
        ),
    ],
)
def test_delivery_reports_believed_only_from_the_councils_own_mail_system(
    fixture: str, doubt: str | None
) -> None:
    found = report_doubt(parse(fixture_bytes(fixture)), ["example.gov.uk"])
    if doubt is None:
        assert found is None
    else:
        assert found is not None and found.startswith(doubt), found
