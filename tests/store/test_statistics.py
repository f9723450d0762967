"""SQLite's planner statistics: gathered by ANALYZE, which SQLite never runs by itself, once
a council day by the service (at a million cases the planner picks the wrong index for the
overdue list without them: bench/web.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from mailbridge.store.db import refresh_statistics
from mailbridge.store.migrate import ensure_database
from tests.factories import add_person, make_services
from tests.helpers.clock import FIXED_NOW
from tests.helpers.council import daemon_for


def gathered(engine: Engine) -> set[str]:
    """The indexes SQLite holds statistics for."""
    with engine.connect() as conn:
        names = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'"
        ).all()
        if not names:
            return set()
        return {row[0] for row in conn.exec_driver_sql("SELECT idx FROM sqlite_stat1").all()}


def test_refresh_gathers_the_case_indexes_statistics(tmp_path: Path) -> None:
    engine = ensure_database(f"sqlite:///{tmp_path / 'mailbridge.db'}")
    try:
        add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        assert gathered(engine) == set()
        refresh_statistics(engine)
        assert "ix_person_kind" in gathered(engine)
    finally:
        engine.dispose()


def test_the_service_gathers_them_once_a_council_day(tmp_path: Path) -> None:
    engine = ensure_database(f"sqlite:///{tmp_path / 'mailbridge.db'}")
    try:
        (tmp_path / "mailbox").mkdir()
        services = make_services(tmp_path, engine)
        add_person(engine, "member", "Cllr Jane Smith", "jane.smith@example.gov.uk")
        daemon = daemon_for(services)
        now = FIXED_NOW
        daemon.clock = lambda: now
        daemon._statistics()
        assert "ix_person_kind" in gathered(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM sqlite_stat1")
        now = FIXED_NOW + timedelta(hours=1)
        daemon._statistics()  # the same day: not again
        assert gathered(engine) == set()
        now = FIXED_NOW + timedelta(days=1)
        daemon._statistics()
        assert "ix_person_kind" in gathered(engine)
    finally:
        engine.dispose()
