"""RFM window aggregates kept on profiles, and the last whole-shop rescore per shop

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding them rewrites nothing, and a NULL count is recounted at the next rescore.
    op.add_column("profiles", sa.Column("rfm_orders", sa.Integer(), nullable=True), schema="segmentation")
    op.add_column("profiles", sa.Column("rfm_spent_fen", sa.BigInteger(), nullable=True), schema="segmentation")
    op.add_column(
        "profiles", sa.Column("rfm_recount_at", sa.DateTime(timezone=True), nullable=True), schema="segmentation"
    )
    op.create_table(
        "rfm_runs",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_rfm_runs")),
        schema="segmentation",
    )


def downgrade() -> None:
    op.drop_table("rfm_runs", schema="segmentation")
    op.drop_column("profiles", "rfm_recount_at", schema="segmentation")
    op.drop_column("profiles", "rfm_spent_fen", schema="segmentation")
    op.drop_column("profiles", "rfm_orders", schema="segmentation")
