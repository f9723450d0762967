"""console indexes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

The dashboard at a million cases (#16, #18): its counts of what is overdue or due soon read
one index of the open cases' deadlines instead of the cases themselves, and a service area
typed in any case is found by an index on its lower case (which also gives PostgreSQL the
statistics to plan the filtered list well); the list sorted by deadline reads an index of
the deadline that counts instead of sorting every case.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_case_running",
        "case",
        ["status", "paused_at", "service_area", "extended_due", "response_due"],
    )
    op.create_index(
        "ix_case_area_status",
        "case",
        [sa.text("lower(service_area)"), "status"],
        postgresql_include=["service_area"],
    )
    op.create_index("ix_case_due", "case", [sa.text("coalesce(extended_due, response_due)"), "id"])


def downgrade() -> None:
    op.drop_index("ix_case_due", table_name="case")
    op.drop_index("ix_case_area_status", table_name="case")
    op.drop_index("ix_case_running", table_name="case")
