"""Attacks on the clock's next stage moments (deadlines/stages.py, run.py), each a defect
found in review (#18): a moment later than the planner's first stage is a stage never sent.

Jane's case (REF) is due Tue 8 Dec 2026: reminders 2 and 0 working days before (Fri 4 and
Tue 8 Dec), escalations 1 and 5 working days after (Wed 9 and Tue 15 Dec), from 09:00 (GMT:
UTC in December).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update

from mailbridge.cases import assignment, coordinator
from mailbridge.cases.records import find_case
from mailbridge.deadlines import clock, run, stages
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.models import Case, Setting
from tests.deadlines.test_stage_moments import moment, nine
from tests.factories import make_services
from tests.helpers.clock import FIXED_NOW
from tests.helpers.council import REF, SAM, build_council

NO_DIGESTS = {"coordinator_digest_at": "", "member_digest_at": "", "management_summary_at": ""}
ACTOR = "coordinator (test)"


@pytest.fixture
def pg_engine(pg_schema_url: str) -> Iterator[Engine]:
    """PostgreSQL only: SQLite's writers queue (BEGIN IMMEDIATE), so no two interleave."""
    engine = make_engine(pg_schema_url)
    yield engine
    engine.dispose()


@pytest.mark.usefixtures("fixed_clock")
def test_a_change_committed_meanwhile_is_counted_in_the_moment(
    tmp_path: Path, pg_engine: Engine
) -> None:
    """A change of enquiry type read the case while it was extended to Tue 22 Dec; a
    reassignment with --reset-deadline (due Tue 15 Dec) committed meanwhile. The moment
    must be counted on the row as it will be (due 15 Dec, a complaint's reminder 4 working
    days before: Wed 9 Dec), not on the deadline the change read (22 Dec: Wed 16 Dec,
    after the deadline: the reminder would never go)."""
    council = build_council(
        tmp_path, pg_engine, schedule=NO_DIGESTS,
        sla={"rules": [{"enquiry_type": "Complaint", "reminder_working_days_before": [4]}]},
    )  # fmt: skip
    council.assigned_pothole()
    services, now = council.services, FIXED_NOW  # Tue 1 Dec
    coordinator.extend(services, REF, 10, "a contractor's report", actor=ACTOR, now=now)
    with transaction(pg_engine) as session:
        case = find_case(session, REF)  # extended to 22 Dec, as read
        assignment.assign(
            services, REF, SAM, actor=ACTOR, reassign=True, reset_deadline=True, now=now
        )  # committed meanwhile: due 15 Dec, the extension cleared
        case.enquiry_type = "Complaint"
        session.flush()
        clock.follow_sla(session, services, case, actor=ACTOR, now=now)
    row = council.case()
    assert (row.response_due, row.extended_due, row.enquiry_type) == (
        date(2026, 12, 15),
        None,
        "Complaint",
    )
    assert moment(council) == nine(9)


@pytest.mark.usefixtures("fixed_clock")
def test_a_process_on_other_rules_leaves_the_moment_to_the_clocks_own(
    tmp_path: Path, engine: Engine, db_url: str
) -> None:
    """The web console still runs on yesterday's config (reminders 2 and 0 days before)
    while the daemon restarted on today's (4, 2 and 0) and its tick took them. An extension
    in the console must not count the moment on the console's rules: 2 days before Fri 11
    Dec is Wed 9 Dec, and the daemon's reminder 4 days before (Mon 7 Dec) would never go."""
    council = build_council(tmp_path, engine, schedule=NO_DIGESTS)
    council.assigned_pothole()
    web_engine = make_engine(db_url)
    try:
        web = make_services(tmp_path, web_engine, schedule=NO_DIGESTS)  # yesterday's rules
        council.services = make_services(
            tmp_path, engine, schedule=NO_DIGESTS, sla={"reminder_working_days_before": [4, 2, 0]}
        )
        assert run.run_due(council.services, FIXED_NOW).done == []  # took the new rules
        coordinator.extend(web, REF, 3, "a contractor's report", actor=ACTOR, now=FIXED_NOW)
    finally:
        web_engine.dispose()
    report = run.run_due(council.services, nine(7) + timedelta(minutes=5))
    assert report.done == [(f"reminder:{REF}:4:2026-12-11", "queued")]


def _waiting_on_a_lock(engine: Engine) -> bool:
    """Whether a session of the test's database waits on a lock (asked afresh each time:
    a transaction sees one snapshot of pg_stat_activity)."""
    with engine.connect() as probe:
        return bool(
            probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar()
        )


@pytest.mark.usefixtures("fixed_clock")
def test_a_change_waiting_on_a_new_basis_does_not_put_back_the_old_ones_moment(
    tmp_path: Path, pg_engine: Engine, pg_schema_url: str
) -> None:
    """The daemon, restarted on new rules (reminders 4, 2 and 0 days before), marks every
    running case due while the console, on the old rules (2 and 0), extends Jane's case: the
    console's flush waits on the case's lock and must then see the new basis, not put back
    the moment it would have counted on the old one (Wed 9 Dec, past the daemon's Mon 7)."""
    council = build_council(tmp_path, pg_engine, schedule=NO_DIGESTS)
    council.assigned_pothole()
    assert run.run_due(council.services, FIXED_NOW).done == []  # the clock's basis: the old
    web_engine = make_engine(pg_schema_url)
    web = make_services(tmp_path, web_engine, schedule=NO_DIGESTS)
    daemon = make_services(
        tmp_path, pg_engine, schedule=NO_DIGESTS, sla={"reminder_working_days_before": [4, 2, 0]}
    )
    failures: list[BaseException] = []

    def console() -> None:
        try:
            coordinator.extend(web, REF, 3, "a contractor's report", actor=ACTOR, now=FIXED_NOW)
        except BaseException as exc:  # noqa: BLE001 - what the test reports
            failures.append(exc)

    thread = threading.Thread(target=console)
    try:
        with pg_engine.connect() as conn:  # follow_basis's transaction, held open
            conn.execute(update(Case).values(next_stage_at=FIXED_NOW))
            conn.execute(
                update(Setting)
                .where(Setting.name == stages.BASIS)
                .values(value=stages.Basis(daemon.config, daemon.calendar).fingerprint())
            )
            thread.start()
            for _ in range(200):  # until the console's flush waits on the case's lock
                if _waiting_on_a_lock(pg_engine):
                    break
                threading.Event().wait(0.05)
            conn.commit()
        thread.join(30)
    finally:
        web_engine.dispose()
    assert failures == []
    report = run.run_due(daemon, nine(7) + timedelta(minutes=5))
    assert report.done == [(f"reminder:{REF}:4:2026-12-11", "queued")]


@pytest.mark.usefixtures("fixed_clock")
def test_processes_on_different_rules_taking_turns_are_said_in_the_log(
    tmp_path: Path, engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon on one config and `schedule run-due` from cron on another: each tick of
    either takes its own rules back and marks every running case due again (a recount of
    every running case, each time). The clock cannot tell which config is right, but the
    log says what is happening, once the rules come back to those before."""
    council = build_council(tmp_path, engine, schedule=NO_DIGESTS)
    council.assigned_pothole()
    cron_engine = make_engine(db_url)
    try:
        cron = make_services(
            tmp_path, cron_engine, schedule=NO_DIGESTS, sla={"reminder_working_days_before": [4]}
        )
        with caplog.at_level("INFO", logger=stages.__name__):
            for turn in range(4):
                run.run_due(
                    cron if turn % 2 else council.services, FIXED_NOW + timedelta(hours=turn)
                )
    finally:
        cron_engine.dispose()
    said = [r for r in caplog.records if r.name == stages.__name__]
    assert [(r.levelname, getattr(r, "cases", None)) for r in said] == [
        ("INFO", 1),
        ("INFO", 1),
        ("WARNING", 1),
        ("INFO", 1),
        ("WARNING", 1),
        ("INFO", 1),
    ], "every turn counts the case again; from the third, the log says why"


@pytest.mark.usefixtures("fixed_clock")
def test_schedule_show_on_new_rules_lists_what_the_next_tick_would_send(
    tmp_path: Path, engine: Engine
) -> None:
    """`schedule show` before the first tick on new rules (the README asks for it after a
    change): the moments were counted on the old rules (reminders 2 and 0 days before: Fri
    4 Dec), the next tick counts every running case again and sends the new rules'
    reminder 4 days before Tue 8 Dec (Wed 2 Dec); show must list it too."""
    council = build_council(tmp_path, engine, schedule=NO_DIGESTS)
    council.assigned_pothole()
    assert run.run_due(council.services, FIXED_NOW).done == []  # the old rules' moments
    new = make_services(
        tmp_path, engine, schedule=NO_DIGESTS, sla={"reminder_working_days_before": [4, 2, 0]}
    )
    at = nine(2) + timedelta(minutes=5)
    expected = [f"reminder:{REF}:4:2026-12-08"]
    assert [item.key for item in run.pending(new, at)] == expected
    assert [key for key, _ in run.run_due(new, at).done] == expected
