"""Campaigns: why a campaign failed (its segment deleted before the audience was taken)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "messaging"


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("failure_reason", sa.String(300)), schema=S)
    op.create_index("ix_campaigns_shop_segment", "campaigns", ["shop_id", "segment_id"], schema=S)


def downgrade() -> None:
    op.drop_index("ix_campaigns_shop_segment", table_name="campaigns", schema=S)
    op.drop_column("campaigns", "failure_reason", schema=S)
