"""On PostgreSQL the audit can be made insert-only for the service's role: the statements in
docs/data-protection.md ("Who looked at what"), applied word for word to a scratch database
with scratch roles, let mailbridge add its audit lines and work as usual, and make the
database refuse every UPDATE, DELETE and TRUNCATE of the audit."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError
from sqlmodel import Session

from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.store.db import make_engine
from mailbridge.store.migrate import ensure_database
from tests.factories import add_person
from tests.servers.database import pg_database_url

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-protection.md"
SECTION = "## Who looked at what"


def doc_sql() -> tuple[str, str]:
    """The section's two sql blocks: the roles and database, then the grants."""
    section = DOC.read_text(encoding="utf-8").split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sql\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


def statements(block: str) -> list[str]:
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@dataclass
class Scratch:
    owner: str
    app: str
    database: str

    def names(self, block: str) -> str:
        """The doc's names swapped for this test's own."""
        block = block.replace("mailbridge_owner", self.owner).replace("mailbridge_app", self.app)
        return re.sub(r"\bDATABASE mailbridge\b", f'DATABASE "{self.database}"', block)

    def url(self, role: str) -> str:
        """The test server's admin login acting as `role` from the start of each session."""
        return f"{pg_database_url(self.database)}?options={quote(f'-c role={role}')}"


@pytest.fixture
def scratch(pg_admin: Engine) -> Iterator[Scratch]:
    run = f"{os.getpid()}_{uuid.uuid4().hex[:12]}"
    made = Scratch(owner=f"mbt_owner_{run}", app=f"mbt_app_{run}", database=f"mb_{run}")
    setup, _ = doc_sql()
    with pg_admin.connect() as conn:
        for statement in statements(made.names(setup)):
            conn.execute(text(statement))
    yield made
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{made.database}" WITH (FORCE)'))
        for role in (made.app, made.owner):
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


def test_the_documented_grants_make_the_audit_insert_only(scratch: Scratch) -> None:
    _, grants = doc_sql()
    owner = ensure_database(scratch.url(scratch.owner))  # `mailbridge db upgrade` as owner
    with owner.connect() as conn:
        owned = "SELECT tableowner FROM pg_tables WHERE tablename = 'audit'"
        assert conn.execute(text(owned)).scalar_one() == scratch.owner
        for statement in statements(scratch.names(grants)):
            conn.execute(text(statement))
        conn.commit()
    owner.dispose()

    # The service, as the app role: it opens the database as every command does...
    app = ensure_database(scratch.url(scratch.app))
    try:
        with app.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == scratch.app
        # ...adds its audit lines, and reads them...
        actor = Actor("member.support@example.gov.uk", Channel.CLI, "mailbridge@casework-01")
        with Session(app) as session:
            audit.record(session, actor, "case.show", case_reference="MQ-2026-00001")
            session.commit()
        with Session(app) as session:
            [row] = audit.records(session, case_reference="MQ-2026-00001")
        assert (row.actor, row.action) == (actor.name, "case.show")
        # ...and changes the rest as it needs.
        add_person(app, "officer", "Sam Whitaker", "sam.whitaker@example.gov.uk")
        with app.begin() as conn:
            conn.execute(text("UPDATE person SET name = 'Sam W.'"))
            conn.execute(text("DELETE FROM person_address"))
        # But the audit cannot be changed, deleted or emptied.
        for change in (
            "UPDATE audit SET detail = 'nothing to see'",
            "DELETE FROM audit",
            "TRUNCATE audit",
        ):
            with app.connect() as conn, pytest.raises(ProgrammingError) as refused:
                conn.execute(text(change))
            assert "permission denied for table audit" in str(refused.value), change
        with Session(app) as session:
            assert len(audit.records(session)) == 1
    finally:
        app.dispose()


def test_without_the_grants_the_app_role_could_change_the_audit(scratch: Scratch) -> None:
    """The refusal comes from the REVOKE, not from the set-up: granted everything on the
    tables, the same role may delete audit lines."""
    owner = make_engine(scratch.url(scratch.owner))
    ensure_database(scratch.url(scratch.owner)).dispose()
    with owner.begin() as conn:
        conn.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{scratch.app}"'))
    owner.dispose()
    app = make_engine(scratch.url(scratch.app))
    try:
        with app.begin() as conn:
            conn.execute(text("DELETE FROM audit"))
            conn.execute(text("TRUNCATE audit"))
    finally:
        app.dispose()
