"""campaign report indexes: conversions from the orders of the window, deferred messages alone

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_paid", "orders", ["shop_id", "paid_at"], unique=False, schema="messaging")
    op.create_index(
        "ix_messages_deferred",
        "messages",
        ["shop_id", "campaign_id"],
        unique=False,
        schema="messaging",
        postgresql_where=sa.text("deferred AND campaign_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_deferred", table_name="messages", schema="messaging")
    op.drop_index("ix_orders_paid", table_name="orders", schema="messaging")
