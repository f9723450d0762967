"""Database fixtures: every storage test runs on SQLite and on PostgreSQL.

A test's database is a copy of a template made once per session: cloning a small
PostgreSQL database (`CREATE DATABASE x TEMPLATE y`) or copying a SQLite file takes a
fraction of the time that creating the tables or running the migrations into it does. There
are three kinds, and a test gets the one whose meaning it needs:

- "empty": nothing in it: tests of the migrations themselves, of a database not set up yet;
- "schema": the tables made from the models by `create_schema` (the `engine` fixture);
- "migrated": brought to the newest revision by Alembic, as `ensure_database` leaves it
  (`migrated_db_url`, `pg_migrated_url`: for tests that open the database as mailbridge does).

A PostgreSQL copy still takes the server a few tenths of a second (it copies and syncs the
template's files), so the next copy of each kind is made in a background thread while the
test that took the last one runs; each test still gets a fresh copy of its own, dropped after
it. (Dropping in the background too was tried: it made the copies wait, slower overall.)

PostgreSQL names carry the pid of the pytest process that made them, so parallel or
repeated runs against one server never collide; the templates are dropped at the end of the
session, and a later session drops what a killed one left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from mailbridge.errors import first_line
from mailbridge.store.db import create_schema, make_engine
from mailbridge.store.migrate import ensure_database
from tests.servers import unavailable

PG_ADMIN_URL = os.environ.get(
    "MAILBRIDGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
KINDS = ("empty", "schema", "migrated")
# mbt_<pid>_<run>_<kind> for templates, mb_<pid>_<random> for the copies tests use.
_OURS = re.compile(r"^mbt?_(\d+)_[0-9a-f]+(_[a-z]+)?$")
# Tests with a `db_url`-like fixture run once per database; the PostgreSQL run is marked.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pg_database_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def _fill(url: str, kind: str) -> None:
    """Put what a database of this kind holds into the (new, empty) database at url."""
    if kind == "schema":
        engine = make_engine(url)
        create_schema(engine)
    elif kind == "migrated":
        engine = ensure_database(url)
    else:
        return
    engine.dispose()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PgTemplates:
    """The session's PostgreSQL templates, made on first use, and copies of them."""

    def __init__(self, admin: Engine) -> None:
        self.admin = admin
        self.prefix = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.made: dict[str, str] = {}
        # The next copy of each kind, being made while a test runs.
        self._maker = ThreadPoolExecutor(1, thread_name_prefix="pg-clone")
        self._next: dict[str, Future[str]] = {}

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(sql))

    def template(self, kind: str) -> str | None:
        """The template database's name for `kind` (None for "empty": the server's own)."""
        assert kind in KINDS, kind
        if kind == "empty":
            return None
        if kind not in self.made:
            name = f"mbt_{self.prefix}_{kind}"
            self._execute(f'CREATE DATABASE "{name}"')
            self.made[kind] = name
            _fill(pg_database_url(name), kind)
            # No one may connect to a template while it is copied: refuse connections.
            self._execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        return self.made[kind]

    def _create(self, template: str | None) -> str:
        name = f"mb_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return pg_database_url(name)

    def clone(self, kind: str) -> str:
        """A new database of `kind` for one test (or module), nobody else's; its URL. The
        one made ahead if it is there, and the next one is started."""
        template = self.template(kind)
        ahead = self._next.pop(kind, None)
        if ahead is not None and ahead.exception() is None:
            url = ahead.result()
        else:  # (a failure ahead is met again here, in the test that needs the copy)
            url = self._create(template)
        self._next[kind] = self._maker.submit(self._create, template)
        return url

    def drop(self, url: str) -> None:
        name = make_url(url).database
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_templates(self) -> None:
        """At the end of the session: the copies made ahead, then the templates."""
        for ahead in self._next.values():
            if ahead.exception() is None:  # (one that failed left nothing to drop)
                self.drop(ahead.result())
        self._next.clear()
        self._maker.shutdown()
        for name in self.made.values():
            _drop_template(self.admin, name)
        self.made.clear()


def _drop_template(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false'))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _drop_leftovers(admin: Engine) -> None:
    """Drop the databases of test sessions that were killed before they could."""
    if make_url(PG_ADMIN_URL).host not in ("127.0.0.1", "localhost", "::1", None):
        return  # whose pids they are cannot be told from here
    with admin.connect() as conn:
        rows = conn.execute(text("SELECT datname, datistemplate FROM pg_database")).all()
    for name, is_template in rows:
        found = _OURS.match(name)
        if found and not _pid_alive(int(found.group(1))):
            if is_template:
                _drop_template(admin, name)
            else:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        engine.dispose()
        unavailable("PostgreSQL at 127.0.0.1:5432", first_line(exc))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_templates(pg_admin: Engine) -> Iterator[PgTemplates]:
    _drop_leftovers(pg_admin)
    templates = PgTemplates(pg_admin)
    yield templates
    templates.drop_templates()


def _pg_clone(templates: PgTemplates, kind: str) -> Iterator[str]:
    url = templates.clone(kind)
    yield url
    templates.drop(url)


@pytest.fixture
def pg_url(pg_templates: PgTemplates) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from _pg_clone(pg_templates, "empty")


@pytest.fixture
def pg_schema_url(pg_templates: PgTemplates) -> Iterator[str]:
    """A PostgreSQL database for one test with the tables made by `create_schema`."""
    yield from _pg_clone(pg_templates, "schema")


@pytest.fixture
def pg_migrated_url(pg_templates: PgTemplates) -> Iterator[str]:
    """A PostgreSQL database for one test at the newest revision of the migrations."""
    yield from _pg_clone(pg_templates, "migrated")


class SqliteTemplates:
    """The session's SQLite template files, made on first use; a test gets a copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Path] = {}

    def copy_to(self, kind: str, path: Path) -> str:
        """The URL of a database of `kind` at path (nothing there for "empty")."""
        assert kind in KINDS, kind
        if kind != "empty":
            if kind not in self.made:
                template = self.root / f"{kind}.db"
                _fill(f"sqlite:///{template}", kind)
                # Closed: its write-ahead log is checkpointed into the file and removed.
                assert not template.with_name(f"{kind}.db-wal").exists()
                self.made[kind] = template
            shutil.copyfile(self.made[kind], path)
        return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplates:
    return SqliteTemplates(tmp_path_factory.mktemp("sqlite-templates"))


def _db_url(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> str:
    if request.param == "sqlite":
        templates: SqliteTemplates = request.getfixturevalue("sqlite_templates")
        return templates.copy_to(kind, tmp_path / "mailbridge.db")
    return request.getfixturevalue(
        {"empty": "pg_url", "schema": "pg_schema_url", "migrated": "pg_migrated_url"}[kind]
    )


@contextmanager
def migrated_copy(request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """A database at the newest revision for a whole module, on `request.param`'s database:
    a SQLite file in `folder`, or a PostgreSQL copy dropped when the module is done."""
    if request.param == "sqlite":
        templates: SqliteTemplates = request.getfixturevalue("sqlite_templates")
        yield templates.copy_to("migrated", folder / "mailbridge.db")
        return
    pg: PgTemplates = request.getfixturevalue("pg_templates")
    url = pg.clone("migrated")
    try:
        yield url
    finally:
        pg.drop(url)


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL; tests using it run once on SQLite and once on PostgreSQL.

    The database is empty, unless the test also uses `engine`: then it holds the tables
    `create_schema` makes, and `engine` is an engine on it.
    """
    return _db_url(request, tmp_path, "schema" if "engine" in request.fixturenames else "empty")


@pytest.fixture(params=DATABASES)
def migrated_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at the newest revision, once on SQLite and once on PostgreSQL: what
    `ensure_database` leaves, for tests that open the database as mailbridge does."""
    return _db_url(request, tmp_path, "migrated")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine with the schema created, on each database."""
    eng = make_engine(db_url)
    create_schema(eng)  # already there (copied from the template): this only checks
    yield eng
    eng.dispose()
