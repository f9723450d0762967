"""The cases' tally (store/tally.py): the database's own triggers keep a +1 / -1 row for
every insert, status change and delete of a case, so the dashboard's counts by status are
a sum over a few rows and still exactly a count of the cases."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlmodel import Session

from mailbridge.service.daemon import PassReport
from mailbridge.store import tally
from mailbridge.store.db import transaction
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Case, CaseTally
from tests.factories import add_person, make_services
from tests.helpers.council import daemon_for


def counted(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.execute(select(Case.status, func.count()).group_by(Case.status)).all()
    return {status: n for status, n in rows}


def summed(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return tally.by_status(session)


def add_cases(engine: Engine, member: int, statuses: list[str], first: int = 1) -> None:
    """Inserted by the columns named, so an older schema (before a later migration's
    columns) takes them too."""
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    with transaction(engine) as session:
        session.connection().execute(
            insert(Case.__table__),  # type: ignore[attr-defined]
            [
                dict(reference=f"MQ-2026-{n:05d}", prefix="MQ", year=2026, seq=n,
                     subject="Pothole", status=status, member_id=member, submitter_id=member,
                     received_at=at, acknowledge_due=date(2026, 11, 4),
                     response_due=date(2026, 11, 16), created_at=at, updated_at=at)
                for n, status in enumerate(statuses, start=first)
            ],
        )  # fmt: skip


def test_the_tally_follows_every_insert_change_and_delete(migrated_db_url: str) -> None:
    engine = ensure_database(migrated_db_url)
    try:
        member = add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        add_cases(engine, member, ["new"] * 5 + ["in_progress"] * 3 + ["completed"] * 2)
        assert summed(engine) == counted(engine) == {"new": 5, "in_progress": 3, "completed": 2}
        with transaction(engine) as session:
            session.execute(
                update(Case).where(Case.seq <= 2).values(status="in_progress")
            )  # new -> in progress
            session.execute(update(Case).where(Case.seq == 3).values(subject="Not a status"))
            session.execute(update(Case).where(Case.seq == 4).values(status="new"))  # no change
            session.execute(delete(Case).where(Case.seq == 10))
        assert summed(engine) == counted(engine) == {"new": 3, "in_progress": 5, "completed": 1}
        with Session(engine) as session:  # unchanged rows and no-change updates wrote nothing
            rows = session.execute(select(func.count()).select_from(CaseTally)).scalar()
        assert rows == 10 + 2 * 2 + 1  # the inserts, two status changes, one delete
    finally:
        engine.dispose()


def test_a_change_rolled_back_leaves_the_tally_as_it_was(migrated_db_url: str) -> None:
    engine = ensure_database(migrated_db_url)
    try:
        member = add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        add_cases(engine, member, ["new", "new"])
        try:
            with transaction(engine) as session:
                session.execute(update(Case).values(status="closed"))
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert summed(engine) == counted(engine) == {"new": 2}
    finally:
        engine.dispose()


def test_folding_keeps_the_sums_in_one_row_per_status(migrated_db_url: str) -> None:
    engine = ensure_database(migrated_db_url)
    try:
        member = add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        add_cases(engine, member, ["new"] * 4 + ["closed"])
        with transaction(engine) as session:
            session.execute(update(Case).values(status="completed"))
        before = summed(engine)
        assert tally.fold(engine) == 5 + 2 * 5  # every row written so far
        with Session(engine) as session:
            rows = session.execute(select(CaseTally.status, CaseTally.delta)).all()
        assert Counter(status for status, _ in rows) == Counter({"completed": 1})
        assert summed(engine) == before == counted(engine) == {"completed": 5}
        add_cases(engine, member, ["new"], first=6)  # and it goes on counting after a fold
        assert summed(engine) == counted(engine) == {"completed": 5, "new": 1}
    finally:
        engine.dispose()


def test_a_database_upgraded_with_cases_starts_its_tally_from_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Migration 0012 fills the tally from the cases already there."""
    from alembic import command

    from mailbridge.store.db import make_engine
    from mailbridge.store.migrate import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(alembic_config(engine), "0011")
        member = add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        add_cases(engine, member, ["new", "completed", "completed"])
        command.upgrade(alembic_config(engine), "head")
        assert summed(engine) == counted(engine) == {"new": 1, "completed": 2}
    finally:
        engine.dispose()


def test_the_service_folds_the_tally_at_each_tick(tmp_path: Path) -> None:
    engine = ensure_database(f"sqlite:///{tmp_path / 'mailbridge.db'}")
    try:
        (tmp_path / "mailbox").mkdir()
        daemon = daemon_for(make_services(tmp_path, engine))
        member = add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        add_cases(engine, member, ["new"] * 3)
        daemon.schedule_tick(PassReport(), force=True)
        with Session(engine) as session:
            rows = session.execute(select(CaseTally.status, CaseTally.delta)).all()
        assert rows == [("new", 3)]
    finally:
        engine.dispose()
