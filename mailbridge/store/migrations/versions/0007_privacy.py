"""privacy

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Residents' personal data handled as UK GDPR expects (#14): the append-only audit of every
access; a legal hold on a case; when a case's content, a message, a sent email's copy or a
quarantined email was erased (the retention policy, or a request); indexes on the columns
that name a blob, which an erasure asks about before removing one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime
BLOB_NAMES = [
    ("message", "raw_sha256"),
    ("attachment", "sha256"),
    ("quarantine", "raw_sha256"),
    ("processing_failure", "raw_sha256"),
]


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", AutoString(length=254), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("channel", AutoString(length=16), nullable=False),
        sa.Column("origin", AutoString(length=500), nullable=False),
        sa.Column("action", AutoString(length=64), nullable=False),
        sa.Column("case_reference", AutoString(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_at", "audit", ["at"], unique=False)
    op.create_index("ix_audit_case_at", "audit", ["case_reference", "at"], unique=False)
    op.create_index("ix_audit_actor_at", "audit", ["actor", "at"], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        # SQLite has no roles to refuse UPDATE and DELETE to (PostgreSQL's grants are in
        # docs/data-protection.md): the file refuses them itself.
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_append_only_{verb.lower()} BEFORE {verb} ON audit "
                "BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END"
            )
    with op.batch_alter_table("case") as batch:
        batch.add_column(sa.Column("hold_reason", AutoString(length=500), nullable=True))
        batch.add_column(sa.Column("held_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("held_by", AutoString(length=254), nullable=True))
        batch.add_column(sa.Column("content_erased_at", UTCDateTime(), nullable=True))
    for table in ("message", "outbox", "quarantine"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("erased_at", UTCDateTime(), nullable=True))
    # An erasure asks, for each blob it released, whether any row still names it.
    for table, column in BLOB_NAMES:
        op.create_index(f"ix_{table}_{column}", table, [column], unique=False)


def downgrade() -> None:
    for table, column in BLOB_NAMES:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    for table in ("quarantine", "outbox", "message"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("erased_at")
    with op.batch_alter_table("case") as batch:
        batch.drop_column("content_erased_at")
        batch.drop_column("held_by")
        batch.drop_column("held_at")
        batch.drop_column("hold_reason")
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_append_only_{verb}")
    op.drop_index("ix_audit_actor_at", table_name="audit")
    op.drop_index("ix_audit_case_at", table_name="audit")
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_table("audit")
