"""SMS delivery reports that arrive before the vendor's answer to the send

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "early_sms_reports",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("provider_message_id", sa.String(length=100), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint(
            "shop_id", "provider_message_id", "recipient", name=op.f("pk_early_sms_reports")
        ),
        schema="messaging",
    )


def downgrade() -> None:
    op.drop_table("early_sms_reports", schema="messaging")
