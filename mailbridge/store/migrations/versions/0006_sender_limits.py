"""sender limits

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

The indexes the limits on what a sender can cause count with (#13): new cases per
submitter by arrival time, and automatic mail by kind (stranger replies in total).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_case_submitter_received", "case", ["submitter_id", "received_at"], unique=False
    )
    op.create_index("ix_auto_mail_kind_at", "auto_mail", ["kind", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_auto_mail_kind_at", table_name="auto_mail")
    op.drop_index("ix_case_submitter_received", table_name="case")
