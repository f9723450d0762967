"""The clock reads only the cases whose next stage moment has come (deadlines/stages.py):
for random histories of changes, every tick does exactly what the planner run over every
open case would do, as the clock did before it kept moments.

Each history opens cases by email and then, at random moments over two months (bank
holidays and weekends included, ticks minutes or days apart as an outage would leave
them), assigns and reassigns (with and without a reset deadline), pauses, resumes, extends,
changes service area and enquiry type, completes and reopens, and swaps the SLA rules for
others (a new config at a restart). Before each tick the planner over every case says which
keys are due; the tick must do exactly those: the same mails, the same stale stages.
"""

from __future__ import annotations

import contextlib
import random
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, update
from sqlmodel import Session, select

from mailbridge.cases import assignment, coordinator
from mailbridge.deadlines import plan, run, stages
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.models import Case, ScheduledSend, Setting, as_utc
from tests.factories import add_person, fixture_bytes, make_services
from tests.helpers.clock import FIXED_NOW, clock_at
from tests.helpers.council import ANN, PRIYA, REF, SAM, Council, build_council

NO_DIGESTS = {"coordinator_digest_at": "", "member_digest_at": "", "management_summary_at": ""}
SLAS: list[dict[str, Any]] = [
    {"rules": [{"service_area": "Highways", "reminder_working_days_before": [3, 1, 0]}]},
    {
        "reminder_working_days_before": [2, 0],
        "rules": [
            {"enquiry_type": "Complaint", "response_working_days": 5},
            {"service_area": "School Transport", "reminder_working_days_before": [4]},
        ],
        "escalation": [
            {"after_working_days": 0, "notify": ["lead"]},
            {"after_working_days": 2, "notify": ["lead", "directorate_head"]},
        ],
    },
]
ACTOR = "coordinator (test)"
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday
STEPS = 90


def gap(rng: random.Random) -> timedelta:
    """Minutes to days to the next step, at any time of day; now and then a week's outage."""
    most = rng.choices((90, 600, 3 * 1440, 8 * 1440), (4, 5, 3, 1))[0]
    return timedelta(minutes=rng.randint(1, most))


def planner_over_every_case(services: Services, now: datetime) -> set[str]:
    """The keys due at `now` as the clock found them before moments: every open case with a
    lead officer planned, minus the keys done, minus stale stages a done one settles."""
    with Session(services.engine) as session:
        ids = list(session.exec(select(Case.id)).all())
        clocks = run.case_clocks(session, ids)  # type: ignore[arg-type]
        done = set(session.exec(select(ScheduledSend.key)).all())
    items = [
        i
        for i in plan.due(services.config, services.calendar, now, clocks)
        if not isinstance(i, plan.DigestDue)
    ]
    settled = {i.case.case_id for i in items if not isinstance(i, plan.Stale) and i.key in done}
    return {
        i.key
        for i in items
        if i.key not in done and not (isinstance(i, plan.Stale) and i.case.case_id in settled)
    }


def enquiry(n: int, at: datetime) -> bytes:
    raw = fixture_bytes("member_new_enquiry_pothole.eml").decode()
    raw = raw.replace("<CAF1234567.pothole@", f"<history-{n}.pothole@")
    raw = raw.replace("Subject: Pothole on Mill Lane", f"Subject: Pothole {n} on Mill Lane")
    date = at.strftime("%a, %d %b %Y %H:%M:%S +0000")
    return raw.replace("Tue, 24 Nov 2026 09:14:55 +0000", date).encode()


# Every kind of change a history makes (restart: new SLA rules); each seed's history makes
# all of them, which the test checks.
KINDS = {
    "assign", "reassign", "reassign with reset", "pause", "resume", "extend", "fields",
    "complete", "reopen", "restart",
}  # fmt: skip
# Four histories per database, each making every kind of change (seeds 1, 3, 5 and 6 never
# reopen a case).
SEEDS = (0, 2, 4, 7)


def change(rng: random.Random, services: Services, ref: str, now: datetime) -> str:
    """One random change to one case, through the functions the doors call; its kind."""
    what = rng.choices(
        ("assign", "pause", "resume", "extend", "fields", "status"), (6, 1, 3, 2, 2, 1)
    )[0]
    if what == "assign":
        lead = rng.choice((PRIYA, SAM, ANN))
        also = rng.sample([o for o in (PRIYA, SAM, ANN) if o != lead], rng.randint(0, 1))
        with Session(services.engine) as session:
            has_lead = session.exec(select(Case.lead_officer_id).where(Case.reference == ref)).one()
        reset = has_lead is not None and rng.random() < 0.3
        assignment.assign(
            services, ref, lead, also, actor=ACTOR, reassign=has_lead is not None,
            reset_deadline=reset, now=now,
        )  # fmt: skip
        if has_lead is None:
            return "assign"
        return "reassign with reset" if reset else "reassign"
    elif what == "pause":
        coordinator.pause(services, ref, "awaiting information", actor=ACTOR, now=now)
    elif what == "resume":
        coordinator.resume(services, ref, actor=ACTOR, now=now)
    elif what == "extend":
        coordinator.extend(services, ref, rng.randint(1, 8), "a report", actor=ACTOR, now=now)
    elif what == "fields":
        coordinator.set_fields(
            services, ref, actor=ACTOR,
            service_area=rng.choice(("Highways", "School Transport", "Adult Social Care")),
            enquiry_type=rng.choice(("Complaint", "Enquiry", "")),
        )  # fmt: skip
    elif rng.random() < 0.5:
        coordinator.set_status(services, ref, "completed", actor=ACTOR)
        return "complete"
    else:
        coordinator.reopen(services, ref, actor=ACTOR)
        return "reopen"
    return what


@pytest.mark.parametrize("seed", SEEDS)
def test_every_tick_does_what_the_planner_over_every_case_would(
    tmp_path: Path, engine: Engine, seed: int
) -> None:
    rng = random.Random(seed)
    council = build_council(tmp_path, engine, schedule=NO_DIGESTS, sla=SLAS[0])
    refs: list[str] = []
    made: set[str] = set()  # the kinds of change that took effect
    now, ticks, mailed = START, 0, 0
    for step in range(STEPS):
        now += gap(rng)
        with clock_at(now):
            if len(refs) < 10 and (not refs or rng.random() < 0.2):
                report = council.deliver(enquiry(len(refs), now), at=now)
                refs.extend(report.references)
            elif rng.random() < 0.06:  # a restart with other SLA rules
                council.services = make_services(
                    tmp_path, engine, schedule=NO_DIGESTS, sla=SLAS[step % 2]
                )
                made.add("restart")
            else:
                # A refusal (pausing a completed case, say) changes nothing.
                with contextlib.suppress(UserError):
                    made.add(change(rng, council.services, rng.choice(refs), now))
            if rng.random() < 0.3:
                continue  # several changes between two ticks
            expected = planner_over_every_case(council.services, now)
            report = run.run_due(council.services, now)
        assert report.failed == [] and report.moved == [], (seed, step)
        got = {key for key, _ in report.done} | set(report.skipped) | set(report.taken)
        assert got == expected, (seed, step, now.isoformat())
        ticks += 1
        mailed += report.queued
    assert ticks > 20 and mailed > 0, "the history reached its deadlines"
    assert made == KINDS, f"seed {seed} never made: {sorted(KINDS - made)}"


# --- each change, one by one -------------------------------------------------------------
# Jane's case (REF) is due Tue 8 Dec 2026: reminders 2 and 0 working days before (Fri 4 and
# Tue 8 Dec), escalations 1 and 5 working days after (Wed 9 and Tue 15 Dec), from 09:00
# (GMT: UTC in December).


def nine(day: int) -> datetime:
    return datetime(2026, 12, day, 9, 0, tzinfo=UTC)


def moment(council: Council) -> datetime | None:
    with Session(council.engine) as session:
        at = session.exec(select(Case.next_stage_at).where(Case.reference == REF)).one()
    return None if at is None else as_utc(at)


@pytest.mark.usefixtures("fixed_clock")
def test_each_change_moves_the_moment_in_its_own_transaction(
    tmp_path: Path, engine: Engine
) -> None:
    council = build_council(
        tmp_path, engine, schedule=NO_DIGESTS,
        sla={"rules": [{"service_area": "School Transport", "reminder_working_days_before": [4]}]},
    )  # fmt: skip
    council.open_pothole_case()
    assert moment(council) is None, "no lead officer: nothing can be due"
    services, now = council.services, FIXED_NOW  # Tue 1 Dec 10:00
    council.assign(PRIYA)
    assert moment(council) == nine(4)
    coordinator.extend(services, REF, 3, "a contractor's report", actor=ACTOR, now=now)
    assert moment(council) == nine(9), "due Fri 11 Dec: its reminder 2 days before"
    coordinator.pause(services, REF, "awaiting information", actor=ACTOR, now=now)
    assert moment(council) is None, "paused"
    coordinator.resume(services, REF, actor=ACTOR, now=now)
    assert moment(council) == nine(9), "resumed the same day: no days added"
    coordinator.set_fields(services, REF, actor=ACTOR, service_area="School Transport")
    assert moment(council) == nine(7), "4 working days before Fri 11 Dec"
    coordinator.set_fields(services, REF, actor=ACTOR, service_area="Highways")
    coordinator.set_status(services, REF, "completed", actor=ACTOR)
    assert moment(council) is None, "completed"
    coordinator.reopen(services, REF, actor=ACTOR)
    assert moment(council) == nine(9)
    report = run.run_due(services, nine(9) + timedelta(minutes=5))
    assert report.done == [(f"reminder:{REF}:2:2026-12-11", "queued")]
    assert moment(council) == nine(11), "the tick moved it on to the reminder on the day"
    council.assign(SAM, reassign=True)
    assert moment(council) == nine(11), "its first stage not done, as before"
    # A restart with new rules: every running case is counted again by the next tick.
    council.services = make_services(
        tmp_path, engine, schedule=NO_DIGESTS, sla={"reminder_working_days_before": [1]}
    )
    later = nine(9) + timedelta(minutes=30)
    assert run.run_due(council.services, later).done == []
    assert moment(council) == nine(10), "1 working day before Fri 11 Dec, by the new rule"


def test_an_upgraded_database_has_its_running_cases_counted_by_the_first_tick(
    tmp_path: Path, db_url: str
) -> None:
    """Migration 0013 marks the running cases due (it cannot count working days: the rules
    are the council's config); the first tick plans them and sets each one's moment."""
    from alembic import command

    from mailbridge.store.db import make_engine
    from mailbridge.store.migrate import alembic_config

    engine = make_engine(db_url)
    try:
        command.upgrade(alembic_config(engine), "0012")
        jane = add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        priya = add_person(engine, "officer", "Priya Shah", PRIYA)
        received = datetime(2026, 11, 24, 9, 15, tzinfo=UTC)
        cases = {  # reference: (status, lead, paused)
            "MQ-2026-00001": ("in_progress", priya, None),
            "MQ-2026-00002": ("in_progress", priya, received),
            "MQ-2026-00003": ("new", None, None),
            "MQ-2026-00004": ("completed", priya, None),
        }
        with engine.begin() as conn:
            conn.execute(
                insert(Case.__table__),  # type: ignore[attr-defined]
                [
                    dict(reference=ref, prefix="MQ", year=2026, seq=n, subject="Pothole",
                         status=status, member_id=jane, submitter_id=jane,
                         lead_officer_id=lead, paused_at=paused, received_at=received,
                         acknowledge_due=date(2026, 11, 25), response_due=date(2026, 12, 8),
                         created_at=received, updated_at=received)
                    for n, (ref, (status, lead, paused)) in enumerate(cases.items(), start=1)
                ],
            )  # fmt: skip
        command.upgrade(alembic_config(engine), "head")
        with Session(engine) as session:
            marked = dict(session.exec(select(Case.reference, Case.next_stage_at)).all())
        assert {ref for ref, at in marked.items() if at is not None} == {"MQ-2026-00001"}
        assert as_utc(marked["MQ-2026-00001"]) == received
        services = make_services(tmp_path, engine, schedule=NO_DIGESTS)
        report = run.run_due(services, nine(4) + timedelta(minutes=5))
        assert report.done == [("reminder:MQ-2026-00001:2:2026-12-08", "queued")]
        with Session(engine) as session:
            first = session.exec(
                select(Case.next_stage_at).where(Case.reference == "MQ-2026-00001")
            ).one()
        assert first is not None and as_utc(first) == nine(8)
    finally:
        engine.dispose()


def test_two_processes_starting_at_once_both_take_a_new_basis(
    tmp_path: Path, engine: Engine, db_url: str
) -> None:
    """Three times over (a race is a matter of timing): two processes with a new basis at
    once; one marks the case due, the other finds it done, neither fails."""
    council = build_council(tmp_path, engine, schedule=NO_DIGESTS)
    council.assigned_pothole()
    basis = stages.Basis(council.services.config, council.services.calendar)
    for round in range(3):
        now = nine(2) - timedelta(hours=round)
        with transaction(engine) as session:
            session.execute(delete(Setting))
        start = threading.Barrier(2)
        failures: list[Exception] = []
        marked: list[int] = []

        def process(now: datetime, start: threading.Barrier, marked: list[int]) -> None:
            own = make_engine(db_url)
            try:
                start.wait(30)
                marked.append(stages.follow_basis(own, basis, now))
            except Exception as exc:  # noqa: BLE001 - what the test reports
                failures.append(exc)  # noqa: B023 - read below, in the same round
            finally:
                own.dispose()

        threads = [threading.Thread(target=process, args=(now, start, marked)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == [], round
        assert sorted(marked) == [0, 1], "one marks the case, the other finds it marked"
        assert moment(council) == now, "due at once, to be counted on the new basis"
        with Session(engine) as session:
            rows = session.exec(select(Setting)).all()
        assert [(r.name, r.value) for r in rows] == [(stages.BASIS, basis.fingerprint())]


@pytest.mark.usefixtures("fixed_clock")
def test_a_case_no_longer_running_is_not_read_again(tmp_path: Path, engine: Engine) -> None:
    """Completed by a statement that no session event saw (an administrator's SQL, say):
    the next tick finds nothing to do for it and stops reading it."""
    council = build_council(tmp_path, engine, schedule=NO_DIGESTS)
    council.assigned_pothole()
    with transaction(engine) as session:
        session.execute(update(Case).where(Case.reference == REF).values(status="completed"))
    assert moment(council) == nine(4)
    report = run.run_due(council.services, nine(4) + timedelta(minutes=5))
    assert report.done == [] and report.skipped == []
    assert moment(council) is None
