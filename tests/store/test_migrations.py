"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel

import mailbridge.store.models  # noqa: F401 - registers the tables
from mailbridge.errors import MailbridgeError
from mailbridge.store import migrate
from mailbridge.store.db import make_engine
from mailbridge.store.migrate import (
    SCHEMA_HEAD,
    alembic_config,
    current_revision,
    ensure_database,
    head_revision,
    upgrade,
)


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


def _triggers(engine: Engine) -> set[tuple[str, str]]:
    """Each trigger's name and definition, as the database keeps them."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.exec_driver_sql(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal"
            )
        else:
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            )
        return {(name, " ".join(sql.split())) for name, sql in rows}


def test_the_migrations_make_the_triggers_the_models_make(
    request: pytest.FixtureRequest, tmp_path: Path, engine: Engine
) -> None:
    """Triggers are not in the models' metadata: a migration that lost one (a SQLite table
    rebuilt by batch_alter_table drops them) would pass the comparison above."""
    if engine.dialect.name == "postgresql":
        migrated = make_engine(request.getfixturevalue("pg_migrated_url"))
    else:
        migrated = ensure_database(f"sqlite:///{tmp_path / 'migrated.db'}")
    try:
        made = _triggers(engine)
        assert {name for name, _ in made} >= {"case_tally_update", "report_change_case_update"}
        assert _triggers(migrated) == made
    finally:
        migrated.dispose()


def test_schema_head_names_the_newest_migration(tmp_path: Path) -> None:
    # ensure_database trusts SCHEMA_HEAD to skip loading Alembic when nothing is behind.
    engine = ensure_database(f"sqlite:///{tmp_path / 'mb.db'}")
    try:
        assert head_revision(engine) == SCHEMA_HEAD == current_revision(engine)
    finally:
        engine.dispose()


def test_a_database_behind_is_upgraded_when_opened(db_url: str) -> None:
    engine = ensure_database(db_url)
    command.downgrade(alembic_config(engine), "0003")
    assert current_revision(engine) == "0003"
    engine.dispose()
    engine = ensure_database(db_url)
    try:
        assert current_revision(engine) == SCHEMA_HEAD
        with engine.connect() as conn:
            assert conn.exec_driver_sql('SELECT satisfaction_at FROM "case"').all() == []
            assert conn.exec_driver_sql("SELECT key FROM scheduled_send").all() == []
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
            # A case's commit is on disk before its mail may leave the inbox: FULL (2).
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        engine.dispose()


def test_the_delivery_process_marks_mail_sent_without_a_sync_per_email(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mb.db'}", durable=False)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_upgrading_a_database_with_cases_keeps_them_and_fills_the_new_columns(
    db_url: str,
) -> None:
    from alembic import command
    from sqlalchemy import text

    from mailbridge.store.db import make_engine
    from mailbridge.store.migrate import alembic_config

    engine = make_engine(db_url)
    try:
        command.upgrade(alembic_config(engine), "0001")  # the schema of the first release
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO person (id, kind, name, email, active, created_at, updated_at) "
                "VALUES (1, 'member', 'Cllr Jane Smith', 'jane@example.gov.uk', true, "
                ":t, :t)"
            ), {"t": "2026-11-24 09:00:00+00:00"})  # fmt: skip
            conn.execute(text(
                'INSERT INTO "case" (id, reference, prefix, year, seq, subject, body_text, '
                "status, member_id, submitter_id, received_at, acknowledge_due, response_due, "
                "created_at, updated_at) VALUES (1, 'MQ-2026-00001', 'MQ', 2026, 1, "
                "'Pothole', 'text', 'new', 1, 1, :t, '2026-11-25', '2026-12-08', :t, :t)"
            ), {"t": "2026-11-24 09:00:00+00:00"})  # fmt: skip
        upgrade(engine)
        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as conn:
            row = conn.execute(text(
                'SELECT reference, chase_count, reopened_count, sensitive, extended_due '
                'FROM "case"'
            )).one()  # fmt: skip
        assert tuple(row) == ("MQ-2026-00001", 0, 0, False, None)
    finally:
        engine.dispose()


def test_an_error_without_words_is_still_the_friendly_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised with no message is named by its type, not an IndexError."""
    url = f"sqlite:///{tmp_path / 'mb.db'}"
    engine = make_engine(url)

    def fails(*_: object) -> None:
        raise RuntimeError

    monkeypatch.setattr(command, "upgrade", fails)
    try:
        with pytest.raises(MailbridgeError, match=r"^database upgrade failed: RuntimeError \("):
            upgrade(engine)
    finally:
        engine.dispose()
    monkeypatch.setattr(migrate, "_at_head", fails)
    with pytest.raises(MailbridgeError, match=r"^cannot open the database .*mb\.db: RuntimeError$"):
        ensure_database(url)
