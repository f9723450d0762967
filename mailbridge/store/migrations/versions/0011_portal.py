"""portal

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

The portal's second part (#17): the door a case came in by, the on-line form's one-use
tokens, other council systems' API tokens (hashes only) and the webhooks' outbox.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    # A plain ADD COLUMN: a batch copy of `case` would trip SQLite's foreign keys.
    op.add_column(
        "case",
        sa.Column("channel", AutoString(length=8), nullable=False, server_default="email"),
    )
    op.create_table(
        "form_submission",
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"]),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_form_submission_person_id", "form_submission", ["person_id"])
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("scope", AutoString(length=8), nullable=False),
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", AutoString(length=254), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", AutoString(length=300), nullable=False),
        sa.Column("receiver", AutoString(length=100), nullable=False),
        sa.Column("event", AutoString(length=32), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", AutoString(length=500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_webhook_due", "webhook_delivery", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_delivery_case_id", "webhook_delivery", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_case_id", table_name="webhook_delivery")
    op.drop_index("ix_webhook_due", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_table("api_token")
    op.drop_index("ix_form_submission_person_id", table_name="form_submission")
    op.drop_table("form_submission")
    op.drop_column("case", "channel")
