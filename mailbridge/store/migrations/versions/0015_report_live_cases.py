"""report live cases

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

The scrutiny report at a million cases on PostgreSQL (#18): a case still open whose
deadlines have all passed is settled as far as the report goes (its figures change again
only if the case does), so a kept month now holds every case settled on the day it was
counted (`report_month.day`) and the report reads live only the cases whose deadlines are
still ahead of that day, found by an index of each running case's last deadline
(`ix_case_live_until`, in place of `ix_case_unsettled`). `live_until` is the last day one
of a month's live cases is live: the tick counts the month again after it. The kept months
are emptied (their figures meant something else): the next ticks count them again.

Events are indexed by case and kind together (in place of case alone), so the report counts
each case's holding replies and extensions from the index, not from a table of millions.
"""

from collections.abc import Sequence
from importlib import import_module

import sqlalchemy as sa
from alembic import op

from mailbridge.store.models import LIVE_UNTIL

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM report_month")
    # Made anew, empty: a NOT NULL column without a default is added so on any SQLite.
    with op.batch_alter_table("report_month", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("day", sa.Date(), nullable=False))
        batch_op.add_column(sa.Column("live_until", sa.Date(), nullable=True))
    op.drop_index("ix_case_unsettled", table_name="case")
    op.create_index("ix_case_live_until", "case", [sa.text(LIVE_UNTIL)])
    op.drop_index("ix_event_case_id", table_name="event")
    op.create_index("ix_event_case_kind", "event", ["case_id", "kind"])


def downgrade() -> None:
    before = import_module("mailbridge.store.migrations.versions.0014_report_months")
    op.drop_index("ix_event_case_kind", table_name="event")
    op.create_index("ix_event_case_id", "event", ["case_id"])
    op.drop_index("ix_case_live_until", table_name="case")
    op.create_index("ix_case_unsettled", "case", [sa.text(before.UNSETTLED_AT)])
    op.execute("DELETE FROM report_month")
    with op.batch_alter_table("report_month") as batch_op:
        batch_op.drop_column("live_until")
        batch_op.drop_column("day")
