"""The first tick after an upgrade or a long outage: a backlog of running cases, every one
due (migration 0013 marks them so), dealt with 200 cases to a transaction; killed in the
middle of a batch, the next run carries on without sending anything twice, and the end is
what the planner over every case said was due.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert
from sqlmodel import Session, select

from mailbridge.config import Config
from mailbridge.deadlines import run
from mailbridge.services import Services
from mailbridge.store.db import make_engine
from mailbridge.store.models import Case, CaseOfficer, OutboxMessage, ScheduledSend
from tests.deadlines.test_stage_moments import NO_DIGESTS, planner_over_every_case
from tests.factories import add_person, make_services

CASES = 500  # three batches
NOW = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)  # Wed 9 Dec 2026, 10:00 GMT


def backlog(services: Services) -> None:
    """CASES running cases, as an upgrade leaves them: due at once, deadlines spread over
    the fortnight around NOW (so reminders, escalations and stale stages all come up)."""
    engine = services.engine
    jane = add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
    priya = add_person(engine, "officer", "Priya Shah", "priya.shah@example.gov.uk")
    received = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for n in range(1, CASES + 1):
        due = date(2026, 12, 1) + timedelta(days=n % 14)
        rows.append(
            dict(reference=f"MQ-2026-{n:05d}", prefix="MQ", year=2026, seq=n,
                 subject="Pothole", status="in_progress", member_id=jane, submitter_id=jane,
                 lead_officer_id=priya, service_area="Highways", received_at=received,
                 acknowledge_due=date(2026, 11, 23), response_due=due, next_stage_at=received,
                 created_at=received, updated_at=received)
        )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Case.__table__), rows)  # type: ignore[attr-defined]
        ids = conn.execute(select(Case.id)).scalars().all()
        conn.execute(
            insert(CaseOfficer.__table__),  # type: ignore[attr-defined]
            [
                {"case_id": i, "person_id": priya, "role": "lead", "assigned_at": received}
                for i in ids
            ],
        )


def _killed_in_its_second_batch(url: str, config: Config, ready: Any) -> None:
    """The tick in a process of its own; in its second batch it says so and waits to die."""
    services = Services.build(config, make_engine(url))
    done = 0
    real = run._escalate

    def escalate(*args: Any) -> str:
        nonlocal done
        done += 1
        if done == 250:  # well into the second batch, nothing of it committed
            ready.set()
            time.sleep(600)
        return real(*args)

    run._escalate = escalate  # type: ignore[assignment]
    run.run_due(services, NOW)


def counts(services: Services) -> tuple[int, int, int]:
    with Session(services.engine) as session:
        keys = session.exec(select(func.count()).select_from(ScheduledSend)).one()
        mails = session.exec(
            select(func.count(), func.count(func.distinct(OutboxMessage.idempotency_key))).where(
                OutboxMessage.kind.in_(("reminder", "escalation"))  # type: ignore[attr-defined]
            )
        ).one()
    return keys, *mails


def test_a_backlog_killed_mid_batch_carries_on_without_doubles(
    tmp_path: Path, migrated_db_url: str
) -> None:
    services = make_services(tmp_path, make_engine(migrated_db_url), schedule=NO_DIGESTS)
    backlog(services)
    expected = planner_over_every_case(services, NOW)
    assert len(expected) > 2 * CASES, "stale stages and mail for every case"
    services.engine.dispose()  # no pooled connection may cross into the child
    ready = multiprocessing.get_context("fork").Event()
    child = multiprocessing.get_context("fork").Process(
        target=_killed_in_its_second_batch, args=(migrated_db_url, services.config, ready)
    )
    child.start()
    try:
        assert ready.wait(120), "the tick never reached its second batch"
    finally:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(10)
    keys, mails, distinct = counts(services)
    assert 0 < keys < len(expected) and mails == distinct, "the first batch alone, committed"
    report = run.run_due(services, NOW + timedelta(minutes=1))
    assert report.failed == [] and report.moved == []
    keys, mails, distinct = counts(services)
    with Session(services.engine) as session:
        done = set(session.exec(select(ScheduledSend.key)).all())
        due_left = session.exec(select(func.count()).where(Case.next_stage_at <= NOW)).one()
    assert done == expected and keys == len(expected)
    with_mail = {key.split(":")[1] for key in expected}
    assert mails == distinct == len(with_mail), "one mail per case due: its latest stage, once"
    assert due_left == 0
    assert run.run_due(services, NOW + timedelta(minutes=2)).done == []


def test_the_services_tick_takes_at_most_its_limit_of_mails(
    tmp_path: Path, migrated_db_url: str
) -> None:
    services = make_services(tmp_path, make_engine(migrated_db_url), schedule=NO_DIGESTS)
    backlog(services)
    expected = planner_over_every_case(services, NOW)
    sent: list[int] = []
    for minute in range(4):
        report = run.run_due(services, NOW + timedelta(minutes=minute), limit=150)
        assert report.failed == []
        sent.append(report.queued)
    mail = len({key.split(":")[1] for key in expected})  # one per case due
    assert mail > 300 and sent == [min(150, max(0, mail - 150 * n)) for n in range(4)]
    with Session(services.engine) as session:
        done = set(session.exec(select(ScheduledSend.key)).all())
    assert done == expected
