"""The satisfaction question: asked once per completion; a bare rating is recorded on the
case and reopens nothing; anything else follows the usual rules. Reports and `case show`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from mailbridge.cases import decisions
from mailbridge.cli.app import app
from mailbridge.mail import hygiene, replies
from mailbridge.mail.parsing import parse
from mailbridge.mail.replies import rating_of
from mailbridge.pipeline import routing
from mailbridge.pipeline.threading import Match
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Case, OutboxMessage
from tests.factories import fixture_bytes, ok_lines
from tests.helpers.council import (
    JANE,
    PRIYA,
    REF,
    Council,
    build_council,
    html_of,
    recipients,
    reply,
    text_of,
    write_council_config,
)
from tests.helpers.routing import CASE, COMPLETED_LONG_AGO, COMPLETED_RECENTLY, OWN, PEOPLE

# Completing, reopening and asking read the clock themselves: one fixed moment.
pytestmark = pytest.mark.usefixtures("fixed_clock")

# --- what counts as a rating (pure) ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("4", 4),
        ("4/5", 4),
        ("4 / 5", 4),
        ("4 out of 5", 4),
        ("5 - thank you", 5),
        ("5 \u2013 many thanks", 5),
        ("5 thanks", 5),
        ("5, thank you", 5),
        ("1.", 1),
        ("5!", 5),
        ("Rating: 3", 3),
        ("score 2", 2),
        ("5 stars", 5),
        ("4\n\nJane", 4),
        ("5 - thank you\n\nCllr Jane Smith\nBowden Division", 5),
        ("", None),
        ("0", None),
        ("6", None),
        ("10", None),
        ("4.5", None),
        ("4 weeks is far too long", None),
        ("5 - but the pothole came back after 2 days", None),
        ("3\nThe road is still broken and nobody has come back to me about it", None),
        ("4\na\nb\nc\nd", None),  # a rating does not come with a letter under it
        ("Thanks, 5", None),
        ("Any update on this?", None),
    ],
)
def test_rating_of_a_replys_new_text(text: str, rating: int | None) -> None:
    assert rating_of(text) == rating


# --- routing, on real replies ---------------------------------------------------------


@dataclass(frozen=True)
class Row:
    fixture: str
    case: object
    expected: type
    rating: int | None = None
    ask: bool = True


ROWS = [
    Row("member_rates_completed_case_iphone_4_of_5.eml", COMPLETED_RECENTLY,
        decisions.RecordSatisfaction, 4),
    Row("member_rates_completed_case_outlook_5_thank_you.eml", COMPLETED_RECENTLY,
        decisions.RecordSatisfaction, 5),
    Row("member_rates_completed_case_gmail_rating_colon_3.eml", COMPLETED_RECENTLY,
        decisions.RecordSatisfaction, 3),
    # Long after completion a rating is still an answer, never a new enquiry.
    Row("member_rates_completed_case_iphone_4_of_5.eml", COMPLETED_LONG_AGO,
        decisions.RecordSatisfaction, 4),
    # Words, not a rating: the usual rules (reopen within the window).
    Row("member_answers_question_with_a_complaint_not_a_rating.eml", COMPLETED_RECENTLY,
        decisions.Reopen),
    Row("member_reply_gmail_chaser.eml", COMPLETED_RECENTLY, decisions.Reopen),
    # An open case: a number is a chaser like any other mail.
    Row("member_rates_completed_case_iphone_4_of_5.eml", CASE, decisions.Chase),
    # The council does not ask: a number reopens as before.
    Row("member_rates_completed_case_iphone_4_of_5.eml", COMPLETED_RECENTLY, decisions.Reopen,
        ask=False),
]  # fmt: skip


@pytest.mark.parametrize(
    "row", ROWS, ids=lambda r: f"{r.fixture}:{r.expected.__name__}:{'ask' if r.ask else 'off'}"
)
def test_routing_a_members_reply_on_a_completed_case(row: Row) -> None:
    parsed = parse(fixture_bytes(row.fixture))
    text = replies.extract_reply(parsed.body_text)
    decision = routing.decide(
        parsed,
        PEOPLE["member"],
        hygiene.classify(parsed, OWN),
        Match(row.case, "signed"),
        replies.find_keywords(text),
        replies.is_status_request(parsed.subject, text),
        routing.Policy(reopen_working_days=5, satisfaction=row.ask),
        rating=rating_of(text),
    )
    assert type(decision) is row.expected, decision
    if row.rating is not None:
        assert isinstance(decision, decisions.RecordSatisfaction)
        assert decision.rating == row.rating and decision.case == row.case


def test_a_delegate_may_answer_for_the_member_and_a_stranger_may_not() -> None:
    parsed = parse(fixture_bytes("member_rates_completed_case_iphone_4_of_5.eml"))
    for who, expected in (
        ("delegate", decisions.RecordSatisfaction),
        ("other member", decisions.Quarantine),
    ):
        decision = routing.decide(
            parsed, PEOPLE[who], None, Match(replace(COMPLETED_RECENTLY), "signed"),
            replies.Keywords(), False, routing.Policy(satisfaction=True), rating=4,
        )  # fmt: skip
        assert type(decision) is expected, (who, decision)


# --- the conversation -----------------------------------------------------------------

PRIYA_ANSWER = "The pothole was filled this morning."


@pytest.fixture
def council(tmp_path: Path, engine: Engine) -> Council:
    return build_council(tmp_path, engine, satisfaction={"ask": True})


def completed(council: Council) -> dict[str, EmailMessage]:
    """REF answered by Priya: the response and the question went to Jane; by kind."""
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, PRIYA_ANSWER, name="Priya Shah"))
    mails = council.new_mail()
    return {"question" if "How did we do?" in str(m["Subject"]) else "response": m for m in mails}


def test_completion_asks_once_and_a_bare_rating_is_recorded_without_reopening(
    council: Council,
) -> None:
    sent = completed(council)
    assert set(sent) == {"response", "question"}
    assert "Response to your enquiry" in str(sent["response"]["Subject"])
    question = sent["question"]
    assert recipients(question) == [JANE]
    assert question["Subject"] == f"[{REF}] How did we do? Pothole on Mill Lane, Little Bowden"
    assert "reply to this email with a single number from 1 to 5" in text_of(question)
    assert "<table" in html_of(question) and "class=" not in html_of(question)
    with council.db() as session:
        keys = session.exec(
            OutboxMessage.__table__.select().where(  # type: ignore[attr-defined]
                OutboxMessage.kind == "satisfaction_question"
            )
        ).all()
    assert [k.idempotency_key for k in keys] == [f"satisfaction:{REF}:0"]

    report = council.deliver(reply(question, JANE, "4/5\n\nJane", style="gmail"))
    assert (report.updates, report.cases, report.quarantined) == (1, 0, 0)
    case = council.case()
    assert (case.status, case.satisfaction, case.reopened_count) == ("completed", 4, 0)
    assert case.satisfaction_at is not None
    [event] = council.events(kind="satisfaction_recorded")
    assert event.detail == "satisfaction 4 of 5 recorded" and event.actor == JANE
    assert council.new_mail() == []  # no acknowledgement, no notice, no question again

    # A second answer replaces the first, still without reopening.
    council.deliver(reply(question, JANE, "Rating: 5", style="gmail"))
    case = council.case()
    assert (case.status, case.satisfaction) == ("completed", 5)
    assert council.events(kind="satisfaction_recorded")[-1].detail == (
        "satisfaction 5 of 5 recorded (was 4)"
    )
    assert council.new_mail() == []


def test_words_on_the_question_reopen_and_the_next_completion_asks_again(
    council: Council,
) -> None:
    sent = completed(council)
    question = sent["question"]
    council.deliver(reply(question, JANE, "2 weeks on and the pothole is back. Please look again."))
    case = council.case()
    assert (case.status, case.satisfaction, case.reopened_count) == ("in_progress", None, 1)
    notices = council.new_mail()
    assert [recipients(m)[0] for m in notices] == [PRIYA]  # the reopened notice: staff only

    council.deliver(reply(notices[0], PRIYA, "Filled again, properly this time."))
    asked = [m for m in council.new_mail() if "How did we do?" in str(m["Subject"])]
    assert len(asked) == 1
    with council.db() as session:
        keys = sorted(
            k
            for k in session.exec(
                OutboxMessage.__table__.select().where(  # type: ignore[attr-defined]
                    OutboxMessage.kind == "satisfaction_question"
                )
            ).all()
        )
    assert sorted(k.idempotency_key for k in keys) == [
        f"satisfaction:{REF}:0",
        f"satisfaction:{REF}:1",
    ]


def test_no_question_when_the_council_does_not_ask(tmp_path: Path, engine: Engine) -> None:
    council = build_council(tmp_path, engine)
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, PRIYA_ANSWER))
    [response] = council.new_mail()
    assert "How did we do?" not in str(response["Subject"])
    assert council.case().status == "completed"


# --- the command line -----------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_council(tmp_path: Path, migrated_db_url: str) -> Iterator[tuple[Council, Path]]:
    engine = ensure_database(migrated_db_url)
    council = build_council(tmp_path, engine, satisfaction={"ask": True})
    config = write_council_config(tmp_path, migrated_db_url, "[satisfaction]\nask = true\n")
    council.open_pothole_case()
    yield council, config
    engine.dispose()


def test_case_status_completed_asks_and_case_show_prints_the_rating(
    cli_council: tuple[Council, Path],
) -> None:
    council, config = cli_council

    def cli(*args: str) -> list[str]:
        result = runner.invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "300"})
        return ok_lines(result)

    cli("case", "status", REF, "completed")
    council.run()
    [question] = council.new_mail()
    assert recipients(question) == [JANE]
    assert "How did we do?" in str(question["Subject"])
    assert not any("Satisfaction" in line for line in cli("case", "show", REF))

    council.deliver(reply(question, JANE, "5 - thank you"))
    assert council.case().satisfaction == 5
    [line] = [x for x in cli("case", "show", REF) if x.strip().startswith("Satisfaction")]
    answered = council.case().satisfaction_at
    assert answered is not None
    assert line.split(None, 1)[1] == f"5 of 5, answered {answered:%Y-%m-%d}"
    with council.db() as session:
        assert session.get(Case, council.case().id).status == "completed"  # type: ignore[union-attr]


# --- reports --------------------------------------------------------------------------


def test_report_rows_show_the_average_answer_and_how_many_answered(
    tmp_path: Path, engine: Engine
) -> None:
    from datetime import date

    from sqlmodel import Session

    from mailbridge.console.report_render import flat_headings, flat_rows
    from mailbridge.console.reports import build_report
    from tests.helpers.digests import Desk, seed_week

    desk = Desk(tmp_path, engine)
    seed_week(desk)  # E1 (Jane) rated 4, E3 (Jane) rated 2, E2 (Raj) unanswered
    with Session(engine) as session:
        report = build_report(
            session, desk.services.calendar, date(2026, 11, 23), date(2026, 11, 29),
            today=date(2026, 11, 30),
        )  # fmt: skip
    total = report.current.total
    assert (total.satisfaction, total.satisfaction_answers) == (3.0, 2)
    members = {g.member: (g.satisfaction, g.satisfaction_answers) for g in report.current.members}
    assert members == {"Cllr Jane Smith": (3.0, 2), "Cllr Raj Patel": (None, 0)}
    headings = flat_headings(report)
    rows = {row[1]: dict(zip(headings, row, strict=True)) for row in flat_rows(report)}
    assert rows["total"]["Average satisfaction (1-5)"] == 3.0
    assert rows["total"]["Satisfaction answers"] == 2
