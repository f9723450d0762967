"""next stage

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

The clock at a million cases (#18): each open case carries the moment its next reminder or
escalation is due (`case.next_stage_at`, indexed), so a tick reads only the cases whose
moment has come. A migration cannot count working days (the SLA rules, bank holidays and
sending hours are the council's config), so it marks every running case as due now, a few
thousand rows to a statement and only rows not yet marked (run it again after a kill and
it carries on); the clock's first tick then plans them in transactions of a few hundred
and sets each case's true moment (deadlines/stages.py). `setting` keeps the basis those
moments were counted on, so a changed SLA rule or calendar has them counted again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime
BATCH = 5000


def upgrade() -> None:
    op.add_column("case", sa.Column("next_stage_at", UTCDateTime(), nullable=True))
    op.create_index("ix_case_next_stage", "case", ["next_stage_at"], unique=False)
    op.create_table(
        "setting",
        sa.Column("name", AutoString(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    bind = op.get_bind()
    last = bind.execute(sa.text('SELECT max(id) FROM "case"')).scalar() or 0
    for start in range(0, last, BATCH):
        bind.execute(
            sa.text(
                'UPDATE "case" SET next_stage_at = received_at '
                "WHERE id > :start AND id <= :end AND next_stage_at IS NULL "
                "AND status IN ('new', 'in_progress') AND lead_officer_id IS NOT NULL "
                "AND paused_at IS NULL"
            ),
            {"start": start, "end": start + BATCH},
        )


def downgrade() -> None:
    op.drop_table("setting")
    op.drop_index("ix_case_next_stage", table_name="case")
    op.drop_column("case", "next_stage_at")
