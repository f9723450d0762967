"""What one sender can cause (#13, item 5): 1,000 emails with a forged member From opened
1,000 cases and sent 1,000 acknowledgements in 9.6 s; 200 forged strangers got 200 replies.

Through the real pipeline (the daemon's pass over a Maildir, or the Processor on a batch),
on the real fixtures attack_flood_forged_member_from.eml and
attack_forged_strangers_get_council_replies.eml.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select
from typer.testing import CliRunner

from mailbridge.cases import floods
from mailbridge.cases.decisions import HoldFlood, OpenCase
from mailbridge.cli.app import app
from mailbridge.delivery.limits import DAY, HOUR, Window, reached
from mailbridge.mail.parsing import parse
from mailbridge.pipeline.outcomes import CaseOpened, Quarantined
from mailbridge.pipeline.processor import Processor, accept_quarantined
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import AutoMail, Case, OutboxMessage, QuarantineItem, ScheduledSend
from tests.factories import fixture_bytes, make_services, ok_lines
from tests.helpers.clock import FIXED_NOW, clock_at
from tests.helpers.council import (
    JANE,
    JANE_HOME,
    SUPPORT,
    TOM,
    Council,
    build_council,
    recipients,
    text_of,
    write_council_config,
)

pytestmark = pytest.mark.usefixtures("fixed_clock")

FLOOD = "attack_flood_forged_member_from.eml"
STRANGERS = "attack_forged_strangers_get_council_replies.eml"


def burst(count: int, *, start: int = 0, sender: str = JANE) -> list[bytes]:
    """`count` copies of the forged enquiry, each a new email (its own Message-ID)."""
    raw = fixture_bytes(FLOOD)
    return [
        raw.replace(b"0001@mailer", f"{start + i:05d}@mailer".encode()).replace(
            JANE.encode(), sender.encode()
        )
        for i in range(count)
    ]


def strangers(count: int, *, start: int = 0, wave: int = 0) -> list[bytes]:
    """The phishing email under `count` forged stranger addresses (a new email each wave)."""
    raw = fixture_bytes(STRANGERS)
    return [
        raw.replace(b"victim@", f"victim{start + i}@".encode()).replace(
            b"bulk.1@", f"bulk.{start + i}.{wave}@".encode()
        )
        for i in range(count)
    ]


def count(council: Council, model: type, *where: object) -> int:
    with council.db() as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()


def kinds_sent(council: Council) -> dict[str, int]:
    with council.db() as session:
        rows = session.exec(select(OutboxMessage.kind, func.count()).group_by(OutboxMessage.kind))
        return dict(rows.all())


def floods_waiting(council: Council) -> int:
    return count(council, QuarantineItem, QuarantineItem.reason_code == "flood")


@pytest.fixture
def council(tmp_path: Path, engine: Engine) -> Council:
    return build_council(tmp_path, engine)


# --- the rule ---------------------------------------------------------------------------


LIMITS = (Window(HOUR, 20), Window(DAY, 60))


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((0, 0), None),
        ((19, 59), None),
        ((20, 20), "20 in the last hour (the limit is 20)"),
        ((5, 60), "60 in the last 24 hours (the limit is 60)"),
        ((25, 70), "25 in the last hour (the limit is 20)"),
    ],
)
def test_a_limit_is_reached_when_a_window_holds_as_many_as_it_allows(
    counts: tuple[int, int], expected: str | None
) -> None:
    assert reached(LIMITS, counts) == expected


def test_no_window_allowing_nothing_lets_anything_through() -> None:
    assert reached((Window(DAY, 0),), (0,)) == "0 in the last 24 hours (the limit is 0)"


@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        ((19, 59), None),
        ((20, 20), "20 in the last hour (the limit is 20)"),
        ((3, 60), "60 in the last 24 hours (the limit is 60)"),
    ],
)
def test_a_new_case_beyond_the_limit_is_held_as_a_flood(
    counts: tuple[int, int], reason: str | None
) -> None:
    sender = parse(fixture_bytes(FLOOD)).from_address or ""
    new = OpenCase(member_id=1, submitter_id=2, service_area="Highways", directorate=None)
    decided = floods.hold(new, LIMITS, counts, sender)
    if reason is None:
        assert decided is new
    else:
        assert decided == HoldFlood(
            new,
            f"too many new cases from {JANE}: {reason}; a coordinator can accept it to open "
            "its case",
        )


# --- a forged member flood ----------------------------------------------------------------


def test_a_forged_burst_of_1000_opens_20_cases_and_tells_coordinators_once(
    council: Council,
) -> None:
    report = council.deliver(*burst(1000), at=FIXED_NOW)
    assert (report.cases, report.quarantined, report.failed) == (20, 980, 0)
    assert count(council, Case) == 20
    assert floods_waiting(council) == 980
    mail = council.new_mail()
    assert kinds_sent(council) == {"acknowledgement": 20, "flood_notice": 1}
    [notice] = [m for m in mail if recipients(m) == [SUPPORT]]
    assert notice["Subject"] == "Mail held: too many new enquiries from Cllr Jane Smith"
    body = " ".join(text_of(notice).split())
    assert "too many new cases from cllr.jane.smith@example.gov.uk: 20 in the last hour" in body
    assert "mailbridge quarantine accept ID" in body
    assert "pothole" not in body.lower()  # nothing of the forged email's own text

    # A restart (new services on the same database): more of the same flood, no new notice.
    again = Council(make_services(council.inbox.parent, council.engine), council.seen)
    report = again.deliver(*burst(5, start=1000), at=FIXED_NOW + timedelta(minutes=5))
    assert (report.cases, report.quarantined) == (0, 5)
    assert again.new_mail() == []
    assert count(council, ScheduledSend, ScheduledSend.kind == "flood_notice") == 1


def test_new_cases_opened_earlier_in_the_same_batch_count(council: Council) -> None:
    outcomes = Processor(council.services).process_batch([(raw, FIXED_NOW) for raw in burst(25)])
    assert [type(o) for o in outcomes] == [CaseOpened] * 20 + [Quarantined] * 5
    assert {o.code for o in outcomes if isinstance(o, Quarantined)} == {"flood"}
    assert kinds_sent(council) == {"acknowledgement": 20, "flood_notice": 1}


def test_the_day_limit_holds_across_hours_with_one_notice_a_day(council: Council) -> None:
    """20 an hour, 60 a day: a flood that comes back every 90 minutes opens 20 cases each
    time until the day's 60; the coordinators hear of it once that day, and again the next."""
    opened = []
    for n, hours in enumerate((0, 1.5, 3, 4.5)):
        moment = FIXED_NOW + timedelta(hours=hours)
        with clock_at(moment):
            report = council.deliver(*burst(25, start=100 * n), at=moment)
        opened.append(report.cases)
    assert opened == [20, 20, 20, 0]
    assert floods_waiting(council) == 5 + 5 + 5 + 25
    assert kinds_sent(council) == {"acknowledgement": 60, "flood_notice": 1}

    # Next day, 24 hours after the first wave: room for 20 again, and a notice for the new day.
    moment = FIXED_NOW + timedelta(days=1, minutes=1)
    with clock_at(moment):
        report = council.deliver(*burst(25, start=1000), at=moment)
    assert report.cases == 20
    assert kinds_sent(council) == {"acknowledgement": 80, "flood_notice": 2}


def test_the_limit_counts_the_person_not_the_address(tmp_path: Path, engine: Engine) -> None:
    """Jane's second address shares her count; her delegate, writing for her, has his own."""
    council = build_council(tmp_path, engine, limits={"new_cases_per_sender_per_hour": 2})
    assert council.deliver(*burst(2), at=FIXED_NOW).cases == 2
    report = council.deliver(*burst(1, start=10, sender=JANE_HOME), at=FIXED_NOW)
    assert (report.cases, report.quarantined) == (0, 1)
    [held] = council.quarantined()
    assert held.sender == JANE_HOME and held.reason_code == "flood"
    report = council.deliver(*burst(2, start=20, sender=TOM), at=FIXED_NOW)
    assert (report.cases, report.quarantined) == (2, 0)
    with council.db() as session:
        submitters = session.exec(select(Case.submitter_id)).all()
    jane, tom = council.person_id(JANE), council.person_id(TOM)
    assert sorted(submitters) == sorted([jane, jane, tom, tom])


def test_a_coordinator_accepting_a_flood_item_opens_its_case(council: Council) -> None:
    council.deliver(*burst(21), at=FIXED_NOW)
    council.new_mail()
    [held] = council.quarantined()
    outcome = accept_quarantined(council.services, held.id or 0, actor=SUPPORT)
    assert isinstance(outcome, CaseOpened)
    council.run()
    [ack] = council.new_mail()
    assert recipients(ack) == [JANE]
    assert outcome.reference in ack["Subject"]
    assert council.quarantined() == []
    with council.db() as session:
        status = session.exec(select(QuarantineItem.status)).one()
    assert status == "accepted"
    [event] = council.events(outcome.reference, "quarantine_accepted")
    assert event.detail == (
        f"quarantined message {held.id} from {JANE} accepted by a coordinator (flood)"
    )
    assert event.actor == SUPPORT
    assert count(council, Case) == 21


# --- strangers ----------------------------------------------------------------------------


def test_the_51st_stranger_of_a_day_gets_no_reply(council: Council) -> None:
    report = council.deliver(*strangers(51), at=FIXED_NOW)
    assert report.quarantined == 51
    assert count(council, QuarantineItem, QuarantineItem.reason_code == "unknown_sender") == 51
    mail = council.new_mail()
    assert len(mail) == 50
    answered = {recipients(m)[0] for m in mail}
    assert len(answered) == 50 and answered < {f"victim{i}@example.org" for i in range(51)}
    for reply in mail:
        assert "evil.example" not in reply.as_string()

    # A restart, later the same day: still none, and the first stranger's own limit holds.
    again = Council(make_services(council.inbox.parent, council.engine), council.seen)
    with clock_at(FIXED_NOW + timedelta(hours=3)):
        report = again.deliver(*strangers(1, start=60), *strangers(1, wave=1), at=FIXED_NOW)
    assert report.quarantined == 2
    assert again.new_mail() == []
    assert count(council, AutoMail, AutoMail.kind == "stranger_reply") == 50

    # A day later there is room again.
    with clock_at(FIXED_NOW + timedelta(days=1, minutes=1)):
        again.deliver(*strangers(1, start=70))
    assert [recipients(m) for m in again.new_mail()] == [["victim70@example.org"]]


def test_the_command_line_accepts_a_flood_item_by_opening_its_case(
    tmp_path: Path, migrated_db_url: str
) -> None:
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine, limits={"new_cases_per_sender_per_hour": 1})
    config = write_council_config(
        tmp_path, migrated_db_url, "[limits]\nnew_cases_per_sender_per_hour = 1\n"
    )
    council.deliver(*burst(2), at=FIXED_NOW)
    [held] = council.quarantined()
    result = CliRunner().invoke(
        app, ["quarantine", "accept", str(held.id), "--config", str(config)], env={"COLUMNS": "300"}
    )
    assert ok_lines(result) == [
        f"message {held.id} opened case MQ-2026-00002; its acknowledgement is queued and goes "
        "out with the next pass of `mailbridge run`"
    ]
    assert count(council, Case) == 2
    engine.dispose()
