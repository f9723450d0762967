"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import mailbridge.models  # noqa: F401 - registers the tables
from mailbridge.migrate import current_revision, ensure_database, head_revision, upgrade


def test_upgrade_from_empty_matches_the_models(db_url: str) -> None:
    engine = ensure_database(db_url)
    try:
        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == [], f"models changed without a migration: {diff}"
        assert upgrade(engine)[0] == upgrade(engine)[1]  # a second upgrade changes nothing
    finally:
        engine.dispose()


def test_new_sqlite_database_is_created_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "mailbridge.db"
    engine = ensure_database(f"sqlite:///{path}")
    engine.dispose()
    assert path.exists()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = ensure_database(f"sqlite:///{tmp_path / 'mb.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
