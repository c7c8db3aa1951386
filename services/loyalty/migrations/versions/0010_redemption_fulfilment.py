"""Redemptions get a status: a gift waits to be sent (pending), is sent (fulfilled) or called off

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "redemptions",
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
        schema="loyalty",
    )
    op.add_column("redemptions", sa.Column("note", sa.String(200), nullable=True), schema="loyalty")
    op.add_column(
        "redemptions", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True), schema="loyalty"
    )
    # A coupon was handed over when it was issued; gifts redeemed before now wait for the shop to say.
    op.execute("UPDATE loyalty.redemptions SET status = 'fulfilled' WHERE coupon_code IS NOT NULL")
    op.create_index("ix_redemptions_shop", "redemptions", ["shop_id", "created_at", "id"], schema="loyalty")


def downgrade() -> None:
    op.drop_index("ix_redemptions_shop", table_name="redemptions", schema="loyalty")
    op.drop_column("redemptions", "updated_at", schema="loyalty")
    op.drop_column("redemptions", "note", schema="loyalty")
    op.drop_column("redemptions", "status", schema="loyalty")
