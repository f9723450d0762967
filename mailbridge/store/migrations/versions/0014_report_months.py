"""report months

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

The scrutiny report at a million cases (#18): `report_month` keeps each past month's
figures for its settled cases, counted by the service's tick (console/report_months.py);
triggers on `case` and `event` write a `report_change` row for every change to what the
report reads, whichever door made it, so a month with a change since it was counted is
counted live until the tick counts it again. Starts empty: the first ticks count the months.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from mailbridge.store.models import REPORT_TRIGGERS

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A case's moment of receipt while its figures can change, else NULL (0015 replaces it).
UNSETTLED_AT = (
    "(\nCASE\n    WHEN status = 'new' OR status = 'in_progress' OR status = 'completed' AND "
    "(acknowledged_at IS NULL OR first_response_at IS NULL) THEN received_at\n"
    "    ELSE NULL\nEND)"
)

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "report_month",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("lo", UTCDateTime(), nullable=False),
        sa.Column("hi", UTCDateTime(), nullable=False),
        sa.Column("basis", AutoString(length=64), nullable=False),
        sa.Column("figures", sa.Text(), nullable=False),
        sa.Column("counted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("month"),
    )
    op.create_table(
        "report_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_report_change_received", "report_change", ["received_at"])
    op.create_index("ix_case_unsettled", "case", [sa.text(UNSETTLED_AT)])
    for statement in REPORT_TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for trigger, table in (
            ("report_change_case_insert_delete", '"case"'),
            ("report_change_case_update", '"case"'),
            ("report_change_event_insert", "event"),
            ("report_change_event_delete", "event"),
            ("report_change_event_update", "event"),
        ):
            op.execute(f"DROP TRIGGER {trigger} ON {table}")
        op.execute("DROP FUNCTION report_change_case()")
        op.execute("DROP FUNCTION report_change_event()")
    else:
        for action in ("case_insert", "case_update", "case_delete"):
            op.execute(f"DROP TRIGGER report_change_{action}")
        for action in ("event_insert", "event_delete", "event_update"):
            op.execute(f"DROP TRIGGER report_change_{action}")
    op.drop_index("ix_case_unsettled", table_name="case")
    op.drop_index("ix_report_change_received", table_name="report_change")
    op.drop_table("report_change")
    op.drop_table("report_month")
