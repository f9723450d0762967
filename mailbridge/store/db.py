"""Engines and sessions for SQLite (the embedded default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on, and every writing transaction starts with
BEGIN IMMEDIATE so two writers queue on the lock instead of failing mid-transaction.
Commits are synced to disk (synchronous=FULL) before they return: mail leaves the inbox
once its case is committed, so the commit must survive a power cut too. Only the delivery
process, whose commits merely mark mail sent, skips the sync (`durable=False`): losing such a
mark to a power cut means one email sent again with the same Message-ID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Engine, Insert, Table, create_engine, event
from sqlmodel import Session, SQLModel

from mailbridge.config import shown_url
from mailbridge.errors import MailbridgeError
from mailbridge.files import private_file, private_folder


def scrub(engine: Engine) -> bool:
    """Empty SQLite's write-ahead log into the database, whose freed space secure_delete
    has zeroed, so what was just erased is in no file; False when a reader kept part of the
    log (its old pages are overwritten by the next writes). PostgreSQL: nothing to do here
    (docs/data-protection.md says what VACUUM does)."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    return not busy


def refresh_statistics(engine: Engine) -> None:
    """SQLite's query planner: the table sizes and index spreads it chooses plans by. SQLite
    keeps none until ANALYZE runs (at a million cases the planner guesses a list of overdue
    cases wrong by a factor of two without them; about a second to gather); PostgreSQL's
    autovacuum keeps its own."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect().execution_options(mailbridge_write=True) as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def make_engine(url: str, *, echo: bool = False, durable: bool = True) -> Engine:
    """Create an engine; for SQLite make the folder and set the pragmas we rely on."""
    synchronous = "FULL" if durable else "NORMAL"
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            private_folder(Path(path).parent)
            private_file(Path(path))
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            # Erased text is overwritten with zeros, not left in the file's free space
            # (privacy/erasure.py; `scrub` empties the write-ahead log after an erasure).
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            # Writers take the lock up front; readers start deferred and never wait on it.
            write = conn.get_execution_options().get("mailbridge_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, echo=echo, pool_pre_ping=True)
    raise MailbridgeError(f"unsupported database URL: {shown_url(url)}")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with Session(
        engine.execution_options(mailbridge_write=True), expire_on_commit=False
    ) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


class HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


Owner = TypeVar("Owner", bound=HasEngine)
P = ParamSpec("P")
R = TypeVar("R")


def action(
    change: Callable[Concatenate[Session, Owner, P], R],
) -> Callable[Concatenate[Owner, P], R]:
    """A person's action as one transaction of its own: committed when it returns, rolled back
    whole when it raises. The command line and the web console call the same function, so
    neither holds a transaction boundary of its own (docs/architecture.md, invariant 8)."""

    @wraps(change)
    def run(owner: Owner, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with transaction(owner.engine) as session:
            return change(session, owner, *args, **kwargs)

    return run


@cache
def _insert_statement(table: Table) -> Insert:
    return table.insert()


@cache
def insert_or_skip(
    table: Table, keys: tuple[str, ...], dialect: str, returning: str | None = None
) -> Insert:
    """INSERT ... ON CONFLICT (keys) DO NOTHING in the connection's dialect, built on first
    use: importing SQLAlchemy's PostgreSQL dialect costs ~20 ms of every start, which a
    SQLite deployment never needs."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).on_conflict_do_nothing(index_elements=list(keys))
    return statement.returning(table.c[returning]) if returning else statement


def insert_row(session: Session, model: type[SQLModel], **values: Any) -> int:
    """Insert one row through Core in the session's transaction and return its id.

    The hot path (a case per email) writes rows it never reads back: building ORM objects
    and flushing them cost several times more than the INSERT itself. Column defaults
    (timestamps, status) still apply, as they are Core defaults. Tables keyed by text
    (address_flag: the email address) have no id to return: 0, rather than int("a@b")
    raising and failing the whole message (every permanent bounce did).
    """
    table: Table = model.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(_insert_statement(table), values)
    key = result.inserted_primary_key
    return key[0] if key and isinstance(key[0], int) else 0


_LATER = "mailbridge.rows_later"


@contextmanager
def rows_later(session: Session) -> Iterator[None]:
    """Inside the block, `insert_later` rows wait and go in one statement per table when it
    ends (or at `flush_later`); an exception drops them with the transaction.

    Ingest writes two events and an outbox row per case and reads none of them back in
    the same batch: one executemany per table instead of 300 single INSERTs a batch.
    """
    session.info[_LATER] = {}
    try:
        yield
        flush_later(session)
    finally:
        session.info.pop(_LATER, None)


def insert_later(session: Session, model: type[SQLModel], **values: Any) -> None:
    """A row nobody reads back in this transaction: queued inside `rows_later`, else now."""
    pending: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] | None = session.info.get(
        _LATER
    )
    if pending is None:
        insert_row(session, model, **values)
        return
    table: Table = model.__table__  # type: ignore[attr-defined]
    pending.setdefault((table, tuple(values)), []).append(values)


def flush_later(session: Session) -> None:
    """Insert what waits; call it before a savepoint ends so its rows commit or go with it."""
    pending = session.info.get(_LATER)
    if not pending:
        return
    conn = session.connection()
    for (table, _), rows in pending.items():
        conn.execute(_insert_statement(table), rows)
    pending.clear()


def discard_later(session: Session) -> None:
    """Forget what waits (its savepoint was rolled back)."""
    pending = session.info.get(_LATER)
    if pending:
        pending.clear()


def create_schema(engine: Engine) -> None:
    """Create the tables directly (tests); production uses `upgrade` (Alembic)."""
    from sqlmodel import SQLModel

    import mailbridge.store.models  # noqa: F401 - registers the tables

    SQLModel.metadata.create_all(engine)
