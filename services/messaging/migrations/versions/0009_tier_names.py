"""Tier names by level as the renames gave them, so a tier change consumed after a rename keeps the new name

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tier_names",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("renamed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "level", name=op.f("pk_tier_names")),
        schema="messaging",
    )


def downgrade() -> None:
    op.drop_table("tier_names", schema="messaging")
