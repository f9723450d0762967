"""Schema migrations with Alembic; a new database is created and upgraded on first use."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from mailbridge.db import make_engine
from mailbridge.errors import MailbridgeError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision; return (before, after)."""
    before = current_revision(engine)
    try:
        command.upgrade(alembic_config(engine), "head")
    except Exception as exc:
        raise MailbridgeError(
            f"database upgrade failed: {str(exc).splitlines()[0]} "
            "(check [database] url and that the database is reachable)"
        ) from exc
    return before, current_revision(engine)


def ensure_database(url: str) -> Engine:
    """An engine on a database at the newest schema (upgraded if behind)."""
    engine = make_engine(url)
    try:
        if current_revision(engine) != head_revision(engine):
            upgrade(engine)
    except MailbridgeError:
        engine.dispose()
        raise
    except Exception as exc:
        engine.dispose()
        raise MailbridgeError(
            f"cannot open the database {url.split('@')[-1]}: {str(exc).splitlines()[0]}"
        ) from exc
    return engine
