"""Erasure on request and the legal hold, through the command line, on each database:
`case hold` / `case release`, `erase case`, `erase person` (a councillor who left office,
with a successor or with their cases erased; a resident's address). Each says what it
erased and what remains; a dry run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import Result

from mailbridge.privacy import audit
from mailbridge.privacy.erasure import ERASED
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import (
    AuditRecord,
    AutoMail,
    Case,
    Message,
    OutboxMessage,
    Person,
    PersonAddress,
    QuarantineItem,
)
from tests.factories import one_error
from tests.helpers.council import (
    ANN,
    JANE,
    JANE_HOME,
    PRIYA,
    RAJ,
    REF,
    SUPPORT,
    Council,
    build_council,
    council_cli,
    new_email,
    out_of_office,
    reply,
    write_council_config,
)
from tests.helpers.privacy import report_csv, snapshot

pytestmark = pytest.mark.usefixtures("fixed_clock")

OPEN_REF = "MQ-2026-00002"
STRANGER = "resident@example.net"


@dataclass
class Home:
    config: Path
    council: Council

    def cli(self, *args: str) -> Result:
        return council_cli(self.config, *args)

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def home(tmp_path: Path, migrated_db_url: str) -> Iterator[Home]:
    """Jane's pothole (REF) answered and completed; her street light enquiry (OPEN_REF)
    open; a resident's email quarantined."""
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine)
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "The pothole was filled this morning."))
    opened = council.deliver(new_email(JANE, "Street light out", "The road is dark at night."))
    assert opened.references == [OPEN_REF]
    council.deliver(new_email(STRANGER, "My bins", "Please ring me on 0116 496 0000", name="Al"))
    assert council.case(REF).status == "completed"
    yield Home(write_council_config(tmp_path, migrated_db_url), council)
    engine.dispose()


def _audit(home: Home, action: str) -> list[AuditRecord]:
    with home.council.db() as session:
        return [r for r in audit.records(session) if r.action == action]


def test_a_held_case_is_shown_so_and_refused_erasure_until_released(home: Home) -> None:
    out = home.ok("case", "hold", REF, "--reason", "insurance claim CL-1234")
    assert (
        out.splitlines()[0]
        == f"{REF}: on legal hold (insurance claim CL-1234); it will not be erased"
    )
    [line] = [x for x in home.ok("case", "show", REF).splitlines() if "Legal hold" in x]
    held_at = home.council.case().held_at
    assert held_at is not None
    assert line.split(None, 2)[2].startswith(f"since {held_at:%Y-%m-%d} by os:")
    assert line.endswith("insurance claim CL-1234; never erased")
    one_error(
        home.cli("erase", "case", REF, "--reason", "request ER-1"),
        f"{REF} is on legal hold since {held_at:%Y-%m-%d} (insurance claim CL-1234); nothing "
        f"was erased. `mailbridge case release {REF}` ends the hold, when the reason for it "
        "has gone",
    )
    assert home.council.case().content_erased_at is None
    one_error(
        home.cli("case", "hold", REF, "--reason", "another"),
        f"{REF} is on legal hold already, since {held_at:%Y-%m-%d} (insurance claim CL-1234); "
        "release it first to give another reason",
    )
    out = home.ok("case", "release", REF)
    assert out.strip() == (
        f"{REF}: legal hold released (held since {held_at:%Y-%m-%d}: insurance claim CL-1234)"
    )
    assert not any("Legal hold" in x for x in home.ok("case", "show", REF).splitlines())
    assert home.council.kinds()[-2:] == ["legal_hold", "legal_hold_released"]
    assert [r.detail for r in _audit(home, "case.hold")] == ["insurance claim CL-1234"]
    assert [r.case_reference for r in _audit(home, "case.release")] == [REF]
    one_error(home.cli("case", "release", REF), f"{REF} is not on legal hold")


def test_erase_case_dry_run_changes_nothing_and_the_real_one_keeps_the_skeleton(
    home: Home,
) -> None:
    before, figures = snapshot(home.council), report_csv(home.council)
    out = home.ok("erase", "case", REF, "--reason", "erasure request ER-17", "--dry-run")
    assert out.startswith("Dry run: nothing was changed. It would erase:\n")
    assert snapshot(home.council) == before

    out = home.ok("erase", "case", REF, "--reason", "erasure request ER-17")
    lines = out.splitlines()
    assert lines[0] == "Erased:"
    assert lines[1].startswith(f"  {REF}: content erased (")
    assert "stored files (raw emails, attachments) removed" in lines[2]
    assert lines[3] == "What remains afterwards:"
    assert any("its reference, dates" in x for x in lines[4:])
    assert any("the audit keeps a record of this erasure" in x for x in lines[4:])
    assert any("Processed and Quarantine" in x for x in lines[4:])
    case = home.council.case()
    assert (case.subject, case.body_text) == (ERASED, ERASED)
    assert home.council.events(kind="content_erased")[0].detail == "request: erasure request ER-17"
    [record] = _audit(home, "erase.case")
    assert (record.case_reference, record.detail) == (REF, "request: erasure request ER-17")
    assert report_csv(home.council) == figures
    shown = home.ok("case", "show", REF)
    assert f"{REF}  {ERASED}" in shown and "Content erased" in shown
    assert "Pothole" not in shown and "Mill Lane" not in shown


def test_a_councillor_who_left_office_hands_open_cases_to_the_successor(home: Home) -> None:
    figures, before = report_csv(home.council).splitlines(), snapshot(home.council)
    args = ("erase", "person", "--email", JANE, "--reason", "left office May 2027")
    one_error(
        home.cli(*args),
        "Cllr Jane Smith has 1 open cases: say --successor EMAIL to hand them to the member "
        "who follows, or --erase-cases to erase their content too",
    )
    home.ok(*args, "--successor", RAJ, "--dry-run")
    assert snapshot(home.council) == before

    out = home.ok(*args, "--successor", RAJ)
    assert f"{OPEN_REF}: open, handed over to Cllr Raj Patel <{RAJ}>" in out
    assert f"{REF}: content erased" in out
    assert f"other addresses removed from the directory: {JANE_HOME}" in out
    assert "What remains afterwards:" in out
    assert f"the directory keeps Cllr Jane Smith <{JANE}> (member, Bowden" in out
    handed = home.council.case(OPEN_REF)
    assert handed.member_id == home.council.person_id(RAJ)
    assert handed.content_erased_at is None and handed.subject == "Street light out"
    assert home.council.kinds(OPEN_REF)[-1] == "member_handed_over"
    assert home.council.case(REF).content_erased_at is not None
    with home.council.db() as session:
        jane = session.exec(select(Person).where(Person.email == JANE)).one()
        assert not jane.active and jane.name == "Cllr Jane Smith"
        addresses = session.exec(
            select(PersonAddress.email).where(PersonAddress.person_id == jane.id)
        ).all()
        assert addresses == [JANE]
    assert [r.detail for r in _audit(home, "erase.person")] == [f"{JANE}: left office May 2027"]
    # The council's figures stay; the open case now counts as Raj's, the erased one Jane's.
    after = report_csv(home.council).splitlines()
    assert [x for x in after if ",total," in x] == [x for x in figures if ",total," in x]
    [jane_row] = [x for x in after if "Cllr Jane Smith" in x]
    assert jane_row.split(",")[5] == "1"


def test_a_councillor_who_left_office_may_have_every_case_erased(home: Home) -> None:
    out = home.ok("erase", "person", "--email", JANE, "--reason", "left office", "--erase-cases")
    assert f"still open, with their content erased: {OPEN_REF}" in out
    for reference in (REF, OPEN_REF):
        assert home.council.case(reference).content_erased_at is not None
    assert home.council.case(OPEN_REF).status == "new"
    assert home.council.case(OPEN_REF).member_id == home.council.person_id(JANE)
    one_error(
        home.cli("erase", "person", "--email", JANE, "--reason", "x", "--successor", RAJ,
                 "--erase-cases"),
        "give --successor or --erase-cases, not both",
    )  # fmt: skip


def test_a_residents_address_has_every_email_from_or_to_it_erased(home: Home) -> None:
    before = snapshot(home.council)
    assert [a for a in before["AutoMail"] if a["address"] == STRANGER]  # the answer's limit
    args = ("erase", "person", "--email", STRANGER, "--reason", "request ER-18")
    home.ok(*args, "--dry-run")
    assert snapshot(home.council) == before
    out = home.ok(*args)
    # Their email, and the automatic answer telling them the address is for councillors.
    assert (
        f"{STRANGER}: 2 emails from or to it and 1 quarantined messages from it erased, and "
        "1 copies of mail sent to it; its bounce and mail-limit records deleted"
    ) in out
    assert "sar export --name" in out
    assert "copies of digests and status replies already sent" in out
    # The audit, kept for ever, names the request, not the address that was erased.
    assert [r.detail for r in _audit(home, "erase.person")] == [
        "an address not in the directory: request ER-18"
    ]
    with home.council.db() as session:
        [item] = session.exec(select(QuarantineItem)).all()
        assert item.erased_at and item.sender == ERASED and item.raw_sha256 == ""
        message = session.get(Message, item.message_id)
        assert message is not None and message.sender == ERASED and message.erased_at
        assert not session.exec(select(Message).where(Message.sender == STRANGER)).all()
        [answer] = session.exec(select(OutboxMessage)
                                .where(OutboxMessage.recipients == ERASED)).all()  # fmt: skip
        assert answer.raw == b"" and answer.subject == ERASED
        assert not session.exec(select(AutoMail).where(AutoMail.address == STRANGER)).all()
    assert home.council.case(REF).content_erased_at is None  # no case of theirs
    one_error(
        home.cli(*args, "--erase-cases"),
        f"{STRANGER} is not in the directory, so it has no cases of its own: --successor "
        "and --erase-cases are for a councillor",
    )


def test_retention_run_lists_what_it_would_do_and_does_it(home: Home) -> None:
    later = "2029-06-01T03:00:00Z"
    out = home.ok("retention", "run", "--dry-run", "--now", later)
    assert out.splitlines()[:2] == [
        "Retention (dry run, nothing changed): would erase",
        f"  cases' content: 1 ({REF})",
    ]
    assert home.council.case(REF).content_erased_at is None
    out = home.ok("retention", "run", "--now", later)
    assert f"  cases' content: 1 ({REF})" in out and "  quarantined messages: 1" in out
    assert home.council.case(REF).content_erased_at is not None
    assert home.council.case(OPEN_REF).content_erased_at is None
    out = home.ok("retention", "run", "--now", later)
    assert "  cases' content: 0" in out and "  stored files removed: 0" in out
    with home.council.db() as session:
        assert session.exec(select(Case).where(Case.content_erased_at != None)).all()  # noqa: E711


def test_erasing_an_address_leaves_the_emails_on_a_held_case_as_they_are(home: Home) -> None:
    """An erasure request never reaches into a held case, by address no more than whole."""
    neighbour = "neighbour@example.net"
    to = f"enquiries@example.gov.uk, {neighbour}"
    opened = home.council.deliver(new_email(JANE, "Fence dispute", "Neighbour copied.", to=to))
    [held_ref] = opened.references
    home.ok("case", "hold", held_ref, "--reason", "claim CL-9")
    out = home.ok("erase", "person", "--email", neighbour, "--reason", "request ER-19")
    assert f"on legal hold, left as they are: {held_ref}" in out
    with home.council.db() as session:
        case = home.council.case(held_ref)
        [message] = session.exec(select(Message).where(Message.case_id == case.id)
                                 .where(Message.direction == "in")).all()  # fmt: skip
        assert message.erased_at is None and message.subject == "Fence dispute"
        assert neighbour in message.recipients
    assert "mail_erased" not in home.council.kinds(held_ref)


def test_a_coordinator_still_in_the_config_is_not_erased(home: Home) -> None:
    """The config file is the source of coordinators: an entry left there would make the
    erased coordinator active again at the service's next start, and --as them still works."""
    before = snapshot(home.council)
    one_error(
        home.cli("erase", "person", "--email", SUPPORT.upper(), "--reason", "left ER-20"),
        f"{SUPPORT} is a [[coordinators]] entry in the config file: remove it there first "
        "(it would be made active again when the service starts), then erase",
    )
    assert snapshot(home.council) == before


def test_a_held_open_case_of_a_councillor_who_left_is_not_said_to_be_erased(home: Home) -> None:
    home.ok("case", "hold", OPEN_REF, "--reason", "complaint OMB-3")
    out = home.ok("erase", "person", "--email", JANE, "--reason", "left office", "--erase-cases")
    assert f"on legal hold, left as they are: {OPEN_REF}" in out
    assert "still open, with their content erased" not in out
    assert home.council.case(OPEN_REF).content_erased_at is None


def test_erasing_a_staff_member_leaves_their_mail_quarantined_on_a_held_case(home: Home) -> None:
    """Quarantined mail that points at a case is part of it: a hold keeps it, whoever sent it."""
    with home.council.db() as session:
        [ack] = session.exec(
            select(OutboxMessage).where(OutboxMessage.idempotency_key == f"ack:{REF}")
        ).all()
    original = message_from_bytes(ack.raw, policy=email_policy.default)
    home.council.deliver(out_of_office(original, ANN, "Ann Other"))  # type: ignore[arg-type]
    [item] = [q for q in home.council.quarantined() if q.sender == ANN]
    assert item.case_id == home.council.case(REF).id
    home.ok("case", "hold", REF, "--reason", "claim CL-7")
    out = home.ok("erase", "person", "--email", ANN, "--reason", "left ER-21")
    assert f"on legal hold, left as they are: {REF}" in out
    with home.council.db() as session:
        kept = session.get(QuarantineItem, item.id)
        assert kept is not None and kept.erased_at is None and kept.sender == ANN
