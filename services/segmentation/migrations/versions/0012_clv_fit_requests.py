"""CLV fits of large shops asked for and not yet done, or failed (they run in the background)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clv_fit_requests",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_clv_fit_requests")),
        schema="segmentation",
    )


def downgrade() -> None:
    op.drop_table("clv_fit_requests", schema="segmentation")
