"""case tally

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

The dashboard's counts by status at a million cases (#16, #18): triggers on `case` write
+1 / -1 rows to `case_tally` for every insert, status change and delete, so the counts
are a sum over a few rows. Insert-only, so no transaction waits on another for them
(a counter row per status would hold every status change behind a long batch). Filled
from the cases there are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from mailbridge.store.models import TALLY_TRIGGERS

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "case_tally",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", AutoString(length=16), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        # No change to a case between the count and the triggers.
        op.execute('LOCK TABLE "case" IN SHARE MODE')
    op.execute(
        'INSERT INTO case_tally (status, delta) SELECT status, count(*) FROM "case" GROUP BY status'
    )
    for statement in TALLY_TRIGGERS["postgresql" if postgresql else "sqlite"]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('DROP TRIGGER case_tally_update ON "case"')
        op.execute('DROP TRIGGER case_tally_insert_delete ON "case"')
        op.execute("DROP FUNCTION case_tally_change()")
    else:
        for name in ("case_tally_insert", "case_tally_update", "case_tally_delete"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("case_tally")
