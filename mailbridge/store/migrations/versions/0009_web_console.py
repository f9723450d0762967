"""web console

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

The browser console (#16): signed-in sessions and emailed sign-in links, both kept only as
hashes of their tokens; an officer who also works as a coordinator.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    # A plain ADD COLUMN: a batch copy of `person` would trip SQLite's foreign keys.
    op.add_column(
        "person", sa.Column("coordinator", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "web_session",
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("csrf", AutoString(length=64), nullable=False),
        sa.Column("method", AutoString(length=16), nullable=False),
        sa.Column("client", AutoString(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("idle_seconds", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_web_session_person_id", "web_session", ["person_id"])
    op.create_index("ix_web_session_expires_at", "web_session", ["expires_at"])
    op.create_table(
        "signin_link",
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        sa.Column("address", AutoString(length=254), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("client", AutoString(length=64), nullable=False),
        sa.Column("keep", sa.Boolean(), nullable=False),
        sa.Column("next_path", AutoString(length=500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_signin_link_address", "signin_link", ["address"])
    op.create_index("ix_signin_link_client", "signin_link", ["client"])
    op.create_index("ix_signin_link_created_at", "signin_link", ["created_at"])


def downgrade() -> None:
    op.drop_table("signin_link")
    op.drop_table("web_session")
    with op.batch_alter_table("person") as batch:
        batch.drop_column("coordinator")
