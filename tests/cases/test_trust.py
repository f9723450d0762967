"""Who sent it, proven, through the whole pipeline: forged officer replies and delivery
reports on real `.eml` fixtures, with the trust policy on and off (docs/security.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from mailbridge.cases import directory
from mailbridge.cli.app import app
from mailbridge.deadlines.digests import coordinator_digest
from mailbridge.pipeline.outcomes import CaseUpdated
from mailbridge.pipeline.processor import accept_quarantined
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import QuarantineItem
from tests.factories import fixture_bytes, ok_lines
from tests.helpers.council import (
    JANE,
    PRIYA,
    REF,
    Council,
    bounce,
    build_council,
    msgid,
    new_email,
    only,
    outbox_raw,
    recipients,
    text_of,
    write_council_config,
)

# Exchange Online is the council's gateway; officers and coordinators must be proven,
# members and delegates are not asked (the test council's other settings).
M365 = {
    "microsoft365": True,
    "microsoft365_auth_sources": ["gbrp265.prod.outlook.example"],
    "officers": {"require": "dmarc"},
    "coordinators": {"require": "dmarc"},
}
# A Postfix gateway with OpenDMARC: its authserv-id is its host name.
POSTFIX = {"authserv_ids": ["mx.example.gov.uk"], "delivery_reports": {"require": "dmarc"}}

FORGED_REPLY = "attack_forged_officer_reply_plain_from_outside_exchange_online.eml"
GENUINE_REPLY = "exchange_online_internal_officer_reply_authas_internal.eml"


def on_case(fixture: str) -> bytes:
    """The fixture as written about the test council's case."""
    return fixture_bytes(fixture).replace(b"MQ-2026-00042", REF.encode())


def via_postfix(raw: bytes, results: str) -> bytes:
    """What the council's Postfix gateway adds on top of a message it accepted."""
    return f"Authentication-Results: mx.example.gov.uk; {results}\r\n".encode() + raw


# --- the officer's reply ------------------------------------------------------------------


def test_forged_officer_reply_from_outside_is_quarantined_and_changes_nothing(
    tmp_path: Path, engine: Engine
) -> None:
    council = build_council(tmp_path, engine, trust=M365)
    council.assigned_pothole()
    before = (council.case().status, council.case().response_due, council.kinds())

    report = council.deliver(on_case(FORGED_REPLY))

    assert (report.quarantined, report.updates) == (1, 0)
    [item] = council.quarantined()
    assert (item.reason_code, item.case_id) == ("sender_unauthenticated", council.case().id)
    assert item.reason.startswith(
        f"officer {PRIYA} not proven: the officer policy asks for DMARC pass for the From "
        "domain (or Microsoft 365 internal authentication); "
        "X-MS-Exchange-Organization-AuthAs: Anonymous"
    )
    assert (
        "Authentication-Results by Microsoft 365: spf=pass smtp.mailfrom=mailer.evil.example"
        in (item.reason)
    )
    assert "dmarc=fail header.from=example.gov.uk" in item.reason
    assert (council.case().status, council.case().response_due, council.kinds()) == before
    assert council.new_mail() == []  # nothing reached the councillor


def test_without_a_trust_policy_the_forged_officer_reply_reaches_the_councillor(
    council_without_trust: Council,
) -> None:
    """The attack of issue #13 on a council that authenticates nobody (the demo's choice,
    which `mailbridge check` warns about): the outsider's text goes out as the officer's."""
    council = council_without_trust
    council.assigned_pothole()
    council.deliver(on_case(FORGED_REPLY))
    assert council.case().status == "completed"
    assert "claims.evil.example" in text_of(only(council.new_mail(), JANE))


def test_genuine_officer_reply_inside_the_tenant_reaches_the_councillor(
    tmp_path: Path, engine: Engine
) -> None:
    council = build_council(tmp_path, engine, trust=M365)
    council.assigned_pothole()
    report = council.deliver(on_case(GENUINE_REPLY))
    assert (report.updates, report.quarantined) == (1, 0)
    assert council.case().status == "completed"
    assert "Our contractor filled the pothole" in text_of(only(council.new_mail(), JANE))


def test_a_coordinator_accepts_an_unproven_reply_and_it_applies_as_the_officers(
    tmp_path: Path, engine: Engine
) -> None:
    council = build_council(tmp_path, engine, trust=M365)
    council.assigned_pothole()
    council.deliver(on_case(FORGED_REPLY))
    [item] = council.quarantined()

    outcome = accept_quarantined(council.services, item.id or 0, actor="Member Support (test)")

    assert outcome == CaseUpdated(REF, "response")
    assert council.case().status == "completed"
    council.run()  # delivers what the acceptance queued
    assert recipients(only(council.new_mail(), JANE)) == [JANE]
    with council.db() as session:
        accepted = session.get(QuarantineItem, item.id)
        assert accepted is not None and accepted.status == "accepted"
    assert council.quarantined() == []


def test_unproven_senders_are_listed_in_the_coordinators_digest(
    tmp_path: Path, engine: Engine
) -> None:
    council = build_council(tmp_path, engine, trust=M365)
    council.assigned_pothole()
    council.deliver(on_case(FORGED_REPLY))
    with council.db() as session:
        digest = coordinator_digest(session, council.services, date(2026, 12, 2))
    assert digest is not None
    [listed] = digest.context["quarantined"]
    assert (listed["sender"], listed["reason"]) == (PRIYA, "sender unauthenticated")


# --- delivery reports ---------------------------------------------------------------------


def test_forged_dsn_from_an_outsider_flags_nobody(council_without_trust: Council) -> None:
    """Even with no sender authenticated, a report is believed only from the council's own
    mail system: an outsider's flags nobody, though it names a real recipient."""
    council = council_without_trust
    ack = council.open_pothole_case()  # went to Jane
    forged = fixture_bytes("attack_forged_dsn_from_outsider.eml").replace(
        b"<mb.MQ-2026-00001.0f3a9c2e71d84b56.5e2c8a1f47@example.gov.uk>", msgid(ack).encode()
    )
    report = council.deliver(forged)
    assert (report.updates, report.quarantined) == (1, 0)
    with council.db() as session:
        assert directory.flagged_addresses(session) == []
    [doubted] = council.events(kind="bounce_not_believed")
    assert doubted.detail == (
        "a delivery report not believed (it comes from mailer-daemon@mx.evil.example, not the "
        "mail system of example.gov.uk); it claimed permanent failure: "
        f"{JANE}: 5.1.1 550 5.1.1 <{JANE}>: Recipient address rejected: User unknown in "
        "virtual mailbox table; nobody flagged"
    )
    assert "delivery_failed" not in council.kinds()
    assert council.new_mail() == []  # no notice to the coordinators
    council.deliver(new_email(JANE, "Street light out", "Dark for a week."))
    assert recipients(only(council.new_mail(), JANE)) == [JANE]  # her mail still goes


def test_a_report_in_the_councils_name_counts_only_when_the_gateway_proves_it(
    tmp_path: Path, engine: Engine
) -> None:
    council = build_council(tmp_path, engine, trust=POSTFIX)
    ack = council.open_pothole_case()
    dsn = bounce(outbox_raw(council, ack), JANE)
    forged = via_postfix(dsn, "dmarc=fail (p=reject dis=none) header.from=relay.example.gov.uk")
    council.deliver(forged)
    with council.db() as session:
        assert directory.flagged_addresses(session) == []
    [doubted] = council.events(kind="bounce_not_believed")
    assert doubted.detail.startswith(
        "a delivery report not believed (the delivery report policy asks for DMARC pass for "
        "the From domain (or Microsoft 365 internal authentication); Authentication-Results "
        "by mx.example.gov.uk: dmarc=fail header.from=relay.example.gov.uk)"
    )

    genuine = via_postfix(
        dsn.replace(b"Message-Id: <", b"Message-Id: <2."),
        "dkim=pass header.d=example.gov.uk; dmarc=pass header.from=relay.example.gov.uk",
    )
    council.deliver(genuine)
    with council.db() as session:
        [flag] = directory.flagged_addresses(session)
    assert flag.email == JANE


# --- strangers ----------------------------------------------------------------------------


def test_a_stranger_whose_from_nobody_proved_gets_no_reply(tmp_path: Path, engine: Engine) -> None:
    """With a gateway to ask, the polite reply goes only to a From it proved: a forged one
    would send it to someone who never wrote."""
    council = build_council(tmp_path, engine, trust=POSTFIX)
    raw = fixture_bytes("unknown_sender_enquiry.eml")
    council.deliver(via_postfix(raw, "spf=fail smtp.mailfrom=evil.example; dmarc=none"))
    [item] = council.quarantined()
    assert item.reason_code == "unknown_sender"
    assert council.new_mail() == []

    aligned = via_postfix(
        raw.replace(b"Message-ID: <", b"Message-ID: <2."),
        "dkim=pass header.d=example.org; spf=pass smtp.mailfrom=resident@example.org",
    )
    council.deliver(aligned)
    assert recipients(only(council.new_mail(), "resident@example.org")) == ["resident@example.org"]


# -------------------------------------------------------------------------------------------


@pytest.fixture
def council_without_trust(tmp_path: Path, engine: Engine) -> Council:
    return build_council(tmp_path, engine)


def test_cli_quarantine_accept_applies_an_unproven_reply(
    tmp_path: Path, migrated_db_url: str
) -> None:
    engine = ensure_database(migrated_db_url)
    try:
        council = build_council(tmp_path, engine, trust=M365)
        council.assigned_pothole()
        council.deliver(on_case(FORGED_REPLY))
        [item] = council.quarantined()
        config = write_council_config(tmp_path, migrated_db_url)
        done = CliRunner().invoke(
            app, ["quarantine", "accept", str(item.id), "--config", str(config)],
            env={"COLUMNS": "300"},
        )  # fmt: skip
        assert ok_lines(done) == [
            f"message {item.id} was applied to {REF}; any mail it causes goes out with the "
            "next pass of `mailbridge run`"
        ]
        assert council.case().status == "completed"
    finally:
        engine.dispose()
