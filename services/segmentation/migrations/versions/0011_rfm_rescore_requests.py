"""Whole-shop rescores asked for and not yet done (large shops are rescored in the background)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rfm_rescore_requests",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_rfm_rescore_requests")),
        schema="segmentation",
    )


def downgrade() -> None:
    op.drop_table("rfm_rescore_requests", schema="segmentation")
