"""always on

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Always on (#15): which sender holds an outbox row's lease, so a dead courier's rows are
taken over at once; incidents (mail stopped flowing, a standby took over), so each alert
and its all-clear go once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", AutoString(length=64), nullable=True))
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", AutoString(length=40), nullable=False),
        sa.Column("scope", AutoString(length=300), nullable=False),
        sa.Column("open_key", AutoString(length=341), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("detail", AutoString(length=500), nullable=False),
        sa.Column("cleared_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )


def downgrade() -> None:
    op.drop_table("incident")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_by")
