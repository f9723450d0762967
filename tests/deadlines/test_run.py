"""Scheduled mail exactly once: across a restart, with two daemons on one database, and from
the command line to the outbox Maildir.

Jane's pothole enquiry (received Tue 24 Nov 2026 09:15) is due Tue 8 Dec 2026; assigned to
Priya, her reminder "2 working days before" is due on Fri 4 Dec from 09:00.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from typer.testing import CliRunner

from mailbridge.cli.app import app
from mailbridge.deadlines import digests, run
from mailbridge.deadlines.digests import DigestMail
from mailbridge.delivery.transports.factory import open_sender
from mailbridge.mailbox.maildir import MaildirSource
from mailbridge.service.daemon import Daemon
from mailbridge.services import Services
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Case, OutboxMessage, ReportMonth, ScheduledSend
from tests.factories import AREAS, ok_lines
from tests.helpers.council import (
    PRIYA,
    REF,
    SUPPORT,
    Council,
    build_council,
    daemon_for,
    html_of,
    recipients,
    text_of,
    write_council_config,
)

# The council is built and its mail delivered on the clock: one fixed moment (the
# schedule's own "now" is given to each call).
pytestmark = pytest.mark.usefixtures("fixed_clock")

LONDON = ZoneInfo("Europe/London")
DEADLINE = date(2026, 12, 8)
REMINDER_KEY = f"reminder:{REF}:2:{DEADLINE}"
CONTACT = "highways.manager@example.gov.uk"
HEAD = "director.environment@example.gov.uk"
runner = CliRunner()


def at(day: date, clock: str = "09:05") -> datetime:
    hour, minute = (int(p) for p in clock.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=LONDON).astimezone(UTC)


FRIDAY = at(date(2026, 12, 4))  # two working days before the deadline, 09:05


NO_DIGESTS = {"coordinator_digest_at": "", "member_digest_at": "", "management_summary_at": ""}


def assigned_council(tmp_path: Path, engine: Engine, **sections: Any) -> Council:
    """Jane's case assigned to Priya; the digests off unless a test sets [schedule] (these
    tests follow reminders and escalations; what digests say is test_digests.py's)."""
    sections.setdefault("schedule", NO_DIGESTS)
    council = build_council(tmp_path, engine, **sections)
    council.assigned_pothole()
    assert council.case().response_due == DEADLINE
    return council


def outbox_kinds(engine: Engine) -> list[tuple[str | None, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage.idempotency_key, OutboxMessage.kind).where(
                OutboxMessage.kind.in_(("reminder", "escalation", "test_digest"))  # type: ignore[attr-defined]
            )
        ).all()
    return [(k, kind) for k, kind in rows]


def sends(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {r.key: r.outcome for r in session.exec(select(ScheduledSend)).all()}


def test_reminder_sent_once_across_a_restart(tmp_path: Path, engine: Engine, db_url: str) -> None:
    council = assigned_council(tmp_path, engine)
    first = run.run_due(council.services, FRIDAY)
    assert first.done == [(REMINDER_KEY, "queued")]
    # A restart: new engine, new services, a later tick the same morning.
    fresh = make_engine(db_url)
    try:
        again = run.run_due(
            Services.build(council.services.config, fresh), at(date(2026, 12, 4), "11:40")
        )
    finally:
        fresh.dispose()
    assert again.done == [] and again.failed == []
    assert outbox_kinds(engine) == [(REMINDER_KEY, "reminder")]
    assert sends(engine)[REMINDER_KEY] == "queued"
    assert [e.detail for e in council.events(kind="reminder_sent")] == [
        "deadline 2026-12-08, 2 working days left"
    ]
    council.run()
    [mail] = council.new_mail()
    assert recipients(mail) == [PRIYA]
    assert str(mail["Subject"]).startswith(f"[{REF}] Reminder: reply due Tuesday 8 December 2026")
    assert "Working days left: 2" in text_of(mail)
    assert "keep MQ-2026-00001 in the subject" in text_of(mail)
    html = html_of(mail)
    assert "<table" in html and "<img" not in html and "<link" not in html


def test_nothing_out_of_hours_and_nothing_for_a_paused_case(tmp_path: Path, engine: Engine) -> None:
    council = assigned_council(tmp_path, engine)
    assert run.run_due(council.services, at(date(2026, 12, 4), "07:00")).done == []
    with transaction(engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        case.paused_at = FRIDAY
        session.add(case)
    report = run.run_due(council.services, FRIDAY)
    assert REMINDER_KEY not in dict(report.done)
    assert outbox_kinds(engine) == []


def test_escalation_tells_the_ladder_and_the_coordinators(tmp_path: Path, engine: Engine) -> None:
    areas = [{**a, "escalation_contact": CONTACT} if a["name"] == "Highways" else a for a in AREAS]
    council = assigned_council(
        tmp_path,
        engine,
        service_areas=areas,  # type: ignore[arg-type]
        directorates=[{"name": "Environment and Transport", "head_email": HEAD}],  # type: ignore[arg-type]
    )
    # Down from before the reminders until the first working day after the deadline.
    report = run.run_due(council.services, at(date(2026, 12, 9), "10:00"))
    assert (f"escalation:{REF}:1:{DEADLINE}", "queued") in report.done
    assert sorted(report.skipped) == sorted([REMINDER_KEY, f"reminder:{REF}:0:{DEADLINE}"])
    assert outbox_kinds(engine) == [(f"escalation:{REF}:1:{DEADLINE}", "escalation")]
    council.run()
    [mail] = council.new_mail()
    assert recipients(mail) == [PRIYA, CONTACT, SUPPORT]
    assert str(mail["Subject"]).startswith(f"[{REF}] Overdue by 1 working day:")
    text = text_of(mail)
    assert "1 working days after" not in text and 'step "1 working day after' in text
    assert CONTACT in text and SUPPORT in text
    later = run.run_due(council.services, at(date(2026, 12, 15), "09:30"))
    assert (f"escalation:{REF}:5:{DEADLINE}", "queued") in later.done
    council.run()
    [fifth] = council.new_mail()
    assert recipients(fifth) == [HEAD, SUPPORT]
    assert [e.kind for e in council.events(kind="escalated")] == ["escalated", "escalated"]


def test_a_case_whose_latest_stage_is_done_has_nothing_stale_left(
    tmp_path: Path, engine: Engine
) -> None:
    council = assigned_council(tmp_path, engine)
    morning = at(date(2026, 12, 9), "10:00")
    report = run.run_due(council.services, morning)
    assert (f"escalation:{REF}:1:{DEADLINE}", "queued") in report.done
    # Even were the skipped reminders' records gone, the sent escalation settles them: a
    # steady-state tick looks up one key per case, not every stage it ever had.
    with transaction(engine) as session:
        for key in report.skipped:
            session.delete(session.get(ScheduledSend, key))
    assert run.pending(council.services, at(date(2026, 12, 9), "11:00")) == []


def test_a_limit_leaves_the_rest_for_the_next_call(tmp_path: Path, engine: Engine) -> None:
    council = assigned_council(tmp_path, engine, schedule={})
    first = run.run_due(council.services, FRIDAY, limit=1)
    assert (first.done, first.left) == ([("digest:coordinators:2026-12-04", "queued")], 1)
    second = run.run_due(council.services, FRIDAY, limit=1)
    assert (second.done, second.left) == ([(REMINDER_KEY, "queued")], 0)
    assert run.run_due(council.services, FRIDAY, limit=1).done == []


def test_a_case_extended_since_planning_is_left_to_the_next_tick(
    tmp_path: Path, engine: Engine
) -> None:
    council = assigned_council(tmp_path, engine, schedule={})
    [digest, reminder] = run.pending(council.services, FRIDAY)
    assert reminder.key == REMINDER_KEY
    with transaction(engine) as session:
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        case.extended_due = date(2026, 12, 15)
        session.add(case)
    assert run._do(council.services, reminder, FRIDAY) == "moved"
    assert REMINDER_KEY not in sends(engine) and outbox_kinds(engine) == []
    assert run.pending(council.services, FRIDAY) == [digest], "nothing due on the new date"


def test_one_failing_item_rolls_back_alone(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    council = assigned_council(tmp_path, engine, schedule={})

    def broken(*_: object) -> None:
        raise RuntimeError("digest builder broke")

    monkeypatch.setattr(digests, "coordinator_digest", broken)
    report = run.run_due(council.services, FRIDAY)
    assert report.failed == ["digest:coordinators:2026-12-04"]
    assert report.done == [(REMINDER_KEY, "queued")]
    assert "digest:coordinators:2026-12-04" not in sends(engine), "free to try again"
    monkeypatch.undo()
    retry = run.run_due(council.services, FRIDAY)
    assert retry.done == [("digest:coordinators:2026-12-04", "queued")]


def test_digest_mail_queued_once_per_period(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "test_digest.subject.j2").write_text("Digest for {{ day }}")
    (overrides / "test_digest.txt.j2").write_text("{{ count }} cases\n")
    council = build_council(tmp_path, engine, templates={"directory": str(overrides)})

    def digest(_session: Session, _services: Services, day: date) -> DigestMail:
        return DigestMail(
            key=f"digest:coordinators:{day}",
            kind="test_digest",
            to=(SUPPORT,),
            template="test_digest",
            context={"day": day.isoformat(), "count": 3},
        )

    monkeypatch.setattr(digests, "coordinator_digest", digest)
    for clock in ("08:29", "08:30", "08:31", "16:00"):
        run.run_due(council.services, at(date(2026, 12, 4), clock))
    assert outbox_kinds(engine) == [("digest:coordinators:2026-12-04", "test_digest")]
    assert sends(engine)["digest:coordinators:2026-12-04"] == "queued"


def test_two_daemons_racing_on_one_key_send_once(
    tmp_path: Path, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemon A claims the reminder and holds its transaction open; daemon B, on its own
    engine, plans the same key (not done yet), waits on the unique key, and then does
    nothing once A commits."""
    council = assigned_council(tmp_path, engine)
    claimed, go = threading.Event(), threading.Event()
    real_remind = run._remind

    def slow_remind(session: Session, services: Services, item: run.Reminder) -> str:
        outcome = real_remind(session, services, item)
        if threading.current_thread().name == "daemon-a":
            claimed.set()
            assert go.wait(30)
        return outcome

    monkeypatch.setattr(run, "_remind", slow_remind)
    config = council.services.config
    reports: dict[str, run.RunReport] = {}

    def daemon(name: str) -> None:
        eng = make_engine(db_url)
        try:
            reports[name] = run.run_due(Services.build(config, eng), FRIDAY)
        finally:
            eng.dispose()

    a = threading.Thread(target=daemon, args=("a",), name="daemon-a")
    b = threading.Thread(target=daemon, args=("b",), name="daemon-b")
    a.start()
    assert claimed.wait(30)
    b.start()
    b.join(1.0)
    assert b.is_alive(), "B waits on A's uncommitted key"
    go.set()
    a.join(30)
    b.join(30)
    assert not a.is_alive() and not b.is_alive()
    assert (REMINDER_KEY, "queued") in reports["a"].done
    assert REMINDER_KEY in reports["b"].taken and reports["b"].done == []
    assert reports["a"].failed == reports["b"].failed == []
    assert outbox_kinds(engine) == [(REMINDER_KEY, "reminder")]


def test_real_digests_and_an_escalation_once_with_two_daemons_and_a_restart(
    tmp_path: Path, engine: Engine, db_url: str
) -> None:
    """Monday 14 December, 09:05: the coordinators' digest, Jane's weekly digest, the
    management summary (her case is overdue) and the +1 escalation are all due. Two daemons
    start at once on their own engines, then one restarts later that morning: each email is
    in the outbox once."""
    council = assigned_council(
        tmp_path,
        engine,
        schedule={},
        directorates=[{"name": "Environment and Transport", "head_email": HEAD}],  # type: ignore[arg-type]
    )
    config = council.services.config
    monday = at(date(2026, 12, 14))
    start = threading.Barrier(2)
    reports: list[run.RunReport] = []

    def daemon(now: datetime, wait: bool) -> None:
        eng = make_engine(db_url)
        try:
            if wait:
                start.wait(30)
            reports.append(run.run_due(Services.build(config, eng), now))
        finally:
            eng.dispose()

    racers = [threading.Thread(target=daemon, args=(monday, True)) for _ in range(2)]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join(60)
    daemon(at(date(2026, 12, 14), "11:30"), False)  # a restart, later the same morning
    assert all(not r.failed for r in reports), [r.failed for r in reports]
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage.idempotency_key, OutboxMessage.kind)).all()
    scheduled = [(key, kind) for key, kind in rows if kind != "acknowledgement" and key]
    keys = [key for key, _ in scheduled]
    assert len(keys) == len(set(keys)), "no email queued twice"
    assert sorted({kind for _, kind in scheduled} - {"assignment", "assigned"}) == [
        "coordinator_digest", "escalation", "management_summary", "member_digest",
    ]  # fmt: skip
    assert sum(r.queued for r in reports) == 4 and reports[-1].queued == 0


def schedule_cli(config: Path, now: str, *args: str) -> list[str]:
    """`mailbridge schedule ARGS` at a set moment, its output lines (exit 0 asserted)."""
    result = runner.invoke(
        app, ["schedule", *args, "--config", str(config), "--now", now], env={"COLUMNS": "300"}
    )
    return ok_lines(result)


def test_cli_run_due_delivers_the_reminder_once(tmp_path: Path, migrated_db_url: str) -> None:
    engine = ensure_database(migrated_db_url)
    try:
        council = assigned_council(tmp_path, engine)
        config = write_council_config(tmp_path, migrated_db_url)

        def cli(*args: str) -> list[str]:
            return schedule_cli(config, "2026-12-04T09:05", *args)

        assert cli("show") == [
            "digest      coordinator_digest for 2026-12-04",
            f"reminder    {REF}  2 working days left  to {PRIYA}",
        ]
        first = cli("run-due")
        assert f"queued          {REMINDER_KEY}" in first
        assert "queued          digest:coordinators:2026-12-04" in first
        assert first[-1].endswith("2 emails sent, 0 to retry, 0 failed")
        [mail, digest] = sorted(council.new_mail(), key=lambda m: PRIYA not in recipients(m))
        assert recipients(mail) == [PRIYA] and recipients(digest) == [SUPPORT]
        assert REF in text_of(digest)  # due within 2 working days
        assert f"[{REF}]" in str(mail["Subject"])
        assert cli("run-due")[-1].startswith("0 queued, 0 withheld, 0 with nothing to send")
        assert council.new_mail() == []
        assert cli("show") == ["nothing is due now"]
        with Session(engine) as session:
            count = session.exec(
                select(func.count()).where(OutboxMessage.idempotency_key == REMINDER_KEY)
            ).one()
        assert count == 1
    finally:
        engine.dispose()


def test_cli_run_due_delivers_before_counting_the_reports_months(
    tmp_path: Path, migrated_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's months are only counted ahead of time (console/report_months.py): a
    failure there (a lock held too long, a bug) must not keep back the mail just queued,
    which a later run-due, with nothing newly due, would not deliver."""
    from mailbridge.console import report_months

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("report months failed")

    monkeypatch.setattr(report_months, "refresh", broken)
    engine = ensure_database(migrated_db_url)
    try:
        council = assigned_council(tmp_path, engine)
        config = write_council_config(tmp_path, migrated_db_url)
        result = runner.invoke(
            app,
            ["schedule", "run-due", "--config", str(config), "--now", "2026-12-04T09:05"],
            env={"COLUMNS": "300"},
        )
        assert result.exit_code != 0  # the failure is still said
        assert len(council.new_mail()) == 2  # the reminder and the digest, sent first
    finally:
        engine.dispose()


def test_cli_counts_missed_stages_and_lists_them_only_when_asked(
    tmp_path: Path, migrated_db_url: str
) -> None:
    engine = ensure_database(migrated_db_url)
    try:
        assigned_council(tmp_path, engine)
        config = write_council_config(tmp_path, migrated_db_url)

        def cli(*args: str) -> list[str]:
            return schedule_cli(config, "2026-12-09T10:00", *args)

        # Down from before the reminders until the day after the deadline.
        shown = cli("show")
        assert f"escalation  {REF}  1 working days over  to {PRIYA}, {SUPPORT}" in shown
        assert shown[-1] == (
            "and 2 earlier stage(s) whose time passed unsent: recorded as skipped, never "
            "mailed (--all lists them)"
        )
        every = cli("show", "--all")
        assert sum(line.startswith("skip        ") for line in every) == 2
        done = cli("run-due", "--no-deliver")
        assert not any(line.startswith("skipped") for line in done)
        assert ", 2 skipped, " in done[-1]
    finally:
        engine.dispose()


def test_cli_bad_now_is_one_line(tmp_path: Path, db_url: str) -> None:
    config = write_council_config(tmp_path, db_url)
    result = runner.invoke(
        app, ["schedule", "show", "--config", str(config), "--now", "Friday morning"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "error: --now 'Friday morning' is not a moment: use e.g. 2026-12-04T09:05"
    ]


# --- in the daemon ----------------------------------------------------------------------


def test_run_once_sends_the_due_reminder_after_ingest(tmp_path: Path, engine: Engine) -> None:
    council = assigned_council(tmp_path, engine)
    daemon = daemon_for(council.services)
    daemon.clock = lambda: FRIDAY
    report = daemon.run_once()
    assert report.scheduled == 1 and report.sent == 1
    [mail] = council.new_mail()
    assert recipients(mail) == [PRIYA] and f"[{REF}]" in str(mail["Subject"])
    daemon.run_once()
    assert council.new_mail() == [], "the next run finds the key done"


def test_a_tick_counts_the_reports_past_months(tmp_path: Path, engine: Engine) -> None:
    council = assigned_council(tmp_path, engine)
    month = council.case().received_at.astimezone(LONDON).date().replace(day=1)
    daemon = daemon_for(council.services)
    daemon.clock = lambda: at((month + timedelta(days=40)).replace(day=5))  # the month after
    daemon.run_once()
    with Session(engine) as session:
        assert session.exec(select(ReportMonth.month)).all() == [month]


class IdleSource(MaildirSource):
    """A quiet mailbox that records how long the daemon waited on it, and stops it."""

    def __init__(self, root: Path, daemon: list[Daemon], waits: list[float]) -> None:
        super().__init__(root)
        self.daemon, self.waits = daemon, waits

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        if len(self.waits) == 3:
            self.daemon[0].stopping = True
        return False


def test_service_waits_for_mail_at_most_until_the_next_tick(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    council = build_council(
        tmp_path, engine, schedule={"tick_seconds": 5}, mailbox={"poll_seconds": 600}
    )
    ticks: list[datetime] = []
    monkeypatch.setattr(
        run,
        "run_due",
        lambda _services, now, limit=None: ticks.append(now) or run.RunReport(),
    )
    holder: list[Daemon] = []
    waits: list[float] = []
    daemon = Daemon(
        council.services,
        IdleSource(council.inbox, holder, waits),
        lambda: open_sender(council.services.config),
    )
    holder.append(daemon)
    daemon._serve(council.services.config.mailbox.poll_seconds)
    assert len(waits) == 3 and all(0 <= w <= 5 for w in waits), waits
    assert len(ticks) == 1, "a tick at start-up; the next only once tick_seconds have passed"
