"""attachment verdicts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Why an attachment is held back from members and officers (a program, a script, a web page
with a form...), and the virus scan's verdict, kept on each attachment for coordinators.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attachment") as batch:
        batch.add_column(
            sa.Column("held_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
        batch.add_column(
            sa.Column("scan_result", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("attachment") as batch:
        batch.drop_column("scan_result")
        batch.drop_column("held_reason")
