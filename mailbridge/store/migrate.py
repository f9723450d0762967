"""Schema migrations with Alembic; a new database is created and upgraded on first use.

Alembic is imported only when a schema is behind: every `mailbridge` command opens the
database, and loading Alembic costs more than the rest of a short command's start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from mailbridge.errors import MailbridgeError, first_line
from mailbridge.store.db import make_engine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (tests/test_migrations.py holds it to Alembic's).
SCHEMA_HEAD = "0015"


def alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision; return (before, after)."""
    from alembic import command

    before = current_revision(engine)
    try:
        command.upgrade(alembic_config(engine), "head")
    except Exception as exc:
        raise MailbridgeError(
            f"database upgrade failed: {first_line(exc)} "
            "(check [database] url and that the database is reachable)"
        ) from exc
    return before, current_revision(engine)


def _at_head(engine: Engine) -> bool:
    """Whether the schema is at SCHEMA_HEAD, read without Alembic; a database with no
    version table yet is simply behind."""
    with engine.connect() as conn:
        try:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return list(versions) == [SCHEMA_HEAD]
        except DBAPIError:
            conn.rollback()
            # No version table (a new database), or the server is unreachable: Alembic
            # below either creates the schema or raises the error a person will read.
            return False


def ensure_database(url: str) -> Engine:
    """An engine on a database at the newest schema (upgraded if behind)."""
    engine = make_engine(url)
    try:
        if not _at_head(engine) and current_revision(engine) != head_revision(engine):
            upgrade(engine)
    except MailbridgeError:
        engine.dispose()
        raise
    except Exception as exc:
        engine.dispose()
        raise MailbridgeError(
            f"cannot open the database {url.split('@')[-1]}: {first_line(exc)}"
        ) from exc
    return engine
