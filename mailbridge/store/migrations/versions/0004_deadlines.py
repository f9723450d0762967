"""deadlines

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Clock control (pause and resume), the satisfaction answer, and the record of scheduled
mail (reminders, escalations, digests) that makes each one go out once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduled_send",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name="fk_scheduled_send_case_id"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_scheduled_send_case_id"), "scheduled_send", ["case_id"], unique=False)
    op.create_index(op.f("ix_scheduled_send_kind"), "scheduled_send", ["kind"], unique=False)
    with op.batch_alter_table("case") as batch:
        batch.add_column(sa.Column("paused_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("pause_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "paused_working_days", sa.Integer(), nullable=False, server_default=sa.text("0")
            )
        )
        batch.add_column(sa.Column("deadline_reset_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("deadline_reset_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("satisfaction", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("satisfaction_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("case") as batch:
        for name in (
            "satisfaction_at", "satisfaction", "deadline_reset_days", "deadline_reset_on",
            "paused_working_days", "pause_reason", "paused_at",
        ):  # fmt: skip
            batch.drop_column(name)
    op.drop_index(op.f("ix_scheduled_send_kind"), table_name="scheduled_send")
    op.drop_index(op.f("ix_scheduled_send_case_id"), table_name="scheduled_send")
    op.drop_table("scheduled_send")
